"""Atomic file writes: a file is either the old one or the complete new one, never half
written.

Temporary files and folders are made beside their target and named
``.<target name>.<host>-<pid>-<random>.tmp`` (folders ``.tmpdir``, a folder being replaced
``.olddir``). A process killed in
the middle of a write leaves its temporary behind; the next write to the same target
removes the ones left by dead processes of this machine (and only those: a name of another
form, another machine or a live process is never touched).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "atomic_write_text", "remove_stale_temporaries"]

_FILE_SUFFIX, _DIR_SUFFIX, _OLD_SUFFIX = ".tmp", ".tmpdir", ".olddir"


def _host() -> str:
    """This machine's name, reduced to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temp_name(target: Path, suffix: str) -> str:
    return f".{target.name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders that killed writes to ``path`` left beside it.

    Only names of :mod:`optiwise._io`'s own form for this target, made on this machine by a
    process that no longer exists, are removed. Returns the removed paths.
    """
    target = Path(path)
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.{re.escape(_host())}-(\d+)-[0-9a-f]{{8}}"
        rf"({re.escape(_FILE_SUFFIX)}|{re.escape(_DIR_SUFFIX)}|{re.escape(_OLD_SUFFIX)})"
    )
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            if m.group(2) == _OLD_SUFFIX and not target.exists():
                continue  # killed between the two renames: the only copy of the old folder
            if m.group(2) != _FILE_SUFFIX and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif m.group(2) == _FILE_SUFFIX and not entry.is_dir():
                entry.unlink()
            else:
                continue
        except FileNotFoundError:  # removed by another writer meanwhile
            continue
        removed.append(entry)
    return removed


def _existing_mode(target: Path) -> int | None:
    """The permission bits of ``target``, None when there is no such file."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over
    ``path``, on failure remove it and leave ``path`` untouched.

    The file gets the mode a plain write would give it: an existing file's mode is kept, a
    new file gets ``0666`` less the umask. Temporaries that killed writes to ``path`` left
    behind are removed first (see :func:`remove_stale_temporaries`).
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a directory")
    parent = target.parent
    if mkdir:
        parent.mkdir(parents=True, exist_ok=True)
    elif not parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {parent} does not exist")
    remove_stale_temporaries(target)
    keep_mode = _existing_mode(target)
    tmp = parent / _temp_name(target, _FILE_SUFFIX)
    # O_EXCL: never follow or reuse an existing name; the kernel applies the umask to 0o666.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path`` to fill; on success move it into place
    as ``path`` (replacing an existing folder there as a whole), on failure remove it and
    leave ``path`` untouched.  Files in the folder are made readable (0644, the folder
    0755): a report is for reading.

    A ``path`` that is an existing file raises ``NotADirectoryError`` before anything is
    written. Temporary folders that killed writes to ``path`` left behind are removed first.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"cannot write folder {target}: it is a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.parent / _temp_name(target, _DIR_SUFFIX)
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        for item in tmp.rglob("*"):
            item.chmod(0o755 if item.is_dir() else 0o644)
        tmp.chmod(0o755)
        if target.exists():
            old = target.parent / _temp_name(target, _OLD_SUFFIX)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
