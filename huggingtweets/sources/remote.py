"""Posts from services (X, Mastodon, Bluesky) and Twint databases, behind one `SOURCE` syntax.

    @jack  x:jack  twitter:jack  https://x.com/jack                     X API v2 (needs a paid bearer token)
    mastodon:user@mastodon.social  @user@mastodon.social  https://mastodon.social/@user
    bsky:alice.bsky.social  bluesky:alice  https://bsky.app/profile/alice.bsky.social
    tweets.db  tweets.sqlite#jack                                       a Twint database (`#user` picks one account)

Handles are checked against each service's rules before anything is done with them: they end up in request URLs
and cache file names, so `../x` or `a/b` must never get that far.

Fetched posts are cached per account (`cache`); a later fetch asks only for what the cache lacks. The services'
own modules (`x`, `mastodon`, `bluesky`) turn API pages into `Post`s; this module walks the pages, keeps the cache
up to date after every page, and waits out rate limits and server errors (`with_retries`).
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import HuggingTweetsError
from ..posts import Post
from . import FetchOptions, Progress, cache
from .cache import Span

__all__ = ["parse_source", "account_name", "load_remote", "X_MAX_POSTS"]

# Indirections so tests can stand in for the clock: nothing here ever really sleeps under test.
_sleep = time.sleep
_now = time.time

X_MAX_POSTS = 3200  # X's timeline endpoint returns at most the 3,200 most recent posts

# ---------------------------------------------------------------- source syntax

# X: 1-15 letters, digits and underscores.
_X_HANDLE = re.compile(r"[A-Za-z0-9_]{1,15}")
# Mastodon: letters, digits, `_`, with `.` or `-` only inside (Mastodon's own USERNAME_RE, plus what other servers allow).
_FEDI_USER = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?")
# A DNS name: labels of letters, digits and inner hyphens, at least two labels, the last one not all digits.
_HOST = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Bluesky: a handle is a DNS name; an account may also be named by its DID.
_DID = re.compile(r"did:(?:plc:[a-z2-7]{24}|web:[a-z0-9.-]{1,253})")
_TWINT_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_X_HOSTS = {"x.com", "www.x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com", "mobile.x.com"}
_BSKY_HOSTS = {"bsky.app", "www.bsky.app"}


def _x_handle(handle: str) -> str:
    handle = handle.removeprefix("@")
    if not _X_HANDLE.fullmatch(handle):
        raise HuggingTweetsError(f"{handle!r} is not a valid X handle: 1-15 letters, digits or _, like @jack")
    return handle


def _mastodon_account(address: str) -> str:
    """`user@instance` (a leading `@` allowed), instance lowercased."""
    user, at, instance = address.removeprefix("@").partition("@")
    instance = instance.lower()
    if not at or not _FEDI_USER.fullmatch(user) or not _HOST.fullmatch(instance):
        raise HuggingTweetsError(
            f"{address!r} is not a valid Mastodon address: use mastodon:user@instance, like mastodon:Gargron@mastodon.social"
        )
    return f"{user}@{instance}"


def _bluesky_account(handle: str) -> str:
    """A handle (`alice` means `alice.bsky.social`) or a DID, lowercased: Bluesky handles ignore case."""
    handle = handle.removeprefix("@").lower()
    if _DID.fullmatch(handle):
        return handle
    if handle and "." not in handle:
        handle += ".bsky.social"
    if not _HOST.fullmatch(handle):
        raise HuggingTweetsError(
            f"{handle!r} is not a valid Bluesky handle: use bsky:name.bsky.social or bsky:your.domain"
        )
    return handle


def _from_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if host in _X_HOSTS and len(segments) == 1:
        return "x", _x_handle(segments[0])
    if host in _BSKY_HOSTS and len(segments) == 2 and segments[0] == "profile":
        return "bluesky", _bluesky_account(segments[1])
    if _HOST.fullmatch(host) and len(segments) == 1 and segments[0].startswith("@"):
        # https://instance/@user, or https://instance/@user@elsewhere for a remote account seen from that instance
        user = segments[0][1:]
        return "mastodon", _mastodon_account(user if "@" in user else f"{user}@{host}")
    raise HuggingTweetsError(
        f"{url} is not a profile URL I know: use https://x.com/NAME, https://INSTANCE/@NAME or https://bsky.app/profile/HANDLE"
    )


def _split_twint(source: str) -> tuple[str, str | None]:
    """`tweets.db#jack` -> ("tweets.db", "jack"); `tweets.db` -> ("tweets.db", None)."""
    path, hash_, user = source.rpartition("#")
    if hash_ and path.lower().endswith(_TWINT_SUFFIXES):
        return path, _x_handle(user)
    return source, None


def parse_source(source: str) -> tuple[str, str]:
    """Split a service source into `(service, account)`, validating the handle.

    service is "x", "mastodon", "bluesky" or "twint"; account is the handle as the service knows it
    ("jack", "user@mastodon.social", "alice.bsky.social" or a DID) or, for Twint, the database path
    (with `#user` when one was picked). Raises `HuggingTweetsError` (one line) for anything else.
    """
    s = source.strip()
    lower = s.lower()
    if not s:
        raise HuggingTweetsError("the source is empty: give @handle, mastodon:user@instance, bsky:handle or a file")
    for prefix, parse in (
        ("x:", lambda v: ("x", _x_handle(v))),
        ("twitter:", lambda v: ("x", _x_handle(v))),
        ("mastodon:", lambda v: ("mastodon", _mastodon_account(v))),
        ("bsky:", lambda v: ("bluesky", _bluesky_account(v))),
        ("bluesky:", lambda v: ("bluesky", _bluesky_account(v))),
    ):
        if lower.startswith(prefix):
            return parse(s[len(prefix) :].strip())
    if lower.startswith(("http://", "https://")):
        return _from_url(s)
    if s.startswith("@"):
        # @user@instance is how the fediverse writes an address; a bare @handle is X's.
        return ("mastodon", _mastodon_account(s)) if "@" in s[1:] else ("x", _x_handle(s))
    path, user = _split_twint(s)
    if path.lower().endswith(_TWINT_SUFFIXES):
        return "twint", f"{path}#{user}" if user else path
    raise HuggingTweetsError(
        f"{source!r} is not a source I know: use @handle, mastodon:user@instance, bsky:handle, a Twint .db or a file"
    )


def account_name(source: str) -> str:
    """A filename-safe name for the account behind a service source, to name a bot or a file after.

    "@jack" -> "x-jack"; "mastodon:Gargron@mastodon.social" -> "mastodon-gargron-at-mastodon.social";
    "bsky:alice.bsky.social" -> "bluesky-alice.bsky.social"; "tweets.db#jack" -> "twint-jack".
    """
    service, account = parse_source(source)
    if service == "mastodon":
        user, _, instance = account.partition("@")
        name = f"{user}-at-{instance}"
    elif service == "twint":
        path, picked = _split_twint(account)
        name = picked or Path(path).stem
    else:
        name = account
    # Handles are safe already; a DID's `:` and a database file's name may not be.
    name = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "posts"
    return f"{service}-{name}"


# ---------------------------------------------------------------- waiting and retrying

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """A failure worth trying again: a rate limit (after `wait` seconds) or a passing server or network error."""

    what: str  # for messages: "HTTP 503", "rate limit"
    rate_limited: bool = False
    wait: float | None = None  # rate limits: seconds until the service lets us in again, when it says


SERVER_TRIES = 4  # a server error is tried this many times in all, backing off 2, 4, 8 s in between
_RATE_LIMIT_WAITS = 5  # a service that keeps rate-limiting after we waited as told is not going to stop
_MAX_WAIT = 3600.0  # longer than any service's rate-limit window; more means a broken clock or header


def _quiet(message: str) -> None:
    pass


def wait_out(seconds: float, service: str, say: Progress) -> None:
    """Sleep through a rate limit, saying how long is left every minute so a person sees it is not stuck."""
    left = max(1, math.ceil(min(seconds, _MAX_WAIT)))
    until = datetime.fromtimestamp(_now() + left).strftime("%H:%M:%S")
    say(f"{service} rate limit reached: waiting {left} s, until {until} (Ctrl-C stops; posts so far are kept)")
    while left > 0:
        step = min(left, 60)
        _sleep(step)
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
            if not options.wait_on_rate_limit:
                minutes = f" for about {math.ceil(retry.wait / 60)} min" if retry.wait and retry.wait > 0 else ""
                raise HuggingTweetsError(f"{service} rate limit reached{minutes}: try again later (waiting is off)")
            if waits > _RATE_LIMIT_WAITS:
                raise HuggingTweetsError(f"{service} is still rate-limiting after {_RATE_LIMIT_WAITS} waits: try later")
            wait_out(retry.wait if retry.wait is not None else 60.0, service, say)
            continue
        failures += 1
        if failures >= SERVER_TRIES:
            raise HuggingTweetsError(f"{service} kept failing ({retry.what}, {SERVER_TRIES} tries): try again later")
        delay = 2**failures
        say(f"{service} failed ({retry.what}): trying again in {delay} s ({failures + 1} of {SERVER_TRIES})")
        _sleep(delay)


# ---------------------------------------------------------------- fetching through the cache


class Page(NamedTuple):
    """One page of a timeline, newest post first. `resume`: where the next page starts (a `Span.until`),
    None after the last page."""

    posts: list[Post]
    resume: str | None


class Fetcher(Protocol):
    """What each service module provides."""

    label: str  # names the account in messages: "X @jack"
    max_posts: int  # the most posts the service returns at all

    def pages(self, span: Span, budget: int) -> Iterator[Page]:
        """The pages of `span`, newest first; `budget`: how many posts are wanted (a hint, to ask for less)."""
        ...


def _wanted(posts: list[Post], options: FetchOptions) -> list[Post]:
    """The posts a fetch with `options` asks for (the cache may hold replies or reposts fetched earlier)."""
    return [
        p
        for p in posts
        if (options.include_replies or not p.is_reply) and (options.include_reposts or not p.is_retweet)
    ]


def _start(cached: cache.Cached | None, options: FetchOptions, label: str, say: Progress) -> cache.Cached:
    """What is left to fetch, given the cache: only the newer posts and unfinished stretches, or everything."""
    lacks = [
        kind
        for kind, want, have in (
            ("replies", options.include_replies, cached and cached.include_replies),
            ("reposts", options.include_reposts, cached and cached.include_reposts),
        )
        if want and not have
    ]
    if cached is None or options.refresh or lacks:
        if cached is not None and lacks and not options.refresh:
            say(f"{label}: the cache was fetched without {' and '.join(lacks)}: fetching everything again")
        return cache.Cached(
            include_replies=options.include_replies, include_reposts=options.include_reposts, pending=[Span()]
        )
    # The cache may hold more kinds than asked for now; it covers only what both fetches asked for.
    cached.include_replies = cached.include_replies and options.include_replies
    cached.include_reposts = cached.include_reposts and options.include_reposts
    newest = cached.posts[0].id if cached.posts else None
    if newest is not None or not cached.pending:
        cached.pending.insert(0, Span(since=newest))
    return cached


def _older_than(posts: list[Post], newer: list[Post]) -> list[Post]:
    """The `posts` older than every post in `newer` (newest first; posts without a time cannot be placed)."""
    times = [p.created_at for p in newer if p.created_at]
    if not times:
        return [] if newer else posts
    oldest = min(times)
    return [p for p in posts if p.created_at and p.created_at < oldest]


def _unseen(posts: list[Post], known: dict[str, Post], floor: Post | None) -> list[Post]:
    """The posts of a page before the first one the cache has: known by id, or older than `floor` (the cached post
    a stretch ends at) when that one has been deleted since and never shows up."""

    def older(post: Post) -> bool:
        return bool(floor and post.created_at and floor.created_at and post.created_at < floor.created_at)

    return list(itertools.takewhile(lambda post: post.id not in known and not older(post), posts))


def fetch_cached(service: str, account: str, fetcher: Fetcher, options: FetchOptions, say: Progress) -> list[Post]:
    """The account's posts, newest first, fetching only what the cache lacks and saving after every page.

    Stops at `options.limit` posts (and the service's own maximum). If anything goes wrong, or Ctrl-C is pressed,
    the posts fetched so far stay in the cache, with a note of what is missing, and the next fetch carries on there.
    Except when starting over (`refresh`, or a cache without the replies or reposts wanted now): then the old cache
    is only replaced once the new fetch is complete, and an interrupted one starts over next time.
    """
    path = cache.cache_path(service, account)
    cached = cache.read(service, account)
    if options.offline:
        if cached is None or (not cached.posts and cached.pending):  # never fetched, or the first fetch failed
            raise HuggingTweetsError(
                f"nothing cached for {fetcher.label} (no {path}): fetch it once without offline mode"
            )
        say(f"{fetcher.label}: using {len(cached.posts)} cached posts (offline)")
        return _wanted(cached.posts, options)[: options.limit]

    limit = min(options.limit, fetcher.max_posts)
    state = _start(cached, options, fetcher.label, say)
    # Starting over (refresh, or replies wanted now): the old cache stays on disk, untouched, until the new fetch has
    # gone all the way back, and then keeps the posts older than anything the new one reached (past X's 3,200, say).
    # A start-over that fails or stops at its limit leaves the old cache as it was, and the next fetch starts over.
    previous = cached.posts if cached is not None and state is not cached else []

    def save(final: bool = False) -> None:
        if previous and not final:
            return
        # Never replace a cache with nothing unless the account really has no posts.
        if cached is None or state.posts or not state.pending:
            cache.write(service, account, state)

    save()  # the plan is on disk before the first request
    known = {p.id: p for p in state.posts}
    new = 0
    try:
        while state.pending:
            span = state.pending[0]
            # Newer posts are always fetched; older stretches only while the cache has fewer posts than asked for.
            budget = limit if span.until is None else limit - len(_wanted(state.posts, options))
            if budget <= 0:
                break  # what is left stays noted, for a later fetch with a larger limit
            floor = known.get(span.since) if span.since else None  # the cached post this stretch ends at
            got = 0
            for page in fetcher.pages(span, budget):
                fresh = _unseen(page.posts, known, floor)
                done = page.resume is None or len(fresh) < len(page.posts)  # the end, or the cached posts
                got += len(fresh)
                new += len(fresh)
                state.posts = cache.merge(state.posts, fresh)
                known.update((p.id, p) for p in fresh)
                if done:
                    state.pending.pop(0)
                else:
                    state.pending[0] = Span(page.resume, span.since)
                save()
                say(f"{fetcher.label}: {new} new posts fetched" + ("" if previous else f", {len(state.posts)} in the cache"))
                if done or got >= budget:
                    break
            else:
                state.pending.pop(0)  # the pages ran out without saying so: the stretch is done
    except HuggingTweetsError as e:
        if previous:
            raise HuggingTweetsError(f"{e} (the cache in {path} is as it was; run again to fetch everything again)") from None
        if new:
            raise HuggingTweetsError(
                f"{e} (kept the {new} new posts fetched before that in {path}; run again to carry on)"
            ) from None
        raise
    except KeyboardInterrupt:
        kept = "the cache is as it was" if previous else f"kept {new} new posts in {path}, run again to carry on"
        say(f"{fetcher.label}: interrupted; {kept}")
        raise
    finally:
        save()
    if previous and not state.pending:
        state.posts = cache.merge(state.posts, _older_than(previous, state.posts))
        save(final=True)
    posts = _wanted(state.posts, options)[: options.limit]
    say(f"{fetcher.label}: {len(posts)} posts ({new} new)")
    return posts


def load_remote(source: str, options: FetchOptions, progress: Progress | None = None) -> list[Post]:
    """The posts of a service account or Twint database, newest first (see the module docstring for `source`)."""
    service, account = parse_source(source)
    say = progress or _quiet
    fetcher: Fetcher
    # Each service's library is imported only when that service is used.
    if service == "twint":
        from .twint import load_twint

        return load_twint(*_split_twint(account), say=say)
    if service == "x":
        from .x import XFetcher

        fetcher = XFetcher(account, options, say)
    elif service == "mastodon":
        from .mastodon import MastodonFetcher

        fetcher = MastodonFetcher(account, options, say)
    else:
        from .bluesky import BlueskyFetcher

        fetcher = BlueskyFetcher(account, options, say)
    return fetch_cached(service, account, fetcher, options, say)
