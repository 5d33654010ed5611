"""Reading audio files and the plain waveform operations: downmix, resample, crop/pad, rounding to storage types."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._compat import import_torchaudio

__all__ = [
    "AudioLoadError",
    "load_audio",
    "load_audio_with_subtype",
    "downmix_mono",
    "resample",
    "resampling_source_rate",
    "warn_upsampling",
    "crop_pad",
    "quantize_waveform",
    "to_storage",
    "from_storage",
    "storage_dtype",
    "source_format",
    "STORAGE_DTYPES",
    "AUDIO_DTYPES",
    "INT16_SUBTYPES",
    "SAMPLE_RATE_RANGE",
    "sample_rate_problem",
    "header_problem",
    "MAX_RESAMPLE_KERNEL",
    "MAX_RATE_ROUNDING",
    "AUDIO_EXTENSIONS",
    "audio_extensions",
    "is_audio_file",
    "UNREADABLE_FORMATS",
    "unreadable_format",
    "unreadable_files_note",
]

SAMPLE_RATE_RANGE = (1_000, 384_000)
"""Sample rates (Hz, inclusive: 1 kHz - 384 kHz) a file may have; others are refused as damaged headers."""
_DAMAGED = "its header is probably damaged: re-encode the file or leave it out"

#: File extensions of each soundfile (libsndfile) format name, for the formats people store audio in.
_FORMAT_EXTENSIONS = {
    "WAV": (".wav",),
    "WAVEX": (".wav",),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "AIFF": (".aif", ".aiff", ".aifc"),
    "AU": (".au", ".snd"),
    "CAF": (".caf",),
    "W64": (".w64",),
    "RF64": (".rf64",),
    "NIST": (".nist", ".sph"),
    "VOC": (".voc",),
}


@lru_cache(maxsize=1)
def audio_extensions() -> tuple[str, ...]:
    """The extensions (lower case, with the dot, sorted) of the audio formats soundfile reads on this machine.

    Examples:
        >>> ".wav" in audio_extensions() and ".flac" in audio_extensions()
        True
    """
    import soundfile as sf

    available = set(sf.available_formats())
    return tuple(sorted({ext for fmt, exts in _FORMAT_EXTENSIONS.items() if fmt in available for ext in exts}))


AUDIO_EXTENSIONS = audio_extensions()
"""`audio_extensions()` as a constant, e.g. `('.aif', ..., '.flac', '.mp3', ..., '.wav')`."""


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether the name of `path` ends with one of `audio_extensions()`, case-insensitively; the file is not opened.

    Args:
        path: a file name or path.

    Examples:
        >>> is_audio_file("dog/1-100032-A-0.WAV"), is_audio_file("labels.csv")
        (True, False)
    """
    return os.fspath(path).lower().endswith(audio_extensions())


#: Formats people keep audio in that soundfile (libsndfile) does not decode, by file extension.
UNREADABLE_FORMATS = {".m4a": "AAC or ALAC in MP4", ".mp4": "MP4", ".aac": "AAC", ".wma": "WMA", ".webm": "WebM"}


