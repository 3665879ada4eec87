"""The SOURCE syntax for services: what each form means, and handles that must never reach a URL or a path."""

from __future__ import annotations

import pytest

from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources import FetchOptions, is_remote, load
from huggingtweets.sources.remote import account_name, parse_source


@pytest.mark.parametrize(
    ("source", "parsed", "name"),
    [
        ("@jack", ("x", "jack"), "x-jack"),
        ("x:Jack_1", ("x", "Jack_1"), "x-jack_1"),
        ("twitter:@jack", ("x", "jack"), "x-jack"),
        ("https://x.com/jack", ("x", "jack"), "x-jack"),
        ("https://twitter.com/jack/", ("x", "jack"), "x-jack"),
        (
            "mastodon:Gargron@Mastodon.Social",
            ("mastodon", "Gargron@mastodon.social"),
            "mastodon-gargron-at-mastodon.social",
        ),
        ("@user@fosstodon.org", ("mastodon", "user@fosstodon.org"), "mastodon-user-at-fosstodon.org"),
        ("https://mastodon.social/@user", ("mastodon", "user@mastodon.social"), "mastodon-user-at-mastodon.social"),
        (
            "https://mastodon.social/@bob@other.example",
            ("mastodon", "bob@other.example"),
            "mastodon-bob-at-other.example",
        ),
        ("bsky:alice", ("bluesky", "alice.bsky.social"), "bluesky-alice.bsky.social"),
        ("bluesky:Alice.example.com", ("bluesky", "alice.example.com"), "bluesky-alice.example.com"),
        ("https://bsky.app/profile/alice.bsky.social", ("bluesky", "alice.bsky.social"), "bluesky-alice.bsky.social"),
        (
            "bsky:did:plc:z72i7hdynmk6r22z27h6tvur",
            ("bluesky", "did:plc:z72i7hdynmk6r22z27h6tvur"),
            "bluesky-did-plc-z72i7hdynmk6r22z27h6tvur",
        ),
        ("old tweets.db", ("twint", "old tweets.db"), "twint-old-tweets"),
        ("dir/tweets.sqlite3#jack", ("twint", "dir/tweets.sqlite3#jack"), "twint-jack"),
        ("  @jack  ", ("x", "jack"), "x-jack"),
    ],
)
def test_sources(source, parsed, name):
    assert parse_source(source) == parsed
    assert account_name(source) == name
    assert is_remote(source.strip())


@pytest.mark.parametrize(
    "source",
    [
        "",
        "   ",
        "@",
        "@../x",
        "x:a/b",
        "x:a b",
        "@a\\b",
        "x:waytoolongforahandle",
        "twitter:",
        "mastodon:alice",
        "mastodon:../x@mastodon.social",
        "mastodon:alice@../etc",
        "mastodon:alice@host/path",
        "mastodon:a@b@c.com",
        "bsky:../x",
        "bsky:a/b.com",
        "bluesky:",
        "bsky:a b.com",
        "https://x.com/jack/status/1",
        "https://bsky.app/profile/",
        "https://example.com/about",
        "tweets.db#../x",
        "tweets.db#a/b",
    ],
)
def test_bad_handles_are_one_line_errors(source, home):
    with pytest.raises(HuggingTweetsError) as e:
        parse_source(source)
    assert "\n" not in str(e.value)
    if is_remote(source):  # and loading stops there too, with the same error, before any file or request
        with pytest.raises(HuggingTweetsError) as loading:
            load(source, FetchOptions(offline=True))
        assert str(loading.value) == str(e.value)  # not "nothing cached", which offline loading says after the check
    assert not (home / "data").exists()


def test_handles_are_checked_before_they_name_a_cache_file(home):
    with pytest.raises(HuggingTweetsError, match="not a valid X handle"):
        load("x:../../etc/passwd", FetchOptions(offline=True))
    assert not home.exists() or not any(home.rglob("*"))
