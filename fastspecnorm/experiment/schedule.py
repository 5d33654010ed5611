"""Scheduling a prepared grid (`run_experiment`): which process trains which run, claims, workers,
records, and the outputs rebuilt from the records."""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import fastai
import torch
from fastai.callback.core import Callback, CancelFitException

from .. import __version__
from .._compat import import_torchaudio
from ..audio.cache_folders import format_bytes
from ..audio.spectrogram import spec_shape
from ..datasets.sources import source_dataloaders
from ..learner import audio_learner
from . import train as _train
from .fingerprint import describe_changes
from .grid import (
    ExperimentConfig,
    Prepared,
    _read_folds_csv,
    _read_json_file,
    _where,
    data_unchanged,
    digest,
    experiment_title,
    prepare,
    refuse_old_format,
)
from .log import RunLog
from .norms import NORMS
from .report import write_summary
from .store import RunStore

__all__ = [
    "POLL_SECONDS",
    "Interrupted",
    "Run",
    "run_id",
    "grid_runs",
    "run_experiment",
    "say_plan",
    "time_one_batch",
    "rebuild_outputs",
    "summarize_out",
    "DataChangedError",
]

POLL_SECONDS = 2.0  # how often a process waiting for runs claimed by others looks again


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM) stopped the grid; finished runs are kept, the runs in progress released.

    Args:
        signum: the signal's number.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum} ({signal.Signals(signum).name})")
        self.signum = signum


class DataChangedError(RuntimeError):
    "The data changed while the grid ran; the run trained on them was not recorded."


class Run(NamedTuple):
    "One run of a grid: a normalization trained with one seed, validated on one fold of one repeat."

    norm: str
    fold: int
    seed: int
    repeat: int = 0


def run_id(norm: str, fold: int, seed: int, experiment_id: str, repeat: int = 0) -> str:
    """The deterministic name of a run's record and claim, e.g. 'global-fold1-seed0-3f2a9c01b7e4', or
    'global-r2-fold1-seed0-3f2a9c01b7e4' for repeat 2.

    Args:
        norm: the normalization's name.
        fold: the fold number held out.
        seed: the run's seed.
        experiment_id: the experiment's short digest (`Prepared.experiment_id`).
        repeat: the k-fold partition (0, the only one of fixed folds, is left out of the name,
            so grids recorded before repeated k-fold keep their ids).
    """
    return f"{norm}{f'-r{repeat}' if repeat else ''}-fold{fold}-seed{seed}-{experiment_id}"


def _id(run: Run, prep: Prepared) -> str:
    return run_id(run.norm, run.fold, run.seed, prep.experiment_id, run.repeat)


def grid_runs(cfg: ExperimentConfig, folds: list[int] | None = None, repeats: list[int] | None = None) -> list[Run]:
    """The `Run`s of this process: the whole grid in a fixed order (repeats, folds, then seeds, then
    norms), every N-th from the I-th on for `shard=(I, N)`; the N shards are disjoint and together the grid.

    Args:
        cfg: the comparison's options (`shard`, `seeds`, `norms`, `folds`, `repeats`).
        folds: the fold numbers (None: `cfg.folds`).
        repeats: the repeats (None: 0 to `cfg.repeats` - 1).
    """
    index, count = cfg.shard
    folds = cfg.folds if folds is None else folds
    repeats = range(cfg.repeats) if repeats is None else repeats
    runs = [Run(n, f, s, r) for r in repeats for f in folds for s in cfg.seeds for n in cfg.norms]
    return runs[index - 1 :: count]


def _stats_path(out: Path, norm: str, fold: int, settings: dict[str, Any], fraction: float, data_fingerprint: str,
                repeat: int = 0) -> Path:  # fmt: skip
    "One statistics file per repeat, fold, normalization, settings and data content, shared by all seeds."
    key = {"settings": settings, "fraction": fraction, "data_fingerprint": data_fingerprint}
    return out / "stats" / f"{f'r{repeat}-' if repeat else ''}fold{fold}-{norm}-{digest(key)}.npz"


