"""`Post`: the one record every source produces, and its JSONL form."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import atomic


@dataclass(frozen=True)
class Post:
    """One public post, whatever service it came from.

    `text` is as the source gave it (cleaning happens later, in `clean`); `created_at` is timezone-aware
    when the source says when it was posted; engagement counts are None where the source does not know them.
    """

    text: str
    id: str = ""
    created_at: datetime | None = None
    author: str = ""
    is_retweet: bool = False
    is_reply: bool = False
    likes: int | None = None
    reposts: int | None = None
    source: str = ""
    # A content warning (Mastodon's spoiler text) is kept apart from the text it hides.
    content_warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Post:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        when = kwargs.get("created_at")
        kwargs["created_at"] = parse_time(when)
        kwargs["text"] = str(kwargs.get("text") or "")
        kwargs["id"] = str(kwargs.get("id") or "")
        for key in ("likes", "reposts"):
            kwargs[key] = to_int(kwargs.get(key))
        return cls(**kwargs)


def parse_time(value: object) -> datetime | None:
    """ISO 8601 (with `Z`, an offset or a ` UTC` suffix), X's `Thu Nov 03 08:50:26 +0000 2022`, or Unix seconds
    (a number, or 9 or more digits in a CSV: since 1973); None if none of these.

    A time without an offset is taken as UTC, so that every parsed time can be compared with every other.
    """
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) >= 9:  # not 20221103, a date
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # out of range, or nan
            return None
    if not isinstance(value, str):
        return None
    value = value.strip().removesuffix(" UTC").removesuffix(" GMT")
    for parse in (
        lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
        lambda v: datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y"),
    ):
        try:
            parsed = parse(value)
        except ValueError:
            continue
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
    return None


def to_int(value: Any) -> int | None:
    """X archives give counts as strings; CSVs give them as text or nothing."""
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf, or a number past float's range
        return None


def write_jsonl(path: str | os.PathLike[str], posts: Iterable[Post]) -> None:
    atomic.write_text(path, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in posts))


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    """Parse a JSONL file into dicts, skipping blank lines; raises ValueError naming the bad line."""
    records = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"line {number} is not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"line {number} is not a JSON object")
            records.append(record)
    return records
