"""Normalization math on plain tensors: the functions the fastai Transforms and the statistics wrap.

Every function here takes and returns `torch.Tensor`, never modifies its input in place, and keeps
the input's dtype (float16 / bfloat16 inputs are computed in float32 and cast back).

Layouts: waveforms are `(batch, channels, samples)`, spectrograms `(batch, channels, freq, time)`;
the per-item functions also accept an unbatched item where noted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "standardize_waveform",
    "instance_minmax",
    "db_range",
    "db_range_inverse",
    "normalize",
    "denormalize",
    "Moments",
    "batch_moments",
    "merge_moments",
    "shifted_moments",
    "fast_moments",
    "moments_std",
    "naive_merge_mean_std",
]


def _compute_dtype(x: Tensor) -> torch.dtype:
    "float16/bfloat16 lose too much in reductions: compute those in float32."
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _tracks_grad(t: Tensor) -> bool:
    "Whether autograd records operations on `t` (then intermediate results must not be overwritten)."
    return torch.is_grad_enabled() and t.requires_grad


def _working_copy(x: Tensor, inplace: bool) -> tuple[Tensor, bool]:
    """`x` in its compute dtype, and whether that tensor may be overwritten: a conversion copy
    always may; `x` itself only when `inplace` and autograd does not track it."""
    xc = x.to(_compute_dtype(x))
    return xc, xc is not x or (inplace and not _tracks_grad(x))


def _result(out: Tensor, x: Tensor, inplace: bool) -> Tensor:
    "`out` in x's dtype; with `inplace` (and no autograd on x), written into `x` and returned as `x`."
    if inplace and not _tracks_grad(x) and out.shape == x.shape:
        return out if out is x else x.copy_(out)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _check_float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with .float()")


def standardize_waveform(x: Tensor, eps: float = 1e-8, inplace: bool = False) -> Tensor:
    """Zero mean and unit (population) standard deviation per item and channel, over samples.

    x: `(..., samples)`, e.g. `(batch, channels, samples)` or one clip `(channels, samples)`.
    A constant waveform (a silent clip: std <= eps) becomes all zeros, never NaN; any other clip,
    however quiet (e.g. 1e-7 amplitude, below one 16-bit step), is scaled to unit std.
    A clip whose std is below 1e-5 of its mean (a constant level, up to rounding) is silent too.
    Returns a tensor of the same shape and dtype; with `inplace`, x itself holds the result (unless
    autograd tracks x), which saves allocating a batch-sized tensor (see `WaveformNormalize`).

    >>> standardize_waveform(torch.tensor([[1.0, 3.0]]))
    tensor([[-1.,  1.]])
    """
    _check_float(x, "x")
    if x.shape[-1] == 0:
        raise ValueError(f"x has no samples (shape {tuple(x.shape)}); expected (..., samples) with samples > 0")
    xc, writable = _working_copy(x, inplace)
    # Two passes (the mean, then the norm of the deviations) instead of torch.std_mean, which is
    # about 4x slower on CPU; the deviations are needed for the result anyway.
    mean = xc.mean(dim=-1, keepdim=True)
    centered = xc.sub_(mean) if writable else xc - mean
    std = torch.linalg.vector_norm(centered, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
    # A constant clip whose rounded mean is off by a step keeps deviations of that step (about
    # 1e-7 of its level): variation below 1e-5 of the level is below the precision of the
    # samples (16-bit audio resolves 3e-5) and counts as silence too.
    silent = (std <= eps) | (std <= 1e-5 * mean.abs())
    scale = torch.where(silent, torch.ones_like(std), std)
    if _tracks_grad(centered):
        out = torch.where(silent, torch.zeros_like(centered), centered / scale)
    else:  # in place: a batch of 5 s clips is 20 MB, and each spare copy costs a pass
        out = centered.div_(scale)
        if bool(silent.any()):  # std <= eps without being constant: force exact zeros
            out.masked_fill_(silent, 0.0)
    return _result(out, x, inplace)


def instance_minmax(x: Tensor, eps: float = 1e-6, inplace: bool = False) -> Tensor:
    """Per item: standardize, then map to [0, 1] with the item's own min and max.

    x: `(batch, freq, time)` or `(batch, channels, freq, time)`; every statistic is taken per item
    over all non-batch dimensions, never across the batch, so an item's result does not depend on
    the other items of its batch. Steps per item: `z = (x - mean) / (std + eps)`; if
    `max(z) - min(z) > eps`, `(clamp(z, min, max) - min) / (max - min)`, else all zeros (a constant
    spectrogram such as a silent clip's). Returns the same shape and dtype, values in [0, 1]; with
    `inplace`, x itself holds the result (unless autograd tracks x).
    """
    _check_float(x, "x")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"instance_minmax expects (batch, freq, time) or (batch, channels, freq, time), got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        return x if inplace else x.clone()
    xc, writable = _working_copy(x, inplace)
    flat = xc.reshape(x.shape[0], -1)
    writable = writable and flat.data_ptr() == xc.data_ptr() and flat.is_contiguous()  # a view, not a copy
    std, mean = torch.std_mean(flat, dim=1, keepdim=True, correction=0)
    if _tracks_grad(flat):
        z = (flat - mean) / (std + eps)
        lo, hi = z.amin(dim=1, keepdim=True), z.amax(dim=1, keepdim=True)
        rng = hi - lo
        ok = rng > eps
        scaled = (torch.maximum(torch.minimum(z, hi), lo) - lo) / torch.where(ok, rng, torch.ones_like(rng))
        out = torch.where(ok, scaled, torch.zeros_like(scaled))
    else:  # the same operations, one batch-sized tensor (none with inplace)
        z = (flat.sub_(mean) if writable else flat - mean).div_(std + eps)
        lo, hi = z.amin(dim=1, keepdim=True), z.amax(dim=1, keepdim=True)
        rng = hi - lo
        ok = rng > eps
        out = z.clamp_(lo, hi).sub_(lo).div_(torch.where(ok, rng, torch.ones_like(rng)))
        if not bool(ok.all()):
            out.masked_fill_(~ok, 0.0)
    return _result(out.reshape(x.shape), x, inplace)


def db_range(x: Tensor, min_level_db: float = -100.0, clip: bool = True, ref_level_db: float = 0.0, inplace: bool = False) -> Tensor:
    """Tacotron's fixed dB range: `((x - ref_level_db) - min_level_db) / -min_level_db`.

    x: a spectrogram in dB, any shape. `min_level_db` (dB, < 0) maps to 0 and `ref_level_db` maps to
    1; with `clip` the result is clamped to [0, 1] (values outside the assumed range are common on
    real audio, so clipping loses them; `db_range_inverse` cannot bring them back). With `inplace`,
    x itself holds the result (unless autograd tracks x).
    """
    _check_float(x, "x")
    if not min_level_db < 0:
        raise ValueError(f"min_level_db must be negative (dB), got {min_level_db}")
    if _tracks_grad(x):
        y = (x - ref_level_db - min_level_db) / -min_level_db
        return y.clamp(0.0, 1.0) if clip else y
    # The same operations in the same order, in one tensor (x itself with inplace).
    y = (x.sub_(ref_level_db) if inplace else x - ref_level_db).sub_(min_level_db).div_(-min_level_db)
    return y.clamp_(0.0, 1.0) if clip else y


def db_range_inverse(y: Tensor, min_level_db: float = -100.0, ref_level_db: float = 0.0) -> Tensor:
    "Undo `db_range`: `y * -min_level_db + min_level_db + ref_level_db`, in dB (exact when not clipped)."
    _check_float(y, "y")
    if not min_level_db < 0:
        raise ValueError(f"min_level_db must be negative (dB), got {min_level_db}")
    return y * -min_level_db + min_level_db + ref_level_db


def normalize(x: Tensor, mean: Tensor, std: Tensor, inplace: bool = False) -> Tensor:
    """`(x - mean) / std` with broadcasting statistics, e.g. `mean` of shape `(1, 1, freq, 1)` per
    frequency bin or `(1, channels, 1, 1)` global, against x `(batch, channels, freq, time)`.
    Statistics are moved to x's device; float16/bfloat16 x is computed in float32 and cast back
    (values beyond the float16 range, e.g. a floored std under unseen data, become +-inf there).
    The caller floors `std` (see `SpecNormalize`). With `inplace`, x itself holds the result (unless
    autograd tracks x, or the statistics broadcast to more than x's shape).
    """
    _check_float(x, "x")
    xc, writable = _working_copy(x, inplace)
    mean = mean.to(device=x.device, dtype=xc.dtype)
    std = std.to(device=x.device, dtype=xc.dtype)
    writable = writable and torch.broadcast_shapes(mean.shape, std.shape, xc.shape) == xc.shape
    centered = xc.sub_(mean) if writable else xc - mean
    out = centered / std if _tracks_grad(centered) else centered.div_(std)  # same values; in place saves a copy
    return _result(out, x, inplace)


def denormalize(y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    "Inverse of `normalize`: `y * std + mean`, broadcasting the statistics (float16 computed in float32)."
    _check_float(y, "y")
    dt = _compute_dtype(y)
    yc = y if y.dtype == dt else y.to(dt)
    out = yc * std.to(device=y.device, dtype=dt) + mean.to(device=y.device, dtype=dt)
    return out if out.dtype == y.dtype else out.to(y.dtype)


# ---------------------------------------------------------------------------------------------
# Sufficient statistics: count, mean and M2 (sum of squared deviations) in float64, merged exactly
# with Chan et al.'s parallel formula. This is what `StatsRecorder` accumulates.


class Moments(NamedTuple):
    """Float64 sufficient statistics, all of the same keepdim shape.

    count: number of counted values per kept position; mean: their mean; m2: the sum of squared
    deviations from `mean`. Population variance is `m2 / count`.
    """

    count: Tensor
    mean: Tensor
    m2: Tensor


def batch_moments(x: Tensor, red_dims: Sequence[int], mask: Tensor | None = None, shift: Tensor | None = None) -> Moments:
    """Float64 moments of `x` over `red_dims` (kept with keepdim), counting only `mask`.

    x: any float tensor; mask: bool, broadcastable to x, True where a value counts.
    Positions with no counted value get count 0, mean 0, m2 0. Without a mask the work goes through
    `shifted_moments` (float64, chunk by chunk; `shift`: a guess of the mean); with one, `x` is
    converted to float64 and reduced in two passes.
    Non-finite values give non-finite moments.
    """
    dims = tuple(red_dims)
    if mask is None and x.numel():
        return shifted_moments(x, dims, shift)
    x64 = x.to(torch.float64)
    if mask is None:
        n = 1
        for d in dims:
            n *= x.shape[d]
        var, mean = torch.var_mean(x64, dim=dims, keepdim=True, correction=0)
        count = torch.full_like(mean, float(n))
        return Moments(count, mean, var * n)
    keep = mask.to(x64.device).expand_as(x64)
    count = keep.to(torch.float64).sum(dim=dims, keepdim=True)
    # where(), not multiplication by the mask: uncounted values may be NaN/Inf padding (NaN * 0 = NaN).
    zero = torch.zeros((), dtype=torch.float64, device=x64.device)
    total = torch.where(keep, x64, zero).sum(dim=dims, keepdim=True)
    mean = total / count.clamp_min(1.0)
    dev = torch.where(keep, x64 - mean, zero)
    m2 = (dev * dev).sum(dim=dims, keepdim=True)
    return Moments(count, mean, m2)


# Chunks of at most 512 KB of input (1 MB in float64) stay in the CPU's L2 cache between passes.
_CHUNK_BYTES = 1 << 19


def _chunks(x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, ...]:
    if 0 in dims and x.device.type == "cpu" and x.dim() > 1:
        per_item = max(1, x[0].numel() * x.element_size())
        return x.split(max(1, _CHUNK_BYTES // per_item), dim=0)
    return (x,)


def _moment_sums(x: Tensor, dims: tuple[int, ...], shift: Tensor) -> tuple[Tensor, Tensor]:
    "float64 `sum(x)` and `sum((x - shift)^2)` over `dims` (keepdim), a cache-sized float64 chunk at a time."
    shift = shift.to(device=x.device, dtype=torch.float64)
    totals, norms = [], []
    for chunk in _chunks(x, dims):
        x64 = chunk.to(torch.float64, copy=True)  # chunk-sized, and never the caller's tensor
        totals.append(x64.sum(dim=dims, keepdim=True))
        norms.append(torch.linalg.vector_norm(x64.sub_(shift), dim=dims, keepdim=True))
    return torch.cat(totals).sum(dim=dims, keepdim=True), torch.cat(norms).square_().sum(dim=dims, keepdim=True)


def shifted_moments(x: Tensor, red_dims: Sequence[int], shift: Tensor | None = None) -> Moments:
    """Float64 moments of `x` over `red_dims` (keepdim) without a float64 copy of the whole of `x`.

    `sum(x)` and `sum((x - c)^2)` are accumulated in float64 and `M2 = sum((x - c)^2) - n (mean - c)^2`
    with a shift `c` near the mean (`shift`, keepdim shape; default: the batch's float32 mean), so
    nothing cancels, also for data such as 10000 + N(0, 1): as exact as the two-pass algorithm
    (about 1e-15 relative). When `c` is more than one standard deviation from the mean, the squares
    are summed again around the mean. On CPU the batch goes through L2-cache-sized chunks, which
    makes the pass 3-4x faster than converting the whole batch to float64 first.
    """
    dims = tuple(red_dims)
    n = math.prod(x.shape[d] for d in dims)
    if shift is None:
        shift = x.mean(dim=dims, keepdim=True, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    c = shift.to(device=x.device, dtype=torch.float64)
    total, squares = _moment_sums(x, dims, c)
    mean = total / n
    offset = mean - c
    m2 = squares - n * offset * offset
    if bool((offset * offset * n > m2).any()):  # c too far from this batch's mean: sum the squares around it
        _, m2 = _moment_sums(x, dims, mean)
    return Moments(torch.full_like(mean, float(n)), mean, m2.clamp_min_(0.0))


# Float32 fast path for `StatsRecorder.update` (CPU, unmasked). torch's CPU batch-norm statistics
# kernel (`torch.batch_norm_update_stats`) reads float32 data and accumulates the sum and the sum of
# squared deviations from the mean in float64, in two fused passes without a float64 copy; it returns
# the mean and the (population) variance rounded to float32. Rounding the variance costs 6e-8
# relative. Rounding the mean costs |mean| * 2^-24 absolute, which enters merged variances to first
# order (relative error up to 2 * |mean| / std * 2^-24), so the data are reduced around a float32
# shift K with |mean(x - K)| <= _FAST_MAX_OFFSET * std, or the batch falls back to `batch_moments`.
_FAST_MAX_OFFSET = 4.0  # worst case 2 * 4 * 2^-24 = 4.8e-7 relative in the variance, 2.4e-7 in the std


def _channel_view(x: Tensor, dims: tuple[int, ...]) -> Tensor | None:
    "`x` viewed as (P, C, Q) with the C kept positions in the middle (keepdim order), or None."
    shape = x.shape
    kept = [d for d in range(x.dim()) if d not in dims and shape[d] != 1]
    if kept and any(shape[d] != 1 and d not in kept for d in range(kept[0], kept[-1] + 1)):
        return None  # kept dims interleaved with reduced ones
    if not x.is_contiguous():
        return None
    if not kept:  # one position: keep the first dimension as rows, so the reduction can run in parallel
        return x.view(shape[0], 1, -1)
    a, b = kept[0], kept[-1] + 1
    return x.view(math.prod(shape[:a]), math.prod(shape[a:b]), math.prod(shape[b:]))


_ROWS_BELOW = 32  # fewer kept positions than this: reduce per (item, position) row, in parallel


def _reduce_channels(v: Tensor, k: Tensor | None, rows: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per kept position of `v - k` (v: (P, C, Q); k: float32 per position, or None): float64 mean,
    population variance, and the largest |mean| that was rounded to float32 on the way.

    torch's kernel parallelizes over its channels, so with few kept positions (e.g. one global
    mean) `rows` reduces each (item, position) row of Q values as a channel and merges the P rows of
    a position exactly in float64 (equal counts): mean = mean of row means, variance = mean of row
    variances + variance of row means. The float32 rounding of each row mean then enters the merge,
    which is why the largest row |mean| is returned for the caller's bound."""
    d = v if k is None else v - k.view(1, -1, 1)
    if not rows:
        m, var = torch.batch_norm_update_stats(d, None, None, 0.0)
        m64 = m.double()
        return m64, var.double(), m64.abs()
    p, c, q = d.shape
    m, var = torch.batch_norm_update_stats(d.reshape(1, p * c, q), None, None, 0.0)
    m_rows, var_rows = m.double().view(p, c), var.double().view(p, c)
    mean = m_rows.mean(0)
    return mean, var_rows.mean(0) + (m_rows - mean).square().mean(0), m_rows.abs().amax(0)


def _pick_shift(mean: Tensor, need: Tensor) -> Tensor | None:
    "Per channel: `mean` rounded to float32 where `need`, else 0 (None: 0 everywhere)."
    return torch.where(need, mean, torch.zeros_like(mean)).float() if bool(need.any()) else None


def fast_moments(x: Tensor, red_dims: Sequence[int]) -> Moments | None:
    """Moments of a float32 CPU tensor from float32 input with float64 accumulation (see above), or
    None where this path does not apply: other dtypes or devices, autograd, empty or interleaved
    layouts, shifts that do not work out, and means within sampling noise of 0 (below). Accurate to
    about 3e-7 relative in the std and 1e-7 in the mean; `batch_moments` is the float64-exact path.

    Each kept position is reduced around 0 (no extra pass) where its mean lies within
    `_FAST_MAX_OFFSET` stds of 0, elsewhere around a float32 shift K at least 2 stds from 0 (`x - K`
    then rounds by at most 2^-24 |x - K|): the mean of a probe (the batch's first 1/16) or, when the
    probe misjudged (or, reducing per row, without a probe), of the whole batch (one more pass).
    Rounding the batch mean to float32 costs
    2^-24 of it; merged over batches that is 2^-24 of the merged mean unless batch means cancel, as
    they do when the mean is within sampling noise of 0: such positions (|mean| below 16 std /
    sqrt(count)) take the exact path. The result depends on `x` alone.
    """
    dims = tuple(red_dims)
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.numel() == 0 or _tracks_grad(x):
        return None
    v = _channel_view(x, dims)
    if v is None:
        return None
    p, c, q = v.shape
    n = p * q
    rows = p > 1 and c < _ROWS_BELOW
    limit = 0.5 * _FAST_MAX_OFFSET
    k = None
    if not rows:  # guess the shift from a probe; in row mode redoing the (parallel) pass costs less than probing
        probe = v[: max(1, p // 16)] if p > 1 else v[:, :, : max(1, q // 16)].contiguous()
        pm, pv, _ = _reduce_channels(probe, None, rows)
        k = _pick_shift(pm, pm.abs() > limit * pv.sqrt())
    for attempt in range(2):
        m, var, rounded = _reduce_channels(v, k, rows)
        if not (bool(torch.isfinite(m).all()) and bool(torch.isfinite(var).all())):
            break  # non-finite data, or squares beyond the float32 range: the caller checks the data
        m64, std = m, var.sqrt()
        full = m64 if k is None else k.double() + m64
        if bool((full.abs() < 16.0 * std / math.sqrt(n)).any()):
            return None
        ok = rounded <= _FAST_MAX_OFFSET * std
        if k is not None:
            ok &= (k == 0) | (full.abs() >= limit * std)
        if bool(ok.all()):
            break
        if attempt:
            return None
        k = _pick_shift(full, full.abs() > limit * std)
    mean = m if k is None else k.double() + m
    kept_shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
    mean = mean.reshape(kept_shape)
    return Moments(torch.full_like(mean, float(n)), mean, var.reshape(kept_shape) * n)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan's exact merge of two sets of moments (pure; inputs untouched).

    n = na + nb; delta = mean_b - mean_a; mean = mean_a + delta * nb / n;
    m2 = m2_a + m2_b + delta^2 * na * nb / n. Positions where n == 0 stay zero.
    """
    n = a.count + b.count
    safe_n = torch.where(n > 0, n, torch.ones_like(n))
    delta = b.mean - a.mean
    mean = torch.where(n > 0, a.mean + delta * b.count / safe_n, torch.zeros_like(n))
    m2 = a.m2 + b.m2 + delta * delta * a.count * b.count / safe_n
    return Moments(n, mean, m2)


def moments_std(m: Moments, correction: int = 0) -> Tensor:
    "Standard deviation from moments: `sqrt(m2 / (count - correction))` (population std by default)."
    return torch.sqrt(m.m2 / (m.count - correction).clamp_min(1.0))


def naive_merge_mean_std(means: Sequence[Tensor], stds: Sequence[Tensor], counts: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The reference article's merge, kept to document its error (not used by fastspecnorm).

    It combines per-batch means and *unbiased* per-batch standard deviations weighted by item
    counts: `var = n1/(n1+n2) * s1^2 + n2/(n1+n2) * s2^2 + n1*n2/(n1+n2)^2 * (m1-m2)^2`, applied
    batch after batch. Per-batch stds use ddof=1 over `values_per_batch` values, and the weights are
    items rather than values, so the result is close to, but not, the population std of the data.
    """
    mean, std, n = means[0].double(), stds[0].double(), counts[0]
    for m2_, s2_, n2 in zip(means[1:], stds[1:], counts[1:], strict=True):
        m2_, s2_ = m2_.double(), s2_.double()
        tot = n + n2
        new_mean = n / tot * mean + n2 / tot * m2_
        var = n / tot * std**2 + n2 / tot * s2_**2 + n * n2 / tot**2 * (mean - m2_) ** 2
        mean, std, n = new_mean, torch.sqrt(var), tot
    return mean, std
