"""A fingerprint of the data an experiment reads, the same for identical data on any host: each
file's relative name, size and SHA-256 (never inodes, times or absolute paths). The experiment
records it in `OUT/experiment.json` and keys saved statistics on it, so changed data is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from .._io import file_stats  # the library's stat helper; named here too, where the grid uses it

__all__ = ["files_fingerprint", "file_stats", "describe_changes"]


def files_fingerprint(root: str | os.PathLike, names: Iterable[str]) -> dict:
    """Fingerprint of the files `names` under `root`.

    Args:
        root: the dataset folder the names are relative to.
        names: paths relative to `root`, '/'-separated (duplicates are counted once).

    Returns:
        ``{"digest": hex SHA-256 of the sorted list, "files": {name: [size in bytes, hex SHA-256]}}``.

    Raises:
        FileNotFoundError: a listed file does not exist (the message names it).
    """
    root = Path(root)
    files = {}
    for name in sorted(set(names)):
        path = root / name
        try:
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is listed but does not exist; restore it or remove its row") from None
        files[name] = [path.stat().st_size, digest]
    listing = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return {"digest": hashlib.sha256(listing).hexdigest(), "files": files}


def describe_changes(old: dict, new: dict, limit: int = 5) -> str:
    """What differs between two fingerprints' file lists, naming files.

    Args:
        old: the earlier fingerprint (`files_fingerprint`; only its "files" are read).
        new: the later fingerprint.
        limit: the most file names listed per kind of change; the rest are counted ("and 3 more").

    Returns:
        One line, e.g. "changed content: audio/1-100-A-0.wav; removed: audio/1-101-A-0.wav", or
            "no file differs".
    """
    old_files, new_files = old.get("files", {}), new.get("files", {})
    parts = []
    for what, names in (
        ("changed content", [n for n in new_files if n in old_files and new_files[n] != old_files[n]]),
        ("added", [n for n in new_files if n not in old_files]),
        ("removed", [n for n in old_files if n not in new_files]),
    ):
        if names:
            more = f" and {len(names) - limit} more" if len(names) > limit else ""
            parts.append(f"{what}: {', '.join(names[:limit])}{more}")
    return "; ".join(parts) or "no file differs"
