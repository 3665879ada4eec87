"""Does a generated post copy the training posts?

A post counts as a copy when it repeats a run of 8 words from any training post, or, for posts shorter
than that, when it is a training post. Words are compared lowercased without punctuation, so a copy
does not escape by changing a comma.

Only 64-bit hashes of the word runs are kept, not the posts: a bot folder can carry its check
(`ngrams.bin`) without carrying the person's text.

    checker = CopyChecker.from_texts(train_texts)
    checker.copies("a generated post")  # True / False
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Iterable
from pathlib import Path

from . import atomic

RUN = 8  # words: long enough that a shared run is not a common phrase
WORD = re.compile(r"[\w@#']+")


def words(text: str) -> list[str]:
    return [w.strip("'") for w in WORD.findall(text.lower()) if w.strip("'")]


def _hash(parts: Iterable[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(parts).encode(), digest_size=8).digest(), "little")


def fingerprints(text: str, run: int = RUN) -> set[int]:
    """Hashes of every `run`-word window; a shorter text gives one hash of all its words."""
    w = words(text)
    if not w:
        return set()
    if len(w) < run:
        return {_hash(["<short>", *w])}
    return {_hash(w[i : i + run]) for i in range(len(w) - run + 1)}


class CopyChecker:
    def __init__(self, hashes: set[int], run: int = RUN) -> None:
        self.hashes = hashes
        self.run = run

    @classmethod
    def from_texts(cls, texts: Iterable[str], run: int = RUN) -> CopyChecker:
        hashes: set[int] = set()
        for text in texts:
            hashes |= fingerprints(text, run)
        return cls(hashes, run)

    def copies(self, text: str) -> bool:
        return not self.hashes.isdisjoint(fingerprints(text, self.run))

    def rate(self, texts: list[str]) -> float:
        """Share of `texts` that copy training posts."""
        return sum(self.copies(t) for t in texts) / len(texts) if texts else 0.0

    def save(self, path: Path) -> None:
        data = array("Q", sorted(self.hashes)).tobytes()
        atomic.write_bytes(path, data)

    @classmethod
    def load(cls, path: Path) -> CopyChecker:
        values = array("Q")
        values.frombytes(path.read_bytes())
        return cls(set(values))

