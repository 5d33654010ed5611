"""The ESC-50 normalization comparison: a resumable grid of runs over norms x folds x seeds.

Each run trains xResNet18 from scratch on the training folds and records the final-epoch
validation accuracy on `fold`. Results are appended atomically to `OUT/results.csv` (one row per
finished run) and summarized after every run in `OUT/summary.md` and `OUT/summary.png`. Running
the same command again skips finished runs; a run that was interrupted is redone from scratch.

The normalizations and how each run is built are in `norms.py` (`NORMS`, `norm_setup`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..datasets.esc50 import PRESETS, get_settings
from ..datasets.validate import validate_esc50
from .norms import NORMS, check_norms, norm_setup
from .results import ResultsStore, write_summary

__all__ = ["ExperimentConfig", "prepare", "run_experiment", "train_one", "main", "parse_args"]


@dataclass
class ExperimentConfig:
    """What an experiment runs. `data` is an ESC-50-layout folder, "synthetic" (generated into
    `OUT/synthetic-esc50`) or "download" (fastai `untar_data`). `overrides` are ESC50Settings fields."""

    data: str
    out: Path
    folds: list[int] = field(default_factory=lambda: [1])
    seeds: list[int] = field(default_factory=lambda: [0])
    norms: list[str] = field(default_factory=lambda: list(NORMS))
    preset: str = "quick"
    epochs: int | None = None
    stats_fraction: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)
    synthetic_classes: int = 10
    synthetic_clips: int = 20

    def fingerprint(self, settings: dict[str, Any]) -> dict[str, Any]:
        "What must match for results in one OUT folder to be comparable (the grid may grow)."
        return {
            "data": self.data,
            "preset": self.preset,
            "settings": settings,
            "stats_fraction": self.stats_fraction,
            "synthetic": [self.synthetic_classes, self.synthetic_clips] if self.data == "synthetic" else None,
        }


def _resolve_data(cfg: ExperimentConfig) -> Path:
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
    # The table, every file and every requested fold, by the same rules as esc50_dataloaders.
    validate_esc50(root, folds=cfg.folds, progress=False).raise_if_errors()


def _stats_path(out: Path, norm: str, fold: int, settings: dict[str, Any], fraction: float) -> Path:
    "One statistics file per fold, normalization and settings, shared by all seeds."
    key = json.dumps({"settings": settings, "fraction": fraction}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return out / "stats" / f"fold{fold}-{norm}-{digest}.npz"


def train_one(root: Path, norm: str, fold: int, seed: int, preset: str = "quick", epochs: int | None = None,
              stats_path: Path | None = None, stats_fraction: float = 1.0, **overrides) -> dict[str, Any]:
    """Train one run and return its result row (final-epoch validation accuracy in [0, 1]).

    Seeds python, NumPy and torch (fastai `set_seed(seed, reproducible=True)`) before building the
    data, so the shuffling, crops and initialization of a run are reproducible.
    """
    from fastai.torch_core import set_seed

    from ..datasets.esc50 import esc50_dataloaders, esc50_learner

    setup = norm_setup(norm, stats_fraction, stats_path, augment=get_settings(preset, **overrides).augment)
    overrides = {**overrides, **setup.settings}
    settings = get_settings(preset, **overrides)
    n_epochs = epochs or settings.epochs
    set_seed(seed, reproducible=True)
    dls = esc50_dataloaders(root, valid_fold=fold, preset=preset, batch_tfms=setup.batch_tfms, **overrides)
    learn = esc50_learner(dls, cbs=setup.cbs, **setup.learner_kwargs)
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


def _check_fingerprint(out: Path, fingerprint: dict[str, Any]) -> None:
    path = out / "experiment.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != fingerprint:
            diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            raise ValueError(
                f"{out} holds results of another experiment (differing: {', '.join(diff)}; see {path}); "
                "use another --out folder, or delete it to start over"
            )
        return
    atomic_write_text(path, json.dumps(fingerprint, indent=2, sort_keys=True))


def prepare(cfg: ExperimentConfig) -> tuple[Path, dict[str, Any], int]:
    """Check everything that can be checked before training and resolve the data folder.

    Returns `(root, settings, epochs)`. Raises ValueError / TypeError / FileNotFoundError naming the
    problem: unknown preset, norm, setting or fold; a broken dataset; an OUT folder of another
    experiment.
    """
    cfg.out = Path(cfg.out)
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)}")
    check_norms(cfg.norms)  # before generating or downloading anything
    settings = get_settings(cfg.preset, **cfg.overrides)
    epochs = cfg.epochs or settings.epochs
    settings_dict = {**settings.as_dict(), "epochs": epochs}
    for speed_only in ("num_workers", "cache"):  # how fast, not what is computed
        settings_dict.pop(speed_only)
    if cfg.data != "synthetic":
        _check_inputs(cfg, _resolve_data(cfg))
    _check_fingerprint(cfg.out, cfg.fingerprint(settings_dict))
    root = _resolve_data(cfg)
    if cfg.data == "synthetic":
        _check_inputs(cfg, root)
    return root, settings_dict, epochs


def run_experiment(cfg: ExperimentConfig, log=print) -> Path:
    """Run every (norm, fold, seed) not yet in `cfg.out/results.csv`; returns the results path.

    Bad input raises before any training (see `prepare`). Each finished run is appended atomically
    and the summary rewritten, so an interruption loses at most the run in progress.
    """
    root, settings_dict, epochs = prepare(cfg)
    store = ResultsStore(cfg.out / "results.csv")
    done = store.done()
    grid = [(n, f, s) for f in cfg.folds for s in cfg.seeds for n in cfg.norms]
    todo = [k for k in grid if k not in done]
    log(f"{len(grid)} runs in the grid, {len(grid) - len(todo)} already in {store.path}, {len(todo)} to run")
    title = _title(cfg, epochs)
    for i, (norm, fold, seed) in enumerate(todo, 1):
        log(f"[{i}/{len(todo)}] norm={norm} fold={fold} seed={seed} preset={cfg.preset} epochs={epochs}")
        stats_path = _stats_path(cfg.out, norm, fold, settings_dict, cfg.stats_fraction) if NORMS[norm].red_dims else None
        row = train_one(root, norm, fold, seed, cfg.preset, epochs, stats_path, cfg.stats_fraction, **cfg.overrides)
        _write_run_log(cfg.out, row)
        # results.csv holds only what the seed determines, so a resumed grid reproduces it exactly;
        # wall-clock time and versions go to the run's log in OUT/runs/.
        store.append({k: v for k, v in row.items() if k != "seconds"})
        log(f"    accuracy {row['accuracy']:.4f} in {row['seconds']:.0f} s")
        write_summary(store.rows(), cfg.out, baseline="none", order=cfg.norms, title=title)
    if not todo and len(store):
        write_summary(store.rows(), cfg.out, baseline="none", order=cfg.norms, title=title)
    log(f"results: {store.path}\nsummary: {cfg.out / 'summary.md'}, {cfg.out / 'summary.png'}")
    return store.path


def _write_run_log(out: Path, row: dict[str, Any]) -> None:
    import fastai
    import torch

    from .. import __version__

    log = {**row, "python": sys.version.split()[0], "torch": torch.__version__, "fastai": fastai.__version__,
           "fastspecnorm": __version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = out / "runs" / f"{row['norm']}-fold{row['fold']}-seed{row['seed']}.json"
    atomic_write_text(path, json.dumps(log, indent=2))


def _title(cfg: ExperimentConfig, epochs: int) -> str:
    data = "synthetic ESC-50" if cfg.data == "synthetic" else "ESC-50"
    return f"{data}, preset {cfg.preset}, {epochs} epochs"


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name.strip(), parsed


def parse_args(argv=None) -> ExperimentConfig:
    p = argparse.ArgumentParser(
        prog="esc50_normalization",
        description="Compare spectrogram normalizations on ESC-50 (xResNet18 from scratch, official folds).",
    )
    p.add_argument("--data", required=True, help='ESC-50-layout folder, "synthetic" (generated) or "download" (fastai untar_data)')
    p.add_argument("--out", required=True, type=Path, help="output folder: results.csv, summary.md, summary.png, stats/")
    p.add_argument("--folds", type=int, nargs="+", default=[1], help="validation folds (default: 1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--norms", nargs="+", default=list(NORMS), help=f"normalizations, some of {' '.join(NORMS)}")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="settings preset (default: quick)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="one-cycle max learning rate (default: fastai's)")
    p.add_argument("--bs", type=int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader worker processes")
    p.add_argument("--stats-fraction", type=float, default=1.0, help="share of training batches for global/channel statistics")
    p.add_argument("--set", dest="overrides", type=_parse_override, action="append", default=[], metavar="NAME=VALUE",
                   help="override one ESC-50 setting, e.g. --set n_mels=128 (repeatable)")
    p.add_argument("--synthetic-classes", type=int, default=10, help="classes in the generated dataset (--data synthetic)")
    p.add_argument("--synthetic-clips", type=int, default=20, help="clips per class in the generated dataset")
    p.add_argument("--augment", action="store_true",
                   help="add the train-only augmentations (SpecAugment masks, mixup) to the preset (--set augment=true)")
    a = p.parse_args(argv)
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
        synthetic_clips=a.synthetic_clips,
    )


def main(argv=None) -> int:
    "Command-line entry point. Bad input exits with status 2 and a message, before any training."
    try:
        cfg = parse_args(argv)
        prepare(cfg)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_experiment(cfg)
    return 0
