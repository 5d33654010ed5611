"""Crash-safe file replacement, file locks, the JSON reader and file stamps (`file_stats`) shared by
every module that writes results, statistics or caches; safe with several writers, on one machine or
over a network file system."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import filelock
import psutil

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "remove_stale_temp_files",
    "STALE_TEMP_AGE_S",
    "pid_alive",
    "read_json",
    "file_lock",
    "file_stats",
]

#: Age in seconds after which a temporary file whose writer cannot be checked counts as abandoned.
STALE_TEMP_AGE_S = 24 * 3600

# `.<target>.<host>.<pid>.<random>.tmp` (the target may hold dots); the legacy name is `.<target>.<random>.tmp`.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.(?P<token>[A-Za-z0-9_]+)\.tmp")
_LEGACY_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<token>[A-Za-z0-9_]+)\.tmp")


def _host() -> str:
    "This machine's name, reduced to the characters a temporary file name allows."
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "unknown-host"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (`psutil`, on every platform).

    Args:
        pid: a process id on this machine; 0 and negative ids are never alive.

    Returns:
        False when the process does not exist or is a zombie, else True (also for another user's).

    Examples:
        >>> import os
        >>> pid_alive(os.getpid())
        True
    """
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by another user
        return True


def remove_stale_temp_files(folder: str | os.PathLike, target: str | re.Pattern) -> list[Path]:
    """Delete the temporary files in `folder` left by dead writers of `target`.

    A file `.<name>.<host>.<pid>.<random>.tmp` of this host is removed when its writer no longer runs
    (`pid_alive`); one of another host, or an older name without host and pid, once unchanged for
    `STALE_TEMP_AGE_S` seconds. Machines sharing a folder must have distinct host names.

    Args:
        folder: the folder to clean; a missing folder has nothing to remove.
        target: the file name whose temporary files are meant, or a compiled pattern that the whole
            name must match (e.g. every `data-*.bin` of a cache).

    Returns:
        The paths removed (empty when none was stale).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host, now, removed = _host(), time.time(), []
    pattern = target if isinstance(target, re.Pattern) else re.escape(target)
    for name in os.listdir(folder):
        match = _TEMP_NAME.fullmatch(name) or _LEGACY_TEMP_NAME.fullmatch(name)
        if match is None or not re.fullmatch(pattern, match["target"]):
            continue
        with contextlib.suppress(FileNotFoundError):  # another process cleaned it up first
            if match.re is _TEMP_NAME and match["host"] == host:
                dead = not pid_alive(int(match["pid"]))
            else:  # another host: only an old file counts as abandoned
                dead = now - os.stat(folder / name).st_mtime > STALE_TEMP_AGE_S
            if dead:
                os.remove(folder / name)
                removed.append(folder / name)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Replace the file `path` by what `write(file)` writes, so that a crash leaves old or new.

    `write` fills a temporary file in the same folder, which is fsynced and renamed onto `path`
    (`os.replace`); on failure it is removed and `path` is untouched. Temporary files of `path` left
    by dead writers are removed first (`remove_stale_temp_files`); with several writers the last
    rename wins. The file keeps the mode of the file it replaces (a new one gets rw-r--r--).

    Args:
        path: the file to replace or create; missing parent folders are created.
        write: called once with the temporary file (binary); what it writes becomes `path`'s content.

    Returns:
        `path`, as a `Path`.

    Raises:
        OSError: the file cannot be written (disk full, permissions, ...): an error of the same
            type naming `path` and what to do. An exception raised by `write` propagates unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent, path.name)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp makes it owner-only
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(temp_name)
        if isinstance(e, OSError):
            raise _write_error(path, e) from e
        raise
    with contextlib.suppress(OSError):  # make the rename durable; skipped where folders cannot be opened (Windows)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def _write_error(path: Path, e: OSError) -> OSError:
    "`e` (raised while writing `path`) as an error of the same type naming `path` and what to do."
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        fix = "free disk space (or raise the quota) and run again"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {path.parent} writable or choose another folder"
    else:
        fix = "fix the cause and run again"
    message = (
        f"cannot write {path}: {e.strerror or e}; the previous file, if any, is unchanged and no temporary file is left; {fix}"
    )
    try:
        return type(e)(e.errno, message) if e.errno is not None else type(e)(message)
    except TypeError:  # a subclass with its own constructor
        return OSError(e.errno, message)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write` of `text` encoded as UTF-8, written as is (no newline translation).

    Args:
        path: the file to replace or create.
        text: the new content.

    Returns:
        `path`, as a `Path`.

    Raises:
        OSError: as `atomic_write`, naming `path`.
    """
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


