"""kill -9 at the worst moments of a training run: the next identical command resumes and nothing is half-written.

Each run is a real `huggingtweets train` process that SIGKILLs itself at one point (no handler, no cleanup runs,
exactly as `kill -9` or the out-of-memory killer would end it): in the middle of a training step, in the middle of
writing a checkpoint, between the files of the bot folder, and between the two renames that replace an older bot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import complete_checkpoints
from huggingtweets import Bot

# Runs the CLI with one function wrapped so that the process kills itself at its `KILL_AT`-th call.
HARNESS = textwrap.dedent(
    """
    import os, signal, sys
    import transformers
    from huggingtweets import atomic, card, cli

    point, at = os.environ["KILL_POINT"], int(os.environ["KILL_AT"])
    calls = [0]

    def killing(function, before=True):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == at and before:
                os.kill(os.getpid(), signal.SIGKILL)
            result = function(*args, **kwargs)
            if calls[0] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapped

    T = transformers.Trainer
    if point == "step":  # the KILL_AT-th step after the first checkpoint, after its backward pass, before the update
        saved, save, step = [False], T._save_checkpoint, T.training_step
        def save_checkpoint(self, *args, **kwargs):
            saved[0] = True
            return save(self, *args, **kwargs)
        def training_step(self, *args, **kwargs):
            return counted(self, *args, **kwargs) if saved[0] else step(self, *args, **kwargs)
        counted = killing(step, before=False)
        T._save_checkpoint, T.training_step = save_checkpoint, training_step
    elif point == "checkpoint":  # the weights of a checkpoint written, its optimizer state and trainer state not
        T._save_optimizer_and_scheduler = killing(T._save_optimizer_and_scheduler)
    elif point == "bot-folder":  # inside the bot folder's temporary copy: weights and metrics written, the card not
        card.render = killing(card.render)
    elif point == "rename":  # an older bot moved aside, the new one not yet in its place
        real = os.replace
        def replace(src, dst):
            if str(src).endswith(".tmp") and not os.path.exists(dst) and any(p.startswith("." + os.path.basename(dst) + ".old-") for p in os.listdir(os.path.dirname(dst))):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        atomic.os.replace = replace
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def _argv(posts: Path, base: Path, out: Path, epochs: int) -> list[str]:
    return [
        "train", str(posts), "--out", str(out), "--base-model", str(base), "--method", "full", "--epochs", str(epochs),
        "--block-size", "64", "--batch-size", "4", "--compile", "off", "--quiet", "--min-characters", "0",
    ]


def _run(argv: list[str], home: Path, point: str | None = None, at: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUGGINGTWEETS_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    if point is None:
        return subprocess.run([sys.executable, "-m", "huggingtweets", *argv], capture_output=True, text=True, env=env, timeout=600)
    env |= {"KILL_POINT": point, "KILL_AT": str(at)}
    return subprocess.run([sys.executable, "-c", HARNESS, *argv], capture_output=True, text=True, env=env, timeout=600)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".old-" in p.name)


@pytest.mark.parametrize("point, at", [("step", 3), ("checkpoint", 2)])
def test_killed_during_training_the_same_command_resumes_losing_at_most_one_interval(home, tmp_path, tiny_llama, posts_file, point, at):
    out, work = tmp_path / "bot", tmp_path / ".bot.training"
    argv = _argv(posts_file, tiny_llama, out, epochs=3)
    killed = _run(argv, home, point, at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    saved = complete_checkpoints(work)
    assert saved, f"no complete checkpoint before the kill: {sorted(p.name for p in work.iterdir())}"
    if point == "checkpoint":
        # The checkpoint being written is there, but incomplete: it must not be resumed from.
        assert len(list(work.glob("checkpoint-*"))) == len(saved) + 1

    done = _run(argv, home)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == saved[-1]  # the last complete checkpoint: at most one interval lost
    assert metrics["steps"] > saved[-1]
    assert not work.exists() and _leftovers(tmp_path) == []
    assert Bot.load(out).generate(n=2, seed=1)


def test_killed_while_writing_the_bot_folder_leaves_no_half_bot(home, tmp_path, tiny_llama, posts_file):
    out, work = tmp_path / "bot", tmp_path / ".bot.training"
    argv = _argv(posts_file, tiny_llama, out, epochs=1)
    killed = _run(argv, home, "bot-folder")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()  # the half-written copy never took the bot's name
    assert complete_checkpoints(work)  # and the run's checkpoints are still there

    done = _run(argv, home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] is not None  # nothing retrained
    assert (out / "README.md").is_file() and _leftovers(tmp_path) == []  # the dead run's temporary copy is gone
    Bot.load(out)


def test_killed_between_the_renames_that_replace_an_older_bot(home, tmp_path, tiny_llama, posts_file):
    out = tmp_path / "bot"
    assert _run(_argv(posts_file, tiny_llama, out, epochs=1), home).returncode == 0
    before = json.loads((out / "huggingtweets.json").read_text())["created"]

    argv = _argv(posts_file, tiny_llama, out, epochs=2)  # another run, replacing the first bot
    killed = _run(argv, home, "rename")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()  # the moment of the kill: the old bot aside, the new one not in place

    # Loading the bot puts the old one back: the only complete copy.
    assert json.loads((Bot.load(out).path / "huggingtweets.json").read_text())["created"] == before
    done = _run(argv, home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "huggingtweets.json").read_text())["config"]["epochs"] == 2
    assert _leftovers(tmp_path) == []
