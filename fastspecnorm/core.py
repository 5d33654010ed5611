"""Audio core: tensor types, loading, downmix, resampling and fixed-length crop/pad.

Names follow fastaudio where they exist (`AudioTensor.create`, `AudioSpectrogram`, `AudioBlock`,
`DownmixMono`, `Resample`, `ResizeSignal`) so that fastaudio users recognize them, but audio is read
with soundfile (WAV, FLAC, OGG; no FFmpeg or torchcodec needed) and metadata survives `clone`,
pickling and DataLoader workers.
"""

from __future__ import annotations

import math
import os
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from fastai.data.block import TransformBlock
from fastai.torch_core import TensorBase
from fasttransform import DisplayedTransform, Transform
from torch import Tensor

__all__ = [
    "AudioTensor",
    "AudioSpectrogram",
    "load_audio",
    "downmix_mono",
    "resample",
    "crop_pad",
    "LoadAudio",
    "DownmixMono",
    "Resample",
    "ResizeSignal",
    "AudioBlock",
    "AudioLoadError",
]


class AudioLoadError(ValueError):
    "An audio file exists but cannot be decoded; the message names the file."


class _MetaTensor(TensorBase):
    """TensorBase whose metadata (in `__dict__`) also survives `clone` and the `new_*` methods,
    which fastai's TensorBase re-creates without it."""

    def clone(self, *, memory_format=None):
        res = super().clone(memory_format=memory_format)
        res.__dict__ = dict(self.__dict__)
        return res

    def _meta_kwargs(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class AudioTensor(_MetaTensor):
    """A waveform: `(channels, samples)` for one clip, `(batch, channels, samples)` for a batch.

    `sr` is the sample rate in Hz. `AudioTensor(x, sr=16000)` wraps a tensor;
    `AudioTensor.create(path, sr=None, mono=True)` loads a file.
    """

    def __new__(cls, x, sr: int | None = 16000, **kwargs):
        return super().__new__(cls, x, sr=sr, **kwargs)

    @classmethod
    def create(cls, path, sr: int | None = None, mono: bool = True, **kwargs) -> AudioTensor:
        "Load `path` as float32 in [-1, 1], optionally downmixed to mono and resampled to `sr` Hz."
        wav, file_sr = load_audio(path)
        if mono:
            wav = downmix_mono(wav)
        if sr is not None and sr != file_sr:
            wav = resample(wav, file_sr, sr)
        return cls(wav, sr=sr or file_sr, **kwargs)

    @property
    def duration(self) -> float:
        "Length in seconds."
        return self.shape[-1] / self.sr

    @property
    def nchannels(self) -> int:
        return self.shape[-2] if self.dim() >= 2 else 1

    def show(self, ctx=None, title: str | None = None, **kwargs):
        "Plot the waveform against time in seconds, one line per channel."
        import matplotlib.pyplot as plt

        ax = ctx if ctx is not None else plt.subplots(figsize=kwargs.pop("figsize", (6, 2)))[1]
        x = self.as_subclass(Tensor).detach().float().cpu()
        x = x.reshape(-1, x.shape[-1])
        t = np.arange(x.shape[-1]) / (self.sr or 1)
        for i, ch in enumerate(x):
            ax.plot(t, ch.numpy(), lw=0.5, label=f"ch {i}" if len(x) > 1 else None, **kwargs)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("amplitude")
        ax.set_xlim(0, t[-1] if len(t) else 1)
        if title:
            ax.set_title(title)
        return ax


class AudioSpectrogram(_MetaTensor):
    """A spectrogram: `(channels, freq, time)` for one clip, `(batch, channels, freq, time)` batched.

    Metadata: `sr` (Hz), `hop_length` (samples), `n_fft`, `n_mels` (None for a linear frequency
    axis), `f_max` (Hz) and `unit` ("dB", "power", "std" after standardization, "[0, 1]" after a
    min-max or dB-range scaling), used by `show` to label axes in seconds and Hz.
    """

    def show(self, ctx=None, title: str | None = None, colorbar: bool = True, **kwargs):
        "Image of the first channel, time in seconds on x, frequency in Hz on y, colorbar in `unit`."
        import matplotlib.pyplot as plt

        figsize = kwargs.pop("figsize", (5, 3))
        ax = ctx if ctx is not None else plt.subplots(figsize=figsize)[1]
        x = self.as_subclass(Tensor).detach().float().cpu()
        while x.dim() > 2:
            x = x[0]
        sr = getattr(self, "sr", None)
        hop = getattr(self, "hop_length", None)
        n_frames, n_freq = x.shape[-1], x.shape[-2]
        t_end = n_frames * hop / sr if sr and hop else n_frames
        f_max = getattr(self, "f_max", None) or (sr / 2 if sr else n_freq)
        n_mels = getattr(self, "n_mels", None)
        im = ax.imshow(x.numpy(), origin="lower", aspect="auto", extent=(0, t_end, 0, f_max), cmap=kwargs.pop("cmap", "magma"), **kwargs)
        ax.set_xlabel("time (s)" if sr and hop else "frame")
        ax.set_ylabel("frequency (Hz" + (", mel-spaced)" if n_mels else ")"))
        if n_mels:
            _mel_ticks(ax, n_mels, f_max)
        if colorbar:
            ax.figure.colorbar(im, ax=ax, label=getattr(self, "unit", None) or "value")
        if title:
            ax.set_title(title)
        return ax


def _mel_ticks(ax, n_mels: int, f_max: float) -> None:
    "Label a mel-binned axis (plotted linearly from 0 to f_max) with the Hz of its bins."
    mel_max = 2595 * math.log10(1 + f_max / 700)
    ticks_hz = [f for f in (0, 250, 500, 1000, 2000, 4000, 8000, 16000) if f <= f_max]
    pos = [2595 * math.log10(1 + f / 700) / mel_max * f_max for f in ticks_hz]
    ax.set_yticks(pos)
    ax.set_yticklabels([f"{f:g}" for f in ticks_hz])


# ---------------------------------------------------------------------------------------------
# Plain functions


def load_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """Read an audio file with soundfile. Returns `(waveform, sample_rate)`, waveform float32
    `(channels, samples)` in [-1, 1], sample rate in Hz.

    Raises FileNotFoundError for a missing file and `AudioLoadError` (a ValueError) naming the file
    for one that cannot be decoded, is empty or holds NaN/Inf.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise AudioLoadError(f"cannot read audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise AudioLoadError(f"audio file {path} has no samples (zero length)")
    if not np.isfinite(data).all():
        raise AudioLoadError(f"audio file {path} holds NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def downmix_mono(x: Tensor) -> Tensor:
    "Average the channels: `(..., channels, samples)` -> `(..., 1, samples)`."
    return x if x.shape[-2] == 1 else x.mean(dim=-2, keepdim=True)


@lru_cache(maxsize=16)
def _resampler(orig_sr: int, new_sr: int):
    import torchaudio

    return torchaudio.transforms.Resample(orig_sr, new_sr)


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited (windowed sinc) resampling with torchaudio: `(..., samples)` at `orig_sr` Hz to
    `(..., round(samples * new_sr / orig_sr))` at `new_sr` Hz."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, new_sr={new_sr}")
    if orig_sr == new_sr:
        return x
    plain = x.as_subclass(Tensor) if type(x) is not Tensor else x
    with torch.no_grad():
        return _resampler(int(orig_sr), int(new_sr))(plain)


def crop_pad(x: Tensor, n_samples: int, start: int = 0, pad_mode: str = "zeros") -> Tensor:
    """Fixed length along the last axis: crop `n_samples` from `start`, or pad at the end.

    x: `(..., samples)`. `pad_mode` "zeros" pads with silence, "repeat" tiles the clip.
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


# ---------------------------------------------------------------------------------------------
# fastai Transforms


class LoadAudio(DisplayedTransform):
    """Type transform: path -> `AudioTensor` at `sample_rate` Hz (None keeps the file's), mono when
    `mono`. With a `cache` (an `AudioCache`), decoded audio is read from it instead of the file."""

    def __init__(self, sample_rate: int | None = 16000, mono: bool = True, cache=None):
        super().__init__()
        self.sample_rate, self.mono, self.cache = sample_rate, mono, cache

    def encodes(self, path: str | Path) -> AudioTensor:
        if self.cache is not None:
            return AudioTensor(self.cache.get(path), sr=self.sample_rate)
        return AudioTensor.create(path, sr=self.sample_rate, mono=self.mono)


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

    def encodes(self, x: AudioTensor) -> AudioTensor:
        n = int(round(self.duration * x.sr))
        extra = x.shape[-1] - n
        if extra <= 0:
            start = 0
        elif self._split_idx == 0:
            start = random.randint(0, extra)
        else:
            start = extra // 2 if self.valid_crop == "center" else 0
        return crop_pad(x, n, start, self.pad_mode)


def AudioBlock(sample_rate: int | None = 16000, mono: bool = True, cache=None) -> TransformBlock:
    "A fastai `TransformBlock` that opens audio files as `AudioTensor` at `sample_rate` Hz."
    return TransformBlock(type_tfms=LoadAudio(sample_rate=sample_rate, mono=mono, cache=cache))