def rebuild_outputs(out: Path, experiment: dict[str, Any], rope: float = 1.0, log: RunLog | None = None):
    """Rebuild `results.csv` from this experiment's records, then (when it has rows) `summary.md` and
    `summary.png` from it; returns its rows (`RunStore.rebuild`). Records of another experiment or of
    a fold it does not have are left out and named.

    Args:
        out: the experiment folder.
        experiment: its identity (`OUT/experiment.json`): the summary's title, and the records' run ids' suffix.
        rope: the verdicts' region of practical equivalence, in accuracy points.
        log: where the left-out records are named (None: not shown).

    Raises:
        ValueError: a run record that cannot be read (naming the file).
        ImportError: matplotlib is not installed (for `summary.png`).
    """
    store = RunStore(out)
    experiment_id = digest(experiment)
    folds = _recorded_folds(out)
    stray: set[str] = set()

    def keep(run: str) -> bool:
        found = re.search(r"-(?:r(\d+)-)?fold(\d+)-seed\d+-[0-9a-f]+$", run)
        if folds is None or (found and (int(found[1] or 0), int(found[2])) in folds):
            return True
        stray.add(f"{run}.json")
        return False

    rows, records = store.rebuild_with_records(list(NORMS), experiment_id, keep)
    if log is not None and (foreign := store.foreign(experiment_id)):
        log.result(
            f"left out {len(foreign)} record(s) in {store.runs_dir} of another experiment than {out / 'experiment.json'} "
            f"(run ids not ending in -{experiment_id}): {_some(foreign)}"
        )
    if log is not None and stray:
        log.result(
            f"left out {len(stray)} record(s) in {store.runs_dir} for a fold this experiment does not have "
            f"(its folds: {out / 'data-files.json'} or {out / 'folds.csv'}): {_some(sorted(stray))}"
        )
    if len(rows):
        infos = [r.get("info", {}) for r in records]
        write_summary(rows, out, order=list(NORMS), title=experiment_title(experiment), infos=infos, rope=rope / 100.0)
    return rows


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _recorded_folds(out: Path) -> set[tuple[int, int]] | None:
    """The `(repeat, fold)` pairs of the experiment in `out`: the fixed folds of the table in
    `data-files.json`, else the drawn ones of `folds.csv`; None when `out` records neither (older OUTs)."""
    table = _read_json_file(out / "data-files.json", "data fingerprint", default={}).get("table") or {}
    fixed = {(0, int(row[1])) for row in table.values() if row[1] is not None}
    if fixed:
        return fixed
    if (out / "folds.csv").is_file():  # the grid's reader: also folds.csv written before repeated k-fold
        return {(repeat, fold) for (repeat, _), fold in _read_folds_csv(out / "folds.csv").items()}
    return None


