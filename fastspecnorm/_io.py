"""Crash-safe file replacement, shared by every module that writes results, statistics or caches.

Several processes may write into one folder at once (experiment workers sharing an output folder,
DataLoaders sharing an audio cache, on one machine or on several over a network file system). Each
write goes to a temporary file named after its writer, `.<name>.<host>.<pid>.<random>.tmp`, so that
clean-up can tell a file left by a killed process from one a live process is still writing:

- same host, writer's pid no longer running: left by a dead process, removed;
- same host, writer alive: never touched;
- another host (whose processes cannot be seen from here), or a name without host and pid (written
  by an older version): removed once unchanged for `STALE_TEMP_AGE_S` seconds (one day); no write
  takes that long.

A dead writer's pid may be reused by an unrelated live process: its file then waits until that
process ends, which costs disk space only. Machines sharing a folder must have distinct host names.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "remove_stale_temp_files", "STALE_TEMP_AGE_S"]

#: Age in seconds after which a temporary file whose writer cannot be checked (another host, or an
#: older name without host and pid) counts as left by a dead process.
STALE_TEMP_AGE_S = 24 * 3600

# `.<target>.<host>.<pid>.<random>.tmp`: host, pid and random part hold no dots, so the target is
# everything before them (it may hold dots). The legacy name is `.<target>.<random>.tmp`.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.(?P<token>[A-Za-z0-9_]+)\.tmp")
_LEGACY_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<token>[A-Za-z0-9_]+)\.tmp")


def _host() -> str:
    "This machine's name, reduced to the characters a temporary file name allows."
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "unknown-host"


def _pid_alive(pid: int) -> bool | None:
    "Whether process `pid` runs on this machine; None where that cannot be asked (not POSIX)."
    if os.name != "posix":  # on Windows os.kill(pid, 0) would terminate the process
        return None
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _writer_is_dead(folder: Path, name: str, match: re.Match, host: str, now: float) -> bool:
    "True when the temporary file `name` in `folder` was left by a process that no longer writes it."
    if match.re is _TEMP_NAME and match["host"] == host:
        alive = _pid_alive(int(match["pid"]))
        if alive is not None:
            return not alive
    try:  # another host, or liveness unknown: only an old file counts as abandoned
        return now - os.stat(folder / name).st_mtime > STALE_TEMP_AGE_S
    except FileNotFoundError:
        return False


def remove_stale_temp_files(folder: str | os.PathLike, target: str | re.Pattern) -> list[Path]:
    """Delete temporary files in `folder` left by dead writers of `target` (see the module docstring
    for the rule; a live writer's file is never removed). `target` is a file name, or a compiled
    pattern that the whole name must match (e.g. every `data-*.bin` of a cache). Returns the removed
    paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host, now, removed = _host(), time.time(), []
    for name in os.listdir(folder):
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        match = _TEMP_NAME.fullmatch(name) or _LEGACY_TEMP_NAME.fullmatch(name)
        if match is None:
            continue
        wanted = target.fullmatch(match["target"]) if isinstance(target, re.Pattern) else match["target"] == target
        if wanted and _writer_is_dead(folder, name, match, host, now):
            try:
                os.remove(folder / name)
                removed.append(folder / name)
            except FileNotFoundError:  # another process cleaned it up first
                pass
    return removed


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

    `write` fills a temporary file in the same folder (`.<name>.<host>.<pid>.<random>.tmp`), which is
    flushed, fsynced and renamed onto `path` with `os.replace` (atomic on POSIX and Windows); the
    folder is then fsynced. If anything fails before the rename, the temporary file is removed and
    `path` is untouched. Temporary files of `path` left by dead writers are removed first (see the
    module docstring); several processes may write `path` at once, the last rename wins.
    The file keeps the mode of the file it replaces (a new one gets rw-r--r--).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent, path.name)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
