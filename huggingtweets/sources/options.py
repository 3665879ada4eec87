"""What a fetch is asked for, and how it reports progress: shared by every source module (imported by them, importing none)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Progress = Callable[[str], None]
"""Receives one-line status messages ("fetched 300 posts", "rate limited: waiting 42 s")."""


@dataclass
class FetchOptions:
    """What to ask a service for. Files ignore these: they hold what they hold, and cleaning filters."""

    include_replies: bool = False
    include_reposts: bool = False
    limit: int = 3200
    refresh: bool = False  # refetch everything instead of only what is newer than the cache
    offline: bool = False  # use only the local cache
    wait_on_rate_limit: bool = True
    # else $X_BEARER_TOKEN or $TWITTER_BEARER_TOKEN; a secret, so kept out of repr() (and so out of logs and tracebacks)
    x_bearer_token: str | None = field(default=None, repr=False)
