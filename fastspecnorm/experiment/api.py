"""`compare`: the comparison of normalizations from Python, the same as `fastspecnorm compare`."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import fields
from pathlib import Path

import pandas as pd

from .._io import atomic_write_text
from .grid import ExperimentConfig, SettingOptions, prepare
from .log import RunLog
from .norms import NORMS
from .schedule import run_experiment
from .slurm import SlurmOptions, check_slurm, gather, slurm_executor, submit_tasks
from .summary import summarize

__all__ = ["compare"]

# compare()'s own arguments name these fields of ExperimentConfig; every other one is an option.
_ARGUMENTS = {"data", "csv", "out", "folds", "seeds", "norms", "preset", "epochs", "overrides", "summarize", "command"}
_OPTIONS = {f.name for f in fields(ExperimentConfig)} - _ARGUMENTS
_SETTINGS = {f.name for f in fields(SettingOptions)}
_SLURM = {f.name for f in fields(SlurmOptions)}  # where the tasks run: no part of the experiment's identity
# Runs seed the process's global generators (fastai's set_seed), so one compare() at a time per process.
_ONE_AT_A_TIME = threading.Lock()


def compare(source: str | os.PathLike | pd.DataFrame, out: str | os.PathLike, norms: Sequence[str] | None = None,
            folds: Sequence | None = None, seeds: Sequence[int] = (0,), preset: str | None = None, epochs: int | None = None,
            progress: bool | None = None, quiet: bool = False, executor: Executor | None = None, **options) -> pd.DataFrame:  # fmt: skip
    """Compare normalizations on `source`: one xResNet18 from scratch per (norm, fold, seed).

    Resumable like the command: finished runs in `out` are kept and skipped, and any number of
    processes may share `out`; one call at a time per process. The command sets
    `OMP_WAIT_POLICY=PASSIVE`, which keeps training fast on a busy CPU; from Python, set it in the
    environment before the interpreter starts.

    Args:
        source: a dataset folder (ESC-50 layout, FSDD, one subfolder per label), a CSV file, or a
            pandas DataFrame of clips (its file names relative to `path=`; written to
            `out/source.csv` and read from there).
        out: the output folder (runs/, results.csv, summary.md, summary.png).
        norms: names of `NORMS` (None: all of them).
        folds: fold values to validate on (numbers, or names such as speakers; None: all).
        seeds: the seeds (default: seed 0 only).
        preset: a name of `PRESETS` (None: the dataset's default; "own" for your data).
        epochs: epochs per run (None: the preset's).
        progress: fastai's progress bars (None: when stdout is a terminal); otherwise one line per
            epoch and one per run.
        quiet: one line per run.
        executor: send the grid to other processes: an object with `submit(fn, *args)` whose
            futures or jobs have `result()` (`concurrent.futures.ProcessPoolExecutor`, submitit's
            executors; threads are refused). `slurm_array` tasks (default 1) each pull runs from
            `out` until none is left; `compare` returns when they end. Without it, `slurm_array=N`
            sends N such tasks to Slurm through submitit, set up by the other `slurm_*` options
            (`slurm.SlurmOptions`).
        **options: the command's options by their Python names: `k=5`, `group_col="speaker"`,
            `fold_col="fold"`, `fn_col`, `label_col`, `path`, `dataset`, `devices`, `shard`,
            `stats_fraction`, `synthetic_classes`, `synthetic_clips`, `repeats` (k-fold
            partitions drawn for sources without folds), `rope` (the region of practical
            equivalence in accuracy points, default 1.0); settings `bs`, `lr`, `num_workers`,
            `augment`, `precision` ("fp32", "bf16" or "auto"); and `overrides` (a dict of other
            `AudioSettings` fields).

    Returns:
        A DataFrame, one row per norm (accuracies as fractions), with the statistics of
            `experiment.summarize` (seeds of a fold averaged, corrected resampled t over folds):
            `norm, n, mean, std, ci_low, ci_high, min, max, n_folds` and the verdict against
            `none`, matched on repeat, fold and seed: `n_pairs_vs_none, n_folds_vs_none,
            diff_vs_none, diff_std, diff_low, diff_high, p_value, p_adjusted, p_better,
            p_equivalent, p_worse, verdict, folds_needed` (NaN for `none` itself, and for all when
            `none` is not in the grid).

    Raises:
        TypeError: an unknown option or setting, or a `source` that is not a folder, a CSV path or
            a DataFrame; before anything is trained.
        ValueError: a DataFrame `source` without `path=`, or bad input found by `prepare` (an
            unknown preset, norm, fold, shard or device; a bad clip or table; an `out` holding
            finished runs of another experiment); before anything is trained.
        FileNotFoundError: a dataset folder, CSV or listed clip that does not exist, likewise.
        RuntimeError: another thread of this process is running `compare()`; `slurm_array`
            without Slurm's `sbatch` on PATH; runs left unrecorded after every task ended.
        ImportError: `slurm_array` without an `executor`, and submitit is not installed.
    """
    if not _ONE_AT_A_TIME.acquire(blocking=False):
        raise RuntimeError("compare() is already running in this process (another thread): each run seeds the "
                           "process's global random generators (Python, NumPy, torch), so two at once would not "
                           "reproduce the command; run them one after the other, or in separate processes")  # fmt: skip
    try:
        overrides = dict(options.pop("overrides", {}))
        overrides.update({k: options.pop(k) for k in list(options) if k in _SETTINGS})
        slurm = SlurmOptions(**{k: options.pop(k) for k in list(options) if k in _SLURM})
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise TypeError(
                f"compare() got unknown option(s) {unknown}; expected some of {sorted(_OPTIONS | _SETTINGS | _SLURM | {'overrides'})}"
            )
        out = Path(out)
        data = csv = table = None
        if isinstance(source, pd.DataFrame):
            if options.get("path") is None:
                raise ValueError("a DataFrame source needs path=, the folder its file names are relative to")
            table = source.to_csv(index=False, lineterminator="\n")
            options.setdefault("fn_col", 0)
            options.setdefault("label_col", 1)
        elif isinstance(source, str | os.PathLike) and Path(source).suffix.lower() == ".csv":
            csv = str(source)
        elif isinstance(source, str | os.PathLike):
            data = str(source)
        else:
            raise TypeError(f"source must be a folder, a CSV path or a DataFrame, got {type(source).__name__}")
        cfg = ExperimentConfig(
            data=data,
            out=out,
            folds=None if folds is None else list(folds),
            seeds=list(seeds),
            norms=list(norms or NORMS),
            preset=preset,
            epochs=epochs,
            overrides=overrides,
            csv=csv,
            **options,
        )
        check_slurm(slurm, cfg, executor)
        if executor is None and slurm.slurm_array is not None:
            executor = slurm_executor(slurm, out)
        log = RunLog(progress=progress, quiet=quiet)
        prep = None
        if table is not None:  # a DataFrame is checked from a temporary CSV; OUT/source.csv is written once it passed
            with tempfile.TemporaryDirectory() as scratch:
                cfg.csv = os.path.join(scratch, "source.csv")
                Path(cfg.csv).write_text(table)
                prep = prepare(cfg, log)
            cfg.csv = str(out / "source.csv")
            atomic_write_text(out / "source.csv", table)
        if executor is None:
            results = pd.read_csv(run_experiment(cfg, log, prep=prep))
        else:  # prepared here first: bad input refused and the identity written before anything is submitted
            prep = prep or prepare(cfg, log)
            results = pd.read_csv(gather(cfg, prep, submit_tasks(cfg, executor, slurm.slurm_array or 1, quiet=quiet), log))
        summary = summarize(results, baseline="none", order=list(NORMS), rope=cfg.rope / 100.0)
        paired = summary.paired.rename(columns={"n_pairs": "n_pairs_vs_none", "n_folds": "n_folds_vs_none", "mean_diff": "diff_vs_none",
                                                "std_diff": "diff_std", "ci_low": "diff_low", "ci_high": "diff_high"})  # fmt: skip
        return summary.per_norm.join(paired, how="left").reset_index()
    finally:
        _ONE_AT_A_TIME.release()
