"""A catalogue of bad inputs (issue 23), each run through the real command line, in-process.

Every refusal is held to one contract (`refused`): exit status 2, exactly one line on stderr that says what is wrong
(a distinctive word of it is checked), no traceback anywhere, and nothing written half-way: the whole test folder,
which holds the inputs, the --out path and the cache (HUGGINGTWEETS_HOME), is byte for byte as it was before the run.
Where a refusal follows progress lines that are part of the behaviour (a server error retried three times, a rate
limit counted down), the case says how many, and they come before the one error line.

Decisions this file pins down, in sources/files.py's docstring and `fetch --help` too:
- Latin-1 (any 8-bit encoding) is refused, naming the byte and its line: it cannot be told from Windows-1252 or
  MacRoman by its bytes, and a wrong guess trains on garbled text. UTF-16 with a BOM is read (Excel's "Unicode text").
- A JSONL line that is not a JSON object stops the load, naming the line: skipping it would silently lose a post.
- Emoji-only and right-to-left posts are good input: read as they are. Words are what whitespace separates, in any
  script, so "مرحبا بكم في" is three words and a run of emoji without spaces is one (too short to keep).

Not refusals of input: what the machine refuses (an --out under a file, a full disk) exits 1, as the CLI has always
done for OSErrors (`cli.EXIT_OS`), with the same one line and nothing half-written.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import stat
import struct
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import responses
import respx

from conftest import make_posts
from huggingtweets.cli import main
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.sources import files

ERROR_LINE = re.compile(r"huggingtweets( \w+)?: error: \S")


@dataclass
class Run:
    code: int | str | None
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """`huggingtweets ARGV` in this process; argparse's refusals end in SystemExit, the rest return a status."""
    try:
        code: int | str | None = main(list(argv))
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `root`: what a run must leave as it was."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def refused(run: Run, word: str, *, progress: int = 0, code: int = 2) -> str:
    """The contract every case is held to (see the module docstring); returns the error line."""
    assert "Traceback" not in run.err + run.out, run.err
    assert run.code == code, run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == progress + 1, run.err
    assert not any(ERROR_LINE.match(line) for line in lines[:-1]), run.err
    assert ERROR_LINE.match(lines[-1]), lines[-1]
    assert word.lower() in lines[-1].lower(), (word, lines[-1])
    return lines[-1]


def js(entries: list[Any], name: str = "tweets.part0") -> str:
    return f"window.YTD.{name} = " + json.dumps(entries, ensure_ascii=False)


POSTS_JS = js([{"tweet": {"full_text": f"an archived post number {n}", "id_str": str(n)}} for n in range(1, 4)])


