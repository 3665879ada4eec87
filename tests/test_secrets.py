"""No secret from the environment ends up anywhere a run leaves things (issue 23).

Fake values of every secret the tools read (X_BEARER_TOKEN, TWITTER_BEARER_TOKEN, WANDB_API_KEY, HF_TOKEN) are planted,
then real flows run through the command line, in this process: train (with W&B, offline), fetch @handle against the X
API as recorded by `responses` (a success and a 401), generate, eval, bots, an unexpected exception, and the tiny
benchmark. Afterwards every file under the test folder (home, bot folder, training work folder, W&B's offline runs,
the hub cache, temporary files), what was printed (file descriptors 1 and 2) and every log record are searched for each
value, as it is and base64- or URL-encoded. Each search first proves that it finds a value written on purpose.
"""

from __future__ import annotations

import argparse
import base64
import logging
import secrets
import tempfile
import traceback
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import responses

from conftest import make_posts
from huggingtweets.cli import main

SECRET_VARIABLES = ("X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN", "WANDB_API_KEY", "HF_TOKEN")
API = "https://api.twitter.com/2"


def planted_value(name: str) -> str:
    # Distinctive, and with characters that URL-quoting changes (X's bearer tokens do carry %, + and =).
    return f"{name.lower()}-{secrets.token_hex(10)}+{secrets.token_hex(6)}=%3D"


def encodings(value: str) -> set[bytes]:
    """`value` as it could show up in a file: as it is, URL-quoted, and inside base64 at any of the three alignments
    (the part of the encoding that does not depend on what comes before or after it)."""
    raw = value.encode()
    found = {raw, quote(value, safe="").encode(), quote_plus(value).encode()}
    for codec in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            encoded = codec(b"\0" * shift + raw)
            found.add(encoded[4 if shift else 0 : -4])  # the first group holds the shift, the last one the padding
    return found


def leaks(planted: dict[str, str], texts: Iterable[tuple[str, bytes]]) -> list[str]:
    forms = {name: encodings(value) for name, value in planted.items()}
    return [f"{name} in {where}" for where, data in texts for name, found in forms.items() if any(f in data for f in found)]


def files_under(*roots: Path) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for root in roots for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]


def assert_nothing_leaked(planted: dict[str, str], roots: list[Path], extra: list[tuple[str, bytes]]) -> None:
    # The search proves itself first: a value written on purpose, in each form, is found where the rest is searched.
    probe = roots[0] / "probe-written-on-purpose.bin"
    for name, value in planted.items():
        for form in encodings(value):
            probe.write_bytes(b"some text before " + form + b" and after")
            assert f"{name} in {probe}" in leaks(planted, files_under(*roots)), form
    probe.write_bytes(base64.b64encode(b"Authorization: Bearer " + planted["X_BEARER_TOKEN"].encode() + b"\r\n"))
    assert f"X_BEARER_TOKEN in {probe}" in leaks(planted, files_under(*roots))
    probe.unlink()
    assert leaks(planted, [("a probe", planted["HF_TOKEN"].encode())]) == ["HF_TOKEN in a probe"]

    assert leaks(planted, files_under(*roots) + extra) == []


@pytest.fixture()
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {name: planted_value(name) for name in SECRET_VARIABLES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # Everything the libraries keep on disk goes under the test folder, where it is searched.
    monkeypatch.setenv("HUGGINGTWEETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for variable in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb" / variable.lower()))
        (tmp_path / "wandb" / variable.lower()).mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return values


def printed(capfd: pytest.CaptureFixture[str], outputs: list[str]) -> pytest.CaptureResult[str]:
    """What was printed since the last call, kept in `outputs` to be searched with the rest."""
    out = capfd.readouterr()
    outputs += [out.out, out.err]
    return out


def captured(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, outputs: list[str]) -> list[tuple[str, bytes]]:
    printed(capfd, outputs)
    records = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    return [("what was printed", "".join(outputs).encode()), ("log records", records.encode())]


def cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as e:
        return int(e.code or 0)


def tweet(n: int) -> dict:
    return {"id": str(1_000_000 + n), "text": f"{' '.join(make_posts(1, seed=n))} {n}", "created_at": f"2026-01-01T00:00:{n:02d}.000Z",
            "edit_history_tweet_ids": [str(1_000_000 + n)]}


