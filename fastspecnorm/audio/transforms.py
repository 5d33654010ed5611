"""fastai Transforms on waveforms (fastaudio names): `LoadAudio`, `DownmixMono`, `Resample`,
`ResizeSignal`, the `AudioBlock` that opens files and `AudioDataLoader`, which pads a batch of
clips of different lengths to its longest and records each clip's `lengths`."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from fastai.data.block import TransformBlock
from fastai.data.core import TfmdDL
from fasttransform import DisplayedTransform, Transform
from torch import Tensor

from .io import AUDIO_DTYPES, crop_pad, downmix_mono, from_storage, quantize_waveform, resample, storage_dtype, to_storage
from .tensors import AudioTensor, RefusePlainTensor

__all__ = [
    "array_layout",
    "MAX_ARRAY_CHANNELS",
    "LoadAudio",
    "DownmixMono",
    "Resample",
    "ResizeSignal",
    "AudioBlock",
    "AudioDataLoader",
    "RefusePlainTensor",
]


#: The most channels a NumPy waveform may have: of a 2-D array's axes, the one no longer than this
#: (and shorter than the other) is taken as channels.
MAX_ARRAY_CHANNELS = 32
#: NumPy integer dtypes whose values 16-bit PCM storage holds exactly (like `INT16_SUBTYPES` for files).
_INT16_ARRAY_DTYPES = (np.int8, np.uint8, np.int16)


def array_layout(shape: tuple[int, ...]) -> str:
    """The layout of a NumPy waveform of `shape`: "(samples,)", "(channels, samples)" or "(samples, channels)".

    A 2-D array's channel axis is the shorter one, of at most `MAX_ARRAY_CHANNELS` entries
    (soundfile reads `(samples, channels)`, torchaudio and this package use `(channels, samples)`).
    Raises ValueError naming the layouts for other shapes: 0 or 3+ dimensions, two equal axes
    (e.g. `(2, 2)`), or no axis short enough to be channels.
    """
    layouts = f"(samples,), (channels, samples) or (samples, channels) with at most {MAX_ARRAY_CHANNELS} channels"
    if len(shape) == 1:
        return "(samples,)"
    if len(shape) == 2:
        a, b = shape
        if a < b and a <= MAX_ARRAY_CHANNELS:
            return "(channels, samples)"
        if b < a and b <= MAX_ARRAY_CHANNELS:
            return "(samples, channels)"
        why = "both axes have the same length" if a == b else "neither axis is short enough to be the channels"
        raise ValueError(f"cannot tell a NumPy waveform's layout from its shape {shape} ({why}); expected {layouts}")
    raise ValueError(f"a NumPy waveform must be {layouts}, got shape {shape}")


def _as_float_array(x: np.ndarray) -> np.ndarray:
    """A NumPy waveform (see `array_layout`) as float32 `(channels, samples)`: integer PCM scaled to
    [-1, 1) (unsigned 8-bit centred at 128, as in WAV files), 1-D as one channel."""
    layout = array_layout(x.shape)
    if x.size == 0:
        raise ValueError(f"the NumPy waveform of shape {x.shape} has no samples")
    if x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"a NumPy waveform must hold floats or integer PCM, got dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("the NumPy waveform holds NaN or Inf samples")
    if layout == "(samples,)":
        return x[None]
    return np.ascontiguousarray(x.T) if layout == "(samples, channels)" else x


class LoadAudio(RefusePlainTensor, DisplayedTransform):
    """Type transform: path -> `AudioTensor` at `sample_rate` Hz (None keeps the file's), mono when
    `mono`. With a `cache` (an `AudioCache`), decoded audio is read from it instead of the file.

    Also takes audio already in memory (what `learn.predict` passes on): an `AudioTensor`
    `(channels, samples)` of any rate and channel count is downmixed and resampled from its `sr`
    the same way; a NumPy array `(samples,)`, `(channels, samples)` or `(samples, channels)` (see
    `array_layout`) is taken to be at `sample_rate` Hz, the loaders' rate, since an array carries no
    rate (integer arrays as PCM, scaled to [-1, 1)); wrap audio at another rate as
    `AudioTensor(x, sr=...)`.

    `dtype` ("auto", "int16", "float16", "float32" or None) rounds the decoded audio to that
    precision with `quantize_waveform`, exactly as an `AudioCache` of that dtype stores it, so a
    pipeline gives the same values with and without the cache. With a cache, `dtype` is the cache's.
    In-memory audio is rounded by the same rule, after downmixing and resampling, with its source
    format: an `AudioTensor.create(path)` keeps its file's `subtype`, an int8/uint8/int16 array
    counts as 16-bit PCM, any other audio as float ("auto" then keeps it unrounded). So a file and
    `AudioTensor.create` of it give the same values (and predictions), resampled or not.
    """

    def __init__(self, sample_rate: int | None = 16000, mono: bool = True, cache=None, dtype: str | None = None):
        super().__init__()
        if dtype is not None and dtype not in AUDIO_DTYPES:
            raise ValueError(f"dtype must be one of {list(AUDIO_DTYPES)} or None, got {dtype!r}")
        if cache is not None:
            mine = {"sample_rate": sample_rate, "mono": mono, "dtype": dtype or cache.dtype}
            theirs = {"sample_rate": cache.sample_rate, "mono": cache.mono, "dtype": cache.dtype}
            if mine != theirs:
                raise ValueError(
                    f"LoadAudio settings {mine} do not match its AudioCache's {theirs}; open the cache with the same settings"
                )
            dtype = cache.dtype
        self.sample_rate, self.mono, self.cache, self.dtype = sample_rate, mono, cache, dtype

    def encodes(self, path: str | Path) -> AudioTensor:
        if self.cache is not None:
            return AudioTensor(self.cache.get(path), sr=self.sample_rate)
        wav = AudioTensor.create(path, sr=self.sample_rate, mono=self.mono)
        if self.dtype in (None, "float32"):
            return wav
        return AudioTensor(quantize_waveform(wav.as_subclass(Tensor), self.dtype, source=path), sr=wav.sr)

    def encodes(self, x: AudioTensor) -> AudioTensor:  # noqa: F811  (fastai dispatches encodes on the annotation)
        wav = x.as_subclass(Tensor).float()
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() != 2:
            raise ValueError(f"LoadAudio expects one clip (channels, samples), got an AudioTensor of shape {tuple(x.shape)}")
        if self.mono:
            wav = downmix_mono(wav)
        sr = getattr(x, "sr", None)
        if sr is None:
            raise ValueError("the AudioTensor has no sample rate; create it with AudioTensor(x, sr=...)")
        if wav.shape[-1] == 0:
            raise ValueError(f"the AudioTensor of shape {tuple(x.shape)} has no samples")
        if self.sample_rate is not None and sr != self.sample_rate:
            wav, sr = resample(wav, sr, self.sample_rate), self.sample_rate
        return AudioTensor(self._round(wav, getattr(x, "subtype", None)), sr=sr)

    def encodes(self, x: np.ndarray) -> AudioTensor:  # noqa: F811
        if self.sample_rate is None:
            raise ValueError("LoadAudio(sample_rate=None) cannot tell a NumPy array's rate; pass AudioTensor(x, sr=...)")
        subtype = "PCM_16" if x.dtype in _INT16_ARRAY_DTYPES else None
        return self.encodes(AudioTensor(torch.from_numpy(_as_float_array(x)), sr=self.sample_rate, subtype=subtype))

    def _round(self, wav: Tensor, subtype: str | None) -> Tensor:
        "In-memory audio rounded as the cache rounds a file of `subtype` (None: a float source)."
        if self.dtype in (None, "float32"):
            return wav
        kind = storage_dtype(self.dtype, wav, subtype or "FLOAT")
        return from_storage(to_storage(wav, kind))


class DownmixMono(RefusePlainTensor, Transform):
    "Average an `AudioTensor`'s channels to one (fastaudio name)."

    def encodes(self, x: AudioTensor) -> AudioTensor:
        return downmix_mono(x)


class Resample(RefusePlainTensor, Transform):
    "Resample an `AudioTensor` to `sample_rate` Hz (fastaudio name)."

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def encodes(self, x: AudioTensor) -> AudioTensor:
        res = AudioTensor(resample(x, x.sr, self.sample_rate), **{**x._meta_kwargs(), "sr": self.sample_rate})
        return res


class ResizeSignal(RefusePlainTensor, DisplayedTransform):
    """Crop or pad an `AudioTensor` to `duration` seconds (fastaudio name).

    On the training split (split_idx 0) the crop start is random; on validation and test it is
    deterministic (`valid_crop`: "start" or "center"), so validation results do not change between
    epochs. Shorter clips are padded at the end (`pad_mode` "zeros" or "repeat").
    """

    order = 5

    def __init__(self, duration: float, pad_mode: str = "zeros", valid_crop: str = "start"):
        super().__init__()
        if not duration > 0:
            raise ValueError(f"duration must be positive seconds, got {duration}")
        if valid_crop not in ("start", "center"):
            raise ValueError(f"valid_crop must be 'start' or 'center', got {valid_crop!r}")
        if pad_mode not in ("zeros", "repeat"):
            raise ValueError(f"pad_mode must be 'zeros' or 'repeat', got {pad_mode!r}")
        self.duration, self.pad_mode, self.valid_crop = duration, pad_mode, valid_crop
        self._split_idx = None

    def __call__(self, x, split_idx=None, **kwargs):
        self._split_idx = split_idx
        return super().__call__(x, split_idx=split_idx, **kwargs)

    def crop_start(self, extra: int, split_idx: int | None) -> int:
        """Start (in samples) of the crop of a clip `extra` samples longer than wanted (<= 0: no crop).
        Draws from Python's `random` only for a training item that needs a crop."""
        if extra <= 0:
            return 0
        if split_idx == 0:
            return random.randint(0, extra)
        return extra // 2 if self.valid_crop == "center" else 0

    def encodes(self, x: AudioTensor) -> AudioTensor:
        n = int(round(self.duration * x.sr))
        return crop_pad(x, n, self.crop_start(x.shape[-1] - n, self._split_idx), self.pad_mode)


def AudioBlock(sample_rate: int | None = 16000, mono: bool = True, cache=None, dtype: str | None = None) -> TransformBlock:
    """A fastai `TransformBlock` that opens audio files as `AudioTensor` at `sample_rate` Hz (see
    `LoadAudio`); its loaders are `AudioDataLoader`s, so clips of different lengths make a padded
    batch with `lengths` instead of a collate error."""
    return TransformBlock(
        type_tfms=LoadAudio(sample_rate=sample_rate, mono=mono, cache=cache, dtype=dtype), dl_type=AudioDataLoader
    )


def _pad_column(column: list) -> tuple[list, Tensor | None]:
    "Clips of one batch position padded with zeros to the longest, and their lengths (None: all equal)."
    lengths = [x.shape[-1] for x in column]
    longest = max(lengths)
    if min(lengths) == longest:
        return column, None
    padded = [x if n == longest else torch.nn.functional.pad(x, (0, longest - n)) for x, n in zip(column, lengths, strict=True)]
    return padded, torch.tensor(lengths, dtype=torch.long)


class AudioDataLoader(TfmdDL):
    """fastai's `TfmdDL` whose batches of clips of different lengths are padded with zeros at the
    end to the longest clip of the batch: the batch's `AudioTensor` `(batch, channels, samples)`
    then carries `lengths`, the valid samples of each clip (LongTensor `(batch,)`; None when all
    clips have the same length). The batch transforms use it (`WaveformNormalize` standardizes over
    each clip's own samples, `AudioToSpec` gives frame `lengths`, statistics and normalizations
    skip the padding). Everything else is `TfmdDL`'s (workers, `show_batch`, `test_dl`)."""

    def create_batch(self, b):
        items = list(b)
        if self.prebatched or not items:
            return super().create_batch(b)
        tupled = isinstance(items[0], tuple)
        columns = list(zip(*items, strict=True)) if tupled else [items]
        lengths = {}
        for i, column in enumerate(columns):
            if isinstance(column[0], AudioTensor) and column[0].dim() >= 1:
                columns[i], lengths[i] = _pad_column(list(column))
        items = [tuple(row) for row in zip(*columns, strict=True)] if tupled else columns[0]
        res = super().create_batch(items)
        batch = list(res) if tupled else [res]
        for i, n in lengths.items():
            batch[i].lengths = n
        return res
