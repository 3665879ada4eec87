"""Posts from files: an X archive (zip, extracted folder or bare tweets.js), CSV, JSONL or TXT.

    from huggingtweets.sources.files import load_file
    posts = load_file("twitter-2026-03-01-abc.zip")

Every problem with a file becomes a one-line `HuggingTweetsError` that names the file. What is refused, not guessed at:

- CSV, JSONL and TXT are UTF-8 (a BOM is fine); CSV and TXT may also be UTF-16 or UTF-32 with a BOM, as Excel saves
  "Unicode text". Latin-1 and other 8-bit encodings are refused, naming the first byte that is not UTF-8.
- A JSONL line that is not a JSON object stops the load, naming the line: a file cut short or edited by hand is to be
  mended, not silently shortened (a skipped line is a post the bot never sees, and no one would know).
- A CSV field over 128 KiB (Python's csv limit; a post is at most a few thousand characters) is a quote left open.
- An archive zip with a member that leaves the zip's folder (`../`, `/`), a symbolic link, or a file that unpacks past
  `MAX_MEMBER_BYTES` (a zip bomb). Nothing is ever extracted to disk: members are read into memory, by name.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import stat
import zipfile
import zlib
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import HuggingTweetsError
from ..posts import Post, parse_time, read_jsonl_records, to_int

TEXT_COLUMNS = ("text", "tweet", "full_text", "content")
_COLUMNS = {
    "id": ("id", "id_str", "tweet_id", "status_id"),
    "created_at": ("created_at", "date", "timestamp", "time", "datetime"),
    "author": ("author", "username", "screen_name", "user", "handle"),
    "likes": ("likes", "favorite_count", "likes_count", "like_count", "favorites"),
    "reposts": ("reposts", "retweets", "retweet_count", "retweets_count", "repost_count"),
    "reply_to": ("in_reply_to_status_id_str", "in_reply_to_status_id", "in_reply_to", "reply_to"),
}
# `window.YTD.tweets.part0 = [` or `window.__THAR_CONFIG = {`: everything up to the first `=`.
_JS_PREFIX = re.compile(r"^\s*window\.[\w.$]+\s*=\s*")


# ---------------------------------------------------------------- X archive


# What one file of an archive, and all of them together, may unpack to. A real archive's tweets.js takes about 1.7 KB
# a post (3.6 MB for 2,045 posts), so 1 GiB is some 600,000 posts, more than X keeps; a zip bomb (a few KB that
# unpack to terabytes) is refused at its declared size, and one that lies about it is cut off there.
MAX_MEMBER_BYTES = 1 << 30
MAX_ARCHIVE_BYTES = 2 << 30


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """What makes a zip member one that no X archive holds: a path out of the zip's folder, or a link."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
        return f"a file with an unsafe path ({name!r})"
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):  # made on Unix, and a symbolic link
        return f"a symbolic link ({name!r})"
    return None