def unreadable_format(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read (a sentence without its name) when its extension is in `UNREADABLE_FORMATS`, else None.

    Args:
        path: a file name or path; only its extension is looked at, case-insensitively.

    Examples:
        >>> unreadable_format("voice/take1.M4A")
        '.m4a (AAC or ALAC in MP4) is not a format soundfile reads: convert it first, e.g. ffmpeg -i take1.M4A take1.flac'
        >>> unreadable_format("clip.wav") is None
        True
    """
    path = Path(path)
    kind = UNREADABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        return None
    return (f"{path.suffix.lower()} ({kind}) is not a format soundfile reads: convert it first, "
            f"e.g. ffmpeg -i {path.name} {path.stem}.flac")  # fmt: skip


def unreadable_files_note(paths) -> str:
    """A clause for an error about a folder without usable audio: how many of `paths` are in a format
    soundfile does not decode, and the way out; empty when none is.

    Args:
        paths: file paths, e.g. `Path(folder).rglob("*")`.

    Returns:
        E.g. "; it holds 12 .m4a file(s): .m4a (AAC or ALAC in MP4) is not a format soundfile reads: convert
            it first, e.g. ffmpeg -i a.m4a a.flac", or "".
    """
    found = [p for p in map(Path, paths) if p.suffix.lower() in UNREADABLE_FORMATS]
    if not found:
        return ""
    counts = ", ".join(f"{n} {ext} file(s)" for ext, n in sorted(Counter(p.suffix.lower() for p in found).items()))
    return f"; it holds {counts}: {unreadable_format(min(found, key=lambda p: p.suffix.lower()))}"


class AudioLoadError(ValueError):
    """An audio file exists but cannot be decoded, is empty, holds NaN/Inf samples or has a header `header_problem`
    refuses; the message names the file. Raised by `load_audio`, so by `AudioTensor.create`, `LoadAudio`, `AudioCache.get`."""


def sample_rate_problem(sr: int) -> str | None:
    """Why a file's header sample rate is refused (worded to follow the file's name), or None when it lies in
    `SAMPLE_RATE_RANGE`. A damaged header claiming 1 Hz would otherwise be upsampled 16000-fold to 16 kHz.

    Args:
        sr: the sample rate from a file's header, in Hz.

    Examples:
        >>> sample_rate_problem(16000) is None
        True
        >>> sample_rate_problem(1)
        'claims a sample rate of 1 Hz, outside the plausible 1000-384000 Hz; ...'
    """
    low, high = SAMPLE_RATE_RANGE
    return None if low <= sr <= high else f"claims a sample rate of {sr} Hz, outside the plausible {low}-{high} Hz; {_DAMAGED}"


#: Bytes of one sample of the soundfile subtypes stored as plain interleaved frames (WAV, W64, RF64).
_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
                 "DOUBLE": 8}  # fmt: skip
_BLOCK_ALIGN = re.compile(r"^\s*Block Align\s*:\s*(\d+)\s*$", re.MULTILINE)


def header_problem(header) -> str | None:
    """Why a file's header is refused by `load_audio` and `check_audio_file` (worded to follow its name), or None.

    Refused: a sample rate outside `SAMPLE_RATE_RANGE`, and a WAV / W64 / RF64 header whose channels and
    sample size disagree with its block align (libsndfile would read the samples at the wrong stride: noise).

    Args:
        header: what soundfile gives for an open file: `soundfile.info(path)` or a `SoundFile`
            (its `samplerate`, `channels`, `subtype` and `extra_info`, libsndfile's header log).

    Examples:
        >>> import os, tempfile
        >>> import numpy as np, soundfile as sf
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = os.path.join(d, "tone.wav")
        ...     sf.write(path, np.zeros(1600, dtype="float32"), 16000, subtype="PCM_16")
        ...     print(header_problem(sf.info(path)))
        None
    """
    rate_problem = sample_rate_problem(int(header.samplerate))
    if rate_problem is not None:
        return rate_problem
    sample_bytes = _SAMPLE_BYTES.get(str(header.subtype))  # compressed subtypes (ADPCM, GSM) have blocks, not frames
    found = _BLOCK_ALIGN.search(header.extra_info or "") if sample_bytes else None
    channels = int(header.channels)
    if found is None or int(found.group(1)) == channels * sample_bytes:
        return None
    return (
        f"claims {channels} channel(s) of {header.subtype} samples, {channels} x {sample_bytes} = "
        f"{channels * sample_bytes} bytes a frame, but a block align of {found.group(1)} bytes: its header is damaged "
        "(its samples would decode as noise); re-encode the file or leave it out"
    )


def load_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """Read an audio file with soundfile (any format of `audio_extensions()`; no FFmpeg needed).

    Args:
        path: the audio file.

    Returns:
        `(waveform, sample_rate)`: float32 `(channels, samples)`, in [-1, 1] for integer PCM (float files
            keep their values, peaks above 1.0 included), and its sample rate in Hz.

    Raises:
        FileNotFoundError: `path` is missing (or not a regular file).
        AudioLoadError: (a ValueError naming the file) the file cannot be decoded, is empty, holds
            NaN/Inf, or has a header `header_problem` refuses (checked before any sample is read).

    Examples:
        >>> import os, tempfile
        >>> import numpy as np, soundfile as sf
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = os.path.join(d, "silence.wav")
        ...     sf.write(path, np.zeros((8000, 2), dtype="float32"), 8000, subtype="PCM_16")
        ...     wav, sr = load_audio(path)
        >>> wav.shape, wav.dtype, sr
        (torch.Size([2, 8000]), torch.float32, 8000)
    """
    return load_audio_with_subtype(path)[:2]


def load_audio_with_subtype(path: str | os.PathLike) -> tuple[Tensor, int, str]:
    """`load_audio` that also returns the file's subtype, read from the same open: `(waveform, sample_rate,
    subtype)`, the subtype being soundfile's name of the file's sample format, e.g. 'PCM_16', 'FLOAT', 'VORBIS'.

    Args:
        path: the audio file.

    Raises:
        FileNotFoundError: `path` is missing (or not a regular file).
        AudioLoadError: as in `load_audio`.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(str(path)) as f:
            sr, subtype = int(f.samplerate), str(f.subtype)
            problem = header_problem(f)
            data = f.read(dtype="float32", always_2d=True) if problem is None else None
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise AudioLoadError(f"cannot read audio file {path}: {e}") from e
    if problem is not None:
        raise AudioLoadError(f"audio file {path} {problem}")
    if data.shape[0] == 0:
        raise AudioLoadError(f"audio file {path} has no samples (zero length)")
    if not np.isfinite(data).all():
        raise AudioLoadError(f"audio file {path} holds NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), sr, subtype


def source_format(path: str | os.PathLike) -> tuple[int, str]:
    """`(sample rate in Hz, subtype)` from the header of `path` (no sample decoded), subtype as in `load_audio_with_subtype`.

    Args:
        path: the audio file.

    Raises:
        AudioLoadError: (a ValueError naming the file) the header cannot be read.
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # as in load_audio
        raise AudioLoadError(f"cannot read audio file {path}: {e}") from e
    return int(info.samplerate), info.subtype


def downmix_mono(x: Tensor) -> Tensor:
    """Average the channels of a waveform to one: `(..., 1, samples)`, `x` itself when it has one channel.

    Args:
        x: waveform `(..., channels, samples)`.

    Examples:
        >>> import torch
        >>> downmix_mono(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([[0.5000, 0.5000]])
    """
    return x if x.shape[-2] == 1 else x.mean(dim=-2, keepdim=True)


MAX_RESAMPLE_KERNEL = 2**22
"""The largest sinc kernel `resample` lets torchaudio build: 2**22 values, 16 MiB in float32 (44100 -> 16000 Hz needs 76 000)."""
MAX_RATE_ROUNDING = 1e-3
"""How far (relative) `resample` may round a source rate whose exact kernel is too large: 0.1%."""


def _kernel_elements(orig_sr: int, new_sr: int) -> int:
    "Size of torchaudio's sinc kernel for orig_sr -> new_sr (lowpass_filter_width 6, rolloff 0.99)."
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    width = math.ceil(6 * orig / (0.99 * min(orig, new)))
    return new * (orig + 2 * width)


@lru_cache(maxsize=256)
def resampling_source_rate(orig_sr: int, new_sr: int) -> int:
    """The source rate `resample` treats audio at `orig_sr` as having when going to `new_sr`: `orig_sr` itself when
    the pair's kernel has at most `MAX_RESAMPLE_KERNEL` values (every common pair), else the nearest rate within
    `MAX_RATE_ROUNDING` whose kernel does, scaling the clip's frequencies by that much (-23 ppm for 44101 -> 44100 Hz).

    Args:
        orig_sr: the audio's sample rate, in Hz.
        new_sr: the target sample rate, in Hz.

    Raises:
        ValueError: (naming both rates) no rate within `MAX_RATE_ROUNDING` of `orig_sr` has a small enough kernel.

    Examples:
        >>> resampling_source_rate(44100, 16000), resampling_source_rate(44101, 16000)
        (44100, 44100)
    """
    if _kernel_elements(orig_sr, new_sr) <= MAX_RESAMPLE_KERNEL:
        return orig_sr
    for step in range(1, int(orig_sr * MAX_RATE_ROUNDING) + 1):
        for rate in (orig_sr - step, orig_sr + step):
            if rate > 0 and _kernel_elements(rate, new_sr) <= MAX_RESAMPLE_KERNEL:
                return rate
    size = _kernel_elements(orig_sr, new_sr) * 4 / 2**20
    raise ValueError(
        f"resampling {orig_sr} Hz -> {new_sr} Hz needs a {size:.0f} MiB sinc kernel (the rates share no large common "
        f"factor) and no rate within {MAX_RATE_ROUNDING:.1%} of {orig_sr} Hz avoids that; choose a target rate such as "
        "16000, 22050, 44100 or 48000 Hz, or re-encode the file"
    )


@lru_cache(maxsize=16)
def _resampler(orig_sr: int, new_sr: int, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    # The sinc kernel must have the waveform's dtype and device (conv1d does not mix them).
    return import_torchaudio().transforms.Resample(orig_sr, new_sr, dtype=dtype).to(device)


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited (windowed sinc) resampling with torchaudio; a rate pair whose exact kernel would exceed
    `MAX_RESAMPLE_KERNEL` values is resampled from the nearest rate that fits (`resampling_source_rate`), with a warning.

    Args:
        x: waveform `(..., samples)` at `orig_sr` Hz; any float dtype, on any device.
        orig_sr: the sample rate of `x`, in Hz.
        new_sr: the target sample rate, in Hz; `x` itself is returned when it equals `orig_sr`.

    Returns:
        `(..., ceil(samples * new_sr / orig_sr))` at `new_sr` Hz, same dtype and device as `x`
            (float16/bfloat16 are computed in float32).

    Raises:
        ValueError: a rate is not positive, or no rate near `orig_sr` fits (see `resampling_source_rate`).

    Examples:
        >>> import torch
        >>> resample(torch.zeros(1, 44100), 44100, 16000).shape
        torch.Size([1, 16000])
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, new_sr={new_sr}")
    if orig_sr == new_sr:
        return x
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    used_sr = resampling_source_rate(orig_sr, new_sr)
    if used_sr != orig_sr:
        warnings.warn(
            f"resampling {orig_sr} Hz -> {new_sr} Hz exactly needs a {_kernel_elements(orig_sr, new_sr) * 4 / 2**30:.1f} GiB "
            f"kernel; the audio is resampled as if it were at {used_sr} Hz (its frequencies scaled by "
            f"{(used_sr / orig_sr - 1) * 1e6:+.0f} ppm, the length kept)",
            stacklevel=2,
        )
    plain = x.as_subclass(Tensor)
    dtype = plain.dtype if plain.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.no_grad():
        out = _resampler(used_sr, new_sr, dtype, str(plain.device))(plain.to(dtype)).to(plain.dtype)
    return out if used_sr == orig_sr else crop_pad(out, math.ceil(x.shape[-1] * new_sr / orig_sr))


def warn_upsampling(files_per_rate: Mapping[int, int], sample_rate: int, where: str) -> None:
    """Warn once, naming the rates, when audio below `sample_rate` Hz is upsampled to it (which adds
    no information: the spectrogram above each file's Nyquist frequency stays empty).

    Args:
        files_per_rate: `{source rate in Hz: number of files}`.
        sample_rate: the rate the audio is resampled to, in Hz.
        where: what reads the files (a folder, a cache), named in the message.
    """
    low = {rate: n for rate, n in sorted(files_per_rate.items()) if rate < sample_rate}
    if not low:
        return
    rates = ", ".join(f"{n} file(s) at {rate} Hz" for rate, n in low.items())
    warnings.warn(
        f"{where}: {rates} upsampled to {sample_rate} Hz; above {min(low) // 2} Hz their spectrograms hold no signal. "
        f"Pass sample_rate={min(files_per_rate)} to keep the lowest rate (or None when all files share one)",
        stacklevel=3,
    )


STORAGE_DTYPES = {"int16": np.int16, "float16": np.float16, "float32": np.float32}
"""Precisions decoded audio can be stored at (the `AudioCache` storage types), each with its NumPy dtype."""
AUDIO_DTYPES = ("auto", *STORAGE_DTYPES)
"""`dtype` arguments of `quantize_waveform`, `LoadAudio` and `AudioCache`: a storage type, or "auto" (see `storage_dtype`)."""
INT16_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "ULAW", "ALAW"})
"""soundfile subtypes whose decoded values 16-bit PCM holds exactly: integer PCM of at most 16
bits and the 8-bit companded formats (they decode to 13 or 14 bits)."""


def storage_dtype(dtype: str, x: Tensor, subtype: str | None = None) -> str:
    """The storage type of one clip ("int16", "float16" or "float32"): `dtype` itself, or what keeps its source for "auto".

    For "auto": "int16" when the source's `subtype` is in `INT16_SUBTYPES` and every value of `x` lies in
    [-1, 32767/32768], else "float32" (nothing is clipped, and quiet clips are never rounded to silence).

    Args:
        dtype: one of `AUDIO_DTYPES`: "auto", "int16", "float16" or "float32".
        x: the decoded float waveform, any shape (only read for "auto").
        subtype: soundfile's name of the source's sample format (`source_format(path)[1]`), e.g.
            "PCM_16"; needed for "auto", ignored otherwise.

    Raises:
        ValueError: `dtype` is not one of `AUDIO_DTYPES`, or it is "auto" and `subtype` is None.

    Examples:
        >>> import torch
        >>> storage_dtype("auto", torch.zeros(1, 10), "PCM_16"), storage_dtype("auto", torch.zeros(1, 10), "PCM_24")
        ('int16', 'float32')
    """
    if dtype not in AUDIO_DTYPES:
        raise ValueError(f"dtype must be one of {list(AUDIO_DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if subtype is None:
        raise ValueError('dtype="auto" needs the source file\'s subtype (source_format(path)) to pick a storage type')
    fits = x.numel() == 0 or (-1.0 <= x.min().item() and x.max().item() <= 32767 / 32768)
    return "int16" if subtype in INT16_SUBTYPES and fits else "float32"


def to_storage(x: Tensor, dtype: str) -> Tensor:
    """A float waveform as the values storage type `dtype` keeps: the package's one rounding rule.

    "int16" is 16-bit PCM, `clamp(round(x * 32768), -32768, 32767)` (round half to even, exact for
    audio decoded from 16-bit files); "float16" rounds to half precision; "float32" keeps the values.

    Args:
        x: float waveform, any shape; the result has its shape.
        dtype: one of `STORAGE_DTYPES`: "int16", "float16" or "float32".

    Raises:
        ValueError: `dtype` is not one of `STORAGE_DTYPES` (resolve "auto" first, with `storage_dtype`).

    Examples:
        >>> import torch
        >>> to_storage(torch.tensor([0.5, -1.0, 1.0]), "int16")
        tensor([ 16384, -32768,  32767], dtype=torch.int16)
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    if dtype == "int16":
        return (x.float() * 32768.0).round_().clamp_(-32768.0, 32767.0).to(torch.int16)
    return x.to(getattr(torch, dtype))


def from_storage(stored: Tensor) -> Tensor:
    """Stored values as float32 of the same shape; int16 / 32768 is exact.

    Args:
        stored: int16, float16 or float32 tensor, any shape (from `to_storage`).
    """
    return stored.float().mul_(1.0 / 32768.0) if stored.dtype == torch.int16 else stored.float()


def quantize_waveform(x: Tensor, dtype: str | None = "int16", source: str | os.PathLike | None = None) -> Tensor:
    """Round a float waveform to the precision `dtype` keeps, as float32 of the same shape:
    `from_storage(to_storage(x, dtype))`, exactly what `AudioCache` stores.

    Args:
        x: float waveform, any shape.
        dtype: "int16", "float16", "float32", None (unchanged), or "auto": the storage type that
            keeps the `source` file (`storage_dtype`; `source` is then required).
        source: the file `x` was decoded from; its header is read for dtype "auto".

    Raises:
        ValueError: `dtype` is not one of `AUDIO_DTYPES` or None, or it is "auto" without `source`.
        AudioLoadError: `dtype` is "auto" and the header of `source` cannot be read.

    Examples:
        >>> import torch
        >>> quantize_waveform(torch.tensor([0.1]), "int16")
        tensor([0.1000])
        >>> quantize_waveform(torch.tensor([0.1]), "int16").item() == 3277 / 32768
        True
    """
    if dtype is None:
        return x.float()
    subtype = source_format(source)[1] if dtype == "auto" and source is not None else None
    return from_storage(to_storage(x, storage_dtype(dtype, x, subtype)))


def crop_pad(x: Tensor, n_samples: int, start: int = 0, pad_mode: str = "zeros") -> Tensor:
    """Fixed length `(..., n_samples)`: crop `n_samples` from `start` along the last axis, or pad at the end.

    Args:
        x: waveform `(..., samples)`.
        n_samples: the length wanted, in samples.
        start: first sample of the crop, for a clip longer than `n_samples`.
        pad_mode: how a shorter clip is padded: "zeros" pads with silence, "repeat" tiles the clip.

    Raises:
        ValueError: `pad_mode` is neither "zeros" nor "repeat" (for a clip that needs padding).

    Examples:
        >>> import torch
        >>> crop_pad(torch.tensor([1.0, 2.0, 3.0]), 5, pad_mode="repeat")
        tensor([1., 2., 3., 1., 2.])
        >>> crop_pad(torch.tensor([1.0, 2.0, 3.0]), 2, start=1)
        tensor([2., 3.])
    """
    length = x.shape[-1]
    if length >= n_samples:
        return x[..., start : start + n_samples]
    if pad_mode == "zeros":
        return torch.nn.functional.pad(x, (0, n_samples - length))
    if pad_mode == "repeat":
        reps = math.ceil(n_samples / max(length, 1))
        return x.repeat(*([1] * (x.dim() - 1)), reps)[..., :n_samples]
    raise ValueError(f"pad_mode must be 'zeros' or 'repeat', got {pad_mode!r}")
