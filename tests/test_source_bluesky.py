"""Bluesky through the atproto SDK, against `respx` answering like the public AppView (no network, no real sleeping)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from conftest import NOW
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources import FetchOptions, load

FEED = "https://public.api.bsky.app/xrpc/app.bsky.feed.getAuthorFeed"
DID = "did:plc:z72i7hdynmk6r22z27h6tvur"
AUTHOR = {
    "did": DID,
    "handle": "alice.bsky.social",
    "displayName": "Alice",
    "avatar": "https://cdn.bsky.app/a.jpg",
    "labels": [],
    "createdAt": "2023-04-01T00:00:00.000Z",
}


def view(n: int, text: str | None = None, *, author: dict = AUTHOR, reply_to: dict | None = None) -> dict:
    """A post view as app.bsky.feed.defs#postView; higher n = newer."""
    record = {
        "$type": "app.bsky.feed.post",
        "createdAt": f"2026-11-01T10:00:{n:02d}.000Z",
        "langs": ["en"],
        "text": text or f"post {n}",
    }
    if reply_to:
        ref = {"uri": reply_to["uri"], "cid": reply_to["cid"]}
        record["reply"] = {"root": ref, "parent": ref}
    return {
        "uri": f"at://{author['did']}/app.bsky.feed.post/3l{n:04d}",
        "cid": f"bafyreib{n:04d}",
        "author": author,
        "record": record,
        "replyCount": 0,
        "repostCount": n % 2,
        "likeCount": n,
        "quoteCount": 0,
        "indexedAt": f"2026-11-01T10:00:{n:02d}.500Z",
        "labels": [],
    }


def item(n: int, **kwargs) -> dict:
    """A feed item: the post, and for a reply the thread it belongs to."""
    post = view(n, **kwargs)
    entry = {"post": post}
    if kwargs.get("reply_to"):
        parent = kwargs["reply_to"] | {"$type": "app.bsky.feed.defs#postView"}
        entry["reply"] = {"root": parent, "parent": parent}
    return entry


def repost(n: int) -> dict:
    bob = {"did": "did:plc:bobbobbobbobbobbobbobbob", "handle": "bob.bsky.social", "labels": []}
    return {
        "post": view(n, "bob's words", author=bob),
        "reason": {"$type": "app.bsky.feed.defs#reasonRepost", "by": AUTHOR, "indexedAt": "2026-11-01T11:00:00.000Z"},
    }


def feed(items: list[dict], cursor: str | None = None) -> httpx.Response:
    body: dict = {"feed": items}
    if cursor:
        body["cursor"] = cursor
    return httpx.Response(200, json=body)


@pytest.fixture()
def route(home: Path, clock: list[float]):
    with respx.mock(assert_all_called=False) as mock:
        yield mock.get(FEED)


def fetch(options: FetchOptions | None = None, messages: list[str] | None = None, source: str = "bsky:alice"):
    return load(source, options or FetchOptions(), (messages if messages is not None else []).append)


def sent(route) -> list[httpx.QueryParams]:
    return [call.request.url.params for call in route.calls]


def test_pages_follow_the_cursor_and_reposts_are_skipped(route, home):
    parent = view(1, author={"did": "did:plc:carolcarolcarolcarolcaro", "handle": "carol.bsky.social"})
    route.side_effect = [
        feed([item(6), repost(5), item(4, reply_to=parent)], cursor="2026-11-01T10:00:04.500Z"),
        feed([item(3)], cursor="2026-11-01T10:00:03.500Z"),
        feed([]),  # the end: no cursor
    ]
    posts = fetch(FetchOptions(include_replies=True), source="https://bsky.app/profile/alice.bsky.social")

    assert [p.text for p in posts] == ["post 6", "post 4", "post 3"]  # bob's words were a repost
    assert [p.is_reply for p in posts] == [False, True, False]
    assert posts[0].id == f"at://{DID}/app.bsky.feed.post/3l0006"
    assert posts[0].likes == 6 and posts[0].author == "alice.bsky.social" and posts[0].created_at.tzinfo is not None
    first, second, _ = sent(route)
    assert first["actor"] == "alice.bsky.social" and first["filter"] == "posts_with_replies" and first["limit"] == "100"
    assert "cursor" not in first and second["cursor"] == "2026-11-01T10:00:04.500Z"
    assert (home / "data" / "bluesky" / "alice.bsky.social.jsonl").is_file()


