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

Under bf16 autocast (the default on CPUs with bf16 arithmetic, see hardware.py) the matmuls run in bf16 and the
softmax in float32, as autocast does with the model's own loss, but a slice of tokens at a time: the only
logits-sized buffer is the bf16 gradient. transformers' path there copies the logits between bf16 and float32
three times and keeps two float32 buffers of them.

Same loss and gradients as `model(labels=...)` (tests/test_loss.py compares them, in float32 and under autocast).
Measured on 2 cores in alternating steps (benchmarks/README.md): in float32 a full fine-tune's step 1.23x faster
and 0.3 GB less memory, LoRA's 1.10x (1.08x and 1.01-1.05x before the softmax stopped allocating a second
logits-sized buffer). Under bf16 autocast a full fine-tune's step 1.15x faster; LoRA's as fast, with a 0.1 GB
lower peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .dataset import IGNORE
from .wrappers import unwrapped

# Models whose forward is exactly `logits = lm_head(decoder(...)[0])` followed by the shifted cross-entropy: no
# logit scaling or soft-capping (Gemma 2, Cohere, Granite have those), so the fused loss is the same loss.
PLAIN_HEADS = frozenset({"llama", "mistral", "qwen2", "qwen3"})

# Tokens whose float32 logits are formed at once under autocast: 128 x 49,152 words is 25 MB.
CHUNK_TOKENS = 128


def _softmax_gradient_(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Turn float32 `logits` [vocabulary, tokens] in place into d loss / d logits (softmax minus one-hot, times each
    target's weight: zero for ignored ones); return the weighted sum of the losses. The softmax is taken by hand
    because `logsumexp` would allocate a second buffer of the logits' size (50-200 MB, fresh pages from the kernel at
    every step): ~0.1 s of a LoRA step's 1.5 s on 2 cores."""
    valid = labels != IGNORE
    safe = labels.clamp(min=0)[None, :]
    picked = logits.gather(0, safe)[0]
    top = logits.amax(0)
    grad = logits.sub_(top).exp_()
    total = grad.sum(0)
    loss = ((total.log() + top - picked) * weights).sum()
    grad.div_(total)
    grad.scatter_add_(0, safe, -valid[None, :].to(grad.dtype))
    grad.mul_(weights[None, :])
    return loss


def _low_precision_gradient(w: torch.Tensor, h: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d loss / d logits [tokens, vocabulary] in the dtype of `w` and `h` (bf16), and the weighted sum of the losses
    in float32.

    A slice of tokens at a time: the logits in bf16, then in float32 `logits - max`, its exp and sum, and the gradient
    written straight into its bf16 rows. Both slice buffers are reused; only the gradient is logits-sized. Rows are
    tokens here, so each token's softmax runs along contiguous memory and its gradient is one contiguous write.
    """
    tokens, vocabulary = h.shape[0], w.shape[0]
    rows = max(1, min(CHUNK_TOKENS, tokens))  # no targets at all (one-token rows): an empty gradient, loss 0
    grad = torch.empty(tokens, vocabulary, dtype=w.dtype)
    logits = torch.empty(rows, vocabulary, dtype=w.dtype)
    shifted = torch.empty(rows, vocabulary, dtype=torch.float32)
    loss = torch.zeros((), dtype=torch.float32)
    for start in range(0, tokens, rows):
        n = min(rows, tokens - start)
        target = labels[start : start + n]
        weight = weights[start : start + n]
        safe = target.clamp(min=0)[:, None]
        part, exp = logits[:n], shifted[:n]
        torch.mm(h[start : start + n], w.T, out=part)
        exp.copy_(part).sub_(part.amax(1, keepdim=True))  # in float32 (an `out=` of another dtype goes via a temporary)
        picked = exp.gather(1, safe)[:, 0]
        total = exp.exp_().sum(1)
        loss += ((total.log() - picked) * weight).sum()
        exp.scatter_add_(1, safe, -total[:, None])  # exp - total at the label: after dividing by total, softmax - 1
        grad[start : start + n].copy_(exp.mul_((weight / total)[:, None]))
    return grad, loss


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum over targets of -log softmax(weight @ h)[label], each times its weight; gradients are computed in the
    forward pass.

    `dtype`: the matmuls' arithmetic (None: the weight's own, float32). The loss is always summed in float32.
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, dtype: torch.dtype | None
    ) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):  # the casts are explicit here
            if dtype is None or dtype == weight.dtype:
                grad = weight @ hidden.T  # [vocabulary, tokens]
                loss = _softmax_gradient_(grad, labels, weights)
                grad_hidden = (weight.T @ grad).T if ctx.needs_input_grad[0] else None
                grad_weight = grad @ hidden if ctx.needs_input_grad[1] else None  # only when the output layer is trained
            else:
                w, h = weight.to(dtype), hidden.to(dtype)
                grad, loss = _low_precision_gradient(w, h, labels, weights)  # [tokens, vocabulary]
                # Kept in bf16 (half the memory) until the backward pass scales them into float32.
                grad_hidden = grad @ w if ctx.needs_input_grad[0] else None
                grad_weight = grad.T @ h if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight) if g is not None))
        ctx.which = (grad_hidden is not None, grad_weight is not None)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = iter(ctx.saved_tensors)
        grad_hidden = _scaled(next(saved), grad_loss, ctx.dtypes[0]) if ctx.which[0] else None
        grad_weight = _scaled(next(saved), grad_loss, ctx.dtypes[1]) if ctx.which[1] else None
        return grad_hidden, grad_weight, None, None, None


def _scaled(saved: torch.Tensor, grad_loss: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`saved * grad_loss` in `dtype`, in one new buffer: a cast scaled in place, or the product (the saved tensor
    itself stays as it was, should the backward pass run twice)."""
    return saved.to(dtype).mul_(grad_loss) if saved.dtype != dtype else saved * grad_loss


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, num_items: Any = None, dtype: torch.dtype | None = None,
    end: EndWeight | None = None,
) -> torch.Tensor:
    """Causal-LM loss of `hidden` [batch, length, d] through the output `weight` [vocabulary, d] against `labels`
    [batch, length] (shifted here, as transformers does): the sum over targets divided by `num_items` (the
    Trainer's count across gradient accumulation) or, when None, the mean over targets. `dtype`: the matmuls'
    arithmetic, bf16 under autocast; None: the weight's. `end`: the end marker's targets count that many times."""
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = labels[:, 1:].reshape(-1)
    total = _LinearCrossEntropy.apply(h, weight, targets, target_weights(targets, end), dtype)
    return total / _count(targets, num_items)


@dataclass(frozen=True)
class EndWeight:
    """The end marker's targets weigh `weight` times the others in the training loss (TrainConfig.end_loss_weight):
    a lever on posts that run on, since the one end target of a post is a small share of its loss."""

    token: int
    weight: float


def target_weights(targets: torch.Tensor, end: EndWeight | None) -> torch.Tensor:
    """Each target's weight in the loss: 0 for ignored ones, `end.weight` for the end marker, 1 for the rest."""
    weights = (targets != IGNORE).to(torch.float32)
    if end is not None and end.weight != 1:
        weights = torch.where(targets == end.token, weights * end.weight, weights)
    return weights


def _count(targets: torch.Tensor, num_items: Any) -> Any:
    # Normalised by the number of targets, not by their weights: a weight raises its token's share of the gradient.
    return num_items if num_items is not None else (targets != IGNORE).sum().clamp(min=1)


def weighted_lm_loss(logits: torch.Tensor, labels: torch.Tensor, end: EndWeight, num_items: Any = None) -> torch.Tensor:
    """The same weighted loss from the model's own logits [batch, length, vocabulary], where the fused path does not
    apply (GPUs, other output layers)."""
    targets = labels[:, 1:].reshape(-1)
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets, ignore_index=IGNORE, reduction="none"
    )
    return (losses * target_weights(targets, end).to(losses.device)).sum() / _count(targets, num_items)




