"""Shared fixtures: tiny randomly initialised models with a tokenizer trained here, and the real X archive.

Tiny models make training tests take seconds; they go through exactly the code path a hub id or the
embedded default does (`from_pretrained` on a folder).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

# float32 on every machine, so that a test behaves the same whether or not the CPU has bf16 arithmetic (the CPU defaults
# switch to bf16 where it has: hardware.py). The bf16 paths have tests of their own, and the end-to-end test on the real
# model runs what this machine's defaults are. Set HUGGINGTWEETS_CPU_BF16=1 to run the whole suite in bf16.
os.environ.setdefault("HUGGINGTWEETS_CPU_BF16", "0")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ARCHIVE = SHARED / "data" / "x-archive-milahu104"

# Enough varied text for a small BPE vocabulary; the posts tests train on are generated below.
WORDS = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this from or had by "
    "hot word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look more "
    "day could go come did number sound no most people my over know water than call first who may down side been now find"
).split()


def make_posts(n: int = 300, seed: int = 0) -> list[str]:
    """Deterministic pseudo-posts of 4 to 20 words."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) for _ in range(n)]


def _train_tokenizer(folder: Path, bos: str, eos: str, pad: str | None) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(dict.fromkeys([bos, eos] + ([pad] if pad else [])))
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(make_posts(500, seed=1) + ["Hello, world! 123 @user #tag https://x.co"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad)
    fast.save_pretrained(folder)


def _tiny(folder: Path, family: str) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if family == "llama":
        # Like SmolLM2: distinct start token, end token doubles as padding.
        _train_tokenizer(folder, "<|im_start|>", "<|im_end|>", "<|im_end|>")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
    else:
        # Like GPT-2: one <|endoftext|> token for start and end, no padding token.
        _train_tokenizer(folder, "<|endoftext|>", "<|endoftext|>", None)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        config = GPT2Config(
            vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty huggingtweets home, so tests never touch ~/.huggingtweets."""
    monkeypatch.setenv("HUGGINGTWEETS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def default_model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the embedded default converted once per test session (shared by the slow tests)."""
    return tmp_path_factory.mktemp("default-home")


@pytest.fixture(scope="session")
def archive_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real archive zipped the way X delivers it: `data/` at the root of the zip."""
    if not ARCHIVE.is_dir():
        pytest.fail(f"the real test archive is missing: {ARCHIVE}")
    path = tmp_path_factory.mktemp("archive") / "twitter-2026-03-01-abc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted((ARCHIVE / "data").rglob("*")):
            z.write(file, file.relative_to(ARCHIVE).as_posix())
    return path


@pytest.fixture()
def posts_file(tmp_path: Path) -> Path:
    """A TXT source with enough text to train on (one post per line)."""
    path = tmp_path / "posts.txt"
    path.write_text("\n".join(make_posts(400)) + "\n", encoding="utf-8")
    return path


# The time the recorded services' rate-limit headers are relative to.
NOW = 1_800_000_000


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A stopped clock at NOW for the network sources: records what would have been slept instead of sleeping."""
    from huggingtweets.sources import remote

    slept: list[float] = []
    monkeypatch.setattr(remote, "_sleep", slept.append)
    monkeypatch.setattr(remote, "_now", lambda: NOW)
    return slept


def params(call: Any) -> dict[str, str]:
    """The query parameters of a recorded request (`responses.Call`)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def complete_checkpoints(work: Path) -> list[int]:
    """Steps of the checkpoints a resume can use. `trainer_state.json` is written last but not atomically: seeing
    the file is not enough (a kill or Ctrl-C in the middle of writing it leaves a part), it must also parse."""
    from huggingtweets import atomic  # after the environment above is set

    states = work.glob("checkpoint-*/trainer_state.json")
    return sorted(int(p.parent.name.split("-")[1]) for p in states if atomic.read_json(p) is not None)


# ---------------------------------------------------------------------------------------------- servers (Voilà)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    # A TCP connect, not an HTTP request: a request for the page would start a kernel of its own.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Voilà exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"Voilà did not listen on port {port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def voila_server(command: list[str], port: int, env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`command` (a Voilà server) running until the block ends, listening on `port`; its output goes to `log`."""
    with open(log, "wb") as out:
        # Its own process group, so that stopping it also stops the kernels it started.
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, process, log)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
