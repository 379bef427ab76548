from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optiwise import _io
from optiwise._io import atomic_dir, atomic_path, atomic_write_text, remove_stale_temporaries


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_refuses_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError), atomic_path(tmp_path):
        pass


def test_atomic_dir_replaces_a_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        (tmp / "sub").mkdir()
        atomic_write_text(tmp / "sub" / "new.txt", "new")
        assert (target / "old.txt").exists()  # untouched until the block succeeds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["sub", "sub/new.txt"]
    assert (target / "sub" / "new.txt").stat().st_mode & 0o777 == 0o644
    assert target.stat().st_mode & 0o777 == 0o755


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash mid-report")
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_atomic_dir_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="it is a file"), atomic_dir(target):
        pass
    assert target.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["f"]


def _fake_temp(target: Path, pid: int, suffix: str = ".tmp", host: str | None = None) -> Path:
    host = host if host is not None else _io._host()
    return target.parent / f".{target.name}.{host}-{pid}-0123abcd{suffix}"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_write_removes_only_temporaries_of_dead_writers(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    dead = _dead_pid()
    stale = _fake_temp(target, dead)
    stale.write_bytes(b"half a save")
    stale_dir = _fake_temp(target, dead, ".tmpdir")
    stale_dir.mkdir()
    (stale_dir / "x").write_text("x")
    keep = [
        _fake_temp(target, os.getppid()),  # a live writer
        _fake_temp(target, dead, host="elsewhere"),  # another machine's, on a shared disk
        _fake_temp(tmp_path / "other.pt", dead),  # another target's
        tmp_path / ".ckpt.pt.abc123.tmp",  # not our naming
    ]
    for path in keep:
        path.write_bytes(b"keep")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and not stale_dir.exists()
    assert all(p.read_bytes() == b"keep" for p in keep)


def test_remove_stale_keeps_an_old_folder_when_its_target_is_gone(tmp_path: Path) -> None:
    target = tmp_path / "report"
    old = _fake_temp(target, _dead_pid(), ".olddir")
    old.mkdir()
    assert remove_stale_temporaries(target) == [] and old.is_dir()
    target.mkdir()
    assert remove_stale_temporaries(target) == [old] and not old.exists()


def test_new_files_follow_the_umask_and_existing_ones_keep_their_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
        script = tmp_path / "run.sh"
        script.write_text("old")
        script.chmod(0o755)
        atomic_write_text(script, "new")
        assert script.stat().st_mode & 0o777 == 0o755 and script.read_text() == "new"
    finally:
        os.umask(old)
