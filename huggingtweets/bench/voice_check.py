"""Issue 22's targets on whole archives: the bot `huggingtweets train` makes by default, judged on its posts.

    huggingtweets bench --voice --json test-artifacts/voice.json                          # the bundled archive
    python -m huggingtweets.bench.second_archive test-artifacts/trump.jsonl
    huggingtweets bench --voice --data test-artifacts/trump.jsonl --json test-artifacts/voice-trump.json
    huggingtweets bench --voice --levers ...     # and the levers: end bias none / held-out only, epochs, framing, end weight 1x

Unlike the `voice` section of a bench run (the race's bot, trained on a few hundred posts), this trains the default
bot on every post of the archive (replies kept) with the default CPU training, as a user would, then draws `posts`
posts at each seed with the bot's own settings (its tuned end bias) and compares them with its training posts
(quality.voice). Targets: at least 90% of the posts end before the token limit, and their median length is within
25% of the person's. About 10 minutes per archive of ~1,500 posts on 2 cores (with --levers, about 50).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .data import DEFAULT_DATA
from .formatting import publish
from .options import Say
from .quality import voice
from .targets import VOICE_ENDED, VOICE_LENGTH

# Levers that need a bot of their own: its training changed from the default's (epochs as a factor of the default's).
TRAINING_LEVERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("each packed post sees only itself (the framing of 2026-12-06 to 07)", {"isolate_posts": True}),
    ("half the epochs", {"epochs": 0.5}),
    ("twice the epochs", {"epochs": 2.0}),
    ("end marker not weighted in the loss (1x, the default before 2026-12-07)", {"end_loss_weight": 1.0}),
)


def judge(figures: dict[str, Any]) -> dict[str, bool]:
    """The bench's own voice targets (targets.py), on one draw."""
    ratio, ended = figures.get("length_ratio"), figures.get("ended_share")
    low, high = VOICE_LENGTH
    return {
        "ended": ended is not None and ended >= VOICE_ENDED,
        "length": ratio is not None and low <= ratio <= high,
    }


def check(
    source: str, base_model: str | None = None, posts: int = 128, seeds: tuple[int, ...] = (1, 2),
    config: Any = None, levers: bool = False, say: Say = print,
) -> dict[str, Any]:
    """Train the default bot on `source` and judge `posts` of its posts at each of `seeds`.

    `levers`: also the same bot at other end biases (none, the held-out one alone), and bots trained otherwise
    (TRAINING_LEVERS: each post alone, half and twice the epochs, the end marker not weighted in the loss), each judged the same way
    (`report["levers"]`).
    """
    from ..clean import CleanOptions
    from ..corpus import build_corpus
    from ..train import TrainConfig

    corpus = build_corpus([source], CleanOptions(keep_replies=True))
    train_texts = corpus.texts()[0]  # the person's side of the comparison: the posts the bot trains on
    config = (config or TrainConfig()).resolved()
    arms: list[dict[str, Any]] = []
    main = _train_and_judge("default", corpus, train_texts, config, base_model, posts, seeds, say, bias_arms=levers, arms=arms)
    if levers:
        for name, changes in TRAINING_LEVERS:
            changes = {k: v * getattr(config, k) if k == "epochs" else v for k, v in changes.items()}
            _train_and_judge(name, corpus, train_texts, replace(config, **changes), base_model, posts, seeds, say, arms=arms)
    return {
        "source": Path(source).name if Path(source).exists() else source,
        "training_posts": len(train_texts),
        **main,
        "met": all(all(d["met"].values()) for d in main["draws"]),
        "levers": arms[1:],
    }


