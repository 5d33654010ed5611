"""fastai Transforms on waveforms (`LoadAudio`, `DownmixMono`, `Resample`, `ResizeSignal`), the
`AudioBlock` that opens audio files and `AudioDataLoader`, which pads batches of clips of different lengths.
"""

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


MAX_ARRAY_CHANNELS = 32
"""The most channels a NumPy waveform may have: of a 2-D array's axes, the one no longer than this
(and shorter than the other) is taken as channels."""
#: NumPy integer dtypes whose values 16-bit PCM storage holds exactly (like `INT16_SUBTYPES` for files).
_INT16_ARRAY_DTYPES = (np.int8, np.uint8, np.int16)


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
    """Type transform: path -> `AudioTensor` at `sample_rate` Hz, mono when `mono`.

    With a `cache` (an `AudioCache`), decoded audio is read from it instead of the file.

    Also takes audio already in memory (what `learn.predict` passes on): an `AudioTensor`
    `(channels, samples)` of any rate and channel count is downmixed and resampled from its `sr`
    the same way; a NumPy array `(samples,)`, `(channels, samples)` or `(samples, channels)` (see
    `array_layout`) is taken to be at `sample_rate` Hz, the loaders' rate, since an array carries no
    rate (integer arrays as PCM, scaled to [-1, 1); unsigned 8-bit centred at 128, as in WAV files);
    wrap audio at another rate as `AudioTensor(x, sr=...)`.

    Rounding: `dtype` rounds the decoded audio with `quantize_waveform`, exactly as an `AudioCache`
    of that dtype stores it, so a pipeline gives the same values with and without the cache.
    In-memory audio is rounded by the same rule, after downmixing and resampling, with its source
    format: an `AudioTensor.create(path)` keeps its file's `subtype`, an int8/uint8/int16 array
    counts as 16-bit PCM, any other audio as float ("auto" then keeps it unrounded). So a file and
    `AudioTensor.create` of it give the same values (and predictions), resampled or not.

    Args:
        sample_rate: the rate every clip is resampled to, in Hz; None keeps each file's (and then
            refuses NumPy arrays, which carry no rate).
        mono: downmix the channels to one, `(1, samples)`.
        cache: an `AudioCache` opened with the same `sample_rate`, `mono` and `dtype`; None decodes
            every file.
        dtype: "auto", "int16", "float16", "float32" or None (no rounding), the precision the
            decoded audio is rounded to (see above). With a cache, `dtype` is the cache's (None takes it).

    Raises:
        ValueError: `dtype` is not one of `AUDIO_DTYPES` or None, or the settings differ from the
            cache's.

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
        """Read the audio file `path`, from the cache when there is one.

        Args:
            path: the audio file.

        Returns:
            float32 `(channels, samples)` (`(1, samples)` when `mono`) at `sample_rate` Hz (the
                file's when None), rounded to `dtype`.

        Raises:
            FileNotFoundError: `path` is missing.
            AudioLoadError: (a ValueError naming the file) the file cannot be decoded (see `load_audio`).
        """
        if self.cache is not None:
            return AudioTensor(self.cache.get(path), sr=self.sample_rate)
        wav = AudioTensor.create(path, sr=self.sample_rate, mono=self.mono)
        if self.dtype in (None, "float32"):
            return wav
        return AudioTensor(quantize_waveform(wav.as_subclass(Tensor), self.dtype, source=path), sr=wav.sr)

    def encodes(self, x: AudioTensor) -> AudioTensor:  # noqa: F811  (fastai dispatches encodes on the annotation)
        """Downmix, resample and round audio already in memory as a file of its source format would be.

        Args:
            x: one clip `(channels, samples)` (or `(samples,)`) at `x.sr` Hz, any channel count.

        Returns:
            float32 `(channels, samples)` (`(1, samples)` when `mono`) at `sample_rate` Hz (`x.sr`
                when None).

        Raises:
            ValueError: `x` is not one clip, has no sample rate (`sr`) or no samples.
        """
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
        """A NumPy waveform, taken to be at `sample_rate` Hz, as an `AudioTensor` (see `array_layout`).

        Args:
            x: `(samples,)`, `(channels, samples)` or `(samples, channels)`: floats, or integer PCM
                (int8/uint8/int16 count as 16-bit sources when rounding).

        Returns:
            float32 `(channels, samples)` (`(1, samples)` when `mono`) at `sample_rate` Hz.

        Raises:
            ValueError: `sample_rate` is None, the layout cannot be told, or the array is empty or holds
                NaN/Inf.
            TypeError: the array holds neither floats nor integers.
        """
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
    """Average an `AudioTensor`'s channels to one (fastaudio name): `(..., channels, samples)` -> `(..., 1, samples)`."""

    def encodes(self, x: AudioTensor) -> AudioTensor:
        """Average the channels of `x`.

        Args:
            x: `(..., channels, samples)`.

        Returns:
            `(..., 1, samples)`.
        """
        return downmix_mono(x)


class Resample(RefusePlainTensor, Transform):
    """Resample an `AudioTensor` to `sample_rate` Hz (fastaudio name), with `resample`.

    Args:
        sample_rate: the target rate, in Hz.
    """

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def encodes(self, x: AudioTensor) -> AudioTensor:
        """Resample `x` from its `sr` to `sample_rate` Hz, keeping its other metadata.

        Args:
            x: `(..., samples)` at `x.sr` Hz.

        Returns:
            `(..., ceil(samples * sample_rate / x.sr))` at `sample_rate` Hz.
        """
        return rewrap(resample(x, x.sr, self.sample_rate), x, sr=self.sample_rate)


class ResizeSignal(RefusePlainTensor, DisplayedTransform):
    """Crop or pad an `AudioTensor` to `duration` seconds (fastaudio name).

    On the training split (split_idx 0) the crop start is random; on validation and test it is
    deterministic (`valid_crop`), so validation results do not change between epochs. Shorter clips
    are padded at the end.

    Args:
        duration: the length wanted, in seconds (rounded to samples at each clip's `sr`), at most
            `MAX_DURATION` (600 s, the loaders' cap). Seconds, not milliseconds: fastaudio's
            `ResizeSignal` took milliseconds, so its `ResizeSignal(5000)` is `ResizeSignal(5.0)` here.
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
        """Start of the crop of a clip `extra` samples longer than wanted.

        Draws from Python's `random` only for a training item that needs a crop.

        Args:
            extra: how many samples the clip is longer than wanted; <= 0: no crop.
            split_idx: 0 for the training split (random start); 1 or None for validation and test.

        Returns:
            The start, in samples: random in `[0, extra]` on training, else 0 (`valid_crop="start"`)
                or `extra // 2` (`"center"`); 0 when `extra <= 0`.
        """
        if extra <= 0:
            return 0
        if split_idx == 0:
            return random.randint(0, extra)
        return extra // 2 if self.valid_crop == "center" else 0

    def encodes(self, x: AudioTensor) -> AudioTensor:
        """Crop or pad `x` to `duration` seconds.

        Args:
            x: `(..., samples)` at `x.sr` Hz.

        Returns:
            `(..., round(duration * x.sr))`.
        """
        n = int(round(self.duration * x.sr))
        return crop_pad(x, n, self.crop_start(x.shape[-1] - n, self._split_idx), self.pad_mode)


def AudioBlock(
    sample_rate: int | None = 16000, mono: bool = True, cache: AudioCache | None = None, dtype: str | None = None
) -> TransformBlock:
    """A fastai `TransformBlock` that opens audio files as `AudioTensor` at `sample_rate` Hz.

    Its loaders are `AudioDataLoader`s, so clips of different lengths make a padded batch with
    `lengths` instead of a collate error.

    Args:
        sample_rate: the rate every clip is resampled to, in Hz; None keeps each file's.
        mono: downmix the channels to one.
        cache: an `AudioCache` to read decoded audio from; None decodes every file.
        dtype: the precision decoded audio is rounded to ("auto", "int16", "float16", "float32"),
            None for none; see `LoadAudio`.

    Returns:
        The block, with `LoadAudio(sample_rate, mono, cache, dtype)` as its type transform.

    Raises:
        ValueError: as `LoadAudio`.
    """
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
    """fastai's `TfmdDL` that pads a batch of clips of different lengths to its longest clip.

    Clips are padded with zeros at the end; the batch's `AudioTensor` `(batch, channels, samples)`
    then carries `lengths`, the valid samples of each clip (LongTensor `(batch,)`; None when all
    clips have the same length). The batch transforms use it (`WaveformNormalize` standardizes over
    each clip's own samples, `AudioToSpec` gives frame `lengths`, statistics and normalizations
    skip the padding). Everything else is `TfmdDL`'s (its arguments, workers, `show_batch`,
    `test_dl`).

    Examples:
        >>> import torch
        >>> clips = [(AudioTensor(torch.ones(1, n), sr=16000), 0) for n in (3, 5)]
        >>> x, y = AudioDataLoader(clips, bs=2).one_batch()
        >>> x.shape, x.lengths
        (torch.Size([2, 1, 5]), tensor([3, 5]))
    """

    def create_batch(self, b: list[tuple]) -> tuple:
        """Collate the items of one batch, padding clips of different lengths (fastai's hook).

        Args:
            b: the batch's items: `AudioTensor`s, or tuples holding them (e.g. `(clip, label)`).

        Returns:
            The collated batch; each `AudioTensor` in it carries `lengths` (None when its clips have one
                length).
        """
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