def fused_head(model: Any) -> torch.nn.Linear | None:
    """The output layer when the fused loss gives the same loss as the model's own, else None.

    Only on a CPU with float32 weights (bf16 autocast included): on a GPU transformers' loss is fast and the logits
    fit in memory, and float16 or bf16 weights would need care this function does not take.
    """
    causal = unwrapped(model)
    head = causal.get_output_embeddings() if hasattr(causal, "get_output_embeddings") else None
    # No config: a wrapper such as DataParallel, whose forward splits the batch; the fused path would bypass it.
    if getattr(getattr(causal, "config", None), "model_type", None) not in PLAIN_HEADS or type(head) is not torch.nn.Linear:
        return None  # also a LoRA-wrapped head: its forward is not the plain weight
    if head.bias is not None or head.weight.device.type != "cpu" or head.weight.dtype != torch.float32:
        return None
    return head


def _autocast_dtype() -> torch.dtype | None:
    """The CPU autocast's lower precision when it is on (what the model's own output layer would compute in)."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


def causal_lm_loss(model: Any, inputs: dict[str, torch.Tensor], num_items: Any = None, end: EndWeight | None = None) -> torch.Tensor | None:
    """The fused training loss of `model` on a batch, or None when it does not apply (use the model's own).

    Call it inside the same autocast the model's own forward would run in: the decoder runs in it, and the output
    layer's matmuls take its precision."""
    head = fused_head(model)
    if head is None or "labels" not in inputs or not torch.is_grad_enabled():
        return None  # evaluation: the model's own loss
    features = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = unwrapped(model).get_decoder()(**features).last_hidden_state
    return linear_cross_entropy(hidden, head.weight, inputs["labels"], num_items, _autocast_dtype(), end)
