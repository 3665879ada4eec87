"""`huggingtweets demo`: the app in the browser, served by Voilà from notebooks/huggingtweets-demo.ipynb.

    huggingtweets demo                         # http://localhost:8866, opens a browser
    huggingtweets demo --port 9000 --no-browser
    huggingtweets demo --max-upload-mb 20       # the largest upload a visitor may send (default 100)
    make demo

Voilà runs the notebook and shows only its outputs (the app), not its code. It is an optional
dependency: `pip install "huggingtweets[app]"` (or `make demo` in a clone). The notebook is the repository's
notebooks/huggingtweets-demo.ipynb; the package holds a link to it, which wheels and sdists turn into a
copy, so an installed package serves the same notebook.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from pathlib import Path

from .environment import MAX_UPLOAD_VARIABLE, max_upload_bytes
from .errors import HuggingTweetsError

NOTEBOOK = "huggingtweets-demo.ipynb"


def websocket_max_message_bytes() -> int:
    """The server's bound on one websocket message, which is how uploaded files reach the kernel (all files chosen
    at once in one message). Tornado closes the connection on a larger one (code 1009) before it reaches the
    kernel: the app's own limit (environment.max_upload_bytes) plus room for the message's framing."""
    limit = max_upload_bytes()
    return limit + max(2**20, limit // 4)


def find_notebook() -> Path:
    """The demo notebook: in the repository next to the package (a clone, `pip install -e .`), or shipped inside it
    (an installed wheel, where the package's link to it became a copy)."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "notebooks" / NOTEBOOK, package / NOTEBOOK):
        # A checkout without symbolic links (core.symlinks=false) holds the link as a text file naming its target.
        if candidate.is_file() and candidate.read_bytes()[:1] == b"{":
            return candidate
    raise HuggingTweetsError(
        f"the demo notebook {NOTEBOOK} is missing from the installed package: reinstall it (pip install --force-reinstall "
        "'huggingtweets[app]') or run the demo from a clone of the repository (make demo)"
    )


def voila_args(notebook: Path, port: int = 8866, open_browser: bool = True, ip: str | None = None) -> list[str]:
    """Voilà's command-line arguments for serving `notebook`."""
    args = [str(notebook), f"--port={port}", "--Voila.port_retries=0", "--theme=light"]  # this port or none
    if ip:
        args.append(f"--Voila.ip={ip}")
    if not open_browser:
        args.append("--no-browser")
    return args


def command(notebook: Path, port: int = 8866, open_browser: bool = True, ip: str | None = None) -> list[str]:
    """The same server as a separate process (the browser test starts exactly this)."""
    return [sys.executable, "-m", "huggingtweets.demo", *voila_args(notebook, port, open_browser, ip)]


def main(args: argparse.Namespace) -> int:
    """Serve the demo until Ctrl-C (Voilà runs in this process, so signals reach it directly)."""
    if importlib.util.find_spec("voila") is None:
        raise HuggingTweetsError("the demo needs Voilà, which is not installed: pip install 'huggingtweets[app]'")
    notebook = find_notebook()
    port = int(getattr(args, "port", 8866))
    check_port(port)
    if getattr(args, "max_upload_mb", None) is not None:
        os.environ[MAX_UPLOAD_VARIABLE] = str(args.max_upload_mb)  # the kernels Voilà starts inherit it
    print(f"huggingtweets: serving the demo at http://localhost:{port} (Ctrl-C stops it)", file=sys.stderr)
    serve(voila_args(notebook, port=port, open_browser=not getattr(args, "no_browser", False)))
    return 0


def check_port(port: int) -> None:
    """A one-line error when `port` is taken. Voilà would move to another port on its own, and the address
    printed above (and opened by hand with --no-browser) would be another server's."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does: a port in TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise HuggingTweetsError(f"port {port} is in use (another demo or Jupyter server?): stop it, or pass --port with another number") from None


def serve(argv: list[str]) -> None:
    """Voilà's own command line (`voila NOTEBOOK [options]`), with the websocket message limit of the upload limit."""
    from voila.app import Voila

    # Set here rather than as --Voila.tornado_settings: on the command line a dict's values arrive as strings.
    Voila.launch_instance(argv, tornado_settings={"websocket_max_message_size": websocket_max_message_bytes()})


if __name__ == "__main__":
    serve(sys.argv[1:])
