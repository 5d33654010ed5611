"""`AudioCache`: every audio file decoded, downmixed and resampled once, then read from one data file
per folder and settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch
from torch import Tensor

from .._io import atomic_write, atomic_write_text, file_lock, read_json, remove_stale_temp_files
from .io import (
    AUDIO_DTYPES,
    STORAGE_DTYPES,
    from_storage,
    is_audio_file,
    quantize_waveform,
    source_format,
    storage_dtype,
    to_storage,
    warn_upsampling,
)
from .tensors import AudioTensor

__all__ = ["AudioCache", "CacheEntry", "default_cache_dir", "CACHE_ENV", "CACHE_FORMAT"]

CACHE_ENV = "FASTSPECNORM_CACHE"
"""The environment variable naming the default cache folder; "off" (or 0, false, no, none) turns the default cache off."""
CACHE_FORMAT = "fastspecnorm.audiocache/2"
"""The format in each cache's index header; an index of another format is ignored and the cache rebuilt."""
_DATA_NAME = re.compile(r"data-[0-9a-f]+\.bin")
_ALIGN = 8  # each clip starts at a multiple of 8 bytes, so every storage type is read aligned
_PER_PROCESS = ("_data", "_data_failed", "_read_lock", "_verified", "_warned")  # never pickled


def default_cache_dir() -> Path | None:
    """The default cache folder: `$FASTSPECNORM_CACHE`, else the platform's user cache folder (`platformdirs`:
    `$XDG_CACHE_HOME/fastspecnorm` or `~/.cache/fastspecnorm` on Linux); None when `FASTSPECNORM_CACHE`
    is "off" (or 0, false, no, none): the default cache is off.

    Examples:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"FASTSPECNORM_CACHE": "off"}):
        ...     print(default_cache_dir())
        None
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in ("off", "0", "false", "no", "none"):
        return None
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("fastspecnorm", appauthor=False))


@dataclass(frozen=True)
class CacheEntry:
    """One cached clip: its source's key when it was decoded, and where its stored values lie.

    Args:
        size: the source file's size, in bytes.
        mtime_ns: the source's modification time (`st_mtime_ns`), in nanoseconds.
        ctime_ns: the source's status-change time (`st_ctime_ns`), in nanoseconds.
        inode: the source's inode number (`st_ino`).
        source_rate: the source's sample rate, in Hz.
        dtype: the storage type: "int16", "float16" or "float32".
        offset: where the clip starts in the data file, in bytes (a multiple of 8).
        channels: the clip's channels; its shape is `(channels, samples)`.
        samples: the clip's samples per channel, at the cache's sample rate.
        crc32: the CRC-32 of its stored bytes.
    """

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    source_rate: int
    dtype: str
    offset: int
    channels: int
    samples: int
    crc32: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        """The source's key `(size, mtime_ns, ctime_ns, inode)`, compared with one `os.stat` of the file on each read."""
        return self.size, self.mtime_ns, self.ctime_ns, self.inode

    @property
    def nbytes(self) -> int:
        """Size of the stored clip in bytes: `channels * samples` times the storage type's item size."""
        return self.channels * self.samples * np.dtype(STORAGE_DTYPES[self.dtype]).itemsize


def _source_key(path: str) -> tuple[int, int, int, int]:
    "`CacheEntry.key` of the file `path` now, from one stat call."
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    "Hold `folder/.lock` (one build at a time) and yield True; yield False, unlocked, when it cannot be opened (read-only)."
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(folder / ".lock"))
            writable = True
        except OSError:
            writable = False
        yield writable