_NO_DEFAULT = object()
_JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
}


def read_json(
    path: str | os.PathLike,
    what: str = "file",
    fix: str = "delete it or restore it from a backup",
    expected: type | tuple[type, ...] = dict,
    required: tuple[str, ...] = (),
    default: Any = _NO_DEFAULT,
) -> Any:
    """Read the JSON value stored in `path` (UTF-8), checked to be of type `expected`.

    A missing, empty, truncated or malformed file, or one holding the wrong kind of value, raises
    an error naming the file, what is wrong with it and what to do.

    Args:
        path: the JSON file.
        what: what the file is, for messages ("run record", "experiment settings").
        fix: what the user should do about a bad file ("delete it to train that run again").
        expected: the type, or tuple of types, the stored value must have (`dict` for a JSON
            object); `true`/`false` only pass as `bool`.
        required: for objects, the keys the value must hold.
        default: returned when the file does not exist; without it, FileNotFoundError naming the file.

    Returns:
        The decoded value, or `default` when the file does not exist.

    Raises:
        FileNotFoundError: `path` does not exist and no `default` is given.
        ValueError: `path` is a folder, or the file is empty, truncated, not UTF-8, not JSON, holds
            another type than `expected` or lacks a `required` key (naming the file, fault and `fix`).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if default is not _NO_DEFAULT:
            return default
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, expected a JSON file; {fix}") from None
    fault = None
    if not data.strip():
        fault = f"is empty ({len(data)} bytes)"
    else:
        try:
            value = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            fault = f"is not UTF-8 text (byte {e.start})"
        except json.JSONDecodeError as e:
            if e.pos >= len(data.decode("utf-8").rstrip()) or e.msg.startswith("Unterminated string"):
                fault = f"is truncated (its {len(data)} bytes end inside a JSON value)"
            else:
                fault = f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
    if fault is None:
        kinds = expected if isinstance(expected, tuple) else (expected,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            wanted = " or ".join(_JSON_KINDS.get(k, k.__name__) for k in kinds)
            got = "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)
            fault = f"holds {got}, expected {wanted}"
        elif isinstance(value, dict) and (missing := [k for k in required if k not in value]):
            fault = f"lacks the key(s) {missing} (it has {sorted(value)})"
    if fault is not None:
        raise ValueError(f"{what} {path} {fault}; {fix}")
    return value


def file_lock(path: str | os.PathLike) -> filelock.FileLock:
    """An exclusive `filelock.FileLock` on the file `path`, held while its `with` block runs.

    Args:
        path: the lock file, created if missing.

    Raises:
        OSError: (on entering the block) `path` cannot be opened for writing (a read-only folder or
            mount); the caller decides what that means.
    """
    return filelock.FileLock(os.fspath(path))


def file_stats(root: str | os.PathLike, names: Iterable[str]) -> dict[str, tuple[int, int, int] | None]:
    """Each file's size, modification time and inode: what a change of its content changes too
    (grids and `StatsCallback` key hashes and saved statistics on them).

    Args:
        root: the dataset folder the names are relative to.
        names: paths relative to `root`.

    Returns:
        `{name: (size in bytes, st_mtime_ns, st_ino)}`, None for a file that does not exist.
    """
    root = Path(root)
    stats: dict[str, tuple[int, int, int] | None] = {}
    for name in set(names):
        try:
            st = os.stat(root / name)
            stats[name] = (st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stats[name] = None
    return stats
