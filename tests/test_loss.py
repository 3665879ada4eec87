"""The fused output-layer loss gives the model's own loss and gradients, and training uses it where it applies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import make_posts
from huggingtweets import loss as fused
from huggingtweets.dataset import build_blocks
from huggingtweets.train import TrainConfig, add_lora, train_model


def batch(folder: Path) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    blocks = build_blocks(make_posts(40, seed=3), tokenizer, 64)
    assert (blocks.labels[:3] == fused.IGNORE).any()  # context and padding positions are in the batch
    return {"input_ids": blocks.input_ids[:3], "attention_mask": blocks.attention_mask[:3], "labels": blocks.labels[:3]}


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_same_loss_and_gradients_as_the_models_own(tiny_llama: Path, method: str):
    inputs = batch(tiny_llama)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    if method == "lora":
        model = add_lora(model, 4)
        for name, p in model.named_parameters():  # adapters start at zero (B = 0); give them values
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
    assert fused.fused_head(model) is not None

    own = model(**inputs).loss
    own.backward()
    expected = gradients(model)
    model.zero_grad(set_to_none=True)

    mine = fused.causal_lm_loss(model, inputs, num_items=None)
    assert mine is not None
    mine.backward()
    got = gradients(model)

    assert torch.allclose(mine, own, rtol=1e-5)
    assert got.keys() == expected.keys() and len(got) > 0
    # The output layer (tied to the embedding) is trained in a full fine-tune: its gradient is among those compared.
    assert any("embed" in name for name in got) == (method == "full")
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-6), name

    # The Trainer's count across gradient accumulation divides the sum instead of the mean.
    count = int((inputs["labels"][:, 1:] != fused.IGNORE).sum())
    with torch.no_grad():
        assert fused.causal_lm_loss(model, inputs, num_items=count) is None  # no gradients wanted: the model's own path
    assert torch.allclose(fused.causal_lm_loss(model, inputs, num_items=2 * count), own / 2, rtol=1e-5)


def test_only_models_whose_loss_it_reproduces(tiny_llama: Path, tiny_gpt2: Path):
    assert fused.fused_head(AutoModelForCausalLM.from_pretrained(tiny_gpt2)) is None  # GPT-2: Conv1D blocks, not listed
    scaled = AutoModelForCausalLM.from_pretrained(tiny_llama)
    scaled.config.model_type = "granite"  # divides its logits by a scale: another loss
    assert fused.fused_head(scaled) is None
    assert fused.fused_head(AutoModelForCausalLM.from_pretrained(tiny_llama).to(torch.bfloat16)) is None
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 training on a CPU: the model's own loss
        assert fused.causal_lm_loss(plain, batch(tiny_llama)) is None
    assert fused.causal_lm_loss(plain, batch(tiny_llama)) is not None


def _train(tiny_llama: Path, work: Path, monkeypatch: pytest.MonkeyPatch, **settings) -> tuple[int, dict[str, torch.Tensor]]:
    """Four LoRA steps; how many used the fused loss, the adapter weights after them and the logged training loss."""
    calls = []
    original = fused.linear_cross_entropy
    monkeypatch.setattr(fused, "linear_cross_entropy", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = TrainConfig(method="lora", max_steps=4, batch_size=2, block_size=64, **settings).resolved("cpu")
    losses: list[float] = []
    listener = lambda event: losses.append(event.loss) if event.kind == "log" and event.loss is not None else None  # noqa: E731
    result = train_model(model, tokenizer, make_posts(60), make_posts(10, seed=9), config, work, show_progress=False, listener=listener)
    assert result.best_eval_loss is not None and result.best_eval_loss < 20
    adapters = {n: p.detach().float().clone() for n, p in result.model.named_parameters() if "lora_" in n}
    adapters["logged training losses"] = torch.tensor(losses)
    return len(calls), adapters


def test_training_uses_it_by_default_and_ends_where_transformers_loss_does(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls_on, on = _train(tiny_llama, tmp_path / "on", monkeypatch)
    calls_off, off = _train(tiny_llama, tmp_path / "off", monkeypatch, fused_loss=False)
    assert (calls_on, calls_off) == (4, 0)  # one per training step; evaluation takes the model's own path
    assert on.keys() == off.keys() and len(on) > 0
    assert any(not torch.equal(w, torch.zeros_like(w)) for name, w in on.items() if "lora_B" in name)  # it trained
    assert len(on["logged training losses"]) == 1  # the mean loss of the four steps, as the Trainer logs it
    for name in on:  # same loss and gradients, so the same logged loss and weights after four optimizer steps
        assert torch.allclose(on[name], off[name], atol=1e-5), name


def test_mixed_precision_training_takes_the_models_own_loss(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls, _ = _train(tiny_llama, tmp_path / "bf16", monkeypatch, precision="bf16")
    assert calls == 0  # accelerate's autocast wraps the model's forward, which the fused path would bypass
