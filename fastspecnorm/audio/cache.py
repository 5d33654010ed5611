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

from .._io import atomic_write, file_lock, read_json, remove_stale_temp_files
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
_OFF_VALUES = ("off", "0", "false", "no", "none")
_INDEX_NAME = "index.json"
_DATA_NAME = re.compile(r"data-[0-9a-f]+\.bin")
_ALIGN = 8  # each clip starts at a multiple of 8 bytes, so every storage type is read aligned


def default_cache_dir() -> Path | None:
    """The default cache folder, from the environment.

    Returns:
        `$FASTSPECNORM_CACHE`, else the platform's user cache folder (`platformdirs`:
            `$XDG_CACHE_HOME/fastspecnorm` or `~/.cache/fastspecnorm` on Linux); None when `FASTSPECNORM_CACHE` is "off" (or 0, false, no, none): the default cache is off.

    Examples:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"FASTSPECNORM_CACHE": "off"}):
        ...     print(default_cache_dir())
        None
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in _OFF_VALUES:
        return None
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("fastspecnorm", appauthor=False))


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
    "(size, mtime_ns, ctime_ns, inode) of `path` from one stat call: what detects a rewrite (`AudioCache`, Keys)."
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _crc(values: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(values)).cast("B")) & 0xFFFFFFFF


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _decode(path: str, sample_rate: int, mono: bool, dtype: str) -> tuple[tuple[int, int, int, int], int, str, np.ndarray]:
    """Decode `path` like the uncached path (`AudioTensor.create`) and round it to its storage type.
    Returns (source key, source rate in Hz, storage type, stored array `(channels, samples)`). The key
    is taken first: a rewrite while decoding then shows as a changed key on the next read."""
    key = _source_key(path)
    source_rate, subtype = source_format(path)
    wav = AudioTensor.create(path, sr=sample_rate, mono=mono).as_subclass(Tensor)
    kind = storage_dtype(dtype, wav, subtype)
    return key, source_rate, kind, to_storage(wav, kind).numpy()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on `folder/.lock` (two processes never build one cache at
    once); yields True, or False without a lock when `.lock` cannot be opened for writing (a
    read-only folder: nothing may be written there). On Windows there is no lock; concurrent builds
    then only waste work, each write is atomic."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(folder / ".lock"))
        except OSError:
            writable = False
        else:
            writable = True
        yield writable


def _read_at(handle, buffer: np.ndarray, offset: int, lock: threading.Lock) -> int:
    "Read `buffer.nbytes` bytes of the open file `handle` from byte `offset` into `buffer`; returns the count read."
    if buffer.nbytes == 0:  # an empty clip (memoryview cannot cast a shape holding 0)
        return 0
    view = memoryview(buffer.reshape(-1)).cast("B")
    if hasattr(os, "preadv"):  # positional: no shared file offset between threads or forked workers
        done = 0
        while done < len(view):
            n = os.preadv(handle.fileno(), [view[done:]], offset + done)
            if n == 0:  # end of file: the data file is shorter than the index says
                break
            done += n
        return done
    with lock:  # Windows: no preadv (and no fork); seek and read under this cache's lock
        handle.seek(offset)
        return handle.readinto(view) or 0


def _folder_tag(audio_dir: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", audio_dir.parent.name + "_" + audio_dir.name).strip("_")[:60]
    digest = hashlib.sha1(str(audio_dir).encode()).hexdigest()[:12]
    return f"{name}-{digest}"


class AudioCache:
    """Decoded audio of the files in `audio_dir`, at `sample_rate` Hz, stored as `dtype` in one data file under `folder`.

    Decoding a file (a 44.1 kHz one, say) and resampling it again for every item of every epoch, as
    fastaudio's pipeline does, is what holds back a CPU pipeline (docs/performance.md). The cache
    does that work once per file and settings and keeps the result on disk, so an epoch reads clips
    from the page cache instead. Random crops and augmentations still happen per epoch, after the
    cache (it stores full clips).

    Open it with `AudioCache.for_settings(audio_dir, sample_rate)`, which builds or refreshes it;
    `get(path)` returns a float32 tensor `(channels, samples)` (`(1, samples)` when mono) equal to
    `quantize_waveform(AudioTensor.create(path, sr=sample_rate, mono=mono), dtype, source=path)`.
    Files that are not in the cache, changed since it was built, or fail their checksum are decoded
    from the source (never read stale or corrupt); the next `build()` refreshes them.
    `AudioCache(audio_dir, sample_rate, folder)` opens a cache folder as it is, without building.
    The object is cheap to pickle (the data file is opened lazily in each process), so it works in
    DataLoader worker processes.

    Layout, one folder per source folder and settings:

    ```text
    CACHE_DIR/<folder name>-<hash of its absolute path>/sr16000-mono-auto/
        index.json           header (format, settings, data file and its size) and one entry per
                             file: source size, mtime_ns, ctime_ns and inode, source sample rate,
                             storage type, byte offset, channels, samples, CRC-32
        data-<token>.bin     every clip's stored values, in index order, each at an 8-byte boundary
        .lock                held while building (fcntl advisory lock)
    ```

    Reading: each clip is read with one positional read (`os.preadv`) from a handle opened once per
    process, never through a memory map: a data file truncated while a process reads it (by something
    other than this package, which only ever replaces whole files) gives a short read, and the clip is
    decoded from its source with a warning, instead of a SIGBUS that would kill the process. A clip
    costs one copy from the page cache, which `get` makes anyway.

    Keys: an entry is used only while its source file has the recorded size, modification time
    (`st_mtime_ns`), status-change time (`st_ctime_ns`) and inode, from one `os.stat` call, and the
    folder's settings (sample rate, mono, dtype) match. A rewrite with the same size and a restored
    mtime (`touch -r`, `cp -p`, `rsync -t`) still changes the ctime, which user space cannot set back,
    and a rewrite through a new file (most editors, `rsync`, `os.replace`) changes the inode; no file
    content is read, so checking a key costs one `stat`. A change that leaves the samples alone (chmod,
    a new hard link, a rename into place) also moves the ctime and only costs a re-decode. (On Windows
    `st_ctime_ns` is the creation time: there an in-place rewrite with restored mtime is not seen.)

    Integrity: the data file is checked against its recorded size when it is opened, and each entry
    against its CRC-32 the first time a process reads it; opening the cache (`for_settings`, `build`)
    checks every entry and rebuilds bad ones. A file that fails a check is read from the source
    instead, never from the cache. The index and data file are written with `atomic_write` (temporary
    names, `os.replace`, index last), so a crash leaves the previous cache or none; a build removes
    temporary data files left by dead builds, never one that a live process is still writing.

    Read-only caches: a cache folder whose `.lock` cannot be opened for writing (a read-only mount,
    a folder of another user) is opened read-only: its current, intact entries are used, nothing is
    written, and files it lacks or that changed are decoded from the source (with one warning saying
    how many).

    Args:
        audio_dir: the folder of the source files; entries are named by their path relative to it.
        sample_rate: the rate clips are stored at, in Hz (a positive integer).
        folder: the cache folder of these settings (`for_settings` picks it under the cache root).
        mono: clips are downmixed to one channel, `(1, samples)`.
        dtype: the storage type. "auto" (default) picks, per file, the type that keeps its source
            (`storage_dtype`): int16 (2 bytes per sample: ESC-50 at 16 kHz is 320 MB) for 16- and
            8-bit PCM sources whose decoded values fit int16's range, float32 (4 bytes per sample,
            twice the disk) for float, 24- and 32-bit sources, lossy formats and 16-bit clips whose
            resampling overshoots full scale, so nothing is clipped and quiet clips are never rounded
            to silence. "int16", "float16" (11 significant bits) or "float32" force one type for
            every file. Cached and uncached loading give bit-identical clips when the uncached path
            rounds the same way: `LoadAudio(dtype=...)` and `quantize_waveform` apply exactly the
            rounding the cache stores (the ESC-50 pipeline does this, `ESC50Settings.audio_dtype`),
            so turning the cache on or off never changes a result.
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
        self._entries: dict[str, CacheEntry] = {}
        self._data_name: str | None = None
        self._data_size = 0
        self._failed: set[str] = set()  # entries that failed their checksum when read: the next build decodes them
        self._reset_process_state()
        self._load_index()

    # -- construction -----------------------------------------------------------------------
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
        """The cache of `audio_dir` for these settings, built or refreshed now when `build`.

        Its folder is `<cache root>/<folder name>-<hash of its absolute path>/sr<sample_rate>-<mono or
        multi>-<dtype>/`. Opening or building a cache whose files include rates below `sample_rate`
        warns once, naming the rates (`warn_upsampling`).

        Args:
            audio_dir: the folder of the source files.
            sample_rate: the rate clips are stored at, in Hz.
            cache_dir: the cache root; None: `default_cache_dir()` (`$FASTSPECNORM_CACHE`, else
                `$XDG_CACHE_HOME/fastspecnorm` or `~/.cache/fastspecnorm`).
            mono: store clips downmixed to one channel.
            dtype: the storage type, "auto", "int16", "float16" or "float32" (see `AudioCache`).
            build: bring the cache up to date now (see `build`); False opens it as it is.
            files: the files to cache, all inside `audio_dir`; None: every audio file under it.
            progress: show a progress bar while files are decoded.

        Returns:
            The cache; None, and the caller decodes from the source files, when `cache_dir` is None and
                `FASTSPECNORM_CACHE` is "off" (or 0, false, no, none), or when the cache folder cannot be
                written (with a warning).

        Raises:
            FileNotFoundError: `audio_dir` is not a folder.
            ValueError: `sample_rate` is not a positive integer, `dtype` is not one of `AUDIO_DTYPES`,
                or one of `files` lies outside `audio_dir`.
        """
        audio_dir = Path(os.path.abspath(audio_dir))
        if not audio_dir.is_dir():
            raise FileNotFoundError(f"audio folder not found: {audio_dir}")
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        if root is None:
            return None
        folder = root / _folder_tag(audio_dir) / f"sr{sample_rate}-{'mono' if mono else 'multi'}-{dtype}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            cache = cls(audio_dir, sample_rate, folder, mono=mono, dtype=dtype)
            if build:
                cache.build(files, progress=progress)
        except OSError as e:
            warnings.warn(f"cannot use the audio cache at {folder} ({e}); audio is decoded from the source files", stacklevel=2)
            return None
        return cache

    # -- pickling: the open data file and per-process checks stay in their process -------------
    def _reset_process_state(self) -> None:
        old = getattr(self, "_data", None)
        if old is not None:
            old.close()
        self._data = None  # the open data file (binary, unbuffered)
        self._data_failed = False
        self._read_lock = threading.Lock()
        self._verified: set[str] = set()
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in ("_data", "_data_failed", "_read_lock", "_verified", "_warned"):
            state.pop(k, None)
        return state

    def close(self) -> None:
        "Close the data file in this process (reopened by the next read)."
        self._reset_process_state()

    def __del__(self) -> None:
        if getattr(self, "_data", None) is not None:
            self._data.close()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    # -- index ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        """The cache's index file, `folder / "index.json"`."""
        return self.folder / _INDEX_NAME

    @property
    def data_path(self) -> Path | None:
        """The current data file, `folder / "data-<token>.bin"`; None while the cache has none."""
        return None if self._data_name is None else self.folder / self._data_name

    def _header(self) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "audio_dir": str(self.audio_dir),
            "sample_rate": self.sample_rate,
            "mono": self.mono,
            "dtype": self.dtype,
        }

    def _load_index(self) -> None:
        "Read index.json; a missing, unreadable or mismatching index leaves the cache empty."
        self._entries, self._data_name, self._data_size, self._data_mtime_ns = {}, None, 0, None
        try:
            index = read_json(self.index_path, "audio cache index", "it will be rebuilt", required=("header", "entries", "data"))
            header = index["header"]
            if any(header.get(k) != v for k, v in self._header().items()):
                return
            entries = {name: CacheEntry(**e) for name, e in index["entries"].items()}
            data_name, data_size = str(index["data"]["name"]), int(index["data"]["size"])
            mtime_ns = index["data"].get("mtime_ns")  # absent in indexes written before it was recorded
            if not _DATA_NAME.fullmatch(data_name):
                raise ValueError(f"unexpected data file name {data_name!r}")
            for name, e in entries.items():
                if e.dtype not in STORAGE_DTYPES or (self.dtype != "auto" and e.dtype != self.dtype) or e.offset % _ALIGN:
                    raise ValueError(f"entry {name!r} has storage type {e.dtype!r} at byte {e.offset}")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(
                f"audio cache index {self.index_path} is unreadable ({type(e).__name__}: {e}); it will be rebuilt", stacklevel=3
            )
            return
        if data_size != max((e.offset + e.nbytes for e in entries.values()), default=0):
            return
        self._entries, self._data_name, self._data_size = entries, data_name, data_size
        self._data_mtime_ns = mtime_ns if isinstance(mtime_ns, int) else None

    def _data_touched(self) -> bool:
        """Whether the data file may differ from what was written: its size or modification time is
        not the recorded one (or none was recorded). Only then does `build` read it whole."""
        try:
            st = os.stat(self.data_path)
        except (OSError, TypeError):
            return True
        return self._data_mtime_ns is None or (st.st_size, st.st_mtime_ns) != (self._data_size, self._data_mtime_ns)

    def _write_index(self, entries: dict[str, CacheEntry], data_name: str, data_size: int) -> None:
        index = {
            "header": self._header(),
            "data": {"name": data_name, "size": data_size, "mtime_ns": os.stat(self.folder / data_name).st_mtime_ns},
            "entries": {name: asdict(e) for name, e in entries.items()},
        }
        payload = json.dumps(index, separators=(",", ":")).encode()
        atomic_write(self.index_path, lambda f: f.write(payload))

    # -- reading ----------------------------------------------------------------------------
    def _name(self, path: str | os.PathLike) -> str | None:
        "Key of `path`: its path relative to `audio_dir` (posix separators), None when outside it."
        p = os.path.abspath(path)
        if not p.startswith(self._prefix):
            return None
        return p[len(self._prefix) :].replace(os.sep, "/")

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
                    f"audio cache {self.folder} is unusable ({e}); audio is decoded from the source files", stacklevel=3
                )
        return self._data

    def _entry_values(self, handle, entry: CacheEntry) -> np.ndarray | None:
        """The stored values of `entry` `(channels, samples)` read from the open data file (a fresh
        array); None when they lie beyond its end (the file was truncated after it was opened)."""
        values = np.empty((entry.channels, entry.samples), dtype=STORAGE_DTYPES[entry.dtype])
        if _read_at(handle, values, entry.offset, self._read_lock) != entry.nbytes:
            return None
        return values

    def _stored(self, name: str, entry: CacheEntry) -> np.ndarray | None:
        "The stored values of `entry`, checksum-verified on first read in this process; None if corrupt."
        handle = self._open_data()
        if handle is None:
            return None
        values = self._entry_values(handle, entry)
        if values is None and name not in self._warned:
            self._warned.add(name)
            warnings.warn(
                f"audio cache data file {self.data_path} ends before entry {name!r} (truncated since it was opened); "
                "decoding the source file instead; the next build rewrites it",
                stacklevel=3,
            )
        if self.verify and name not in self._verified:
            if values is None or _crc(values) != entry.crc32:
                self._failed.add(name)  # decoded again by the next build
                if name not in self._warned:
                    self._warned.add(name)
                    warnings.warn(
                        f"audio cache entry {name!r} in {self.folder} fails its checksum; decoding the source file instead",
                        stacklevel=3,
                    )
                return None
            self._verified.add(name)
        return values

    def decode(self, path: str | os.PathLike) -> Tensor:
        """Decode `path` from the source file, rounded exactly as the cache stores it.

        Args:
            path: a source audio file.

        Returns:
            float32 `(channels, samples)` at the cache's sample rate (`(1, samples)` when mono).

        Raises:
            FileNotFoundError: `path` is missing.
            AudioLoadError: (a ValueError naming the file) the file cannot be decoded (see `load_audio`).
        """
        wav = AudioTensor.create(path, sr=self.sample_rate, mono=self.mono).as_subclass(Tensor)
        return quantize_waveform(wav, self.dtype, source=path)

    def stored(self, path: str | os.PathLike) -> np.ndarray | None:
        """The stored values of `path`, as the cache keeps them, or None without a current, intact entry.

        Warns once per file when the source changed since the cache was built.

        Args:
            path: a source audio file inside `audio_dir`.

        Returns:
            A fresh copy `(channels, samples)`, int16, float16 or float32 (see `dtype`); None when
                `path` has no current, intact entry (not cached, changed since, or corrupt).
        """
        name = self._name(path)
        entry = self._entries.get(name) if name is not None else None
        if entry is None:
            return None
        try:
            key = _source_key(os.fspath(path))
        except FileNotFoundError:
            return None
        if key != entry.key:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"{path} changed since the audio cache was built; it is decoded from the source until the cache is "
                    "refreshed (AudioCache.build or opening the DataLoaders again)",
                    stacklevel=3,
                )
            return None
        return self._stored(name, entry)

    def to_float(self, stored: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Stored values (e.g. a crop of `stored(path)`) as float32 (`from_storage`).

        Args:
            stored: stored values, int16, float16 or float32, any shape.
            out: a float32 array of the same shape to write into; None returns a new array.

        Returns:
            float32, same shape as `stored` (`out` when given); never shares memory with `stored`.
        """
        values = from_storage(torch.from_numpy(np.array(stored))).numpy()  # a copy: never shares memory with `stored`
        if out is None:
            return values
        np.copyto(out, values)
        return out

    def get(self, path: str | os.PathLike) -> Tensor:
        """A clip at the cache's sample rate, from the cache when it can, else decoded with the same rounding.

        Args:
            path: a source audio file.

        Returns:
            float32 `(channels, samples)` (`(1, samples)` when mono), from the cache when its entry is
                present, current and intact, else decoded from the source file with the same rounding.

        Raises:
            FileNotFoundError: `path` is missing, as in `load_audio`.
            AudioLoadError: (a ValueError naming the file) `path` has no current entry and cannot be
                decoded, as in `load_audio`.
        """
        values = self.stored(path)
        if values is None:
            return self.decode(path)
        return from_storage(torch.from_numpy(values))  # `values` is a fresh array: no copy needed

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
        found: dict[str, str] = {}
        if files is None:
            for dirpath, dirnames, filenames in os.walk(self.audio_dir):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in filenames:
                    if not fn.startswith(".") and is_audio_file(fn):
                        path = os.path.join(dirpath, fn)
                        found[self._name(path)] = path
        else:
            for f in files:
                name = self._name(f)
                if name is None:
                    raise ValueError(f"{f} is not inside the cached folder {self.audio_dir}")
                found[name] = os.path.abspath(f)
        return dict(sorted(found.items()))

    def check(self) -> list[str]:
        """Names of entries whose stored values fail their checksum (reads the whole data file).

        The others count as verified in this process and in worker processes forked from it.

        Returns:
            The names (paths relative to `audio_dir`, posix separators); every entry's when the data
                file is missing or not its recorded size.
        """
        handle = self._open_data(warn=False)
        if handle is None:
            return sorted(self._entries)
        bad = []
        for name, e in self._entries.items():
            values = self._entry_values(handle, e)
            if values is None or _crc(values) != e.crc32:
                bad.append(name)
            else:
                self._verified.add(name)
        return bad

    def build(self, files: Iterable[str | os.PathLike] | None = None, progress: bool = True) -> dict[str, int]:
        """Bring the cache up to date with `files`.

        Entries whose source file is new, changed (size, mtime_ns, ctime_ns or inode) or whose stored
        values fail their checksum are decoded again (with a progress bar); entries of files that no
        longer exist are dropped. When anything changed, a new data file and index are written
        atomically. Files that cannot be decoded are left out with a warning (reading them later
        raises, as without a cache). Temporary files of builds that died mid-write are removed (never
        those of a live build). Warns once when files below `sample_rate` are upsampled.
        A read-only cache folder (its `.lock` cannot be opened for writing) is used as it is:
        nothing is decoded or written, and files it lacks or that changed are decoded from the source
        when read (one warning says how many).

        Args:
            files: the files to cache, all inside `audio_dir`; None: every audio file under `audio_dir`.
            progress: show a progress bar while files are decoded.

        Returns:
            Counts: `{"kept": ..., "decoded": ..., "dropped": ..., "failed": ...}`.

        Raises:
            ValueError: one of `files` lies outside `audio_dir`.
        """
        with _locked(self.folder) as writable:
            if writable:  # under the lock no other build of this folder is writing, but the rule needs no lock
                remove_stale_temp_files(self.folder, _DATA_NAME)
            self._load_index()  # another process may have built it meanwhile
            self._reset_process_state()
            wanted = self._scan(files)
            # Stat first, content when the stat changed: a data file as written is not read whole
            # again (each entry is still checksummed on its first read in a process).
            bad = set(self.check()) if self._entries and self._data_touched() else set()
            bad |= self._failed
            keep: dict[str, CacheEntry] = {}
            todo: list[str] = []
            for name, path in wanted.items():
                e = self._entries.get(name)
                try:
                    key = _source_key(path)
                except FileNotFoundError:
                    continue
                if e is not None and name not in bad and key == e.key:
                    keep[name] = e
                else:
                    todo.append(name)
            dropped = len(set(self._entries) - set(keep) - set(todo))
            counts = {"kept": len(keep), "decoded": 0, "dropped": dropped, "failed": 0}
            if not writable:
                counts["dropped"] = 0
                if todo:
                    warnings.warn(
                        f"audio cache {self.folder} is read-only ({self.folder / '.lock'} cannot be opened for writing): "
                        f"its {len(keep)} current clip(s) are read from it, {len(todo)} file(s) it lacks or that changed "
                        "are decoded from the source each time; make the folder writable to cache them",
                        stacklevel=2,
                    )
            elif todo or dropped or bad:
                decoded, failed = self._decode_all([(name, wanted[name]) for name in todo], progress)
                counts["decoded"], counts["failed"] = len(decoded), len(failed)
                if failed:
                    shown = "; ".join(f"{n}: {msg}" for n, msg in list(failed.items())[:3])
                    warnings.warn(f"{len(failed)} file(s) could not be decoded and are not cached: {shown}", stacklevel=2)
                self._rewrite(keep, decoded)
        warn_upsampling(self.source_rates, self.sample_rate, f"audio cache of {self.audio_dir}")
        return counts

    def _decode_one(self, item: tuple[str, str]):
        "(name, decoded tuple of `_decode`, None), or (name, None, error message)."
        name, path = item
        try:
            return name, _decode(path, self.sample_rate, self.mono, self.dtype), None
        except (OSError, ValueError, RuntimeError) as e:
            return name, None, f"{type(e).__name__}: {e}"

    def _decode_all(self, todo: list[tuple[str, str]], progress: bool):
        "Decode `todo` [(name, path)] one by one; returns ({name: `_decode` tuple}, {name: error})."
        decoded: dict[str, tuple] = {}
        failed: dict[str, str] = {}
        if not todo:
            return decoded, failed
        results = map(self._decode_one, todo)
        if progress:
            from fastprogress.fastprogress import progress_bar

            pbar = progress_bar(results, total=len(todo), leave=False)
            pbar.comment = f"caching audio at {self.sample_rate} Hz"
            results = pbar
        for name, result, err in results:
            if err is None:
                decoded[name] = result
            else:
                failed[name] = err
        return decoded, failed

    def _rewrite(self, keep: dict[str, CacheEntry], decoded: dict[str, tuple]) -> None:
        "Write a new data file holding `keep` (copied) and `decoded`, then the index; delete older data files."
        old = self._open_data() if keep else None
        entries: dict[str, CacheEntry] = {}
        data_name = f"data-{secrets.token_hex(6)}.bin"

        def write(f):
            offset = 0
            for name in sorted(set(keep) | set(decoded)):
                if name in decoded:
                    key, source_rate, kind, stored = decoded[name]
                else:
                    e = keep[name]
                    key, source_rate, kind = e.key, e.source_rate, e.dtype
                    stored = None if old is None else self._entry_values(old, e)
                    if stored is None:  # truncated since `check` read it: this build fails, the old cache stays
                        raise OSError(f"data file {self.data_path} was truncated while it was copied; open the cache again")
                stored = np.ascontiguousarray(stored)
                start = _aligned(offset)
                f.write(bytes(start - offset))
                f.write(memoryview(stored).cast("B"))
                channels, samples = stored.shape
                entries[name] = CacheEntry(*key, source_rate, kind, start, channels, samples, _crc(stored))
                offset = start + stored.nbytes

        atomic_write(self.folder / data_name, write)
        data_size = max((e.offset + e.nbytes for e in entries.values()), default=0)
        self._write_index(entries, data_name, data_size)
        self._entries, self._data_name, self._data_size = entries, data_name, data_size
        self._data_mtime_ns = os.stat(self.folder / data_name).st_mtime_ns
        self._failed = set()
        self._reset_process_state()
        self._verified = set(entries)  # checksums were just computed from the values written
        for stale in self.folder.glob("data-*.bin"):
            if stale.name != data_name:
                with contextlib.suppress(OSError):  # a reader elsewhere keeps its mapping of an unlinked file
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
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            self._entries, self._data_name, self._data_size = {}, None, 0
            self._reset_process_state()
