"""Normalization math on plain tensors: the functions the fastai Transforms and the statistics wrap.

Waveforms are `(batch, channels, samples)`, spectrograms `(batch, channels, freq, time)`. Each function keeps
the input's dtype (float16 / bfloat16 computed in float32), changes its input only with `inplace=True` (unless
autograd tracks it), and raises TypeError when x is not a floating-point tensor or mask not a bool tensor, and
ValueError when mask does not broadcast to x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ._compat import import_torchaudio

__all__ = [
    "padding_mask",
    "masked_moments",
    "standardize_waveform",
    "instance_minmax",
    "db_range",
    "db_range_inverse",
    "normalize",
    "denormalize",
    "Moments",
    "merge_moments",
    "moments_std",
]


def _compute_dtype(x: Tensor) -> torch.dtype:
    "float16/bfloat16 lose too much in reductions: compute those in float32."
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _output(x: Tensor, inplace: bool) -> Tensor:
    "Where the result is computed: `x` itself with `inplace` (if allowed, see `_finish`), else a copy in the compute dtype."
    if inplace and not (torch.is_grad_enabled() and x.requires_grad) and _compute_dtype(x) == x.dtype:
        return x
    return x.to(_compute_dtype(x), copy=True)


def _finish(out: Tensor, x: Tensor, inplace: bool) -> Tensor:
    "`out` in x's dtype; with `inplace` written into `x` (the float16 case) unless autograd tracks x."
    if out is x:
        return x
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        return x.copy_(out)
    return out.to(x.dtype)


def _check_float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with .float()")


def _check_mask(mask: Tensor | None, x: Tensor) -> Tensor | None:
    "`mask` as a bool tensor on x's device, checked to broadcast to x (None stays None)."
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor broadcastable to x, got {getattr(mask, 'dtype', type(mask).__name__)}")
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError as e:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to x of shape {tuple(x.shape)}") from e
    return mask.as_subclass(Tensor).to(x.device)


def _masked_fill_zero(out: Tensor, mask: Tensor | None) -> Tensor:
    "Padded positions (mask False) set to 0, in place."
    return out if mask is None else out.masked_fill_(~mask, 0.0)


def padding_mask(lengths: Tensor, size: int, device: torch.device | str | None = None, ndim: int = 2) -> Tensor:
    """Bool mask of the valid positions of a padded batch: True at positions `< lengths[i]` of item i.

    Args:
        lengths: the valid positions per item, `(batch,)` integers, in samples or frames.
        size: the length of the padded (last) axis, in the same unit.
        device: the mask's device; None keeps that of `lengths`.
        ndim: the mask's number of dimensions, >= 2: 3 for waveforms, 4 for spectrograms.

    Returns:
        bool `(batch, 1, ..., 1, size)`, `ndim` dimensions.

    Raises:
        ValueError: `lengths` does not have shape `(batch,)`, or `ndim` < 2.

    Examples:
        >>> padding_mask(torch.tensor([1, 3]), 4)
        tensor([[ True, False, False, False],
                [ True,  True,  True, False]])
    """
    lengths = torch.as_tensor(lengths).to(device=device)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (batch,), got {tuple(lengths.shape)}")
    if ndim < 2:
        raise ValueError(f"ndim must be at least 2 (batch, ..., size), got {ndim}")
    mask = torch.arange(size, device=lengths.device) < lengths[:, None]
    return mask.reshape(lengths.shape[0], *([1] * (ndim - 2)), size)


def standardize_waveform(x: Tensor, eps: float = 1e-8, inplace: bool = False, mask: Tensor | None = None) -> Tensor:
    """Zero mean and unit (population) standard deviation per item and channel, over samples.

    A silent clip (std <= eps, or below 1e-5 of its mean: a constant level up to rounding) becomes
    all zeros, never NaN.

    Args:
        x: floating-point waveforms `(..., samples)`, e.g. `(batch, channels, samples)`.
        eps: a std at or below it (amplitude) counts as silence.
        inplace: write the result into x itself.
        mask: optional bool broadcastable to x (e.g. `(batch, 1, samples)`), True at the samples
            that count: mean and std over those only, and the padding becomes 0. None: all count.

    Returns:
        A tensor of x's shape and dtype (x itself with `inplace`).

    Raises:
        ValueError: x has no samples.

    Examples:
        >>> standardize_waveform(torch.tensor([[1.0, 3.0]]))
        tensor([[-1.,  1.]])
        >>> standardize_waveform(torch.zeros(1, 4))  # silence stays silence
        tensor([[0., 0., 0., 0.]])
    """
    _check_float(x, "x")
    mask = _check_mask(mask, x)
    if x.shape[-1] == 0:
        raise ValueError(f"x has no samples (shape {tuple(x.shape)}); expected (..., samples) with samples > 0")
    xc = x.to(_compute_dtype(x))
    if mask is None:
        # The norm of the deviations: torch.std_mean's std, faster on CPU (docs/performance.md).
        mean = xc.mean(dim=-1, keepdim=True)
        out = _output(x, inplace).sub_(mean)
        std = torch.linalg.vector_norm(out, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
    else:
        moments = masked_moments(xc, (-1,), mask, dtype=xc.dtype)
        mean, std = moments.mean, moments_std(moments)
        out = _output(x, inplace).sub_(mean)
    # A constant clip's rounded mean leaves deviations of about 1e-7 of its level: below 1e-5 is silence.
    silent = (std <= eps) | (std <= 1e-5 * mean.abs())
    scale = torch.where(silent, torch.full_like(std, math.inf), std)  # silence: x / inf = 0
    # Out of place where autograd tracks `out`: the norm above saved it for the backward pass.
    out = out / scale if torch.is_grad_enabled() and out.requires_grad else out.div_(scale)
    return _finish(_masked_fill_zero(out, mask), x, inplace)


def instance_minmax(x: Tensor, eps: float = 1e-6, inplace: bool = False, mask: Tensor | None = None) -> Tensor:
    """Per item: standardize, then map to [0, 1] with the item's own min and max.

    Over all non-batch dimensions: `z = (x - mean) / (std + eps)`, then `(z - min(z)) / (max(z) - min(z))`,
    or all zeros when `max(z) - min(z) <= eps` (a constant spectrogram such as a silent clip's).

    Args:
        x: floating-point spectrograms `(batch, freq, time)` or `(batch, channels, freq, time)`.
        eps: added to the std, and the smallest standardized range that is not constant.
        inplace: write the result into x itself.
        mask: optional bool broadcastable to x (e.g. `(batch, 1, 1, time)`): statistics over the
            True positions only, and the others (padding) become 0. None: all count.

    Returns:
        A tensor of x's shape and dtype, values in [0, 1] (x itself with `inplace`).

    Raises:
        ValueError: x has neither 3 nor 4 dimensions.

    Examples:
        >>> instance_minmax(torch.tensor([[[-80.0, -40.0, -60.0]]]))
        tensor([[[0.0000, 1.0000, 0.5000]]])
    """
    _check_float(x, "x")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"instance_minmax expects (batch, freq, time) or (batch, channels, freq, time), got shape {tuple(x.shape)}"
        )
    mask = _check_mask(mask, x)
    if x.shape[0] == 0:
        return _finish(_output(x, inplace), x, inplace)
    # Min-max is unchanged by the standardization's affine map: only the constant-item test needs std.
    dims = tuple(range(1, x.dim()))
    xc = x.to(_compute_dtype(x))
    std = moments_std(masked_moments(xc, dims, mask, dtype=xc.dtype))
    if mask is None:
        lo, hi = xc.amin(dim=dims, keepdim=True), xc.amax(dim=dims, keepdim=True)
    else:
        keep = mask.expand_as(xc)
        lo = torch.where(keep, xc, math.inf).amin(dim=dims, keepdim=True)
        hi = torch.where(keep, xc, -math.inf).amax(dim=dims, keepdim=True)
    ok = (hi - lo) / (std + eps) > eps
    span = torch.where(ok, hi - lo, torch.full_like(hi, math.inf))  # constant items: x / inf = 0
    lo = torch.where(torch.isfinite(lo), lo, 0.0)  # an item with no valid position: all padding -> 0
    out = _output(x, inplace).sub_(lo).div_(span).clamp_(0.0, 1.0)
    return _finish(_masked_fill_zero(out, mask), x, inplace)


def db_range(
    x: Tensor,
    min_level_db: float = -100.0,
    clip: bool = True,
    ref_level_db: float = 0.0,
    inplace: bool = False,
    mask: Tensor | None = None,
) -> Tensor:
    """Tacotron's fixed dB range: `((x - ref_level_db) - min_level_db) / -min_level_db`.

    `ref_level_db + min_level_db` dB maps to 0 and `ref_level_db` to 1 (-100..0 dB by default).

    Args:
        x: a floating-point spectrogram in dB, any shape.
        min_level_db: bottom of the range relative to `ref_level_db`, in dB (< 0).
        clip: clamp the result to [0, 1]; `db_range_inverse` cannot bring clipped values back.
        ref_level_db: the level (dB) that maps to 1.
        inplace: write the result into x itself.
        mask: optional bool broadcastable to x; positions where it is False (padding) become 0.

    Returns:
        A tensor of x's shape and dtype (x itself with `inplace`).

    Raises:
        ValueError: `min_level_db` is not negative.

    Examples:
        >>> db_range(torch.tensor([-100.0, -50.0, 0.0, 10.0]))
        tensor([0.0000, 0.5000, 1.0000, 1.0000])
    """
    _check_float(x, "x")
    mask = _check_mask(mask, x)
    if not min_level_db < 0:
        raise ValueError(f"min_level_db must be negative (dB), got {min_level_db}")
    out = _output(x, inplace).sub_(ref_level_db).sub_(min_level_db).div_(-min_level_db)
    return _finish(_masked_fill_zero(out.clamp_(0.0, 1.0) if clip else out, mask), x, inplace)


def db_range_inverse(y: Tensor, min_level_db: float = -100.0, ref_level_db: float = 0.0) -> Tensor:
    """Undo `db_range`: `y * -min_level_db + min_level_db + ref_level_db`, in dB (exact when not clipped).

    Args:
        y: floating-point values on `db_range`'s [0, 1] scale, any shape.
        min_level_db: the `min_level_db` given to `db_range`, in dB (< 0).
        ref_level_db: the `ref_level_db` given to `db_range`, in dB.

    Returns:
        A new tensor of y's shape: the levels in dB.

    Raises:
        ValueError: `min_level_db` is not negative.

    Examples:
        >>> db_range_inverse(torch.tensor([0.0, 0.5, 1.0]), ref_level_db=20.0)
        tensor([-80., -30.,  20.])
    """
    _check_float(y, "y")
    if not min_level_db < 0:
        raise ValueError(f"min_level_db must be negative (dB), got {min_level_db}")
    return y * -min_level_db + min_level_db + ref_level_db


def normalize(x: Tensor, mean: Tensor, std: Tensor, inplace: bool = False, mask: Tensor | None = None) -> Tensor:
    """`(x - mean) / std` with broadcasting statistics, moved to x's device (float16 results beyond its range become +-inf).

    Args:
        x: floating-point spectrograms, e.g. `(batch, channels, freq, time)` in dB.
        mean: statistics broadcastable to x, e.g. `(1, 1, freq, 1)` per frequency bin or
            `(1, channels, 1, 1)` global, as `StatsRecorder` gives them; in x's unit.
        std: standard deviations of the same shape, in x's unit; not floored here.
        inplace: write the result into x itself (not when the statistics have more dimensions).
        mask: optional bool broadcastable to x; positions where it is False (padding) become 0.

    Returns:
        A tensor of x's dtype, in standard deviations (x itself with `inplace`).

    Examples:
        >>> normalize(torch.tensor([[-30.0, -50.0]]), torch.tensor(-40.0), torch.tensor(10.0))
        tensor([[ 1., -1.]])
    """
    _check_float(x, "x")
    mask = _check_mask(mask, x)
    dt = _compute_dtype(x)
    mean, std = mean.to(device=x.device, dtype=dt), std.to(device=x.device, dtype=dt)
    if torch.broadcast_shapes(mean.shape, std.shape, x.shape) != x.shape:  # statistics with more dimensions than x
        out = (x.to(dt) - mean) / std
        return (out if mask is None else out.masked_fill(~mask, 0.0)).to(x.dtype)
    return _finish(_masked_fill_zero(_output(x, inplace).sub_(mean).div_(std), mask), x, inplace)


def denormalize(y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Inverse of `normalize`: `y * std + mean`, broadcasting the statistics.

    Args:
        y: floating-point normalized values, e.g. `(batch, channels, freq, time)`.
        mean: the statistics given to `normalize`, broadcastable to y.
        std: the standard deviations given to `normalize`, of the same shape.

    Returns:
        A new tensor of y's dtype, in the unit of the statistics (e.g. dB).
    """
    _check_float(y, "y")
    dt = _compute_dtype(y)
    return (y.to(dt) * std.to(device=y.device, dtype=dt) + mean.to(device=y.device, dtype=dt)).to(y.dtype)


# Sufficient statistics (count, mean, M2), merged exactly with Chan et al.'s formula: what `StatsRecorder` accumulates.


class Moments(NamedTuple):
    """Sufficient statistics, all of the same keepdim shape and dtype; population variance is `m2 / count`.

    Attributes:
        count: number of counted values per kept position.
        mean: their mean.
        m2: the sum of squared deviations from `mean`.
    """

    count: Tensor
    mean: Tensor
    m2: Tensor


def masked_moments(x: Tensor, red_dims: Sequence[int], mask: Tensor | None = None, dtype: torch.dtype = torch.float64) -> Moments:
    """Moments of `x` over `red_dims` (kept with keepdim), counting only `mask`, computed in `dtype`.

    The package's one masked mean and std (with `moments_std`), two-pass so nothing cancels far from 0. Differentiable.

    Args:
        x: any float tensor, e.g. `(batch, channels, freq, time)`.
        red_dims: the dimensions to reduce, e.g. `(0, 2, 3)` for one set of moments per channel.
        mask: optional bool, broadcastable to x, True where a value counts; other values (NaN
            padding included) never count. None: every value counts.
        dtype: the dtype the moments are computed and returned in.

    Returns:
        `Moments` of keepdim shape (size 1 along `red_dims`). Positions with no counted value get
        count 0, mean 0, m2 0.

    Examples:
        >>> m = masked_moments(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), red_dims=(1,))
        >>> m.count, m.mean, m.m2
        (tensor([[4.]], dtype=torch.float64), tensor([[2.5000]], dtype=torch.float64), tensor([[5.]], dtype=torch.float64))
        >>> masked_moments(torch.tensor([[1.0, 3.0, 99.0]]), (1,), torch.tensor([[True, True, False]])).mean
        tensor([[2.]], dtype=torch.float64)
    """
    dims = tuple(red_dims)
    xd = x.to(dtype)
    if mask is None:
        var, mean = torch.var_mean(xd, dim=dims, keepdim=True, correction=0)
        count = torch.full_like(mean, float(math.prod(x.shape[d] for d in dims)))
        return Moments(count, mean, var * count)
    keep = mask.to(xd.device).expand_as(xd)
    count = keep.sum(dim=dims, keepdim=True).to(dtype)  # counted as integers: exact at any size
    # where(), not multiplication by the mask: uncounted values may be NaN/Inf padding (NaN * 0 = NaN).
    mean = torch.where(keep, xd, 0.0).sum(dim=dims, keepdim=True) / count.clamp_min(1.0)
    dev = torch.where(keep, xd - mean, 0.0)
    return Moments(count, mean, dev.square().sum(dim=dims, keepdim=True))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan's exact merge of two sets of moments (pure); positions with no value stay zero.

    Args:
        a: moments of the first part of the data.
        b: moments of the second part, of the same shape and on the same device.

    Examples:
        >>> x = torch.randn(2, 100, dtype=torch.float64)
        >>> both = merge_moments(masked_moments(x[:, :30], (1,)), masked_moments(x[:, 30:], (1,)))
        >>> torch.allclose(both.m2, masked_moments(x, (1,)).m2)
        True
    """
    n = a.count + b.count
    safe_n = torch.where(n > 0, n, torch.ones_like(n))
    delta = b.mean - a.mean
    mean = torch.where(n > 0, a.mean + delta * b.count / safe_n, torch.zeros_like(n))
    m2 = a.m2 + b.m2 + delta * delta * a.count * b.count / safe_n
    return Moments(n, mean, m2)


def moments_std(m: Moments, correction: int = 0) -> Tensor:
    """Standard deviation from moments: `sqrt(m2 / (count - correction))` (population std by default).

    Args:
        m: the moments.
        correction: subtracted from the count (0: population std, 1: sample std); the divisor is
            at least 1, so a position with too few values gets std 0, never NaN.

    Returns:
        Standard deviations of the moments' shape and dtype.
    """
    return torch.sqrt(m.m2 / (m.count - correction).clamp_min(1.0))


__all__ += ["pcen_smoothing_coef", "pcen", "utterance_mvn"]


def pcen_smoothing_coef(sr: float = 16000, hop_length: int = 200, time_constant: float = 0.4) -> float:
    """librosa's PCEN smoothing coefficient: `(sqrt(1 + 4 t^2) - 1) / (2 t^2)`, `t = time_constant * sr / hop_length`.

    Args:
        sr: sample rate of the audio, in Hz.
        hop_length: hop between frames, in samples.
        time_constant: the smoother's time constant, in seconds.

    Returns:
        b, in (0, 1].

    Raises:
        ValueError: `sr`, `hop_length` or `time_constant` is not positive.

    Examples:
        >>> round(pcen_smoothing_coef(16000, 200, 0.4), 4)
        0.0308
    """
    if not (sr > 0 and hop_length > 0 and time_constant > 0):
        raise ValueError(f"sr, hop_length and time_constant must be positive, got {sr}, {hop_length}, {time_constant}")
    t_frames = time_constant * sr / float(hop_length)
    return (math.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)


def pcen(
    x: Tensor,
    sr: float = 16000,
    hop_length: int = 200,
    gain: float = 0.98,
    bias: float = 2.0,
    power: float = 0.5,
    time_constant: float = 0.4,
    eps: float = 1e-6,
    mask: Tensor | None = None,
    b: float | None = None,
) -> Tensor:
    """Per-channel energy normalization of a linear spectrogram, as `librosa.pcen`.

    Per item and frequency bin along time, equal to `librosa.pcen` with the same arguments (about 1e-6
    relative in float32); differentiable. librosa's defaults assume int32-scaled audio: multiply the
    energies of [-1, 1] audio by `2.0**62` first, as the `PCEN` Transform does.

    Args:
        x: floating-point energies (power, not dB; >= 0), `(..., freq, time)`.
        sr: sample rate of the audio, in Hz (for the time constant).
        hop_length: hop between frames, in samples (for the time constant).
        gain: exponent of the automatic gain control (librosa's `gain`).
        bias: offset before the root compression (librosa's `bias`), >= 0.
        power: exponent of the root compression (librosa's `power`), >= 0; 0 takes a log.
        time_constant: the smoother's time constant, in seconds.
        eps: floor of the smoothed energy, > 0, in x's unit.
        mask: optional bool broadcastable to x, e.g. `(batch, 1, 1, time)`, True on valid frames; masked
            frames become 0 (the PCEN of silence) and, trailing, never reach valid ones. None: all valid.
        b: the smoothing coefficient, in (0, 1]; None: `pcen_smoothing_coef(sr, hop_length, time_constant)`.

    Returns:
        A tensor of x's shape and dtype (float16/bfloat16 computed in float32).

    Raises:
        ValueError: x has fewer than 2 dimensions, a parameter is out of range, or a valid value is negative (dB input).
        ImportError: torchaudio cannot load next to the installed torch (naming both versions).

    Examples:
        >>> pcen(torch.zeros(1, 3)).abs().max().item()
        0.0
        >>> pcen(torch.full((1, 64, 100), 2.0**62)).shape
        torch.Size([1, 64, 100])
    """
    _check_float(x, "x")
    if x.dim() < 2:
        raise ValueError(f"pcen expects (..., freq, time), got shape {tuple(x.shape)}")
    b = pcen_smoothing_coef(sr, hop_length, time_constant) if b is None else b
    if not 0 < b <= 1:
        raise ValueError(f"b must be in (0, 1], got {b}")
    if power < 0 or bias < 0 or gain < 0 or eps <= 0:
        raise ValueError(f"pcen needs power, bias, gain >= 0 and eps > 0, got power={power}, bias={bias}, gain={gain}, eps={eps}")
    mask = _check_mask(mask, x)
    xc = x.to(_compute_dtype(x))
    xc = xc if mask is None else xc.masked_fill(~mask, 0.0)
    if bool((xc < 0).any()):
        raise ValueError("pcen expects energies >= 0 (a power spectrogram, not dB); use AudioToSpec(to_db=False)")
    if x.numel() == 0:
        return x.clone()
    torchaudio = import_torchaudio()
    a_coeffs = torch.tensor([1.0, b - 1.0], dtype=xc.dtype, device=xc.device)
    b_coeffs = torch.tensor([b, 0.0], dtype=xc.dtype, device=xc.device)
    smoothed = torchaudio.functional.lfilter(xc, a_coeffs, b_coeffs, clamp=False)
    # lfilter starts from zero; librosa's state zi = 1 - b decays as (1 - b) ** (n + 1) and adds linearly.
    smoothed = smoothed + (1.0 - b) ** torch.arange(1, x.shape[-1] + 1, dtype=xc.dtype, device=xc.device)
    smooth = torch.exp(-gain * (math.log(eps) + torch.log1p(smoothed / eps)))
    if power == 0:
        out = torch.log1p(xc * smooth)
    elif bias == 0:
        out = torch.exp(power * (torch.log(xc) + torch.log(smooth)))
    else:
        out = bias**power * torch.expm1(power * torch.log1p(xc * smooth / bias))
    return (out if mask is None else out.masked_fill(~mask, 0.0)).to(x.dtype)


def utterance_mvn(x: Tensor, mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Per-utterance mean and variance normalization (ESPnet's UtteranceMVN, Kaldi's per-utterance CMVN).

    Per item, channel and frequency bin, over its time frames (statistics in float64): subtract the
    mean and divide by the population std floored at `eps`, so a constant bin becomes 0, never NaN.

    Args:
        x: floating-point spectrograms `(..., freq, time)`, e.g. `(batch, channels, freq, time)` in dB.
        mask: optional bool broadcastable to x, e.g. `(batch, 1, 1, time)`, True where a frame
            counts; the others (padding, NaN included) become 0. None: every frame counts.
        eps: floor of the std, in x's unit (> 0).

    Returns:
        A tensor of x's shape and dtype, in standard deviations per bin.

    Raises:
        ValueError: x has fewer than 2 dimensions, or `eps` is not positive.

    Examples:
        >>> utterance_mvn(torch.tensor([[1.0, 3.0], [5.0, 5.0]]))
        tensor([[-1.,  1.],
                [ 0.,  0.]])
    """
    _check_float(x, "x")
    if x.dim() < 2:
        raise ValueError(f"utterance_mvn expects (..., freq, time), got shape {tuple(x.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    mask = _check_mask(mask, x)
    m = masked_moments(x, red_dims=(x.dim() - 1,), mask=mask)
    std = moments_std(m).clamp_min(eps)
    dt = _compute_dtype(x)
    out = (x.to(dt) - m.mean.to(dt)) / std.to(dt)
    return (out if mask is None else out.masked_fill(~mask, 0.0)).to(x.dtype)