class _Archive:
    """Reads named files from an archive zip or folder, by their path inside it (`data/tweets.js`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.unpacked = 0  # bytes read from the zip so far
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise HuggingTweetsError(f"{path} is not a valid zip file: download the archive again") from None
            self.members = {info.filename: info for info in self.zip.infolist()}
            for info in self.members.values():
                problem = _member_problem(info)
                if problem:
                    raise HuggingTweetsError(f"{path} holds {problem}, which an X archive never does: download it again from X")
            names = list(self.members)
            # X puts data/ at the root; a re-zipped folder may add one level above it.
            roots = [n[: -len(tail)] for n in names for tail in ("data/tweets.js", "data/tweet.js", "data/manifest.js") if n.endswith(tail)]
            self.root = min(roots, key=len) if roots else ""
        else:
            self.root = "" if (path / "data").is_dir() else None  # type: ignore[assignment]

    def has(self, name: str) -> bool:
        if self.zip is not None:
            return self.root + name in self.members
        return self._file(name) is not None

    def _file(self, name: str) -> Path | None:
        return next((c for c in (self.path / name, self.path / PurePosixPath(name).name) if c.is_file()), None)

    def read(self, name: str) -> bytes | None:
        if self.zip is None:
            file = self._file(name)
            return file.read_bytes() if file else None
        info = self.members.get(self.root + name)
        if info is None:
            return None
        bound = min(MAX_MEMBER_BYTES, MAX_ARCHIVE_BYTES - self.unpacked)
        if info.file_size > bound:
            raise self._too_large(info.filename, bound)
        try:
            # Inflated no further than the declared size: zipfile's read() of a whole member inflates all the compressed
            # data at once, whatever the member declares. One that holds more than it declares fails its CRC check.
            with self.zip.open(info) as member:
                data = member.read(info.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
            # A damaged member (bad CRC, cut short), an encrypted one, or a compression zipfile lacks.
            reason = " ".join(str(e).split()) or type(e).__name__
            raise HuggingTweetsError(f"{self.path}: {info.filename} cannot be read ({reason}): download the archive again") from None
        self.unpacked += len(data)
        return data

    def _too_large(self, member: str, bound: int) -> HuggingTweetsError:
        return HuggingTweetsError(
            f"{self.path}: {member} would unpack to more than {bound:,} bytes, which no X archive does (a zip bomb?): "
            "download the archive again from X"
        )


def parse_js(raw: bytes, name: str) -> Any:
    """Parse `window.YTD.tweets.part0 = [...]` (or plain JSON) into Python data."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HuggingTweetsError(f"{name} is not UTF-8 text: download the archive again") from None
    text = _JS_PREFIX.sub("", text, count=1).strip().rstrip(";")
    if not text:
        raise HuggingTweetsError(f"{name} is empty: download the archive again")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise HuggingTweetsError(
            f"{name} is truncated or malformed (line {e.lineno}: {e.msg}): download the archive again"
        ) from None


