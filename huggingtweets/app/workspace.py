"""One visitor's folder: the files they upload and the bots they train in the app.

Voilà starts a kernel, and so an `AppState`, for every page it serves. Each gets a workspace of its own under
`~/.huggingtweets/sessions/<random id>/`:

    uploads/   files uploaded in this session; deleted when the session ends (the kernel exits)
    bots/      bots trained in this session, with the checkpoints of a stopped run; kept

So two visitors of one server never see each other's uploads or bots, and two who train on the same account do
not write one bot folder. The bots trained with the command line (`~/.huggingtweets/bots`, the server owner's)
are offered to every session to generate from or to continue; continuing one saves the result in the session.
"""

from __future__ import annotations

import secrets
import shutil
import time
import weakref
from pathlib import Path

from .. import paths

STALE_SECONDS = 24 * 3600
"""Uploads of a session untouched this long are deleted when another session starts: its kernel was killed
before it could delete them itself."""


class Workspace:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or paths.sessions_dir()
        prune(self.root)
        # 64 random bits: a folder name no other session can guess or collide with.
        self.folder = self.root / secrets.token_hex(8)
        self.uploads = self.folder / "uploads"
        self.bots = self.folder / "bots"
        # At the end of the session, or at the latest when the kernel exits (finalize also runs at exit).
        self._cleanup = weakref.finalize(self, _remove_uploads, self.folder)

    def close(self) -> None:
        """Delete this session's uploads now (and the session folder, if it holds no bot)."""
        self._cleanup()


def _remove_uploads(folder: Path) -> None:
    shutil.rmtree(folder / "uploads", ignore_errors=True)
    try:
        folder.rmdir()  # only when empty: a session that trained a bot keeps it
    except OSError:
        pass


def prune(root: Path, older_than: float = STALE_SECONDS) -> None:
    """Delete the uploads of sessions whose uploads folder has not changed in `older_than` seconds."""
    if not root.is_dir():
        return
    cutoff = time.time() - older_than
    for folder in root.iterdir():
        uploads = folder / "uploads"
        try:
            stale = uploads.is_dir() and uploads.stat().st_mtime < cutoff
        except OSError:
            continue
        if stale:
            _remove_uploads(folder)
