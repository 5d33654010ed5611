"""fastai Transforms on waveforms (fastaudio names): `LoadAudio`, `DownmixMono`, `Resample`,
`ResizeSignal`, and the `AudioBlock` that opens files."""

from __future__ import annotations

import random
from pathlib import Path

from fastai.data.block import TransformBlock
from fasttransform import DisplayedTransform, Transform
from torch import Tensor

from .io import STORAGE_DTYPES, crop_pad, downmix_mono, quantize_waveform, resample
from .tensors import AudioTensor

__all__ = ["LoadAudio", "DownmixMono", "Resample", "ResizeSignal", "AudioBlock"]




class LoadAudio(DisplayedTransform):
    """Type transform: path -> `AudioTensor` at `sample_rate` Hz (None keeps the file's), mono when
    `mono`. With a `cache` (an `AudioCache`), decoded audio is read from it instead of the file.

    `dtype` ("int16", "float16", "float32" or None) rounds the decoded audio to that precision with
    `quantize_waveform`, exactly as an `AudioCache` of that dtype stores it, so a pipeline gives the
    same values with and without the cache. With a cache, `dtype` defaults to the cache's.
    """

    def __init__(self, sample_rate: int | None = 16000, mono: bool = True, cache=None, dtype: str | None = None):
        super().__init__()
        if dtype is not None and dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)} or None, got {dtype!r}")
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
        return AudioTensor(quantize_waveform(wav.as_subclass(Tensor), self.dtype), sr=wav.sr)


class DownmixMono(Transform):
    "Average an `AudioTensor`'s channels to one (fastaudio name)."

    def encodes(self, x: AudioTensor) -> AudioTensor:
        return downmix_mono(x)


class Resample(Transform):
    "Resample an `AudioTensor` to `sample_rate` Hz (fastaudio name)."

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def encodes(self, x: AudioTensor) -> AudioTensor:
        res = AudioTensor(resample(x, x.sr, self.sample_rate), **{**x._meta_kwargs(), "sr": self.sample_rate})
        return res


class ResizeSignal(DisplayedTransform):
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
    `LoadAudio`)."""
    return TransformBlock(type_tfms=LoadAudio(sample_rate=sample_rate, mono=mono, cache=cache, dtype=dtype))