class AudioCache:
    """Decoded audio of the files in `audio_dir`, at `sample_rate` Hz, stored as `dtype` in one data file under `folder`.

    Open it with `AudioCache.for_settings(audio_dir, sample_rate)`, which builds or refreshes it;
    `AudioCache(audio_dir, sample_rate, folder)` opens a cache folder as it is. `get(path)` returns
    float32 `(channels, samples)` equal to `quantize_waveform(AudioTensor.create(path, sr=sample_rate,
    mono=mono), dtype, source=path)`. It pickles without its data, for DataLoader worker processes.

    Layout, one folder per source folder and settings:

    ```text
    CACHE_DIR/<folder name>-<hash of its absolute path>/sr16000-mono-auto/
        index.json           header (format, settings, data file, its size and mtime), one `CacheEntry` per file
        data-<token>.bin     every clip's stored values, in index order, each at an 8-byte boundary
        .lock                held while building
    ```

    An entry is used only while its source has the recorded size, mtime, ctime and inode and its values
    pass their CRC-32 on each process's first read; otherwise, or when the data file is missing or
    truncated, the clip is decoded from the source with a warning and the next `build()` rewrites it.
    A folder whose `.lock` cannot be opened for writing (a read-only mount) is used as it is.

    Args:
        audio_dir: the folder of the source files; entries are named by their path relative to it.
        sample_rate: the rate clips are stored at, in Hz (a positive integer).
        folder: the cache folder of these settings (`for_settings` picks it under the cache root).
        mono: clips are downmixed to one channel, `(1, samples)`.
        dtype: the storage type: "int16", "float16", "float32", or "auto" (default): per file, the type
            that keeps its source (`storage_dtype`). `LoadAudio(dtype=...)` rounds an uncached clip the same way.
        verify: check each entry's CRC-32 the first time a process reads it, unless this process
            (or the one it was forked from) checked it on opening.

    Raises:
        ValueError: `sample_rate` is not a positive integer, or `dtype` is not one of `AUDIO_DTYPES`.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np, soundfile as sf
        >>> with tempfile.TemporaryDirectory() as d:
        ...     audio = os.path.join(d, "audio")
        ...     os.mkdir(audio)
        ...     path = os.path.join(audio, "clip.wav")
        ...     sf.write(path, np.zeros(22050, dtype="float32"), 44100, subtype="PCM_16")
        ...     cache = AudioCache.for_settings(audio, 16000, cache_dir=os.path.join(d, "cache"), progress=False)
        ...     print(len(cache), cache.storage_types, cache.source_rates, cache.get(path).shape)
        ...     cache.close()
        1 {'int16': 1} {44100: 1} torch.Size([1, 8000])
    """

    def __init__(
        self,
        audio_dir: str | os.PathLike,
        sample_rate: int,
        folder: str | os.PathLike,
        mono: bool = True,
        dtype: str = "auto",
        verify: bool = True,
    ):
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise ValueError(f"AudioCache needs a positive integer sample_rate in Hz, got {sample_rate!r}")
        if dtype not in AUDIO_DTYPES:
            raise ValueError(f"AudioCache dtype must be one of {list(AUDIO_DTYPES)}, got {dtype!r}")
        self.audio_dir = Path(os.path.abspath(audio_dir))
        self.sample_rate, self.mono, self.dtype, self.verify = sample_rate, bool(mono), dtype, verify
        self.folder = Path(folder)
        self._prefix = str(self.audio_dir) + os.sep
        self._failed: set[str] = set()  # entries that failed their checksum when read: the next build decodes them
        self.close()
        self._load_index()

    @classmethod
    def for_settings(
        cls,
        audio_dir: str | os.PathLike,
        sample_rate: int,
        cache_dir: str | os.PathLike | None = None,
        mono: bool = True,
        dtype: str = "auto",
        build: bool = True,
        files: Iterable[str | os.PathLike] | None = None,
        progress: bool = True,
    ) -> AudioCache | None:
        """The cache of `audio_dir` for these settings (its folder under the cache root as in `AudioCache`),
        built or refreshed now when `build`.

        Args:
            audio_dir: the folder of the source files.
            sample_rate: the rate clips are stored at, in Hz.
            cache_dir: the cache root; None: `default_cache_dir()`.
            mono: store clips downmixed to one channel.
            dtype: the storage type, "auto", "int16", "float16" or "float32" (see `AudioCache`).
            build: bring the cache up to date now (see `build`); False opens it as it is.
            files: the files to cache, all inside `audio_dir`; None: every audio file under it.
            progress: show a progress bar while files are decoded.

        Returns:
            The cache; None (audio is then decoded from the source files) when `cache_dir` is None and the
                default cache is off (`FASTSPECNORM_CACHE=off`), or, with a warning, the folder cannot be written.

        Raises:
            FileNotFoundError: `audio_dir` is not a folder.
            ValueError: `sample_rate` or `dtype` is refused as in `AudioCache`, or one of `files` lies outside `audio_dir`.
        """
        audio_dir = Path(os.path.abspath(audio_dir))
        if not audio_dir.is_dir():
            raise FileNotFoundError(f"audio folder not found: {audio_dir}")
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        if root is None:
            return None
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", audio_dir.parent.name + "_" + audio_dir.name).strip("_")[:60]
        digest = hashlib.sha1(str(audio_dir).encode()).hexdigest()[:12]
        folder = root / f"{name}-{digest}" / f"sr{sample_rate}-{'mono' if mono else 'multi'}-{dtype}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            cache = cls(audio_dir, sample_rate, folder, mono=mono, dtype=dtype)
            if build:
                cache.build(files, progress=progress)
        except OSError as e:
            warnings.warn(f"cannot use the audio cache at {folder} ({e}); audio is decoded from the source files", stacklevel=2)
            return None
        return cache

    # -- per-process state: the open data file and the checks done; never pickled ----------------
    def close(self) -> None:
        "Close the data file in this process (reopened by the next read)."
        if getattr(self, "_data", None) is not None:
            self._data.close()
        self._data = None  # the open data file (binary, unbuffered)
        self._data_failed = False
        self._read_lock = threading.Lock()
        self._verified: set[str] = set()
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _PER_PROCESS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_data", None) is not None:
            self._data.close()

    # -- index ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        """The cache's index file, `folder / "index.json"`."""
        return self.folder / "index.json"

    @property
    def data_path(self) -> Path | None:
        """The current data file, `folder / "data-<token>.bin"`; None while the cache has none."""
        return None if self._data_name is None else self.folder / self._data_name

    def _header(self) -> dict[str, Any]:
        return dict(
            format=CACHE_FORMAT, audio_dir=str(self.audio_dir), sample_rate=self.sample_rate, mono=self.mono, dtype=self.dtype
        )

    def _load_index(self) -> None:
        "Read index.json; a missing, unreadable or mismatching index leaves the cache empty."
        self._entries, self._data_name, self._data_size, self._data_mtime_ns = {}, None, 0, None
        try:
            index = read_json(
                self.index_path, "audio cache index", "it will be rebuilt", required=("header", "entries", "data"), default=None
            )
            if index is None or any(index["header"].get(k) != v for k, v in self._header().items()):
                return
            entries = {name: CacheEntry(**e) for name, e in index["entries"].items()}
            data_name, data_size = str(index["data"]["name"]), int(index["data"]["size"])
            mtime_ns = index["data"].get("mtime_ns")  # absent in indexes written before it was recorded
            if not _DATA_NAME.fullmatch(data_name):
                raise ValueError(f"unexpected data file name {data_name!r}")
            for name, e in entries.items():
                if e.dtype not in STORAGE_DTYPES or self.dtype not in ("auto", e.dtype) or e.offset % _ALIGN:
                    raise ValueError(f"entry {name!r} has storage type {e.dtype!r} at byte {e.offset}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(
                f"audio cache index {self.index_path} is unreadable ({type(e).__name__}: {e}); it will be rebuilt", stacklevel=3
            )
            return
        if data_size == max((e.offset + e.nbytes for e in entries.values()), default=0):
            self._entries, self._data_name, self._data_size = entries, data_name, data_size
            self._data_mtime_ns = mtime_ns if isinstance(mtime_ns, int) else None

    def _data_touched(self) -> bool:
        "Whether the data file's size or mtime is not the recorded one (or none was recorded): only then is it read whole."
        try:
            st = os.stat(self.data_path)
        except (OSError, TypeError):
            return True
        return self._data_mtime_ns is None or (st.st_size, st.st_mtime_ns) != (self._data_size, self._data_mtime_ns)

    # -- reading ----------------------------------------------------------------------------
    def _name(self, path: str | os.PathLike) -> str | None:
        "Key of `path`: its path relative to `audio_dir` (posix separators), None when outside it."
        p = os.path.abspath(path)
        return p[len(self._prefix) :].replace(os.sep, "/") if p.startswith(self._prefix) else None

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(message, stacklevel=4)

    def _open_data(self, warn: bool = True):
        "The data file, opened once per process; None (with a warning) when it is missing or not the recorded size."
        if self._data is not None or self._data_failed:
            return self._data
        path = self.data_path
        try:
            if path is None:
                raise FileNotFoundError("no data file recorded")
            handle = open(path, "rb", buffering=0)
            size = os.fstat(handle.fileno()).st_size
            if size != self._data_size:
                handle.close()
                raise ValueError(
                    f"data file {path} has {size} bytes, the index records {self._data_size} (truncated or overwritten)"
                )
            self._data = handle
        except (OSError, ValueError) as e:
            self._data_failed = True
            if self._entries and warn:
                warnings.warn(
                    f"audio cache {self.folder} is unusable ({e}); audio is decoded from the source files", stacklevel=4
                )
        return self._data

    def _entry_values(self, handle, entry: CacheEntry) -> np.ndarray | None:
        "A fresh array of `entry`'s stored values, read from the open data file; None when the file ends before them."
        values = np.empty((entry.channels, entry.samples), dtype=STORAGE_DTYPES[entry.dtype])
        buffer, done = values.reshape(-1).view(np.uint8), 0
        if hasattr(os, "preadv"):  # positional: no shared file offset between threads or forked workers
            while done < entry.nbytes:
                n = os.preadv(handle.fileno(), [buffer[done:]], entry.offset + done)
                if n == 0:  # end of file: truncated since it was opened
                    return None
                done += n
        else:
            with self._read_lock:  # Windows: no preadv (and no fork); seek and read under this cache's lock
                handle.seek(entry.offset)
                done = handle.readinto(buffer) or 0
        return values if done == entry.nbytes else None

    def decode(self, path: str | os.PathLike) -> Tensor:
        """Decode `path` from the source file, rounded exactly as the cache stores it: float32 `(channels, samples)`.

        Args:
            path: a source audio file.

        Raises:
            FileNotFoundError: `path` is missing.
            AudioLoadError: (a ValueError naming the file) the file cannot be decoded (see `load_audio`).
        """
        wav = AudioTensor.create(path, sr=self.sample_rate, mono=self.mono).as_subclass(Tensor)
        return quantize_waveform(wav, self.dtype, source=path)

    def stored(self, path: str | os.PathLike) -> np.ndarray | None:
        """A fresh copy of the stored values of `path` (int16, float16 or float32 `(channels, samples)`), or
        None when it has no current, intact entry; warns once per file that changed or is corrupt.

        Args:
            path: a source audio file inside `audio_dir`.
        """
        name = self._name(path)
        entry = self._entries.get(name)
        if entry is None:
            return None
        try:
            key = _source_key(os.fspath(path))
        except FileNotFoundError:
            return None
        if key != entry.key:
            self._warn_once(
                name,
                f"{path} changed since the audio cache was built; it is decoded from the source until the cache is "
                "refreshed (AudioCache.build or opening the DataLoaders again)",
            )
            return None
        handle = self._open_data()
        if handle is None:
            return None
        values = self._entry_values(handle, entry)
        if values is None:
            self._warn_once(
                name,
                f"audio cache data file {self.data_path} ends before entry {name!r} (truncated since it was opened); "
                "decoding the source file instead; the next build rewrites it",
            )
        if self.verify and name not in self._verified:
            if values is None or zlib.crc32(values) != entry.crc32:
                self._failed.add(name)  # decoded again by the next build
                self._warn_once(
                    name, f"audio cache entry {name!r} in {self.folder} fails its checksum; decoding the source file instead"
                )
                return None
            self._verified.add(name)
        return values

    def get(self, path: str | os.PathLike) -> Tensor:
        """A clip at the cache's sample rate, float32 `(channels, samples)`: from the cache when its entry is
        current and intact, else decoded from the source file with the same rounding (`decode`).

        Args:
            path: a source audio file.

        Raises:
            FileNotFoundError: `path` is missing, as in `load_audio`.
            AudioLoadError: (a ValueError naming the file) `path` has no current entry and cannot be decoded.
        """
        values = self.stored(path)
        return self.decode(path) if values is None else from_storage(torch.from_numpy(values))

    def __contains__(self, path) -> bool:
        return self._name(path) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        "Size of the data file in bytes."
        return self._data_size

    @property
    def source_rates(self) -> dict[int, int]:
        "`{sample rate of the source files in Hz: number of cached files}`."
        return dict(sorted(Counter(e.source_rate for e in self._entries.values()).items()))

    @property
    def storage_types(self) -> dict[str, int]:
        "`{storage type: number of cached files}`, e.g. `{'int16': 40, 'float32': 2}`."
        return dict(sorted(Counter(e.dtype for e in self._entries.values()).items()))

    def __repr__(self) -> str:
        return (
            f"AudioCache({str(self.audio_dir)!r}, sample_rate={self.sample_rate}, mono={self.mono}, dtype={self.dtype!r}, "
            f"{len(self)} clips, {self.nbytes / 1e6:.1f} MB at {str(self.folder)!r})"
        )

    # -- building ---------------------------------------------------------------------------
    def _scan(self, files: Iterable[str | os.PathLike] | None) -> dict[str, str]:
        "name -> source path of the files to cache: `files`, or every audio file under `audio_dir`."
        if files is None:
            files = []
            for dirpath, dirnames, filenames in os.walk(self.audio_dir):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                files += [os.path.join(dirpath, fn) for fn in filenames if not fn.startswith(".") and is_audio_file(fn)]
        found: dict[str, str] = {}
        for f in files:
            name = self._name(f)
            if name is None:
                raise ValueError(f"{f} is not inside the cached folder {self.audio_dir}")
            found[name] = os.path.abspath(f)
        return dict(sorted(found.items()))

    def check(self) -> list[str]:
        """Names (relative to `audio_dir`) of entries whose stored values fail their checksum, reading the whole
        data file; every entry's when it is missing or not its recorded size. The others count as verified
        in this process and in worker processes forked from it."""
        handle = self._open_data(warn=False)
        if handle is None:
            return sorted(self._entries)
        bad = []
        for name, e in self._entries.items():
            values = self._entry_values(handle, e)
            if values is None or zlib.crc32(values) != e.crc32:
                bad.append(name)
            else:
                self._verified.add(name)
        return bad

    def build(self, files: Iterable[str | os.PathLike] | None = None, progress: bool = True) -> dict[str, int]:
        """Bring the cache up to date with `files`: decode those new, changed or failing their checksum (the
        data file is read whole only when its size or mtime changed), drop missing ones, write a new data
        file and index. Files that cannot be decoded are left out with a warning (reading them later
        raises). Warns once, naming the rates, when files are upsampled.

        Args:
            files: the files to cache, all inside `audio_dir`; None: every audio file under `audio_dir`.
            progress: show a progress bar while files are decoded.

        Returns:
            Counts: `{"kept": ..., "decoded": ..., "dropped": ..., "failed": ...}`.

        Raises:
            ValueError: one of `files` lies outside `audio_dir`.
        """
        with _locked(self.folder) as writable:
            if writable:
                remove_stale_temp_files(self.folder, _DATA_NAME)
            self._load_index()  # another process may have built it meanwhile
            self.close()
            wanted = self._scan(files)
            bad = set(self.check()) if self._entries and self._data_touched() else set()
            bad |= self._failed
            keep: dict[str, CacheEntry] = {}
            todo: dict[str, str] = {}
            for name, path in wanted.items():
                try:
                    key = _source_key(path)
                except FileNotFoundError:
                    continue
                e = self._entries.get(name)
                if e is not None and name not in bad and key == e.key:
                    keep[name] = e
                else:
                    todo[name] = path
            dropped = len(self._entries.keys() - keep.keys() - todo.keys())
            counts = {"kept": len(keep), "decoded": 0, "dropped": dropped if writable else 0, "failed": 0}
            if not writable and todo:
                warnings.warn(
                    f"audio cache {self.folder} is read-only ({self.folder / '.lock'} cannot be opened for writing): "
                    f"its {len(keep)} current clip(s) are read from it, {len(todo)} file(s) it lacks or that changed "
                    "are decoded from the source each time; make the folder writable to cache them",
                    stacklevel=2,
                )
            elif writable and (todo or dropped or bad):
                decoded, failed = self._decode_all(todo, progress)
                counts["decoded"], counts["failed"] = len(decoded), len(failed)
                if failed:
                    shown = "; ".join(f"{n}: {msg}" for n, msg in list(failed.items())[:3])
                    warnings.warn(f"{len(failed)} file(s) could not be decoded and are not cached: {shown}", stacklevel=2)
                self._rewrite(keep, decoded)
        warn_upsampling(self.source_rates, self.sample_rate, f"audio cache of {self.audio_dir}")
        return counts

    def _decode_all(self, todo: dict[str, str], progress: bool):
        "Decode `todo` {name: path}; returns ({name: (source key, source rate, storage type, stored array)}, {name: error})."
        decoded: dict[str, tuple] = {}
        failed: dict[str, str] = {}
        items = todo.items()
        if progress and todo:
            from fastprogress.fastprogress import progress_bar

            items = progress_bar(items, total=len(todo), leave=False)
            items.comment = f"caching audio at {self.sample_rate} Hz"
        for name, path in items:
            try:
                key = _source_key(path)  # first: a rewrite while decoding shows as a changed key on the next read
                source_rate, subtype = source_format(path)
                wav = AudioTensor.create(path, sr=self.sample_rate, mono=self.mono).as_subclass(Tensor)
                kind = storage_dtype(self.dtype, wav, subtype)
                decoded[name] = key, source_rate, kind, to_storage(wav, kind).numpy()
            except (OSError, ValueError, RuntimeError) as e:
                failed[name] = f"{type(e).__name__}: {e}"
        return decoded, failed

    def _rewrite(self, keep: dict[str, CacheEntry], decoded: dict[str, tuple]) -> None:
        "Write a new data file holding `keep` (copied) and `decoded`, then the index; delete older data files."
        old = self._open_data() if keep else None
        entries: dict[str, CacheEntry] = {}
        data_name = f"data-{secrets.token_hex(6)}.bin"

        def write(f):
            offset = 0
            for name in sorted(keep.keys() | decoded.keys()):
                if name in decoded:
                    key, source_rate, kind, stored = decoded[name]
                else:
                    e = keep[name]
                    key, source_rate, kind = e.key, e.source_rate, e.dtype
                    stored = None if old is None else self._entry_values(old, e)
                    if stored is None:  # truncated since `check` read it: this build fails, the old cache stays
                        raise OSError(f"data file {self.data_path} was truncated while it was copied; open the cache again")
                stored = np.ascontiguousarray(stored)
                start = -(-offset // _ALIGN) * _ALIGN
                f.write(bytes(start - offset))
                f.write(stored)
                channels, samples = stored.shape
                entries[name] = CacheEntry(*key, source_rate, kind, start, channels, samples, zlib.crc32(stored))
                offset = start + stored.nbytes

        atomic_write(self.folder / data_name, write)
        st = os.stat(self.folder / data_name)  # the file ends where its last clip does
        data_size, mtime_ns = st.st_size, st.st_mtime_ns
        index = {
            "header": self._header(),
            "data": {"name": data_name, "size": data_size, "mtime_ns": mtime_ns},
            "entries": {name: asdict(e) for name, e in entries.items()},
        }
        atomic_write_text(self.index_path, json.dumps(index, separators=(",", ":")))
        self._entries, self._data_name, self._data_size, self._data_mtime_ns = entries, data_name, data_size, mtime_ns
        self._failed = set()
        self.close()
        self._verified = set(entries)  # checksums were just computed from the values written
        for stale in self.folder.glob("data-*.bin"):
            if stale.name != data_name:
                with contextlib.suppress(OSError):  # a reader elsewhere keeps its handle of an unlinked file
                    stale.unlink()

    def clear(self) -> None:
        """Delete this cache's index and data files.

        Raises:
            PermissionError: the cache folder is read-only (its `.lock` cannot be opened for writing).
        """
        with _locked(self.folder) as writable:
            if not writable:
                raise PermissionError(
                    f"cannot clear the audio cache {self.folder}: its .lock cannot be opened for writing (read-only folder)"
                )
            for p in [self.index_path, *self.folder.glob("data-*.bin")]:
                p.unlink(missing_ok=True)
            self._entries, self._data_name, self._data_size = {}, None, 0
            self.close()
