"""Sources → cleaned posts per account → training and validation text.

    corpus = build_corpus(["twitter-archive.zip"], CleanOptions(keep_replies=True))
    print(corpus.table())
    train_texts, validation_texts = corpus.texts()

Each account is split on its own (its newest 10% held out), then the smaller accounts' training posts
are repeated to weigh about as much as the largest, as HuggingTweets did when it mixed users.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import distributed
from .clean import CleanOptions, Counts, clean, table
from .dataset import MIN_CHARACTERS, balance, check_enough_text, split_posts
from .errors import HuggingTweetsError
from .posts import Post
from .sources import FetchOptions, Progress, is_remote, load


@dataclass
class Account:
    source: str
    name: str
    posts: list[Post]  # cleaned
    counts: Counts


@dataclass
class Corpus:
    accounts: list[Account]
    options: CleanOptions = field(default_factory=CleanOptions)
    validation_share: float = 0.1
    warning: str | None = None

    @property
    def name(self) -> str:
        """A folder-safe name joining the accounts, e.g. `alice-bob`."""
        return "-".join(safe_name(a.name) for a in self.accounts) or "bot"

    @property
    def posts(self) -> list[Post]:
        return [p for a in self.accounts for p in a.posts]

    @property
    def counts(self) -> list[Counts]:
        return [a.counts for a in self.accounts]

    def table(self) -> str:
        return table(self.counts)

    def texts(self) -> tuple[list[str], list[str]]:
        """(training texts with accounts balanced, validation texts: each account's newest posts)."""
        splits = [split_posts(a.posts, self.validation_share) for a in self.accounts]
        train = balance([s.train for s in splits])
        return [p.text for p in train], [p.text for s in splits for p in s.validation]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60] or "account"


def account_label(source: str, posts: list[Post]) -> str:
    if is_remote(source):
        from .sources.remote import account_name

        return account_name(source)
    authors = {p.author for p in posts if p.author}
    return authors.pop() if len(authors) == 1 else Path(source).stem


def build_corpus(
    sources: Sequence[str],
    clean_options: CleanOptions | None = None,
    fetch_options: FetchOptions | None = None,
    progress: Progress | None = None,
    min_characters: int = MIN_CHARACTERS,
    validation_share: float = 0.1,
) -> Corpus:
    """Load and clean every source; raise a one-line error when too little text is left to train on.

    Under a launcher of several processes only the main one fetches and cleans (a paid API is read once, the cache
    written once); the others receive its corpus.
    """
    return distributed.once(
        lambda: _build_corpus(sources, clean_options, fetch_options, progress, min_characters, validation_share)
    )


def _build_corpus(
    sources: Sequence[str],
    clean_options: CleanOptions | None,
    fetch_options: FetchOptions | None,
    progress: Progress | None,
    min_characters: int,
    validation_share: float,
) -> Corpus:
    if not sources:
        raise HuggingTweetsError("no source given: pass an X archive, a CSV/JSONL/TXT file, or a handle")
    options = clean_options or CleanOptions()
    options.validate()  # before fetching: a paid API is not read for settings that cannot be used
    fetch = fetch_options or FetchOptions(include_replies=options.keep_replies, include_reposts=options.keep_retweets)
    accounts = []
    for source in sources:
        raw = load(source, fetch, progress)
        name = account_label(source, raw)
        cleaned = clean(raw, options, account=name)
        accounts.append(Account(source, name, cleaned.posts, cleaned.counts))
    corpus = Corpus(accounts, options, validation_share)
    total = sum((a.counts for a in accounts[1:]), accounts[0].counts) if len(accounts) > 1 else accounts[0].counts
    if total.kept == 0:
        raise HuggingTweetsError(
            f"nothing left after cleaning: of {total.read} posts, {total.retweets} retweets, {total.replies} replies, "
            f"{total.short} short and {total.duplicates} duplicate posts were dropped (try --keep-replies)"
        )
    corpus.warning = check_enough_text(corpus.posts, min_characters)
    return corpus