def _train_and_judge(
    name: str, corpus: Any, train_texts: list[str], config: Any, base_model: str | None, posts: int, seeds: tuple[int, ...],
    say: Say, arms: list[dict[str, Any]], bias_arms: bool = False,
) -> dict[str, Any]:
    """One bot trained on `corpus` with `config`, its draws judged (and, with `bias_arms`, the same bot's at the other
    end biases); each arm is appended to `arms`, the bot's own first."""
    from ..bot import Bot

    with tempfile.TemporaryDirectory(prefix="huggingtweets-voice-") as tmp:
        started = time.perf_counter()
        bot = Bot.train_corpus(corpus, Path(tmp) / "bot", base_model=base_model, config=config, show_progress=False, progress=say)
        trained_s = round(time.perf_counter() - started, 1)
        generation = bot.info["generation"]
        metrics = bot.metrics  # held-out perplexity, plain (unweighted) loss: a lever must not buy length with it
        perplexity = {"bot": metrics.get("bot_perplexity"), "base": metrics.get("base_perplexity")}
        biases = [(name, generation["end_bias"])]
        if bias_arms:
            held_out = generation["end_calibration"]["held_out_bias"]
            biases += [("default, no end bias (as learnt)", 0.0), ("default, held-out end bias (not tuned)", held_out)]
        for arm, bias in biases:
            arms.append({"name": arm, "end_bias": bias, "epochs": config.epochs, "end_loss_weight": config.end_loss_weight,
                         "isolate_posts": config.isolate_posts, "perplexity": perplexity, "draws": _draws(bot, bias, posts, seeds, train_texts, say)})
    return {"train_seconds": trained_s, "config": bot.info["config"], "end_bias": generation["end_bias"],
            "end_calibration": generation.get("end_calibration"), "perplexity": perplexity,
            "draws": arms[-len(biases)]["draws"]}


def _draws(bot: Any, bias: float, posts: int, seeds: tuple[int, ...], train_texts: list[str], say: Say) -> list[dict[str, Any]]:
    from ..generate import copy_share

    draws = []
    for seed in seeds:
        # Copies kept: the copy rate is the bot's own, before generation redraws them (as `huggingtweets evaluate`).
        samples = bot.generate(n=posts, seed=seed, end_bias=bias, keep_copies=True)
        figures = voice([s.text for s in samples], [s.ended for s in samples], train_texts)
        figures["copy_rate"] = copy_share(samples)
        draws.append({"seed": seed, **figures, "met": judge(figures)})
        say(f"end bias {bias:.2f}, seed {seed}: median {figures['median_characters']} vs {figures['person_median_characters']} "
            f"characters ({figures['length_ratio']:.2f}x), {figures['ended_share']:.0%} ended")
    return draws


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"voice check on {report['source']} ({report['training_posts']} training posts, trained in {report['train_seconds']} s, "
        f"end bias {report['end_bias']:.2f}, held-out perplexity bot/base {_perplexity_ratio(report)})",
        "| seed | bot median | person median | ratio | ended | distinct-2 | copies | met |",
        "|---:|---:|---:|---:|---:|---:|---:|:--|",
    ]
    for d in report["draws"]:
        met = ", ".join(k for k, v in d["met"].items() if v) or "none"
        lines.append(
            f"| {d['seed']} | {d['median_characters']} | {d['person_median_characters']} | {d['length_ratio']:.2f}x | "
            f"{d['ended_share']:.0%} | {d.get('distinct_2', float('nan')):.2f} | {d.get('copy_rate', float('nan')):.1%} | {met} |"
        )
    high = VOICE_LENGTH[1]
    lines.append(f"targets (ended >= {VOICE_ENDED:.0%}, median within ±{high - 1:.0%}): {'met' if report['met'] else 'NOT met'}")
    if report.get("levers"):
        lines += ["", "| lever | epochs | end bias | perplexity bot/base | ratio per seed | ended per seed |",
                  "|:--|---:|---:|---:|:--|:--|"]
        for arm in report["levers"]:
            ratios = " / ".join(f"{d['length_ratio']:.2f}x" for d in arm["draws"])
            ended = " / ".join(f"{d['ended_share']:.0%}" for d in arm["draws"])
            lines.append(f"| {arm['name']} | {arm['epochs']:g} | {arm['end_bias']:.2f} | {_perplexity_ratio(arm)} | {ratios} | {ended} |")
    return "\n".join(lines)


def _perplexity_ratio(arm: dict[str, Any]) -> str:
    perplexity = arm.get("perplexity") or {}
    bot, base = perplexity.get("bot"), perplexity.get("base")
    return f"{bot / base:.2f}" if bot and base else "n/a"


def main(args: argparse.Namespace) -> int:
    """`huggingtweets bench --voice`: 0 when every draw meets the targets, 1 otherwise."""
    import sys

    source = getattr(args, "data", None) or str(DEFAULT_DATA)
    say: Say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    report = check(source, base_model=getattr(args, "base_model", None), levers=getattr(args, "levers", False), say=say)
    publish(markdown(report), report, getattr(args, "json_out", None))
    return 0 if report["met"] else 1
