"""X (Twitter) posts through the X API v2 and tweepy.

Reading X is paid (about $0.005 a post, no free tier since 2026), needs an app's bearer token, and reaches only an
account's 3,200 most recent posts (800 when replies are left out). The token is a secret: it is sent to X and
nowhere else: not into messages, logs, the cache or `repr`s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

import requests
import tweepy

from ..environment import X_TOKEN_VARIABLES
from ..errors import HuggingTweetsError
from ..posts import Post
from .options import FetchOptions, Progress
from .cache import Span
from .http import ApiFetcher, Clock, Page, Retry

MAX_POSTS = 3200  # X's timeline endpoint returns at most the 3,200 most recent posts
COST_PER_POST = 0.005  # US dollars per post read, X's pay-per-use price (2026)
TWEET_FIELDS = ["created_at", "public_metrics", "referenced_tweets", "note_tweet", "in_reply_to_user_id"]
_FREE = "or use a free source instead: your X archive (.zip), mastodon:user@instance or bsky:handle"


def bearer_token(options: FetchOptions) -> str:
    """The token from the options, else $X_BEARER_TOKEN, else $TWITTER_BEARER_TOKEN."""
    for token in (options.x_bearer_token, *(os.environ.get(name) for name in X_TOKEN_VARIABLES)):
        if token and token.strip():
            return token.strip()
    raise HuggingTweetsError(
        "fetching from X needs an X API bearer token (paid, about $0.005 a post): create an app at "
        f"developer.x.com and set X_BEARER_TOKEN to its Bearer Token, {_FREE}"
    )


class _Redact(logging.Filter):
    """Takes the token out of tweepy's debug log, which prints every request's headers, `Authorization` included."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, "[redacted]")
        record.msg, record.args = message, ()
        return True


_redact = _Redact()
logging.getLogger("tweepy.client").addFilter(_redact)


def _body(e: tweepy.HTTPException) -> dict[str, Any]:
    try:
        body = e.response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(e: tweepy.HTTPException) -> str:
    """What X said, in its own words (v2 errors are `{"title", "detail", ...}`), cut short."""
    body = _body(e)
    said = body.get("detail") or body.get("title") or "; ".join(e.api_messages) or e.response.reason or ""
    return str(said)[:200]


def _classify(e: Exception) -> Retry | None:
    """Rate limits and server or network trouble pass; anything else is for `_explain`."""
    if isinstance(e, tweepy.TooManyRequests):
        if _body(e).get("title") == "UsageCapExceeded":
            return None  # a monthly cap: waiting 15 minutes will not lift it
        reset = e.response.headers.get("x-rate-limit-reset")  # a Unix time; a second more for clock skew
        return Retry("rate limit", rate_limited=True, until=int(reset) + 1 if reset and reset.isdigit() else None)
    if isinstance(e, tweepy.TwitterServerError):
        return Retry(f"HTTP {e.response.status_code}")
    if isinstance(e, (requests.ConnectionError, requests.Timeout)):
        return Retry("network error")
    return None


def _explain(e: Exception, handle: str) -> str:
    """One line about a failed call, saying what to do; never the token."""
    if isinstance(e, tweepy.Unauthorized):
        return (
            "X rejected the bearer token (401 Unauthorized): check X_BEARER_TOKEN, it must be your app's Bearer Token"
        )
    if isinstance(e, tweepy.Forbidden):
        return (
            f"X refused access (403 Forbidden: {_detail(e)}): the app may lack access to this endpoint or its credits "
            f"are used up; check console.x.com, {_FREE}"
        )
    if isinstance(e, tweepy.HTTPException) and e.response.status_code == 402:
        return f"X says the credits are used up (402 Payment Required): add credits at console.x.com, {_FREE}"
    if isinstance(e, tweepy.TooManyRequests):
        return f"X usage cap reached ({_detail(e)}): raise it at console.x.com or wait for the next month"
    if isinstance(e, tweepy.NotFound):
        return f"X found nothing for @{handle} (404 Not Found: {_detail(e)})"
    if isinstance(e, tweepy.HTTPException):
        return f"X API error for @{handle} (HTTP {e.response.status_code}: {_detail(e)})"
    return f"could not reach X ({type(e).__name__}): check the internet connection and try again"


