"""Precision and device chosen per machine: the capability queries are faked, the choices are the real code's."""

from __future__ import annotations

import pytest
import torch

from huggingtweets import hardware
from huggingtweets.train import TrainConfig


@pytest.mark.parametrize(
    "card, capability, precision",
    [
        ("P100", (6, 0), "fp16"),
        ("V100", (7, 0), "fp16"),
        ("T4 (Colab's free GPU)", (7, 5), "fp16"),
        ("A100", (8, 0), "bf16"),
        ("RTX 4090", (8, 9), "bf16"),
        ("H100", (9, 0), "bf16"),
    ],
)
def test_each_card_trains_in_the_precision_its_tensor_cores_run(monkeypatch, card, capability, precision):
    monkeypatch.setattr(hardware, "gpu_capability", lambda index=0: capability)
    # On a T4 torch.cuda.is_bf16_supported() can say yes (emulated bf16): it must not decide.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    config = TrainConfig().resolved("cuda")
    assert config.precision == precision, card
    assert (config.method, config.batch_size, config.epochs) == ("full", 8, 4.0)
    assert TrainConfig(precision="fp32").resolved("cuda").precision == "fp32"  # --precision still overrides
    assert TrainConfig(precision="bf16").resolved("cuda").precision == "bf16"


def test_apple_gpus_train_in_fp32_and_cpus_as_before(monkeypatch):
    assert TrainConfig().resolved("mps").precision == "fp32"
    assert TrainConfig().resolved("mps").method == "full"
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "1")
    assert TrainConfig().resolved("cpu").precision == "bf16"
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "0")
    assert TrainConfig().resolved("cpu").precision == "fp32"


def test_the_device_is_found_in_the_order_cuda_mps_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert hardware.accelerator() == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert hardware.accelerator() == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.accelerator() == "cuda"
    # Without an argument, resolved() asks the machine: a faked T4.
    monkeypatch.setattr(hardware, "gpu_capability", lambda index=0: (7, 5))
    assert TrainConfig().resolved().precision == "fp16"
