"""Preparing a comparison grid: its options (`ExperimentConfig`), and every check that can be made
before training, made once (`check_config`, `prepare`)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .._groups import group_pattern
from .._io import atomic_write_text, file_lock, read_json
from .._options import count, fold_value, fraction, option, points, positive_float, positive_int, shard_index
from ..datasets.sources import RECIPES, Recipe, SourceSpec, check_source_files, draw_folds, read_source
from ..presets import AUGMENTS, DEFAULT_SAMPLE_RATE, MAX_EPOCHS, PRECISIONS, PRESETS, get_preset
from .fingerprint import describe_changes, file_stats, files_fingerprint
from .log import RunLog
from .norms import NORMS, check_norms

__all__ = [
    "FORMAT",
    "ExperimentConfig",
    "SettingOptions",
    "Prepared",
    "check_config",
    "prepare",
    "data_fingerprint",
    "data_unchanged",
    "experiment_title",
]

FORMAT = 2  # of OUT folders: one record per run in runs/ (1: a results.csv rewritten in place)

# The stored JSON files of an OUT folder, read through the one reader, naming the file and the fix.
_read_json_file = functools.partial(read_json, fix="restore it, or delete it if the folder holds no finished run")


@dataclass(kw_only=True)
class ExperimentConfig(SourceSpec):
    """What a comparison runs: the command line's options, each declared once, here and in
    `SourceSpec` (the data options `data`, `dataset`, `csv`, `path`, `fn_col`, `label_col`,
    `fold_col`, `group_col`, `k`, `fold_seed`, inherited; `data` may also be "synthetic", a set
    generated in `OUT/synthetic-<recipe>` in the recipe's layout (ESC-50's by default), or "download").
    `fastspecnorm compare` offers every field as an option (`--stats-fraction`), `compare()` as a keyword.

    Args:
        out: the output folder.
        folds: the fold values to validate on (numbers, or names such as speakers); None: all.
        seeds: the grid's seeds.
        norms: the grid's normalizations (names of `NORMS`).
        preset: a name of `PRESETS` (None: the dataset's default).
        epochs: epochs per run (None: the preset's).
        repeats: k-fold partitions to draw (repeated k-fold) for sources without folds of their own.
        stats_fraction: share of training batches for dataset statistics, in (0, 1].
        refresh_stats: compute again, with a warning, a statistics file in `OUT/stats` made from other
            training clips or settings, instead of refusing it; not part of the experiment's identity.
        overrides: `AudioSettings` or `Training` fields to override (e.g. `{"bs": 8}`; `--set`, `--bs`, ...).
        synthetic_classes: classes of the generated dataset.
        synthetic_clips: clips per class of the generated dataset.
        shard: (I, N): this process takes every N-th run of the grid from the I-th on.
        devices: one worker process per entry ("cuda:0", "cpu"; empty: this process).
        rope: the region of practical equivalence of the verdicts, in accuracy points.
        drop_rare_classes: leave out the classes that a fold of the grid leaves without training
            clips (recorded in the identity as `dropped_classes`); False refuses such data.
        summarize: only rebuild results.csv / summary.md / summary.png from the records.
        command: the command line, kept in each run's record.
    """

    out: Path = option(help="output folder: runs/, results.csv, summary.md, summary.png, stats/", parse=Path)
    folds: list | None = option(None, help="fold values to validate on (default: all)", parse=fold_value, nargs="+")
    seeds: list[int] = option(help="seeds (default: 0)", parse=int, nargs="+", default_factory=lambda: [0])
    norms: list[str] = option(help=f"normalizations, some of {' '.join(NORMS)} (default: all)", nargs="+",
                              default_factory=lambda: list(NORMS))  # fmt: skip
    preset: str | None = option(None, help="settings preset (default: quick for ESC-50, fsdd for FSDD, own for your data)",
                                choices=lambda: sorted(PRESETS))  # fmt: skip
    epochs: int | None = option(None, help="epochs per run (default: the preset's)", parse=positive_int)
    repeats: int = option(1, help="draw R different k-fold partitions (repeated k-fold; sources without folds only; default: 1)",
                          parse=positive_int, metavar="R")  # fmt: skip
    stats_fraction: float = option(1.0, help="share of training batches for global/channel statistics", parse=fraction)
    refresh_stats: bool = option(False, help="compute saved statistics again (with a warning) when they were made from other "
                                 "training clips or settings, instead of refusing them; not part of the experiment")  # fmt: skip
    overrides: dict[str, Any] = option(help="AudioSettings or Training fields to override", default_factory=dict, flag=False)
    synthetic_classes: int = option(10, help="classes in the generated dataset (--data synthetic)", parse=positive_int)
    synthetic_clips: int = option(20, help="clips per class in the generated dataset", parse=positive_int)
    shard: tuple[int, int] = option((1, 1), help="run the I-th of N disjoint slices of the grid (job arrays), e.g. 3/8",
                                    parse=shard_index, metavar="I/N")  # fmt: skip
    devices: list[str] = option(help="one worker process per listed device on this machine, e.g. cuda:0 cuda:1 (or cpu cpu)",
                                nargs="+", metavar="DEVICE", default_factory=list)  # fmt: skip
    rope: float = option(1.0, help="the verdicts' region of practical equivalence, in accuracy points (default: 1.0)",
                         parse=points, metavar="POINTS")  # fmt: skip
    drop_rare_classes: bool = option(
        False,
        help="leave out the classes that some fold leaves without training clips (named, and "
        "recorded in experiment.json); without it such data are refused",
    )
    summarize: bool = option(False, help="only rebuild results.csv, summary.md and summary.png in --out")
    command: str | None = option(None, help="the command line, kept in each run's record", flag=False)


@dataclass
class SettingOptions:
    """The `AudioSettings` and `Training` fields the command line and `compare()` offer by name (`--bs 8`, `bs=8`);
    any other is set with `--set NAME=VALUE` (`overrides=`). Each lands in `ExperimentConfig.overrides`."""

    lr: float | None = option(None, help="one-cycle max learning rate (default: fastai's)", parse=positive_float)
    bs: int | None = option(None, help="batch size (default: the preset's)", parse=positive_int)
    num_workers: int | None = option(None, help="DataLoader worker processes", parse=count)
    augment: str | None = option(None, help="add train-only augmentations to the preset: spec (SpecAugment masks and mixup, "
                                 "the default), waveform (gain, noise, time shift) or all", nargs="?",
                                 choices=lambda: [a for a in AUGMENTS if isinstance(a, str)], metavar="KIND")  # fmt: skip
    precision: str | None = option(None, help="fp32, bf16 (autocast with channels_last, CPU or CUDA) or auto (bf16 where the "
                                   "device computes it natively); part of the experiment's identity (default: the preset's, "
                                   "fp32)", choices=lambda: list(PRECISIONS))  # fmt: skip


@dataclass
class Prepared:
    """What `prepare` found and decided.

    Attributes:
        source: the `DataSource`, folds included.
        settings: the resolved `AudioSettings` of every run.
        settings_dict: the settings and training that decide results, as in experiment.json.
        training: the `Training` of every run (epochs, learning rate, augmentations).
        folds: the fold numbers of the grid.
        experiment: the identity written to `OUT/experiment.json`.
        experiment_id: its short digest (part of every run id).
        data: the data fingerprint (`files_fingerprint`).
        sources: repeat -> the source with that repeat's folds (repeat 0 is `source`).
        data_stats: the data files' `file_stats`, taken before they were hashed.
        facts: each clip's header facts (`check_source_files`: frames, samplerate, channels).
    """

    source: Any
    settings: Any
    settings_dict: dict[str, Any]
    training: Any
    folds: list[int]
    experiment: dict[str, Any]
    experiment_id: str
    data: dict = field(default_factory=dict, repr=False)
    sources: dict = field(default_factory=dict, repr=False)
    data_stats: dict = field(default_factory=dict, repr=False)
    facts: dict = field(default_factory=dict, repr=False)

    @property
    def repeats(self) -> list[int]:
        "The repeats of the grid: [0] unless folds were drawn more than once."
        return sorted(self.sources) or [0]

    def source_for(self, repeat: int):
        """The `DataSource` whose table holds the folds of `repeat`.

        Args:
            repeat: the k-fold partition (0 for fixed folds).
        """
        return self.sources.get(repeat, self.source)

    @property
    def root(self) -> Path:
        "The dataset folder the table's file names are relative to (`source.root`)."
        return self.source.root


def digest(obj: Any, length: int = 12) -> str:
    "The first `length` hex digits of the SHA-256 of `obj` as JSON with sorted keys."
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


def check_config(cfg: ExperimentConfig) -> None:
    """Check the arguments alone, before any file is read or written.

    Args:
        cfg: the comparison's options.

    Raises:
        TypeError: an unknown setting name in `cfg.overrides` (naming it and the known ones).
        ValueError: any other bad option, naming the option, the value given and what is expected.
    """
    check_norms(cfg.norms)
    if cfg.summarize:
        return
    if (cfg.data is None) == (cfg.csv is None):
        raise ValueError("give the data as --data DIR or as --csv FILE (one of them)")
    if cfg.dataset is not None and cfg.dataset not in RECIPES:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; expected one of {list(RECIPES)}")
    if cfg.data in ("synthetic", "download"):
        _recipe_for(cfg)  # ValueError when the recipe cannot generate (download) its data
    if cfg.csv is None and any(v is not None for v in (cfg.fold_col, cfg.group_col, cfg.path)):
        raise ValueError("--fold-col, --group-col and --path describe a --csv source; give --csv FILE")
    if cfg.fold_col is not None and cfg.group_col is not None:
        raise ValueError("give --fold-col (the folds are in the CSV) or --group-col (folds drawn by group), not both")
    if cfg.group_regex is not None:
        if cfg.group_col is not None:
            raise ValueError("give --group-col (groups from a CSV column) or --group-regex (groups from file names), not both")
        group_pattern(cfg.group_regex, "--group-regex")  # ValueError: not a regex, or no group
    if cfg.folds is not None and not cfg.folds:
        raise ValueError("--folds must list at least one fold")
    if not cfg.seeds or not cfg.norms:
        raise ValueError("seeds and norms must each list at least one value")
    if len(set(cfg.norms)) != len(cfg.norms):
        raise ValueError(f"--norms lists a normalization twice: {cfg.norms}")
    if cfg.epochs is not None and not (isinstance(cfg.epochs, int) and 1 <= cfg.epochs <= MAX_EPOCHS):
        raise ValueError(f"epochs must be an integer from 1 to {MAX_EPOCHS}, got {cfg.epochs!r}")
    if not 0 < cfg.stats_fraction <= 1:
        raise ValueError(f"stats fraction must be in (0, 1], got {cfg.stats_fraction!r}")
    if not (isinstance(cfg.k, int) and cfg.k >= 2):
        raise ValueError(f"k (folds to draw) must be an integer >= 2, got {cfg.k!r}")
    if not (isinstance(cfg.repeats, int) and not isinstance(cfg.repeats, bool) and 1 <= cfg.repeats <= 1000):
        raise ValueError(f"repeats (k-fold partitions to draw) must be an integer from 1 to 1000, got {cfg.repeats!r}")
    fixed = cfg.fold_col is not None or cfg.data == "synthetic" or (cfg.dataset is not None and RECIPES[cfg.dataset].fixed_folds)
    if cfg.repeats > 1 and fixed:
        raise ValueError(f"--repeats {cfg.repeats} draws new k-fold partitions, but this source's folds are fixed (a fold "
                         "column, or a dataset's own folds or speakers); seeds average the training noise of fixed folds: use --seeds")  # fmt: skip
    if not (isinstance(cfg.rope, int | float) and not isinstance(cfg.rope, bool) and 0 <= cfg.rope < 100):
        raise ValueError(f"rope (the region of practical equivalence) must be accuracy points in [0, 100), got {cfg.rope!r}")
    get_preset(cfg.preset or "blog", **cfg.overrides)  # TypeError: an unknown setting; ValueError: unknown preset, bad value
    if any(not (isinstance(seed, int) and 0 <= seed < 2**32) for seed in cfg.seeds):
        raise ValueError(f"seeds must be whole numbers from 0 to 2**32 - 1 (NumPy's seed range), got {cfg.seeds}")
    if not 1 <= cfg.shard[0] <= cfg.shard[1]:
        raise ValueError(f"shard must be I/N with 1 <= I <= N, got {cfg.shard[0]}/{cfg.shard[1]}")
    for device in cfg.devices:
        if device != "cpu" and not device.startswith(("cuda", "mps", "xpu")):
            raise ValueError(f"unknown device {device!r}; expected e.g. cuda:0, cuda:1 or cpu")


def _check_devices_present(devices: list[str]) -> None:
    "Raise ValueError naming a `--devices` entry this machine does not have (before anything is read or written)."
    for device in devices:
        kind, _, index = device.partition(":")
        if kind == "cpu":
            continue
        import torch  # only when a device other than the CPU is asked for

        backend = getattr(torch, kind, None)  # torch.cuda, torch.mps, torch.xpu
        count = backend.device_count() if backend is not None and backend.is_available() else 0
        if (int(index) if index.isdigit() else 0) >= count:
            raise ValueError(f"--devices {device}: this machine has {count} {kind} device(s); name ones it has, or cpu")


def _spec(cfg: ExperimentConfig) -> SourceSpec:
    "The source options of `cfg`, with `data` the dataset folder: generated into OUT (synthetic), downloaded, or as given."
    data = cfg.data
    if data in ("synthetic", "download"):
        recipe = _recipe_for(cfg)
        out = Path(cfg.out) / f"synthetic-{recipe.name}"
        data = recipe.synthetic(out, cfg.synthetic_classes, cfg.synthetic_clips) if data == "synthetic" else recipe.download()
    return SourceSpec(**{f.name: getattr(cfg, f.name) for f in fields(SourceSpec)} | {"data": data})


def _recipe_for(cfg: ExperimentConfig) -> Recipe:
    "The recipe that generates or downloads `cfg.data` (synthetic, download): `cfg.dataset`'s, or the first that can (ESC-50)."
    able = [r for r in RECIPES.values() if getattr(r, cfg.data) is not None]
    if cfg.dataset is None:
        return able[0]
    if RECIPES[cfg.dataset] not in able:
        verb = "generates data" if cfg.data == "synthetic" else "downloads"
        raise ValueError(
            f"--data {cfg.data} {verb} for the datasets {[r.name for r in able]}; it does not go with --dataset {cfg.dataset}"
        )
    return RECIPES[cfg.dataset]


def _fold_numbers(source, wanted: list | None) -> list[int]:
    "The fold numbers of the values in `wanted` (numbers or the source's names); all when None."
    available = source.folds
    if wanted is None:
        return available
    by_name = {str(f): f for f in available} | {str(name): f for f, name in source.fold_names.items() if f in available}
    unknown = [w for w in wanted if str(w) not in by_name]
    if unknown:
        listed = ", ".join(f"{f} ({source.fold_names[f]})" if f in source.fold_names else str(f) for f in available)
        raise ValueError(f"fold(s) {unknown} not in the data; its folds are {listed}")
    numbers = [by_name[str(w)] for w in wanted]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"--folds names a fold twice: {wanted}")
    return numbers


def _records_exist(out: Path) -> bool:
    return any((out / "runs").glob("*.json"))


def _read_folds_csv(path: Path) -> dict[tuple[int, str], int]:
    "`{(repeat, file): fold}` of OUT/folds.csv (columns file, repeat, fold; or file, fold: repeat 0)."
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype={"file": str})
        if list(df.columns) == ["file", "fold"]:  # written before repeated k-fold
            df.insert(1, "repeat", 0)
        if list(df.columns) != ["file", "repeat", "fold"]:
            raise ValueError(f"columns {list(df.columns)}, expected file, repeat, fold")
        return {(int(r), str(f)): int(k) for f, r, k in zip(df["file"], df["repeat"], df["fold"], strict=True)}
    except ValueError as e:  # pandas' ParserError and EmptyDataError too
        raise ValueError(f"cannot read {path} ({e}); it is written whole by this tool, so something else changed it: "
                         "delete it to draw the folds again (only while the folder holds no finished run)") from None  # fmt: skip


def _folds_table(tables: dict[int, Any]):
    "The OUT/folds.csv table of every repeat's folds: columns file, repeat, fold."
    import pandas as pd

    frames = [pd.DataFrame({"file": t["file"], "repeat": r, "fold": t["fold"].astype(int)}) for r, t in sorted(tables.items())]
    return pd.concat(frames, ignore_index=True)


def _with_folds(source, cfg: ExperimentConfig, out: Path, log: RunLog):
    """(repeat -> `source` with that repeat's folds, folds table to write or None): drawn folds are read
    from `OUT/folds.csv` when it fits the clips, the missing repeats drawn now (seed `fold_seed + r`)."""
    if not source.drawn:
        if cfg.repeats > 1:
            raise ValueError(f"--repeats {cfg.repeats} draws new k-fold partitions, but this source's folds are fixed "
                             f"({source.description}); seeds average the training noise of fixed folds: use --seeds")  # fmt: skip
        return {0: source}, None
    path = out / "folds.csv"
    files = set(source.table["file"])
    saved = _read_folds_csv(path) if path.is_file() else {}
    saved_repeats = sorted({r for r, _ in saved})
    if saved and any({f for r2, f in saved if r2 == r} != files for r in saved_repeats):
        if _records_exist(out):
            changes = describe_changes({"files": dict.fromkeys({f for _, f in saved}, 0)}, {"files": dict.fromkeys(files, 0)})
            raise ValueError(f"the clips differ from those in {path} ({changes}); results of different data are never mixed: "
                             "use another --out folder, or restore the data")  # fmt: skip
        saved, saved_repeats = {}, []
    groups = source.table["group"] if "group" in source.table.columns else None
    tables, drawn = {}, []
    for repeat in sorted(set(range(cfg.repeats)) | set(saved_repeats)):
        table = source.table.copy()
        if repeat in saved_repeats:
            table["fold"] = table["file"].map(lambda f, r=repeat: saved[(r, f)]).astype("Int64")
        else:
            table["fold"] = draw_folds(table["label"], cfg.k, seed=cfg.fold_seed + repeat, groups=groups)
            drawn.append(repeat)
        tables[repeat] = table
    sources = {r: replace(source, table=tables[r]) for r in range(cfg.repeats)}
    ident = source.identity
    by = repr(ident["group_col"]) if "group_col" in ident else f"--group-regex '{ident.get('group_regex')}'"
    grouped = f", grouped by {by}" if groups is not None else ""
    if saved_repeats:
        log.info(f"folds: {cfg.k} folds of {len(saved_repeats)} repeat(s) read from {path}")
    if drawn:
        log.info(f"folds: {cfg.k} folds drawn for {len(drawn)} repeat(s) (seed {cfg.fold_seed} + repeat, stratified by "
                 f"label{grouped}), to be saved in {path}")  # fmt: skip
    return sources, (_folds_table(tables) if drawn else None)


def _untrained(table, fold: int) -> set:
    "The labels of `table` with no clip outside `fold`: nothing trains on them when `fold` is held out."
    return set(table["label"]) - set(table.loc[table["fold"] != fold, "label"])


def _without_untrained_classes(sources: dict, folds: list[int]) -> tuple[dict, list[str]]:
    "The sources without the classes that some grid fold of some repeat leaves with no training clip, and those classes."
    dropped = sorted({c for s in sources.values() for f in folds for c in _untrained(s.table, f)}, key=str)
    if not dropped:
        return sources, []
    kept = {}
    for r, s in sources.items():
        vocab = None if s.vocab is None else [c for c in s.vocab if c not in dropped]
        kept[r] = replace(s, table=s.table[~s.table["label"].isin(dropped)].reset_index(drop=True), vocab=vocab)
    return kept, dropped


def _check_out_writable(out: Path) -> None:
    "ValueError in one line when `out` is a file or lies in a folder this user cannot write (before the long checks)."
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created when missing)")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to --out {out}: {existing} is not writable by this user; give another folder")


def _check_every_class_trains(source, fold: int, repeat: int) -> None:
    "ValueError naming a class all of whose clips are in `fold` (no run holding it out learns it), its groups and the fix."
    table = source.table
    missing = sorted(_untrained(table, fold), key=str)
    if not missing:
        return
    held = table[table["label"] == missing[0]]
    groups = f" (groups {sorted(map(str, held['group'].unique()))[:5]})" if "group" in table.columns else ""
    other = "a larger --k, " if "group" not in table.columns or held["group"].nunique() > 1 else ""
    raise ValueError(
        f"class(es) {missing[:5]} have no training clip when {_where(source, fold, repeat)} is held out: all "
        f"{len(held)} clip(s) of {missing[0]!r}{groups} are in that fold; pass --drop-rare-classes to leave such "
        f"classes out, or give {other}other groups (--group-col, --group-regex) or more clips of that class"
    )


def _where(source, fold: int, repeat: int) -> str:
    "How messages name a validation fold: 'fold 2', a speaker, or 'fold 2 of repeat 1'."
    return source.fold_name(fold) + (f" of repeat {repeat}" if repeat else "")


def _resolved_precision(precision: str, devices: list[str]) -> str:
    """ "fp32" or "bf16", as the identity records it: "auto" decided for the first of `devices` (none: CUDA if available)."""
    if precision != "auto":
        return precision
    import torch

    from ..precision import resolve_precision  # here, not above: keeps `fastspecnorm compare --help` free of torch

    return resolve_precision(precision, devices[0] if devices else ("cuda" if torch.cuda.is_available() else "cpu"))


def data_fingerprint(source) -> dict:
    """The content fingerprint (`files_fingerprint`: digest, per-file size and SHA-256) of `source`'s
    table's files and the files that describe it.

    Args:
        source: the `DataSource`.

    Raises:
        FileNotFoundError: a listed file does not exist.
    """
    return files_fingerprint(source.root, _data_names(source))


def _data_names(source) -> list[str]:
    "The files whose content identifies `source`'s data: its table's clips and the files that describe it."
    return [*source.fingerprint_names, *source.table["file"]]


def data_unchanged(prep: Prepared) -> dict | None:
    """Check that the data have not changed since `prepare` (stat first, content when a stat changed):
    None when no file's stat changed or the content is the same (the stats are refreshed then), else
    the new `files_fingerprint`, whose digest differs from `prep.data`'s.

    Args:
        prep: the prepared grid (`prepare`).
    """
    now = file_stats(prep.source.root, _data_names(prep.source))
    if now == prep.data_stats:
        return None
    fingerprint = data_fingerprint(prep.source)
    if fingerprint["digest"] != prep.data.get("digest"):
        return fingerprint
    prep.data_stats = now  # touched, not changed
    return None


def _differences(old: Any, new: Any, key: str = "") -> list[str]:
    "'key: old there, new here' for each leaf where two identities differ (nested keys joined by '.')."
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(old.get(k), new.get(k), f"{key}.{k}" if key else k)]
    return [] if old == new else [f"{key}: {old!r} in OUT, {new!r} here"]


def _check_experiment(out: Path, expected: dict[str, Any], files: dict) -> bool:
    """True when `OUT/experiment.json` must be written (absent), False when it holds `expected`. One OUT
    holds one experiment: another is refused (ValueError naming what differs), also before any run finished."""
    path = out / "experiment.json"
    if not path.is_file():
        return True
    old = _read_json_file(path, "experiment identity")
    if old == expected:
        return False
    finished, fix = "finished runs of another experiment", "use another --out folder, or the settings of those runs"
    if not _records_exist(out):
        finished = "another experiment (no run finished yet)"
        fix = f"use another --out folder, or delete {path} to start this one there"
    if old.get("data_fingerprint") != expected.get("data_fingerprint"):
        old_files = _read_json_file(out / "data-files.json", "data fingerprint", default={})
        raise ValueError(f"the data differ from those of {finished} in {out} ({describe_changes(old_files, files)}); results "
                         f"of different data are never mixed: restore the data, or {fix}")  # fmt: skip
    shown = _differences(old, expected)
    raise ValueError(f"{out} holds {finished} (differing: {'; '.join(shown[:4])}{'; ...' if len(shown) > 4 else ''}; "
                     f"see {path}): {fix}")  # fmt: skip


def _table_rows(source) -> dict[str, list]:
    "`{file: [label, fold, group]}`: the table as the grid uses it (the fold None where folds are drawn: see folds.csv)."
    table = source.table
    groups = table["group"] if "group" in table.columns else [None] * len(table)
    folds = [None] * len(table) if source.drawn else [int(f) for f in table["fold"]]
    return {str(f): [str(label), fold, None if g is None else str(g)]
            for f, label, fold, g in zip(table["file"], table["label"], folds, groups, strict=True)}  # fmt: skip


def _check_table(out: Path, saved: dict, now: dict) -> None:
    """ValueError when the table now (labels, fixed folds, groups) or `OUT/folds.csv` differs from what
    `out` was prepared with (`data-files.json`); OUTs written before the table was recorded pass."""
    old = saved.get("table")
    if old is not None and old != now["table"]:
        changed = _differences(old, now["table"])
        raise ValueError(f"the table (label, fold, group of each clip) differs from the one {out} was prepared with "
                         f"({len(changed)} row(s): {'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''}); results of "
                         "different tables are never mixed: restore the table, or use another --out folder")  # fmt: skip
    folds_csv = out / "folds.csv"
    if saved.get("folds_csv") is not None and folds_csv.is_file():
        if hashlib.sha256(folds_csv.read_bytes()).hexdigest() != saved["folds_csv"]:
            raise ValueError(f"{folds_csv} was changed after this tool wrote it (the folds of the runs in {out}); restore "
                             "it, or use another --out folder")  # fmt: skip


def refuse_old_format(out: Path) -> None:
    "Raise ValueError when `out` holds results in an older format than `FORMAT`."
    path = out / "experiment.json"
    old = _read_json_file(path, "experiment identity") if path.is_file() else None
    if old is not None and not {"format", "settings"} & set(old):
        raise ValueError(f"{path} holds no experiment identity ({str(old)[:60]}); it is written whole by this tool, so "
                         "something else changed it: restore it, or delete it if the folder holds no finished run")  # fmt: skip
    if (old is not None and old.get("format") != FORMAT) or (
        old is None and (out / "results.csv").is_file() and not (out / "runs").is_dir()
    ):
        raise ValueError(
            f"{out} holds results in an older format (one results.csv rewritten in place, no per-run records in "
            f"{out / 'runs'}); this version keeps one record per run and derives results.csv from them. "
            "Use another --out folder, or move this one aside (its results.csv and summary stay readable)"
        )


def prepare(cfg: ExperimentConfig, log: RunLog | None = None) -> Prepared:
    """Check everything that can be checked before training, once, then write (or check) the identity;
    returns the `Prepared` grid.

    Reads the dataset with its recipe (generated or downloaded for `--data synthetic` / `download`),
    draws its folds when it has none (or reuses `OUT/folds.csv`), checks every clip, fingerprints the
    data and writes the experiment's identity to `OUT/experiment.json`, with `OUT/data-files.json` and,
    for drawn folds, `OUT/folds.csv` (`cfg.out` is made a `Path`).
    Nothing is written to OUT before every check has passed; an OUT folder that holds no finished
    run may be reused with other settings.

    Args:
        cfg: the comparison's options.
        log: how progress is shown (None: `RunLog()`).

    Raises:
        TypeError: an unknown setting name.
        ValueError: naming the problem: an unknown preset, norm, fold, shard or device; a bad clip
            or table; a batch size larger than a fold's training clips; an OUT folder holding
            finished runs of another experiment, of other data (naming the changed files) or of
            the older format.
        FileNotFoundError: a dataset folder, CSV or listed clip that does not exist.
    """
    log = log or RunLog()
    check_config(cfg)
    out = cfg.out = Path(cfg.out)
    _check_out_writable(out)
    refuse_old_format(out)
    _check_devices_present(cfg.devices)
    if cfg.data == "synthetic" and (out / "experiment.json").is_file() and _records_exist(out):
        old = _read_json_file(out / "experiment.json", "experiment identity").get("synthetic")
        if old != [cfg.synthetic_classes, cfg.synthetic_clips]:  # before regenerating the data of those runs
            raise ValueError(f"{out} holds finished runs of another experiment (differing: synthetic, {old}); "
                             "use another --out folder, or the settings of those runs")  # fmt: skip
    source = read_source(_spec(cfg))
    log.info(f"data: {source.description}")
    sources, folds_table = _with_folds(source, cfg, out, log)
    folds = _fold_numbers(sources[0], cfg.folds)
    dropped: list[str] = []
    if cfg.drop_rare_classes:
        sources, dropped = _without_untrained_classes(sources, folds)
        if dropped:
            log.info(f"--drop-rare-classes: left out {len(dropped)} class(es) without training clips in some fold: "
                     f"{', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}")  # fmt: skip
            emptied = [f for f in folds if any(not (s.table["fold"] == f).any() for s in sources.values())]
            if emptied and cfg.folds is not None:
                raise ValueError(f"--drop-rare-classes leaves fold(s) {emptied} without clips (they held only those classes): "
                                 "leave them out of --folds")  # fmt: skip
            folds = [f for f in folds if f not in emptied]
            if emptied:
                log.info(f"--drop-rare-classes: fold(s) {emptied} held only those classes and are left out of the grid")
    source = sources[0]
    if source.table["label"].nunique() < 2:
        only = source.table["label"].iloc[0]
        raise ValueError(f"the data hold one class ({only!r}): comparing classifiers needs two or more classes")
    preset = cfg.preset or source.preset
    settings, training = get_preset(preset, **cfg.overrides)
    if cfg.epochs is not None:
        training = replace(training, epochs=cfg.epochs)
    recipe = RECIPES[source.dataset]
    if recipe.check is not None:
        recipe.check(source, folds)  # the dataset's own rules and every clip, decoded
    facts = check_source_files(source, full=recipe.check is None)  # headers only where the recipe decoded them
    rates = sorted({f["samplerate"] for f in facts.values()})
    if settings.sample_rate is None and len(rates) > 1:
        log.info(
            f"the files have several sample rates ({', '.join(map(str, rates))} Hz): resampling all to {DEFAULT_SAMPLE_RATE} Hz"
        )
    files_rate = rates[0] if len(rates) == 1 else None  # where the preset leaves the rate open
    settings = replace(settings.resolved(files_rate), precision=_resolved_precision(settings.precision, cfg.devices))
    for repeat, each in sources.items():
        for fold in folds:
            _check_every_class_trains(each, fold, repeat)
            n_train = int((each.table["fold"] != fold).sum())
            if n_train < settings.bs:
                raise ValueError(
                    f"bs={settings.bs} is larger than the {n_train} training clips of {_where(each, fold, repeat)}; the "
                    "training loader drops incomplete batches, so it would yield none: pass a smaller --bs"
                )
    settings_dict = {**settings.as_dict(), **asdict(training)}  # one dict, as before the two were split
    for speed_only in ("num_workers", "cache"):  # how fast, not what is computed
        settings_dict.pop(speed_only)
    if settings_dict["precision"] == "fp32":  # grids recorded before the setting existed keep their identity
        settings_dict.pop("precision")
    identity = {
        "format": FORMAT,
        "dataset": source.dataset,
        "preset": preset,
        "settings": settings_dict,
        "stats_fraction": cfg.stats_fraction,
        "synthetic": [cfg.synthetic_classes, cfg.synthetic_clips] if cfg.data == "synthetic" else None,
    }
    if source.identity:  # own data: how the table was read and its folds drawn
        identity["source"] = source.identity
    if dropped:  # only when any: grids without it keep their identity
        identity["dropped_classes"] = dropped
    data_stats = file_stats(source.root, _data_names(source))  # before hashing: a change after it shows in the stat
    data = data_fingerprint(source)
    identity["data_fingerprint"] = data["digest"]
    with contextlib.ExitStack() as held:
        try:
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(file_lock(out / ".experiment.lock"))
        except OSError as e:
            raise ValueError(f"cannot write to --out {out} ({e.strerror or e}): give a folder this user can write") from None
        # One identity per OUT: processes started together write it one at a time and compare it.
        new = _check_experiment(out, identity, data)
        saved = {} if new else _read_json_file(out / "data-files.json", "data fingerprint")
        data["table"] = _table_rows(source)
        if not new:
            _check_table(out, saved, data)  # the labels, fixed folds and groups as used, and folds.csv as written
        if new and folds_table is None and source.drawn:
            folds_table = _folds_table({r: s.table for r, s in sources.items()})
        if folds_table is not None:  # new, more repeats than drawn before, or folds.csv deleted
            atomic_write_text(out / "folds.csv", folds_table.to_csv(index=False, lineterminator="\n"))
        if (out / "folds.csv").is_file():
            data["folds_csv"] = hashlib.sha256((out / "folds.csv").read_bytes()).hexdigest()
        if new or {k: saved.get(k) for k in data} != data:  # written once; older OUTs gain the table
            atomic_write_text(out / "data-files.json", json.dumps(data, indent=1, sort_keys=True))
        if new:
            atomic_write_text(out / "experiment.json", json.dumps(identity, indent=2, sort_keys=True))
    return Prepared(
        source, settings, settings_dict, training, folds, identity, digest(identity), data, sources, data_stats, facts
    )


def experiment_title(experiment: dict[str, Any]) -> str:
    """The summary's title: dataset, preset and epochs, e.g. "FSDD (real speech, speaker held out),
    preset fsdd, 6 epochs".

    Args:
        experiment: the identity in `OUT/experiment.json` (`Prepared.experiment`).
    """
    recipe = RECIPES.get(experiment.get("dataset"))
    data = recipe.title if recipe is not None else str(experiment.get("dataset"))
    if experiment.get("synthetic"):
        data = f"synthetic {data}"
    epochs = experiment["settings"]["epochs"]
    return f"{data}, preset {experiment['preset']}, {epochs} epoch{'' if epochs == 1 else 's'}"
