"""The normalization comparison: a resumable grid of runs over norms x folds x seeds, on ESC-50
(`dataset="esc50"`, official folds) or on real speech, FSDD (`dataset="fsdd"`, fold k holds out the
k-th speaker in alphabetical order).

Each run trains xResNet18 from scratch on the training folds and records the final-epoch
validation accuracy on `fold`. Each finished run is one record in `OUT/runs/` (see `store.py`);
`OUT/results.csv`, `OUT/summary.md` and `OUT/summary.png` are rebuilt from the records after
every run, and by `--summarize`. Any number of processes may work on one OUT folder (one per
device with `--devices`, one per job-array task with `--shard`, or the same command started
twice): runs are claimed while trained, so each ends up recorded exactly once. Running the same
command again skips finished runs; an interrupted run is redone from scratch.

The normalizations and how each run is built are in `norms.py` (`NORMS`, `norm_setup`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..datasets.esc50 import PRESETS, get_settings
from ..datasets.validate import validate_esc50
from .fingerprint import describe_changes, esc50_fingerprint, files_fingerprint
from .norms import NORMS, check_norms, norm_setup
from .store import RunStore

__all__ = ["ExperimentConfig", "Prepared", "prepare", "run_experiment", "grid_runs", "run_id", "train_one",
           "summarize_out", "main", "parse_args"]

FORMAT = 2  # of OUT folders: one record per run in runs/ (1: a results.csv rewritten in place)
POLL_SECONDS = 2.0  # how often a process waiting for runs claimed by others looks again
#: The datasets the experiment runs on, with their default preset.
DATASETS = {"esc50": "quick", "fsdd": "fsdd"}
CLI_SCRIPT = "experiments/esc50_normalization.py"  # how `command` in run records names the CLI


@dataclass
class ExperimentConfig:
    """What an experiment runs. `dataset`: "esc50" or "fsdd". `data`: the dataset's folder (ESC-50
    layout, or FSDD's folder holding `recordings/`), "synthetic" (ESC-50 only: generated into
    `OUT/synthetic-esc50`) or "download" (fastai `untar_data`). `preset`: None for the dataset's
    default ("quick" for ESC-50, "fsdd" for FSDD). `overrides` are ESC50Settings fields.
    `shard` (I, N): this process takes every N-th run of the grid from the I-th on (1 <= I <= N).
    `devices`: one worker process per entry ("cuda:0", "cpu", ...; empty: this process, default
    device). `summarize`: only rebuild results.csv / summary.md / summary.png from the records.
    `command`: the command line that started it, kept in each run's record (the CLI sets it)."""

    data: str | None
    out: Path
    folds: list[int] = field(default_factory=lambda: [1])
    seeds: list[int] = field(default_factory=lambda: [0])
    norms: list[str] = field(default_factory=lambda: list(NORMS))
    preset: str | None = None
    epochs: int | None = None
    stats_fraction: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)
    synthetic_classes: int = 10
    synthetic_clips: int = 20
    shard: tuple[int, int] = (1, 1)
    devices: list[str] = field(default_factory=list)
    summarize: bool = False
    dataset: str = "esc50"
    command: str | None = None

    def fingerprint(self, settings: dict[str, Any]) -> dict[str, Any]:
        """What must match for results in one OUT folder to be comparable (the grid may grow); the
        data's content fingerprint is added by `prepare`. The data folder's path is not part of it:
        hosts may mount the same data at different paths."""
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "preset": self.preset,
            "settings": settings,
            "stats_fraction": self.stats_fraction,
            "synthetic": [self.synthetic_classes, self.synthetic_clips] if self.data == "synthetic" else None,
        }


@dataclass
class Prepared:
    """What `prepare` found: the data folder `root`, the `settings` (ESC50Settings fields that
    decide results, with epochs), `epochs`, the `experiment` identity written to
    `OUT/experiment.json` (with `data_fingerprint`) and its short digest `experiment_id`."""

    root: Path
    settings: dict[str, Any]
    epochs: int
    experiment: dict[str, Any]
    experiment_id: str


def _resolve_data(cfg: ExperimentConfig) -> Path:
    if cfg.dataset == "fsdd":
        from ..datasets.fsdd import download_fsdd, resolve_fsdd

        if cfg.data == "synthetic":
            raise ValueError("--data synthetic generates ESC-50-layout data; with --dataset fsdd give FSDD's folder or 'download'")
        return download_fsdd() if cfg.data == "download" else resolve_fsdd(cfg.data)
    if cfg.data == "synthetic":
        from ..datasets.synthetic import make_synthetic_esc50

        return make_synthetic_esc50(cfg.out / "synthetic-esc50", n_classes=cfg.synthetic_classes, clips_per_class=cfg.synthetic_clips)
    if cfg.data == "download":
        from ..datasets.esc50 import download_esc50

        return download_esc50()
    return Path(cfg.data)