def _dig(data: Any, *keys: str) -> Any:
    """`data[k1][k2]...`, or None where a level is missing or not an object (archives are edited by hand)."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _manifest_files(manifest: dict[str, Any], data_type: str) -> list[str]:
    files = _dig(manifest, "dataTypes", data_type, "files")
    if not isinstance(files, list):
        return []
    return [f["fileName"] for f in files if isinstance(f, dict) and isinstance(f.get("fileName"), str) and f["fileName"]]


def _archive_post(entry: dict[str, Any], author: str) -> Post | None:
    tweet = entry.get("tweet", entry) if isinstance(entry, dict) else None
    if not isinstance(tweet, dict):
        return None
    text = tweet.get("full_text") or tweet.get("text") or ""
    if not isinstance(text, str):
        return None
    # Replies carry in_reply_to_* keys; some start with "@" and carry none: those are replies too.
    is_reply = bool(tweet.get("in_reply_to_status_id_str") or tweet.get("in_reply_to_user_id_str")) or text.startswith("@")
    return Post(
        text=text,
        id=str(tweet.get("id_str") or tweet.get("id") or ""),
        created_at=parse_time(tweet["created_at"]) if isinstance(tweet.get("created_at"), str) else None,
        author=author,
        # The `retweeted` flag is false even on retweets: only the prefix tells.
        is_retweet=text.startswith("RT @"),
        is_reply=is_reply,
        likes=to_int(tweet.get("favorite_count")),
        reposts=to_int(tweet.get("retweet_count")),
        source="x-archive",
    )


def _apply_note_tweets(posts: list[Post], notes: list[dict[str, Any]]) -> list[Post]:
    """Replace truncated long posts (ending in …) with the full text from note-tweet.js.

    Notes carry no post id: match on creation time (within seconds) and on the truncated text being a prefix.
    """
    full_texts = []
    for entry in notes:
        note = entry.get("noteTweet", entry) if isinstance(entry, dict) else {}
        text = _dig(note, "core", "text")
        when = parse_time(_dig(note, "createdAt"))
        if isinstance(text, str) and when:
            full_texts.append((when, text))
    if not full_texts:
        return posts
    out = []
    for post in posts:
        if post.created_at and "…" in post.text[-30:]:
            head = post.text.split("…")[0].strip()[:50]
            for when, text in full_texts:
                if abs(when - post.created_at) <= timedelta(seconds=10) and text.startswith(head):
                    post = Post(**{**post.__dict__, "text": text})
                    break
        out.append(post)
    return out


def load_x_archive(path: Path) -> list[Post]:
    archive = _Archive(path)
    manifest_raw = archive.read("data/manifest.js")
    manifest = parse_js(manifest_raw, "manifest.js") if manifest_raw else {}
    if not isinstance(manifest, dict):
        manifest = {}
    author = _dig(manifest, "userInfo", "userName")
    author = author if isinstance(author, str) else ""
    if not author:
        account_raw = archive.read("data/account.js")
        if account_raw:
            accounts = parse_js(account_raw, "account.js")
            username = _dig(accounts[0], "account", "username") if isinstance(accounts, list) and accounts else None
            author = username if isinstance(username, str) else ""

    # Large archives split posts over several files: the manifest lists them all.
    names = _manifest_files(manifest, "tweets") or _manifest_files(manifest, "tweet")
    if not names:
        names = [n for n in ("data/tweets.js", "data/tweet.js") if archive.has(n)]
    if not names:
        raise HuggingTweetsError(f"{path} holds no tweets.js: is this an X archive (the zip from 'Download an archive')?")
    posts: list[Post] = []
    for name in names:
        raw = archive.read(name)
        if raw is None:
            raise HuggingTweetsError(f"{path} lacks {name}, which its manifest lists: download the archive again")
        entries = parse_js(raw, PurePosixPath(name).name)
        if not isinstance(entries, list):
            raise HuggingTweetsError(f"{name} does not hold a list of posts: download the archive again")
        posts += [p for p in (_archive_post(e, author) for e in entries) if p is not None]

    note_names = _manifest_files(manifest, "noteTweet") or ["data/note-tweet.js"]
    notes: list[dict[str, Any]] = []
    for name in note_names:
        raw = archive.read(name)
        if raw:
            parsed = parse_js(raw, PurePosixPath(name).name)
            notes += parsed if isinstance(parsed, list) else []
    return _apply_note_tweets(posts, notes)


def load_tweets_js(path: Path) -> list[Post]:
    entries = parse_js(path.read_bytes(), path.name)
    if not isinstance(entries, list):
        raise HuggingTweetsError(f"{path} does not hold a list of posts: is it an X archive's tweets.js?")
    return [p for p in (_archive_post(e, "") for e in entries) if p is not None]


# ---------------------------------------------------------------- CSV, JSONL, TXT


# Byte order marks, longest first (UTF-32 LE's starts like UTF-16 LE's). Excel saves "Unicode text" as UTF-16.
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _read_text(path: Path, wide: bool = True) -> str:
    """The text of a CSV, JSONL or TXT file: UTF-8, with or without a BOM, and (`wide`) UTF-16 or UTF-32 with theirs.

    Anything else (Latin-1, Windows-1252, ...) is refused, naming the first byte that is not UTF-8: which of the
    8-bit encodings a file is cannot be told from its bytes, and a wrong guess would train on garbled text.
    """
    raw = path.read_bytes()
    encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), None)
    if encoding and not wide:
        raise HuggingTweetsError(f"{path} is {encoding}, and JSON Lines are UTF-8: save it as UTF-8 and try again")
    try:
        return raw.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        where = f"byte {raw[e.start]:#x} on line {line}"
        said = f"starts like {encoding} but is not ({where})" if encoding else f"is not UTF-8 ({where})"
        raise HuggingTweetsError(f"{path} {said}: save it as UTF-8 and try again") from None


def _pick(fields: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name in fields:
            return fields[name]
    return None


def _flag(value: Any) -> bool:
    """A yes/no column: CSV gives "False" or "0" as text, which `bool()` would call true."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "t", "yes", "y", "1")
    return bool(value)