def test_no_planted_secret_shows_anywhere_after_every_command(tmp_path, planted, tiny_llama, monkeypatch, capfd, caplog, clock):
    caplog.set_level(logging.DEBUG)  # tweepy logs each request's headers at DEBUG: the widest net
    posts = tmp_path / "posts.txt"
    posts.write_text("\n".join(make_posts(300)) + "\n", encoding="utf-8")
    bot = tmp_path / "bots" / "me"
    outputs: list[str] = []

    # Training, with W&B: its key is set, so it would go online; this machine cannot, and the user's WANDB_MODE is kept.
    monkeypatch.setenv("WANDB_MODE", "offline")
    train = ["train", str(posts), "--out", str(bot), "--base-model", str(tiny_llama), "--method", "lora", "--wandb"]
    assert cli(*train, "--max-steps", "2", "--block-size", "32", "--compile", "off", "--quiet", "--json") == 0
    assert (bot / "huggingtweets.json").is_file()
    assert list((tmp_path / "wandb").rglob("offline-run-*")), "W&B logged nothing, so its files were not searched"

    assert cli("generate", str(bot), "-n", "2", "--seed", "0", "--max-new-tokens", "8", "--json") == 0
    assert cli("eval", str(bot), str(posts), "-n", "2", "--json") == 0
    assert cli("bots", "--folder", str(bot.parent), "--json") == 0

    # Fetching @handle from X: the token is sent (so it was really there to leak), then a 401 refuses it in one line.
    monkeypatch.delenv("X_BEARER_TOKEN")  # the older name is read too
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        api.get(f"{API}/users/by/username/jack", json={"data": {"id": "12", "name": "jack", "username": "jack"}})
        api.get(f"{API}/users/12/tweets", json={"data": [tweet(n) for n in range(9, 0, -1)], "meta": {"result_count": 9}})
        assert cli("fetch", "@jack", "--out", str(tmp_path / "jack.jsonl")) == 0
        assert api.calls[0].request.headers["Authorization"] == f"Bearer {planted['TWITTER_BEARER_TOKEN']}"
    monkeypatch.setenv("X_BEARER_TOKEN", planted["X_BEARER_TOKEN"])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        api.get(f"{API}/users/by/username/jack", json={"title": "Unauthorized", "status": 401, "detail": "Unauthorized"}, status=401)
        assert cli("fetch", "@jack", "--refresh") == 2
        assert api.calls[0].request.headers["Authorization"] == f"Bearer {planted['X_BEARER_TOKEN']}"
    refusal = printed(capfd, outputs).err.strip().splitlines()[-1]
    assert refusal.startswith("huggingtweets: error: X rejected the bearer token"), refusal

    # An unexpected exception on the way: its whole traceback, as a user would paste it into an issue.
    with responses.RequestsMock() as api:
        api.get(f"{API}/users/by/username/jack", body=RuntimeError("a failure nobody planned for"))
        try:
            cli("fetch", "@jack", "--refresh", "--no-wait")
        except Exception:  # noqa: BLE001 - whatever it is, its text is what is searched
            outputs.append(traceback.format_exc())

    roots = [tmp_path]  # home, the bot and its .me.training folder, wandb, hf, tmp and the inputs all lie under it
    assert {p.name for p in tmp_path.iterdir()} >= {"home", "bots", "wandb", "tmp"}  # hf: nothing from the hub
    assert_nothing_leaked(planted, roots, captured(capfd, caplog, outputs))


def test_the_tiny_benchmark_keeps_no_secret(tmp_path, planted, tiny_llama, monkeypatch, capfd, caplog):
    import huggingtweets.bench as bench
    from test_bench import tiny_options

    caplog.set_level(logging.DEBUG)
    posts = tmp_path / "posts.txt"
    posts.write_text("\n".join(make_posts(400)) + "\n", encoding="utf-8")
    monkeypatch.setattr(bench, "options_from_args", lambda args: tiny_options(tiny_llama, posts))
    out = tmp_path / "out" / "bench.json"
    # What `huggingtweets bench --quick --json OUT` runs, on the tiny model (a failed section still writes its report).
    bench.main(argparse.Namespace(data=str(posts), base_model=str(tiny_llama), quick=True, json_out=str(out)))
    assert out.is_file()
    assert_nothing_leaked(planted, [tmp_path], captured(capfd, caplog, []))
