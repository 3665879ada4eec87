"""The GPU check of issue 21: `benchmarks/gpu_check.sh` and `bench --gpu`.

This machine has no GPU, so the script's no-GPU line is tested for real, at both of its gates (no driver; a driver
but a torch without CUDA), and the GPU section itself runs on the CPU with the CUDA device queries faked: its plumbing,
budget and report rows are what can fail here. The figures themselves come from a lent GPU (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import huggingtweets.bench as bench
from huggingtweets.bench import BenchOptions, markdown, targets
from huggingtweets.bench import sections as bench_sections
from huggingtweets.bench.data import load_data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _run_script(tmp_path: Path, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "artifacts" / "bench-gpu.json"
    environment = {**os.environ, "PATH": path, **env}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=environment, timeout=300, cwd=tmp_path)


def _assert_one_line_and_nothing_written(done: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0], done.stdout
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "artifacts").exists()  # no JSON: no file means no GPU figures
    assert not (REPO / ".venv-gpu").exists()  # nothing installed for nothing


def test_without_a_driver_the_script_says_so_in_one_line_and_installs_nothing(tmp_path):
    # A PATH with bash and coreutils but no nvidia-smi: what a CPU machine has.
    done = _run_script(tmp_path, "/usr/bin:/bin")
    _assert_one_line_and_nothing_written(done, tmp_path)
    assert done.stderr == ""


def test_with_a_driver_but_no_cuda_in_torch_bench_gpu_says_so_in_one_line(tmp_path):
    # A driver that answers (a stand-in nvidia-smi) and this venv's CPU torch: the second gate, in bench --gpu itself.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    smi = fake_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: a stand-in'\n")
    smi.chmod(0o755)
    done = _run_script(tmp_path, f"{fake_bin}:/usr/bin:/bin", PYTHON=sys.executable)
    _assert_one_line_and_nothing_written(done, tmp_path)


def test_both_command_lines_take_the_gpu_flag():
    from huggingtweets import cli

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench as bench_script  # benchmarks/bench.py
    finally:
        sys.path.pop(0)
    for args in (cli.build_parser().parse_args(["bench", "--gpu"]), bench_script.parse(["--gpu"])):
        options = bench.options_from_args(args)
        assert options.gpu_mode and tuple(options.sections) == ("gpu",)
    assert not bench.options_from_args(bench_script.parse(["--quick"])).gpu_mode


@pytest.fixture
def fake_card(monkeypatch):
    """torch.cuda answers as an H100 would; training and the matmul still run on the CPU (hardware.accelerator)."""
    import torch

    from huggingtweets import hardware

    card = {"name": "NVIDIA H100 80GB HBM3", "capability": (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: card["name"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: card["capability"])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(hardware, "accelerator", lambda: "cpu")
    return card


def _gpu_options(model: Path, data: Path, **overrides) -> BenchOptions:
    settings = dict(data=str(data), base_model=str(model), gpu_posts=16, gpu_matmul_size=128, matmul_repeats=2, race_posts=24,
                    race_validation_posts=8, evals_per_epoch=2, batched_posts=4, generation_batch=4, child_timeout_s=300)
    return BenchOptions.gpu_preset(**{**settings, **overrides})


@pytest.mark.parametrize("name, capability, precision, judged", [
    ("NVIDIA H100 80GB HBM3", (9, 0), "bf16", True),
    ("Tesla T4", (7, 5), "fp16", False),
])
def test_gpu_section_reports_the_card_its_precision_and_every_part(home, tiny_llama, posts_file, fake_card, name, capability, precision, judged):
    import time

    fake_card.update(name=name, capability=capability)
    options = _gpu_options(tiny_llama, posts_file)
    data = load_data(options)
    from huggingtweets import models

    section: dict = {}
    said: list[str] = []
    bench_sections.gpu(section, options, data, models.load_tokenizer(str(tiny_llama)), True, time.perf_counter(), said.append)

    assert section["device"]["name"] == name and section["device"]["capability"] == list(capability)
    assert section["precision"] == precision == section["device"]["precision"]
    assert section["peak"]["precision"] == precision and section["peak"]["gflops"] > 0
    run = section["target_run"]
    assert "error" not in run, run.get("error")
    # The target run trains with the GPU defaults: a full fine-tune in the card's precision, the posts asked for.
    assert (run["method"], run["precision"], run["posts"]) == ("full", precision, 16)
    assert run["tokens_per_s"] > 0 and 0 < run["utilisation"]
    assert section["train_seconds"] == run["train_seconds"] > 0
    assert section["race"]["default"]["config"]["precision"] == precision
    assert section["race"]["reference"]["config"]["precision"] == "fp32"
    assert section["race"]["ratio"] is None or section["race"]["ratio"] > 0
    assert section["generation"]["model"] == "the race's default run" and "error" not in section["generation"]
    assert section["skipped"] == []

    report = {"options": {"gpu_posts": options.gpu_posts}, "gpu": section, "date": "today", "base_model": str(tiny_llama),
              "machine": {}, "data": {}, "seconds": 1.0, "failed_sections": []}
    verdicts = {t["id"]: t for t in targets(report)}
    # The 30 s target names one H100: another card's time is reported, not judged.
    assert (verdicts["gpu_seconds"]["passed"] is not None) == judged
    text = markdown({**report, "targets": list(verdicts.values())})
    assert name in text and f"the defaults train in {precision}" in text and "tokens/s" in text and "race" in text


def test_gpu_parts_that_would_pass_the_budget_are_skipped_with_a_note(home, tiny_llama, posts_file, fake_card):
    import time

    options = _gpu_options(tiny_llama, posts_file, gpu_budget_s=1.0)
    from huggingtweets import models

    section: dict = {}
    bench_sections.gpu(section, options, load_data(options), models.load_tokenizer(str(tiny_llama)), True, time.perf_counter(), lambda s: None)
    assert "error" not in section["target_run"]  # the target itself always runs
    assert "race" not in section and "generation" not in section
    assert [s.split(":")[0] for s in section["skipped"]] == ["race", "generation"]
    text = markdown({"options": {"gpu_posts": 16}, "gpu": section, "date": "today", "base_model": "m", "machine": {}, "data": {},
                     "seconds": 1.0, "failed_sections": [], "targets": targets({"gpu": section, "options": {"gpu_posts": 16}})})
    assert "skipped (time budget)" in text


def test_gpu_mode_of_main_writes_only_the_gpu_section(home, tiny_llama, posts_file, fake_card, monkeypatch, tmp_path, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    options = _gpu_options(tiny_llama, posts_file, gpu_budget_s=0.0)  # the target run only: the rest is tested above
    monkeypatch.setattr(bench, "options_from_args", lambda args: options)
    # Only the main process is faked: its children (the target run) find no CUDA and train on the CPU.
    out = tmp_path / "gpu.json"
    code = bench.main(argparse.Namespace(gpu=True, json_out=str(out)))
    report = json.loads(out.read_text())
    assert code == 0, report.get("failed_sections")
    assert "gpu" in report and not {"peak", "throughput", "race", "generation", "voice"} & set(report)
    assert report["gpu"]["device"]["h100"] is True and report["gpu"]["train_seconds"] > 0
    printed = capsys.readouterr().out
    assert "3,200" not in printed and "16 posts × 4 epochs" in printed
