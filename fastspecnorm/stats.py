"""Exact streaming mean and standard deviation of spectrograms: `StatsRecorder` and `collect_stats`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._io import atomic_write
from .audio.tensors import valid_mask_or_none
from .functional import Moments, _check_float, _check_mask, masked_moments, merge_moments, moments_std

__all__ = ["StatsRecorder", "collect_stats", "STATS_FORMAT"]

STATS_FORMAT = "fastspecnorm.stats/1"
"""The format tag in the header of every file `StatsRecorder.save` writes; `load` refuses any other."""


def _normalize_red_dims(red_dims: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in red_dims)
    except TypeError as e:
        raise TypeError(f"red_dims must be a sequence of ints such as (0, 2, 3), got {red_dims!r}") from e
    if not dims:
        raise ValueError("red_dims is empty; give the dimensions to reduce, e.g. (0, 2, 3)")
    if any(d < 0 for d in dims):
        raise ValueError(f"red_dims must be non-negative dimension indices, got {dims}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"red_dims has repeated dimensions: {dims}")
    return tuple(sorted(dims))


class StatsRecorder:
    """Accumulate exact mean and population std over the dimensions `red_dims`.

    Float64 sufficient statistics (count, mean, M2) per kept position, merged with Chan's formula,
    equal NumPy float64 on the concatenated data whatever the batch sizes, lengths or processes.

    Statistics are kept with keepdim shape: for input `(batch, channels, freq, time)`,
    `red_dims=(0, 2, 3)` gives one mean/std per channel, shape `(1, channels, 1, 1)` ("global"),
    and `red_dims=(0, 1, 3)` one per frequency bin, shape `(1, 1, freq, 1)` ("channel").
    Reduced dimensions may change size from batch to batch; kept dimensions may not.

    Args:
        red_dims: the dimensions to reduce over (non-negative, no repeats, in any order).
        settings: JSON-serializable description of what produced the data, saved with the
            statistics and compared on reuse (`StatsCallback`); None: empty.

    Attributes:
        red_dims: the reduced dimensions, sorted.
        settings: the `settings` given (a copy).
        moments: the accumulated float64 `Moments`, None before the first non-empty batch.
        ndim: number of dimensions of the batches seen (None before the first).
        n_batches: number of non-empty batches added.

    Raises:
        TypeError: `red_dims` is not a sequence of ints.
        ValueError: `red_dims` is empty, negative or repeats a dimension.

    Examples:
        >>> rec = StatsRecorder(red_dims=(0, 2, 3))
        >>> rec.update(torch.randn(8, 1, 64, 100)).update(torch.randn(3, 1, 64, 37))
        StatsRecorder(red_dims=(0, 2, 3), shape=(1, 1, 1, 1), batches=2, values=58304)
        >>> rec.mean.shape, rec.std.shape
        (torch.Size([1, 1, 1, 1]), torch.Size([1, 1, 1, 1]))
    """

    def __init__(self, red_dims: Sequence[int] = (0, 2, 3), settings: dict[str, Any] | None = None):
        self.red_dims: tuple[int, ...] = _normalize_red_dims(red_dims)
        self.settings: dict[str, Any] = dict(settings or {})
        self.ndim: int | None = None
        self.moments: Moments | None = None
        self.n_batches: int = 0

    def update(self, x: Tensor, mask: Tensor | None = None) -> StatsRecorder:
        """Add one batch to the statistics (in float64, on the first batch's device); an empty batch changes nothing.

        Args:
            x: floating-point tensor, e.g. spectrograms `(batch, channels, freq, time)`, with the
                kept dimensions of earlier batches.
            mask: optional bool tensor broadcastable to x, True where a value counts; None: all count.

        Raises:
            TypeError: x is not a floating-point tensor, or mask not a bool tensor.
            ValueError: `red_dims` does not fit x, x's dimensions differ from earlier batches, mask
                does not broadcast to x, or a counted value is NaN or Inf.
        """
        _check_float(x, "x")
        x = x.as_subclass(Tensor) if type(x) is not Tensor else x
        if max(self.red_dims) >= x.dim():
            raise ValueError(f"red_dims={self.red_dims} does not fit input of shape {tuple(x.shape)} ({x.dim()} dimensions)")
        if self.ndim is not None and x.dim() != self.ndim:
            raise ValueError(f"batch has {x.dim()} dimensions (shape {tuple(x.shape)}); earlier batches had {self.ndim}")
        kept = tuple(1 if d in self.red_dims else s for d, s in enumerate(x.shape))
        if self.moments is not None and tuple(self.moments.count.shape) != kept:
            raise ValueError(
                f"batch of shape {tuple(x.shape)} has kept dimensions {kept} (red_dims={self.red_dims}), "
                f"but earlier batches had {tuple(self.moments.count.shape)}"
            )
        mask = _check_mask(mask, x)
        if x.numel() == 0:
            return self
        with torch.no_grad():
            new = masked_moments(x, self.red_dims, mask)
        if not (bool(torch.isfinite(new.mean).all()) and bool(torch.isfinite(new.m2).all())):
            # Counted NaN/Inf show up in the moments: only then scan the data for them.
            finite = torch.isfinite(x) if mask is None else torch.isfinite(x) | ~mask
            if not bool(finite.all()):
                raise ValueError(
                    f"batch of shape {tuple(x.shape)} has {int((~finite).sum())} NaN or Inf values among the counted values"
                )
        if self.moments is None:
            self.moments, self.ndim = new, x.dim()
        else:
            self.moments = merge_moments(self.moments, Moments(*(t.to(self.moments.count.device) for t in new)))
        self.n_batches += 1
        return self

    def merge(self, other: StatsRecorder) -> StatsRecorder:
        """A new recorder equal to one that saw this recorder's inputs and then `other`'s (with this one's `settings`).

        Args:
            other: a recorder with the same `red_dims` (either may be empty).

        Raises:
            TypeError: `other` is not a `StatsRecorder`.
            ValueError: the recorders have different `red_dims` or statistics of different shapes.

        Examples:
            >>> a = StatsRecorder((0, 2, 3)).update(torch.ones(2, 1, 4, 5))
            >>> b = StatsRecorder((0, 2, 3)).update(torch.zeros(2, 1, 4, 5))
            >>> a.merge(b).mean.item(), a.merge(b).std.item()
            (0.5, 0.5)
        """
        if not isinstance(other, StatsRecorder):
            raise TypeError(f"can only merge another StatsRecorder, got {type(other).__name__}")
        if other.red_dims != self.red_dims:
            raise ValueError(f"cannot merge recorders with red_dims {self.red_dims} and {other.red_dims}")
        res = StatsRecorder(self.red_dims, settings=self.settings)
        res.n_batches = self.n_batches + other.n_batches
        if self.moments is None or other.moments is None:
            src = self if other.moments is None else other
            res.moments, res.ndim = src.moments, src.ndim
        elif self.moments.count.shape != other.moments.count.shape:
            raise ValueError(
                f"cannot merge statistics of shapes {tuple(self.moments.count.shape)} and {tuple(other.moments.count.shape)}"
            )
        else:
            dev = self.moments.count.device
            res.moments, res.ndim = merge_moments(self.moments, Moments(*(t.to(dev) for t in other.moments))), self.ndim
        return res

    def all_reduce(self, group: torch.distributed.ProcessGroup | None = None) -> StatsRecorder:
        """Combine the recorders of all ranks in place (every rank ends with the global statistics).

        A no-op when `torch.distributed` is not initialized. Ranks are merged in rank order, so every
        rank computes bit-identical results. A collective call: every rank of `group` must make it.

        Args:
            group: the `torch.distributed` process group; None: the default group.

        Raises:
            ValueError: the ranks have different `red_dims` or statistics of different shapes.
        """
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return self
        mine = None if self.moments is None else ([t.detach().cpu().numpy() for t in self.moments], self.ndim, self.n_batches)
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, (self.red_dims, mine), group=group)
        total = StatsRecorder(self.red_dims)
        for rank, (red_dims, part) in enumerate(gathered):
            if tuple(red_dims) != self.red_dims:
                raise ValueError(f"rank {rank} has red_dims {tuple(red_dims)}, this rank {self.red_dims}")
            if part is not None:
                other = StatsRecorder(self.red_dims)
                other.moments, other.ndim, other.n_batches = Moments(*map(torch.from_numpy, part[0])), part[1], part[2]
                try:
                    total = total.merge(other)
                except ValueError as e:
                    raise ValueError(f"rank {rank}: {e}") from None
        if total.moments is not None:
            dev = self.moments.count.device if self.moments is not None else torch.device("cpu")
            self.moments, self.ndim = Moments(*(t.to(dev) for t in total.moments)), total.ndim
        self.n_batches = total.n_batches
        return self

    def _require(self) -> Moments:
        if self.moments is None:
            raise ValueError("StatsRecorder has seen no data yet; call update() with at least one non-empty batch")
        return self.moments

    @property
    def count(self) -> Tensor:
        "Number of counted values per kept position, float64 of keepdim shape (ValueError before any data)."
        return self._require().count

    @property
    def mean(self) -> Tensor:
        "Mean per kept position, float32 of keepdim shape (ValueError before any data)."
        return self._require().mean.float()

    @property
    def std(self) -> Tensor:
        "Population standard deviation (ddof=0) per kept position, float32 of keepdim shape (ValueError before any data)."
        return moments_std(self._require()).float()

    @property
    def var(self) -> Tensor:
        "Population variance per kept position, float64 of keepdim shape (ValueError before any data)."
        m = self._require()
        return m.m2 / m.count.clamp_min(1.0)

    @property
    def n_values(self) -> int:
        "Total number of counted values at one kept position (the largest, if masks differ); 0 before any data."
        return 0 if self.moments is None else int(self.moments.count.max())

    def __repr__(self) -> str:
        if self.moments is None:
            return f"StatsRecorder(red_dims={self.red_dims}, empty)"
        shape = tuple(self.moments.count.shape)
        return f"StatsRecorder(red_dims={self.red_dims}, shape={shape}, batches={self.n_batches}, values={self.n_values})"

    def state_dict(self) -> dict[str, Any]:
        """The recorder's state, as `save` writes it (ValueError before any data).

        Returns:
            A dict with `format` (`STATS_FORMAT`), `red_dims` (a list), `ndim`, `n_batches`,
            `settings`, and `count`, `mean`, `m2`: float64 NumPy arrays of keepdim shape.
        """
        m = self._require()
        return {
            "format": STATS_FORMAT,
            "red_dims": list(self.red_dims),
            "ndim": self.ndim,
            "n_batches": self.n_batches,
            "settings": self.settings,
            **{k: t.detach().cpu().numpy() for k, t in m._asdict().items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the statistics and their settings to `path` (a `.npz` file), atomically: never a partial file.

        The file holds float64 count, mean and M2 arrays and a JSON header with `red_dims` and the
        settings; `StatsRecorder.load` restores an identical recorder.

        Args:
            path: the file to write, replaced if it exists; missing folders are created.

        Returns:
            `path`, as a `Path`.

        Raises:
            ValueError: the recorder has seen no data yet.
            TypeError: `settings` is not JSON-serializable.
            OSError: the file cannot be written (naming it; the previous file is unchanged).
        """
        state = self.state_dict()
        arrays = {k: state.pop(k) for k in ("count", "mean", "m2")}
        try:
            header = np.array(json.dumps(state, sort_keys=True))
        except TypeError as e:
            raise TypeError(f"settings must be JSON-serializable to be saved with the statistics: {e}") from e
        return atomic_write(Path(path), lambda f: np.savez(f, header=header, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> StatsRecorder:
        """Read a file written by `save`.

        Args:
            path: a `.npz` file written by `StatsRecorder.save`.

        Returns:
            A recorder equal to the one saved (statistics, `red_dims`, settings, batch count).

        Raises:
            FileNotFoundError: `path` does not exist (naming it).
            ValueError: the file is truncated, not a statistics file, of another format, or corrupt.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"statistics file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                arrays = {k: np.array(data[k]) for k in ("count", "mean", "m2")}
        except Exception as e:  # zipfile (truncated), JSON and key errors all mean the same thing to the user
            raise ValueError(
                f"{path} is not a readable fastspecnorm statistics file (truncated or not written by StatsRecorder.save: "
                f"{type(e).__name__}: {' '.join(str(e).split())}); delete it to recompute"  # one line, whatever the cause says
            ) from None
        if not isinstance(header, dict) or header.get("format") != STATS_FORMAT:
            found = header.get("format") if isinstance(header, dict) else header
            raise ValueError(f"{path} has format {found!r}, expected {STATS_FORMAT!r}; delete it to recompute")
        shapes = {k: a.shape for k, a in arrays.items()}
        if len(set(shapes.values())) != 1 or any(a.dtype != np.float64 for a in arrays.values()):
            raise ValueError(f"{path} is corrupt: arrays of shapes/dtypes {shapes} are inconsistent; delete it to recompute")
        if not all(np.isfinite(a).all() for a in arrays.values()) or (arrays["count"] < 0).any() or (arrays["m2"] < 0).any():
            raise ValueError(f"{path} is corrupt: non-finite or negative statistics; delete it to recompute")
        try:
            if not isinstance(header.get("red_dims"), list) or not isinstance(header.get("settings"), dict | None):
                raise TypeError(f"no red_dims list, or settings that are not an object: {header!r}")
            rec = cls(header["red_dims"], settings=header.get("settings") or {})
            rec.n_batches = int(header.get("n_batches", 0))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path} has a bad header ({e}); delete it to recompute") from None
        rec.moments = Moments(*(torch.from_numpy(arrays[k]) for k in ("count", "mean", "m2")))
        rec.ndim = header.get("ndim")
        return rec


def _first_input(batch: Any) -> Tensor:
    "Inputs are the first element of each batch (fastai batches are tuples `(x, y)`)."
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("got an empty batch tuple; expected (inputs, targets)")
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise TypeError(f"expected the batch's first element to be a tensor, got {type(batch).__name__}")
    return batch


def check_fraction(fraction: float) -> float:
    "`fraction` (a share of the batches), checked to be a number in (0, 1]: ValueError otherwise (booleans too)."
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return fraction


def n_batches_for(n_total: int, fraction: float) -> int:
    """Number of batches a `fraction` of `n_total` batches selects: `ceil(fraction * n_total)`.

    Args:
        n_total: number of batches of the loader.
        fraction: share of them to use, in (0, 1].

    Returns:
        The number of batches, between 1 and `n_total`.

    Raises:
        ValueError: `fraction` is not in (0, 1], there is no batch, or `fraction * n_total < 1`
            (rounding up to a whole batch would silently use far more data than asked for).

    Examples:
        >>> n_batches_for(10, 0.3)
        3
    """
    check_fraction(fraction)
    if n_total == 0:
        raise ValueError(
            "the DataLoader yields no batches (is the training set empty, or smaller than one batch with drop_last?)"
        )
    wanted = fraction * n_total
    if wanted < 1 - 1e-9:  # the tolerance lets fraction=1/n_total through (1/49*49 < 1 in floating point)
        raise ValueError(
            f"fraction={fraction!r} of {n_total} batch(es) selects less than one batch; "
            f"use fraction >= 1/{n_total} ({1 / n_total!r}) for one batch, or a smaller batch size"
        )
    return min(n_total, math.ceil(wanted - 1e-9))  # 0.3 * 10 is 3.0000000000000004: 3 batches, not 4


def collect_stats(
    dl: Iterable,
    red_dims: Sequence[int] = (0, 2, 3),
    fraction: float = 1.0,
    mask_fn: Callable[[Tensor], Tensor] | None = None,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
) -> StatsRecorder:
    """One pass over `fraction` of the batches of `dl`, returning a `StatsRecorder`.

    Runs under `torch.no_grad()`. Padding never counts: a batch that carries `lengths` is masked
    with its `valid_mask`, so the statistics equal those of the clips' spectrograms taken one at a time.

    Args:
        dl: a DataLoader or any iterable of batches; inputs are the first element of each batch
            (a tuple `(x, y)`, or the tensor itself), e.g. spectrograms `(batch, channels, freq, time)`.
        red_dims: the dimensions to reduce: `(0, 2, 3)` one mean/std per audio channel
            ("global"), `(0, 1, 3)` one per frequency bin ("channel").
        fraction: share of the batches to use, in (0, 1]: the first `ceil(fraction * n)` batches,
            so pass a shuffled loader when `fraction` < 1 (which needs a loader with a length).
        mask_fn: optional function `mask_fn(x)` returning a bool mask (broadcastable to x) of the
            values to count, instead of the lengths mask.
        progress: show a progress bar.
        settings: JSON-serializable description stored in the recorder (see `StatsRecorder`).

    Returns:
        The recorder holding the statistics, of keepdim shape (e.g. `(1, channels, 1, 1)`).

    Raises:
        ValueError: `fraction` is not in (0, 1] or selects less than one batch, `fraction` < 1 for
            a loader without a length, the loader yields no value, or a counted value is NaN or Inf.
        TypeError: `red_dims` is not a sequence of ints, or a batch's first element is not a
            floating-point tensor.

    Examples:
        >>> batches = [(torch.randn(4, 1, 64, 50), torch.zeros(4)) for _ in range(3)]
        >>> rec = collect_stats(batches, red_dims=(0, 1, 3), progress=False)
        >>> rec.mean.shape, rec.n_values
        (torch.Size([1, 1, 64, 1]), 600)
    """
    rec = StatsRecorder(red_dims, settings=settings)
    try:
        n_use = n_batches_for(len(dl), fraction)  # type: ignore[arg-type]
    except TypeError:
        if fraction != 1.0:
            raise ValueError("fraction < 1 needs a loader with a length (len(dl))") from None
        n_use = None
    batches = islice(dl, n_use)
    if progress:
        from fastprogress.fastprogress import progress_bar

        batches = progress_bar(batches, total=n_use, leave=False)
        batches.comment = "collecting statistics"
    with torch.no_grad():
        for batch in batches:
            x = _first_input(batch)
            rec.update(x, mask_fn(x) if mask_fn is not None else valid_mask_or_none(x))
    if rec.moments is None:
        raise ValueError("collect_stats saw no values: the loader yielded no non-empty batch")
    return rec
