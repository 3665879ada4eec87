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


def seeded_model(folder: Path, method: str) -> torch.nn.Module:
    """The tiny model, with seeded LoRA adapters for "lora" (they start at zero, B = 0: given values here)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    if method == "lora":
        model = add_lora(model, 4)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
    return model


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_same_loss_and_gradients_as_the_models_own(tiny_llama: Path, method: str):
    inputs = batch(tiny_llama)
    model = seeded_model(tiny_llama, method)
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
    # DataParallel (several GPUs in one process) splits the batch in its forward, which the fused path would bypass.
    assert fused.fused_head(torch.nn.DataParallel(AutoModelForCausalLM.from_pretrained(tiny_llama))) is None
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 training on a CPU: float32 weights under autocast
        assert fused.causal_lm_loss(plain, batch(tiny_llama)) is not None
    with torch.no_grad():
        assert fused.causal_lm_loss(plain, batch(tiny_llama)) is None  # evaluation: the model's own loss


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((a[name] - b[name]).norm() / b[name].norm()) for name in b}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_under_autocast_as_close_to_float32_as_the_models_own(tiny_llama: Path, method: str, monkeypatch: pytest.MonkeyPatch):
    """bf16 autocast: the matmuls in bf16, the softmax in float32 a slice of tokens at a time. Its loss and gradients
    differ from the model's own under autocast only by bf16 rounding: they are no further from float32's than the
    model's own are."""
    monkeypatch.setattr(fused, "CHUNK_TOKENS", 50)  # 189 targets: three whole slices and a partial one
    inputs = batch(tiny_llama)
    model = seeded_model(tiny_llama, method)

    def run(step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = step()
        loss.backward()
        out = gradients(model)
        model.zero_grad(set_to_none=True)
        return loss.detach(), out

    def autocast(step):
        def inner() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return step()
        return inner

    exact, exact_grads = run(lambda: model(**inputs).loss)
    own, own_grads = run(autocast(lambda: model(**inputs).loss))
    mine, mine_grads = run(autocast(lambda: fused.causal_lm_loss(model, inputs)))

    assert mine.dtype == torch.float32
    assert abs(float(mine - exact)) <= 1.5 * abs(float(own - exact)) + 1e-3 * float(exact)
    assert mine_grads.keys() == exact_grads.keys() and any("embed" in n for n in mine_grads) == (method == "full")
    own_off, mine_off = _distance(own_grads, exact_grads), _distance(mine_grads, exact_grads)
    assert min(max(own_off.values()), max(mine_off.values())) > 1e-4  # bf16 arithmetic did happen in both
    for name in exact_grads:
        assert mine_off[name] <= 1.5 * own_off[name] + 1e-3, (name, mine_off[name], own_off[name])


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_rows_without_targets(dtype: torch.dtype | None):
    """One-token rows have nothing to predict once shifted: loss 0 and zero gradients, in float32 and in bf16."""
    hidden = torch.randn(3, 1, 8, requires_grad=True)
    weight = torch.randn(20, 8, requires_grad=True)
    loss = fused.linear_cross_entropy(hidden, weight, torch.randint(0, 20, (3, 1)), dtype=dtype)
    loss.backward()
    assert float(loss) == 0 and not hidden.grad.any() and not weight.grad.any()
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32


def _train(tiny_llama: Path, work: Path, monkeypatch: pytest.MonkeyPatch, **settings) -> tuple[list[torch.dtype | None], dict[str, torch.Tensor]]:
    """Four LoRA steps; the matmul precision of each fused loss computed, the adapter weights after them and the
    logged training loss."""
    calls: list[torch.dtype | None] = []
    original = fused.linear_cross_entropy

    def spy(hidden, weight, labels, num_items=None, dtype=None, end=None):
        calls.append(dtype)
        return original(hidden, weight, labels, num_items, dtype, end)

    monkeypatch.setattr(fused, "linear_cross_entropy", spy)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = TrainConfig(method="lora", max_steps=4, batch_size=2, block_size=64, **settings).resolved("cpu")
    losses: list[float] = []
    listener = lambda event: losses.append(event.loss) if event.kind == "log" and event.loss is not None else None  # noqa: E731
    result = train_model(model, tokenizer, make_posts(60), make_posts(10, seed=9), config, work, show_progress=False, listener=listener)
    assert result.best_eval_loss is not None and result.best_eval_loss < 20
    adapters = {n: p.detach().float().clone() for n, p in result.model.named_parameters() if "lora_" in n}
    adapters["logged training losses"] = torch.tensor(losses)
    return calls, adapters


def test_training_uses_it_by_default_and_ends_where_transformers_loss_does(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls_on, on = _train(tiny_llama, tmp_path / "on", monkeypatch)
    calls_off, off = _train(tiny_llama, tmp_path / "off", monkeypatch, fused_loss=False)
    assert (calls_on, calls_off) == ([None] * 4, [])  # one per training step, in float32; evaluation takes the model's own path
    assert on.keys() == off.keys() and len(on) > 0
    assert any(not torch.equal(w, torch.zeros_like(w)) for name, w in on.items() if "lora_B" in name)  # it trained
    assert len(on["logged training losses"]) == 1  # the mean loss of the four steps, as the Trainer logs it
    # Same loss and gradients, so the same logged loss and weights after four optimizer steps. Up to float rounding:
    # Adam moves a weight by about the learning rate whatever the size of its gradient, so where a gradient is near
    # zero the rounding of the two losses (1e-8) can move a single element by 1e-5 or more; each tensor is compared
    # as a whole.
    assert torch.allclose(on.pop("logged training losses"), off.pop("logged training losses"), atol=1e-5)
    for name in on:
        assert float((on[name] - off[name]).norm() / off[name].norm().clamp(min=1e-12)) < 1e-3, name


def test_mixed_precision_training_uses_it_and_ends_where_transformers_loss_does(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls_on, on = _train(tiny_llama, tmp_path / "on", monkeypatch, precision="bf16")
    calls_off, off = _train(tiny_llama, tmp_path / "off", monkeypatch, precision="bf16", fused_loss=False)
    assert (calls_on, calls_off) == ([torch.bfloat16] * 4, [])  # in accelerate's autocast, which the fused path enters itself
    assert on.keys() == off.keys() and len(on) > 0
    # The same training up to bf16 rounding. Adam's first steps move every weight by about the learning rate
    # whatever its gradient's size, so rounding flips some tiny ones: the adapters are compared as a whole.
    losses = on.pop("logged training losses"), off.pop("logged training losses")
    assert torch.allclose(*losses, rtol=1e-2), losses
    apart = max(float((on[n] - off[n]).norm() / off[n].norm()) for n in off if "lora_B" in n)
    assert 0 < apart < 0.2


def _weighted_reference(logits: torch.Tensor, labels: torch.Tensor, end: int, weight: float) -> torch.Tensor:
    """The end-weighted loss spelt out: each target's cross-entropy, the end marker's times `weight`, over the count."""
    total, count = logits.new_zeros((), dtype=torch.float32), 0
    for row in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = int(labels[row, t + 1])
            if target == fused.IGNORE:
                continue
            nll = -torch.log_softmax(logits[row, t].float(), -1)[target]
            total = total + nll * (weight if target == end else 1.0)
            count += 1
    return total / count


@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_end_weight_scales_the_end_targets_in_the_fused_and_the_plain_path(tiny_llama: Path, method: str):
    inputs = batch(tiny_llama)
    end = AutoTokenizer.from_pretrained(tiny_llama).eos_token_id
    assert (inputs["labels"] == end).sum() >= 3  # the batch holds ends of posts
    model = seeded_model(tiny_llama, method)
    features = {k: v for k, v in inputs.items() if k != "labels"}

    expected = _weighted_reference(model(**features).logits, inputs["labels"], end, 3.0)
    expected.backward()
    expected_grads = gradients(model)
    model.zero_grad(set_to_none=True)

    weighted = fused.EndWeight(end, 3.0)
    mine = fused.causal_lm_loss(model, inputs, None, weighted)
    mine.backward()
    mine_grads = gradients(model)
    model.zero_grad(set_to_none=True)
    plain = fused.weighted_lm_loss(model(**features).logits, inputs["labels"], weighted)

    assert torch.allclose(mine, expected, rtol=1e-5) and torch.allclose(plain, expected, rtol=1e-5)
    assert float(mine) > float(model(**inputs).loss)  # the end targets count more: the weight did act
    for name in expected_grads:
        assert torch.allclose(mine_grads[name], expected_grads[name], rtol=1e-4, atol=1e-6), name
    # Weight 1 is the plain loss, in both paths.
    assert torch.allclose(fused.causal_lm_loss(model, inputs, None, fused.EndWeight(end, 1.0)), model(**inputs).loss, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16: the slices' path weighs the same way
        low = fused.causal_lm_loss(model, inputs, None, weighted)
    assert abs(float(low - expected)) < 0.02 * float(expected)


@pytest.mark.parametrize("fused_loss", [True, False])
def test_training_weighs_the_end_and_evaluates_the_plain_loss(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fused_loss: bool):
    import huggingtweets.train as train

    seen: list[object] = []
    original_plain = train.weighted_lm_loss

    def spy_plain(logits, labels, end, num_items=None):
        seen.append(("plain", end.weight if end else None, torch.is_grad_enabled()))
        return original_plain(logits, labels, end, num_items)

    original_fused = fused.linear_cross_entropy

    def spy_fused(hidden, weight, labels, num_items=None, dtype=None, end=None):
        seen.append(("fused", end.weight if end else None, torch.is_grad_enabled()))
        return original_fused(hidden, weight, labels, num_items, dtype, end)

    monkeypatch.setattr(train, "weighted_lm_loss", spy_plain)
    monkeypatch.setattr(fused, "linear_cross_entropy", spy_fused)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = TrainConfig(method="lora", max_steps=4, batch_size=2, block_size=64, end_loss_weight=3.0, fused_loss=fused_loss).resolved("cpu")
    result = train_model(AutoModelForCausalLM.from_pretrained(tiny_llama), tokenizer, make_posts(60), make_posts(10, seed=9), config, tmp_path, show_progress=False)
    path = "fused" if fused_loss else "plain"
    training = [s for s in seen if s[2]]
    evaluation = [s for s in seen if not s[2]]
    assert training == [(path, 3.0, True)] * 4  # every training step weighs the end marker
    assert evaluation and all(s[1] is None for s in evaluation)  # evaluation: the plain loss, in both paths
    assert result.best_eval_loss is not None
    assert run_fingerprint_differs(config)


def run_fingerprint_differs(config: TrainConfig) -> bool:
    """The weight is part of what a run is: a checkpoint made with another weight is not resumed."""
    from dataclasses import replace

    from huggingtweets.train import run_fingerprint

    plain = replace(config, end_loss_weight=1.0)
    return run_fingerprint(config, "base", ["a"], ["b"]) != run_fingerprint(plain, "base", ["a"], ["b"])