def _train_and_record(cfg: ExperimentConfig, prep: Prepared, store: RunStore, key: Run, device: str | None, log: RunLog,
                      position: str) -> None:  # fmt: skip
    norm, fold, seed, repeat = key
    source = prep.source_for(repeat)
    where = _where(source, fold, repeat)
    stats_path = None
    if NORMS[norm].red_dims:
        stats_path = _stats_path(cfg.out, norm, fold, prep.settings_dict, cfg.stats_fraction, prep.data["digest"], repeat)
    log.info(f"run {position}: norm={norm} {where} seed={seed} preset={prep.experiment['preset']} "
             f"epochs={prep.training.epochs} device={device or 'default'}")  # fmt: skip
    row = _train.train_one(source, norm, fold, seed, prep.settings, prep.training, stats_path, cfg.stats_fraction,
                           device, log=log, preset=prep.experiment["preset"], refresh_stats=cfg.refresh_stats)  # fmt: skip
    row = {"norm": row["norm"], "repeat": repeat, **row}
    if (now := data_unchanged(prep)) is not None:
        raise DataChangedError(
            f"the data changed while the grid ran ({describe_changes(prep.data, now)}); the run just trained "
            "was not recorded. Restore the data and run the same command again, or use another --out folder"
        )
    # The table holds only what the seed determines, so a resumed grid reproduces it exactly;
    # wall-clock time, versions and host go to the record's info.
    info = {"seconds": row.pop("seconds"), "host": socket.gethostname(), "pid": os.getpid(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "python": sys.version.split()[0], "torch": torch.__version__,
            "torchaudio": import_torchaudio().__version__, "fastai": fastai.__version__, "fastspecnorm": __version__}  # fmt: skip
    if cfg.command:
        info["command"] = cfg.command
    store.save(_id(key, prep), row, info)
    diverged = " DIVERGED (a non-finite loss: left out of the summary; try a lower --lr)" if row.get("diverged") else ""
    log.result(f"run {position}: {norm} {where} seed {seed}: accuracy {row['accuracy']:.4f} "
               f"in {info['seconds']:.0f} s{diverged}")  # fmt: skip


def _pending(store: RunStore, runs: list[Run], prep: Prepared) -> list[Run]:
    return [k for k in runs if not store.is_done(_id(k, prep))]


def _work(cfg: ExperimentConfig, prep: Prepared, device: str | None, log: RunLog) -> None:
    """Train every run of this process's grid not yet recorded; wait for those claimed by others
    (taken over if those processes die) until every run is recorded, by whichever process."""
    store = RunStore(cfg.out)
    runs = grid_runs(cfg, prep.folds, prep.repeats)
    pending = _pending(store, runs, prep)
    shard = f" (shard {cfg.shard[0]}/{cfg.shard[1]})" if cfg.shard != (1, 1) else ""
    log.info(f"{len(runs)} runs in the grid{shard}, {len(runs) - len(pending)} already recorded in {store.runs_dir}, "
             f"{len(pending)} to run")  # fmt: skip
    for key in set(runs) - set(pending):  # claims left by a process killed after recording its run hold nothing
        store.claim_path(_id(key, prep)).unlink(missing_ok=True)
    total, started, waited = len(pending), 0, False
    while pending:
        waiting = []
        for key in pending:
            rid = _id(key, prep)
            with store.claimed(rid) as mine:
                if not mine:
                    waiting.append(key)
                elif not store.is_done(rid):  # another process may have finished it meanwhile
                    started += 1
                    _train_and_record(cfg, prep, store, key, device, log, f"{started} of {total}")
            if mine and store.is_done(rid):  # claim released first: a kill while rebuilding leaves no claim behind
                rebuild_outputs(cfg.out, prep.experiment, cfg.rope)
        pending = _pending(store, waiting, prep)
        if pending and not waited:  # once, not at every poll
            holders = [_holder_text(store, _id(k, prep)) for k in pending[:2]]
            log.info(
                f"{len(pending)} run(s) being trained by other processes ({'; '.join(holders)}"
                f"{'; ...' if len(pending) > 2 else ''}); waiting for them"
            )
            waited = True
        if pending:
            time.sleep(POLL_SECONDS)


def _holder_text(store: RunStore, run_id: str) -> str:
    "Who holds the claim on `run_id`, and when it is taken over if that process stops beating."
    claim = store.claim_holder(run_id)
    if claim is None:
        return f"{run_id}: free now"
    job = f", Slurm job {claim['job']}" if claim.get("job") else ""
    expires = time.strftime("%H:%M:%S", time.localtime(claim["heartbeat"] + store.stale_after))
    return f"{run_id} by {claim['host']} pid {claim['pid']}{job}, taken over at {expires} unless it beats again"


def _device_worker(cfg: ExperimentConfig, prep: Prepared, device: str, log: RunLog) -> None:
    "Entry point of one `--devices` worker process (started with the 'spawn' method)."
    if device.startswith("cuda"):
        torch.cuda.set_device(device)  # this process's own device, for anything using the current one
    log.prefix = f"[{device} pid {os.getpid()}] "
    _work(cfg, prep, device, log)


def _run_workers(cfg: ExperimentConfig, prep: Prepared, log: RunLog) -> None:
    """One spawned worker per device, reaped the moment it ends (its claim free at once for the others,
    which take its run over); SIGTERM / SIGINT to this process stop the workers too, then end it."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: safe with CUDA and threads
    workers = [context.Process(target=_device_worker, args=(cfg, prep, d, log), name=f"worker {d}") for d in cfg.devices]
    received = []

    def forward(signum, frame):
        received.append(signum)
        for w in workers:
            if w.is_alive():
                w.terminate()

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        alive = list(workers)
        while alive:
            multiprocessing.connection.wait([w.sentinel for w in alive])
            for w in [w for w in alive if not w.is_alive()]:
                w.join()  # reaped now: a dead worker is not a zombie holding its claim
                alive.remove(w)
                if w.exitcode != 0 and not received:
                    log.result(f"{w.name} ended with exit code {w.exitcode}; the other workers take over its run")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise Interrupted(received[0])
    failed = [f"{w.name} (exit code {w.exitcode})" for w in workers if w.exitcode != 0]
    missing = _pending(RunStore(cfg.out), grid_runs(cfg, prep.folds, prep.repeats), prep)
    if failed and missing:
        raise RuntimeError(f"{', '.join(failed)} failed (messages above) and {len(missing)} run(s) are not recorded; "
                           "run the same command again to resume")  # fmt: skip


def run_experiment(cfg: ExperimentConfig, log: RunLog | None = None, prep: Prepared | None = None) -> Path:
    """Run every (norm, fold, seed) of this process's grid not yet recorded in `cfg.out`; returns the
    path of `results.csv`.

    Each run is claimed while trained, so any number of processes on one OUT folder (one per device
    with `devices`, one per job-array task with `shard`, or the same command started twice, on one
    machine or several sharing a file system) record each run exactly once; runs claimed by others
    are waited for, and taken over if those processes die. Each finished run is recorded atomically
    and the summary rebuilt, so an interruption loses at most the runs in progress. A clip changed
    while the grid runs stops it before the run is recorded.

    Args:
        cfg: the comparison's options.
        log: how progress is shown (None, or anything not a `RunLog`: `RunLog()`).
        prep: the grid as `prepare(cfg)` returned it (None: prepared here).

    Raises:
        ValueError: bad input, before any training (see `prepare`).
        TypeError: an unknown setting name, before any training.
        FileNotFoundError: a dataset folder, CSV or listed clip that does not exist, before any training.
        DataChangedError: the data changed while the grid ran (a RuntimeError).
        RuntimeError: a `--devices` worker failed and runs are left unrecorded.
        KeyboardInterrupt: SIGINT or SIGTERM stopped the workers (`Interrupted`); run the same
            command again to resume.
    """
    log = log if isinstance(log, RunLog) else RunLog()
    prep = prep or prepare(cfg, log)
    if not log.quiet:
        say_plan(cfg, prep, log)
    if len(cfg.devices) > 1:
        _run_workers(cfg, prep, log)
    else:
        _work(cfg, prep, cfg.devices[0] if cfg.devices else None, log)
    rebuild_outputs(cfg.out, prep.experiment, cfg.rope, log)
    log.result(f"results: {cfg.out / 'results.csv'}\nsummary: {cfg.out / 'summary.md'}, {cfg.out / 'summary.png'}")
    return cfg.out / "results.csv"


class _BatchTimer(Callback):
    "Times training batches until `n` have ended, then ends the fit (never validating)."

    order = 100  # after every other callback: a batch's time includes theirs
    n = 2

    def before_train(self):
        self.marks = [time.perf_counter()]

    def after_batch(self):
        self.marks.append(time.perf_counter())
        if len(self.marks) > self.n:
            raise CancelFitException

    def before_validate(self):  # an epoch of fewer than `n` batches
        raise CancelFitException


def time_one_batch(source, fold: int, settings, device: str | None = None, progress: bool = False):
    """Time one training batch of `fold` with the loaders and xResNet18 of a run (norm `none`): the
    second of two batches, past one-time costs; this also builds the audio cache the runs will read.
    Returns `(seconds, dls)`: the batch's wall time (loading to optimizer step) and the loaders.

    Args:
        source: the `DataSource` with folds.
        fold: the fold held out.
        settings: the resolved `AudioSettings`.
        device: where batches and the model go (None: fastai's default device).
        progress: show a progress bar while the audio cache is built.
    """
    dls = source_dataloaders(source, fold, settings, device=device, progress=progress)
    learn = audio_learner(dls, precision=settings.precision)
    timer = _BatchTimer()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=timer)
    return timer.marks[-1] - timer.marks[-2], dls  # the last batch: the second when two ran


def _frames(prep: Prepared) -> str:
    "The spectrograms' time axis: fixed by the duration, else the range over the clips (from their headers)."
    s = prep.settings
    if s.duration is not None:
        samples = [round(s.duration * s.sample_rate)]
    else:  # each clip's length as `resample` sizes it
        samples = [math.ceil(f["frames"] * s.sample_rate / f["samplerate"]) for f in prep.facts.values()]
    lengths = [spec_shape(n, s.n_fft, s.hop_length, s.n_mels)[1] for n in samples]
    return str(lengths[0]) if s.duration is not None else f"{min(lengths)}-{max(lengths)} frames"


def _batches(prep: Prepared, run: Run) -> int:
    "Batches of one epoch of `run`: full training batches (the last partial one dropped) and every validation batch."
    table = prep.source_for(run.repeat).table
    n_valid = int((table["fold"] == run.fold).sum())
    return (len(table) - n_valid) // prep.settings.bs + math.ceil(n_valid / prep.settings.bs)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def say_plan(cfg: ExperimentConfig, prep: Prepared, log: RunLog) -> None:
    """Say what the grid will do before it trains: one line with the runs to train, the preset, the
    resolved sample rate, STFT and spectrogram shape, and the wall time estimated from one timed batch
    (`time_one_batch` on the first run's fold; a rough estimate: every batch of every run and epoch at
    that time); then one line with the audio cache's folder and size. Nothing is timed when every run
    is recorded, nor with `--devices` (a batch timed here would hold a CUDA context on the first GPU).

    Args:
        cfg: the comparison's options.
        prep: the prepared grid.
        log: where the lines go (`info`).
    """
    runs = grid_runs(cfg, prep.folds, prep.repeats)
    pending = _pending(RunStore(cfg.out), runs, prep)
    s, epochs = prep.settings, prep.training.epochs
    freq = spec_shape(s.n_fft, s.n_fft, s.hop_length, s.n_mels)[0]
    line = (f"plan: {len(pending)} of {len(runs)} runs to train, preset {prep.experiment['preset']}, {s.sample_rate} Hz, "
            f"n_fft {s.n_fft}, hop {s.hop_length}, spectrograms (1, {freq}, {_frames(prep)}), bs {s.bs}, {epochs} epoch(s)")  # fmt: skip
    if not pending or cfg.devices:
        log.info(line)
        return
    seconds, dls = time_one_batch(prep.source_for(pending[0].repeat), pending[0].fold, s, None, log.progress)
    batches = epochs * sum(_batches(prep, run) for run in pending)
    log.info(f"{line}; about {_duration(seconds * batches)} ({batches} batches at {seconds:.3g} s, one timed on {dls.device})")
    cache = dls.audio_cache
    log.info("audio cache: off" if cache is None else f"audio cache: {cache.folder}, {format_bytes(cache.nbytes)} for "
             f"{len(cache)} clips (fastspecnorm cache --info lists every cache folder, --clear empties them)")  # fmt: skip


def summarize_out(out: str | Path, log=None, rope: float = 1.0) -> Path:
    """Rebuild `out/results.csv`, `summary.md` and `summary.png` from the finished runs' records
    (training nothing; idempotent); returns the path of `results.csv`.

    Args:
        out: the experiment folder (a grid's `--out`).
        log: how the result is shown (None, or anything not a `RunLog`: `RunLog()`).
        rope: the verdicts' region of practical equivalence, in accuracy points.

    Raises:
        FileNotFoundError: `out` holds no experiment (no experiment.json).
        ValueError: `out` holds no finished run, is of the older format, or has a record that
            cannot be read.
    """
    log = log if isinstance(log, RunLog) else RunLog()
    out = Path(out)
    if not (out / "experiment.json").is_file() and not (out / "results.csv").is_file():
        raise FileNotFoundError(f"{out} holds no experiment (no experiment.json); pass the --out folder of a grid")
    refuse_old_format(out)
    rows = rebuild_outputs(out, _read_json_file(out / "experiment.json", "experiment identity"), rope, log)
    if not len(rows):
        raise ValueError(f"{out} has no finished run yet (no record in {out / 'runs'}); nothing to summarize")
    log.result(f"{len(rows)} runs: {out / 'results.csv'}, {out / 'summary.md'}, {out / 'summary.png'}")
    return out / "results.csv"
