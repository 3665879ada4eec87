"""Temperature, top-k and nucleus (top-p) sampling in one logits processor, for `model.generate`.

    generate(..., do_sample=False, logits_processor=LogitsProcessorList([NucleusSampler(top_p=0.95)]))

Why not transformers' own `do_sample=True`: its top-p warper sorts the whole vocabulary (49,152 words for
SmolLM2) for every row at every step, and `torch.multinomial` then draws one random number per word. On a
2-core CPU at batch 32 those two took about a third of each generation step (benchmarks/README.md).

Here nothing is sorted. A word is drawn from the whole distribution (one cumulative sum and one random number
per row) and kept if it lies in the nucleus, that is if the words more likely than it hold less than `top_p`
of the probability (one masked sum); otherwise the row draws again. A kept word is a draw from the whole
distribution given that it fell in the nucleus, which is exactly a draw from the nucleus renormalised: the
distribution of `do_sample=True` (up to float rounding: the float32 cumulative sum over 49k words moves it by
~3e-4 in total variation). A row keeps its first draw with probability at least `top_p`; rows still drawing
after `tries` rounds (at top-p 0.95, one in 10^10) are sorted, and below top-p 0.5 every row is sorted at once.

The drawn word gets score 0 and every other word -inf, so greedy decoding (`do_sample=False`) picks it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class NucleusSampler(LogitsProcessor):
    """Draws the next word as `do_sample=True` with `temperature`, `top_k` and `top_p` would (warpers in that order).

    One difference: words tied with the last word of the nucleus all stay, where transformers keeps whichever its
    sort puts first (rare in float32 scores, more common in bf16 ones: ~1e-3 in total variation there).
    """

    def __init__(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, tries: int = 8, generator: torch.Generator | None = None
    ) -> None:
        """`generator`: where the random numbers come from (None: torch's global random state)."""
        if not temperature > 0 or not 0 < top_p <= 1 or top_k < 0 or tries < 1:
            raise ValueError("temperature > 0, 0 < top_p <= 1, top_k >= 0 and tries >= 1 are required")
        self.temperature, self.top_p, self.top_k, self.tries = temperature, top_p, top_k, tries
        self.generator = generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = self.draw(scores)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, chosen[:, None], 0.0)

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        """One word index per row."""
        logits = scores.float()
        if self.temperature != 1:
            logits = logits / self.temperature
        peak = logits.amax(-1, keepdim=True)
        if not torch.isfinite(peak).all():
            raise ValueError("a row has no word left to draw (every score is -inf)")
        if self.top_k and self.top_k < logits.shape[-1]:
            # top-k comes first (top-p then works on what is left); like transformers, ties with the k-th score stay.
            kth = logits.topk(self.top_k).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        # Unnormalised probabilities (the likeliest word's is 1); a word outside the top k gets exactly 0.
        probs = (logits - peak).exp_()
        cumulative = probs.cumsum(-1)
        chosen = torch.empty(len(probs), dtype=torch.long, device=probs.device)
        rows = torch.arange(len(probs), device=probs.device)
        # With a small top-p most draws would miss the nucleus: sorting is cheaper than many rounds.
        for _ in range(self.tries if self.top_p >= 0.5 else 0):
            every = len(rows) == len(probs)  # the first round: no copy of the rows
            p, cum = (probs, cumulative) if every else (probs[rows], cumulative[rows])
            pick = _inverse_cdf(cum, self.generator).clamp_(max=p.shape[-1] - 1)
            picked = p.gather(-1, pick)
            kept = picked[:, 0] > 0  # u rounded up to the row's total lands past the end: draw again
            if self.top_p < 1:
                # In the nucleus: transformers drops a word when the words at most as likely as it hold <= 1 - top_p,
                # i.e. keeps it when the more likely words hold < top_p (the likeliest word always stays).
                above = torch.where(p > picked, p, 0.0).sum(-1, keepdim=True)
                kept &= (above < self.top_p * cum[:, -1:])[:, 0]
            chosen[rows[kept]] = pick[kept, 0]
            rows = rows[~kept]
            if not len(rows):
                return chosen
        chosen[rows] = self._sorted(probs[rows] / cumulative[rows, -1:])
        return chosen

    def _sorted(self, probs: torch.Tensor) -> torch.Tensor:
        """The draw by sorting, for rows that kept missing their nucleus and for a small `top_p`."""
        probs, index = probs.sort(-1, descending=True)
        before = probs.cumsum(-1) - probs
        # The nucleus, and every word tied with its last word (as the rejection rounds keep them).
        smallest = probs.masked_fill(before >= self.top_p, float("inf")).amin(-1, keepdim=True)
        probs = probs.masked_fill(probs < smallest, 0.0)
        last = (probs > 0).sum(-1, keepdim=True) - 1  # the kept words come first
        pick = torch.minimum(_inverse_cdf(probs.cumsum(-1), self.generator), last)
        return index.gather(-1, pick).squeeze(-1)


def _inverse_cdf(cumulative: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row, drawn with one uniform number (torch.multinomial draws one per word); [rows, 1].

    A uniform number that rounds up to the row's total gives the index past the end: callers bound it.
    """
    mass = cumulative[:, -1:]
    u = torch.rand(mass.shape, device=mass.device, dtype=mass.dtype, generator=generator) * mass
    return torch.searchsorted(cumulative, u, right=True)
