"""`StatsCallback`, which gathers training-only spectrogram statistics before fit and installs `SpecNormalize`,
and the loader helpers of that statistics pass."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders, TfmdDL
from fastai.torch_core import no_random
from fasttransform import Pipeline
from torch.utils.data import Subset

from ._io import file_stats
from .audio.spectrogram import AudioToSpec
from .normalize import SpecNormalize, SpecNormalizer
from .stats import StatsRecorder, _normalize_red_dims, check_fraction, collect_stats, n_batches_for

__all__ = ["StatsCallback", "stats_loader", "stats_item_indices", "install_normalizer", "pipeline_settings"]


def _items_fingerprint(items, root: Path) -> str:
    """A short hash of the training items (DataFrame rows or items) and of the size and modification
    time of each file they name (any text cell or item that is a file under `root`, or absolute)."""
    h = hashlib.sha1()
    if hasattr(items, "to_csv"):  # a DataFrame: hash its rows
        h.update(items.to_csv(index=False).encode())
    else:
        for it in items:
            h.update(repr(it).encode())
            h.update(b"\0")
    if hasattr(items, "columns"):  # a DataFrame: any text cell (whichever column) may name a file
        values = [v for col in items.columns for v in items[col].unique()]
    else:
        values = [v for it in items for v in (it if isinstance(it, (tuple, list)) else (it,))]
    names = {os.fspath(v) for v in values if isinstance(v, (str, os.PathLike))}
    stamps = file_stats(root, sorted(n for n in names if n and (root / n).is_file()))
    # size and mtime, not the inode: a copy made with its times (rsync -a, cp -p) is the same content
    h.update(json.dumps(sorted((name, st[:2]) for name, st in stamps.items() if st is not None)).encode())
    return h.hexdigest()[:16]


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> str:
    "What differs between two statistics settings, for a one-line message (short values shown as `old -> new`)."

    def shown(key: str) -> str:
        old, new = json.dumps(saved.get(key)), json.dumps(now.get(key))
        if key == "train_items":
            return "train_items (the training clips: their names, or a file's size or modification time)"
        return f"{key} {old} -> {new}" if len(old) + len(new) <= 80 else key

    return "; ".join(shown(key) for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key))


def stats_loader(dl: TfmdDL, shuffle: bool = True, seed: int = 0) -> TfmdDL:
    """A copy of `dl` for the statistics pass: no `SpecNormalizer`, no train-only augmentation (`split_idx`
    0) in `after_batch`, and no dropped last batch.

    Args:
        dl: a fastai `TfmdDL`, usually `dls.train`; it is not changed.
        shuffle: shuffle in a fixed-seed order, so a `fraction` of the batches is a reproducible
            random subset.
        seed: the seed of that order.
    """
    tfms = [t for t in dl.after_batch.fs if not isinstance(t, SpecNormalizer) and getattr(t, "split_idx", None) != 0]
    new = dl.new(shuffle=shuffle, drop_last=False, after_batch=Pipeline(tfms))
    new.rng = random.Random(seed)
    return new


def stats_item_indices(
    n_items: int, bs: int, fraction: float = 1.0, seed: int = 0, rank: int = 0, world_size: int = 1
) -> list[int]:
    """Indices of the training items one process uses for the statistics pass.

    The selection does not depend on the number of processes: with `fraction` < 1, the first
    `ceil(fraction * ceil(n_items / bs)) * bs` items of a fixed-seed permutation (sorted); with
    `fraction == 1`, every item. `rank` then takes every `world_size`-th index (no padding, no
    repetition), so that merged over the ranks the statistics are those of a single process.

    Args:
        n_items: number of training items.
        bs: batch size of the statistics pass.
        fraction: share of the batches to use, in (0, 1].
        seed: seed of the permutation.
        rank: this process's rank, in `[0, world_size)`.
        world_size: number of processes.

    Returns:
        The sorted item indices of this rank (empty when there are fewer items than ranks).

    Raises:
        ValueError: `rank` is not in `[0, world_size)`, there is no item, or `fraction` is not in
            (0, 1] or selects less than one batch.

    Examples:
        >>> stats_item_indices(10, bs=2, rank=1, world_size=3)
        [1, 4, 7]
        >>> len(stats_item_indices(100, bs=10, fraction=0.2))
        20
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    n_batches = math.ceil(n_items / bs) if n_items else 0
    n_use = n_batches_for(n_batches, fraction)
    if n_use >= n_batches:
        idxs = list(range(n_items))
    else:
        order = np.random.default_rng(seed).permutation(n_items)
        idxs = sorted(int(i) for i in order[: n_use * bs])
    return idxs[rank::world_size]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_ranks(value) -> list:
    "`value` of every rank (all_gather_object), or `[value]` outside torch.distributed."
    if not _distributed():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def pipeline_settings(dl: TfmdDL) -> dict[str, Any]:
    """What determines the spectrograms a loader yields, normalizers left out: transform names and `AudioToSpec` settings.

    Args:
        dl: a fastai `TfmdDL`.

    Returns:
        A dict with `spectrogram` (the `AudioToSpec` settings, None without one) and
        `transforms` (`"<stage>:<class name>"` of each transform of `after_item`,
        `before_batch` and `after_batch`).
    """
    spec = [t for t in dl.after_batch.fs if isinstance(t, AudioToSpec)]
    names = []
    for nm in ("after_item", "before_batch", "after_batch"):
        for t in getattr(dl, nm).fs:
            if not isinstance(t, SpecNormalizer) and type(t).__name__ != "noop":
                names.append(f"{nm}:{type(t).__name__}")
    return {"spectrogram": spec[0].settings if spec else None, "transforms": names}


