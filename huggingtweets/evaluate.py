"""Held-out perplexity: how surprised a model is by posts it did not train on.

Posts are framed and packed as in training, but each sees only itself, as in generation, and the loss is averaged
over every predicted token (post tokens and end markers), so a bot and its base model are compared on the same tokens.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .dataset import IGNORE, build_blocks


@torch.inference_mode()
def perplexity(model: Any, tokenizer: Any, texts: list[str], block_size: int = 128, batch_size: int = 8) -> float:
    """Token-weighted perplexity of `model` on `texts` (nan when there are none)."""
    if not texts:
        return math.nan
    data = build_blocks(texts, tokenizer, block_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in data.inputs(slice(i, i + batch_size)).items()}
        labels = batch.pop("labels")
        # No KV cache: with one, transformers would not find the posts in the positions and let them see each other.
        logits = model(**batch, use_cache=False).logits.float()
        # Position t predicts token t+1.
        targets = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
        )
        total_loss += float(loss)
        total_tokens += int((targets != IGNORE).sum())
    model.train(was_training)
    return math.exp(total_loss / total_tokens) if total_tokens else math.nan
