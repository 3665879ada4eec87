"""The nucleus sampler draws from the distribution transformers' own warpers define (without sorting the rows)."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from huggingtweets.sampling import NucleusSampler

DRAWS = 100_000


def reference(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """Probabilities after transformers' warpers, in the order `generate(do_sample=True)` applies them."""
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers(torch.zeros(1, 1, dtype=torch.long), logits[None].clone()).softmax(-1)[0]


def rows() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(200, generator=g) * 4,  # peaked: a small nucleus
        torch.randn(200, generator=g) * 0.5,  # flat: most words are in the nucleus
        torch.cat([torch.tensor([9.0]), torch.randn(199, generator=g)]),  # one word takes nearly everything
    ]


@pytest.mark.parametrize("tries", [8, 1])  # 1: every row that misses its nucleus once is done by sorting
@pytest.mark.parametrize("temperature, top_p, top_k", [(1.0, 0.95, 0), (0.7, 0.8, 0), (1.3, 0.9, 0), (1.0, 0.95, 40), (1.0, 1.0, 0), (1.0, 1.0, 25), (1.0, 0.3, 0)])
def test_draws_follow_the_warped_distribution(temperature: float, top_p: float, top_k: int, tries: int):
    torch.manual_seed(1)
    sampler = NucleusSampler(temperature, top_p, top_k, tries=tries)
    for logits in rows():
        expected = reference(logits, temperature, top_p, top_k)
        drawn = sampler.draw(logits.repeat(DRAWS, 1))
        seen = torch.bincount(drawn, minlength=logits.numel()).float() / DRAWS
        assert (seen[expected == 0] == 0).all(), "drew a word outside the nucleus"
        assert (seen > 0)[expected > 1e-3].all(), "never drew a word of the nucleus"
        assert 0.5 * (seen - expected).abs().sum() < 0.03  # total variation; ~0.01 expected from sampling noise


def test_a_mixed_batch_draws_each_row_from_its_own_nucleus():
    # A top-p of 0.6: many rows miss their nucleus and draw again, and some miss it every time and are sorted.
    torch.manual_seed(2)
    batch = torch.stack([*rows(), torch.randn(200, generator=torch.Generator().manual_seed(5)) * 3])
    sampler = NucleusSampler(top_p=0.6, tries=3)
    sorted_rows: list[int] = []
    exact = sampler._sorted
    sampler._sorted = lambda probs: sorted_rows.append(len(probs)) or exact(probs)  # type: ignore[method-assign]
    drawn = sampler.draw(batch.repeat(DRAWS // 4, 1)).view(-1, len(batch))
    assert sorted_rows and 0 < sorted_rows[0] < DRAWS  # some rows, not all, took the sorted path
    for i, logits in enumerate(batch):
        expected = reference(logits, 1.0, 0.6, 0)
        seen = torch.bincount(drawn[:, i], minlength=logits.numel()).float() / drawn.shape[0]
        assert (seen[expected == 0] == 0).all() and (seen > 0)[expected > 1e-3].all()
        assert 0.5 * (seen - expected).abs().sum() < 0.04


def test_ties_at_the_kth_score_stay_and_impossible_words_are_never_drawn():
    logits = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0, float("-inf")])
    torch.manual_seed(4)
    drawn = NucleusSampler(top_k=2).draw(logits.repeat(20_000, 1))
    expected = reference(logits, 1.0, 1.0, 2)
    seen = torch.bincount(drawn, minlength=6).float() / 20_000
    assert set(drawn.unique().tolist()) == {0, 1, 2, 3}  # the three tied words all stay, as in transformers
    assert 0.5 * (seen - expected).abs().sum() < 0.02
    with pytest.raises(ValueError, match="no word"):
        NucleusSampler().draw(torch.full((2, 6), float("-inf")))


@pytest.mark.parametrize("top_p", [0.5, 0.45])  # 0.5: the rejection rounds; below 0.5: sorted at once
def test_words_tied_with_the_last_word_of_the_nucleus_all_stay(top_p: float):
    logits = torch.tensor([0.4, 0.2, 0.2, 0.2]).log()  # the nucleus ends at word 1, which words 2 and 3 tie
    torch.manual_seed(5)
    drawn = NucleusSampler(top_p=top_p).draw(logits.repeat(20_000, 1))
    seen = torch.bincount(drawn, minlength=4).float() / 20_000
    assert 0.5 * (seen - torch.tensor([0.4, 0.2, 0.2, 0.2])).abs().sum() < 0.02


def test_the_drawn_word_is_the_only_finite_score():
    scores = torch.randn(5, 300)
    out = NucleusSampler(top_p=0.9)(torch.zeros(5, 1, dtype=torch.long), scores)
    assert ((out == 0).sum(-1) == 1).all()
    assert torch.isneginf(out).sum() == 5 * 299


def test_same_seed_same_draws():
    logits = torch.randn(8, 1000)
    torch.manual_seed(3)
    first = NucleusSampler(top_p=0.95).draw(logits)
    torch.manual_seed(3)
    assert torch.equal(first, NucleusSampler(top_p=0.95).draw(logits))


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(top_p=0.0), dict(top_p=1.2), dict(top_k=-1), dict(tries=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        NucleusSampler(**bad)
