"""fastai Transforms on waveforms (`LoadAudio`, `DownmixMono`, `Resample`, `ResizeSignal`), the
`AudioBlock` that opens audio files and `AudioDataLoader`, which pads batches of clips of different lengths."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from fastai.data.block import TransformBlock
from fastai.data.core import TfmdDL
from fasttransform import DisplayedTransform, Transform
from torch import Tensor
from torch.nn.functional import pad

from ..presets import MAX_DURATION
from .io import AUDIO_DTYPES, crop_pad, downmix_mono, from_storage, quantize_waveform, resample, storage_dtype, to_storage
from .tensors import AudioTensor, RefusePlainTensor, rewrap

if TYPE_CHECKING:  # annotations only: the cache imports this module's neighbours
    from .cache import AudioCache

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

#: The most channels a NumPy waveform may have (see `array_layout`).
MAX_ARRAY_CHANNELS = 32


def array_layout(shape: tuple[int, ...]) -> str:
    """The layout of a NumPy waveform of `shape`: "(samples,)", "(channels, samples)" or "(samples, channels)".

    A 2-D array's channel axis is the shorter one, of at most `MAX_ARRAY_CHANNELS` entries
    (soundfile reads `(samples, channels)`, torchaudio and this package use `(channels, samples)`).

    Args:
        shape: the array's shape.

    Returns:
        "(samples,)", "(channels, samples)" or "(samples, channels)".

    Raises:
        ValueError: (naming the layouts) for other shapes: 0 or 3+ dimensions, two equal axes (e.g.
            `(2, 2)`), or no axis short enough to be channels.

    Examples:
        >>> array_layout((16000,)), array_layout((2, 16000)), array_layout((16000, 2))
        ('(samples,)', '(channels, samples)', '(samples, channels)')
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


class LoadAudio(RefusePlainTensor, DisplayedTransform):
    """Type transform: an audio file -> float32 `AudioTensor` `(channels, samples)` at `sample_rate` Hz.

    With a `cache` (an `AudioCache`), decoded audio is read from it instead of the file. Also takes
    audio already in memory (what `learn.predict` passes on), downmixed and resampled the same way:
    one clip as an `AudioTensor` `(channels, samples)` or `(samples,)` at its `sr`, or a NumPy array
    (see `array_layout`; integers as PCM, scaled to [-1, 1)) at `sample_rate` Hz. `dtype` rounds the
    audio exactly as an `AudioCache` of that dtype stores it (`quantize_waveform`; int8/uint8/int16
    arrays count as 16-bit PCM, other in-memory audio as float without a `subtype`).

    Args:
        sample_rate: the rate every clip is resampled to, in Hz; None keeps each file's.
        mono: downmix the channels to one, `(1, samples)`.
        cache: an `AudioCache` opened with the same settings; None decodes every file.
        dtype: "auto", "int16", "float16", "float32" or None (no rounding), the precision the
            audio is rounded to. With a cache, `dtype` is the cache's (None takes it).

    Raises:
        ValueError: `dtype` is not one of `AUDIO_DTYPES` or None, or the settings differ from the
            cache's; when called, an `AudioTensor` that is not one clip, has no `sr` or no samples,
            or an array given with `sample_rate=None`, of no known layout, empty or with NaN/Inf.
        TypeError: when called, an array that holds neither floats nor integers.
        FileNotFoundError: when called, a missing file.
        AudioLoadError: (a ValueError naming the file) when called, a file that cannot be decoded.

    Examples:
        >>> import numpy as np
        >>> wav = LoadAudio(sample_rate=16000)(np.zeros((8000, 2), dtype=np.int16))
        >>> type(wav).__name__, wav.shape, wav.sr
        ('AudioTensor', torch.Size([1, 8000]), 16000)
    """

    def __init__(
        self, sample_rate: int | None = 16000, mono: bool = True, cache: AudioCache | None = None, dtype: str | None = None
    ):
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
        if self.dtype not in (None, "float32"):  # rounded as the cache rounds a file of x's subtype (None: float)
            wav = from_storage(to_storage(wav, storage_dtype(self.dtype, wav, getattr(x, "subtype", None) or "FLOAT")))
        return AudioTensor(wav, sr=sr)

    def encodes(self, x: np.ndarray) -> AudioTensor:  # noqa: F811
        if self.sample_rate is None:
            raise ValueError("LoadAudio(sample_rate=None) cannot tell a NumPy array's rate; pass AudioTensor(x, sr=...)")
        layout = array_layout(x.shape)
        if x.size == 0:
            raise ValueError(f"the NumPy waveform of shape {x.shape} has no samples")
        subtype = "PCM_16" if x.dtype in (np.int8, np.uint8, np.int16) else None  # values 16-bit PCM holds exactly
        if x.dtype == np.uint8:  # centred at 128, as in WAV files
            x = (x.astype(np.float32) - 128.0) / 128.0
        elif np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
        elif not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"a NumPy waveform must hold floats or integer PCM, got dtype {x.dtype}")
        x = np.asarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("the NumPy waveform holds NaN or Inf samples")
        x = x[None] if layout == "(samples,)" else np.ascontiguousarray(x.T) if layout == "(samples, channels)" else x
        return self.encodes(AudioTensor(torch.from_numpy(x), sr=self.sample_rate, subtype=subtype))


class DownmixMono(RefusePlainTensor, Transform):
    """Average an `AudioTensor`'s channels to one (fastaudio name): `(..., channels, samples)` -> `(..., 1, samples)`."""

    def encodes(self, x: AudioTensor) -> AudioTensor:
        return downmix_mono(x)


