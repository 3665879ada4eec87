"""A second real archive for issue 22, built here: @realDonaldTrump's tweets from Debian's r-cran-dslabs.

The build downloads the package with apt-get (4.6 MB, kept in test-artifacts/downloads for the next run) and reads
R's lazy-load database with the `rdata` package. The voice check then trains a bot on it (the tiny model, a few
steps: the targets themselves are judged by `huggingtweets bench --voice`, not here) and its judgement is checked
against the figures it reports.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from huggingtweets.bench import second_archive, voice_check
from huggingtweets.clean import CleanOptions
from huggingtweets.corpus import build_corpus
from huggingtweets.sources.files import load_file
from huggingtweets.train import TrainConfig

DOWNLOADS = Path(__file__).resolve().parents[1] / "test-artifacts" / "downloads"


@pytest.fixture(scope="module")
def trump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return second_archive.build(tmp_path_factory.mktemp("second-archive") / "trump.jsonl", downloads=DOWNLOADS)


def test_the_second_archive_holds_the_newest_posts_of_the_data_set(trump: Path) -> None:
    frame = second_archive.read_data_set(second_archive.download(DOWNLOADS))
    assert len(frame) > 20_000  # the whole data set; the archive keeps the newest
    posts = load_file(trump)
    assert len(posts) == second_archive.NEWEST
    times = [p.created_at for p in posts]
    assert times == sorted(times) and all(t is not None for t in times)  # oldest first, every post dated
    assert posts[-1].created_at.timestamp() == max(float(t) for t in frame["created_at"])
    newest_ids = set(frame.sort_values("created_at")["id_str"].astype(str).tail(second_archive.NEWEST))
    assert {p.id for p in posts} == newest_ids
    assert {p.author for p in posts} == {"realDonaldTrump"}
    replies = frame["in_reply_to_user_id_str"].notna()
    assert sum(p.is_reply for p in posts) == int(replies[frame["id_str"].astype(str).isin(newest_ids)].sum())


def test_the_voice_check_judges_a_bot_trained_on_it(trump: Path, tiny_llama: Path) -> None:
    config = TrainConfig(max_steps=3, length_posts=8)
    report = voice_check.check(str(trump), base_model=str(tiny_llama), posts=12, seeds=(1, 2), config=config, levers=True, say=lambda _: None)
    train_texts = build_corpus([str(trump)], CleanOptions(keep_replies=True)).texts()[0]
    assert report["training_posts"] == len(train_texts) > 1000
    assert report["source"] == "trump.jsonl" and report["config"]["max_steps"] == 3
    for draw in report["draws"]:
        assert draw["person_median_characters"] == statistics.median(len(t) for t in train_texts)
        assert draw["met"] == {
            "ended": draw["ended_share"] >= 0.9,
            "length": abs(draw["median_characters"] / draw["person_median_characters"] - 1) <= 0.25,
        }
    assert report["met"] == all(all(d["met"].values()) for d in report["draws"])
    # The levers: the same bot without an end bias and with the held-out one alone, and bots trained half and twice as long.
    held_out = report["end_calibration"]["held_out_bias"]
    levers = {arm["name"]: arm for arm in report["levers"]}
    assert [levers[n]["end_bias"] for n in ("default, no end bias (as learnt)", "default, held-out end bias (not tuned)")] == [0.0, held_out]
    default_epochs = report["config"]["epochs"]
    assert levers["half the epochs"]["epochs"] == default_epochs / 2 and levers["twice the epochs"]["epochs"] == default_epochs * 2
    assert levers["end marker not weighted in the loss (1x, the default before 2026-12-07)"]["end_loss_weight"] == 1.0
    assert report["config"]["end_loss_weight"] == 3.0
    assert levers["each packed post sees only itself (the framing of 2026-12-06 to 07)"]["isolate_posts"] is True
    assert report["config"]["isolate_posts"] is False
    assert all(len(arm["draws"]) == 2 for arm in report["levers"])
    # Each bot's held-out perplexity on the plain loss, against the one base model on the same held-out posts.
    arms = [report, *report["levers"]]
    assert len({arm["perplexity"]["base"] for arm in arms}) == 1 and all(arm["perplexity"]["bot"] > 0 for arm in arms)
    assert levers["default, no end bias (as learnt)"]["perplexity"] == report["perplexity"]  # the same bot
    for draw in (d for arm in arms for d in arm["draws"]):
        assert 0 <= draw["copy_rate"] <= 1 and draw["copy_rate"] * 12 == pytest.approx(round(draw["copy_rate"] * 12), abs=0.01)
    table = voice_check.markdown(report)
    assert ("targets (ended >= 90%, median within ±25%): met" in table) == report["met"]
