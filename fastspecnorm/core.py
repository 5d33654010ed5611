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
    "quantize_waveform",
    "STORAGE_DTYPES",
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
def _resampler(orig_sr: int, new_sr: int, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    import torchaudio

    # The sinc kernel must have the waveform's dtype and device (conv1d does not mix them).
    return torchaudio.transforms.Resample(orig_sr, new_sr, dtype=dtype).to(device)


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited (windowed sinc) resampling with torchaudio: `(..., samples)` at `orig_sr` Hz to
    `(..., ceil(samples * new_sr / orig_sr))` at `new_sr` Hz, same dtype and device as `x`
    (float16/bfloat16 are computed in float32)."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, new_sr={new_sr}")
    if orig_sr == new_sr:
        return x
    plain = x.as_subclass(Tensor) if type(x) is not Tensor else x
    dtype = plain.dtype if plain.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.no_grad():
        return _resampler(int(orig_sr), int(new_sr), dtype, str(plain.device))(plain.to(dtype)).to(plain.dtype)


#: Precisions decoded audio can be kept at (the `AudioCache` storage types).
STORAGE_DTYPES = {"int16": np.int16, "float16": np.float16, "float32": np.float32}


def quantize_waveform(x: Tensor, dtype: str | None = "int16") -> Tensor:
    """Round a float waveform to the precision `dtype` keeps, returned as float32 (same shape).

    "int16": 16-bit PCM, `clamp(round(x * 32768), -32768, 32767) / 32768` (exact for audio decoded
    from 16-bit files; values beyond full scale are clipped); "float16": half precision;
    "float32" or None: unchanged. `AudioCache` stores exactly this, so an uncached pipeline that
    applies it yields the same values as a cached one.
    """
    if dtype is None or dtype == "float32":
        return x.float()
    if dtype == "int16":
        return (x.float() * 32768.0).round_().clamp_(-32768.0, 32767.0).mul_(1.0 / 32768.0)
    if dtype == "float16":
        return x.half().float()
    raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)} or None, got {dtype!r}")


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
        Draws from Python's `random` only for a training item that needs a crop; `AudioDataLoader`
        calls this too, so its batches get the same crops."""
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
    `LoadAudio`). Its DataLoaders are `AudioDataLoader`s, which assemble batches of cached audio
    in one step."""
    from .loader import AudioDataLoader  # loader imports this module

    return TransformBlock(type_tfms=LoadAudio(sample_rate=sample_rate, mono=mono, cache=cache, dtype=dtype), dl_type=AudioDataLoader)


# ---------------------------------------------------------------------------------------------
# show_batch / show_results: a grid of spectrograms (or waveforms) titled with their labels.
# fastai only makes a grid for TensorImage; without these, every item would open its own figure.


def _register_show_methods() -> None:
    from fastai.data.core import get_show_batch_func, show_batch, show_results
    from fastai.vision.data import get_grid

    def _grid(n, nrows, ncols, figsize, x):
        per = (4.5, 2.8) if isinstance(x, AudioSpectrogram) else (4.5, 1.8)
        ncols = ncols or min(3, n)
        nrows = nrows or math.ceil(n / ncols)
        return get_grid(n, nrows=nrows, ncols=ncols, figsize=figsize or (per[0] * ncols, per[1] * nrows))

    def show_audio_batch(x: AudioSpectrogram | AudioTensor, y, samples, ctxs=None, max_n=9, nrows=None, ncols=None, figsize=None, **kwargs):
        if ctxs is None:
            ctxs = _grid(min(len(samples), max_n), nrows, ncols, figsize, x)
        ctxs = get_show_batch_func(object)(x, y, samples, ctxs=ctxs, max_n=max_n, **kwargs)
        ctxs[0].figure.tight_layout()
        return ctxs

    def show_audio_results(x: AudioSpectrogram | AudioTensor, y, samples, outs, ctxs=None, max_n=9, nrows=None, ncols=None, figsize=None, **kwargs):
        if ctxs is None:
            ctxs = _grid(min(len(samples), max_n), nrows, ncols, figsize, x)
        for i in range(len(samples[0])):
            ctxs = [b.show(ctx=c, **kwargs) for b, c, _ in zip(samples.itemgot(i), ctxs, range(max_n), strict=False)]
        for i in range(len(outs[0])):
            ctxs = [b.show(ctx=c, **kwargs) for b, c, _ in zip(outs.itemgot(i), ctxs, range(max_n), strict=False)]
        ctxs[0].figure.tight_layout()
        return ctxs

    show_batch.dispatch(show_audio_batch)
    show_results.dispatch(show_audio_results)


_register_show_methods()
