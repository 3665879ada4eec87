"""The command line: results on good input, one clear line and exit status 2 on bad input, nothing half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import complete_checkpoints, make_posts
from huggingtweets import models
from huggingtweets.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("huggingtweets")
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """One bad input of each kind."""
    made: dict[str, Path] = {}

    def put(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        made[name] = path
        return path

    put("unknown.docx", "PK not really a document")
    put("empty.txt", "")
    put("truncated/tweets.js", 'window.YTD.tweets.part0 = [ {"tweet": {"full_text": "hello th')
    put("no-posts/data/tweets.js", "window.YTD.tweets.part0 = []")
    put("no-text-column.csv", "id,likes\n1,2\n")
    put("latin1.csv", "text\ncafé crème brûlée au soleil\n".encode("latin-1"))
    put("all-short.txt", "a b\nhi\nok then\n")
    put("too-little.txt", "\n".join(make_posts(12)))
    put("enough.txt", "\n".join(make_posts(400)))
    return made


@pytest.mark.parametrize(
    "name, words",
    [
        ("missing.csv", ["missing.csv", "not"]),
        ("unknown.docx", ["format"]),
        ("empty.txt", ["empty"]),
        ("truncated/tweets.js", ["tweets.js"]),
        ("no-posts", ["no posts"]),
        ("no-text-column.csv", ["column"]),
        ("latin1.csv", ["utf-8"]),
        ("all-short.txt", ["nothing left after cleaning"]),
        ("too-little.txt", ["characters", "6,000"]),
    ],
)
def test_bad_sources_give_one_line_and_write_nothing(capsys, home, tmp_path, files, name, words):
    out = tmp_path / "bot"
    code, _, err = run(capsys, "train", str(tmp_path / name), "--out", str(out))
    assert_one_line_error(code, err, *words)
    assert not out.exists() and not (tmp_path / ".bot.training").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "X", "--epochs", "0"], ["epochs", "positive"]),
        (["train", "X", "--learning-rate", "-1"], ["learning-rate", "positive"]),
        (["train", "X", "--compile", "maybe"], ["compile", "invalid choice"]),
        (["train", "X", "--precision", "fp8"], ["precision", "invalid choice"]),
        (["generate", "B", "-n", "0"], ["-n", "positive"]),
        (["generate", "B", "--temperature", "0"], ["temperature", "positive"]),
        (["generate", "B", "--temperature", "hot"], ["temperature", "not a number"]),
        (["demo", "--port", "99999"], ["port", "at most 65,535"]),  # bind() would raise OverflowError
        (["demo", "--port", "-5"], ["port", "positive"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_numbers_and_commands(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert_one_line_error(exit_.value.code, capsys.readouterr().err, *words)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--min-engagement-percentile", "150"], ["percentile", "between 0 and 100"]),
        (["--min-engagement-percentile", "nan"], ["percentile", "between 0 and 100"]),
        (["--seed", "-1"], ["seed", "between 0 and"]),
        (["--length-posts", "-1"], ["length posts", "0 or more"]),
    ],
)
def test_bad_settings_are_refused_before_any_source_is_read(capsys, home, monkeypatch, argv, words):
    import huggingtweets.corpus

    monkeypatch.setattr(huggingtweets.corpus, "load", lambda *a: pytest.fail("a source was read"))
    assert_one_line_error(*run(capsys, "train", "@someone", *argv)[::2], *words)


def test_missing_and_corrupt_bot_folders(capsys, tmp_path, home):
    code, _, err = run(capsys, "generate", str(tmp_path / "nobot"))
    assert_one_line_error(code, err, "does not exist")

    (tmp_path / "notabot").mkdir()
    code, _, err = run(capsys, "generate", str(tmp_path / "notabot"))
    assert_one_line_error(code, err, "not a bot folder")

    broken = tmp_path / "broken"
    broken.mkdir()
    for damaged in ("{ half", "[1, 2]"):
        (broken / "huggingtweets.json").write_text(damaged)
        code, _, err = run(capsys, "generate", str(broken))
        assert_one_line_error(code, err, "corrupt")


def test_out_never_replaces_a_folder_that_is_not_a_bot(capsys, home, files, tiny_llama, tmp_path):
    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work")
    code, _, err = run(capsys, "train", str(files["enough.txt"]), "--base-model", str(tiny_llama), "--out", str(documents))
    assert_one_line_error(code, err, "Documents", "other files")
    assert (documents / "thesis.txt").read_text() == "years of work" and not (tmp_path / ".Documents.training").exists()

    code, _, err = run(capsys, "train", str(files["enough.txt"]), "--base-model", str(tiny_llama), "--out", str(documents / "thesis.txt"))
    assert_one_line_error(code, err, "thesis.txt", "is a file")
    assert (documents / "thesis.txt").read_text() == "years of work"


def test_disk_errors_are_one_line(capsys, archive_zip, files, tiny_llama, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run(capsys, "fetch", str(archive_zip), "--out", str(blocker / "posts.jsonl"))
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"huggingtweets: error: {blocker}: a file is in the way of a folder there"
    # Training fails before it starts, not after: its checkpoint folder cannot be made there either.
    code, _, err = run(capsys, "train", str(files["enough.txt"]), "--base-model", str(tiny_llama), "--out", str(blocker / "bot"))
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err and last.startswith("huggingtweets: error:") and "a-file" in last, err
    assert "training (" not in err  # it never started


def test_a_closed_pipe_ends_quietly(archive_zip):
    # `huggingtweets fetch archive.zip | head -1`
    proc = subprocess.Popen([sys.executable, "-m", "huggingtweets", "fetch", str(archive_zip)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and first["text"]
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception ignored" not in err, err


def test_a_pipe_closed_before_the_output_is_flushed_ends_quietly(files):
    # Less output than a pipe holds: it is all still in the process's buffer when the reader has gone.
    proc = subprocess.Popen([sys.executable, "-m", "huggingtweets", "fetch", str(files["too-little.txt"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_unreachable_hub_id_fails_fast_with_advice(capsys, home, files, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    code, _, err = run(capsys, "train", str(files["enough.txt"]), "--base-model", "someone/no-such-model", "--out", str(tmp_path / "bot"))
    assert_one_line_error(code, err, "someone/no-such-model", "local model folder")
    assert not (tmp_path / "bot").exists()


def test_a_hub_download_that_drops_is_one_line(capsys, home, files, tmp_path, monkeypatch):
    import httpx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def drop(*args, **kwargs):
        raise httpx.ConnectError("connection reset by peer")

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: True)  # reachable at first, then it drops
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", drop)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", drop)
    code, _, err = run(capsys, "train", str(files["enough.txt"]), "--base-model", "someone/some-model", "--out", str(tmp_path / "bot"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "huggingtweets: error: cannot load base model 'someone/some-model' (connection reset by peer): "
        "pass a local model folder, or leave --base-model out to use the embedded default"
    )


def test_train_generate_eval_and_list(capsys, home, files, tiny_llama, tmp_path):
    bot = tmp_path / "bots" / "me"
    code, out, err = run(
        capsys, "train", str(files["enough.txt"]), "--out", str(bot), "--base-model", str(tiny_llama),
        "--method", "full", "--epochs", "2", "--learning-rate", "3e-3", "--block-size", "64", "--compile", "off", "--precision", "bf16", "--length-posts", "0",
        "--end-loss-weight", "2", "--isolate-posts", "--quiet", "--json",
    )
    assert code == 0, err
    config = json.loads((bot / "huggingtweets.json").read_text())["config"]
    assert (config["compile"], config["precision"], config["length_posts"]) == ("off", "bf16", 0)  # the flags reach the config
    assert (config["end_loss_weight"], config["isolate_posts"]) == (2.0, True)  # the framing levers too, not the defaults
    assert "training (full, bf16, 2 epochs" in err  # and the progress line says how it trains
    result = json.loads(out)
    assert result["bot"] == str(bot) and result["bot_perplexity"] < result["base_perplexity"]
    assert "| account |" in err  # the counts table is printed

    code, out, err = run(capsys, "generate", str(bot), "-n", "3", "--seed", "1", "--json")
    assert code == 0, err
    posts = json.loads(out)
    assert len(posts) == 3 and all(isinstance(p["text"], str) and p["text"] and p["copied"] in (True, False) for p in posts)

    code, out, _ = run(capsys, "generate", str(bot), "-n", "2", "--seed", "1")
    lines = out.strip().split("\n")
    assert code == 0 and "AI-generated" in lines[0] and sum(line.startswith("- ") for line in lines) == 2
    assert all(line.startswith(("- ", "  ")) for line in lines[1:])
    assert all(c.isprintable() or c in "\n\t" for c in out)

    code, out, err = run(capsys, "eval", str(bot), str(files["enough.txt"]), "-n", "4", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 4 and 0 <= report["memorisation_rate"] <= 1
    assert report["bot_perplexity"] < report["base_perplexity"]

    shutil.copytree(bot, tmp_path / "bots" / ".me.abc123.tmp")  # a save cut off before its rename
    code, out, _ = run(capsys, "bots", "--folder", str(tmp_path / "bots"), "--json")
    assert code == 0 and [b["name"] for b in json.loads(out)] == ["me"]

    # Damage after the fact: figures that cannot be read are left out; a copy check that cannot run stops generation.
    (bot / "metrics.json").write_text("{ half")
    info = json.loads((bot / "huggingtweets.json").read_text())
    info["clean"]["an_option_from_a_newer_version"] = True
    info["base_model"] = str(tmp_path / "a-deleted-bot")  # what it was trained from is gone; it has its own weights
    (bot / "huggingtweets.json").write_text(json.dumps(info))
    code, out, err = run(capsys, "eval", str(bot), str(files["enough.txt"]), "-n", "2", "--json")
    assert code == 0 and json.loads(out)["samples"] == 2, err
    assert json.loads(out)["base_perplexity"] is None and "warning: no base perplexity: base model folder" in err
    ngrams = bot / "ngrams.bin"
    ngrams.write_bytes(ngrams.read_bytes()[:-3])
    code, _, err = run(capsys, "generate", str(bot))
    assert_one_line_error(code, err, "ngrams.bin", "corrupt")


def test_ctrl_c_during_training_then_the_same_command_resumes(home, files, tiny_llama, tmp_path):
    import os
    import signal
    import time

    bot = tmp_path / "bot"
    argv = [
        sys.executable, "-m", "huggingtweets", "train", str(files["enough.txt"]), "--out", str(bot), "--base-model", str(tiny_llama),
        "--method", "full", "--epochs", "12", "--block-size", "64", "--compile", "off", "--quiet", "--json",
    ]
    env = {**os.environ, "HUGGINGTWEETS_HOME": str(home)}
    # A shell runs background jobs with SIGINT ignored, and children inherit that (CI may be such a job): give the
    # child the default disposition, as a terminal's foreground command has, so Python turns Ctrl-C into
    # KeyboardInterrupt.
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=restore)
    work = tmp_path / ".bot.training"
    deadline = time.monotonic() + 120  # a bound on waiting for a checkpoint, not a timing assertion
    while not complete_checkpoints(work) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "interrupted: run the same command again to resume from the last checkpoint"
    )
    assert not bot.exists() and complete_checkpoints(work)

    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((bot / "metrics.json").read_text())["resumed_from_step"] > 0
    assert not work.exists()  # finished: the checkpoints are gone


def test_fetch_writes_normalised_posts(capsys, archive_zip, tmp_path):
    out = tmp_path / "posts.jsonl"
    code, _, err = run(capsys, "fetch", str(archive_zip), "--out", str(out))
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2045
    assert {"text", "id", "created_at", "is_retweet", "is_reply", "likes", "reposts"} <= set(records[0])


def test_module_entry_point_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "huggingtweets", "train", str(tmp_path / "nothing.csv")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr and "nothing.csv" in done.stderr


def test_demo_on_a_port_in_use_is_one_line(capsys, monkeypatch):
    import socket

    from huggingtweets import demo

    monkeypatch.setattr(demo, "serve", lambda argv: pytest.fail("Voilà was started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(*run(capsys, "demo", "--port", str(port), "--no-browser")[::2], f"port {port} is in use", "--port")
    # Free again: Voilà is started, on that port and no other.
    started = []
    monkeypatch.setattr(demo, "serve", started.append)
    assert run(capsys, "demo", "--port", str(port), "--no-browser")[0] == 0
    assert f"--port={port}" in started[0] and "--Voila.port_retries=0" in started[0]
