"""fastai Transforms that normalize waveforms and spectrograms, each a thin wrapper of a function in
`fastspecnorm.functional`, with a `decodes` that inverts it where it can."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from fastcore.foundation import L
from fasttransform import DisplayedTransform, Transform
from torch import Tensor

from . import functional as F
from .audio.tensors import AudioSpectrogram, AudioTensor, RefusePlainTensor, rewrap, valid_mask_or_none

if TYPE_CHECKING:  # for the annotation of `SpecNormalize.from_stats` only
    from .stats import StatsRecorder

__all__ = ["SpecNormalizer", "WaveformNormalize", "SpecNormalize", "InstanceMinMax", "DbRangeNormalize"]


class SpecNormalizer(RefusePlainTensor, Transform):
    """Base class of the spectrogram normalizations: the statistics pass leaves its subclasses out.

    `stats_loader` (and so `StatsCallback`) drops every `SpecNormalizer` from the statistics
    pipeline, and `install_normalizer` replaces any of them. Subclass it for a normalization of your
    own, with an `encodes` on `AudioSpectrogram`. What the package's normalizations share:

    - `order` 99, like fastai's `Normalize`: after `AudioToSpec` (60), before `SpecAugment` (100).
    - `inplace=True` (like torchvision's `Normalize(inplace=True)`) writes the result into the input
      batch: only for an input nobody else holds, such as `AudioToSpec`'s fresh output.
    - On padded batches (`lengths`), statistics over each item's valid frames only, and padded
      frames set to 0, so a clip's values do not depend on its batch's padding.
    - Called directly on a plain `torch.Tensor` they raise TypeError (wrap it:
      `AudioSpectrogram(x)`); inside a fastai batch tuple, labels and other tensors pass through.

    Examples:
        >>> class Halve(SpecNormalizer):
        ...     def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        ...         return x / 2
        >>> Halve()(AudioSpectrogram(torch.tensor([[[[2.0, 4.0]]]])))
        AudioSpectrogram([[[[1., 2.]]]])
    """

    order = 99
    wrap_hint = "AudioSpectrogram(x) for a (batch, channels, freq, time) spectrogram"
    inplace = False  # also for a transform pickled before `inplace` existed


class WaveformNormalize(RefusePlainTensor, Transform):
    """Per clip and channel: zero mean, unit std over samples (`functional.standardize_waveform`).

    On one clip `(channels, samples)` or a batch `(batch, channels, samples)`, padding handled as by
    the `SpecNormalizer`s. Not invertible: `decodes` returns its input. `order` 50: before
    `AudioToSpec` (60). Like the `SpecNormalizer`s, it refuses a plain `torch.Tensor` (TypeError).

    Args:
        eps: a clip whose std (amplitude) is at or below it counts as silent and becomes zeros.
        inplace: write the result into the input batch (see `SpecNormalizer`).

    Examples:
        >>> WaveformNormalize()(AudioTensor(torch.tensor([[[1.0, 3.0]]]), sr=16000))
        AudioTensor([[[-1.,  1.]]])
    """

    order = 50
    inplace = False  # also for a transform pickled before `inplace` existed

    def __init__(self, eps: float = 1e-8, inplace: bool = False):
        super().__init__()
        self.eps, self.inplace = eps, inplace

    def encodes(self, x: AudioTensor) -> AudioTensor:
        return F.standardize_waveform(x, self.eps, inplace=self.inplace, mask=valid_mask_or_none(x))


class SpecNormalize(SpecNormalizer, DisplayedTransform):
    """Normalize spectrograms with fixed statistics: `(x - mean) / std`, inverted by `decodes`.

    Build it from a `StatsRecorder` with `from_stats`. The statistics are in `parameters`, so
    `DataLoader.to(device)` moves them. The output's `unit` is "std"; `decodes` gives "dB" back.

    Args:
        mean: statistics (anything `torch.as_tensor` takes) broadcastable to
            `(batch, channels, freq, time)`, e.g. `(1, 1, freq, 1)` per frequency bin or
            `(1, channels, 1, 1)` global, in the spectrogram's unit (dB). Stored as float32.
        std: standard deviations of the same shape and unit.
        min_std: standard deviations below it (constant bins) are floored to it with a warning.
        red_dims: the dimensions the statistics were reduced over, shown in `name`; None: not known.
        inplace: write the result into the input batch (see `SpecNormalizer`).

    Raises:
        ValueError: mean and std differ in shape, are not finite, or std is negative; when
            called, statistics that do not broadcast to the spectrograms.

    Examples:
        >>> norm = SpecNormalize(torch.full((1, 1, 1, 1), -40.0), torch.full((1, 1, 1, 1), 10.0))
        >>> y = norm(AudioSpectrogram(torch.tensor([[[[-30.0, -50.0]]]])))
        >>> y, y.unit
        (AudioSpectrogram([[[[ 1., -1.]]]]), 'std')
        >>> norm.decode(y)
        AudioSpectrogram([[[[-30., -50.]]]])
    """

    parameters = L("mean", "std")

    def __init__(self, mean: Tensor | float, std: Tensor | float, min_std: float = 1e-5, red_dims: Sequence[int] | None = None,
                 inplace: bool = False):  # fmt: skip
        super().__init__()
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
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
        self.min_std, self.red_dims, self.inplace = min_std, None if red_dims is None else tuple(red_dims), inplace

    @property
    def name(self) -> str:
        "The name fastai shows for this transform: the statistics' shape and `red_dims`."
        return f"SpecNormalize -- stats of shape {tuple(self.mean.shape)}, red_dims={self.red_dims}"

    @classmethod
    def from_stats(cls, recorder: StatsRecorder, min_std: float = 1e-5, inplace: bool = False) -> SpecNormalize:
        """Build from a `StatsRecorder` (its float32 `mean` and population `std`).

        Args:
            recorder: a `StatsRecorder` that has seen data; its `red_dims` are kept for `name`.
            min_std: floor of the standard deviations (see the class).
            inplace: write into the input batch (see the class).

        Returns:
            The transform, with the statistics on the CPU (the DataLoader moves them).

        Raises:
            ValueError: the recorder has seen no data.

        Examples:
            >>> from fastspecnorm.stats import StatsRecorder
            >>> rec = StatsRecorder((0, 1, 3)).update(torch.randn(4, 1, 64, 50))
            >>> SpecNormalize.from_stats(rec).mean.shape
            torch.Size([1, 1, 64, 1])
        """
        return cls(recorder.mean.cpu(), recorder.std.cpu(), min_std=min_std, red_dims=recorder.red_dims, inplace=inplace)

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        try:
            torch.broadcast_shapes(self.mean.shape, x.shape)
        except RuntimeError as e:
            raise ValueError(
                f"SpecNormalize statistics of shape {tuple(self.mean.shape)} do not broadcast to spectrograms of shape "
                f"{tuple(x.shape)}; were they computed with other spectrogram settings?"
            ) from e
        out = F.normalize(x, self.mean, self.std, inplace=self.inplace, mask=valid_mask_or_none(x))
        return rewrap(out, x, unit="std")

    def decodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return rewrap(F.denormalize(x, self.mean, self.std), x, unit="dB")


class InstanceMinMax(SpecNormalizer):
    """Per spectrogram: standardize, then min-max to [0, 1] (`functional.instance_minmax`).

    Over each item's channels, frequency and time; a constant spectrogram (silent clip) becomes zeros.
    Not invertible: `decodes` returns its input (`unit` "[0, 1]").

    Args:
        eps: added to each item's std, and the smallest standardized range that is not constant.
        inplace: write the result into the input batch (see `SpecNormalizer`).

    Examples:
        >>> InstanceMinMax()(AudioSpectrogram(torch.tensor([[[[-80.0, -40.0, -60.0]]]])))
        AudioSpectrogram([[[[0.0000, 1.0000, 0.5000]]]])
    """

    def __init__(self, eps: float = 1e-6, inplace: bool = False):
        super().__init__()
        self.eps, self.inplace = eps, inplace

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        out = F.instance_minmax(x, self.eps, inplace=self.inplace, mask=valid_mask_or_none(x))
        return rewrap(out, x, unit="[0, 1]")


class DbRangeNormalize(SpecNormalizer, DisplayedTransform):
    """Tacotron's fixed dB range of `functional.db_range` on spectrograms in dB; `decodes` maps back to dB.

    Defaults follow Tacotron: -80 dB maps to 0 and +20 dB to 1. The fixed range assumes the
    recording's own level: the loaders warn when `WaveformNormalize` runs first.

    Args:
        min_level_db: bottom of the range relative to `ref_level_db`, in dB (< 0).
        ref_level_db: the level that maps to 1, in dB.
        clip: clamp the result to [0, 1]; `decodes` gives the range ends for clipped values.
        inplace: write the result into the input batch (see `SpecNormalizer`).

    Raises:
        ValueError: `min_level_db` is not negative; when called, a spectrogram whose `unit` is not dB.

    Examples:
        >>> DbRangeNormalize()(AudioSpectrogram(torch.tensor([[[[-80.0, -30.0, 20.0, 30.0]]]])))
        AudioSpectrogram([[[[0.0000, 0.5000, 1.0000, 1.0000]]]])
    """

    assumes_recording_level = True  # `WaveformNormalize` before it would clip many values to 1

    def __init__(self, min_level_db: float = -100.0, ref_level_db: float = 20.0, clip: bool = True, inplace: bool = False):
        super().__init__()
        if not min_level_db < 0:
            raise ValueError(f"min_level_db must be negative (dB), got {min_level_db}")
        self.min_level_db, self.ref_level_db, self.clip, self.inplace = min_level_db, ref_level_db, clip, inplace

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        if getattr(x, "unit", "dB") not in ("dB", None):
            raise ValueError(f"DbRangeNormalize expects a spectrogram in dB, got unit {x.unit!r}; use AudioToSpec(to_db=True)")
        mask = valid_mask_or_none(x)
        out = F.db_range(x, self.min_level_db, self.clip, self.ref_level_db, inplace=self.inplace, mask=mask)
        return rewrap(out, x, unit="[0, 1]")

    def decodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return rewrap(F.db_range_inverse(x, self.min_level_db, self.ref_level_db), x, unit="dB")


__all__ += ["warn_level_after_waveform_norm"]


def warn_level_after_waveform_norm(tfms) -> bool:
    """Warn when a transform of `tfms` assumes the recording's own level but runs after `WaveformNormalize`.

    Such transforms set `assumes_recording_level` (e.g. `DbRangeNormalize`). The loaders call it when `waveform_norm=True`.

    Args:
        tfms: the transforms that are to run after `WaveformNormalize` (instances).

    Returns:
        True when it warned (a `UserWarning` naming the transforms), else False.

    Examples:
        >>> warn_level_after_waveform_norm([SpecNormalize(torch.zeros(1), torch.ones(1))])
        False
    """
    level = [type(t).__name__ for t in tfms if getattr(t, "assumes_recording_level", False)]
    if level:
        warnings.warn(
            f"{', '.join(level)} assume(s) the recording's own level, but WaveformNormalize runs first and scales every clip "
            "to unit standard deviation (about +20 dB louder for typical recordings, so many values are clipped); "
            "pass waveform_norm=False to keep the recorded level",
            stacklevel=3,
        )
    return bool(level)


__all__ += ["PCEN", "UtteranceNormalize", "INT32_ENERGY_SCALE"]

INT32_ENERGY_SCALE = 2.0**62
"""`(2**31)**2`: energies of [-1, 1] audio scaled as if the audio were int32, the level librosa's PCEN defaults assume."""


class PCEN(SpecNormalizer, DisplayedTransform):
    """Per-channel energy normalization (`functional.pcen`, equal to `librosa.pcen`) of power spectrograms.

    Needs energies, not dB: `AudioToSpec(to_db=False)` (unit "power"). Padded frames become 0.
    Not inverted: `decodes` returns its input. The output's `unit` is "pcen".

    Args:
        gain: exponent of the automatic gain control (librosa's `gain`).
        bias: offset before the root compression (librosa's `bias`), >= 0.
        power: exponent of the root compression (librosa's `power`), >= 0; 0 takes a log.
        time_constant: the smoother's time constant, in seconds.
        eps: floor of the smoothed energy (> 0), on the scaled energies.
        input_scale: the energies are multiplied by it first (> 0); see `INT32_ENERGY_SCALE`.
        sr: sample rate in Hz, for the time constant; None: the spectrogram's `sr`.
        hop_length: hop in samples, for the time constant; None: the spectrogram's `hop_length`.

    Raises:
        ValueError: `input_scale` is not positive; when called, a spectrogram whose `unit` is not "power",
            one without sample rate or hop length when none is given, or parameters `functional.pcen` refuses.

    Examples:
        >>> x = AudioSpectrogram(torch.rand(2, 1, 40, 50), sr=8000, hop_length=80, unit="power")
        >>> y = PCEN()(x)
        >>> y.shape, y.unit
        (torch.Size([2, 1, 40, 50]), 'pcen')
    """

    def __init__(
        self,
        gain: float = 0.98,
        bias: float = 2.0,
        power: float = 0.5,
        time_constant: float = 0.4,
        eps: float = 1e-6,
        input_scale: float = INT32_ENERGY_SCALE,
        sr: float | None = None,
        hop_length: int | None = None,
    ):
        super().__init__()
        if not input_scale > 0:
            raise ValueError(f"input_scale must be positive, got {input_scale}")
        self.gain, self.bias, self.power, self.time_constant, self.eps = gain, bias, power, time_constant, eps
        self.input_scale, self.sr, self.hop_length = input_scale, sr, hop_length

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        if getattr(x, "unit", None) != "power":
            raise ValueError(
                f"PCEN expects a power spectrogram (energies), got unit {getattr(x, 'unit', None)!r}; "
                "use AudioToSpec(to_db=False) (ESC50Settings to_db=False)"
            )
        sr, hop = self.sr or getattr(x, "sr", None), self.hop_length or getattr(x, "hop_length", None)
        if not (sr and hop):
            raise ValueError(
                "PCEN needs the sample rate and hop length: the spectrogram has none, pass PCEN(sr=..., hop_length=...)"
            )
        # float32 at least: 2**62 overflows float16.
        scaled = x.to(torch.promote_types(x.dtype, torch.float32)) * self.input_scale
        mask = valid_mask_or_none(x)
        out = F.pcen(scaled, sr, hop, self.gain, self.bias, self.power, self.time_constant, self.eps, mask=mask)
        return rewrap(out.to(x.dtype), x, unit="pcen")


class UtteranceNormalize(SpecNormalizer):
    """Per item and frequency bin, over the item's valid time frames: `(x - mean) / max(std, eps)`.

    The Transform of `functional.utterance_mvn` (ESPnet's UtteranceMVN). Not invertible: `decodes`
    returns its input. The output's `unit` is "std".

    Args:
        eps: floor of each bin's population std, in the spectrogram's unit (dB; > 0).

    Raises:
        ValueError: `eps` is not positive.

    Examples:
        >>> UtteranceNormalize()(AudioSpectrogram(torch.tensor([[[[1.0, 3.0]]]])))
        AudioSpectrogram([[[[-1.,  1.]]]])
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return rewrap(F.utterance_mvn(x, mask=valid_mask_or_none(x), eps=self.eps), x, unit="std")