def install_normalizer(dls: DataLoaders, norm: SpecNormalize) -> None:
    """Put `norm` on every loader's `after_batch` (its statistics on the loader's device), replacing any `SpecNormalizer`.

    Args:
        dls: fastai `DataLoaders`; changed in place.
        norm: the normalizer to install, e.g. `SpecNormalize.from_stats(recorder)`.
    """
    for dl in dls.loaders:
        dl.after_batch.fs = dl.after_batch.fs.filter(lambda t: not isinstance(t, SpecNormalizer))
        dl.after_batch.add(norm)
        if dl.device is not None:
            norm.mean, norm.std = norm.mean.to(dl.device), norm.std.to(dl.device)


def _normalizes_fresh_spectrograms(dls) -> bool:
    "Whether a normalizer installed on `dls` gets `AudioToSpec`'s fresh output (it may then be `inplace`)."
    for dl in dls.loaders:
        before = [
            t for t in dl.after_batch.fs if not isinstance(t, SpecNormalizer) and getattr(t, "order", 0) <= SpecNormalize.order
        ]
        if not before or not isinstance(before[-1], AudioToSpec):
            return False
    return True


class StatsCallback(Callback):
    """Before fitting, compute mean/std of the training spectrograms and install `SpecNormalize`.

    Statistics come from the training loader only, after `AudioToSpec` and before any normalization
    or train-only augmentation. The pass runs under its own `seed` and restores the global random
    state afterwards, so training sees the same random numbers whether they were computed or loaded.
    Once computed they are frozen: later fits reuse them while their `settings` match, and
    `learn.export()` keeps the installed `SpecNormalize`.

    A saved file is reused only when its settings match: the same `red_dims`, `fraction`, `seed`,
    spectrogram settings and transforms, and the same training items (rows, and each file's size
    and modification time). A file made otherwise is refused in one line naming what differs, or,
    with `refresh=True`, computed again with a warning and replaced.

    Under `torch.distributed`, each rank reads a disjoint share of the selected training items
    (`stats_item_indices`) and the recorders are all-reduced, so every rank installs the statistics
    a single process would compute. Rank 0 alone writes `path`; an error on one rank is raised on
    every rank.

    Args:
        red_dims: `(0, 2, 3)` for one mean/std per audio channel ("global"), `(0, 1, 3)` for one
            per frequency bin ("channel"), of `(batch, channels, freq, time)` spectrograms.
        fraction: share of the training batches used, in (0, 1] (a fixed-seed random subset).
        path: a `.npz` file to save the statistics to and reuse on later fits when its settings
            match; None: kept in memory only.
        min_std: floor of the standard deviations (see `SpecNormalize`).
        seed: seed of the statistics pass (item selection, loader order, random crops).
        progress: show a progress bar while statistics are gathered (rank 0 only).
        refresh: a file at `path` made with other settings is computed again and replaced (with
            a `UserWarning`) instead of refused.

    Attributes:
        stats_recorder: the `StatsRecorder` in use, None before the first fit.

    Raises:
        TypeError: `red_dims` is not a sequence of ints.
        ValueError: `red_dims` or `fraction` is invalid (at construction); at fit, a `fraction`
            that selects less than one batch, an empty training set with no statistics yet, or,
            unless `refresh`, a file at `path` made with other settings.
        RuntimeError: under `torch.distributed`, gathering or saving failed on another rank.

    Examples:
        >>> StatsCallback(red_dims=(0, 1, 3), fraction=0.2).red_dims
        (0, 1, 3)
    """

    order = -50  # before_fit must run before other callbacks start (progress bars, recorders, mixed precision)

    def __init__(self, red_dims: Sequence[int] = (0, 2, 3), fraction: float = 1.0, path: str | os.PathLike | None = None,
                 min_std: float = 1e-5, seed: int = 0, progress: bool = True, refresh: bool = False):  # fmt: skip
        self.red_dims = _normalize_red_dims(red_dims)
        self.progress, self.refresh = progress, refresh
        self.fraction = check_fraction(fraction)  # before any long work; whether it selects a batch is checked at fit
        self.min_std, self.seed = min_std, seed
        self.path = None if path is None else Path(path)
        self.stats_recorder: StatsRecorder | None = None

    def settings(self, dls: DataLoaders) -> dict[str, Any]:
        """What the statistics depend on, as stored with them and compared on reuse.

        Args:
            dls: the learner's `DataLoaders`; the training loader is described.

        Returns:
            A JSON-ready dict: `red_dims`, `fraction`, `seed`, the `pipeline_settings` of the
            training loader, `n_train` and `train_items`, a fingerprint of the training items and
            of their files' sizes and modification times.
        """
        train = dls.train
        settings = {
            "red_dims": list(self.red_dims),
            "fraction": self.fraction,
            "seed": self.seed,
            **pipeline_settings(train),
            "n_train": len(train.dataset),
            "train_items": _items_fingerprint(getattr(train, "items", []), Path(getattr(dls, "path", "."))),
        }
        return json.loads(json.dumps(settings))  # the form it takes in a saved file (tuples as lists)

    def before_fit(self):
        # fastai also fires before_fit in validate/get_preds/predict. An exported learner has an
        # empty training set there: keep the frozen statistics (and the installed normalizer).
        dls = self.learn.dls
        if len(dls.train.dataset) == 0:
            if self.stats_recorder is None:
                raise ValueError("StatsCallback: the training set is empty, so there is nothing to gather statistics from")
            return
        settings = self.settings(dls)
        if self.stats_recorder is None or self.stats_recorder.settings != settings:
            self.stats_recorder = self._load_or_collect(dls, settings)
        norm = SpecNormalize.from_stats(self.stats_recorder, min_std=self.min_std, inplace=_normalizes_fresh_spectrograms(dls))
        install_normalizer(dls, norm)

    def _load_or_collect(self, dls, settings) -> StatsRecorder:
        # Collecting ends in a collective all_reduce: load only when every rank sees the file.
        if self.path is not None and all(_all_ranks(self.path.exists())):
            rec = StatsRecorder.load(self.path)
            if rec.settings == settings:
                return rec
            differing = _differences(rec.settings, settings)
            if not self.refresh:
                raise ValueError(
                    f"statistics file {self.path} was made with other settings ({differing}); pass "
                    "StatsCallback(refresh=True) (the command's --refresh-stats) to compute them again, or another path"
                )
            if _is_main_process():  # one warning, not one per rank
                warnings.warn(f"statistics file {self.path} was made with other settings ({differing}): computing them "
                              "again (refresh=True) and replacing it", stacklevel=2)  # fmt: skip
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)
        error: Exception | None = None
        rec = StatsRecorder(self.red_dims, settings=settings)
        try:
            # Its own seed, the global random state restored: a resumed experiment repeats an uninterrupted one.
            with no_random(self.seed, reproducible=False):
                dl = stats_loader(dls.train, shuffle=False, seed=self.seed)
                idxs = stats_item_indices(len(dl.dataset), dl.bs, self.fraction, self.seed, rank, world_size)
                if len(idxs) != len(dl.dataset):
                    subset = Subset(dl.dataset, idxs)
                    subset.split_idx = getattr(dl.dataset, "split_idx", None)  # TfmdDL reads it: train-time item tfms apply
                    dl = dl.new(dataset=subset)
                if idxs:  # a rank has no item when there are fewer items than ranks
                    rec = collect_stats(dl, self.red_dims, 1.0, settings=settings, progress=self.progress and rank == 0)
        except Exception as e:
            error = e
        _raise_if_any_rank_failed(error, "gathering statistics")  # so no rank is left waiting in all_reduce
        rec.all_reduce()  # under torch.distributed every rank ends with the statistics of all shards
        if self.path is not None:
            error = None
            if _is_main_process():
                try:
                    rec.save(self.path)
                except Exception as e:
                    error = e
            # Also a barrier: every rank leaves once the file is written, so a later fit finds it on all.
            _raise_if_any_rank_failed(error, f"saving statistics to {self.path}")
        return rec


def _raise_if_any_rank_failed(error: Exception | None, what: str) -> None:
    "Raise `error` here, or a RuntimeError naming another rank's failure, on every rank alike (a collective call)."
    messages = _all_ranks(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    for rank, msg in enumerate(messages):
        if msg:
            raise RuntimeError(f"StatsCallback: {what} failed on rank {rank}: {msg}")


def _is_main_process() -> bool:
    return dist.get_rank() == 0 if _distributed() else int(os.environ.get("RANK", "0")) == 0