def _check_inputs(cfg: ExperimentConfig, root: Path) -> None:
    "Everything that can be checked before training: unknown norms, folds, the dataset itself."
    check_norms(cfg.norms)
    if not cfg.folds or not cfg.seeds or not cfg.norms:
        raise ValueError("folds, seeds and norms must each list at least one value")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {cfg.epochs}")
    if cfg.dataset == "fsdd":
        from ..audio.check import check_audio_files
        from ..datasets.fsdd import FSDD_SPEAKERS, fsdd_table

        df = fsdd_table(root)
        missing = sorted(set(cfg.folds) - set(df["fold"]))
        if missing:
            raise ValueError(f"fold(s) {missing} not in {root / 'recordings'}: folds are 1-{len(FSDD_SPEAKERS)}, one per speaker "
                             f"{list(FSDD_SPEAKERS)}, and these have no recordings")
        check_audio_files([root / name for name in df["filename"]])
        return
    # The table, every file and every requested fold, by the same rules as esc50_dataloaders.
    validate_esc50(root, folds=cfg.folds, progress=False).raise_if_errors()


def _digest(obj: Any, length: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


def _stats_path(out: Path, norm: str, fold: int, settings: dict[str, Any], fraction: float, data_fingerprint: str) -> Path:
    "One statistics file per fold, normalization, settings and data content, shared by all seeds."
    key = {"settings": settings, "fraction": fraction, "data_fingerprint": data_fingerprint}
    return out / "stats" / f"fold{fold}-{norm}-{_digest(key)}.npz"


def run_id(norm: str, fold: int, seed: int, experiment_id: str) -> str:
    "The deterministic name of a run's record and claim, e.g. 'global-fold1-seed0-3f2a9c01b7e4'."
    return f"{norm}-fold{fold}-seed{seed}-{experiment_id}"


def grid_runs(cfg: ExperimentConfig) -> list[tuple[str, int, int]]:
    """The (norm, fold, seed) runs of this process: the whole grid in a fixed order (folds, then
    seeds, then norms), every N-th from the I-th on for `shard=(I, N)`. The N shards are disjoint
    and together the grid."""
    index, count = cfg.shard
    runs = [(n, f, s) for f in cfg.folds for s in cfg.seeds for n in cfg.norms]
    return runs[index - 1 :: count]


def _data_fingerprint(dataset: str, root: Path) -> dict:
    if dataset == "fsdd":
        from ..datasets.fsdd import fsdd_table

        return files_fingerprint(root, fsdd_table(root)["filename"])
    return esc50_fingerprint(root)


def train_one(root: Path, norm: str, fold: int, seed: int, preset: str = "quick", epochs: int | None = None,
              stats_path: Path | None = None, stats_fraction: float = 1.0, device: str | None = None,
              dataset: str = "esc50", **overrides) -> dict[str, Any]:
    """Train one run and return its result row (final-epoch validation accuracy in [0, 1]).

    Seeds python, NumPy and torch (fastai `set_seed(seed, reproducible=True)`) before building the
    data, so the shuffling, crops and initialization of a run are reproducible. `device`: where
    batches and the model go (None: fastai's default device).
    """
    from fastai.torch_core import set_seed

    from ..datasets.esc50 import esc50_dataloaders
    from ..datasets.fsdd import fsdd_dataloaders
    from ..learner import audio_learner

    setup = norm_setup(norm, stats_fraction, stats_path, augment=get_settings(preset, **overrides).augment)
    overrides = {**overrides, **setup.settings}
    settings = get_settings(preset, **overrides)
    n_epochs = epochs or settings.epochs
    set_seed(seed, reproducible=True)
    dataloaders = fsdd_dataloaders if dataset == "fsdd" else esc50_dataloaders
    dls = dataloaders(root, valid_fold=fold, preset=preset, batch_tfms=setup.batch_tfms, device=device, **overrides)
    learn = audio_learner(dls, cbs=setup.cbs, **setup.learner_kwargs)
    start = time.perf_counter()
    if settings.lr is None:
        learn.fit_one_cycle(n_epochs)
    else:
        learn.fit_one_cycle(n_epochs, lr_max=settings.lr)
    seconds = time.perf_counter() - start
    names = list(learn.recorder.metric_names[1:-1])  # drop "epoch" and "time"
    last = dict(zip(names, learn.recorder.values[-1], strict=True))
    return {
        "norm": norm,
        "fold": fold,
        "seed": seed,
        "epochs": n_epochs,
        "accuracy": float(last["accuracy"]),
        "valid_loss": float(last["valid_loss"]),
        "train_loss": float(last["train_loss"]),
        "preset": preset,
        "n_train": len(dls.train_ds),
        "n_valid": len(dls.valid_ds),
        "n_classes": dls.c,
        "device": str(dls.device),
        "seconds": round(seconds, 2),
    }


def _refuse_old_format(out: Path) -> None:
    path = out / "experiment.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    if (old is not None and old.get("format") != FORMAT) or (old is None and (out / "results.csv").is_file()):
        raise ValueError(
            f"{out} holds results in an older format (one results.csv rewritten in place, no per-run records in "
            f"{out / 'runs'}); this version keeps one record per run and derives results.csv from them. "
            "Use another --out folder, or move this one aside (its results.csv and summary stay readable)"
        )


def _check_experiment(out: Path, expected: dict[str, Any]) -> None:
    "Refuse an OUT folder whose experiment.json differs from `expected` in a key both have."
    path = out / "experiment.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    diff = sorted(k for k in set(old) & set(expected) if old[k] != expected[k])
    if "data_fingerprint" in diff:
        old_files = json.loads((out / "data-files.json").read_text()) if (out / "data-files.json").is_file() else {}
        new_files = expected.get("_files", {})
        raise ValueError(
            f"the data differ from those of the runs in {out} ({describe_changes(old_files, new_files)}); results of "
            "different data are never mixed: use another --out folder, or restore the data"
        )
    if diff:
        raise ValueError(
            f"{out} holds results of another experiment (differing: {', '.join(diff)}; see {path}); "
            "use another --out folder, or delete it to start over"
        )


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Check everything that can be checked before training, resolve the data folder and
    fingerprint its content, and write (or check) `OUT/experiment.json`.

    Raises ValueError / TypeError / FileNotFoundError naming the problem: unknown preset, norm,
    setting, fold, shard or device; a broken dataset; an OUT folder of another experiment, of other
    data (naming the changed files) or of the older format.
    """
    cfg.out = Path(cfg.out)
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; expected one of {list(DATASETS)}")
    cfg.preset = cfg.preset or DATASETS[cfg.dataset]
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)}")
    check_norms(cfg.norms)  # before generating or downloading anything
    index, count = cfg.shard
    if not 1 <= index <= count:
        raise ValueError(f"shard must be I/N with 1 <= I <= N, got {index}/{count}")
    for device in cfg.devices:
        if device != "cpu" and not device.startswith(("cuda", "mps", "xpu")):
            raise ValueError(f"unknown device {device!r}; expected e.g. cuda:0, cuda:1 or cpu")
    settings = get_settings(cfg.preset, **cfg.overrides)
    epochs = cfg.epochs or settings.epochs
    settings_dict = {**settings.as_dict(), "epochs": epochs}
    for speed_only in ("num_workers", "cache"):  # how fast, not what is computed
        settings_dict.pop(speed_only)
    identity = cfg.fingerprint(settings_dict)
    _refuse_old_format(cfg.out)
    _check_experiment(cfg.out, identity)  # before generating data into OUT
    if cfg.data != "synthetic":
        _check_inputs(cfg, _resolve_data(cfg))
    root = _resolve_data(cfg)
    if cfg.data == "synthetic":
        _check_inputs(cfg, root)
    data = _data_fingerprint(cfg.dataset, root)
    identity["data_fingerprint"] = data["digest"]
    _check_experiment(cfg.out, {**identity, "_files": data})
    if not (cfg.out / "experiment.json").is_file():
        # Several processes may start at once: each writes the same files; a different
        # experiment started at the same moment is caught by reading back.
        atomic_write_text(cfg.out / "data-files.json", json.dumps(data, indent=1, sort_keys=True))
        atomic_write_text(cfg.out / "experiment.json", json.dumps(identity, indent=2, sort_keys=True))
        _check_experiment(cfg.out, {**identity, "_files": data})
    return Prepared(root, settings_dict, epochs, identity, _digest(identity))


def _title(experiment: dict[str, Any]) -> str:
    if experiment.get("dataset") == "fsdd":
        data = "FSDD (real speech, speaker held out)"
    else:
        data = "synthetic ESC-50" if experiment.get("synthetic") else "ESC-50"
    return f"{data}, preset {experiment['preset']}, {experiment['settings']['epochs']} epochs"


def _versions() -> dict[str, str]:
    import fastai
    import torch

    from .. import __version__
    from .._compat import import_torchaudio

    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchaudio": import_torchaudio().__version__,
            "fastai": fastai.__version__, "fastspecnorm": __version__}


def _train_and_record(cfg: ExperimentConfig, prep: Prepared, store: RunStore, key: tuple[str, int, int],
                      device: str | None, log) -> None:
    norm, fold, seed = key
    stats_path = None
    if NORMS[norm].red_dims:
        stats_path = _stats_path(cfg.out, norm, fold, prep.settings, cfg.stats_fraction, prep.experiment["data_fingerprint"])
    row = train_one(prep.root, norm, fold, seed, cfg.preset, prep.epochs, stats_path, cfg.stats_fraction, device,
                    dataset=cfg.dataset, **cfg.overrides)
    # The table holds only what the seed determines, so a resumed grid reproduces it exactly;
    # wall-clock time, versions and host go to the record's info.
    info = {"seconds": row.pop("seconds"), "host": socket.gethostname(), "pid": os.getpid(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **_versions()}
    if cfg.command:
        info["command"] = cfg.command
    store.save(run_id(norm, fold, seed, prep.experiment_id), row, info)
    log(f"    {norm} fold {fold} seed {seed}: accuracy {row['accuracy']:.4f} in {info['seconds']:.0f} s")
    store.rebuild(list(NORMS), _title(prep.experiment))


def _work(cfg: ExperimentConfig, prep: Prepared, device: str | None, log) -> None:
    """Train every run of this process's grid not yet recorded. Runs claimed by other processes
    are skipped, then waited for: their claims are taken over if those processes die, so the call
    returns when every run of its grid is recorded (by whichever process)."""
    store = RunStore(cfg.out)
    runs = grid_runs(cfg)
    pending = [k for k in runs if not store.is_done(run_id(*k, prep.experiment_id))]
    shard = f" (shard {cfg.shard[0]}/{cfg.shard[1]})" if cfg.shard != (1, 1) else ""
    log(f"{len(runs)} runs in the grid{shard}, {len(runs) - len(pending)} already recorded in {store.runs_dir}, "
        f"{len(pending)} to run")
    while pending:
        waiting = []
        for key in pending:
            rid = run_id(*key, prep.experiment_id)
            with store.claimed(rid) as mine:
                if not mine:
                    waiting.append(key)
                elif not store.is_done(rid):  # another process may have finished it meanwhile
                    log(f"norm={key[0]} fold={key[1]} seed={key[2]} preset={cfg.preset} epochs={prep.epochs} "
                        f"device={device or 'default'}")
                    _train_and_record(cfg, prep, store, key, device, log)
        pending = [k for k in waiting if not store.is_done(run_id(*k, prep.experiment_id))]
        if pending:
            log(f"{len(pending)} run(s) being trained by other processes; waiting for them")
            time.sleep(POLL_SECONDS)


def _device_worker(cfg: ExperimentConfig, prep: Prepared, device: str) -> None:
    "Entry point of one `--devices` worker process (started with the 'spawn' method)."
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # this process's own device, for anything using the current one
    _work(cfg, prep, device, lambda message: print(f"[{device} pid {os.getpid()}] {message}", flush=True))


def run_experiment(cfg: ExperimentConfig, log=print) -> Path:
    """Run every (norm, fold, seed) of this process's grid not yet recorded in `cfg.out`; returns
    the path of `results.csv`.

    Bad input raises before any training (see `prepare`). With several `cfg.devices`, one worker
    process per device pulls runs from the grid. Each finished run is recorded atomically and the
    summary rebuilt, so an interruption loses at most the runs in progress.
    """
    prep = prepare(cfg)
    if len(cfg.devices) > 1:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: safe with CUDA and threads
        workers = [context.Process(target=_device_worker, args=(cfg, prep, d), name=f"worker {d}") for d in cfg.devices]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [f"{w.name} (exit code {w.exitcode})" for w in workers if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"{', '.join(failed)} failed (messages above); run the same command again to resume")
    else:
        _work(cfg, prep, cfg.devices[0] if cfg.devices else None, log)
    store = RunStore(cfg.out)
    store.rebuild(list(NORMS), _title(prep.experiment))
    log(f"results: {store.results_path}\nsummary: {cfg.out / 'summary.md'}, {cfg.out / 'summary.png'}")
    return store.results_path


def summarize_out(out: str | Path, log=print) -> Path:
    """Rebuild `out/results.csv`, `summary.md` and `summary.png` from the finished runs' records,
    without training; idempotent. Raises FileNotFoundError / ValueError when `out` holds no
    experiment or no finished run, or is of the older format."""
    out = Path(out)
    if not (out / "experiment.json").is_file() and not (out / "results.csv").is_file():
        raise FileNotFoundError(f"{out} holds no experiment (no experiment.json); pass the --out folder of a grid")
    _refuse_old_format(out)
    store = RunStore(out)
    rows = store.rebuild(list(NORMS), _title(json.loads((out / "experiment.json").read_text())))
    if not len(rows):
        raise ValueError(f"{out} has no finished run yet (no record in {store.runs_dir}); nothing to summarize")
    log(f"{len(rows)} runs: {store.results_path}, {out / 'summary.md'}, {out / 'summary.png'}")
    return store.results_path


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name.strip(), parsed


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects I/N such as 2/4, got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return index, count


def parse_args(argv=None) -> ExperimentConfig:
    p = argparse.ArgumentParser(
        prog="esc50_normalization",
        description="Compare spectrogram normalizations on ESC-50 (official folds) or FSDD (speaker folds), xResNet18 from scratch.",
    )
    p.add_argument("--dataset", default="esc50", choices=sorted(DATASETS),
                   help="esc50 (official folds; default) or fsdd (real speech: fold k holds out the k-th speaker alphabetically)")
    p.add_argument("--data", help='the dataset folder (ESC-50 layout, or FSDD holding recordings/), "synthetic" '
                                  '(generated ESC-50 layout) or "download" (fastai untar_data)')
    p.add_argument("--out", required=True, type=Path, help="output folder: runs/, results.csv, summary.md, summary.png, stats/")
    p.add_argument("--folds", type=int, nargs="+", default=[1], help="validation folds (default: 1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--norms", nargs="+", default=list(NORMS), help=f"normalizations, some of {' '.join(NORMS)}")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="settings preset (default: quick for esc50, fsdd for fsdd)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="one-cycle max learning rate (default: fastai's)")
    p.add_argument("--bs", type=int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader worker processes")
    p.add_argument("--stats-fraction", type=float, default=1.0, help="share of training batches for global/channel statistics")
    p.add_argument("--set", dest="overrides", type=_parse_override, action="append", default=[], metavar="NAME=VALUE",
                   help="override one ESC-50 setting, e.g. --set n_mels=128 (repeatable)")
    p.add_argument("--synthetic-classes", type=int, default=10, help="classes in the generated dataset (--data synthetic)")
    p.add_argument("--synthetic-clips", type=int, default=20, help="clips per class in the generated dataset")
    p.add_argument("--shard", type=_parse_shard, default=(1, 1), metavar="I/N",
                   help="run the I-th of N disjoint slices of the grid (job arrays), e.g. 3/8")
    p.add_argument("--devices", nargs="+", default=[], metavar="DEVICE",
                   help="one worker process per listed device on this machine, e.g. cuda:0 cuda:1 (or cpu cpu)")
    p.add_argument("--augment", action="store_true",
                   help="add the train-only augmentations (SpecAugment masks, mixup) to the preset (--set augment=true)")
    p.add_argument("--summarize", action="store_true",
                   help="only rebuild results.csv, summary.md and summary.png in --out from the finished runs")
    a = p.parse_args(argv)
    if a.data is None and not a.summarize:
        p.error("--data is required (except with --summarize)")
    try:
        check_norms(a.norms)
    except ValueError as e:
        p.error(str(e))
    overrides = dict(a.overrides)
    for name, value in (("lr", a.lr), ("bs", a.bs), ("num_workers", a.num_workers)):
        if value is not None:
            overrides[name] = value
    if a.augment:
        overrides["augment"] = True
    return ExperimentConfig(
        data=a.data, out=a.out, folds=a.folds, seeds=a.seeds, norms=a.norms, preset=a.preset, epochs=a.epochs,
        stats_fraction=a.stats_fraction, overrides=overrides, synthetic_classes=a.synthetic_classes,
        synthetic_clips=a.synthetic_clips, shard=a.shard, devices=a.devices, summarize=a.summarize, dataset=a.dataset,
    )


def main(argv=None) -> int:
    """Command-line entry point. Bad input exits with status 2 and a message, before any training;
    a failed `--devices` worker with status 1."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        cfg = parse_args(args)
        cfg.command = shlex.join(["python", CLI_SCRIPT, *args])
        if cfg.summarize:
            summarize_out(cfg.out)
            return 0
        prepare(cfg)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        run_experiment(cfg)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
