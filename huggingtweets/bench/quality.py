"""The bot's voice (issue 22): do its posts look like the person's in length, ending and variety?

Perplexity says how well the bot predicts the person's held-out posts; these figures look at what it writes. All
are computed on one batch of generated posts against the posts the bot trained on; words are what whitespace
separates. distinct-n (unique n-grams / all n-grams over the batch, each post's own n-grams) falls as a batch
grows, so the person's side is measured on as many of their posts as the batch holds, spread evenly over them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .data import evenly
from .figures import median

REPEATED_NGRAM = 4  # a post that holds some run of this many words twice is looping


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct(texts: list[str], n: int) -> float | None:
    """Unique n-grams over all n-grams of `texts`, counted within each post (None: no post has n words)."""
    grams = [gram for text in texts for gram in ngrams(text, n)]
    return len(set(grams)) / len(grams) if grams else None


def repeats_ngram(text: str, n: int = REPEATED_NGRAM) -> bool:
    grams = ngrams(text, n)
    return len(set(grams)) < len(grams)


def repeated_ngram_share(texts: list[str], n: int = REPEATED_NGRAM) -> float | None:
    """Share of posts that hold some word n-gram twice."""
    return sum(repeats_ngram(t, n) for t in texts) / len(texts) if texts else None


def duplicate_share(texts: list[str]) -> float | None:
    """Share of posts whose exact text is also another post of the batch (both count)."""
    counts = Counter(texts)
    return sum(counts[t] > 1 for t in texts) / len(texts) if texts else None


def variety(texts: list[str]) -> dict[str, Any]:
    return {
        "posts": len(texts),
        "distinct_1": distinct(texts, 1),
        "distinct_2": distinct(texts, 2),
        "repeated_4gram_share": repeated_ngram_share(texts),
        "duplicate_share": duplicate_share(texts),
    }


def voice(bot: list[str], ended: list[bool], person: list[str]) -> dict[str, Any]:
    """The voice figures of the bot's posts `bot` (with whether each `ended` before the token limit) against the
    posts `person` wrote and the bot trained on."""
    bot_median = median([len(t) for t in bot])
    person_median = median([len(t) for t in person])
    return {
        **variety(bot),
        "median_characters": bot_median,
        "person_median_characters": person_median,
        "length_ratio": bot_median / person_median if bot_median is not None and person_median else None,
        "ended_share": sum(ended) / len(ended) if ended else None,
        "person_posts": len(person),
        "person_sample": variety(evenly(person, len(bot)) if bot else []),
    }
