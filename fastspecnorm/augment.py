"""Train-only augmentations (`split_idx = 0`, padding untouched): SpecAugment masks and waveform gain,
noise and shifts as batch Transforms on the batch's device, and fastai's `MixUp` callback.

Each Transform raises ValueError for an input that is not a batch and TypeError for a plain `torch.Tensor`.
"""

from __future__ import annotations

import math

import torch
from fasttransform import Transform
from torch import Tensor

from . import functional as F
from ._compat import import_torchaudio
from .audio.tensors import AudioSpectrogram, AudioTensor, RefusePlainTensor, rewrap, valid_mask, valid_mask_or_none

torchaudio = import_torchaudio()

__all__ = [
    "band_mask",
    "mask_bands",
    "SpecAugment",
    "augment_callbacks",
    "WaveformGain",
    "AddNoise",
    "TimeShift",
    "waveform_augmentations",
]


def band_mask(n_items: int, size: int, n_masks: int, max_width: float, valid: Tensor | None = None, device=None) -> Tensor:
    """Random bands along one axis, per item: bool `(n_items, size)`, True inside a band.

    Each item gets `n_masks` bands (they may overlap) of widths uniform in
    `0 .. floor(max_width * valid_i)`, placed uniformly inside `0 .. valid_i` (never on padding).
    Draws from torch's global generator on `device`.

    Args:
        n_items: number of items (the batch size).
        size: length of the axis (frequency bins or frames).
        n_masks: bands per item, >= 0.
        max_width: the widest band, as a fraction of the item's valid extent, in [0, 1].
        valid: LongTensor `(n_items,)`, each item's valid extent (e.g. frames from `lengths`);
            None: all of `size`.
        device: where the mask (and the random numbers) are made; None: the default device.

    Returns:
        Bool `(n_items, size)`.

    Raises:
        ValueError: `n_masks` is negative or `max_width` not in [0, 1].

    Examples:
        >>> band_mask(2, 10, n_masks=1, max_width=0.3).shape
        torch.Size([2, 10])
        >>> band_mask(1, 5, n_masks=3, max_width=0.0).any().item()
        False
    """
    if n_masks < 0 or not 0 <= max_width <= 1:
        raise ValueError(f"n_masks must be >= 0 and max_width a fraction in [0, 1], got n_masks={n_masks}, max_width={max_width}")
    if valid is None:
        valid = torch.full((n_items,), size, device=device)
    valid = torch.as_tensor(valid, dtype=torch.float32, device=device).clamp(0, size).reshape(n_items, 1)
    widest = torch.floor(max_width * valid)
    width = torch.floor(torch.rand(n_items, n_masks, device=device) * (widest + 1))
    start = torch.floor(torch.rand(n_items, n_masks, device=device) * (valid - width + 1))
    pos = torch.arange(size, device=device, dtype=torch.float32).reshape(1, 1, size)
    inside = (pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))
    return inside.any(dim=1)


