"""X API v2 through tweepy, against `responses` answering in the API's own shapes (no network, no real sleeping)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import requests
import responses

from conftest import NOW, params
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources import FetchOptions, load

API = "https://api.twitter.com/2"
USER_URL = f"{API}/users/by/username/jack"
TWEETS_URL = f"{API}/users/12/tweets"
TOKEN = "AAAAAAAAAAAAAAAAAAAAAsecret-bearer-token-value%3D42"

USER = {"data": {"id": "12", "name": "jack", "username": "jack"}}


def tweet(n: int, text: str | None = None, kind: str | None = None, note: str | None = None) -> dict:
    """A post as `GET /2/users/:id/tweets` returns it with our tweet.fields; higher n = newer."""
    t = {
        "id": str(1_000_000 + n),
        "text": text or f"post number {n}",
        "created_at": f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        "edit_history_tweet_ids": [str(1_000_000 + n)],
        "public_metrics": {
            "retweet_count": n % 3,
            "reply_count": 0,
            "like_count": n,
            "quote_count": 0,
            "bookmark_count": 0,
            "impression_count": 10 * n,
        },
    }
    if kind:
        t["referenced_tweets"] = [{"type": kind, "id": "999"}]
        if kind == "replied_to":
            t["in_reply_to_user_id"] = "77"
    if note:
        t["note_tweet"] = {"text": note, "entities": {}}
    return t


def page(tweets: list[dict], next_token: str | None = None) -> dict:
    meta = {"result_count": len(tweets)}
    if tweets:
        meta |= {"newest_id": tweets[0]["id"], "oldest_id": tweets[-1]["id"]}
    if next_token:
        meta["next_token"] = next_token
    return {"data": tweets, "meta": meta} if tweets else {"meta": meta}


@pytest.fixture()
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    return TOKEN


@pytest.fixture()
def api(home: Path, token: str, clock: list[float]):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(USER_URL, json=USER)
        yield mock


def fetch(options: FetchOptions | None = None, messages: list[str] | None = None):
    return load("@jack", options or FetchOptions(), (messages if messages is not None else []).append)


def timeline_calls(api: responses.RequestsMock) -> list[dict[str, str]]:
    return [params(c) for c in api.calls if c.request.url.startswith(TWEETS_URL)]


def test_pages_are_followed_and_posts_converted(api, home):
    # responses answers in the order registered: page one, then page two (the last page has no next_token)
    api.get(TWEETS_URL, json=page([tweet(5), tweet(4), tweet(3, "cut…", note="a long post " * 40)], "tok2"))
    api.get(TWEETS_URL, json=page([tweet(2, "RT @bob: hi", kind="retweeted"), tweet(1)]))
    messages: list[str] = []
    posts = fetch(FetchOptions(include_reposts=True, include_replies=True), messages)

    assert [p.id for p in posts] == ["1000005", "1000004", "1000003", "1000002", "1000001"]
    assert posts[2].text == ("a long post " * 40)  # note_tweet's full text, not the cut one
    assert posts[3].is_retweet and not posts[0].is_retweet
    assert posts[0].likes == 5 and posts[0].reposts == 2 and posts[0].author == "jack" and posts[0].source == "x-api"
    assert posts[0].created_at is not None and posts[0].created_at.tzinfo is not None
    calls = timeline_calls(api)
    assert len(calls) == 2 and calls[1]["pagination_token"] == "tok2"
    assert "exclude" not in calls[0]  # replies and reposts were asked for
    assert set(calls[0]["tweet.fields"].split(",")) >= {
        "created_at",
        "public_metrics",
        "referenced_tweets",
        "note_tweet",
    }
    # the cache holds them too
    cached = (home / "data" / "x" / "jack.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in cached] == [p.id for p in posts]
    assert "0.005" in messages[0] and "$" in messages[0]  # the cost estimate comes before the first request


def test_reply_flag_and_default_excludes(api):
    api.get(TWEETS_URL, json=page([tweet(2, kind="replied_to"), tweet(1)]))
    messages: list[str] = []
    posts = fetch(FetchOptions(include_replies=True), messages)
    assert [p.is_reply for p in posts] == [True, False]
    assert timeline_calls(api)[0]["exclude"] == "retweets"
    posts = fetch(FetchOptions(refresh=True), messages)
    assert timeline_calls(api)[1]["exclude"] == "retweets,replies"
    assert any("800" in m for m in messages)  # X's cap without replies is said


def test_stops_at_3200_posts_whatever_the_limit(api):
    served = iter(range(100_000, 0, -1))

    def endless(request):  # every page full and pointing to another one
        return 200, {}, json.dumps(page([tweet(next(served)) for _ in range(100)], "more"))

    api.add_callback(responses.GET, TWEETS_URL, callback=endless)
    posts = fetch(FetchOptions(limit=10_000, include_replies=True))
    assert len(posts) == 3200
    assert len(timeline_calls(api)) == 32


def test_a_small_limit_asks_x_for_no_more_posts_than_needed(api):
    api.get(TWEETS_URL, json=page([tweet(n) for n in range(20, 8, -1)]))
    posts = fetch(FetchOptions(limit=12, include_replies=True))
    assert len(posts) == 12
    assert timeline_calls(api)[0]["max_results"] == "12"


def test_no_token_says_how_to_set_one_and_the_free_alternatives(home, monkeypatch):
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    with responses.RequestsMock():  # and no request is made
        with pytest.raises(HuggingTweetsError) as e:
            fetch()
    message = str(e.value)
    assert "X_BEARER_TOKEN" in message and "archive" in message and "mastodon" in message and "bsky" in message
    assert "\n" not in message


def test_token_from_options_then_either_variable(home, monkeypatch, clock):
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", "old-name-token")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(USER_URL, json=USER)
        mock.get(TWEETS_URL, json=page([tweet(1)]))
        fetch()
        fetch(FetchOptions(x_bearer_token="option-token", refresh=True))
        auth = [c.request.headers["Authorization"] for c in mock.calls]
    assert auth[0] == "Bearer old-name-token" and auth[-1] == "Bearer option-token"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
            "rejected the bearer token",
        ),
        (
            403,
            {
                "title": "Forbidden",
                "type": "https://api.twitter.com/2/problems/client-forbidden",
                "reason": "client-not-enrolled",
                "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a "
                "Twitter developer App that is attached to a Project.",
            },
            "credits",
        ),
        (
            402,
            {
                "title": "Payment Required",
                "detail": "credits depleted",
                "type": "https://api.x.com/2/problems/credits-depleted",
            },
            "credits are used up",
        ),
        (
            429,
            {
                "account_id": "1",
                "product_name": "standard-basic",
                "title": "UsageCapExceeded",
                "period": "Monthly",
                "scope": "Product",
                "detail": "Usage cap exceeded: Monthly product cap",
                "type": "https://api.twitter.com/2/problems/usage-capped",
            },
            "usage cap",
        ),
    ],
)
def test_http_errors_become_one_line(home, token, clock, status, body, expected):
    with responses.RequestsMock() as mock:
        mock.get(USER_URL, json=body, status=status, headers={"x-rate-limit-reset": str(NOW + 60)})
        with pytest.raises(HuggingTweetsError) as e:
            fetch()
    message = str(e.value)
    assert expected in message and "\n" not in message and TOKEN not in message
    assert clock == []  # none of these is worth waiting for


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {
                "value": "jack",
                "detail": "Could not find user with username: [jack].",
                "title": "Not Found Error",
                "resource_type": "user",
                "parameter": "username",
                "resource_id": "jack",
                "type": "https://api.twitter.com/2/problems/resource-not-found",
            },
            "does not exist",
        ),
        (
            {
                "value": "jack",
                "detail": "User has been suspended: [jack].",
                "title": "Forbidden",
                "resource_type": "user",
                "parameter": "username",
                "resource_id": "jack",
                "type": "https://api.twitter.com/2/problems/resource-not-found",
            },
            "suspended",
        ),
    ],
)
def test_missing_and_suspended_users_answer_200_with_errors(home, token, clock, error, expected):
    with responses.RequestsMock() as mock:
        mock.get(USER_URL, json={"errors": [error]})
        with pytest.raises(HuggingTweetsError, match=expected):
            fetch()


def test_protected_user_is_refused_on_the_timeline(api):
    api.get(
        TWEETS_URL,
        json={
            "errors": [
                {
                    "resource_id": "12",
                    "parameter": "id",
                    "resource_type": "user",
                    "section": "data",
                    "title": "Authorization Error",
                    "value": "12",
                    "detail": "Sorry, you are not authorized to see the user with id: [12].",
                    "type": "https://api.twitter.com/2/problems/not-authorized-for-resource",
                }
            ]
        },
    )
    with pytest.raises(HuggingTweetsError, match="protected"):
        fetch()


def rate_limited() -> dict:
    return dict(
        json={"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
        status=429,
        headers={"x-rate-limit-limit": "1500", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(NOW + 150)},
    )


def test_rate_limit_waits_until_reset_with_a_countdown(api, clock):
    api.get(TWEETS_URL, **rate_limited())
    api.get(TWEETS_URL, json=page([tweet(1)]))
    messages: list[str] = []
    posts = fetch(messages=messages)
    assert [p.id for p in posts] == ["1000001"]
    assert clock == [60, 60, 31]  # until the reset, plus a second for clock skew, told every minute
    assert any("waiting 151 s" in m for m in messages)
    assert any("91 s left" in m for m in messages) and any("31 s left" in m for m in messages)


def test_rate_limit_without_waiting_raises_and_keeps_earlier_pages(api, home, clock):
    api.get(TWEETS_URL, json=page([tweet(3), tweet(2)], "tok2"))
    api.get(TWEETS_URL, **rate_limited())
    with pytest.raises(HuggingTweetsError, match="rate limit") as e:
        fetch(FetchOptions(wait_on_rate_limit=False))
    assert "kept the 2 new posts" in str(e.value)
    assert clock == []
    assert len((home / "data" / "x" / "jack.jsonl").read_text().splitlines()) == 2


def test_server_error_is_retried_with_backoff(api, clock):
    api.get(
        TWEETS_URL,
        json={"title": "Service Unavailable", "detail": "Service Unavailable", "type": "about:blank", "status": 503},
        status=503,
    )
    api.get(TWEETS_URL, json=page([tweet(1)]))
    messages: list[str] = []
    assert len(fetch(messages=messages)) == 1
    assert clock == [2]
    assert any("503" in m and "trying again" in m for m in messages)


def test_server_error_that_persists_stops_and_keeps_what_was_fetched(api, home, clock):
    api.get(TWEETS_URL, json=page([tweet(n) for n in range(9, 4, -1)], "tok2"))
    api.get(TWEETS_URL, json={"title": "Service Unavailable", "status": 503}, status=503)  # and again, every time
    with pytest.raises(HuggingTweetsError) as e:
        fetch()
    assert clock == [2, 4, 8]
    assert "503" in str(e.value) and "kept the 5 new posts" in str(e.value)
    assert len((home / "data" / "x" / "jack.jsonl").read_text().splitlines()) == 5


def test_second_fetch_asks_only_for_newer_posts_and_merges(api, home):
    api.get(TWEETS_URL, json=page([tweet(3), tweet(2), tweet(1)]))
    fetch()
    api.replace(responses.GET, TWEETS_URL, json=page([tweet(5), tweet(4), tweet(3)]))  # 3 again: X's edge overlap
    posts = fetch()
    assert timeline_calls(api)[-1]["since_id"] == "1000003"
    assert [p.id[-1] for p in posts] == ["5", "4", "3", "2", "1"]
    ids = [json.loads(line)["id"] for line in (home / "data" / "x" / "jack.jsonl").read_text().splitlines()]
    assert ids == [p.id for p in posts]


def test_refresh_asks_for_everything(api):
    api.get(TWEETS_URL, json=page([tweet(1)]))
    fetch()
    fetch(FetchOptions(refresh=True))
    assert "since_id" not in timeline_calls(api)[-1]


def test_interrupted_fetch_keeps_its_posts_and_resumes_below_them(api, home):
    def interrupted(request):
        raise KeyboardInterrupt

    api.get(TWEETS_URL, json=page([tweet(9), tweet(8)], "tok2"))
    api.add_callback(responses.GET, TWEETS_URL, callback=interrupted)
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        fetch(messages=messages)
    assert any("interrupted" in m and "2 new posts" in m for m in messages)
    assert len((home / "data" / "x" / "jack.jsonl").read_text().splitlines()) == 2

    api.replace(responses.GET, TWEETS_URL, json=page([]))  # nothing newer than 9...
    api.add(
        responses.GET,
        TWEETS_URL,
        json=page([tweet(7), tweet(6)]),  # ...and the rest below 8
        match=[responses.matchers.query_param_matcher({"until_id": "1000008"}, strict_match=False)],
    )
    posts = fetch()
    assert [p.id[-1] for p in posts] == ["9", "8", "7", "6"]
    newer, older = timeline_calls(api)[-2:]
    assert newer["since_id"] == "1000009" and "until_id" not in newer
    assert older["until_id"] == "1000008" and "since_id" not in older


def test_offline_uses_the_cache_only(api, home):
    api.get(TWEETS_URL, json=page([tweet(2), tweet(1)]))
    fetch()
    before = len(api.calls)
    assert [p.id for p in fetch(FetchOptions(offline=True))] == ["1000002", "1000001"]
    assert len(api.calls) == before


def test_offline_without_a_cache_says_so(home, monkeypatch):
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)  # offline needs no token either
    with responses.RequestsMock():
        with pytest.raises(HuggingTweetsError, match="nothing cached"):
            fetch(FetchOptions(offline=True))


def test_token_never_shows_in_messages_logs_cache_or_errors(api, home, caplog):
    caplog.set_level(logging.DEBUG)  # tweepy logs each request's headers at DEBUG
    api.get(TWEETS_URL, json=page([tweet(2), tweet(1)], "tok2"))
    api.get(
        TWEETS_URL,
        json={"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
        status=401,
    )
    messages: list[str] = []
    options = FetchOptions(x_bearer_token=TOKEN)
    with pytest.raises(HuggingTweetsError) as e:
        fetch(options, messages)
    assert api.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"  # it was used...
    assert "Making API request" in caplog.text  # ...tweepy did log the request...
    for text in [str(e.value), caplog.text, *messages, repr(options)]:
        assert TOKEN not in text  # ...and it shows nowhere
    for file in home.rglob("*"):
        if file.is_file():
            assert TOKEN not in file.read_text(encoding="utf-8", errors="replace")


def test_network_failure_is_one_line(home, token, clock):
    with responses.RequestsMock() as mock:
        mock.get(USER_URL, body=requests.ConnectionError("Name or service not known"))
        with pytest.raises(HuggingTweetsError, match="network error") as e:
            fetch()
    assert clock == [2, 4, 8] and not re.search(r"\n", str(e.value))
