"""Training under a launcher of several processes: a real 2-process job on CPU (gloo), as `torchrun` runs it.

The Trainer does the data-parallel part; huggingtweets must prepare the data and write the bot folder once, in the
main process, and a killed run must resume like a single-process one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import complete_checkpoints
from huggingtweets import Bot


def _train(nproc: int, posts: Path, base: Path, out: Path, home: Path, *extra: str) -> subprocess.Popen[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    argv = [*launcher, "-m", "huggingtweets", "train", str(posts), "--base-model", str(base), "--out", str(out),
            "--min-characters", "0", "--quiet", "--seed", "3", *extra]
    env = {**os.environ, "HUGGINGTWEETS_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _tensors(folder: Path) -> dict[str, tuple[int, ...]]:
    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no weights in {folder}"
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
    return shapes


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _stat(int(entry.name))[1]
            except (OSError, IndexError):
                pass  # ended meanwhile
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.mark.slow
def test_two_processes_write_one_bot_like_a_single_process_run(tmp_path, tiny_llama, posts_file):
    home = tmp_path / "home"
    one, two = tmp_path / "one", tmp_path / "two"
    single = _train(1, posts_file, tiny_llama, one, home, "--method", "lora", "--epochs", "1")
    _, err1 = _finish(single)
    double = _train(2, posts_file, tiny_llama, two, home, "--method", "lora", "--epochs", "1")
    out2, err2 = _finish(double)

    # One process reports: the bot's path once on stdout, the data table and each progress line once on stderr.
    header = next(line for line in err1.splitlines() if line.startswith("| account"))
    assert out2.split() == [str(two)], out2
    assert err2.count(header) == 1 and err2.count("training (lora") == 1, err2[-2000:]

    # The same kind of folder: the same files, the same tensors with the same shapes.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert _tensors(two) == _tensors(one)
    assert not (tmp_path / ".two.training").exists()  # finished: checkpoints gone, once

    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    # Each step takes a batch from each process: half the steps for the same epoch.
    assert m2["data"]["steps_per_epoch"] * 2 >= m1["data"]["steps_per_epoch"] >= m2["data"]["steps_per_epoch"] * 2 - 1
    assert m2["steps"] == m2["data"]["steps_per_epoch"]
    assert m2["bot_perplexity"] < m2["base_perplexity"]  # it learned

    bot = Bot.load(two)
    posts = bot.generate(n=3, seed=1)
    assert len(posts) == 3 and all(p.text for p in posts)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_from_its_last_checkpoint(tmp_path, tiny_llama, posts_file):
    home = tmp_path / "home"
    out = tmp_path / "bot"
    work = tmp_path / ".bot.training"
    args = ("--method", "full", "--epochs", "12", "--batch-size", "2")
    proc = _train(2, posts_file, tiny_llama, out, home, *args)
    deadline = time.monotonic() + 300
    while not complete_checkpoints(work):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.2)
    # The launcher and both workers at once, as a crash would (torchrun starts each worker in a session of its own).
    doomed = _descendants(proc.pid)
    for pid in (proc.pid, *doomed):
        os.kill(pid, signal.SIGKILL)
    proc.wait(30)
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _stat(pid)[0] for pid in doomed):
        time.sleep(0.1)
    saved = complete_checkpoints(work)
    assert saved and not out.exists()

    _, err = _finish(_train(2, posts_file, tiny_llama, out, home, *args))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] is not None and metrics["resumed_from_step"] >= saved[-1], err[-2000:]
    assert metrics["steps"] >= metrics["resumed_from_step"]
    Bot.load(out)
