"""Measurements in a fresh Python process, so that each one's peak memory (and thread pool, compiled code) is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .generating import generation
from .steps import compile_speedup, step_pairs
from .training import gpu_run, train_steps

# What a child can run, by the name `in_child` passes.
WORKERS = {"train_steps": train_steps, "generation": generation, "compile_speedup": compile_speedup, "step_pairs": step_pairs, "gpu_run": gpu_run}


def peak_rss_bytes() -> int:
    """This process's peak resident memory. VmHWM belongs to the current address space, so it starts afresh
    at exec; ru_maxrss can carry a parent's peak over a fork on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def in_child(function: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the worker `function(spec)` (one of `WORKERS`) in a fresh Python process.

    Returns the function's result with `peak_rss_bytes` and `seconds` added, or `{"error": ...}`.
    """
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        code = "import sys; from huggingtweets.bench.child import child_main; child_main(*sys.argv[1:])"
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, function, str(spec_path), str(out_path)],
                capture_output=True, text=True, timeout=timeout, env=env,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish in {timeout:.0f} s"}
        if done.returncode != 0 or not out_path.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
            return {"error": f"exit status {done.returncode}: " + " | ".join(tail)}
        result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
        result["seconds"] = round(time.perf_counter() - start, 1)
        return result


def child_main(function: str, spec_path: str, out_path: str) -> None:
    """Entry point of a child process (see `in_child`)."""
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    result = WORKERS[function](spec)
    result["peak_rss_bytes"] = peak_rss_bytes()
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
