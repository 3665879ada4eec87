"""Where posts come from. One `SOURCE` string syntax for the API, the CLI, the notebooks and the app.

    from huggingtweets.sources import load, FetchOptions
    posts = load("twitter-archive.zip")
    posts = load("mastodon:user@mastodon.social", FetchOptions(include_replies=True))

Files (an X archive zip or folder, tweets.js, .csv, .jsonl, .txt) are read here; services
(`@handle`, `x:handle`, `mastodon:user@instance`, `bsky:handle`, their profile URLs) and Twint
databases (`.db`, `.sqlite`) are handled by `remote`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..posts import Post
from .files import load_file

__all__ = ["FetchOptions", "Progress", "load", "is_remote"]

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


def is_remote(source: str) -> bool:
    """True for service handles/URLs and Twint databases, which `remote` handles."""
    s = source.strip().lower()
    return (
        s.startswith(("@", "x:", "twitter:", "mastodon:", "bsky:", "bluesky:", "http://", "https://"))
        or s.endswith((".db", ".sqlite", ".sqlite3"))
        or s.rpartition("#")[0].endswith((".db", ".sqlite", ".sqlite3"))  # tweets.db#jack: one account of several
    )


def load(source: str, options: FetchOptions | None = None, progress: Progress | None = None) -> list[Post]:
    """Load the posts of one source."""
    if is_remote(source):
        from .remote import load_remote  # network libraries load only when needed

        return load_remote(source, options or FetchOptions(), progress)
    return load_file(source)
