"""The package as `pip install` leaves it: a wheel built from this tree, installed outside the repository.

`huggingtweets demo` must serve the demo notebook from an installed package too, not only from a clone: the
package holds a link to notebooks/huggingtweets-demo.ipynb, and building a wheel must turn it into the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, voila_server

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "huggingtweets-demo.ipynb"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the package as a wheel of this tree installs it (dependencies are the test venv's)."""
    folder = tmp_path_factory.mktemp("installed")
    source, wheels, target = folder / "source", folder / "wheels", folder / "site"
    # A copy without earlier build output (build/, *.egg-info), which setuptools would reuse; links stay links.
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "test-artifacts", "__pycache__", "bots")
    shutil.copytree(REPO, source, symlinks=True, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True, cwd=folder)
    (wheel,) = wheels.glob("huggingtweets-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, cwd=folder)
    return target


def run_installed(installed: Path, code: str) -> str:
    """`code` run by a Python that imports huggingtweets from `installed` (not the clone), in a folder outside it."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=installed.parent, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_installed_package_holds_the_demo_notebook_itself(installed: Path) -> None:
    found = Path(run_installed(installed, "from huggingtweets import demo; print(demo.find_notebook())"))
    assert found.is_relative_to(installed) and not found.is_symlink()
    assert found.read_bytes() == NOTEBOOK.read_bytes()


def test_a_link_checked_out_as_a_text_file_is_not_taken_for_the_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingtweets import demo
    from huggingtweets.errors import HuggingTweetsError

    package = tmp_path / "huggingtweets"
    package.mkdir()
    monkeypatch.setattr(demo, "__file__", str(package / "demo.py"))
    (package / demo.NOTEBOOK).write_text("../notebooks/huggingtweets-demo.ipynb")  # git without symlinks writes this
    with pytest.raises(HuggingTweetsError, match="missing from the installed package"):
        demo.find_notebook()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / demo.NOTEBOOK).write_bytes(NOTEBOOK.read_bytes())
    assert demo.find_notebook() == tmp_path / "notebooks" / demo.NOTEBOOK


@pytest.mark.browser
def test_huggingtweets_demo_serves_the_app_from_an_installed_package(installed: Path, tiny_llama: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "HUGGINGTWEETS_HOME": str(tmp_path / "home"),
        "HUGGINGTWEETS_BASE_MODEL": str(tiny_llama),
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-m", "huggingtweets", "demo", "--port", str(port), "--no-browser"]
    with voila_server(command, port, env=env, cwd=tmp_path, log=tmp_path / "voila.log"):
        # Voilà runs the notebook for the request and sends the page when its cells have run: the app's widget is in it.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120) as response:
            page = response.read().decode()
    assert "application/vnd.jupyter.widget-view+json" in page
    assert "There was an error when executing cell" not in page  # Voilà's message for a cell that raised
