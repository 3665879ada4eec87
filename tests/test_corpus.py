"""Several accounts in one bot: balanced, named after all of them, each with its row in the table and the card."""

from __future__ import annotations

from pathlib import Path

from conftest import make_posts
from huggingtweets.bot import Bot
from huggingtweets.clean import CleanOptions
from huggingtweets.corpus import account_label, build_corpus
from huggingtweets.train import TrainConfig


def write(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_two_accounts_are_balanced_and_named_together(home, tmp_path, tiny_llama):
    big = write(tmp_path / "alice.txt", make_posts(400, seed=1))
    small = write(tmp_path / "bob.txt", ["bob says " + t for t in make_posts(100, seed=2)])
    corpus = build_corpus([str(big), str(small)], CleanOptions(), min_characters=1000)
    assert corpus.name == "alice-bob"
    train, validation = corpus.texts()
    from_bob = sum(t.startswith("bob says") for t in train)
    # Bob wrote a quarter as much: his training posts are repeated to weigh about as much as Alice's.
    assert 0.4 < from_bob / len(train) < 0.6
    assert sum(t.startswith("bob says") for t in validation) == 10  # his own newest 10%, not repeated

    table = corpus.table().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:]] == ["alice", "bob", "total"]

    bot = Bot.train_corpus(corpus, base_model=str(tiny_llama), config=TrainConfig(method="full", epochs=1, block_size=64), show_progress=False)
    assert bot.path.name == "alice-bob" and bot.path.parent == home / "bots"
    assert bot.info["accounts"] == ["alice", "bob"]
    card = (bot.path / "README.md").read_text()
    assert "| alice |" in card and "| bob |" in card and "| total |" in card


def test_remote_sources_are_named_by_service_and_handle():
    assert account_label("@jack", []) == "x-jack"
    assert account_label("mastodon:Gargron@mastodon.social", []).startswith("mastodon-")
