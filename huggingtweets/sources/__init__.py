"""Where posts come from. One `SOURCE` string syntax for the API, the CLI, the notebooks and the app.

    from huggingtweets.sources import load, FetchOptions
    posts = load("twitter-archive.zip")
    posts = load("mastodon:user@mastodon.social", FetchOptions(include_replies=True))

Files (an X archive zip or folder, tweets.js, .csv, .jsonl, .txt) are read here; services
(`@handle`, `x:handle`, `mastodon:user@instance`, `bsky:handle`, their profile URLs) and Twint
databases (`.db`, `.sqlite`) are handled by `remote`.
"""

from __future__ import annotations

from ..posts import Post
from .files import load_file
from .options import FetchOptions, Progress

__all__ = ["FetchOptions", "Progress", "load", "is_remote"]


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
