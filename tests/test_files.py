"""Loading posts from files: the real X archive (zip, folder, bare tweets.js), hand-built archives, CSV, JSONL, TXT."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources.files import load_file

from conftest import ARCHIVE


# ---------------------------------------------------------------- helpers


def raw_archive_tweets() -> list[dict[str, Any]]:
    """The real archive's tweets.js parsed here, independently of the loader."""
    text = (ARCHIVE / "data" / "tweets.js").read_text(encoding="utf-8-sig")
    assert text.startswith("window.YTD.tweets.part0")
    entries = json.loads(text[text.index("=") + 1 :])
    return [e["tweet"] for e in entries]


def expected_counts() -> tuple[int, int, int]:
    tweets = raw_archive_tweets()
    retweets = sum(1 for t in tweets if t["full_text"].startswith("RT @"))
    replies = sum(
        1
        for t in tweets
        if "in_reply_to_status_id_str" in t or "in_reply_to_user_id_str" in t or t["full_text"].startswith("@")
    )
    return len(tweets), retweets, replies


def js(global_name: str, data: Any) -> str:
    return f"window.{global_name} = " + json.dumps(data, indent=2)


def tweet(text: str, id_: str, created: str = "Thu Nov 03 08:50:26 +0000 2022", **extra: Any) -> dict[str, Any]:
    return {"tweet": {"full_text": text, "id_str": id_, "created_at": created, "favorite_count": "0", "retweet_count": "0", **extra}}


def manifest(files: dict[str, list[str]], user: str = "someone") -> str:
    return js(
        "__THAR_CONFIG",
        {
            "userInfo": {"userName": user},
            "dataTypes": {
                kind: {"files": [{"fileName": f, "globalName": "YTD.x.part0", "count": "1"} for f in names]}
                for kind, names in files.items()
            },
        },
    )


def write_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def write_folder(root: Path, members: dict[str, str]) -> Path:
    for name, content in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
    return root


def error_of(path: Path) -> str:
    with pytest.raises(HuggingTweetsError) as info:
        load_file(path)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


# ---------------------------------------------------------------- the real archive


def check_real_posts(posts: list, with_author: bool = True) -> None:
    total, retweets, replies = expected_counts()
    assert total == 2045  # README: 2,045 posts
    assert abs(replies - 1790) < 20 and retweets == 239  # README: about 1,790 replies, 239 retweets
    assert len(posts) == total
    assert sum(p.is_retweet for p in posts) == retweets
    assert sum(p.is_reply for p in posts) == replies
    # Retweets are not replies in this archive: originals are what is left.
    assert sum(not p.is_retweet and not p.is_reply for p in posts) == total - retweets - replies
    ids = [t["id_str"] for t in raw_archive_tweets()]
    assert [p.id for p in posts] == ids
    assert all(p.created_at is not None and p.created_at.tzinfo is not None for p in posts)
    assert all(isinstance(p.likes, int) and isinstance(p.reposts, int) for p in posts)
    if with_author:
        assert {p.author for p in posts} == {"milahu104"}


def test_real_archive_as_zip(archive_zip: Path) -> None:
    with zipfile.ZipFile(archive_zip) as z:
        assert "data/tweets.js" in z.namelist()
    posts = load_file(archive_zip)
    check_real_posts(posts)
    assert {p.source for p in posts} == {"x-archive"}


def test_real_archive_as_folder() -> None:
    check_real_posts(load_file(ARCHIVE))


def test_real_bare_tweets_js() -> None:
    # A bare tweets.js has no manifest or account.js next to it to name the author.
    check_real_posts(load_file(ARCHIVE / "data" / "tweets.js"), with_author=False)


def test_real_archive_zip_with_an_extra_top_folder(tmp_path: Path) -> None:
    members = {f"twitter-export/data/{f.name}": f.read_text(encoding="utf-8") for f in (ARCHIVE / "data").iterdir()}
    posts = load_file(write_zip(tmp_path / "rezipped.zip", members))
    assert len(posts) == expected_counts()[0]


def test_real_archive_text_and_counts_match_raw() -> None:
    posts = load_file(ARCHIVE)
    raw = raw_archive_tweets()
    for post, t in zip(posts, raw):
        assert post.text == t["full_text"]
        assert post.likes == int(t["favorite_count"]) and post.reposts == int(t["retweet_count"])


# ---------------------------------------------------------------- hand-built archives


