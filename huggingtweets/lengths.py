"""The end bias that gives the bot's own posts the person's median length, found by drawing posts.

    found = length_bias(model, tokenizer, person_median=105, start=end_bias(model, tokenizer, held_out))
    found.bias   # kept in the bot's huggingtweets.json; generation adds it to the end marker's score

Why a second calibration after `ending.end_bias`: that one is measured on the person's held-out posts, read
token by token as they were written. The bot's own posts are text it has seen less of (a word it made up, a
sentence that wandered), and there the end marker is less likely than on the person's text: measured on the
bundled archive, the held-out bias (+0.21) left posts 1.3x the person's median length and 85% ended, where +1.0
gave 1.0x and 91% (benchmarks/README.md, "Post length and endings"). Only the bot's own posts show this, so the
bias is tuned on them, starting from the held-out one.

The held-out bias is a floor: the tuning only raises it, for posts that run long. The target is the median
length of the person's training posts: data, not a length in the code. The draws use
a fixed seed, so every bias tried starts from the same random numbers; once a post takes another token its draws
part ways, so the median of 64 posts still moves by about a tenth between nearby biases (it need not fall at every
step). The try closest to the target is kept; the voice check (`huggingtweets bench --voice`) judges the result
on 128 fresh posts at two other seeds.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .ending import LIMIT
from .generate import GenerateOptions, generate

STEP = 0.5  # how far each try moves the bias until the target is bracketed (nats of the end marker's odds)


@dataclass
class LengthBias:
    bias: float
    person_median: float
    tries: list[dict[str, float]] = field(default_factory=list)  # bias, median characters, share ended, per try

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tune(model: Any, tokenizer: Any, train_texts: list[str], start: float, n: int = 64, bf16: bool = False) -> LengthBias | None:
    """`length_bias` aimed at the median length of `train_texts` (the upper middle), drawing under bf16 autocast on
    a CPU when `bf16` (as the bot will generate there: bf16 weights, and as fast). None: `n` is 0 or no posts."""
    import torch

    if not (n and train_texts):
        return None
    person = statistics.median_high(len(t) for t in train_texts)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return length_bias(model, tokenizer, person, start, n=n)


def length_bias(
    model: Any, tokenizer: Any, person_median: float, start: float = 0.0, n: int = 64, rounds: int = 6,
    options: GenerateOptions | None = None,
) -> LengthBias:
    """The end bias among `rounds` tries whose `n` posts have a median length closest to `person_median`.

    Tries step up by `STEP` from `start` until one is not too long, then halve the gap between the last too long
    and the first not too long. A first try that is not too long ends the search: the bias is never below `start`.
    """
    base = options or GenerateOptions(keep_copies=True)
    found = LengthBias(start, person_median)

    def median_at(bias: float) -> float:
        samples = generate(model, tokenizer, replace(base, n=n, seed=0, end_bias=bias))
        median = float(statistics.median_high([len(s.text) for s in samples])) if samples else 0.0
        found.tries.append({"bias": round(bias, 4), "median": median, "ended": sum(s.ended for s in samples) / max(1, len(samples))})
        return median

    was_training = model.training
    model.eval()  # no dropout in the draws, as in generation after loading
    try:
        return _search(found, median_at, start, rounds, person_median)
    finally:
        model.train(was_training)


def _search(found: LengthBias, median_at: Any, start: float, rounds: int, person_median: float) -> LengthBias:
    # The held-out bias is a floor: below it the bot would end posts less often than the person's own text implies.
    # The tuning only corrects posts that run long, so when the first try is not too long it is kept as it is.
    low, high = start, LIMIT  # the median falls as the bias grows: too long at `low`, too short at `high`
    bias = min(start, LIMIT)
    for _ in range(rounds):
        if median_at(bias) <= person_median:
            if bias == start:
                break
            high = bias
        else:
            low = bias
        bias = bias + STEP if high == LIMIT and bias + STEP < LIMIT else (low + high) / 2
    best = min(found.tries, key=lambda t: abs(t["median"] - person_median))
    found.bias = best["bias"]
    return found
