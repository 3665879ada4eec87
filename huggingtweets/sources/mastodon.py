"""Mastodon posts through Mastodon.py: free, no token, for public accounts.

The account is read from its home instance (`user@instance` asks `https://instance`), which knows all of its public
posts; another instance may know only the few that reached it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from ..errors import HuggingTweetsError
from ..posts import Post
from .options import FetchOptions, Progress
from .cache import Span
from .html import html_to_text
from .http import ApiFetcher, Clock, Page, Retry

PAGE_SIZE = 40  # the most Mastodon returns a page
MAX_POSTS = 1_000_000  # Mastodon itself sets no limit: `FetchOptions.limit` does


def _status(e: Exception) -> int | None:
    """Mastodon.py raises API errors as `(message, status code, reason, error text)`."""
    return e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None


class MastodonFetcher(ApiFetcher):
    """Pages of one Mastodon account's posts, newest first (see `http.Fetcher`)."""

    max_posts = MAX_POSTS
    errors = (MastodonError,)

    def __init__(self, address: str, options: FetchOptions, say: Progress, clock: Clock | None = None) -> None:
        super().__init__(options, say, clock)
        self.address = address
        self.user, _, self.instance = address.partition("@")
        self.service = f"Mastodon ({self.instance})"
        self.label = f"Mastodon @{address}"
        self._api: Mastodon | None = None
        self._account: Any = None

    def classify(self, e: Exception, network_too: bool = True) -> Retry | None:
        if isinstance(e, MastodonRatelimitError):
            reset = self._api.ratelimit_reset if self._api else None  # Mastodon.py reads X-RateLimit-Reset for us
            return Retry("rate limit", rate_limited=True, until=reset or None)
        if isinstance(e, MastodonServerError):
            return Retry(f"HTTP {_status(e)}")
        if network_too and isinstance(e, MastodonNetworkError):
            return Retry("network error")
        return None

    def explain(self, e: Exception) -> str:
        where = f"https://{self.instance}"
        if isinstance(e, MastodonNotFoundError):
            return f"{where} has no account @{self.user} (check the spelling, and that {self.instance} is its home instance)"
        if isinstance(e, MastodonUnauthorizedError):
            return f"{where} shows @{self.user}'s posts only to signed-in users, so they cannot be fetched"
        if isinstance(e, MastodonNetworkError):
            return f"could not reach {where}: check the instance name and the internet connection"
        if isinstance(e, MastodonAPIError) and _status(e) is None:
            return f"{where} does not answer like a Mastodon server: check the instance name"
        if _status(e) == 410:
            return f"@{self.address} is gone (deleted or suspended)"
        detail = e.args[3] if len(e.args) > 3 and e.args[3] else e.args[2] if len(e.args) > 2 else e
        return f"{where} refused @{self.user}'s posts (HTTP {_status(e)}: {detail})"

    def _lookup(self) -> Any:
        """The account, looked up once: statuses are listed by account id."""
        if self._account is None:
            # "throw": our own waiting (`http.with_retries`) shows a countdown; Mastodon.py's "wait" would sleep silently.
            api = self._api = Mastodon(
                api_base_url=f"https://{self.instance}", ratelimit_method="throw", request_timeout=60
            )
            # A wrong instance name fails at once rather than after a round of retries.
            lookup = partial(api.account_lookup, self.user)
            self._account = self.call(lookup, lambda e: self.classify(e, network_too=False))
        return self._account

    def _post(self, status: Any) -> Post:
        shown = status.reblog or status  # a boost carries the boosted post inside it
        return Post(
            text=html_to_text(shown.content or ""),
            id=str(status.id),
            created_at=status.created_at,
            author=self.address,
            is_retweet=status.reblog is not None,
            is_reply=status.in_reply_to_id is not None,
            likes=shown.favourites_count,
            reposts=shown.reblogs_count,
            source="mastodon",
            content_warning=shown.spoiler_text or "",
        )

    def pages(self, span: Span, budget: int) -> Iterator[Page]:
        account = self._lookup()
        api = self._api
        assert api is not None
        page = self.call(
            lambda: api.account_statuses(
                account.id,
                exclude_reblogs=not self.options.include_reposts,
                exclude_replies=not self.options.include_replies,
                limit=PAGE_SIZE,
                max_id=span.until,
                since_id=span.since,
            )
        )
        while True:
            posts = [self._post(status) for status in page or []]
            # The Link header's "next" page, which Mastodon.py keeps on the list; none after the last page.
            following = getattr(page, "_pagination_next", None)
            last = not posts or following is None
            yield Page(posts, None if last else posts[-1].id)
            if last:
                return
            page = self.call(partial(api.fetch_next, page))