class Resample(RefusePlainTensor, Transform):
    """Resample an `AudioTensor` from its `sr` to `sample_rate` Hz (fastaudio name), with `resample`.

    `(..., samples)` -> `(..., ceil(samples * sample_rate / x.sr))`; the other metadata is kept.

    Args:
        sample_rate: the target rate, in Hz.
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def encodes(self, x: AudioTensor) -> AudioTensor:
        return rewrap(resample(x, x.sr, self.sample_rate), x, sr=self.sample_rate)


class ResizeSignal(RefusePlainTensor, DisplayedTransform):
    """Crop or pad an `AudioTensor` `(..., samples)` to `duration` seconds (fastaudio name).

    On the training split (split_idx 0) the crop start is random; on validation and test it is
    fixed (`valid_crop`). Shorter clips are padded at the end.

    Args:
        duration: the length wanted, in seconds (not fastaudio's milliseconds), at most
            `MAX_DURATION` (600 s, the loaders' cap).
        pad_mode: how shorter clips are padded: "zeros" (silence) or "repeat" (the clip tiled).
        valid_crop: where validation and test clips are cropped: "start" or "center".

    Raises:
        ValueError: `duration` is not positive or is above `MAX_DURATION` (likely milliseconds),
            or `pad_mode` or `valid_crop` is none of the above.

    Examples:
        >>> ResizeSignal(5.0).duration  # 5 seconds (fastaudio's ResizeSignal(5000))
        5.0
    """

    order = 5

    def __init__(self, duration: float, pad_mode: str = "zeros", valid_crop: str = "start"):
        super().__init__()
        if not duration > 0:
            raise ValueError(f"duration must be positive seconds, got {duration}")
        if duration > MAX_DURATION:  # likely fastaudio's milliseconds: every clip would be padded to it
            seconds = duration / 1000
            raise ValueError(
                f"duration is in seconds, at most {MAX_DURATION:g} (MAX_DURATION), got {duration}; fastaudio's "
                f"ResizeSignal took milliseconds, so {duration} likely means {seconds:g} s: pass {float(seconds)!r}"
            )
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
        """Start of the crop of a clip `extra` samples longer than wanted (0 when `extra <= 0`).

        Args:
            extra: how many samples the clip is longer than wanted.
            split_idx: 0 for the training split: a random start in `[0, extra]` (Python's `random`);
                1 or None for validation and test: 0, or `extra // 2` with `valid_crop="center"`.
        """
        if extra <= 0:
            return 0
        if split_idx == 0:
            return random.randint(0, extra)
        return extra // 2 if self.valid_crop == "center" else 0

    def encodes(self, x: AudioTensor) -> AudioTensor:
        n = int(round(self.duration * x.sr))
        return crop_pad(x, n, self.crop_start(x.shape[-1] - n, self._split_idx), self.pad_mode)


def AudioBlock(
    sample_rate: int | None = 16000, mono: bool = True, cache: AudioCache | None = None, dtype: str | None = None
) -> TransformBlock:
    """A fastai `TransformBlock` that opens audio files as `AudioTensor` at `sample_rate` Hz, in `AudioDataLoader`s.

    Args:
        sample_rate: the rate every clip is resampled to, in Hz; None keeps each file's.
        mono: downmix the channels to one.
        cache: an `AudioCache` to read decoded audio from; None decodes every file.
        dtype: the precision decoded audio is rounded to (see `LoadAudio`); None for none.

    Returns:
        The block, with `LoadAudio(sample_rate, mono, cache, dtype)` as its type transform.

    Raises:
        ValueError: as `LoadAudio`.
    """
    return TransformBlock(type_tfms=LoadAudio(sample_rate, mono, cache, dtype), dl_type=AudioDataLoader)


class AudioDataLoader(TfmdDL):
    """fastai's `TfmdDL` that pads a batch of clips of different lengths to its longest clip.

    Clips are padded with zeros at the end; the batch's `AudioTensor` `(batch, channels, samples)`
    then carries `lengths`, the valid samples of each clip (LongTensor `(batch,)`; None when all
    clips have the same length), so that later steps skip the padding.

    Examples:
        >>> import torch
        >>> clips = [(AudioTensor(torch.ones(1, n), sr=16000), 0) for n in (3, 5)]
        >>> x, y = AudioDataLoader(clips, bs=2).one_batch()
        >>> x.shape, x.lengths
        (torch.Size([2, 1, 5]), tensor([3, 5]))
    """

    def create_batch(self, b: list[tuple]) -> tuple:  # fastai's hook: items are clips or tuples holding them
        items = list(b)
        if self.prebatched or not items:
            return super().create_batch(b)
        tupled = isinstance(items[0], tuple)
        columns = list(zip(*items, strict=True)) if tupled else [items]
        lengths = {}
        for i, column in enumerate(columns):
            if isinstance(column[0], AudioTensor) and column[0].dim() >= 1:  # padded with zeros to the longest
                n = [x.shape[-1] for x in column]
                longest = max(n)
                lengths[i] = None if min(n) == longest else torch.tensor(n, dtype=torch.long)
                columns[i] = [x if m == longest else pad(x, (0, longest - m)) for x, m in zip(column, n, strict=True)]
        items = [tuple(row) for row in zip(*columns, strict=True)] if tupled else columns[0]
        res = super().create_batch(items)
        batch = list(res) if tupled else [res]
        for i, n in lengths.items():
            batch[i].lengths = n
        return res
