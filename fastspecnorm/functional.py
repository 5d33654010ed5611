"""Normalization math on plain tensors: the functions the fastai Transforms and the statistics wrap.

Each takes and returns `torch.Tensor`, keeps the input's dtype (float16 / bfloat16 computed in float32)
and changes its input only with `inplace=True`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ._compat import import_torchaudio

# Layouts: waveforms are `(batch, channels, samples)`, spectrograms `(batch, channels, freq, time)`;
# the per-item functions also accept an unbatched item where their docstrings say so.

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
    """The tensor a function computes its result in: `x` itself with `inplace` (unless autograd
    tracks x or it needs a float32 copy), else a copy of x in its compute dtype."""
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

    The package's one padding mask (SpeechBrain's `make_padding_mask`); `valid_mask` builds it from a batch's `lengths`.

    Args:
        lengths: the valid positions per item, `(batch,)` integers (a tensor or anything
            `torch.as_tensor` takes), in samples or frames.
        size: the length of the padded (last) axis, in the same unit.
        device: the mask's device; None keeps that of `lengths`.
        ndim: the mask's number of dimensions, >= 2: `(batch, 1, ..., 1, size)` broadcasts to a
            batch of that many, e.g. 3 for waveforms `(batch, channels, samples)`, 4 for
            spectrograms `(batch, channels, freq, time)`.

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

    A constant waveform (a silent clip: std <= eps) becomes all zeros, never NaN; any other clip,
    however quiet (e.g. 1e-7 amplitude, below one 16-bit step), is scaled to unit std. A clip whose
    std is below 1e-5 of its mean (a constant level, up to rounding) is silent too.

    Args:
        x: floating-point waveforms `(..., samples)`, e.g. `(batch, channels, samples)` or one
            clip `(channels, samples)`, with at least one sample.
        eps: a std at or below it (in x's unit, amplitude) counts as silence.
        inplace: write the result into x itself (unless autograd tracks x), which saves
            allocating a batch-sized tensor (see `WaveformNormalize`).
        mask: optional bool, broadcastable to x (e.g. `(batch, 1, samples)` from `valid_mask`),
            True at the samples that count: mean and std are taken over those only, so a padded
            clip gets the same values as alone, and the padding (mask False) becomes 0. None:
            every sample counts.

    Returns:
        A tensor of x's shape and dtype (x itself with `inplace`).

    Raises:
        TypeError: x is not a floating-point tensor, or mask not a bool tensor.
        ValueError: x has no samples, or mask does not broadcast to x.

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
    if x.numel() == 0:
        return _finish(_output(x, inplace), x, inplace)
    xc = x.to(_compute_dtype(x))
    if mask is None:
        # The mean, then the norm of the deviations (computed in the output anyway): the same
        # population std as torch.std_mean, which is slower on CPU (docs/performance.md).
        mean = xc.mean(dim=-1, keepdim=True)
        out = _output(x, inplace).sub_(mean)
        std = torch.linalg.vector_norm(out, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
    else:
        moments = masked_moments(xc, (-1,), mask, dtype=xc.dtype)
        mean, std = moments.mean, moments_std(moments)
        out = _output(x, inplace).sub_(mean)
    # A constant clip whose rounded mean is off by a step keeps deviations of that step (about
    # 1e-7 of its level): variation below 1e-5 of the level is below the precision of the
    # samples (16-bit audio resolves 3e-5) and counts as silence too.
    silent = (std <= eps) | (std <= 1e-5 * mean.abs())
    scale = torch.where(silent, torch.full_like(std, math.inf), std)  # silence: x / inf = 0
    # Out of place where autograd tracks `out`: the norm above saved it for the backward pass.
    out = out / scale if torch.is_grad_enabled() and out.requires_grad else out.div_(scale)
    return _finish(_masked_fill_zero(out, mask), x, inplace)


def instance_minmax(x: Tensor, eps: float = 1e-6, inplace: bool = False, mask: Tensor | None = None) -> Tensor:
    """Per item: standardize, then map to [0, 1] with the item's own min and max.

    Every statistic is taken per item over all non-batch dimensions, never across the batch, so an
    item's result does not depend on the other items of its batch. Steps per item:
    `z = (x - mean) / (std + eps)`; if `max(z) - min(z) > eps`,
    `(clamp(z, min, max) - min) / (max - min)`, else all zeros (a constant spectrogram such as a
    silent clip's).

    Args:
        x: floating-point spectrograms `(batch, freq, time)` or `(batch, channels, freq, time)`,
            in any unit (usually dB).
        eps: added to the std, and the smallest standardized range that is not constant.
        inplace: write the result into x itself (unless autograd tracks x).
        mask: optional bool broadcastable to x (e.g. `(batch, 1, 1, time)` from `valid_mask`):
            statistics over the True positions only, and the others (padding) become 0. None:
            every position counts.

    Returns:
        A tensor of x's shape and dtype, values in [0, 1] (x itself with `inplace`).

    Raises:
        TypeError: x is not a floating-point tensor, or mask not a bool tensor.
        ValueError: x has neither 3 nor 4 dimensions, or mask does not broadcast to x.

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
    # Min-max is unchanged by the standardization's affine map, so the result is computed from x's
    # own min and max; the standardized range `(max - min) / (std + eps)` decides constant items.
    dims = tuple(range(1, x.dim()))
    xc = x.to(_compute_dtype(x))
    if mask is None:
        std = torch.std(xc, dim=dims, keepdim=True, correction=0)
        lo, hi = xc.amin(dim=dims, keepdim=True), xc.amax(dim=dims, keepdim=True)
    else:
        std = moments_std(masked_moments(xc, dims, mask, dtype=xc.dtype))
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

    `x - ref_level_db = min_level_db` maps to 0 and `x = ref_level_db` maps to 1, so the range
    covered is `ref_level_db + min_level_db` to `ref_level_db` dB (-100..0 dB with the defaults;
    `DbRangeNormalize` uses Tacotron's reference level of 20 dB: -80..+20 dB).

    Args:
        x: a floating-point spectrogram in dB, any shape.
        min_level_db: bottom of the range relative to `ref_level_db`, in dB (< 0).
        clip: clamp the result to [0, 1]. Values outside the assumed range are common on real
            audio, so clipping loses them; `db_range_inverse` cannot bring them back.
        ref_level_db: the level (dB) that maps to 1.
        inplace: write the result into x itself (unless autograd tracks x).
        mask: optional bool broadcastable to x; positions where it is False (padding) become 0.
            None: nothing is padded.

    Returns:
        A tensor of x's shape and dtype (x itself with `inplace`).

    Raises:
        TypeError: x is not a floating-point tensor, or mask not a bool tensor.
        ValueError: `min_level_db` is not negative, or mask does not broadcast to x.

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
        TypeError: y is not a floating-point tensor.
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
    """`(x - mean) / std` with broadcasting statistics.

    Statistics are moved to x's device; float16/bfloat16 x is computed in float32 and cast back
    (values beyond the float16 range, e.g. a floored std under unseen data, become +-inf there).

    Args:
        x: floating-point spectrograms, e.g. `(batch, channels, freq, time)` in dB.
        mean: statistics broadcastable to x, e.g. `(1, 1, freq, 1)` per frequency bin or
            `(1, channels, 1, 1)` global, as `StatsRecorder` gives them; in x's unit.
        std: standard deviations of the same shape, in x's unit. The caller floors them (see
            `SpecNormalize`): no floor is applied here.
        inplace: write the result into x itself (unless autograd tracks x, or the statistics
            have more dimensions than x).
        mask: optional bool broadcastable to x; positions where it is False (padding) become 0,
            the normalized value of the mean. None: nothing is padded.

    Returns:
        A tensor of x's dtype, in standard deviations (x itself with `inplace`).

    Raises:
        TypeError: x is not a floating-point tensor, or mask not a bool tensor.
        ValueError: mask does not broadcast to x.

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
    """Inverse of `normalize`: `y * std + mean`, broadcasting the statistics (float16 computed in float32).

    Args:
        y: floating-point normalized values, e.g. `(batch, channels, freq, time)`.
        mean: the statistics given to `normalize`, broadcastable to y.
        std: the standard deviations given to `normalize`, of the same shape.

    Returns:
        A new tensor of y's dtype, in the unit of the statistics (e.g. dB).

    Raises:
        TypeError: y is not a floating-point tensor.
    """
    _check_float(y, "y")
    dt = _compute_dtype(y)
    yc = y if y.dtype == dt else y.to(dt)
    out = yc * std.to(device=y.device, dtype=dt) + mean.to(device=y.device, dtype=dt)
    return out if out.dtype == y.dtype else out.to(y.dtype)


# ---------------------------------------------------------------------------------------------
# Sufficient statistics: count, mean and M2 (sum of squared deviations), in float64 for dataset
# statistics, merged exactly with Chan et al.'s parallel formula. This is what `StatsRecorder`
# accumulates, and the one masked mean and std every function here takes.


class Moments(NamedTuple):
    """Sufficient statistics, all of the same keepdim shape and dtype (float64 unless asked otherwise).

    Population variance is `m2 / count`.

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

    The package's one masked mean and standard deviation (with `moments_std`). Without a mask
    `torch.var_mean` (Welford's update); with one the mean, then the squared deviations from it, so
    nothing cancels even for data far from 0 (e.g. 10000 + N(0, 1)). Non-finite counted values give
    non-finite moments. Differentiable.

    Args:
        x: any float tensor, e.g. `(batch, channels, freq, time)`.
        red_dims: the dimensions to reduce, e.g. `(0, 2, 3)` for one set of moments per channel;
            negative dimensions count from the end.
        mask: optional bool, broadcastable to x, True where a value counts; values outside the
            mask never count, whatever they hold (NaN padding included). None: every value counts.
        dtype: the dtype the moments are computed and returned in: float64 (the default) for
            statistics that are merged; the per-item functions pass their compute dtype.

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
    zero = torch.zeros((), dtype=dtype, device=xd.device)
    mean = torch.where(keep, xd, zero).sum(dim=dims, keepdim=True) / count.clamp_min(1.0)
    dev = torch.where(keep, xd - mean, zero)
    return Moments(count, mean, dev.square().sum(dim=dims, keepdim=True))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan's exact merge of two sets of moments (pure; inputs untouched).

    `n = na + nb; delta = mean_b - mean_a; mean = mean_a + delta * nb / n;
    m2 = m2_a + m2_b + delta^2 * na * nb / n`. Positions where n == 0 stay zero.

    Args:
        a: moments of the first part of the data.
        b: moments of the second part, of the same shape and on the same device.

    Returns:
        The moments of both parts together.

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
        correction: degrees of freedom subtracted from the count: 0 population std, 1 sample std.
            The divisor is at least 1, so a position with too few values gets std 0, never NaN.

    Returns:
        Standard deviations of the moments' shape and dtype.
    """
    return torch.sqrt(m.m2 / (m.count - correction).clamp_min(1.0))


# ---------------------------------------------------------------------------------------------
# Per-item normalizations people reach for now: PCEN (librosa, LEAF) and per-utterance mean and
# variance normalization (ESPnet UtteranceMVN, Kaldi per-utterance CMVN).

__all__ += ["pcen_smoothing_coef", "pcen", "utterance_mvn"]


def pcen_smoothing_coef(sr: float = 16000, hop_length: int = 200, time_constant: float = 0.4) -> float:
    """librosa's smoothing coefficient b of PCEN's first-order IIR smoother.

    With `t = time_constant * sr / hop_length` (the time constant in frames),
    `b = (sqrt(1 + 4 t^2) - 1) / (2 t^2)`, the b whose squared frequency response has its
    half-maximum at 1 / t.

    Args:
        sr: sample rate of the audio, in Hz.
        hop_length: hop between frames, in samples.
        time_constant: the smoother's time constant, in seconds.

    Returns:
        b, in (0, 1].

    Raises:
        ValueError: `sr`, `hop_length` or `time_constant` is not positive.

    Examples:
        0.4 s at 16 kHz with hop 200 (32 frames):

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

    Every frequency bin of every item is filtered along its own time axis (per item and bin,
    nothing across the batch). Steps, with librosa's defaults and initial state:
    `M = lfilter([b], [1, b - 1], x, zi=[1 - b])` (a first-order IIR smoother whose state starts as
    after a long input of 1, scipy's `lfilter_zi`), `smooth = exp(-gain * (log(eps) + log1p(M / eps)))`
    (i.e. `(eps + M) ** -gain`), and `bias**power * expm1(power * log1p(x * smooth / bias))`
    (`log1p(x * smooth)` when power is 0; `(x * smooth) ** power` when bias is 0). Equal to
    `librosa.pcen(x, sr=sr, hop_length=hop_length, gain=gain, bias=bias, power=power,
    time_constant=time_constant, eps=eps)` to rounding (float32 inputs: about 1e-6 relative).
    The IIR runs with torchaudio's `lfilter` (a compiled loop on CPU and GPU) and is differentiable.

    Scale: the result depends on x's level. librosa's defaults assume audio scaled to the int32
    range: for waveforms in [-1, 1], multiply their energies by `2.0**62` (`(2**31)**2`) first, as
    the `PCEN` Transform does; at [-1, 1] levels most energies sit below `eps` and are flattened.

    Args:
        x: floating-point energies (power, not dB; >= 0), `(..., freq, time)`, e.g.
            `(batch, channels, n_mels, time)`.
        sr: sample rate of the audio, in Hz (for the time constant).
        hop_length: hop between frames, in samples (for the time constant).
        gain: exponent of the automatic gain control (librosa's `gain`, alpha in the PCEN paper).
        bias: offset before the root compression (librosa's `bias`, delta), >= 0.
        power: exponent of the root compression (librosa's `power`, r), >= 0; 0 takes a log.
        time_constant: the smoother's time constant, in seconds.
        eps: floor of the smoothed energy, > 0, in x's unit.
        mask: optional bool, broadcastable to x, e.g. `(batch, 1, 1, time)`, True on valid frames.
            The smoother is causal, so padding at the end of an item (the `lengths` layout) never
            changes its valid frames, which equal the item's PCEN computed alone; masked frames
            become 0 (the PCEN of silence). Values in masked frames are never read into valid
            ones, whatever they hold. None: every frame is valid.
        b: the smoothing coefficient, in (0, 1]; None: `pcen_smoothing_coef(sr, hop_length,
            time_constant)`.

    Returns:
        A tensor of x's shape and dtype (float16/bfloat16 computed in float32).

    Raises:
        TypeError: x is not a floating-point tensor, or mask not a bool tensor.
        ValueError: x has fewer than 2 dimensions; `b` is not in (0, 1]; `power`, `bias` or
            `gain` is negative or `eps` not positive; `sr`, `hop_length` or `time_constant` is not
            positive (when `b` is None); mask does not broadcast to x; or a valid value is negative
            (a dB spectrogram passed by mistake).
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
    if b is None:
        b = pcen_smoothing_coef(sr, hop_length, time_constant)
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
    n_frames = x.shape[-1]
    a_coeffs = torch.tensor([1.0, b - 1.0], dtype=xc.dtype, device=xc.device)
    b_coeffs = torch.tensor([b, 0.0], dtype=xc.dtype, device=xc.device)
    smoothed = torchaudio.functional.lfilter(xc, a_coeffs, b_coeffs, clamp=False)
    # lfilter starts from a zero state; librosa's zi = 1 - b is the state after a constant input
    # of 1, whose response decays as (1 - b) ** (n + 1) and adds linearly.
    frames = torch.arange(1, n_frames + 1, dtype=xc.dtype, device=xc.device)
    smoothed = smoothed + (1.0 - b) ** frames
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

    Per item, channel and frequency bin, over that item's time frames: subtract the mean and
    divide by the population std (ddof 0) floored at `eps`, so a constant bin (e.g. silence at the
    dB floor) becomes 0, never NaN. Statistics in float64. Nothing is shared across the batch: an
    item's result equals the item alone.

    Args:
        x: floating-point spectrograms `(..., freq, time)`, e.g. `(batch, channels, freq, time)`
            in dB.
        mask: optional bool, broadcastable to x, e.g. `(batch, 1, 1, time)`, True where a frame
            counts; the statistics use only those frames and the others (padding) become 0,
            whatever they held (NaN included). A bin with no valid frame becomes 0. None: every
            frame counts.
        eps: floor of the std, in x's unit (> 0).

    Returns:
        A tensor of x's shape and dtype, in standard deviations per bin.

    Raises:
        TypeError: x is not a floating-point tensor, or mask not a bool tensor.
        ValueError: x has fewer than 2 dimensions, `eps` is not positive, or mask does not
            broadcast to x.

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
