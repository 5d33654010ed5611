"""`StatsCallback`: gather training-only spectrogram statistics before fit and install `SpecNormalize`."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

from fastai.callback.core import Callback
from fasttransform import Pipeline

from .normalize import SPEC_NORMALIZERS, SpecNormalize
from .spectrogram import AudioToSpec
from .stats import StatsRecorder, _normalize_red_dims, collect_stats, n_batches_for

__all__ = ["StatsCallback", "stats_loader", "install_normalizer", "pipeline_settings"]


def _items_fingerprint(items) -> str:
    "A short hash of the training items, so statistics of another split or dataset are never reused."
    h = hashlib.sha1()
    if hasattr(items, "to_csv"):  # a DataFrame: hash its rows
        h.update(items.to_csv(index=False).encode())
    else:
        for it in items:
            h.update(repr(it).encode())
            h.update(b"\0")
    return h.hexdigest()[:16]


def stats_loader(dl, shuffle: bool = True, seed: int = 0):
    """A copy of `dl` for the statistics pass: no normalizer and no train-only augmentation in
    `after_batch`, no dropped last batch, and (when `shuffle`) a fixed-seed order so a `fraction` of
    the batches is a reproducible random subset."""
    tfms = [t for t in dl.after_batch.fs if not isinstance(t, SPEC_NORMALIZERS) and getattr(t, "split_idx", None) != 0]
    new = dl.new(shuffle=shuffle, drop_last=False, after_batch=Pipeline(tfms))
    new.rng = random.Random(seed)
    return new


def pipeline_settings(dl) -> dict[str, Any]:
    "What determines the spectrograms a loader yields: transform names and `AudioToSpec` settings."
    spec = [t for t in dl.after_batch.fs if isinstance(t, AudioToSpec)]
    names = []
    for nm in ("after_item", "before_batch", "after_batch"):
        for t in getattr(dl, nm).fs:
            if not isinstance(t, SPEC_NORMALIZERS) and type(t).__name__ != "noop":
                names.append(f"{nm}:{type(t).__name__}")
    return {"spectrogram": spec[0].settings if spec else None, "transforms": names}


def install_normalizer(dls, norm: SpecNormalize) -> None:
    """Put `norm` on every loader's `after_batch`, replacing any spectrogram normalizer already
    there, with its statistics on the loader's device."""
    for dl in dls.loaders:
        dl.after_batch.fs = dl.after_batch.fs.filter(lambda t: not isinstance(t, SPEC_NORMALIZERS))
        dl.after_batch.add(norm)
        if dl.device is not None:
            norm.mean, norm.std = norm.mean.to(dl.device), norm.std.to(dl.device)


class StatsCallback(Callback):
    """Before fitting, compute mean/std of the training spectrograms and install `SpecNormalize`.

    red_dims: `(0, 2, 3)` for one mean/std per audio channel ("global"), `(0, 1, 3)` for one per
    frequency bin ("channel"). fraction: share of the training batches used (a fixed-seed random
    subset; the reference article found 10-20% enough on large sets). path: a `.npz` file to save
    the statistics to and reuse on later fits when its settings (red_dims, spectrogram settings,
    transforms, training items) match; a mismatch raises ValueError naming the differences.

    Statistics come from the training loader only, after `AudioToSpec` and before any normalization
    or train-only augmentation. Once computed they are frozen: later fits of the same learner reuse
    them, and `learn.export()` keeps the installed `SpecNormalize`.
    """

    order = -50  # before_fit must run before other callbacks start (progress bars, recorders, mixed precision)

    def __init__(self, red_dims=(0, 2, 3), fraction: float = 1.0, path=None, min_std: float = 1e-5, seed: int = 0):
        self.red_dims = _normalize_red_dims(red_dims)
        n_batches_for(1, fraction)  # validates fraction before any long work
        self.fraction, self.min_std, self.seed = fraction, min_std, seed
        self.path = None if path is None else Path(path)
        self.stats_recorder: StatsRecorder | None = None

    def settings(self, dls) -> dict[str, Any]:
        train = dls.train
        settings = {
            "red_dims": list(self.red_dims),
            "fraction": self.fraction,
            "seed": self.seed,
            **pipeline_settings(train),
            "n_train": len(train.dataset),
            "train_items": _items_fingerprint(getattr(train, "items", [])),
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
        install_normalizer(dls, SpecNormalize.from_stats(self.stats_recorder, min_std=self.min_std))

    def _load_or_collect(self, dls, settings) -> StatsRecorder:
        if self.path is not None and self.path.exists():
            rec = StatsRecorder.load(self.path)
            if rec.settings != settings:
                diff = sorted(k for k in set(rec.settings) | set(settings) if rec.settings.get(k) != settings.get(k))
                raise ValueError(
                    f"statistics file {self.path} was made with other settings (differing: {', '.join(diff)}); "
                    f"delete it or pass another path to StatsCallback"
                )
            return rec
        dl = stats_loader(dls.train, shuffle=self.fraction < 1.0, seed=self.seed)
        rec = collect_stats(dl, self.red_dims, self.fraction, settings=settings)
        rec.all_reduce()  # under torch.distributed every rank ends with the statistics of all shards
        if self.path is not None and _is_main_process():
            rec.save(self.path)
        return rec


def _is_main_process() -> bool:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
