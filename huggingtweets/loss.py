"""The output layer and the cross-entropy loss in one pass, for training on a CPU.

    head = fused_head(model)                  # None where it does not apply: then transformers' own loss
    loss = linear_cross_entropy(hidden, head.weight, labels, num_items)

Why: with a 49,152-word vocabulary the output layer's logits are the largest tensors of a training step
([tokens, 49152] floats: 50 MB at LoRA's batch of 2 x 128 tokens). transformers computes them, then
log-softmax, then the gradient of log-softmax, each a fresh buffer of that size that the allocator takes
from the kernel page by page. Here the gradient of the loss with respect to the logits (softmax minus one-hot)
is formed in place, in the forward pass, right after the loss; the backward pass only scales the stored
gradients. The logits are computed as [vocabulary, tokens] (`weight @ hidden.T`), the layout in which this
CPU's matmul runs fastest for this shape (~1.4x).

Same loss and gradients as `model(labels=...)` (tests/test_loss.py compares them). Measured on 2 cores in
alternating steps (benchmarks/README.md): a full fine-tune's step 1.23x faster and 0.3 GB less memory, LoRA's
1.10x (1.08x and 1.01-1.05x before the softmax stopped allocating a second logits-sized buffer).
"""

from __future__ import annotations

from typing import Any

import torch

from .dataset import IGNORE
from .train import is_peft

# Models whose forward is exactly `logits = lm_head(decoder(...)[0])` followed by the shifted cross-entropy: no
# logit scaling or soft-capping (Gemma 2, Cohere, Granite have those), so the fused loss is the same loss.
PLAIN_HEADS = frozenset({"llama", "mistral", "qwen2", "qwen3"})


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum over targets of -log softmax(weight @ h)[label]; gradients are computed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = weight @ hidden.T  # [vocabulary, tokens]
        valid = labels != IGNORE
        safe = labels.clamp(min=0)[None, :]
        picked = logits.gather(0, safe)[0]
        # d loss / d logits = softmax - one-hot, for targets only; built in the logits' own buffer. The softmax
        # is taken by hand because `logsumexp` would allocate a second buffer of the logits' size (50-200 MB,
        # fresh pages from the kernel at every step): ~0.1 s of a LoRA step's 1.5 s on 2 cores.
        top = logits.amax(0)
        grad = logits.sub_(top).exp_()
        total = grad.sum(0)
        loss = ((total.log() + top - picked) * valid).sum()
        grad.div_(total)
        grad.scatter_add_(0, safe, -valid[None, :].to(grad.dtype))
        grad.mul_(valid[None, :])
        grad_hidden = (weight.T @ grad).T if ctx.needs_input_grad[0] else None
        grad_weight = grad @ hidden if ctx.needs_input_grad[1] else None  # only when the output layer is trained
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight) if g is not None))
        ctx.which = (grad_hidden is not None, grad_weight is not None)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = iter(ctx.saved_tensors)
        grad_hidden = next(saved) * grad_loss if ctx.which[0] else None
        grad_weight = next(saved) * grad_loss if ctx.which[1] else None
        return grad_hidden, grad_weight, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, num_items: Any = None) -> torch.Tensor:
    """Causal-LM loss of `hidden` [batch, length, d] through the output `weight` [vocabulary, d] against `labels`
    [batch, length] (shifted here, as transformers does): the sum over targets divided by `num_items` (the
    Trainer's count across gradient accumulation) or, when None, the mean over targets."""
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = labels[:, 1:].reshape(-1)
    total = _LinearCrossEntropy.apply(h, weight, targets)
    count = num_items if num_items is not None else (targets != IGNORE).sum().clamp(min=1)
    return total / count


def _causal(model: Any) -> Any:
    """The causal-LM model itself, inside a PEFT wrapper or not (LoRA layers are injected into it either way)."""
    return model.get_base_model() if is_peft(model) else model


def fused_head(model: Any) -> torch.nn.Linear | None:
    """The output layer when the fused loss gives the same loss as the model's own, else None.

    Only on a CPU in fp32: on a GPU transformers' loss is fast and the logits fit in memory, and half
    precision would need care this function does not take.
    """
    causal = _causal(model)
    head = causal.get_output_embeddings() if hasattr(causal, "get_output_embeddings") else None
    if getattr(causal.config, "model_type", None) not in PLAIN_HEADS or type(head) is not torch.nn.Linear:
        return None  # also a LoRA-wrapped head: its forward is not the plain weight
    if head.bias is not None or head.weight.device.type != "cpu" or head.weight.dtype != torch.float32:
        return None
    return head


def causal_lm_loss(model: Any, inputs: dict[str, torch.Tensor], num_items: Any = None) -> torch.Tensor | None:
    """The fused training loss of `model` on a batch, or None when it does not apply (use the model's own)."""
    head = fused_head(model)
    if head is None or "labels" not in inputs or not torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
        return None  # evaluation, or mixed precision (bf16 on a CPU): the model's own loss
    features = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = _causal(model).get_decoder()(**features).last_hidden_state
    return linear_cross_entropy(hidden, head.weight, inputs["labels"], num_items)
