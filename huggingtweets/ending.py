"""When a post ends: the end marker's probability, calibrated on the held-out posts.

    bias = end_bias(model, tokenizer, validation_texts)   # after training; kept in the bot's huggingtweets.json
    generate(..., GenerateOptions(end_bias=bias))         # adds `bias` to the end marker's score at every step

Why: a short fine-tune leaves the end marker under-learned. Over a held-out post, framed as generation frames it,
the bot's probabilities of ending at each position should add up to 1 on average (the post ends exactly once: for a
calibrated model the expected sum equals the expected number of ends), and they added up to about 0.7: so the bot
keeps writing past where the person would have stopped, and wrote posts 1.4-2x the person's length. Sampling at the
bot's own end probability compounds that: a post that has run on is text the bot has seen less of, where ending is
less likely still.

The bias is one number per bot, found from the bot's own held-out posts (the one that makes the sum 1), not a length
written into the code: a bot of someone who writes long posts learns long posts. It changes only the end marker's
odds (every other word keeps its relative probability), and it is 0 for a bot whose end marker is already calibrated.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import LogitsProcessor

from .dataset import IGNORE, build_blocks, markers

# Odds of at most e^3 (20x) either way: beyond that the held-out posts say more about themselves than about the bot.
LIMIT = 3.0


@torch.inference_mode()
def end_probabilities(model: Any, tokenizer: Any, texts: list[str], block_size: int = 128, batch_size: int = 8) -> torch.Tensor:
    """The end marker's probability at every predicted position of the posts (float64, one flat tensor)."""
    _, end = markers(tokenizer)
    data = build_blocks(texts, tokenizer, block_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    found: list[torch.Tensor] = []
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in data.inputs(slice(i, i + batch_size)).items()}
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits.float()
        predicted = labels[:, 1:] != IGNORE  # position t predicts token t+1
        found.append(logits[:, :-1].log_softmax(-1)[..., end][predicted].double().exp().cpu())
    model.train(was_training)
    return torch.cat(found) if found else torch.zeros(0, dtype=torch.float64)


def mass_with_bias(p: torch.Tensor, bias: float) -> float:
    """The sum of end probabilities once `bias` is added to the end marker's logit (its odds times e^bias)."""
    odds = p * math.exp(bias)
    return float((odds / (1 - p + odds)).sum())


def end_bias(model: Any, tokenizer: Any, texts: list[str], block_size: int = 128) -> float:
    """The logit bias under which the end probabilities over `texts` add up to one per post (0 without texts)."""
    if not texts:
        return 0.0
    p = end_probabilities(model, tokenizer, texts, block_size).clamp(1e-12, 1 - 1e-12)
    target = float(len(texts))
    low, high = -LIMIT, LIMIT
    if mass_with_bias(p, high) <= target:
        return high
    if mass_with_bias(p, low) >= target:
        return low
    for _ in range(50):  # the mass grows with the bias: bisection to well under 1e-6
        mid = (low + high) / 2
        low, high = (mid, high) if mass_with_bias(p, mid) < target else (low, mid)
    return round((low + high) / 2, 4)


class EndBias(LogitsProcessor):
    """Adds `bias` to the end marker's score (before temperature and nucleus sampling, as a logit would be)."""

    def __init__(self, end: int, bias: float) -> None:
        self.end, self.bias = end, bias

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.end] += self.bias
        return scores
