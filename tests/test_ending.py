"""The end marker's calibration: the bias makes held-out posts end once each, and generation applies it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from huggingtweets import Bot
from huggingtweets.dataset import frame, markers
from huggingtweets.ending import LIMIT, EndBias, end_bias, end_probabilities, mass_with_bias
from huggingtweets.generate import GenerateOptions, generate

from conftest import make_posts


def _load(folder):
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_end_probabilities_are_those_of_each_post_alone(tiny_llama):
    model, tokenizer = _load(tiny_llama)
    _, end = markers(tokenizer)
    texts = make_posts(9, seed=2)
    found = end_probabilities(model, tokenizer, texts, block_size=64)
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([frame(tokenizer, t)])).logits[0, :-1].softmax(-1)[:, end] for t in texts])
    # The same positions (every predicted token of every post), in whatever order the blocks hold them.
    assert found.shape == alone.shape
    torch.testing.assert_close(found.sort().values, alone.double().sort().values, atol=1e-5, rtol=1e-4)


def test_the_bias_makes_the_held_out_mass_one_per_post(tiny_llama):
    model, tokenizer = _load(tiny_llama)
    texts = make_posts(20, seed=4)
    p = end_probabilities(model, tokenizer, texts, block_size=64)
    before = float(p.sum()) / len(texts)
    bias = end_bias(model, tokenizer, texts, block_size=64)
    assert -LIMIT < bias < LIMIT and bias != 0
    assert mass_with_bias(p, bias) / len(texts) == pytest.approx(1.0, abs=1e-3)
    assert (bias > 0) == (before < 1)  # raised where the marker was under-predicted
    assert end_bias(model, tokenizer, []) == 0.0


def test_mass_with_bias_changes_only_the_odds():
    p = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert mass_with_bias(p, 0.0) == pytest.approx(1.5)
    odds = 0.1 / 0.9 * math.e
    assert mass_with_bias(p[:1], 1.0) == pytest.approx(odds / (1 + odds))


def test_generation_adds_the_bias_to_the_end_marker_only(tiny_llama):
    model, tokenizer = _load(tiny_llama)
    _, end = markers(tokenizer)
    scores = torch.zeros(2, 5 + end)
    out = EndBias(end, 2.5)(torch.zeros(2, 1, dtype=torch.long), scores.clone())
    assert torch.equal(out[:, end], torch.full((2,), 2.5)) and int((out != 0).sum()) == 2
    # A strong bias ends posts sooner: same seed, shorter posts.
    plain = generate(model, tokenizer, GenerateOptions(n=16, seed=3, max_new_tokens=40, keep_copies=True))
    biased = generate(model, tokenizer, GenerateOptions(n=16, seed=3, max_new_tokens=40, keep_copies=True, end_bias=3.0))
    assert sum(len(s.text) for s in biased) < sum(len(s.text) for s in plain)
    assert sum(s.ended for s in biased) > sum(s.ended for s in plain)


def test_a_trained_bot_keeps_its_bias_and_generates_with_it(home, tiny_llama, posts_file, monkeypatch):
    from huggingtweets.train import TrainConfig

    bot = Bot.train(str(posts_file), base_model=str(tiny_llama), config=TrainConfig(method="lora", max_steps=4), min_characters=0, show_progress=False)
    stored = json.loads((bot.path / "huggingtweets.json").read_text())["generation"]["end_bias"]
    assert isinstance(stored, float) and stored != 0.0
    assert Bot.load(bot.path).options().end_bias == stored
    assert Bot.load(bot.path).options(end_bias=0.0).end_bias == 0.0  # a caller may still choose


@pytest.mark.parametrize("bias", [math.inf, -math.inf, math.nan])
def test_a_bias_that_is_not_a_finite_number_is_refused(bias):
    from huggingtweets.errors import HuggingTweetsError

    with pytest.raises(HuggingTweetsError, match="end bias must be a finite number"):
        GenerateOptions(end_bias=bias).validate()
    GenerateOptions(end_bias=LIMIT).validate()


# ------------------------------------------------------------------------ tuned on the bot's own posts (lengths.py)


def _medians(model, tokenizer, biases, n=24):
    import statistics

    return [statistics.median_high(len(s.text) for s in generate(model, tokenizer, GenerateOptions(n=n, seed=0, keep_copies=True, max_new_tokens=40, end_bias=b))) for b in biases]


@pytest.mark.parametrize("wanted", ["short", "long"])
def test_the_length_bias_moves_toward_the_persons_median(tiny_llama, wanted):
    from huggingtweets.lengths import STEP, length_bias

    model, tokenizer = _load(tiny_llama)
    low, start, high = _medians(model, tokenizer, [-LIMIT, 0.0, LIMIT])
    assert high < start and high < low  # the premise: a higher bias ends posts sooner
    target = (high + 1) if wanted == "short" else start  # the person's posts: short, or as long as the first try
    options = GenerateOptions(keep_copies=True, max_new_tokens=40)
    found = length_bias(model, tokenizer, target, start=0.0, n=24, rounds=5, options=options)
    biases = [t["bias"] for t in found.tries]
    assert biases[0] == 0.0 and model.training is False
    if wanted == "long":
        # Not too long at the start: the held-out bias is a floor, so it is kept without more draws.
        assert found.tries[0]["median"] <= target and biases == [0.0] and found.bias == 0.0
        return
    # Too long at first: the bias steps up by STEP until one try is not too long, then bisects; never below the start.
    assert len(biases) == 5 and biases[1] - biases[0] == pytest.approx(STEP) and min(biases) == 0.0
    best = min(found.tries, key=lambda t: abs(t["median"] - target))
    assert found.bias == best["bias"] and found.person_median == target
    # The medians recorded are those generation gives at that bias.
    assert _medians(model, tokenizer, [found.bias])[0] == best["median"]


def test_a_trained_bot_tunes_its_bias_on_its_own_posts_unless_turned_off(home, tiny_llama, posts_file, monkeypatch):
    import statistics

    from huggingtweets import bot as bot_module
    from huggingtweets.train import TrainConfig

    # A held-out bias that leaves the bot's posts too long (this tiny bot's own ends them all short).
    monkeypatch.setattr(bot_module, "end_bias", lambda *args: -LIMIT)

    def train(length_posts, out):
        config = TrainConfig(method="lora", max_steps=4, length_posts=length_posts)
        return Bot.train(str(posts_file), out, base_model=str(tiny_llama), config=config, min_characters=0, show_progress=False)

    tuned = train(8, home / "tuned").info["generation"]
    calibration = tuned["end_calibration"]
    assert len(calibration["tries"]) > 1 and all(t["bias"] != calibration["tries"][0]["bias"] for t in calibration["tries"][1:])
    assert calibration["tries"][0]["bias"] == calibration["held_out_bias"] == -LIMIT
    assert calibration["tries"][0]["median"] > calibration["person_median"]
    assert min(t["bias"] for t in calibration["tries"]) == calibration["held_out_bias"]  # the floor
    assert tuned["end_bias"] == min(calibration["tries"], key=lambda t: abs(t["median"] - calibration["person_median"]))["bias"]
    from huggingtweets.clean import CleanOptions
    from huggingtweets.corpus import build_corpus

    train_texts, _ = build_corpus([str(posts_file)], CleanOptions(), min_characters=0).texts()
    assert calibration["person_median"] == statistics.median_high(len(t) for t in train_texts)  # the upper middle
    plain = train(0, home / "plain").info["generation"]
    assert plain["end_bias"] == plain["end_calibration"]["held_out_bias"] and "tries" not in plain["end_calibration"]
    with pytest.raises(Exception, match="length posts must be 0 or more"):
        TrainConfig(length_posts=-1).validate()