def test_manifest_with_several_parts_reads_all(tmp_path: Path) -> None:
    members = {
        "data/manifest.js": manifest({"tweets": ["data/tweets.js", "data/tweets-part1.js"]}, user="parted"),
        "data/tweets.js": js("YTD.tweets.part0", [tweet("first part one", "1"), tweet("first part two", "2")]),
        "data/tweets-part1.js": js("YTD.tweets.part1", [tweet("second part one", "3")]),
    }
    for source in (write_zip(tmp_path / "a.zip", members), write_folder(tmp_path / "folder", members)):
        posts = load_file(source)
        assert [p.id for p in posts] == ["1", "2", "3"]
        assert {p.author for p in posts} == {"parted"}


def test_manifest_part_missing_is_an_error(tmp_path: Path) -> None:
    members = {
        "data/manifest.js": manifest({"tweets": ["data/tweets.js", "data/tweets-part1.js"]}),
        "data/tweets.js": js("YTD.tweets.part0", [tweet("first part one", "1")]),
    }
    assert "tweets-part1.js" in error_of(write_zip(tmp_path / "a.zip", members))


def test_old_tweet_js_archive(tmp_path: Path) -> None:
    entries = [tweet("an old wrapped post", "1"), {"full_text": "an old bare post", "id_str": "2", "created_at": "Thu Nov 03 08:50:26 +0000 2022"}]
    members = {
        "data/tweet.js": js("YTD.tweet.part0", entries),
        "data/account.js": js("YTD.account.part0", [{"account": {"username": "oldtimer"}}]),
    }
    for source in (write_zip(tmp_path / "old.zip", members), write_folder(tmp_path / "old", members)):
        posts = load_file(source)
        assert [p.text for p in posts] == ["an old wrapped post", "an old bare post"]
        assert {p.author for p in posts} == {"oldtimer"}
    # With a manifest that names the old data type.
    members["data/manifest.js"] = manifest({"tweet": ["data/tweet.js"]}, user="oldtimer")
    assert len(load_file(write_zip(tmp_path / "old-manifest.zip", members))) == 2


def test_note_tweet_replaces_truncated_text(tmp_path: Path) -> None:
    full = "This is a long post that keeps going well past the limit " + "and on " * 50 + "until the very end."
    truncated = full[:270] + "… https://t.co/AbCdEfGhIj"
    other_truncated = "Another long post that was cut short by the service for being long " * 3 + "…"
    other_full = other_truncated[:-1] + "and this is its real ending."
    members = {
        "data/tweets.js": js(
            "YTD.tweets.part0",
            [
                tweet(truncated, "1", created="Thu Nov 03 08:50:26 +0000 2022"),
                tweet(other_truncated, "2", created="Fri Nov 04 10:00:00 +0000 2022"),
                tweet("a short post … with an ellipsis", "3", created="Thu Nov 03 08:50:26 +0000 2022"),
            ],
        ),
        "data/note-tweet.js": js(
            "YTD.note_tweet.part0",
            [
                # Same created time within seconds: matches post 1.
                {"noteTweet": {"noteTweetId": "9", "createdAt": "2022-11-03T08:50:28.000Z", "core": {"text": full}}},
                # An hour off: must not replace post 2 although its text is a prefix.
                {"noteTweet": {"noteTweetId": "8", "createdAt": "2022-11-04T11:00:00.000Z", "core": {"text": other_full}}},
            ],
        ),
    }
    posts = {p.id: p for p in load_file(write_zip(tmp_path / "notes.zip", members))}
    assert posts["1"].text == full
    assert posts["2"].text == other_truncated
    assert posts["3"].text == "a short post … with an ellipsis"


