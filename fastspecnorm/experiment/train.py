"""Training one run of the comparison: one normalization on one fold with one seed."""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..datasets.sources import DataSource, SourceSpec, read_source, source_dataloaders
from ..learner import audio_learner
from ..presets import AudioSettings, Training, get_settings, get_training
from .log import RunLog
from .norms import norm_setup

__all__ = ["train_one"]


def train_one(source: DataSource | str | os.PathLike, norm: str, fold: int, seed: int, settings: AudioSettings | str | None = None,
              training: Training | None = None, stats_path: Path | None = None,
              stats_fraction: float = 1.0, device: str | None = None, log: RunLog | None = None, preset: str | None = None,
              dataset: str | None = None, refresh_stats: bool = False, **overrides) -> dict[str, Any]:  # fmt: skip
    """Train one run and return its result row (final-epoch validation accuracy in [0, 1]).

    Seeds Python, NumPy and torch (fastai `set_seed(seed, reproducible=True)`) before building
    the data, so the shuffling, crops and initialization of a run are reproducible.

    Args:
        source: the `DataSource` (with folds), or a dataset folder with folds (read by its recipe,
            `dataset` or detected).
        norm: a name of `NORMS`.
        fold: the fold number held out for validation.
        seed: the run's seed.
        settings: resolved `AudioSettings` (the norm adds its own, e.g. `to_db=False` for PCEN),
            or a preset's name (None: `preset`, else the dataset's default; a preset keeping the
            files' rate runs at 16 kHz), with `overrides` applied.
        training: the `Training` (epochs, learning rate, augmentations; None: the preset's), with
            `overrides` applied.
        stats_path: where the norm's dataset statistics are saved and reused (None: not saved).
        stats_fraction: share of training batches the statistics are gathered from.
        device: where batches and the model go (None: fastai's default device).
        log: how progress is shown (None: `RunLog()`, bars on a terminal).
        preset: the preset's name, for the row.
        dataset: the recipe of a `source` folder (None: detected).
        refresh_stats: recompute a statistics file made with other settings instead of refusing it.
        overrides: `AudioSettings` or `Training` fields to change (e.g. `epochs=1, bs=8`).

    Returns:
        The result row: `norm`, `fold`, `seed`, `epochs`, `accuracy`, `valid_loss` and
            `train_loss` of the final epoch, `preset`, `n_train` and `n_valid` (clips), `n_classes`,
            `device`, `diverged` (a final loss is NaN or infinite) and `seconds` (wall time of the
            fit).

    Raises:
        ValueError: an unknown norm or preset, or a `fold` that is not a fold of `source`.
        TypeError: a name in `overrides` that is a field of neither.
    """
    from fastai.torch_core import set_seed

    if not isinstance(source, DataSource):
        source = read_source(SourceSpec(data=source, dataset=dataset))
    preset = (settings if isinstance(settings, str) else preset) or source.preset
    ours = {f.name for f in fields(Training)}
    if settings is None or isinstance(settings, str):
        settings = get_settings(preset, **{k: v for k, v in overrides.items() if k not in ours}).resolved()
    else:
        settings = replace(settings, **{k: v for k, v in overrides.items() if k not in ours})
    training = replace(training or get_training(preset), **{k: v for k, v in overrides.items() if k in ours})
    log = log or RunLog()
    setup = norm_setup(norm, stats_fraction, stats_path, augment=training.augment, progress=log.progress,
                       refresh_stats=refresh_stats)  # fmt: skip
    settings = replace(settings, **setup.settings)
    set_seed(seed, reproducible=True)
    dls = source_dataloaders(source, fold, settings, batch_tfms=setup.batch_tfms, device=device, progress=log.progress)
    learn = audio_learner(dls, cbs=setup.cbs, precision=settings.precision, **setup.learner_kwargs)
    start = time.perf_counter()
    if not log.progress:
        learn.logger = log.epoch_logger(learn.recorder, training.epochs)
    with nullcontext() if log.progress else learn.no_bar():
        learn.fit_one_cycle(training.epochs, **({} if training.lr is None else {"lr_max": training.lr}))
    seconds = time.perf_counter() - start
    names = list(learn.recorder.metric_names[1:-1])  # drop "epoch" and "time"
    last = dict(zip(names, learn.recorder.values[-1], strict=True))
    losses = {name: float(last[name]) for name in ("valid_loss", "train_loss")}
    return {
        "norm": norm,
        "fold": source.fold_value(fold),  # as the source names it: a number, or a speaker's name
        "seed": seed,
        "epochs": training.epochs,
        "accuracy": float(last["accuracy"]),
        **losses,
        "preset": preset,
        "n_train": len(dls.train_ds),
        "n_valid": len(dls.valid_ds),
        "n_classes": dls.c,
        "device": str(dls.device),
        # A non-finite loss: the run diverged, and its accuracy is not a result (`summarize` leaves it out).
        "diverged": not all(math.isfinite(loss) for loss in losses.values()),
        "seconds": round(seconds, 2),
    }
