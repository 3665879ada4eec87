"""Posts from files: an X archive (zip, extracted folder or bare tweets.js), CSV, JSONL or TXT.

    from huggingtweets.sources.files import load_file
    posts = load_file("twitter-2026-03-01-abc.zip")

Every problem with a file becomes a one-line `HuggingTweetsError` that names the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
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


class _Archive:
    """Reads named files from an archive zip or folder, by their path inside it (`data/tweets.js`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise HuggingTweetsError(f"{path} is not a valid zip file: download the archive again") from None
            names = self.zip.namelist()
            # X puts data/ at the root; a re-zipped folder may add one level above it.
            roots = [n[: -len("data/tweets.js")] for n in names if n.endswith("data/tweets.js")]
            roots += [n[: -len("data/tweet.js")] for n in names if n.endswith("data/tweet.js")]
            roots += [n[: -len("data/manifest.js")] for n in names if n.endswith("data/manifest.js")]
            self.root = min(roots, key=len) if roots else ""
            self.names = set(names)
        else:
            self.root = "" if (path / "data").is_dir() else None  # type: ignore[assignment]

    def read(self, name: str) -> bytes | None:
        if self.zip is not None:
            member = self.root + name
            if member not in self.names:
                return None
            try:
                return self.zip.read(member)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
                # A damaged member (bad CRC, cut short), an encrypted one, or a compression zipfile lacks.
                reason = " ".join(str(e).split()) or type(e).__name__
                raise HuggingTweetsError(f"{self.path}: {member} cannot be read ({reason}): download the archive again") from None
        for candidate in (self.path / name, self.path / PurePosixPath(name).name):
            if candidate.is_file():
                return candidate.read_bytes()
        return None


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
        names = [n for n in ("data/tweets.js", "data/tweet.js") if archive.read(n) is not None]
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


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise HuggingTweetsError(
            f"{path} is not UTF-8 (byte {e.object[e.start]:#x} at position {e.start}): save it as UTF-8 and try again"
        ) from None


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
    text = _read_utf8(path)
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
    _read_utf8(path)  # one clear message for a wrong encoding
    try:
        records = read_jsonl_records(path)
    except ValueError as e:
        raise HuggingTweetsError(f"{path}: {e}: each line must be one JSON object with a \"text\" field") from None
    posts = [_record_post(r, "jsonl") for r in records]
    if records and not any(p.text for p in posts):
        raise HuggingTweetsError(f"{path} has no \"text\" field in its records (looked for {', '.join(TEXT_COLUMNS)})")
    return posts


def load_txt(path: Path) -> list[Post]:
    lines = _read_utf8(path).splitlines()
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