def _refusal(errors: list[dict[str, Any]], handle: str) -> str:
    """X answers HTTP 200 with only `errors` for accounts it will not show; say which kind this is."""
    for error in errors:
        title, detail = str(error.get("title", "")), str(error.get("detail", ""))
        if "suspended" in detail.lower():
            return f"X account @{handle} is suspended: its posts cannot be fetched"
        if title == "Not Found Error":
            return f"X account @{handle} does not exist (check the spelling)"
        if title == "Authorization Error":
            return f"X account @{handle} is protected: only its approved followers can see its posts"
    first = errors[0]
    return f"X would not show @{handle}'s posts ({first.get('title', '')}: {first.get('detail', '')})"


class XFetcher(ApiFetcher):
    """Pages of one X account's posts, newest first (see `http.Fetcher`)."""

    max_posts = MAX_POSTS
    service = "X"
    errors = (tweepy.TweepyException, requests.RequestException)

    def __init__(self, handle: str, options: FetchOptions, say: Progress, clock: Clock | None = None) -> None:
        super().__init__(options, say, clock)
        self.handle = handle
        self.label = f"X @{handle}"
        self._client: tweepy.Client | None = None
        self._user: tweepy.User | None = None

    classify = staticmethod(_classify)

    def explain(self, e: Exception) -> str:
        token = self._client.bearer_token if self._client else ""
        message = _explain(e, self.handle)
        return message.replace(token, "[redacted]") if token else message

    def _account(self) -> tweepy.User:
        """The account, looked up once: X addresses timelines by user id, not by handle."""
        if self._user is None:
            token = bearer_token(self.options)
            _redact.secrets.add(token)
            # Our own waiting (`http.with_retries`) shows a countdown; tweepy's would sleep silently.
            client = self._client = tweepy.Client(bearer_token=token, wait_on_rate_limit=False)
            response = self.call(partial(client.get_user, username=self.handle))
            if response.data is None:
                raise HuggingTweetsError(_refusal(response.errors or [{}], self.handle))
            self._user = response.data
        return self._user

    def _post(self, tweet: tweepy.Tweet) -> Post:
        kinds = {ref.type for ref in tweet.referenced_tweets or []}
        metrics = tweet.public_metrics or {}
        # Posts over 280 characters come as a cut `text` plus the whole thing in `note_tweet`.
        note = (tweet.data.get("note_tweet") or {}).get("text")
        return Post(
            text=note or tweet.text,
            id=str(tweet.id),
            created_at=tweet.created_at,
            author=self._account().username,
            is_retweet="retweeted" in kinds,
            is_reply="replied_to" in kinds,
            likes=metrics.get("like_count"),
            reposts=metrics.get("retweet_count"),
            source="x-api",
        )

    def pages(self, span: Span, budget: int) -> Iterator[Page]:
        user = self._account()
        exclude = [
            kind
            for kind, keep in (("retweets", self.options.include_reposts), ("replies", self.options.include_replies))
            if not keep
        ]
        which = "newer than the cache" if span.since else "in all"
        self.say(
            f"{self.label}: X bills about ${COST_PER_POST} per post read; this reads at most {budget:,} posts "
            f"{which}, about ${budget * COST_PER_POST:,.2f} at most"
        )
        if "replies" in exclude:
            self.say(f"{self.label}: with replies left out, X returns only the 800 most recent posts")
        paginator = tweepy.Paginator(
            self._client.get_users_tweets,  # type: ignore[union-attr]
            user.id,
            exclude=exclude or None,
            tweet_fields=TWEET_FIELDS,
            since_id=span.since,
            until_id=span.until,
        )
        pages = iter(paginator)
        got, oldest = 0, span.until
        while True:
            # X bills every post it returns: ask for no more than are wanted (it takes 5 to 100 a page).
            pages.kwargs["max_results"] = max(5, min(100, budget - got))
            response = self.call(lambda: next(pages, None))
            if response is None:
                yield Page([], None)
                return
            if response.data is None and response.errors:
                raise HuggingTweetsError(_refusal(response.errors, self.handle))
            posts = [self._post(tweet) for tweet in response.data or []]
            got += len(posts)
            oldest = posts[-1].id if posts else oldest
            last = "next_token" not in response.meta
            if last or oldest is not None:
                yield Page(posts, None if last else oldest)
            if last:
                return
