"""Atomic writes: a failed write leaves the old file or folder as it was and no temporary leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from huggingtweets import atomic


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path: Path):
    target = tmp_path / "bot"
    with atomic.folder(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic.folder(target) as tmp:
            (tmp / "weights").write_text("half of v2")
            raise RuntimeError("killed while saving")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["bot"]


def test_text_is_replaced_whole(tmp_path: Path):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"n": 1})
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert path.stat().st_mode & 0o044  # readable like any other file, not mkstemp's 0600


def test_a_crash_between_the_two_renames_is_undone(tmp_path: Path):
    target = tmp_path / "bot"
    with atomic.folder(target) as tmp:
        (tmp / "weights").write_text("v1")
    # Killed after moving the old folder aside, before moving the new one in: only the old copy is complete.
    target.rename(tmp_path / ".bot.old-4242")
    atomic.recover(target)
    assert (target / "weights").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["bot"]
    # Killed after both renames, before removing the old folder: a leftover, gone at the next save.
    (tmp_path / ".bot.old-4343").mkdir()
    with atomic.folder(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["bot"]
