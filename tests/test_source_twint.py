"""Twint SQLite databases, in the final schema and the older one."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources import FetchOptions, is_remote, load
from huggingtweets.sources.remote import account_name

# Twint's final storage/db.py, abridged to the tables it reads.
FINAL = """
CREATE TABLE tweets (id integer not null, id_str text not null, tweet text default '', language text default '',
    conversation_id text not null, created_at integer not null, date text not null, time text not null,
    timezone text not null, place text default '', replies_count integer, likes_count integer, retweets_count integer,
    user_id integer not null, user_id_str text not null, screen_name text not null, name text default '', link text,
    mentions text, hashtags text, cashtags text, urls text, photos text, thumbnail text, quote_url text, video integer,
    geo text, near text, source text, time_update integer not null, `translate` text default '',
    trans_src text default '', trans_dest text default '', PRIMARY KEY (id));
CREATE TABLE retweets (user_id integer not null, username text not null, tweet_id integer not null,
    retweet_id integer not null, retweet_date integer, PRIMARY KEY(user_id, tweet_id));
CREATE TABLE replies (tweet_id integer not null, user_id integer not null, username text not null,
    PRIMARY KEY (user_id, tweet_id));
"""
OLD = """
CREATE TABLE tweets (id integer primary key, user_id integer, date text, time text, timezone text, location text,
    user text, tweet text, replies integer, likes integer, retweets integer, hashtags text, link text, retweet integer,
    user_rt text, mentions text, date_update text, search_name text);
"""


def final_row(id: int, user: str, text: str, ms: int, likes: int = 0, conversation: int | None = None) -> tuple:
    when = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return (
        id,
        str(id),
        text,
        "en",
        str(conversation or id),
        ms,
        when.strftime("%Y-%m-%d"),
        when.strftime("%H:%M:%S"),
        "+0000",
        "",
        0,
        likes,
        1,
        1,
        "1",
        user,
        user.title(),
        "",
        "[]",
        "[]",
        "[]",
        "[]",
        "[]",
        "",
        "",
        0,
        "",
        "",
        "",
        0,
        "",
        "",
        "",
    )


def make_db(path: Path, schema: str, rows: list[tuple], extra: list[str] = ()) -> Path:
    db = sqlite3.connect(path)
    db.executescript(schema)
    marks = ",".join("?" * len(rows[0]))
    db.executemany(f"INSERT INTO tweets VALUES ({marks})", rows)
    for statement in extra:
        db.execute(statement)
    db.commit()
    db.close()
    return path


@pytest.fixture()
def final_db(tmp_path: Path) -> Path:
    return make_db(
        tmp_path / "jack.db",
        FINAL,
        [
            final_row(3, "jack", "newest", 1_600_000_300_000, likes=5),
            final_row(2, "jack", "@bob agreed", 1_600_000_200_000, conversation=1),
            final_row(1, "jack", "oldest", 1_600_000_100_000),
            final_row(9, "bob", "bob's post jack retweeted", 1_600_000_250_000),
        ],
        ["INSERT INTO retweets VALUES (1, 'jack', 9, 99, 1600000260)", "INSERT INTO replies VALUES (2, 5, 'bob')"],
    )


def test_final_schema(final_db):
    posts = load(str(final_db), FetchOptions(), None)
    assert [p.id for p in posts] == ["3", "9", "2", "1"]  # newest first
    assert posts[0].text == "newest" and posts[0].likes == 5 and posts[0].reposts == 1 and posts[0].author == "jack"
    assert posts[0].created_at == datetime.fromtimestamp(1_600_000_300, tz=timezone.utc)
    assert posts[1].is_retweet and not posts[0].is_retweet  # bob's post is one of jack's retweets
    assert posts[2].is_reply and not posts[0].is_reply
    assert all(p.source == "twint" for p in posts)


def test_old_schema(tmp_path):
    db = make_db(
        tmp_path / "old.sqlite",
        OLD,
        [
            (
                11,
                1,
                "2019-05-01",
                "12:30:00",
                "+0200",
                "",
                "jack",
                "hello &amp; welcome",
                0,
                7,
                2,
                "",
                "",
                0,
                "",
                "",
                "",
                "jack",
            ),
            (12, 1, "2019-05-02", "08:00:00", "CET", "", "jack", "@bob sure", 0, 1, 0, "", "", 0, "", "", "", "jack"),
            (
                13,
                2,
                "2019-05-03",
                "09:00:00",
                "+0000",
                "",
                "bob",
                "bob's words",
                0,
                3,
                0,
                "",
                "",
                1,
                "jack",
                "",
                "",
                "jack",
            ),
        ],
    )
    posts = load(str(db), FetchOptions(), None)
    assert [p.id for p in posts] == ["13", "12", "11"]
    assert posts[2].created_at == datetime(2019, 5, 1, 10, 30, tzinfo=timezone.utc)  # its +0200 respected
    assert posts[2].likes == 7 and posts[2].reposts == 2
    assert posts[1].is_reply and posts[0].is_retweet and not posts[2].is_retweet


def test_several_accounts_must_be_picked_from(tmp_path):
    db = make_db(
        tmp_path / "many.db",
        FINAL,
        [
            final_row(1, "jack", "a", 1_600_000_000_000),
            final_row(2, "jack", "b", 1_600_000_000_001),
            final_row(3, "alice", "c", 1_600_000_000_002),
        ],
    )
    with pytest.raises(HuggingTweetsError) as e:
        load(str(db), FetchOptions(), None)
    assert "2 accounts" in str(e.value) and "jack (2)" in str(e.value) and "alice (1)" in str(e.value)
    assert f"{db}#jack" in str(e.value)

    assert is_remote(f"{db}#alice")
    assert [p.text for p in load(f"{db}#alice", FetchOptions(), None)] == ["c"]
    assert [p.text for p in load(f"{db}#JACK", FetchOptions(), None)] == ["b", "a"]
    assert account_name(f"{db}#alice") == "twint-alice"
    with pytest.raises(HuggingTweetsError, match="no posts by carol"):
        load(f"{db}#carol", FetchOptions(), None)


def test_not_a_twint_database(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE notes (x text)").connection.commit()
    with pytest.raises(HuggingTweetsError, match="no `tweets` table"):
        load(str(path), FetchOptions(), None)
    (tmp_path / "text.db").write_text("not sqlite at all, just some text that is long enough " * 20)
    with pytest.raises(HuggingTweetsError, match="not a readable Twint database"):
        load(str(tmp_path / "text.db"), FetchOptions(), None)
    with pytest.raises(HuggingTweetsError, match="does not exist"):
        load(str(tmp_path / "missing.db"), FetchOptions(), None)
