"""Temperature, top-k and nucleus (top-p) sampling in one logits processor, for `model.generate`.

    generate(..., do_sample=False, logits_processor=LogitsProcessorList([NucleusSampler(top_p=0.95)]))

Why not transformers' own `do_sample=True`: its top-p warper sorts the whole vocabulary (49,152 words for
SmolLM2) for every row at every step, and `torch.multinomial` then draws one random number per word. On a
2-core CPU at batch 32 those two took about a third of each generation step (benchmarks/README.md). The
nucleus lies among the likeliest few thousand words, so this processor finds the top `candidates` with
`topk`, keeps the same nucleus transformers would keep, and draws among those alone; a row whose candidates
hold less than `top_p` of the probability is done again with four times as many (up to the whole row).
The distribution is the same; only the work is less.

The drawn word gets score 0 and every other word -inf, so greedy decoding (`do_sample=False`) picks it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class NucleusSampler(LogitsProcessor):
    """Draws the next word as `do_sample=True` with `temperature`, `top_k` and `top_p` would (warpers in that order)."""

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, candidates: int = 4096) -> None:
        if not temperature > 0 or not 0 < top_p <= 1 or top_k < 0 or candidates < 1:
            raise ValueError("temperature > 0, 0 < top_p <= 1, top_k >= 0 and candidates >= 1 are required")
        self.temperature, self.top_p, self.top_k, self.candidates = temperature, top_p, top_k, candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = self.draw(scores)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, chosen[:, None], 0.0)

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        """One word index per row."""
        logits = scores.float()
        if self.temperature != 1:
            logits = logits / self.temperature
        words = logits.shape[-1]
        if not torch.isfinite(logits.amax(-1)).all():
            raise ValueError("a row has no word left to draw (every score is -inf)")
        if self.top_k and self.top_k < words:
            # top-k comes first (top-p then works on what is left); like transformers, ties with the k-th score stay.
            kth = logits.topk(self.top_k).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        norm = logits.logsumexp(-1, keepdim=True)
        if self.top_p >= 1:  # no truncation: every word, unsorted
            return self._nucleus((logits - norm).exp(), None)
        chosen = torch.empty(logits.shape[:-1], dtype=torch.long, device=logits.device)
        rows = torch.arange(len(logits), device=logits.device)
        k = min(self.candidates, words)
        while len(rows):
            # topk returns the candidates sorted, likeliest first; with k == words that is a full sort.
            every = len(rows) == len(logits)  # the first round: no copy of the rows
            top, index = (logits if every else logits[rows]).topk(k)
            probs = (top - (norm if every else norm[rows])).exp()
            short = probs.sum(-1) < self.top_p if k < words else torch.zeros_like(rows, dtype=torch.bool)
            done = ~short  # rows whose nucleus lies within the candidates
            if done.any():
                chosen[rows[done]] = self._nucleus(probs[done], index[done])
            # On a fine-tuned bot at temperature 1 about 15% of rows need more than 4,096 (none more than 16,384).
            rows, k = rows[short], min(words, 4 * k)
        return chosen

    def _nucleus(self, probs: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Sample among `probs` (descending unless `index` is None), keeping words whose more likely words hold < top_p."""
        if self.top_p < 1:
            # transformers drops a word when the words at most as likely as it hold <= 1 - top_p, i.e. keeps
            # it when the strictly more likely words hold < top_p; the likeliest word is always kept.
            before = probs.cumsum(-1) - probs
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        # Inverse-CDF draw: one uniform number per row (torch.multinomial draws one per word).
        cumulative = probs.cumsum(-1)
        u = torch.rand(cumulative.shape[:-1] + (1,), device=probs.device, dtype=cumulative.dtype) * cumulative[..., -1:]
        pick = torch.searchsorted(cumulative, u, right=True).clamp_(max=probs.shape[-1] - 1)
        return (pick if index is None else index.gather(-1, pick)).squeeze(-1)
