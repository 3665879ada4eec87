"""The local cache of fetched posts: one JSONL file per service and account, newest post first.

    data/x/jack.jsonl                     the posts, one `Post.to_dict()` a line
    data/x/jack.meta.json                 what the posts cover (see `Cached`)

Fetching costs money (X) or rate-limit budget (everyone), so a later fetch asks only for what the cache lacks,
and an interrupted fetch resumes where it stopped instead of starting over.
Both files are written atomically, and the posts before the note of what they cover: a crash between the two
writes makes the next fetch ask for some posts twice (they merge away), never skip any.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import atomic, paths
from ..errors import HuggingTweetsError
from ..posts import Post, read_jsonl_records, write_jsonl


@dataclass(frozen=True)
class Span:
    """A stretch of an account's timeline not fetched yet, walked newest to oldest.

    `until`: where to start (exclusive): a post id for X and Mastodon, a page cursor for Bluesky; None = the newest post.
    `since`: the newest post already cached below this stretch (exclusive); None = down to the oldest post there is.
    """

    until: str | None = None
    since: str | None = None


@dataclass
class Cached:
    """The posts of one account and what they cover.

    `include_replies` / `include_reposts`: whether the posts were fetched with replies / reposts, so a later fetch
    that wants them knows the cache lacks them. `pending`: stretches still to fetch, because a fetch was interrupted
    or stopped at its limit; fetched newest first.
    """

    posts: list[Post] = field(default_factory=list)
    include_replies: bool = False
    include_reposts: bool = False
    pending: list[Span] = field(default_factory=list)


def cache_path(service: str, account: str) -> Path:
    """`data/<service>/<account>.jsonl`. `account` has been validated already; this only keeps it filename-safe
    everywhere (a Bluesky DID's `:` is not allowed on Windows)."""
    name = re.sub(r"[^a-z0-9@._-]", "_", account.lower())
    if not name or name.startswith("."):
        raise HuggingTweetsError(f"{account!r} is not a valid account name")
    return paths.data_dir() / service / f"{name}.jsonl"


def _meta_path(posts_path: Path) -> Path:
    return posts_path.with_name(posts_path.name[: -len(".jsonl")] + ".meta.json")


def read(service: str, account: str) -> Cached | None:
    """The cached posts of an account, or None if it was never fetched."""
    path = cache_path(service, account)
    if not path.is_file():
        return None
    try:
        posts = [Post.from_dict(record) for record in read_jsonl_records(path)]
    except (ValueError, TypeError) as e:
        raise HuggingTweetsError(f"the cache {path} is damaged ({e}): delete it, or fetch again with refresh") from None
    cached = Cached(posts=posts)
    meta_path = _meta_path(path)
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            cached.include_replies = bool(meta.get("include_replies"))
            cached.include_reposts = bool(meta.get("include_reposts"))
            cached.pending = [Span(s.get("until"), s.get("since")) for s in meta.get("pending", [])]
        except (ValueError, AttributeError, TypeError):
            pass  # an unreadable note: treat the posts as complete, fetched without replies or reposts
    return cached


def write(service: str, account: str, cached: Cached) -> Path:
    """Store `cached`: the posts first, then what they cover (see the module docstring for why in that order)."""
    path = cache_path(service, account)
    write_jsonl(path, cached.posts)
    atomic.write_json(
        _meta_path(path),
        {
            "include_replies": cached.include_replies,
            "include_reposts": cached.include_reposts,
            "pending": [{"until": s.until, "since": s.since} for s in cached.pending],
        },
    )
    return path


_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def _newest_first(post: Post) -> tuple[datetime, int, str]:
    # X and Mastodon ids are numbers that grow with time: a longer id is a newer one when times tie.
    return (post.created_at or _OLDEST, len(post.id), post.id)


def merge(old: list[Post], new: list[Post]) -> list[Post]:
    """All posts of both, once each, newest first. A post in both is taken from `new` (fresher counts)."""
    by_id = {p.id: p for p in old}
    by_id.update((p.id, p) for p in new)
    return sorted(by_id.values(), key=_newest_first, reverse=True)
