"""Posts from a Twint SQLite database (Twint scraped X until 2021; its databases are still around).

Twint changed its schema over time; both are read, by the columns a table really has (`PRAGMA table_info`):

    final   tweets(id, id_str, tweet, conversation_id, created_at [ms since 1970], date, time, timezone, screen_name,
                   likes_count, retweets_count, ...), plus `retweets` (who retweeted which post) and `replies`
    older   tweets(id, date, time, timezone, user, tweet, likes, retweets, retweet [a flag], user_rt, ...)

Retweets are stored under the original author in both: they are this account's retweets when the `retweets` table
(or `user_rt`) names it, and are marked `is_retweet` for cleaning to count and drop.

A database may hold several accounts; `tweets.db#jack` picks one, and without it there must be only one.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from ..errors import HuggingTweetsError
from ..posts import Post, parse_time, to_int
from .options import Progress


def _when(row: sqlite3.Row, columns: set[str]) -> datetime | None:
    """Final schema: `created_at` in milliseconds. Older: `date` + `time` (+ `timezone` when it is an offset)."""
    if "created_at" in columns and isinstance(row["created_at"], (int, float)):
        value = row["created_at"]
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=timezone.utc)  # ms, else seconds
    if "date" not in columns or not row["date"]:
        return None
    zone = str(row["timezone"] or "") if "timezone" in columns else ""
    text = f"{row['date']}T{row['time'] if 'time' in columns and row['time'] else '00:00:00'}"
    offset = f"{zone[:3]}:{zone[3:]}" if re.fullmatch(r"[+-]\d{4}", zone) else ""  # +0200 -> +02:00 (Python 3.10)
    # Named zones ("CET") cannot be told apart reliably; Twint wrote UTC unless told otherwise (parse_time's default).
    return parse_time(text + offset)


def load_twint(path: str, user: str | None = None, *, say: Progress) -> list[Post]:
    """The posts of one account in a Twint database, newest first."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise HuggingTweetsError(f"{path} is a folder, not a Twint database file")
    if not file.is_file():
        raise HuggingTweetsError(f"{path} does not exist")
    if file.stat().st_size == 0:
        raise HuggingTweetsError(f"{path} is empty: not a Twint database")
    try:
        # Read-only: a database someone scraped over days is not ours to change.
        db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise HuggingTweetsError(f"{path} cannot be opened as a database ({e})") from None
    db.row_factory = sqlite3.Row
    try:
        return _read(db, path, user, say)
    except sqlite3.DatabaseError as e:
        raise HuggingTweetsError(f"{path} is not a readable Twint database ({e})") from None
    finally:
        db.close()


class _Schema:
    """The columns a Twint database's `tweets` table has, and the SQL that tells retweets and replies."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        columns = {row["name"] for row in db.execute("PRAGMA table_info(tweets)")}
        if not columns:
            raise HuggingTweetsError(f"{path} has no `tweets` table: it is not a Twint database")
        final = "screen_name" in columns
        self.columns = columns
        self.author = "screen_name" if final else "user"
        self.text = "tweet"
        if self.author not in columns or self.text not in columns:
            raise HuggingTweetsError(
                f"{path}: the tweets table lacks {self.author!r} or {self.text!r}, not a Twint schema I know"
            )
        self.id = "id_str" if "id_str" in columns else "id"
        self.likes = next((c for c in ("likes_count", "likes") if c in columns), None)
        self.reposts = next((c for c in ("retweets_count", "retweets") if c in columns), None)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # Retweets are stored under the original author. The final schema lists who retweeted what in a `retweets`
        # table; the older one flags the row (`retweet`) and names the retweeter (`user_rt`).
        if final and "retweets" in tables:
            self.is_retweet = "id IN (SELECT tweet_id FROM retweets)"
            self.retweeted_by_user = "id IN (SELECT tweet_id FROM retweets WHERE lower(username) = lower(:user))"
        elif "retweet" in columns:
            self.is_retweet = "COALESCE(retweet, 0) NOT IN (0, '0', 'False', 'false', '')"
            by = "lower(user_rt) = lower(:user)" if "user_rt" in columns else "0"
            self.retweeted_by_user = f"({self.is_retweet}) AND {by}"
        else:
            self.is_retweet = self.retweeted_by_user = "0"
        # Replies: the final schema lists whom a post replies to in `replies`; older ones only show a leading @.
        if "replies" in tables:
            self.is_reply = "id IN (SELECT tweet_id FROM replies)"
        elif "conversation_id" in columns:
            self.is_reply = f"CAST(conversation_id AS TEXT) != CAST({self.id} AS TEXT)"
        else:
            self.is_reply = "0"


def _pick_user(db: sqlite3.Connection, schema: _Schema, path: str, user: str | None) -> str:
    """The account to read: `user`, or the only one the database holds (the authors of posts that are not retweets)."""
    counts = db.execute(
        f"SELECT {schema.author} AS author, COUNT(*) AS n FROM tweets WHERE NOT ({schema.is_retweet}) "
        f"GROUP BY lower({schema.author}) ORDER BY n DESC"
    ).fetchall()
    if not counts:
        raise HuggingTweetsError(f"{path} holds no posts")
    if user is None:
        if len(counts) > 1:
            listed = ", ".join(f"{row['author']} ({row['n']})" for row in counts[:10])
            more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
            raise HuggingTweetsError(
                f"{path} holds posts by {len(counts)} accounts: {listed}{more}; pick one with {path}#{counts[0]['author']}"
            )
        return str(counts[0]["author"])
    if not any(str(row["author"]).lower() == user.lower() for row in counts):
        listed = ", ".join(str(row["author"]) for row in counts[:10])
        raise HuggingTweetsError(f"{path} has no posts by {user}; it holds posts by {listed}")
    return user


def _read(db: sqlite3.Connection, path: str, user: str | None, say: Progress) -> list[Post]:
    schema = _Schema(db, path)
    user = _pick_user(db, schema, path, user)
    rows = db.execute(
        f"SELECT *, ({schema.retweeted_by_user}) AS _is_retweet, ({schema.is_reply}) AS _is_reply FROM tweets "
        f"WHERE lower({schema.author}) = lower(:user) OR ({schema.retweeted_by_user})",
        {"user": user},
    ).fetchall()
    posts = [
        Post(
            text=str(row[schema.text] or ""),
            id=str(row[schema.id]),
            created_at=_when(row, schema.columns),
            author=str(row[schema.author]),
            is_retweet=bool(row["_is_retweet"]),
            is_reply=bool(row["_is_reply"]) or str(row[schema.text] or "").startswith("@"),
            likes=to_int(row[schema.likes]) if schema.likes else None,
            reposts=to_int(row[schema.reposts]) if schema.reposts else None,
            source="twint",
        )
        for row in rows
    ]
    posts.sort(key=lambda p: (p.created_at or datetime.min.replace(tzinfo=timezone.utc), len(p.id), p.id), reverse=True)
    say(f"{path}: {len(posts)} posts by {user}")
    return posts
