"""The cache of fetched posts and the fetch loop around it, with a stand-in service (no library, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from huggingtweets.errors import HuggingTweetsError
from huggingtweets.posts import Post
from huggingtweets.sources import FetchOptions, cache
from huggingtweets.sources.cache import Span
from huggingtweets.sources.http import Page
from huggingtweets.sources.remote import fetch_cached

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def post(n: int, reply: bool = False) -> Post:
    return Post(text=f"post {n}", id=f"{n:04d}", created_at=T0 + timedelta(minutes=n), is_reply=reply, source="test")


class Service:
    """A timeline served newest first in pages of `size`, honouring `Span.until`/`since` like X and Mastodon."""

    label = "Test @a"
    max_posts = 1000

    def __init__(
        self, posts: list[Post], size: int = 2, fail_on_page: int | None = None, error: BaseException | None = None
    ):
        self.posts = sorted(posts, key=lambda p: p.id, reverse=True)
        self.size, self.fail_on_page, self.error = size, fail_on_page, error
        self.spans: list[Span] = []
        self.served = 0

    def pages(self, span: Span, budget: int) -> Iterator[Page]:
        self.spans.append(span)
        todo = [
            p
            for p in self.posts
            if (span.until is None or p.id < span.until) and (span.since is None or p.id > span.since)
        ]
        if not todo:
            yield Page([], None)
        for start in range(0, len(todo), self.size):
            if self.fail_on_page is not None and self.served == self.fail_on_page:
                raise self.error or HuggingTweetsError("the service broke")
            self.served += 1
            chunk = todo[start : start + self.size]
            yield Page(chunk, chunk[-1].id if start + self.size < len(todo) else None)


def run(service: Service, options: FetchOptions | None = None, messages: list[str] | None = None) -> list[Post]:
    return fetch_cached("x", "a", service, options or FetchOptions(), (messages if messages is not None else []).append)


def cached_ids(home: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (home / "data" / "x" / "a.jsonl").read_text().splitlines()]


def test_merge_keeps_one_of_each_newest_first_and_the_fresher_copy():
    old = [post(3), post(1)]
    fresher = Post(text="post 3", id="0003", created_at=post(3).created_at, likes=99)
    merged = cache.merge(old, [post(4), fresher, post(2)])
    assert [p.id for p in merged] == ["0004", "0003", "0002", "0001"]
    assert merged[1].likes == 99


def test_cache_paths_stay_inside_the_data_folder(home):
    assert cache.cache_path("bluesky", "did:plc:abc").name == "did_plc_abc.jsonl"
    assert cache.cache_path("x", "Jack").parent == home / "data" / "x"
    with pytest.raises(HuggingTweetsError):
        cache.cache_path("x", "..")


def test_first_fetch_walks_all_pages_and_writes_atomically(home):
    service = Service([post(n) for n in range(1, 6)])
    posts = run(service)
    assert [p.id for p in posts] == ["0005", "0004", "0003", "0002", "0001"]
    assert cached_ids(home) == [p.id for p in posts]
    assert not [f for f in (home / "data" / "x").iterdir() if f.name.endswith(".tmp")]
    meta = json.loads((home / "data" / "x" / "a.meta.json").read_text())
    assert meta["pending"] == []


def test_later_fetch_asks_only_for_newer_posts(home):
    run(Service([post(1), post(2)]))
    service = Service([post(n) for n in range(1, 5)])
    posts = run(service)
    assert service.spans == [Span(None, "0002")]
    assert [p.id for p in posts] == ["0004", "0003", "0002", "0001"]


def test_interrupted_fetch_keeps_its_posts_and_carries_on(home):
    timeline = [post(n) for n in range(1, 8)]
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run(Service(timeline, fail_on_page=2, error=KeyboardInterrupt()), messages=messages)
    assert cached_ids(home) == ["0007", "0006", "0005", "0004"]
    assert any("interrupted" in m for m in messages)

    timeline.append(post(8))  # posted meanwhile
    service = Service(timeline)
    posts = run(service)
    assert service.spans == [Span(None, "0007"), Span("0004", None)]  # what is newer, then the rest
    assert [p.id for p in posts] == [f"{n:04d}" for n in range(8, 0, -1)]


def test_a_failure_says_how_many_posts_were_kept(home):
    with pytest.raises(HuggingTweetsError, match=r"the service broke \(kept the 4 new posts"):
        run(Service([post(n) for n in range(1, 8)], fail_on_page=2))
    assert len(cached_ids(home)) == 4


def test_an_unexpected_error_keeps_the_posts_too(home):
    with pytest.raises(RuntimeError):
        run(Service([post(n) for n in range(1, 8)], fail_on_page=1, error=RuntimeError("bug")))
    assert cached_ids(home) == ["0007", "0006"]


def test_limit_leaves_the_rest_for_a_larger_limit(home):
    timeline = [post(n) for n in range(1, 9)]
    assert len(run(Service(timeline), FetchOptions(limit=4))) == 4
    service = Service(timeline)
    assert len(run(service, FetchOptions(limit=100))) == 8
    assert service.spans[-1] == Span("0005", None)


def test_refresh_that_fails_at_once_leaves_the_old_cache(home):
    run(Service([post(1), post(2)]))
    with pytest.raises(HuggingTweetsError):
        run(Service([post(1), post(2)], fail_on_page=0), FetchOptions(refresh=True))
    assert cached_ids(home) == ["0002", "0001"]


def test_refresh_refetches_everything(home):
    run(Service([post(1), post(2)]))
    service = Service([post(1), post(2), post(3)])
    run(service, FetchOptions(refresh=True))
    assert service.spans == [Span(None, None)]


def test_a_cache_without_replies_is_refetched_when_replies_are_wanted(home):
    run(Service([post(1), post(2)]))
    service = Service([post(1), post(2, reply=True), post(3)])
    messages: list[str] = []
    posts = run(service, FetchOptions(include_replies=True), messages)
    assert service.spans == [Span(None, None)]
    assert any("without replies" in m for m in messages)
    assert [p.is_reply for p in posts] == [False, True, False]
    # and a fetch without replies afterwards neither refetches nor returns them
    service = Service([post(1), post(2, reply=True), post(3)])
    assert [p.id for p in run(service)] == ["0003", "0001"]
    assert service.spans == [Span(None, "0003")]


def test_starting_over_leaves_the_old_cache_until_done_and_keeps_posts_out_of_reach(home):
    run(Service([post(n) for n in range(1, 7)]))  # six posts, fetched without replies
    # Replies wanted now: everything is fetched again. The service reaches back to post 3 only (X stops at 3,200).
    reachable = [post(n) for n in range(3, 7)] + [post(7, reply=True)]
    with pytest.raises(HuggingTweetsError, match="as it was"):
        run(Service(reachable, fail_on_page=1), FetchOptions(include_replies=True))
    assert cached_ids(home) == ["0006", "0005", "0004", "0003", "0002", "0001"]  # a failed start-over loses nothing
    posts = run(Service(reachable), FetchOptions(include_replies=True))
    assert [p.id for p in posts] == ["0007", "0006", "0005", "0004", "0003", "0002", "0001"]
    assert cached_ids(home) == [p.id for p in posts] and posts[0].is_reply


def test_a_start_over_stopped_by_its_limit_leaves_the_old_cache(home):
    run(Service([post(n) for n in range(1, 7)]))
    posts = run(Service([post(n) for n in range(1, 7)] + [post(7, reply=True)]), FetchOptions(include_replies=True, limit=3))
    assert [p.id for p in posts] == ["0007", "0006", "0005"]
    assert cached_ids(home) == ["0006", "0005", "0004", "0003", "0002", "0001"]  # the older posts are not dropped


def test_offline_reads_the_cache_and_filters_it(home):
    run(Service([post(1), post(2, reply=True)]), FetchOptions(include_replies=True))
    service = Service([])
    assert [p.id for p in run(service, FetchOptions(offline=True))] == ["0001"]
    assert [p.id for p in run(service, FetchOptions(offline=True, include_replies=True))] == ["0002", "0001"]
    assert service.spans == []


def test_offline_without_a_cache_fails_clearly(home):
    with pytest.raises(HuggingTweetsError, match="nothing cached for Test @a"):
        run(Service([]), FetchOptions(offline=True))


def test_a_damaged_cache_is_one_line(home):
    path = home / "data" / "x" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "1", "text": "ok"}\n{not json\n')
    with pytest.raises(HuggingTweetsError, match="damaged") as e:
        run(Service([]))
    assert "\n" not in str(e.value)


def test_a_deleted_post_still_ends_the_newer_stretch_by_time(home):
    run(Service([post(1), post(2)]))

    class NoSince(Service):  # like Bluesky: no since parameter, the loop has to notice where the cache begins
        def pages(self, span: Span, budget: int) -> Iterator[Page]:
            return super().pages(Span(span.until, None), budget)

    service = NoSince([post(0), post(3), post(4)], size=3)  # post 2 deleted meanwhile, post 0 is older than it
    assert [p.id for p in run(service)] == ["0004", "0003", "0002", "0001"]


def test_a_fetch_refused_before_any_page_writes_nothing(home):
    # A wrong token or an account that does not exist: no cache is left behind for it...
    with pytest.raises(HuggingTweetsError):
        run(Service([post(1)], fail_on_page=0))
    assert not (home / "data").exists()
    # ...and an existing cache, posts and note alike, is left as it was.
    run(Service([post(1), post(2)], size=1), FetchOptions(limit=1))
    folder = home / "data" / "x"
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    with pytest.raises(HuggingTweetsError):
        run(Service([post(1), post(2), post(3)], fail_on_page=0))
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