def zip_of(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def declare_size(path: Path, size: int) -> None:
    """Rewrite the uncompressed size a zip's only member declares (central directory and local header)."""
    raw = bytearray(path.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, size)
    struct.pack_into("<I", raw, raw.index(b"PK\x03\x04") + 22, size)
    path.write_bytes(bytes(raw))


def sqlite_db(path: Path, *statements: str) -> Path:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    return path


# ---------------------------------------------------------------------------------------------- files

# Each case writes its input into the test folder and returns the SOURCE to fetch; `monkeypatch` lowers a bound
# where the real one would take a gigabyte to cross.
FileCase = Callable[[Path, pytest.MonkeyPatch], str]


def written(name: str, content: str | bytes) -> FileCase:
    """A case that is one file with `content` (text is written as UTF-8)."""

    def write(tmp: Path, mp: pytest.MonkeyPatch) -> str:
        (tmp / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return str(tmp / name)

    return write


def zip_bomb_declared(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    path = zip_of(tmp / "bomb.zip", {"data/tweets.js": POSTS_JS})
    declare_size(path, 0xFFFF_FFF0)  # says it unpacks to 4 GiB: refused before a byte is inflated
    return str(path)


def zip_bomb_actual(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    mp.setattr(files, "MAX_MEMBER_BYTES", 1 << 20)
    return str(zip_of(tmp / "bomb.zip", {"data/tweets.js": b"[" + b" " * (16 << 20) + b"]"}))  # 16 MiB in 16 KB


def zip_bomb_all_together(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    part = js([{"tweet": {"full_text": "x" * 1000}}])
    manifest = "window.__THAR_CONFIG = " + json.dumps(
        {"dataTypes": {"tweets": {"files": [{"fileName": "data/tweets.js"}, {"fileName": "data/tweets-part1.js"}]}}}
    )
    mp.setattr(files, "MAX_ARCHIVE_BYTES", len(manifest) + len(part) + 100)  # each part fits, the two do not
    return str(zip_of(tmp / "parts.zip", {"data/manifest.js": manifest, "data/tweets.js": part, "data/tweets-part1.js": part}))


def zip_member_lies_about_its_size(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    path = zip_of(tmp / "liar.zip", {"data/tweets.js": b"[" + b" " * (64 << 20) + b"]"})
    declare_size(path, 1000)  # inflating stops at 1,000 bytes, whose checksum is not the member's
    return str(path)


def zip_dotdot(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(zip_of(tmp / "dotdot.zip", {"data/tweets.js": POSTS_JS, "../../etc/cron.d/x": "* * * * * root id"}))


def zip_absolute(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(zip_of(tmp / "absolute.zip", {"/data/tweets.js": POSTS_JS}))


def zip_windows_drive(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(zip_of(tmp / "drive.zip", {"data/tweets.js": POSTS_JS, "C:\\Windows\\evil.dll": "MZ"}))


def zip_symlink(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    path = tmp / "link.zip"
    with zipfile.ZipFile(path, "w") as z:
        link = zipfile.ZipInfo("data/tweets.js")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")  # a link's content is where it points
    return str(path)


def zip_damaged_member(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    path = zip_of(tmp / "damaged.zip", {"data/tweets.js": POSTS_JS})
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF  # a byte of the compressed data
    path.write_bytes(bytes(raw))
    return str(path)


def zip_truncated_tweets_js(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(zip_of(tmp / "cut.zip", {"data/tweets.js": POSTS_JS[: len(POSTS_JS) // 2]}))


def zip_without_tweets(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(zip_of(tmp / "photos.zip", {"holiday/beach.jpg": b"\xff\xd8\xff"}))


def zip_manifest_lists_a_missing_part(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    manifest = "window.__THAR_CONFIG = " + json.dumps(
        {"dataTypes": {"tweets": {"files": [{"fileName": "data/tweets.js"}, {"fileName": "data/tweets-part1.js"}]}}}
    )
    return str(zip_of(tmp / "half.zip", {"data/manifest.js": manifest, "data/tweets.js": POSTS_JS}))


def csv_utf16_broken(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    # A UTF-16 BOM, then a lone low surrogate: not UTF-16 after all.
    (tmp / "posts.csv").write_bytes("text\nhello there\n".encode("utf-16") + b"\x00\xdc")
    return str(tmp / "posts.csv")


def csv_huge_field(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    with open(tmp / "posts.csv", "w", encoding="utf-8") as f:
        f.write('text\n"a quote left open ')
        f.write("x" * (50 << 20))  # 50 MB in one field
    return str(tmp / "posts.csv")


def jsonl_one_bad_line(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    good = [json.dumps({"text": f"a good post number {n}"}) for n in range(5)]
    (tmp / "posts.jsonl").write_text("\n".join(good[:3] + ['{"text": "cut off here'] + good[3:]) + "\n", encoding="utf-8")
    return str(tmp / "posts.jsonl")


def missing_file(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(tmp / "no-such-posts.csv")


def folder_named_like_a_file(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    (tmp / "posts.csv").mkdir()
    return str(tmp / "posts.csv")


def folder_that_is_not_an_archive(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    (tmp / "Downloads").mkdir()
    (tmp / "Downloads" / "notes.txt").write_text("not an archive")
    return str(tmp / "Downloads")


def twint_empty_database(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(sqlite_db(tmp / "tweets.db", "CREATE TABLE tweets (id, id_str, tweet, screen_name, created_at)"))


def twint_wrong_schema(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(sqlite_db(tmp / "tweets.db", "CREATE TABLE tweets (a, b)", "INSERT INTO tweets VALUES (1, 2)"))


def twint_no_tweets_table(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(sqlite_db(tmp / "tweets.db", "CREATE TABLE users (id, name)"))


def twint_folder(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    (tmp / "tweets.db").mkdir()
    return str(tmp / "tweets.db")


def _two_accounts(tmp: Path) -> Path:
    return sqlite_db(
        tmp / "tweets.db",
        "CREATE TABLE tweets (id, id_str, tweet, screen_name, created_at)",
        "INSERT INTO tweets VALUES (1, '1', 'a post by jack here', 'jack', 1600000000000)",
        "INSERT INTO tweets VALUES (2, '2', 'a post by ev here', 'ev', 1600000000000)",
    )


def twint_several_accounts_unpicked(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return str(_two_accounts(tmp))


def twint_picks_an_absent_account(tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return f"{_two_accounts(tmp)}#biz"


FILE_CASES = [
    pytest.param(zip_bomb_declared, "would unpack to more than", id="zip_bomb_declared"),
    pytest.param(zip_bomb_actual, "would unpack to more than", id="zip_bomb_actual"),
    pytest.param(zip_bomb_all_together, "would unpack to more than", id="zip_bomb_all_together"),
    pytest.param(zip_member_lies_about_its_size, "cannot be read (bad crc", id="zip_member_lies_about_its_size"),
    pytest.param(zip_dotdot, "unsafe path ('../../etc/cron.d/x')", id="zip_dotdot"),
    pytest.param(zip_absolute, "unsafe path ('/data/tweets.js')", id="zip_absolute"),
    pytest.param(zip_windows_drive, "unsafe path", id="zip_windows_drive"),
    pytest.param(zip_symlink, "symbolic link", id="zip_symlink"),
    pytest.param(written("fake.zip", b"PK\x03\x04 this is not really a zip"), "not a valid zip", id="zip_not_a_zip"),
    pytest.param(zip_damaged_member, "cannot be read", id="zip_damaged_member"),
    pytest.param(zip_truncated_tweets_js, "truncated or malformed", id="zip_truncated_tweets_js"),
    pytest.param(zip_without_tweets, "holds no tweets.js", id="zip_without_tweets"),
    pytest.param(zip_manifest_lists_a_missing_part, "lacks data/tweets-part1.js", id="zip_manifest_lists_a_missing_part"),
    pytest.param(written("tweets.js", POSTS_JS[:-20]), "truncated or malformed", id="tweets_js_truncated"),
    pytest.param(written("tweets.js", 'window.YTD.tweets.part0 = {"tweet": 1}'), "does not hold a list of posts", id="tweets_js_not_a_list"),
    pytest.param(written("tweets.js", js([{"tweet": {"full_text": "café"}}]).encode("latin-1")), "not utf-8", id="tweets_js_in_latin1"),
    pytest.param(written("posts.csv", "text\nfine so far\ncafé crème brûlée\n".encode("latin-1")), "not utf-8 (byte 0xe9 on line 3)", id="csv_latin1"),
    pytest.param(csv_utf16_broken, "starts like utf-16 but is not", id="csv_utf16_broken"),
    pytest.param(csv_huge_field, "field larger than field limit", id="csv_huge_field"),
    pytest.param(written("posts.csv", "id,likes\n1,2\n"), "no text column", id="csv_without_text_column"),
    pytest.param(jsonl_one_bad_line, "line 4 is not valid json", id="jsonl_one_bad_line"),
    pytest.param(written("posts.jsonl", '{"text": "fine"}\n["a", "list"]\n'), "line 2 is not a json object", id="jsonl_line_not_an_object"),
    pytest.param(written("posts.jsonl", '{"text": "hello there you"}\n'.encode("utf-16")), "json lines are utf-8", id="jsonl_in_utf16"),
    pytest.param(written("posts.jsonl", '{"body": "hello"}\n{"body": "again"}\n'), 'no "text" field', id="jsonl_without_text"),
    pytest.param(written("posts.txt", b""), "is empty", id="empty_file"),
    pytest.param(written("posts.txt", "\n   \n\t\n"), "holds no posts", id="blank_lines_only"),
    pytest.param(written("posts.docx", b"PK\x03\x04 a word document"), "unknown format", id="unknown_format"),
    pytest.param(missing_file, "does not exist", id="missing_file"),
    pytest.param(folder_named_like_a_file, "is a folder but not an extracted x archive", id="folder_named_like_a_file"),
    pytest.param(folder_that_is_not_an_archive, "not an extracted x archive", id="folder_that_is_not_an_archive"),
    pytest.param(written("tweets.db", b""), "is empty", id="twint_empty_file"),
    pytest.param(twint_empty_database, "holds no posts", id="twint_empty_database"),
    pytest.param(twint_wrong_schema, "not a twint schema", id="twint_wrong_schema"),
    pytest.param(twint_no_tweets_table, "no `tweets` table", id="twint_no_tweets_table"),
    pytest.param(written("tweets.db", "id,tweet\n1,hello\n"), "not a readable twint database", id="twint_not_sqlite"),
    pytest.param(twint_folder, "is a folder, not a twint database", id="twint_folder"),
    pytest.param(twint_several_accounts_unpicked, "pick one with", id="twint_several_accounts_unpicked"),
    pytest.param(twint_picks_an_absent_account, "has no posts by biz", id="twint_picks_an_absent_account"),
]


@pytest.fixture()
def work(tmp_path: Path, home: Path) -> Path:
    """The test folder: inputs, the --out folder and the cache (`home`) all under it, so one snapshot covers them."""
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize(("case", "word"), FILE_CASES)
def test_bad_files(request, capsys, monkeypatch, work, case, word):
    source = case(work, monkeypatch)
    before = snapshot(work)
    refused(cli(capsys, "fetch", source, "--out", str(work / "out" / "posts.jsonl")), word)
    assert snapshot(work) == before
    if "bomb" in request.node.callspec.id or "lies" in request.node.callspec.id:
        # And refused at its bound, not after inflating it: the loader again, modules loaded, memory traced.
        tracemalloc.start()
        try:
            with pytest.raises(HuggingTweetsError):
                files.load_file(source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, f"{peak:,} bytes were allocated: the member was inflated, not refused at its bound"


# ---------------------------------------------------------------------------------------------- good input that looks odd


EMOJI = ["🎉🔥💯", "😂 😂 😂 😂", "👩‍👩‍👧‍👦 🏳️‍🌈 🇺🇦"]
RTL = ["مرحبا بكم في هذا المكان الجميل", "שלום לכולם ותודה רבה", "‏سلام علیکم دوستان عزیز"]


def test_emoji_and_right_to_left_posts_are_read_as_they_are(capsys, work):
    source = work / "posts.txt"
    source.write_text("\n".join(EMOJI + RTL) + "\n", encoding="utf-8")
    run = cli(capsys, "fetch", str(source), "--out", str(work / "out" / "posts.jsonl"))
    assert run.code == 0 and "Traceback" not in run.err, run.err
    texts = [json.loads(line)["text"] for line in (work / "out" / "posts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert texts == EMOJI + RTL


def test_emoji_and_right_to_left_posts_count_as_words_by_whitespace():
    from huggingtweets.clean import clean
    from huggingtweets.posts import Post

    cleaned = clean([Post(text=t) for t in EMOJI + RTL])
    kept = [p.text for p in cleaned.posts]
    # A run of emoji without spaces is one word: too short. Spaced emoji and every RTL post have three or more.
    assert kept == EMOJI[1:] + RTL


def test_a_utf16_csv_with_a_bom_is_read(capsys, work):
    source = work / "excel.csv"
    source.write_bytes("text,likes\nnaïve café posts here,3\nשלום לכולם היום,1\n".encode("utf-16"))
    run = cli(capsys, "fetch", str(source), "--out", str(work / "out" / "posts.jsonl"))
    assert run.code == 0, run.err
    records = [json.loads(line) for line in (work / "out" / "posts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["text"], r["likes"]) for r in records] == [("naïve café posts here", 3), ("שלום לכולם היום", 1)]


# ---------------------------------------------------------------------------------------------- handles

BAD_HANDLES = {
    "x-dotdot": ("x:../../etc", "not a valid x handle"),
    "at-dotdot": ("@../../etc/passwd", "not a valid x handle"),
    "fediverse-dotdot": ("@../../etc@mastodon.social", "not a valid mastodon address"),
    "x-slash": ("@jack/../../etc", "not a valid x handle"),
    "x-cyrillic-a": ("@j\u0430ck", "not a valid x handle"),
    "x-fullwidth": ("x:\uff4a\uff41\uff43\uff4b", "not a valid x handle"),
    "x-zero-width": ("@ja\u200bck", "not a valid x handle"),
    "x-rtl-override": ("x:jack\u202e", "not a valid x handle"),
    "x-nul": ("x:jack\x00", "not a valid x handle"),
    "x-too-long": ("@" + "a" * 16, "not a valid x handle"),
    "x-url-encoded-dotdot": ("https://x.com/..%2F..%2Fetc", "not a valid x handle"),
    "mastodon-dotdot-user": ("mastodon:../../etc@mastodon.social", "not a valid mastodon address"),
    "mastodon-dotdot-host": ("mastodon:alice@../../etc", "not a valid mastodon address"),
    "mastodon-unicode-host": ("mastodon:alice@m\u0430stodon.social", "not a valid mastodon address"),
    "mastodon-no-host": ("mastodon:alice", "not a valid mastodon address"),
    "bsky-dotdot": ("bsky:../../etc", "not a valid bluesky handle"),
    "bsky-did-web-dotdot": ("bsky:did:web:..", "not a valid bluesky handle"),
    "bsky-fullwidth": ("bsky:\uff41lice.bsky.social", "not a valid bluesky handle"),
    "bsky-url-dotdot": ("https://bsky.app/profile/..%2F..%2Fetc", "not a valid bluesky handle"),
    "twint-pick-dotdot": ("tweets.db#../../etc", "not a valid x handle"),
    "unknown-url": ("https://example.com/some/page", "not a profile url"),
}


@pytest.mark.parametrize(("source", "word"), BAD_HANDLES.values(), ids=BAD_HANDLES.keys())
def test_bad_handles_are_refused_before_any_request_or_path(capsys, work, clock, monkeypatch, source, word):
    monkeypatch.setenv("X_BEARER_TOKEN", "a-token")
    before = snapshot(work)
    # No answers registered: any request at all would fail these mocks with an error of their own.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, respx.mock(assert_all_called=False) as route:
        run = cli(capsys, "fetch", source, "--out", str(work / "out" / "posts.jsonl"))
    refused(run, word)
    assert len(mock.calls) == 0 and len(route.calls) == 0 and clock == []
    assert snapshot(work) == before  # no cache file named after it, nothing else


# ---------------------------------------------------------------------------------------------- numbers

BAD_NUMBERS = {
    "generate-n-negative": (["generate", "BOT", "-n", "-3"], "must be positive"),
    "generate-n-huge": (["generate", "BOT", "-n", "1000000000000"], "at most 10,000"),
    "generate-n-not-whole": (["generate", "BOT", "-n", "2.5"], "not a whole number"),
    "generate-temperature-zero": (["generate", "BOT", "--temperature", "0"], "must be positive"),
    "generate-temperature-negative": (["generate", "BOT", "--temperature", "-0.7"], "must be positive"),
    "generate-temperature-nan": (["generate", "BOT", "--temperature", "nan"], "must be positive"),
    "generate-max-length-zero": (["generate", "BOT", "--max-new-tokens", "0"], "must be positive"),
    "generate-seed-not-integer": (["generate", "BOT", "--seed", "1.5"], "invalid int value"),
    "generate-seed-negative": (["generate", "BOT", "--seed", "-1"], "seed must be between 0 and"),
    "generate-seed-huge": (["generate", "BOT", "--seed", str(2**64)], "seed must be between 0 and"),
    "generate-top-p-above-one": (["generate", "BOT", "--top-p", "1.5"], "top-p"),
    "generate-top-k-negative": (["generate", "BOT", "--top-k", "-1"], "top-k must be >= 0"),
    "eval-n-huge": (["eval", "BOT", "posts.txt", "-n", "99999999"], "at most 10,000"),
    "eval-seed-negative": (["eval", "BOT", "posts.txt", "--seed", "-5"], "seed must be between 0 and"),
    "fetch-limit-zero": (["fetch", "posts.txt", "--limit", "0"], "must be positive"),
    "fetch-limit-words": (["fetch", "posts.txt", "--limit", "lots"], "not a whole number"),
}


@pytest.mark.parametrize(("argv", "word"), BAD_NUMBERS.values(), ids=BAD_NUMBERS.keys())
def test_bad_numbers_are_refused_before_anything_loads(capsys, work, argv, word):
    # BOT and posts.txt do not exist: a refusal that names the number came before either was looked at.
    argv = [str(work / a) if a in ("BOT", "posts.txt") else a for a in argv]
    before = snapshot(work)
    refused(cli(capsys, *argv), word)
    assert snapshot(work) == before


def test_the_api_has_the_command_lines_bound_on_posts(home, bots):
    from huggingtweets import Bot
    from huggingtweets.generate import MAX_POSTS, GenerateOptions

    GenerateOptions(n=MAX_POSTS).validate()  # the bound itself is allowed
    for n in (MAX_POSTS + 1, 10**12):
        with pytest.raises(HuggingTweetsError, match="at most 10,000"):
            GenerateOptions(n=n).validate()
    with pytest.raises(HuggingTweetsError, match="at most 10,000"):
        Bot.load(bots["full"]).generate(n=MAX_POSTS + 1)  # refused before a single post is drawn


# ---------------------------------------------------------------------------------------------- services

X_USER = "https://api.twitter.com/2/users/by/username/jack"
X_TWEETS = "https://api.twitter.com/2/users/12/tweets"
MASTODON_LOOKUP = "https://mastodon.example/api/v1/accounts/lookup"
MASTODON_STATUSES = "https://mastodon.example/api/v1/accounts/109/statuses"
BSKY_FEED = "https://public.api.bsky.app/xrpc/app.bsky.feed.getAuthorFeed"
MASTODON_ACCOUNT = {"id": "109", "username": "alice", "acct": "alice", "url": "https://mastodon.example/@alice"}


def problem(status: int, title: str) -> dict[str, Any]:
    return {"json": {"title": title, "detail": title, "type": "about:blank", "status": status}, "status": status}


# Per failure, what each service answers every request with, given the time the fetch's clock reads: requests'
# keywords for `responses` (X, Mastodon), an httpx answer or error for `respx` (Bluesky).
X_ANSWERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "401": lambda now: problem(401, "Unauthorized"),
    "403": lambda now: problem(403, "Forbidden"),
    "404": lambda now: problem(404, "Not Found"),
    "429": lambda now: problem(429, "Too Many Requests")
    | {"headers": {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(now + 150)}},
    "503": lambda now: problem(503, "Service Unavailable"),
    "connect-timeout": lambda now: {"body": requests.exceptions.ConnectTimeout("connect timed out")},
    "read-timeout": lambda now: {"body": requests.exceptions.ReadTimeout("read timed out")},
}


def mastodon_error(status: int, error: str) -> Callable[[int], dict[str, Any]]:
    return lambda now: {"json": {"error": error}, "status": status}


MASTODON_ANSWERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "401": mastodon_error(401, "This method requires an authenticated user"),
    "403": mastodon_error(403, "This action is not allowed"),
    "404": mastodon_error(404, "Record not found"),
    "429": lambda now: mastodon_error(429, "Too many requests")(now)
    | {"headers": {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": datetime.fromtimestamp(now + 100, tz=timezone.utc).isoformat()}},
    "503": mastodon_error(503, "Service Unavailable"),
    "connect-timeout": lambda now: {"body": requests.exceptions.ConnectTimeout("connect timed out")},
    "read-timeout": lambda now: {"body": requests.exceptions.ReadTimeout("read timed out")},
}


def xrpc(status: int, error: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "message": message}, headers=headers)


BSKY_ANSWERS: dict[str, Callable[[int], Any]] = {
    "401": lambda now: xrpc(401, "AuthMissing", "Authentication Required"),
    "403": lambda now: xrpc(403, "Forbidden", "This feed is blocked"),
    "404": lambda now: xrpc(404, "NotFound", "Actor not found"),
    "429": lambda now: xrpc(429, "RateLimitExceeded", "Rate Limit Exceeded", **{"ratelimit-remaining": "0", "ratelimit-reset": str(now + 30)}),
    "503": lambda now: xrpc(503, "InternalServerError", "Service Unavailable"),
    "connect-timeout": lambda now: httpx.ConnectTimeout("connect timed out"),
    "read-timeout": lambda now: httpx.ReadTimeout("read timed out"),
}

SOURCES = {"x": "@jack", "mastodon": "mastodon:alice@mastodon.example", "bluesky": "bsky:alice"}


@contextmanager
def serving(service: str, failure: str, now: int) -> Iterator[None]:
    """The service answering every request with `failure` (Mastodon's statuses for a read timeout: its lookup
    does not retry a network error, so that a wrong instance name fails at once)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, respx.mock(assert_all_called=False) as routes:
        if service == "x":
            mock.get(X_USER, **X_ANSWERS[failure](now))
        elif service == "mastodon" and failure == "read-timeout":
            mock.get(MASTODON_LOOKUP, json=MASTODON_ACCOUNT)
            mock.get(MASTODON_STATUSES, **MASTODON_ANSWERS[failure](now))
        elif service == "mastodon":
            mock.get(MASTODON_LOOKUP, **MASTODON_ANSWERS[failure](now))
        else:
            routes.get(BSKY_FEED).mock(side_effect=lambda request: _raise_or_return(BSKY_ANSWERS[failure](now)))
        yield


def _raise_or_return(answer: Any) -> httpx.Response:
    if isinstance(answer, Exception):
        raise answer
    return answer


RETRIED = 3  # "trying again in 2 s", 4 s, 8 s: then the error
# (service, failure): (extra arguments, word of the error line, progress lines before it, what the clock slept)
SERVICE_CASES: dict[tuple[str, str], tuple[list[str], str, int, list[float]]] = {
    ("x", "401"): ([], "rejected the bearer token", 0, []),
    ("x", "403"): ([], "refused access (403 forbidden", 0, []),
    ("x", "404"): ([], "found nothing for @jack (404", 0, []),
    ("x", "429"): (["--no-wait"], "rate limit reached for about 3 min", 0, []),
    ("x", "503"): ([], "x kept failing (http 503", RETRIED, [2, 4, 8]),
    ("x", "connect-timeout"): ([], "x kept failing (network error", RETRIED, [2, 4, 8]),
    ("x", "read-timeout"): ([], "x kept failing (network error", RETRIED, [2, 4, 8]),
    ("mastodon", "401"): ([], "only to signed-in users", 0, []),
    ("mastodon", "403"): ([], "http 403", 0, []),
    ("mastodon", "404"): ([], "has no account @alice", 0, []),
    ("mastodon", "429"): (["--no-wait"], "rate limit reached for about 2 min", 0, []),
    ("mastodon", "503"): ([], "kept failing (http 503", RETRIED, [2, 4, 8]),
    ("mastodon", "connect-timeout"): ([], "could not reach https://mastodon.example", 0, []),
    ("mastodon", "read-timeout"): ([], "kept failing (network error", RETRIED, [2, 4, 8]),
    ("bluesky", "401"): ([], "http 401, authmissing", 0, []),
    ("bluesky", "403"): ([], "http 403", 0, []),
    ("bluesky", "404"): ([], "bluesky has no account alice.bsky.social", 0, []),
    ("bluesky", "429"): (["--no-wait"], "rate limit reached for about 1 min", 0, []),
    ("bluesky", "503"): ([], "bluesky kept failing (http 503", RETRIED, [2, 4, 8]),
    ("bluesky", "connect-timeout"): ([], "bluesky kept failing (network error", RETRIED, [2, 4, 8]),
    ("bluesky", "read-timeout"): ([], "bluesky kept failing (network error", RETRIED, [2, 4, 8]),
}


@dataclass
class Services:
    now: int  # what the fetch's stopped clock reads
    slept: list[float]  # what it would have slept


@pytest.fixture()
def services(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> Services:
    """A token for X, and conftest's stopped clock, stopped at the real time: Mastodon.py reads rate-limit resets
    against the real clock, and ignores one already past."""
    from huggingtweets.sources import remote

    monkeypatch.setenv("X_BEARER_TOKEN", "a-token")
    now = int(time.time())
    monkeypatch.setattr(remote, "_now", lambda: now)
    return Services(now, clock)


@pytest.mark.parametrize(("service", "failure"), SERVICE_CASES, ids=[f"{s}-{f}" for s, f in SERVICE_CASES])
def test_service_failures(capsys, work, services, service, failure):
    extra, word, progress, slept = SERVICE_CASES[service, failure]
    before = snapshot(work)
    with serving(service, failure, services.now):
        run = cli(capsys, "fetch", SOURCES[service], *extra, "--out", str(work / "out" / "posts.jsonl"))
    refused(run, word, progress=progress)
    assert services.slept == slept  # no-wait waited for nothing; retries waited 2, 4 and 8 s on the stopped clock
    assert snapshot(work) == before  # no cache for an account the service never answered for


@pytest.mark.parametrize(("service", "waits"), [("x", [60, 60, 31]), ("mastodon", [60, 40]), ("bluesky", [30])])
def test_a_rate_limit_that_never_lifts_stops_after_five_waits(capsys, work, services, service, waits):
    before = snapshot(work)
    with serving(service, "429", services.now):
        run = cli(capsys, "fetch", SOURCES[service], "--out", str(work / "out" / "posts.jsonl"))
    # Each wait says how long, then what is left every minute: one line a sleep; after the fifth, the error.
    refused(run, "still rate-limiting after 5 waits", progress=5 * len(waits))
    assert services.slept == waits * 5
    assert snapshot(work) == before


@pytest.mark.parametrize("service", SOURCES)
def test_offline_without_a_cache_fails_at_once(capsys, work, services, service):
    before = snapshot(work)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, respx.mock(assert_all_called=False) as routes:
        run = cli(capsys, "fetch", SOURCES[service], "--offline", "--out", str(work / "out" / "posts.jsonl"))
    refused(run, "nothing cached for")
    assert len(mock.calls) == 0 and len(routes.calls) == 0 and services.slept == []
    assert snapshot(work) == before


def test_a_failed_fetch_leaves_the_cache_as_it_was(capsys, work, services):
    tweet = {"id": "1000001", "text": "an early post", "created_at": "2026-01-01T00:00:00.000Z", "edit_history_tweet_ids": ["1000001"]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(X_USER, json={"data": {"id": "12", "name": "jack", "username": "jack"}})
        mock.get(X_TWEETS, json={"data": [tweet], "meta": {"result_count": 1}})
        assert cli(capsys, "fetch", "@jack").code == 0
    before = snapshot(work)
    assert any(name.endswith("jack.jsonl") for name in before)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(X_USER, json={"data": {"id": "12", "name": "jack", "username": "jack"}})
        mock.get(X_TWEETS, **problem(503, "Service Unavailable"))
        run = cli(capsys, "fetch", "@jack", "--out", str(work / "out" / "posts.jsonl"))
    refused(run, "kept failing (http 503", progress=2 + RETRIED)  # the cost and the 800-post notes, then the retries
    assert snapshot(work) == before


# ---------------------------------------------------------------------------------------------- the machine


@pytest.fixture()
def posts_txt(work: Path) -> Path:
    path = work / "posts.txt"
    path.write_text("\n".join(make_posts(20)) + "\n", encoding="utf-8")
    return path


def test_out_is_a_folder(capsys, work, posts_txt):
    before = snapshot(work)
    refused(cli(capsys, "fetch", str(posts_txt), "--out", str(work / "out")), "is a folder: give a file name")
    assert snapshot(work) == before


def test_out_under_a_file_is_refused_before_the_source_is_read(capsys, work, monkeypatch):
    import huggingtweets.sources

    (work / "notes.txt").write_text("my notes")
    monkeypatch.setattr(huggingtweets.sources, "load", lambda *a: pytest.fail("the source was read"))
    before = snapshot(work)
    run = cli(capsys, "fetch", "@jack", "--out", str(work / "notes.txt" / "deeper" / "posts.jsonl"))
    assert refused(run, "a file is in the way of a folder there", code=1) == (
        f"huggingtweets: error: {work / 'notes.txt'}: a file is in the way of a folder there"
    )
    assert snapshot(work) == before


def test_out_where_no_folder_can_be_made(capsys, work, posts_txt):
    before = snapshot(work)
    run = cli(capsys, "fetch", str(posts_txt), "--out", "/proc/huggingtweets-test/posts.jsonl")
    refused(run, "/proc/huggingtweets-test", progress=1, code=1)  # "posts.txt: 20 posts", then the error
    assert snapshot(work) == before and not os.path.exists("/proc/huggingtweets-test")


def test_a_full_disk_leaves_the_previous_file_whole(capsys, work, posts_txt, monkeypatch):
    from huggingtweets import atomic

    out = work / "out" / "posts.jsonl"
    out.write_text('{"text": "the previous fetch"}\n')
    real_fdopen = os.fdopen

    class Full:
        """A file on a disk that fills up halfway through the write."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.file = real_fdopen(*args, **kwargs)

        def write(self, data: bytes) -> int:
            self.file.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

    monkeypatch.setattr(atomic.os, "fdopen", Full)
    before = snapshot(work)
    run = cli(capsys, "fetch", str(posts_txt), "--out", str(out))
    refused(run, "no space left on device", progress=1, code=1)
    assert snapshot(work) == before  # the old file as it was, and no half-written temporary beside it


# ---------------------------------------------------------------------------------------------- bot folders


@pytest.fixture(scope="module")
def bots(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Path]:
    """Two tiny bots, trained once for this file: one with all its weights, one with LoRA adapters."""
    root = tmp_path_factory.mktemp("bots")
    posts = root / "posts.txt"
    posts.write_text("\n".join(make_posts(200)) + "\n", encoding="utf-8")
    made = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUGGINGTWEETS_HOME", str(root / "home"))
        for method in ("full", "lora"):
            argv = ["train", str(posts), "--out", str(root / method), "--base-model", str(tiny_llama), "--method", method]
            assert main([*argv, "--max-steps", "1", "--block-size", "32", "--compile", "off", "--quiet"]) == 0
            made[method] = root / method
    return made


def remove(*names: str) -> Callable[[Path], None]:
    return lambda bot: [(bot / name).unlink() for name in names] and None


def cut(name: str) -> Callable[[Path], None]:
    return lambda bot: (bot / name).write_bytes((bot / name).read_bytes()[: (bot / name).stat().st_size // 2]) and None


def garble(name: str) -> Callable[[Path], None]:
    return lambda bot: (bot / name).write_text("{ half a", encoding="utf-8") and None


def base_gone(bot: Path) -> None:
    info = json.loads((bot / "huggingtweets.json").read_text())
    (bot / "huggingtweets.json").write_text(json.dumps(info | {"base_model": str(bot.parent / "deleted-base")}))


BOT_CASES = [
    pytest.param("full", cut("model.safetensors"), "corrupt or incomplete", id="weights-cut-short"),
    pytest.param("full", garble("huggingtweets.json"), "corrupt", id="info-garbled"),
    pytest.param("lora", remove("adapter_model.safetensors"), "corrupt or incomplete", id="adapter-missing"),
    pytest.param("lora", cut("adapter_model.safetensors"), "corrupt or incomplete", id="adapter-cut-short"),
    pytest.param("lora", remove("adapter_config.json"), "corrupt or incomplete", id="adapter-config-missing"),
    pytest.param("lora", garble("adapter_config.json"), "corrupt or incomplete", id="adapter-config-garbled"),
    pytest.param("lora", base_gone, "does not exist", id="lora-base-model-deleted"),
    pytest.param("full", remove("model.safetensors"), "corrupt or incomplete", id="weights-missing"),
    pytest.param("full", remove("config.json"), "corrupt or incomplete", id="config-missing"),
    pytest.param("full", garble("config.json"), "corrupt or incomplete", id="config-garbled"),
    pytest.param("full", remove("tokenizer.json", "tokenizer_config.json"), "corrupt or incomplete", id="tokenizer-missing"),
    pytest.param("lora", garble("tokenizer.json"), "corrupt or incomplete", id="tokenizer-garbled"),
]


@pytest.mark.parametrize(("kind", "damage", "word"), BOT_CASES)
def test_damaged_bot_folders(capsys, work, bots, kind, damage, word):
    bot = work / "bot"
    shutil.copytree(bots[kind], bot)
    damage(bot)
    before = snapshot(work)
    line = refused(cli(capsys, "generate", str(bot), "-n", "1", "--seed", "1"), word)
    assert "--base-model" not in line  # generate has no such option: the advice has to be about the bot
    assert snapshot(work) == before


def test_a_file_given_as_the_bot_folder(capsys, work, posts_txt):
    before = snapshot(work)
    refused(cli(capsys, "generate", str(posts_txt)), "is a file")
    assert snapshot(work) == before
