"""fastai Transforms for waveform and spectrogram normalization (thin wrappers of `functional`).

Orders: `WaveformNormalize` 50 (before `AudioToSpec`, 60); the spectrogram normalizations 99, like
fastai's `Normalize`, so they run after spectrogram augmentations.

`inplace=True` (like torchvision's `Normalize(inplace=True)`) writes the result into the input
batch instead of allocating a new one: the same values, one batch-sized allocation (20 MB for 64
5-second clips) and its page faults fewer per transform. It is for batch pipelines where the input
is an intermediate nobody else holds: the DataLoader's fresh batch for `WaveformNormalize`,
`AudioToSpec`'s fresh output for the spectrogram normalizations. `esc50_dataloaders`,
`StatsCallback` and the experiment use it there; the default is `False`, so a tensor passed in by
hand is never changed. Ignored for tensors that autograd tracks.
"""

from __future__ import annotations

import warnings

import torch
from fastcore.foundation import L
from fasttransform import DisplayedTransform, Transform
from torch import Tensor

from . import functional as F
from .audio.tensors import AudioSpectrogram, AudioTensor

__all__ = ["WaveformNormalize", "SpecNormalize", "InstanceMinMax", "DbRangeNormalize", "SPEC_NORMALIZERS"]


def _with_unit(x: AudioSpectrogram, unit: str) -> AudioSpectrogram:
    x.unit = unit
    return x


class WaveformNormalize(Transform):
    """Per clip and channel: zero mean, unit std over samples (`functional.standardize_waveform`).

    Works on one clip `(channels, samples)` as an item transform or on a batch
    `(batch, channels, samples)` as a batch transform; a silent clip becomes zeros. Not invertible
    (the clip's level is discarded), so `decodes` returns its input. `inplace`: see the module docstring.
    """

    order = 50

    def __init__(self, eps: float = 1e-8, inplace: bool = False):
        super().__init__()
        self.eps, self.inplace = eps, inplace

    def encodes(self, x: AudioTensor) -> AudioTensor:
        return F.standardize_waveform(x, self.eps, inplace=getattr(self, "inplace", False))


class SpecNormalize(DisplayedTransform):
    """Normalize spectrograms with fixed statistics: `(x - mean) / std`, inverted by `decodes`.

    mean, std: tensors broadcastable to `(batch, channels, freq, time)`, e.g. `(1, 1, freq, 1)` per
    frequency bin or `(1, channels, 1, 1)` global, as produced by `StatsRecorder`. Use
    `SpecNormalize.from_stats(recorder)`. Standard deviations below `min_std` (constant bins, e.g.
    frequencies above a low-pass, or a dataset of silence) are floored to `min_std` with a warning,
    so such bins are centred but not blown up. The statistics are declared in `parameters`, so
    `DataLoader.to(device)` moves them with the batches. `inplace`: see the module docstring.
    """

    order = 99
    parameters = L("mean", "std")

    def __init__(self, mean, std, min_std: float = 1e-5, red_dims=None, inplace: bool = False):
        super().__init__()
        self.inplace = inplace
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != std.shape:
            raise ValueError(f"mean and std must have the same shape, got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("mean and std must be finite")
        if (std < 0).any():
            raise ValueError("std must be non-negative")
        n_floored = int((std < min_std).sum())
        if n_floored:
            warnings.warn(
                f"SpecNormalize: {n_floored} of {std.numel()} standard deviations are below min_std={min_std} "
                "(constant values, e.g. silent clips or empty frequency bins); they are floored to min_std",
                stacklevel=2,
            )
        self.mean, self.std = mean, std.clamp_min(min_std)
        self.min_std, self.red_dims = min_std, None if red_dims is None else tuple(red_dims)

    @property
    def name(self) -> str:
        return f"SpecNormalize -- stats of shape {tuple(self.mean.shape)}, red_dims={self.red_dims}"

    @classmethod
    def from_stats(cls, recorder, min_std: float = 1e-5, inplace: bool = False) -> SpecNormalize:
        "Build from a `StatsRecorder` (its float32 `mean` and population `std`)."
        return cls(recorder.mean.cpu(), recorder.std.cpu(), min_std=min_std, red_dims=recorder.red_dims, inplace=inplace)

    def _check(self, x: Tensor) -> None:
        try:
            torch.broadcast_shapes(self.mean.shape, x.shape)
        except RuntimeError as e:
            raise ValueError(
                f"SpecNormalize statistics of shape {tuple(self.mean.shape)} do not broadcast to spectrograms of shape "
                f"{tuple(x.shape)}; were they computed with other spectrogram settings?"
            ) from e

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        self._check(x)
        return _with_unit(F.normalize(x, self.mean, self.std, inplace=getattr(self, "inplace", False)), "std")

    def decodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return _with_unit(F.denormalize(x, self.mean, self.std), "dB")


class InstanceMinMax(Transform):
    """Per spectrogram: standardize, then min-max to [0, 1] (`functional.instance_minmax`).

    A batch transform on `(batch, channels, freq, time)`: statistics are per item over channels,
    frequency and time, never across the batch; a constant spectrogram (silent clip) becomes zeros.
    Not invertible, so `decodes` returns its input (shown on a [0, 1] scale). `inplace`: see the
    module docstring.
    """

    order = 99

    def __init__(self, eps: float = 1e-6, inplace: bool = False):
        super().__init__()
        self.eps, self.inplace = eps, inplace

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return _with_unit(F.instance_minmax(x, self.eps, inplace=getattr(self, "inplace", False)), "[0, 1]")


class DbRangeNormalize(DisplayedTransform):
    """Tacotron's fixed dB range: `((x - ref_level_db) - min_level_db) / -min_level_db`, clipped to
    [0, 1] when `clip`; `decodes` maps back to dB (values that were clipped stay at the range ends).

    x: spectrogram in dB. Defaults follow Tacotron: min_level_db -100 dB, ref_level_db 20 dB.
    `inplace`: see the module docstring.
    """

    order = 99

    def __init__(self, min_level_db: float = -100.0, ref_level_db: float = 20.0, clip: bool = True, inplace: bool = False):
        super().__init__()
        if not min_level_db < 0:
            raise ValueError(f"min_level_db must be negative (dB), got {min_level_db}")
        self.min_level_db, self.ref_level_db, self.clip, self.inplace = min_level_db, ref_level_db, clip, inplace

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        if getattr(x, "unit", "dB") not in ("dB", None):
            raise ValueError(f"DbRangeNormalize expects a spectrogram in dB, got unit {x.unit!r}; use AudioToSpec(to_db=True)")
        return _with_unit(F.db_range(x, self.min_level_db, self.clip, self.ref_level_db, inplace=getattr(self, "inplace", False)), "[0, 1]")

    def decodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return _with_unit(F.db_range_inverse(x, self.min_level_db, self.ref_level_db), "dB")


SPEC_NORMALIZERS = (SpecNormalize, InstanceMinMax, DbRangeNormalize)
