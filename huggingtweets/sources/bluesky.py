"""Bluesky posts through the atproto SDK: free, no login, from Bluesky's public AppView.

An author feed mixes the account's own posts with its reposts (and, if asked, a pinned post); those come with a
`reason` and are always skipped, whatever `include_reposts` says: they are someone else's words, or a post the feed
has anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
from atproto import Client
from atproto.exceptions import (
    AtProtocolError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    RequestException,
)

from ..posts import Post, parse_time
from .options import FetchOptions, Progress
from .cache import Span
from .http import ApiFetcher, Clock, Page, Retry

PUBLIC_APPVIEW = "https://public.api.bsky.app"  # answers read requests without an account
PAGE_SIZE = 100  # the most getAuthorFeed returns a page
MAX_POSTS = 1_000_000  # Bluesky sets no limit: `FetchOptions.limit` does


def _classify(e: Exception) -> Retry | None:
    if isinstance(e, RateLimitExceededError):
        if e.retry_after is not None:
            return Retry("rate limit", rate_limited=True, wait=e.retry_after)
        reset = e.reset_at
        return Retry("rate limit", rate_limited=True, until=reset.timestamp() if reset else None)
    if isinstance(e, NetworkError):  # connection trouble, timeouts and HTTP 502
        return Retry(f"HTTP {e.response.status_code}" if e.response else "network error")
    if isinstance(e, (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)):
        return Retry("network error")  # what atproto passes through unwrapped: a dropped connection, say
    if isinstance(e, RequestException) and e.response is not None and e.response.status_code >= 500:
        return Retry(f"HTTP {e.response.status_code}")
    return None


def _explain(e: Exception, handle: str) -> str:
    if isinstance(e, httpx.HTTPError) and not isinstance(e, httpx.TransportError):
        return f"Bluesky sent an answer that could not be read ({type(e).__name__}): try again later"
    response = e.response if isinstance(e, RequestErrorBase) else None
    if response is None:
        return f"could not reach Bluesky ({type(e).__name__}): check the internet connection and try again"
    # XRPC errors are `{"error": "InvalidRequest", "message": "Profile not found"}`; atproto parses them for us.
    error = getattr(response.content, "error", None) or ""
    message = getattr(response.content, "message", None) or ""
    if "not found" in message.lower() or error in ("ProfileNotFound", "ActorNotFound"):
        return f"Bluesky has no account {handle} (check the spelling: handles look like name.bsky.social)"
    said = ": ".join(part for part in (error, message) if part) or "no details"
    return f"Bluesky would not show {handle}'s posts (HTTP {response.status_code}, {said})"


class BlueskyFetcher(ApiFetcher):
    """Pages of one Bluesky account's posts, newest first (see `http.Fetcher`)."""

    max_posts = MAX_POSTS
    service = "Bluesky"
    # atproto wraps most failures in its own errors, but passes some of httpx's through (a dropped connection)
    errors = (AtProtocolError, httpx.HTTPError)

    def __init__(self, handle: str, options: FetchOptions, say: Progress, clock: Clock | None = None) -> None:
        super().__init__(options, say, clock)
        self.handle = handle
        self.label = f"Bluesky {handle}"
        self._client: Client | None = None

    classify = staticmethod(_classify)

    def explain(self, e: Exception) -> str:
        return _explain(e, self.handle)

    @staticmethod
    def _post(item: Any) -> Post:
        post, record = item.post, item.post.record
        return Post(
            text=record.text,
            id=post.uri,  # at://did/app.bsky.feed.post/key: unique, and what the web link is built from
            created_at=parse_time(record.created_at),
            author=post.author.handle,
            is_reply=record.reply is not None,
            likes=post.like_count,
            reposts=post.repost_count,
            source="bluesky",
        )

    def pages(self, span: Span, budget: int) -> Iterator[Page]:
        if self._client is None:
            self._client = Client(base_url=PUBLIC_APPVIEW)
        feed = self._client.app.bsky.feed
        cursor = span.until
        while True:
            params = {
                "actor": self.handle,
                "filter": "posts_with_replies" if self.options.include_replies else "posts_no_replies",
                "limit": PAGE_SIZE,
                "cursor": cursor,
            }
            response = self.call(partial(feed.get_author_feed, params))
            # Reposts and pins come with a `reason`; everything else is the account's own post.
            posts = [self._post(item) for item in response.feed if item.reason is None]
            cursor = response.cursor if response.feed else None
            yield Page(posts, cursor)
            if cursor is None:
                return
