"""Posts from services (X, Mastodon, Bluesky) and Twint databases, behind one `SOURCE` syntax.

    @jack  x:jack  twitter:jack  https://x.com/jack                     X API v2 (needs a paid bearer token)
    mastodon:user@mastodon.social  @user@mastodon.social  https://mastodon.social/@user
    bsky:alice.bsky.social  bluesky:alice  https://bsky.app/profile/alice.bsky.social
    tweets.db  tweets.sqlite#jack                                       a Twint database (`#user` picks one account)

Handles are checked against each service's rules before anything is done with them: they end up in request URLs
and cache file names, so `../x` or `a/b` must never get that far.

Fetched posts are cached per account (`cache`); a later fetch asks only for what the cache lacks. The services'
own modules (`x`, `mastodon`, `bluesky`) turn API pages into `Post`s, calling their libraries through `http`, which
waits out rate limits and retries server errors; this module walks the pages and keeps the cache up to date after
every page. It imports the service modules (when one is used); they import `http`, never this module.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import HuggingTweetsError
from ..posts import Post
from . import cache
from .options import FetchOptions, Progress
from .cache import Span
from .http import Clock, Fetcher

__all__ = ["parse_source", "account_name", "load_remote", "fetch_cached"]

# Indirections so tests can stand in for the clock: nothing ever really sleeps under test. The fetchers are handed
# a `Clock` of these (`load_remote`); they never import this module.
_sleep = time.sleep
_now = time.time

# ---------------------------------------------------------------- source syntax

# X: 1-15 letters, digits and underscores.
_X_HANDLE = re.compile(r"[A-Za-z0-9_]{1,15}")
# Mastodon: letters, digits, `_`, with `.` or `-` only inside (Mastodon's own USERNAME_RE, plus what other servers allow).
_FEDI_USER = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?")
# A DNS name: labels of letters, digits and inner hyphens, at least two labels, the last one not all digits.
_HOST = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Bluesky: a handle is a DNS name; an account may also be named by its DID (did:web's is a DNS name too).
_DID = re.compile(rf"did:(?:plc:[a-z2-7]{{24}}|web:{_HOST.pattern})")
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


# ---------------------------------------------------------------- fetching through the cache


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


def _offline(cached: cache.Cached | None, path: Path, label: str, options: FetchOptions, say: Progress) -> list[Post]:
    if cached is None or (not cached.posts and cached.pending):  # never fetched; or a failed first fetch, as older versions noted it
        raise HuggingTweetsError(f"nothing cached for {label} (no {path}): fetch it once without offline mode")
    say(f"{label}: using {len(cached.posts)} cached posts (offline)")
    return _wanted(cached.posts, options)[: options.limit]


class _Fetch:
    """One fetch through the cache: its state, what it has fetched, and when that is saved (see `fetch_cached`)."""

    def __init__(
        self, service: str, account: str, fetcher: Fetcher, options: FetchOptions, say: Progress, cached: cache.Cached | None
    ) -> None:
        self.service, self.account, self.fetcher, self.options, self.say = service, account, fetcher, options, say
        self.cached = cached
        self.state = _start(cached, options, fetcher.label, say)
        # Starting over (refresh, or replies wanted now): the old cache stays on disk, untouched, until the new fetch
        # has gone all the way back, and then keeps the posts older than anything the new one reached (past X's 3,200,
        # say). A start-over that fails or stops at its limit leaves the old cache as it was; the next one starts over.
        self.previous = cached.posts if cached is not None and self.state is not cached else []
        self.known = {p.id: p for p in self.state.posts}
        self.new = 0
        # Nothing is written before the service has answered: a fetch refused at once (a wrong token, an account that
        # does not exist) leaves no cache behind, and an existing one as it was.
        self.changed = False

    def save(self, final: bool = False) -> None:
        if not self.changed or (self.previous and not final):
            return
        # Never replace a cache with nothing unless the account really has no posts.
        if self.cached is None or self.state.posts or not self.state.pending:
            cache.write(self.service, self.account, self.state)

    def walk(self) -> None:
        """Fetch the pending stretches, newest first, saving after every page."""
        state, options = self.state, self.options
        limit = min(options.limit, self.fetcher.max_posts)
        while state.pending:
            span = state.pending[0]
            # Newer posts are always fetched; older stretches only while the cache has fewer posts than asked for.
            budget = limit if span.until is None else limit - len(_wanted(state.posts, options))
            if budget <= 0:
                break  # what is left stays noted, for a later fetch with a larger limit
            if not self.stretch(span, budget):
                state.pending.pop(0)  # the pages ran out without saying so: the stretch is done
                self.changed = True
        if self.previous and not state.pending:
            state.posts = cache.merge(state.posts, _older_than(self.previous, state.posts))
            self.save(final=True)

    def stretch(self, span: Span, budget: int) -> bool:
        """Fetch pages of `span` until it is done or `budget` posts came; False if the pages ran out unsaid."""
        state, label = self.state, self.fetcher.label
        floor = self.known.get(span.since) if span.since else None  # the cached post this stretch ends at
        got = 0
        for page in self.fetcher.pages(span, budget):
            fresh = _unseen(page.posts, self.known, floor)
            done = page.resume is None or len(fresh) < len(page.posts)  # the end, or the cached posts
            got += len(fresh)
            self.new += len(fresh)
            state.posts = cache.merge(state.posts, fresh)
            self.known.update((p.id, p) for p in fresh)
            if done:
                state.pending.pop(0)
            else:
                state.pending[0] = Span(page.resume, span.since)
            self.changed = True
            self.save()
            self.say(f"{label}: {self.new} new posts fetched" + ("" if self.previous else f", {len(state.posts)} in the cache"))
            if done or got >= budget:
                return True
        return False


def fetch_cached(service: str, account: str, fetcher: Fetcher, options: FetchOptions, say: Progress) -> list[Post]:
    """The account's posts, newest first, fetching only what the cache lacks and saving after every page.

    Stops at `options.limit` posts (and the service's own maximum). If anything goes wrong, or Ctrl-C is pressed,
    the posts fetched so far stay in the cache, with a note of what is missing, and the next fetch carries on there.
    Except when starting over (`refresh`, or a cache without the replies or reposts wanted now): then the old cache
    is only replaced once the new fetch is complete, and an interrupted one starts over next time. A fetch that
    fails before the service has answered anything writes nothing.
    """
    path = cache.cache_path(service, account)
    cached = cache.read(service, account)
    if options.offline:
        return _offline(cached, path, fetcher.label, options, say)
    fetch = _Fetch(service, account, fetcher, options, say, cached)
    try:
        fetch.walk()
    except HuggingTweetsError as e:
        if fetch.previous:
            raise HuggingTweetsError(f"{e} (the cache in {path} is as it was; run again to fetch everything again)") from None
        if fetch.new:
            raise HuggingTweetsError(
                f"{e} (kept the {fetch.new} new posts fetched before that in {path}; run again to carry on)"
            ) from None
        raise
    except KeyboardInterrupt:
        kept = "the cache is as it was" if fetch.previous else f"kept {fetch.new} new posts in {path}, run again to carry on"
        say(f"{fetcher.label}: interrupted; {kept}")
        raise
    finally:
        fetch.save()
    posts = _wanted(fetch.state.posts, options)[: options.limit]
    say(f"{fetcher.label}: {len(posts)} posts ({fetch.new} new)")
    return posts


def _quiet(message: str) -> None:
    pass


def load_remote(source: str, options: FetchOptions, progress: Progress | None = None) -> list[Post]:
    """The posts of a service account or Twint database, newest first (see the module docstring for `source`)."""
    service, account = parse_source(source)
    say = progress or _quiet
    fetcher: Fetcher
    clock = Clock(sleep=_sleep, now=_now)  # read here, at the call, so that a test's stand-ins are the ones used
    # Each service's library is imported only when that service is used.
    if service == "twint":
        from .twint import load_twint

        return load_twint(*_split_twint(account), say=say)
    if service == "x":
        from .x import XFetcher

        fetcher = XFetcher(account, options, say, clock)
    elif service == "mastodon":
        from .mastodon import MastodonFetcher

        fetcher = MastodonFetcher(account, options, say, clock)
    else:
        from .bluesky import BlueskyFetcher

        fetcher = BlueskyFetcher(account, options, say, clock)
    return fetch_cached(service, account, fetcher, options, say)