def mask_bands(
    x: Tensor,
    freq_mask: Tensor | None = None,
    time_mask: Tensor | None = None,
    fill: float | str = 0.0,
    valid: Tensor | None = None,
) -> Tensor:
    """Fill frequency bands and time bands of spectrograms.

    Args:
        x: spectrograms `(batch, channels, freq, time)`.
        freq_mask: bool `(batch, freq)`, True on the bins to fill (all channels alike); None: none.
        time_mask: bool `(batch, time)`, True on the frames to fill (all channels alike); None: none.
        fill: a number (in x's unit), or "mean": each item's own mean per channel and frequency
            bin over its valid frames, computed before masking.
        valid: bool, broadcastable to x, e.g. `(batch, 1, 1, time)`, True on valid frames (None:
            all): only those are filled, padding keeps its values.

    Returns:
        A new tensor of x's shape, dtype and type; x is not modified.

    Raises:
        ValueError: x does not have 4 dimensions, or `fill` is a string other than "mean".

    Examples:
        >>> mask_bands(torch.zeros(1, 1, 3, 2), freq_mask=torch.tensor([[True, False, False]]), fill=-100.0)
        tensor([[[[-100., -100.],
                  [   0.,    0.],
                  [   0.,    0.]]]])
    """
    if x.dim() != 4:
        raise ValueError(f"mask_bands expects (batch, channels, freq, time), got shape {tuple(x.shape)}")
    masked = torch.zeros((x.shape[0], 1, x.shape[2], x.shape[3]), dtype=torch.bool, device=x.device)
    if freq_mask is not None:
        masked = masked | freq_mask.to(x.device)[:, None, :, None]
    if time_mask is not None:
        masked = masked | time_mask.to(x.device)[:, None, None, :]
    if valid is not None:  # padding keeps its values
        masked = masked & valid.to(x.device)
    if fill == "mean":
        value = F.masked_moments(x.detach(), red_dims=(3,), mask=valid).mean.to(x.dtype)
        return x.where(~masked, value)
    if isinstance(fill, str):
        raise ValueError(f"fill must be a number or 'mean', got {fill!r}")
    return x.masked_fill(masked, float(fill))


class SpecAugment(RefusePlainTensor, Transform):
    """SpecAugment-style masking (Park et al. 2019, without time warping) of training batches.

    A batch Transform on `AudioSpectrogram` `(batch, channels, freq, time)`, after the
    normalizations: per item, `n_freq_masks` frequency bands and `n_time_masks` time bands are set
    to `fill` (never the padding). Defaults follow PANNs (2 bands of up to 8 of 64 mel bins, 2 of up
    to 64 of 1000 frames).

    Args:
        n_freq_masks: frequency bands per item, >= 0.
        max_freq_width: the widest frequency band, as a fraction of the bins, in [0, 1].
        n_time_masks: time bands per item, >= 0.
        max_time_width: the widest time band, as a fraction of the item's valid frames, in [0, 1].
        fill: the value that carries no information after the pipeline's normalization (per norm:
            `Norm.mask_fill`): 0 after a standardization or a range whose 0 is the floor, -100 on raw
            dB, or "mean", each item's own per-bin mean (for raw dB that a BatchNorm centres).

    Raises:
        ValueError: a width is not in [0, 1], a count is negative, or `fill` is a string other
            than "mean".

    Examples:
        >>> SpecAugment(fill=0.0)(AudioSpectrogram(torch.zeros(2, 1, 64, 100))).shape
        torch.Size([2, 1, 64, 100])
    """

    split_idx = 0
    order = 100  # after the normalizations (99): masks hold the normalized representation's neutral value
    wrap_hint = "AudioSpectrogram(x) for a (batch, channels, freq, time) spectrogram"

    def __init__(
        self,
        n_freq_masks: int = 2,
        max_freq_width: float = 0.125,
        n_time_masks: int = 2,
        max_time_width: float = 0.064,
        fill: float | str = 0.0,
    ):
        super().__init__()
        band_mask(0, 0, n_freq_masks, max_freq_width)  # raises ValueError for a count or width out of range
        band_mask(0, 0, n_time_masks, max_time_width)
        if isinstance(fill, str) and fill != "mean":
            raise ValueError(f"fill must be a number or 'mean', got {fill!r}")
        self.n_freq_masks, self.max_freq_width = n_freq_masks, max_freq_width
        self.n_time_masks, self.max_time_width, self.fill = n_time_masks, max_time_width, fill

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        if x.dim() != 4:
            raise ValueError(f"SpecAugment is a batch transform on (batch, channels, freq, time), got shape {tuple(x.shape)}")
        n_items, _, n_freq, n_frames = x.shape
        valid_frames = getattr(x, "lengths", None)
        freq_mask = band_mask(n_items, n_freq, self.n_freq_masks, self.max_freq_width, device=x.device)
        time_mask = band_mask(n_items, n_frames, self.n_time_masks, self.max_time_width, valid_frames, device=x.device)
        return mask_bands(x, freq_mask, time_mask, self.fill, valid=valid_mask_or_none(x))