def test_replies_are_left_out_by_default(route):
    route.side_effect = [feed([item(1)])]
    fetch()
    assert sent(route)[0]["filter"] == "posts_no_replies"


def test_limit_stops_paginating(route):
    route.side_effect = [feed([item(n) for n in range(50 - 10 * k, 40 - 10 * k, -1)], cursor=f"c{k}") for k in range(5)]
    assert len(fetch(FetchOptions(limit=15))) == 15
    assert route.call_count == 2


def test_second_fetch_stops_at_the_cached_posts_and_merges(route, home):
    route.side_effect = [feed([item(2), item(1)])]
    fetch()
    route.side_effect = [feed([item(4), item(3), item(2), item(1)], cursor="more"), feed([item(0)])]
    posts = fetch()
    assert route.call_count == 2  # the second page was not asked for: post 2 was known
    assert [p.text for p in posts] == ["post 4", "post 3", "post 2", "post 1"]
    lines = (home / "data" / "bluesky" / "alice.bsky.social.jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["post 4", "post 3", "post 2", "post 1"]


def test_interrupted_fetch_resumes_at_its_cursor(route, home):
    def interrupted(request):
        raise KeyboardInterrupt

    answers = iter([lambda request: feed([item(9), item(8)], cursor="after-8"), interrupted])
    route.side_effect = lambda request: next(answers)(request)
    with pytest.raises(KeyboardInterrupt):
        fetch()
    route.side_effect = [feed([item(9)]), feed([item(7)])]
    posts = fetch()
    assert [p.text for p in posts] == ["post 9", "post 8", "post 7"]
    newer, older = sent(route)[-2:]
    assert "cursor" not in newer and older["cursor"] == "after-8"


def test_unknown_handle(route):
    route.side_effect = [httpx.Response(400, json={"error": "InvalidRequest", "message": "Profile not found"})]
    with pytest.raises(HuggingTweetsError, match="Bluesky has no account alice.bsky.social"):
        fetch()


def test_suspended_account(route):
    route.side_effect = [
        httpx.Response(400, json={"error": "AccountTakedown", "message": "Account has been suspended"})
    ]
    with pytest.raises(HuggingTweetsError, match="AccountTakedown"):
        fetch()


def test_rate_limit_waits_until_reset(route, clock):
    route.side_effect = [
        httpx.Response(
            429,
            json={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
            headers={"ratelimit-limit": "3000", "ratelimit-remaining": "0", "ratelimit-reset": str(NOW + 30)},
        ),
        feed([item(1)]),
    ]
    messages: list[str] = []
    assert len(fetch(messages=messages)) == 1
    assert clock == [30]
    assert any("Bluesky rate limit reached: waiting 30 s" in m for m in messages)


def test_server_errors_are_retried_then_given_up(route, clock):
    route.side_effect = [
        httpx.Response(500, json={"error": "InternalServerError", "message": "Internal Server Error"}),
        feed([item(1)]),
    ]
    assert len(fetch()) == 1 and clock == [2]
    clock.clear()
    route.side_effect = None
    route.return_value = httpx.Response(502, text="Bad Gateway")
    with pytest.raises(HuggingTweetsError, match="502"):
        fetch(FetchOptions(refresh=True))
    assert clock == [2, 4, 8]


def test_a_dropped_connection_is_retried_then_one_line(route, clock):
    # atproto wraps timeouts and connection failures, but passes other transport errors through as httpx's own.
    route.side_effect = [httpx.RemoteProtocolError("peer closed connection"), feed([item(1)])]
    assert len(fetch()) == 1 and clock == [2]
    clock.clear()
    route.side_effect = httpx.RemoteProtocolError("peer closed connection")
    with pytest.raises(HuggingTweetsError, match=r"Bluesky kept failing \(network error, 4 tries\)") as e:
        fetch(FetchOptions(refresh=True))
    assert clock == [2, 4, 8] and "\n" not in str(e.value)
