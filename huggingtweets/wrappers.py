"""Models inside wrappers: a PEFT (LoRA) model around a transformers one.

In a module of its own, below both training and the fused loss, which both need to know (train.py imports loss.py).
"""

from __future__ import annotations

from typing import Any


def is_peft(model: Any) -> bool:
    """Whether `model` is a PEFT wrapper (adapters over a base model)."""
    return hasattr(model, "peft_config")


def unwrapped(model: Any) -> Any:
    """The transformers model itself, inside a PEFT wrapper or not (LoRA layers are injected into it either way)."""
    return model.get_base_model() if is_peft(model) else model