def augment_callbacks(mixup_alpha: float = 0.4) -> list:
    """The Learner callbacks of the train-only augmentations: fastai's `MixUp(mixup_alpha)`, which
    blends each normalized training batch with a shuffled copy of itself.

    Args:
        mixup_alpha: the Beta distribution's parameter (> 0); 0.4 is fastai's default.

    Returns:
        `[MixUp(mixup_alpha)]`, to pass as `cbs=`.

    Raises:
        ValueError: `mixup_alpha` is not positive.
    """
    from fastai.callback.mixup import MixUp

    if not mixup_alpha > 0:
        raise ValueError(f"mixup_alpha must be positive, got {mixup_alpha}")
    return [MixUp(mixup_alpha)]


def _chosen(n_items: int, p: float, device) -> Tensor:
    "Bool `(n_items,)`: which items an augmentation applies to, each with probability `p`."
    return torch.rand(n_items, device=device) < p


class _WaveformAugment(RefusePlainTensor, Transform):
    split_idx = 0  # training batches only
    order = 40  # before WaveformNormalize (50) and AudioToSpec (60)

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"p is a probability per clip, expected 0..1, got {p}")
        self.p = p

    def _check(self, x: AudioTensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(
                f"{type(self).__name__} is a batch transform on (batch, channels, samples), got shape {tuple(x.shape)}"
            )
        return x.as_subclass(Tensor)


class WaveformGain(_WaveformAugment):
    """Multiply each training clip, with probability `p`, by a random gain in dB.

    The gain g is uniform in [-max_gain_db, max_gain_db] dB (amplitude factor `10 ** (g / 20)`); as
    `WaveformNormalize` undoes it, it only matters with `waveform_norm=False`.

    Args:
        max_gain_db: the largest gain either way, in dB (>= 0).
        p: probability per clip, in [0, 1].

    Raises:
        ValueError: `max_gain_db` is negative or `p` not in [0, 1].

    Examples:
        >>> WaveformGain(p=0.0)(AudioTensor(torch.ones(1, 1, 4)))
        AudioTensor([[[1., 1., 1., 1.]]])
    """

    def __init__(self, max_gain_db: float = 6.0, p: float = 0.5):
        super().__init__(p)
        if not max_gain_db >= 0:
            raise ValueError(f"max_gain_db must be >= 0 dB, got {max_gain_db}")
        self.max_gain_db = max_gain_db

    def encodes(self, x: AudioTensor) -> AudioTensor:
        wav = self._check(x)
        n = wav.shape[0]
        gain_db = (torch.rand(n, device=wav.device) * 2 - 1) * self.max_gain_db
        gain_db = torch.where(_chosen(n, self.p, wav.device), gain_db, torch.zeros_like(gain_db))
        return rewrap(wav * (10.0 ** (gain_db / 20.0)).to(wav.dtype)[:, None, None], x)


class AddNoise(_WaveformAugment):
    """Add white Gaussian noise to each training clip, with probability `p`, at a random SNR.

    The SNR is uniform in [min_snr_db, max_snr_db] dB, per channel over its valid samples
    (`torchaudio.functional.add_noise`); a silent clip gets no noise; float16/bfloat16 clips are
    noised in float32.

    Args:
        min_snr_db: the lowest signal-to-noise ratio, in dB (the most noise).
        max_snr_db: the highest signal-to-noise ratio, in dB (>= `min_snr_db`).
        p: probability per clip, in [0, 1].

    Raises:
        ValueError: `min_snr_db > max_snr_db` or `p` not in [0, 1].
    """

    def __init__(self, min_snr_db: float = 10.0, max_snr_db: float = 40.0, p: float = 0.5):
        super().__init__(p)
        if not min_snr_db <= max_snr_db:
            raise ValueError(f"min_snr_db must be <= max_snr_db, got {min_snr_db} > {max_snr_db}")
        self.min_snr_db, self.max_snr_db = min_snr_db, max_snr_db

    def encodes(self, x: AudioTensor) -> AudioTensor:
        wav = self._check(x)
        work = wav.to(torch.promote_types(wav.dtype, torch.float32))
        n_items, n_channels, _ = wav.shape
        snr_db = self.min_snr_db + torch.rand(n_items, device=wav.device) * (self.max_snr_db - self.min_snr_db)
        snr_db = torch.where(_chosen(n_items, self.p, wav.device), snr_db, math.inf)  # infinite SNR: no noise
        lengths = getattr(x, "lengths", None)
        per_channel = (n_items, n_channels)  # torchaudio takes one SNR and length per row (item, channel)
        lengths = None if lengths is None else lengths.to(wav.device)[:, None].expand(per_channel)
        noisy = torchaudio.functional.add_noise(work, torch.randn_like(work), snr_db[:, None].expand(per_channel), lengths)
        mask = valid_mask_or_none(x)  # padding keeps its values (and a clip with no valid sample, its own)
        return rewrap((noisy if mask is None else torch.where(mask, noisy, work)).to(wav.dtype), x)


class TimeShift(_WaveformAugment):
    """Shift each training clip in time, with probability `p`, circularly within its valid samples.

    The shift is uniform in samples, either way, up to `max_shift` of the clip's valid length.

    Args:
        max_shift: the largest shift, as a fraction of each clip's valid length, in [0, 1].
        p: probability per clip, in [0, 1].

    Raises:
        ValueError: `max_shift` or `p` is not in [0, 1].

    Examples:
        >>> TimeShift(p=0.0)(AudioTensor(torch.arange(4.0).reshape(1, 1, 4)))
        AudioTensor([[[0., 1., 2., 3.]]])
    """

    def __init__(self, max_shift: float = 0.2, p: float = 0.5):
        super().__init__(p)
        if not 0 <= max_shift <= 1:
            raise ValueError(f"max_shift is a fraction of each clip's length, expected 0..1, got {max_shift}")
        self.max_shift = max_shift

    def encodes(self, x: AudioTensor) -> AudioTensor:
        wav = self._check(x)
        n_items, _, n_samples = wav.shape
        inside = valid_mask(x)[:, 0]  # (batch, samples)
        lengths = inside.sum(dim=-1).clamp_min(1)
        widest = torch.floor(self.max_shift * lengths.float())
        shift = torch.floor(torch.rand(n_items, device=wav.device) * (2 * widest + 1)) - widest
        shift = (shift.long() * _chosen(n_items, self.p, wav.device))[:, None]
        pos = torch.arange(n_samples, device=wav.device)[None, :]
        index = torch.where(inside, torch.remainder(pos - shift, lengths[:, None]), pos)
        return rewrap(wav.gather(-1, index[:, None, :].expand(wav.shape)), x)


def waveform_augmentations(
    max_gain_db: float = 6.0, snr_db: tuple[float, float] = (10.0, 40.0), max_shift: float = 0.2, p: float = 0.5
) -> list:
    """The train-only waveform augmentations as batch transforms, for `batch_tfms=`.

    Args:
        max_gain_db: the largest gain either way, in dB.
        snr_db: `(min_snr_db, max_snr_db)`, the range of signal-to-noise ratios, in dB.
        max_shift: the largest time shift, as a fraction of each clip's valid length.
        p: probability with which each augmentation applies to a clip.

    Returns:
        `[WaveformGain(max_gain_db, p), AddNoise(*snr_db, p), TimeShift(max_shift, p)]`.

    Raises:
        ValueError: a parameter out of range (see the three classes).

    Examples:
        >>> [type(t).__name__ for t in waveform_augmentations()]
        ['WaveformGain', 'AddNoise', 'TimeShift']
    """
    return [WaveformGain(max_gain_db, p), AddNoise(snr_db[0], snr_db[1], p), TimeShift(max_shift, p)]
