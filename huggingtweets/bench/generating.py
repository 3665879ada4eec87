"""Generation in a child process: posts/s at batch 1 and batched, time to the first streamed text, memorisation
before and after the filter, and the voice of the batched posts."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from .figures import median
from .quality import voice


@dataclass
class Draws:
    """One model's draws with the spec's settings, each timed."""

    model: Any
    tokenizer: Any
    checker: Any
    new: int
    fast: bool
    temperature: float
    end_bias: float = 0.0  # the bot's own (huggingtweets.json "end_bias"): what `Bot.generate` adds to the end marker

    def draw(self, n: int, batch: int, seed: int, keep_copies: bool = True, attempts: int | None = None) -> tuple[list[Any], float]:
        from ..generate import GenerateOptions, generate

        # generate() draws one batch per attempt: as many attempts as batches, unless the defaults are being measured.
        options = GenerateOptions(n=n, batch_size=batch, max_new_tokens=self.new, seed=seed, keep_copies=keep_copies,
                                  attempts=attempts or math.ceil(n / batch), fast_sampling=self.fast, temperature=self.temperature,
                                  end_bias=self.end_bias)
        start = time.perf_counter()
        samples = generate(self.model, self.tokenizer, options, self.checker)
        return samples, time.perf_counter() - start


def speed(samples: list[Any], seconds: float, batch: int) -> dict[str, Any]:
    return {"posts": len(samples), "batch_size": batch, "seconds": seconds, "posts_per_s": len(samples) / seconds,
            "ended_share": sum(s.ended for s in samples) / max(1, len(samples)),
            "median_characters": median([len(s.text) for s in samples])}


def generation(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: posts/s at batch 1 and batched, time to first streamed text, memorisation before and after the filter.

    spec: model, max_new_tokens, batch1_posts, batched_posts, batch_size, stream_repeats, memorisation_samples,
    train_texts, [use_cache, int8, fast_sampling, temperature, one_call_posts, fast_weights, end_bias, end_bias_arms].
    end_bias_arms: {name: bias}, the batched draw again at each (the end-bias lever), its voice in out["voice_arms"].
    """
    from ..generate import GenerateOptions, generate
    from ..memorisation import CopyChecker

    model, tokenizer = _load(spec)
    train_texts = spec.get("train_texts") or []
    draws = Draws(model, tokenizer, CopyChecker.from_texts(train_texts), int(spec.get("max_new_tokens", 96)),
                  bool(spec.get("fast_sampling", True)), float(spec.get("temperature", 1.0)), float(spec.get("end_bias", 0.0)))
    out: dict[str, Any] = {"max_new_tokens": draws.new, "use_cache": spec.get("use_cache", True), "int8": bool(spec.get("int8")),
                           "fast_sampling": draws.fast, "temperature": draws.temperature, "end_bias": draws.end_bias,
                           "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    if spec.get("validation"):
        from ..evaluate import perplexity

        out["perplexity"] = perplexity(model, tokenizer, spec["validation"])  # what int8 costs in quality
    # Against the bot's posts' length: a bot that sounds like the person also writes posts as long as theirs.
    out["training_median_characters"] = median([len(t) for t in train_texts])
    generate(model, tokenizer, GenerateOptions(n=2, batch_size=2, max_new_tokens=8, seed=0))  # warm-up
    batch = int(spec.get("batch_size", 16))
    batched: list[Any] = []
    if spec.get("batch1_posts"):
        out["batch1"] = speed(*draws.draw(int(spec["batch1_posts"]), 1, seed=0), 1)
    if spec.get("batched_posts"):
        batched, seconds = draws.draw(int(spec["batched_posts"]), batch, seed=1)
        out["batched"] = speed(batched, seconds, batch)
    if spec.get("one_call_posts"):
        out["batched_one_call"] = _one_call(draws, int(spec["one_call_posts"]), batch)
    if spec.get("stream_repeats"):
        out["stream"] = _stream(draws, int(spec["stream_repeats"]))
    if spec.get("memorisation_samples"):
        out["memorisation"] = _memorisation(draws, int(spec["memorisation_samples"]), batch, batched)
    if batched and train_texts:
        out["voice"] = voice([s.text for s in batched], [s.ended for s in batched], train_texts)
        out["voice_arms"] = {name: _voice_at(draws, float(bias), len(batched), batch, train_texts)
                             for name, bias in (spec.get("end_bias_arms") or {}).items()}
    return out


def _voice_at(draws: Draws, bias: float, n: int, batch: int, train_texts: list[str]) -> dict[str, Any]:
    """The batched draw (same seed) at another end bias: what that lever does to length and endings."""
    at = Draws(draws.model, draws.tokenizer, draws.checker, draws.new, draws.fast, draws.temperature, bias)
    samples, _ = at.draw(n, batch, seed=1)
    return {"end_bias": bias, **voice([s.text for s in samples], [s.ended for s in samples], train_texts)}


def _load(spec: dict[str, Any]) -> tuple[Any, Any]:
    import torch

    from .. import models
    from ..generate import fast_weights
    from ..train import layer_stack

    model, tokenizer = models.load_base(spec["model"])
    model.eval()
    if spec.get("use_cache") is False:
        model.generation_config.use_cache = False
    if spec.get("int8"):
        # Generation on a CPU reads every weight once per token: int8 weights mean a quarter of the memory traffic.
        # Only the transformer layers: quantising the (tied) output head as well multiplied perplexity by ~6.
        torch.ao.quantization.quantize_dynamic(layer_stack(model), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    elif spec.get("fast_weights", True):
        fast_weights(model)  # as `Bot` generates: bf16 weights on a CPU with bf16 arithmetic
    return model, tokenizer


def _one_call(draws: Draws, n: int, batch: int) -> dict[str, Any]:
    """The batched draw again with one `model.generate` call per batch: ended posts stay until the longest ends."""
    from .. import generate as generation_module

    rounds = generation_module.ROUND
    generation_module.ROUND = draws.new
    try:
        return speed(*draws.draw(n, batch, seed=1), batch)
    finally:
        generation_module.ROUND = rounds


def _stream(draws: Draws, repeats: int) -> dict[str, Any]:
    from ..generate import GenerateOptions, stream

    firsts, texts, totals = [], [], []
    for i in range(repeats):
        start = time.perf_counter()
        first = first_text = None
        # Only the start matters here: a short post keeps the generating thread from lingering into the next timing.
        options = GenerateOptions(seed=i, max_new_tokens=min(draws.new, 16), fast_sampling=draws.fast, temperature=draws.temperature)
        for partial in stream(draws.model, draws.tokenizer, options):
            now = time.perf_counter() - start
            first = first if first is not None else now
            if first_text is None and partial.text:
                first_text = now
        totals.append(time.perf_counter() - start)
        firsts.append(first)
        texts.append(first_text if first_text is not None else totals[-1])
    return {"repeats": len(firsts), "first_token_s": median(firsts), "first_text_s": median(texts), "sixteen_tokens_s": median(totals)}


def _memorisation(draws: Draws, n: int, batch: int, batched: list[Any]) -> dict[str, Any]:
    from ..generate import GenerateOptions

    # The batched speed sample doubles as the unfiltered sample when it is exactly one such draw (quick mode).
    reuse = n == len(batched) <= batch
    seed = 1 if reuse else 2
    before = batched if reuse else draws.draw(n, batch, seed=seed)[0]
    copies = sum(s.copied for s in before)
    if copies:
        # The defaults (copies dropped and redrawn, default attempts) with the same seed: the same first draw, filtered.
        after, _ = draws.draw(n, batch, seed=seed, keep_copies=False, attempts=GenerateOptions.attempts)
    else:
        after = before  # same seed, same draw, and nothing to filter: the filtered run would return exactly these
    return {
        "samples_before": len(before),
        "copy_share_before": copies / max(1, len(before)),
        "samples_after": len(after),
        "copy_share_after": sum(draws.checker.copies(s.text) for s in after) / max(1, len(after)),
        "redrawn": bool(copies),
        "examples": [s.text for s in before[:3]],
    }