def test_archive_fields(tmp_path: Path) -> None:
    entries = [
        tweet("@friend no reply id but a reply", "1"),
        tweet("a reply that does not start with a mention", "2", in_reply_to_status_id_str="77", in_reply_to_user_id_str="5"),
        tweet("an original post", "3", created="Sat Jan 07 23:30:00 +0200 2023", favorite_count="12", retweet_count="3"),
        tweet("RT @someone: a retweet …", "4", retweeted=False),
        {"tweet": {"full_text": "no counts at all here", "id_str": "5", "created_at": "Thu Nov 03 08:50:26 +0000 2022"}},
    ]
    path = tmp_path / "tweets.js"
    path.write_text(js("YTD.tweets.part0", entries), encoding="utf-8")
    posts = {p.id: p for p in load_file(path)}
    assert posts["1"].is_reply and not posts["1"].is_retweet
    assert posts["2"].is_reply
    assert not posts["3"].is_reply and not posts["3"].is_retweet
    assert posts["4"].is_retweet and not posts["4"].is_reply
    # Counts given as strings become ints; absent counts are unknown, not zero.
    assert posts["3"].likes == 12 and type(posts["3"].likes) is int
    assert posts["3"].reposts == 3 and type(posts["3"].reposts) is int
    assert posts["5"].likes is None and posts["5"].reposts is None

    # A count past float's range is unknown too, not a crash.
    from huggingtweets.posts import to_int

    assert to_int("inf") is None and to_int(1e999) is None and to_int("1e999") is None and to_int("7.0") == 7
    # created_at is timezone-aware and keeps the offset.
    when = posts["3"].created_at
    assert when is not None and when.utcoffset() == timedelta(hours=2)
    assert (when.year, when.month, when.day, when.hour, when.minute) == (2023, 1, 7, 23, 30)
    assert when.astimezone(timezone.utc).hour == 21
    assert posts["1"].created_at.utcoffset() == timedelta(0)


def test_tweets_js_with_bom_and_semicolon(tmp_path: Path) -> None:
    path = tmp_path / "tweets.js"
    path.write_bytes(b"\xef\xbb\xbf" + (js("YTD.tweets.part0", [tweet("hello there world", "1")]) + ";\n").encode())
    assert [p.text for p in load_file(path)] == ["hello there world"]


# ---------------------------------------------------------------- CSV, JSONL, TXT


@pytest.mark.parametrize("column", ["text", "tweet", "full_text", "content", "Text"])
def test_csv_text_columns(tmp_path: Path, column: str) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        f'id,{column},created_at,likes\n1,"hello, world of posts",2022-11-03T08:50:26Z,7\n2,"@pal a reply",,\n3,RT @x: a retweet,,\n',
        encoding="utf-8",
    )
    posts = load_file(path)
    assert [p.text for p in posts] == ["hello, world of posts", "@pal a reply", "RT @x: a retweet"]
    assert posts[0].id == "1" and posts[0].likes == 7 and posts[1].likes is None
    assert posts[0].created_at is not None and posts[0].created_at.utcoffset() == timedelta(0)
    assert [p.is_reply for p in posts] == [False, True, False]
    assert [p.is_retweet for p in posts] == [False, False, True]
    assert {p.source for p in posts} == {"csv"}


def test_csv_without_text_column_names_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("body,when\nhello there,2022\n", encoding="utf-8")
    message = error_of(path)
    assert "body" in message and "when" in message and "text" in message


def test_csv_in_latin1_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes("text\ncafé crème brûlée\n".encode("latin-1"))
    message = error_of(path)
    assert "UTF-8" in message and str(path) in message


def test_csv_flags_and_naive_dates(tmp_path: Path) -> None:
    # A CSV written from a table of posts gives flags as text: "False" must not count as true.
    path = tmp_path / "posts.csv"
    path.write_text(
        "text,is_retweet,is_reply,date\n"
        "a plain post here,False,False,2022-11-03 08:50:26\n"
        "a flagged reply,False,True,2022-11-03 09:00:00\n"
        "a flagged retweet,1,0,\n",
        encoding="utf-8",
    )
    posts = load_file(path)
    assert [p.is_retweet for p in posts] == [False, False, True]
    assert [p.is_reply for p in posts] == [False, True, False]
    # A date without an offset is taken as UTC, so it sorts with archive dates.
    assert posts[0].created_at is not None and posts[0].created_at.utcoffset() == timedelta(0)
    assert posts[2].created_at is None


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    records = [
        {"text": "first post of the file", "id": 1, "created_at": "2022-11-03T08:50:26+00:00", "likes": "4", "is_reply": False},
        {"full_text": "second post of the file", "is_retweet": True},
    ]
    path.write_text(json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n", encoding="utf-8")
    posts = load_file(path)
    assert [p.text for p in posts] == ["first post of the file", "second post of the file"]
    assert posts[0].id == "1" and posts[0].likes == 4 and not posts[0].is_reply
    assert posts[0].created_at is not None and posts[0].created_at.tzinfo is not None
    assert posts[1].is_retweet


def test_jsonl_bad_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "fine too"}\n{"text": oops}\n', encoding="utf-8")
    assert "line 3" in error_of(path)
    path.write_text('{"text": "fine"}\n["not", "an", "object"]\n', encoding="utf-8")
    assert "line 2" in error_of(path)