def _record_time(value: Any) -> datetime | None:
    """A date column; one without a UTC offset is taken as UTC, so posts from all sources sort together."""
    return parse_time(str(value)) if value else None


def _record_post(record: dict[str, Any], source: str) -> Post:
    fields = {str(k).strip().lower(): k for k in record}
    text_key = _pick(fields, TEXT_COLUMNS)
    text = str(record.get(text_key) or "") if text_key else ""

    def get(kind: str) -> Any:
        key = _pick(fields, _COLUMNS[kind])
        return record.get(key) if key else None

    when = get("created_at")
    reply_to = get("reply_to")
    return Post(
        text=text,
        id=str(get("id") or ""),
        created_at=_record_time(when),
        author=str(get("author") or ""),
        is_retweet=_flag(record.get("is_retweet")) or text.startswith("RT @"),
        is_reply=_flag(record.get("is_reply")) or bool(reply_to) or text.startswith("@"),
        likes=to_int(get("likes")),
        reposts=to_int(get("reposts")),
        source=str(record.get("source") or source),
        content_warning=str(record.get("content_warning") or ""),
    )


def load_csv(path: Path) -> list[Post]:
    text = _read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        if not any(h and h.strip().lower() in TEXT_COLUMNS for h in header):
            raise HuggingTweetsError(
                f"{path} has no text column (looked for {', '.join(TEXT_COLUMNS)}; found {', '.join(map(str, header)) or 'none'}): rename the column that holds the posts"
            )
        return [_record_post(row, "csv") for row in reader]
    except csv.Error as e:
        raise HuggingTweetsError(f"{path} is not a valid CSV ({e}): check the quoting") from None


def load_jsonl(path: Path) -> list[Post]:
    """One JSON object a line (blank lines are skipped); a line that is not one stops the load, naming it."""
    _read_text(path, wide=False)  # one clear message for a wrong encoding
    try:
        records = read_jsonl_records(path)
    except ValueError as e:
        raise HuggingTweetsError(f"{path}: {e}: each line must be one JSON object with a \"text\" field") from None
    posts = [_record_post(r, "jsonl") for r in records]
    if records and not any(p.text for p in posts):
        raise HuggingTweetsError(f"{path} has no \"text\" field in its records (looked for {', '.join(TEXT_COLUMNS)})")
    return posts


def load_txt(path: Path) -> list[Post]:
    lines = _read_text(path).splitlines()
    return [Post(text=line.strip(), source="txt") for line in lines if line.strip()]


# ---------------------------------------------------------------- dispatch


def is_x_archive_folder(path: Path) -> bool:
    return any((path / p).is_file() for p in ("data/manifest.js", "data/tweets.js", "data/tweet.js", "tweets.js", "tweet.js"))


def load_file(path: str | Path) -> list[Post]:
    """Load posts from a file or archive folder, choosing the format from the path."""
    path = Path(path).expanduser()
    if not path.exists():
        raise HuggingTweetsError(f"{path} does not exist: check the path")
    if path.is_dir():
        if not is_x_archive_folder(path):
            raise HuggingTweetsError(f"{path} is a folder but not an extracted X archive (no data/tweets.js in it)")
        posts = load_x_archive(path)
    else:
        if path.stat().st_size == 0:
            raise HuggingTweetsError(f"{path} is empty")
        suffix = path.suffix.lower()
        loaders = {
            ".zip": load_x_archive,
            ".js": load_tweets_js,
            ".csv": load_csv,
            ".jsonl": load_jsonl,
            ".ndjson": load_jsonl,
            ".txt": load_txt,
        }
        if suffix not in loaders:
            raise HuggingTweetsError(
                f"{path}: unknown format '{suffix or path.name}': use an X archive (.zip or folder), tweets.js, .csv, .jsonl or .txt"
            )
        posts = loaders[suffix](path)
    if not posts:
        raise HuggingTweetsError(f"{path} holds no posts")
    return posts
