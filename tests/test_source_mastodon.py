"""Mastodon through Mastodon.py, against `responses` answering like a Mastodon 4 server (no network, no real sleeping)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import responses

from conftest import params
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources import FetchOptions, load, remote
from huggingtweets.sources.html import html_to_text

BASE = "https://mastodon.example"
LOOKUP = f"{BASE}/api/v1/accounts/lookup"
STATUSES = f"{BASE}/api/v1/accounts/109/statuses"

ACCOUNT = {
    "id": "109",
    "username": "alice",
    "acct": "alice",
    "display_name": "Alice",
    "locked": False,
    "bot": False,
    "discoverable": True,
    "group": False,
    "created_at": "2022-11-01T00:00:00.000Z",
    "note": "<p>bio</p>",
    "url": f"{BASE}/@alice",
    "uri": f"{BASE}/users/alice",
    "avatar": f"{BASE}/a.png",
    "avatar_static": f"{BASE}/a.png",
    "header": f"{BASE}/h.png",
    "header_static": f"{BASE}/h.png",
    "followers_count": 10,
    "following_count": 5,
    "statuses_count": 6,
    "last_status_at": "2026-11-01",
    "emojis": [],
    "fields": [],
}


def status(
    n: int, content: str | None = None, *, reply: bool = False, cw: str = "", reblog: dict | None = None
) -> dict:
    """A status as `GET /api/v1/accounts/:id/statuses` returns it; higher n = newer."""
    return {
        "id": str(110_000 + n),
        "created_at": f"2026-11-01T10:00:{n:02d}.000Z",
        "in_reply_to_id": "5" if reply else None,
        "in_reply_to_account_id": "6" if reply else None,
        "sensitive": bool(cw),
        "spoiler_text": cw,
        "visibility": "public",
        "language": "en",
        "uri": f"{BASE}/users/alice/statuses/{110_000 + n}",
        "url": f"{BASE}/@alice/{110_000 + n}",
        "replies_count": 0,
        "reblogs_count": 1,
        "favourites_count": n,
        "edited_at": None,
        "content": "" if reblog else (content or f"<p>post {n}</p>"),
        "reblog": reblog,
        "application": None,
        "account": ACCOUNT,
        "media_attachments": [],
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def link(max_id: str, min_id: str) -> dict[str, str]:
    return {
        "Link": f'<{STATUSES}?limit=40&max_id={max_id}>; rel="next", <{STATUSES}?limit=40&min_id={min_id}>; rel="prev"'
    }


@pytest.fixture()
def api(home: Path, clock: list[float]):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(LOOKUP, json=ACCOUNT)
        yield mock


def fetch(
    options: FetchOptions | None = None,
    messages: list[str] | None = None,
    source: str = "mastodon:alice@mastodon.example",
):
    return load(source, options or FetchOptions(), (messages if messages is not None else []).append)


def status_calls(api: responses.RequestsMock) -> list[dict[str, str]]:
    return [params(c) for c in api.calls if c.request.url.startswith(STATUSES)]


# ---------------------------------------------------------------- HTML to text


def test_html_to_text_mentions_links_paragraphs_and_entities():
    html = (
        '<p>Hi <span class="h-card" translate="no"><a href="https://other.example/@bob" class="u-url mention">'
        '@<span>bob</span></a></span> &amp; <a href="https://mastodon.example/tags/cats" class="mention hashtag" rel="tag">'
        '#<span>cats</span></a></p><p>see <a href="https://example.com/a/long/path" target="_blank" rel="nofollow noopener">'
        '<span class="invisible">https://</span><span class="ellipsis">example.com/a/lo</span>'
        '<span class="invisible">ng/path</span></a><br>bye &lt;3 &#39;ok&#39;</p>'
    )
    assert html_to_text(html) == "Hi @bob & #cats\n\nsee https://example.com/a/long/path\nbye <3 'ok'"


def test_html_to_text_drops_the_quote_fallback_and_keeps_lists():
    html = '<p class="quote-inline">RE: <a href="https://x.example/1">x.example/1</a></p><p>mine</p><ul><li>a</li><li>b</li></ul>'
    assert html_to_text(html) == "mine\n\na\nb"


# ---------------------------------------------------------------- fetching


def test_pages_follow_the_link_header(api, home):
    api.get(
        STATUSES, json=[status(6, cw="spoilers"), status(5, reply=True), status(4)], headers=link("110004", "110006")
    )
    api.get(STATUSES, json=[status(3, "<p>a &amp; b<br>c</p>")], headers=link("110003", "110003"))
    api.get(STATUSES, json=[])  # Mastodon's empty last page, without a Link header
    posts = fetch(FetchOptions(include_replies=True))

    assert [p.id for p in posts] == ["110006", "110005", "110004", "110003"]
    assert posts[0].content_warning == "spoilers" and posts[0].text == "post 6"
    assert posts[1].is_reply and not posts[0].is_reply
    assert posts[3].text == "a & b\nc"
    assert posts[0].likes == 6 and posts[0].reposts == 1 and posts[0].author == "alice@mastodon.example"
    assert posts[0].created_at == datetime(2026, 11, 1, 10, 0, 6, tzinfo=timezone.utc)
    first, second, _ = status_calls(api)
    assert first["limit"] == "40" and first["exclude_reblogs"] in ("1", "true", "True")
    assert "exclude_replies" not in first  # replies were asked for
    assert second["max_id"] == "110004"
    assert params(api.calls[0]) == {"acct": "alice"}
    assert (home / "data" / "mastodon" / "alice@mastodon.example.jsonl").is_file()


def test_profile_url_and_boosts_when_asked_for(api):
    boosted = status(1, "<p>someone else's words</p>") | {
        "id": "99",
        "account": ACCOUNT | {"id": "7", "acct": "carol@else.example"},
    }
    api.get(STATUSES, json=[status(2, reblog=boosted), status(1)])
    posts = fetch(FetchOptions(include_reposts=True), source="https://mastodon.example/@alice")
    assert posts[0].is_retweet and posts[0].text == "someone else's words"
    assert not posts[1].is_retweet
    assert "exclude_reblogs" not in status_calls(api)[0] and "exclude_replies" in status_calls(api)[0]


def test_second_fetch_sends_since_id_and_merges(api, home):
    api.get(STATUSES, json=[status(2), status(1)])
    fetch()
    api.replace(responses.GET, STATUSES, json=[status(4), status(3)])
    posts = fetch()
    assert status_calls(api)[-1]["since_id"] == "110002"
    assert [p.id for p in posts] == ["110004", "110003", "110002", "110001"]
    lines = (home / "data" / "mastodon" / "alice@mastodon.example.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [p.id for p in posts]


def test_unknown_account(home, clock):
    with responses.RequestsMock() as mock:
        mock.get(LOOKUP, json={"error": "Record not found"}, status=404)
        with pytest.raises(HuggingTweetsError, match="has no account @alice"):
            fetch()


def test_unknown_instance_fails_at_once(home, clock):
    with responses.RequestsMock() as mock:
        mock.get(LOOKUP, body=requests.ConnectionError("Name or service not known"))
        with pytest.raises(HuggingTweetsError, match="could not reach https://mastodon.example"):
            fetch()
    assert clock == []


def test_not_a_mastodon_server(home, clock):
    with responses.RequestsMock() as mock:
        mock.get(LOOKUP, body="<html>a blog</html>", content_type="text/html")
        with pytest.raises(HuggingTweetsError, match="not answer like a Mastodon server"):
            fetch()


def test_sign_in_required(home, clock):
    with responses.RequestsMock() as mock:
        mock.get(LOOKUP, json=ACCOUNT)
        mock.get(STATUSES, json={"error": "This method requires an authenticated user"}, status=401)
        with pytest.raises(HuggingTweetsError, match="signed-in"):
            fetch()


def test_rate_limit_waits_for_the_reset_header(api, clock, monkeypatch):
    # Mastodon.py ignores a reset time already past by the real clock, so this test's clock reads the real time.
    now = int(time.time())
    monkeypatch.setattr(remote, "_now", lambda: now)
    reset = datetime.fromtimestamp(now + 100, tz=timezone.utc).isoformat()
    api.get(
        STATUSES,
        json={"error": "Too many requests"},
        status=429,
        headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
    )
    api.get(STATUSES, json=[status(1)])
    messages: list[str] = []
    posts = fetch(messages=messages)
    assert [p.id for p in posts] == ["110001"]
    assert clock == [60, 40]
    assert any("rate limit reached: waiting 100 s" in m for m in messages) and any("40 s left" in m for m in messages)


def test_server_errors_are_retried_then_given_up(api, home, clock):
    api.get(STATUSES, json=[status(3), status(2)], headers=link("110002", "110003"))
    api.get(STATUSES, json={"error": "Service Unavailable"}, status=503)
    api.get(STATUSES, json=[status(1)])
    assert len(fetch()) == 3 and clock == [2]

    clock.clear()
    api.replace(responses.GET, STATUSES, json={"error": "Service Unavailable"}, status=503)
    with pytest.raises(HuggingTweetsError, match="503"):
        fetch()
    assert clock == [2, 4, 8]


def test_interrupted_fetch_resumes_below_what_it_kept(api, home):
    def interrupted(request):
        raise KeyboardInterrupt

    api.get(STATUSES, json=[status(9), status(8)], headers=link("110008", "110009"))
    api.add_callback(responses.GET, STATUSES, callback=interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch()
    assert len((home / "data" / "mastodon" / "alice@mastodon.example.jsonl").read_text().splitlines()) == 2

    api.replace(responses.GET, STATUSES, json=[])  # nothing newer...
    api.add(responses.GET, STATUSES, json=[status(7)])  # ...and the rest below 8
    posts = fetch()
    assert [p.id for p in posts] == ["110009", "110008", "110007"]
    newer, older = status_calls(api)[-2:]
    assert newer["since_id"] == "110009" and "max_id" not in newer
    assert older["max_id"] == "110008" and "since_id" not in older
