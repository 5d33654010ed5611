"""The decoded-audio cache as a whole, for `fastspecnorm cache`: its folders and their size on disk
(`cache_folders`), and emptying them (`clear_cache`). Only folders in the cache's own layout are
listed or touched: a cache root set by mistake to a folder holding other files keeps them.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .cache import AudioCache, default_cache_dir
from .io import AUDIO_DTYPES

__all__ = ["CacheFolder", "cache_folders", "clear_cache", "format_bytes"]

_SETTINGS = re.compile(r"sr(?P<rate>\d+)-(?P<channels>mono|multi)-(?P<dtype>\w+)")


@dataclass(frozen=True)
class CacheFolder:
    """One cache folder: the decoded clips of one source folder at one sample rate.

    Attributes:
        path: the folder, `<cache root>/<source folder>-<hash>/sr<rate>-<mono|multi>-<dtype>`.
        source: its source folder's tag, `<parent>_<name>-<hash of the absolute path>`.
        sample_rate: the rate clips are stored at, in Hz.
        mono: clips are downmixed to one channel.
        dtype: the storage type ("auto", "int16", "float16", "float32").
        nbytes: the size of its files on disk, in bytes.
    """

    path: Path
    source: str
    sample_rate: int
    mono: bool
    dtype: str
    nbytes: int


def cache_folders(cache_dir: str | os.PathLike | None = None) -> list[CacheFolder]:
    """The cache folders under the cache root, sorted by path.

    Args:
        cache_dir: the cache root; None: `default_cache_dir()` (`$FASTSPECNORM_CACHE`, else the user
            cache folder, `~/.cache/fastspecnorm` on Linux).

    Returns:
        One `CacheFolder` per folder in the cache's layout; empty when the root does not exist or the
            default cache is off.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if root is None or not root.is_dir():
        return []
    found = []
    for folder in sorted(root.glob("*/sr*-*-*")):
        settings = _SETTINGS.fullmatch(folder.name)
        if not folder.is_dir() or settings is None or settings["dtype"] not in AUDIO_DTYPES:
            continue
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        found.append(CacheFolder(folder, folder.parent.name, int(settings["rate"]), settings["channels"] == "mono",
                                 settings["dtype"], size))  # fmt: skip
    return found


def clear_cache(cache_dir: str | os.PathLike | None = None) -> tuple[int, int]:
    """Empty every cache folder under the cache root (`AudioCache.clear`: under the folder's lock, so a
    process building it finishes first), then remove the folders left empty. Processes reading a cleared
    cache decode from the source files; the next loaders rebuild it.

    Args:
        cache_dir: the cache root; None: `default_cache_dir()`.

    Returns:
        `(folders, nbytes)`: how many cache folders were cleared and the bytes their files took.

    Raises:
        PermissionError: a cache folder is read-only (naming it).
    """
    folders = cache_folders(cache_dir)
    for f in folders:
        # Its source folder only names entries: clear() deletes the index and data files whatever they name.
        AudioCache(f.path, f.sample_rate, f.path, mono=f.mono, dtype=f.dtype, verify=False).clear()
        with contextlib.suppress(OSError):  # left in place when anything else is in the folder
            (f.path / ".lock").unlink()
            f.path.rmdir()
            f.path.parent.rmdir()
    return len(folders), sum(f.nbytes for f in folders)


def format_bytes(nbytes: int) -> str:
    """A size for people: "0 B", "512 B", "3.4 MB", "1.2 GB" (powers of 1000, as `du --si`).

    Args:
        nbytes: the size in bytes.

    Returns:
        The size with its unit.

    Examples:
        >>> format_bytes(169_300_000)
        '169.3 MB'
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"
