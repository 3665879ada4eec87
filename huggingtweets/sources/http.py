"""What the service modules (`x`, `mastodon`, `bluesky`) share: pages, retries and waiting out rate limits.

This module imports none of them, and none of them imports `remote`: `remote` imports them (only when one is used,
so that a file source never loads a network library) and walks their pages through the cache.

Why hand-written waiting and not the libraries' own (tweepy's `wait_on_rate_limit`, Mastodon.py's
`ratelimit_method="wait"`, urllib3's `Retry` on a requests session, httpx's transport retries, tenacity):

- they sleep silently, while a wait of up to 15 minutes has to say how long is left, every minute, or it looks stuck;
- each knows one library: tweepy and Mastodon.py retry no server errors, httpx's `retries` only failed connects,
  urllib3's `Retry` reads `Retry-After` but not X's `x-rate-limit-reset`, and none of them covers atproto's httpx;
- `--no-wait` has to turn a rate limit into one line saying for how long, not into a wait or a library's exception;
- tests must run through a rate limit without sleeping: the `Clock` here is passed in, the libraries call
  `time.sleep` themselves. tenacity would do the backoff, but not the rest, and is one more dependency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar

from ..errors import HuggingTweetsError
from ..posts import Post
from .options import FetchOptions, Progress
from .cache import Span

__all__ = ["Clock", "Retry", "Page", "Fetcher", "ApiFetcher", "with_retries", "wait_out", "SERVER_TRIES"]

T = TypeVar("T")

SERVER_TRIES = 4  # a server error is tried this many times in all, backing off 2, 4, 8 s in between
RATE_LIMIT_WAITS = 5  # a service that keeps rate-limiting after we waited as told is not going to stop
MAX_WAIT = 3600.0  # longer than any service's rate-limit window; more means a broken clock or header
DEFAULT_WAIT = 60.0  # a rate limit that does not say until when


@dataclass(frozen=True)
class Clock:
    """How the fetchers sleep and tell the time; `remote` passes in the one tests stand in for."""

    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time


@dataclass(frozen=True)
class Retry:
    """A failure worth trying again: a rate limit (after `wait` seconds, or at `until`, a Unix time) or a passing
    server or network error."""

    what: str  # for messages: "HTTP 503", "rate limit"
    rate_limited: bool = False
    wait: float | None = None  # rate limits: seconds until the service lets us in again, when it says so
    until: float | None = None  # or the time it does, when it says that instead (X's x-rate-limit-reset)

    def seconds(self, clock: Clock) -> float | None:
        """How long to wait, as far as the service said."""
        return self.wait if self.wait is not None else None if self.until is None else self.until - clock.now()


def wait_out(seconds: float, service: str, say: Progress, clock: Clock) -> None:
    """Sleep through a rate limit, saying how long is left every minute so a person sees it is not stuck."""
    left = max(1, math.ceil(min(seconds, MAX_WAIT)))
    until = datetime.fromtimestamp(clock.now() + left).strftime("%H:%M:%S")
    say(f"{service} rate limit reached: waiting {left} s, until {until} (Ctrl-C stops; posts so far are kept)")
    while left > 0:
        step = min(left, 60)
        clock.sleep(step)
        left -= step
        if left > 0:
            say(f"{service} rate limit: {left} s left")


def with_retries(
    call: Callable[[], T],
    classify: Callable[[Exception], Retry | None],
    *,
    service: str,
    options: FetchOptions,
    say: Progress,
    clock: Clock,
) -> T:
    """`call()`, waiting out rate limits and retrying server errors; `classify` says which failures those are.

    Anything `classify` returns None for is raised as it is, for the caller to turn into a message.
    """
    failures = waits = 0
    while True:
        try:
            return call()
        except Exception as e:
            retry = classify(e)
            if retry is None:
                raise
        if retry.rate_limited:
            waits += 1
            wait = retry.seconds(clock)
            if not options.wait_on_rate_limit:
                minutes = f" for about {math.ceil(wait / 60)} min" if wait and wait > 0 else ""
                raise HuggingTweetsError(f"{service} rate limit reached{minutes}: try again later (waiting is off)")
            if waits > RATE_LIMIT_WAITS:
                raise HuggingTweetsError(f"{service} is still rate-limiting after {RATE_LIMIT_WAITS} waits: try later")
            wait_out(wait if wait is not None else DEFAULT_WAIT, service, say, clock)
            continue
        failures += 1
        if failures >= SERVER_TRIES:
            raise HuggingTweetsError(f"{service} kept failing ({retry.what}, {SERVER_TRIES} tries): try again later")
        delay = 2**failures
        say(f"{service} failed ({retry.what}): trying again in {delay} s ({failures + 1} of {SERVER_TRIES})")
        clock.sleep(delay)


class Page(NamedTuple):
    """One page of a timeline, newest post first. `resume`: where the next page starts (a `Span.until`),
    None after the last page."""

    posts: list[Post]
    resume: str | None


class Fetcher(Protocol):
    """What `remote.fetch_cached` walks: each service module provides one."""

    label: str  # names the account in messages: "X @jack"
    max_posts: int  # the most posts the service returns at all

    def pages(self, span: Span, budget: int) -> Iterator[Page]:
        """The pages of `span`, newest first; `budget`: how many posts are wanted (a hint, to ask for less)."""
        ...


class ApiFetcher:
    """A `Fetcher` that calls a service through its library: `call` retries what `classify` passes and puts what the
    library raises (`errors`) into the one line `explain` gives."""

    service: str  # names the service in messages: "X", "Mastodon (mastodon.social)"
    errors: tuple[type[Exception], ...] = ()

    def __init__(self, options: FetchOptions, say: Progress, clock: Clock | None = None) -> None:
        self.options = options
        self.say = say
        self.clock = clock or Clock()

    def classify(self, e: Exception) -> Retry | None:
        """A `Retry` for a failure worth trying again, else None."""
        return None

    def explain(self, e: Exception) -> str:
        """One line about a failed call (one of `errors`), saying what to do."""
        raise NotImplementedError

    def call(self, call: Callable[[], T], classify: Callable[[Exception], Retry | None] | None = None) -> T:
        try:
            return with_retries(
                call, classify or self.classify, service=self.service, options=self.options, say=self.say, clock=self.clock
            )
        except self.errors as e:
            raise HuggingTweetsError(self.explain(e)) from None