def test_jsonl_without_text_field(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text('{"body": "hello"}\n', encoding="utf-8")
    assert "text" in error_of(path)


def test_txt_one_post_per_line(tmp_path: Path) -> None:
    path = tmp_path / "posts.txt"
    path.write_text("first line post\n\n   \n  second line post  \r\nthird\n", encoding="utf-8")
    posts = load_file(path)
    assert [p.text for p in posts] == ["first line post", "second line post", "third"]
    assert {p.source for p in posts} == {"txt"}


# ---------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.zip"
    message = error_of(path)
    assert str(path) in message and "exist" in message


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "posts.pdf"
    path.write_text("something", encoding="utf-8")
    assert ".pdf" in error_of(path)


@pytest.mark.parametrize("name", ["posts.csv", "posts.txt", "tweets.js", "archive.zip", "posts.jsonl"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert "empty" in error_of(path)


def test_truncated_real_tweets_js(tmp_path: Path) -> None:
    raw = (ARCHIVE / "data" / "tweets.js").read_bytes()
    path = tmp_path / "tweets.js"
    path.write_bytes(raw[: len(raw) // 2])
    assert "truncated or malformed" in error_of(path)
    # Truncated inside a zip, too.
    members = {"data/tweets.js": raw[: len(raw) // 3].decode("utf-8", "ignore")}
    assert "truncated or malformed" in error_of(write_zip(tmp_path / "cut.zip", members))


@pytest.mark.parametrize(
    "content",
    ["window.YTD.tweets.part0 = ", "window.YTD.tweets.part0 = [ {\"tweet\": } ]", "not javascript at all", "window.YTD.tweets.part0 = {\"a\": 1}"],
)
def test_malformed_tweets_js(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tweets.js"
    path.write_text(content, encoding="utf-8")
    error_of(path)


def test_archive_with_no_posts(tmp_path: Path) -> None:
    members = {
        "data/manifest.js": manifest({"tweets": ["data/tweets.js"]}),
        "data/tweets.js": "window.YTD.tweets.part0 = [ ]",
    }
    assert "no posts" in error_of(write_zip(tmp_path / "empty.zip", members))
    assert "no posts" in error_of(write_folder(tmp_path / "empty", members))


def test_zip_without_tweets_js(tmp_path: Path) -> None:
    message = error_of(write_zip(tmp_path / "other.zip", {"data/likes.js": "window.YTD.like.part0 = []"}))
    assert "tweets.js" in message


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "archive.zip"
    path.write_bytes(b"this is not a zip file")
    assert "zip" in error_of(path)


def test_folder_that_is_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hi", encoding="utf-8")
    assert "not an extracted X archive" in error_of(tmp_path / "stuff")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_damaged_zip_member_is_a_clear_error(tmp_path: Path, compression: int) -> None:
    content = js("YTD.tweets.part0", [tweet(f"post number {i} about something", str(i)) for i in range(200)])
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("data/tweets.js", content)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("data/tweets.js")
    # The member's data starts after its 30-byte local header, name and extra field; damage its middle.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    message = error_of(path)
    assert "tweets.js cannot be read" in message and "download the archive again" in message


def test_archive_with_odd_shapes_still_reads_its_posts(tmp_path: Path) -> None:
    # Hand-edited or future archives: objects where strings were, strings where objects were, times without zones.
    members = {
        "data/manifest.js": js("__THAR_CONFIG", {"userInfo": "someone", "dataTypes": ["tweets"]}),
        "data/account.js": js("YTD.account.part0", [{"account": "someone"}]),
        "data/tweets.js": js("YTD.tweets.part0", [tweet("a long post that was cut sh…", "1"), tweet("hello there", "2", created="2022-11-04T10:00:00")]),
        "data/note-tweet.js": js(
            "YTD.note_tweet.part0",
            [
                {"noteTweet": {"createdAt": 12, "core": "text"}},
                {"noteTweet": {"createdAt": "2022-11-03T08:50:27", "core": {"text": "a long post that was cut short, in full"}}},
                "not an object",
            ],
        ),
    }
    posts = {p.id: p for p in load_file(write_zip(tmp_path / "odd.zip", members))}
    assert posts["1"].text == "a long post that was cut short, in full"  # a zoneless time is UTC, comparable
    assert posts["2"].created_at is not None and posts["2"].created_at.tzinfo is not None
    assert sorted(posts) == ["1", "2"] and all(p.author == "" for p in posts.values())
