"""Crash-safe file replacement, shared by every module that writes results, statistics or caches."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text"]


def _temp_prefix_suffix(path: Path) -> tuple[str, str]:
    "The name pattern `.<name>.<random>.tmp` of temporary files written for `path`."
    return f".{path.name}.", ".tmp"


def _remove_stale_temp_files(path: Path) -> None:
    """Delete temporary files left next to `path` by a process killed mid-write: such a file was
    never renamed onto `path`, so it holds nothing `path` lacks. One process writes a file at a time."""
    prefix, suffix = _temp_prefix_suffix(path)
    folder = path.parent
    if not folder.is_dir():
        return
    for name in os.listdir(folder):
        if name.startswith(prefix) and name.endswith(suffix):
            try:
                os.remove(folder / name)
            except FileNotFoundError:
                pass


def _fsync_directory(folder: Path) -> None:
    "Make a rename inside `folder` durable; skipped where directories cannot be opened (Windows)."
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Replace the file `path` by what `write(file)` writes, so that a crash leaves old or new.

    `write` fills a temporary file in the same folder (`.<name>.<random>.tmp`), which is flushed,
    fsynced and renamed onto `path` with `os.replace` (atomic on POSIX and Windows); the folder is
    then fsynced. If anything fails before the rename, the temporary file is removed and `path` is
    untouched; temporary files left by a killed process are removed by the next write to `path`.
    The file keeps the mode of the file it replaces (a new one gets rw-r--r--).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    prefix, suffix = _temp_prefix_suffix(path)
    fd, temp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp makes it owner-only
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.remove(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    "`atomic_write` of `text` encoded as UTF-8, written as is (no newline translation)."
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
