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

from .io import AUDIO_DTYPES, crop_pad, downmix_mono, quantize_waveform, resample
from .tensors import AudioTensor, RefusePlainTensor

__all__ = ["LoadAudio", "DownmixMono", "Resample", "ResizeSignal", "AudioBlock", "AudioDataLoader", "RefusePlainTensor"]


def _as_float_array(x: np.ndarray) -> np.ndarray:
    "A NumPy waveform as float32 `(channels, samples)`: integer PCM scaled to [-1, 1), 1-D as one channel."
    if x.ndim not in (1, 2):
        raise ValueError(f"a NumPy waveform must be (samples,) or (channels, samples), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"a NumPy waveform must hold floats or integer PCM, got dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float32)
    return x[None] if x.ndim == 1 else x




class LoadAudio(RefusePlainTensor, DisplayedTransform):
    """Type transform: path -> `AudioTensor` at `sample_rate` Hz (None keeps the file's), mono when
    `mono`. With a `cache` (an `AudioCache`), decoded audio is read from it instead of the file.

    Also takes audio already in memory (what `learn.predict` passes on): an `AudioTensor` of any
    rate and channel count is downmixed and resampled the same way; a NumPy array
    `(samples,)` or `(channels, samples)` is taken to be at `sample_rate` Hz (integer arrays as
    PCM, scaled to [-1, 1)); wrap other rates as `AudioTensor(x, sr=...)`. In-memory audio is not
    rounded to `dtype`.

    `dtype` ("int16", "float16", "float32" or None) rounds the decoded audio to that precision with
    `quantize_waveform`, exactly as an `AudioCache` of that dtype stores it, so a pipeline gives the
    same values with and without the cache. With a cache, `dtype` defaults to the cache's.
    """

    def __init__(self, sample_rate: int | None = 16000, mono: bool = True, cache=None, dtype: str | None = None):
        super().__init__()
        if dtype is not None and dtype not in AUDIO_DTYPES:
            raise ValueError(f"dtype must be one of {list(AUDIO_DTYPES)} or None, got {dtype!r}")
        if cache is not None:
            mine = {"sample_rate": sample_rate, "mono": mono, "dtype": dtype or cache.dtype}
            theirs = {"sample_rate": cache.sample_rate, "mono": cache.mono, "dtype": cache.dtype}
            if mine != theirs:
                raise ValueError(f"LoadAudio settings {mine} do not match its AudioCache's {theirs}; open the cache with the same settings")
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
        if self.sample_rate is not None and sr != self.sample_rate:
            wav, sr = resample(wav, sr, self.sample_rate), self.sample_rate
        return AudioTensor(wav, sr=sr)

    def encodes(self, x: np.ndarray) -> AudioTensor:  # noqa: F811
        if self.sample_rate is None:
            raise ValueError("LoadAudio(sample_rate=None) cannot tell a NumPy array's rate; pass AudioTensor(x, sr=...)")
        return self.encodes(AudioTensor(torch.from_numpy(_as_float_array(x)), sr=self.sample_rate))


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
    return TransformBlock(type_tfms=LoadAudio(sample_rate=sample_rate, mono=mono, cache=cache, dtype=dtype), dl_type=AudioDataLoader)


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
