"""Datasets as recipes (`RECIPES`) over one loader factory, `AudioDataLoaders.from_df`: reading a
source, drawing its folds, building the loaders of one fold.

This module imports neither torch nor fastai at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, so that the command line starts fast
    import numpy as np
    import pandas as pd

__all__ = [
    "SourceSpec",
    "DataSource",
    "Recipe",
    "RECIPES",
    "detect_dataset",
    "read_source",
    "draw_folds",
    "source_dataloaders",
    "check_source_files",
]


@dataclass
class SourceSpec:
    """Where a dataset is and how to read it (the command line's source options).

    Args:
        data: a dataset folder (ESC-50 layout, FSDD's folder, or one subfolder per label).
        csv: a CSV file listing the clips (instead of `data`).
        path: the folder the CSV's file names are relative to (default: the CSV's folder).
        dataset: the recipe's name; None detects it from `data` (or "csv" with `csv`).
        fn_col: the CSV's file column, by name or 0-based position.
        label_col: the CSV's label column, by name or 0-based position.
        fold_col: the CSV column whose distinct values are the folds (a fold number, a speaker).
        group_col: without `fold_col`: the column whose values are never split across drawn folds.
        k: how many folds to draw when the source has none.
        fold_seed: the seed of the fold draw.
    """

    data: str | os.PathLike | None = None
    csv: str | os.PathLike | None = None
    path: str | os.PathLike | None = None
    dataset: str | None = None
    fn_col: str | int = 0
    label_col: str | int = 1
    fold_col: str | int | None = None
    group_col: str | int | None = None
    k: int = 5
    fold_seed: int = 0


@dataclass
class DataSource:
    """A dataset read by its recipe.

    Attributes:
        dataset: the recipe's name.
        root: the folder the table's `file` names are relative to.
        table: one row per clip: `file` (str, relative to `root`), `label` (str), `fold` (int
            1..n, or <NA> until folds are drawn) and, when grouped, `group`.
        preset: the recipe's default preset.
        fold_names: fold number -> the source's name for it (e.g. a speaker), for tables.
        vocab: the class order (None: sorted labels).
        fingerprint_names: files (relative to `root`) besides the clips whose content identifies
            the data (e.g. `meta/esc50.csv`).
        identity: how the table was read (columns, k, seed), part of an experiment's identity.
        description: one line saying what was found.
        drawn: whether the folds come from `draw_folds`.
    """

    dataset: str
    root: Path
    table: pd.DataFrame
    preset: str
    fold_names: dict[int, str] = field(default_factory=dict)
    vocab: list[str] | None = None
    fingerprint_names: list[str] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    drawn: bool = False

    @property
    def folds(self) -> list[int]:
        "The fold numbers present, sorted."
        return sorted(int(f) for f in self.table["fold"].dropna().unique())

    def fold_name(self, fold: int) -> str:
        """How tables name a fold.

        Args:
            fold: the fold number.

        Returns:
            The source's value for it (a speaker), or 'fold k'.
        """
        return self.fold_names.get(int(fold), f"fold {fold}")

    def files(self) -> list[Path]:
        "Every clip's path (`root` / `file`), in table order."
        return [self.root / f for f in self.table["file"]]


@dataclass(frozen=True)
class Recipe:
    """One dataset: how to read its table, where its folds come from, and its default preset.

    A recipe reads a dataset's table (one row per clip: `file` relative to the dataset's folder,
    `label`, `fold`). Adding a dataset means adding one `Recipe` to `RECIPES`.

    Attributes:
        name: the recipe's name (`--dataset`).
        preset: the name of its default preset.
        read: `read(spec) -> DataSource`.
        detect: `detect(folder)`, whether a folder is in its layout (None: never detected, name it
            with `--dataset`).
        summary: one line describing its layout (listed when no layout is recognized).
    """

    name: str
    preset: str
    read: Callable[[SourceSpec], DataSource]
    detect: Callable[[Path], bool] | None
    summary: str


# -- the recipes -----------------------------------------------------------------------------


def _read_esc50(spec: SourceSpec) -> DataSource:

    from .esc50 import esc50_source
    from .validate import read_esc50_table

    root = Path(spec.data)
    df, report = read_esc50_table(root)
    report.raise_if_errors()
    source = esc50_source(root, df)
    source.description = _describe("ESC-50 layout", source.table)
    return source


def _read_fsdd(spec: SourceSpec) -> DataSource:
    import pandas as pd

    from .fsdd import FSDD_SPEAKERS, fsdd_table, resolve_fsdd

    root = resolve_fsdd(spec.data)
    df = fsdd_table(root)
    table = pd.DataFrame({"file": df["filename"], "label": df["label"].astype(str), "fold": df["fold"].astype(int)})
    names = {i + 1: s for i, s in enumerate(FSDD_SPEAKERS)}
    return DataSource(
        "fsdd", root, table, "fsdd", fold_names=names, description=_describe("FSDD (one fold per speaker)", table, names=names)
    )


def _read_folder(spec: SourceSpec) -> DataSource:
    import pandas as pd

    from ..data import get_audio_files

    root = Path(spec.data)
    labels = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) if root.is_dir() else []
    rows = [(f.relative_to(root).as_posix(), label) for label in labels for f in get_audio_files(root / label)]
    if not rows:
        raise FileNotFoundError(f"no audio files in subfolders of {root}: a folder source holds one subfolder per label, "
                                "each with that label's clips")  # fmt: skip
    table = pd.DataFrame(rows, columns=["file", "label"])
    table["fold"] = pd.array([pd.NA] * len(table), dtype="Int64")
    return DataSource("folder", root, table, "own", description=_describe("a folder per label", table, drawn=True),
                      identity={"k": spec.k, "fold_seed": spec.fold_seed}, drawn=True)  # fmt: skip


def _column(df: pd.DataFrame, col, option: str, csv: Path) -> str:
    "A column by name or 0-based position; ValueError naming the CSV's columns otherwise."
    if isinstance(col, str) and col.lstrip("-").isdigit() and col not in df.columns:
        col = int(col)
    if isinstance(col, int) and not isinstance(col, bool) and col not in df.columns:
        if not 0 <= col < len(df.columns):
            raise ValueError(f"{option} {col} is out of range: {csv} has {len(df.columns)} columns {list(df.columns)}")
        return df.columns[col]
    if col not in df.columns:
        raise ValueError(f"{option} {col!r} is not a column of {csv}; its columns are {list(df.columns)}")
    return col


def _read_csv(spec: SourceSpec) -> DataSource:
    import pandas as pd

    csv = Path(spec.csv)
    if not csv.is_file():
        raise FileNotFoundError(f"--csv {csv}: no such file")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"cannot read {csv} as CSV: {e}") from None
    if df.empty:
        raise ValueError(f"{csv} has no rows")
    fn, label = _column(df, spec.fn_col, "--fn-col", csv), _column(df, spec.label_col, "--label-col", csv)
    root = Path(spec.path) if spec.path is not None else csv.parent
    empty = [i + 2 for i, v in enumerate(df[fn]) if not v.strip()] + [i + 2 for i, v in enumerate(df[label]) if not v.strip()]
    if empty:
        raise ValueError(f"{csv}: line(s) {sorted(set(empty))[:10]} have an empty file name or label")
    table = pd.DataFrame({"file": df[fn], "label": df[label]})
    identity: dict[str, Any] = {"fn_col": fn, "label_col": label}
    names: dict[int, str] = {}
    drawn = spec.fold_col is None
    if not drawn:
        col = _column(df, spec.fold_col, "--fold-col", csv)
        values = df[col].str.strip()
        if blank := [i + 2 for i, v in enumerate(values) if not v]:
            raise ValueError(f"{csv}: line(s) {blank[:10]} have an empty {col!r} (the fold): give every clip its fold")
        distinct = sorted(values.unique(), key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
        if len(distinct) < 2:
            raise ValueError(f"--fold-col {col!r} of {csv} holds only {distinct}: a comparison needs at least two folds")
        numbered = all(v.lstrip("-").isdigit() for v in distinct)
        if numbered and len({int(v) for v in distinct}) < len(distinct):
            spellings = [v for v in distinct if sum(int(w) == int(v) for w in distinct) > 1]
            raise ValueError(f"--fold-col {col!r} of {csv} spells one fold number several ways ({spellings}): "
                             "write each fold one way, so that no two folds merge unseen")  # fmt: skip
        index = {v: (int(v) if numbered else i + 1) for i, v in enumerate(distinct)}
        table["fold"] = values.map(index).astype("Int64")
        names = {} if numbered else {i: v for v, i in index.items()}
        identity["fold_col"] = col
    else:
        table["fold"] = pd.array([pd.NA] * len(table), dtype="Int64")
        identity.update({"k": spec.k, "fold_seed": spec.fold_seed})
        if spec.group_col is not None:
            col = _column(df, spec.group_col, "--group-col", csv)
            if blank := [i + 2 for i, v in enumerate(df[col]) if not v.strip()]:
                raise ValueError(f"{csv}: line(s) {blank[:10]} have an empty {col!r} (the group): an empty group would "
                                 "put unrelated clips together")  # fmt: skip
            table["group"] = df[col]
            identity["group_col"] = col
    what = f"CSV {csv.name}" + (f", folds from column {identity['fold_col']!r}" if not drawn else "")
    return DataSource("csv", root, table, "own", fold_names=names, identity=identity, drawn=drawn,
                      description=_describe(what, table, drawn=drawn, names=names))  # fmt: skip


def _describe(what: str, table: pd.DataFrame, drawn: bool = False, names: dict[int, str] | None = None) -> str:
    numbers = sorted(int(f) for f in table["fold"].dropna().unique())
    folds = "" if drawn else f", folds {', '.join((names or {}).get(f, str(f)) for f in numbers)}"
    return f"{what}: {len(table)} clips, {table['label'].nunique()} labels{folds}"


def _is_esc50(path: Path) -> bool:
    return (path / "meta" / "esc50.csv").is_file()


def _is_fsdd(path: Path) -> bool:
    return (path / "recordings").is_dir() or len([p for p in path.glob("*/recordings") if p.is_dir()]) == 1


def _is_folder(path: Path) -> bool:
    from ..data import get_audio_files

    return any(d.is_dir() and not d.name.startswith(".") and get_audio_files(d) for d in path.iterdir())


#: The one registry of datasets, in detection order: ESC-50 (`esc50`), the Free Spoken Digit
#: Dataset (`fsdd`), a folder with one subfolder per label (`folder`) and a CSV of your own (`csv`).
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("esc50", "quick", _read_esc50, _is_esc50, "ESC-50 layout: meta/esc50.csv and audio/ (folds from the CSV)"),
        Recipe("fsdd", "fsdd", _read_fsdd, _is_fsdd, "the Free Spoken Digit Dataset: recordings/ (fold k: the k-th speaker)"),
        Recipe("folder", "own", _read_folder, _is_folder, "one subfolder per label, clips found recursively (k folds drawn)"),
        Recipe("csv", "own", _read_csv, None, "a CSV of file, label and fold (or group) columns"),
    )
}


def detect_dataset(path: str | os.PathLike) -> str:
    """The recipe whose layout the folder `path` has, checked in `RECIPES` order.

    Args:
        path: a dataset folder.

    Returns:
        The recipe's name.

    Raises:
        FileNotFoundError: `path` is not a folder.
        ValueError: no recipe recognizes it (the message lists the layouts).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {path}: no such folder")
    for recipe in RECIPES.values():
        if recipe.detect is not None and recipe.detect(path):
            return recipe.name
    layouts = "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values() if r.detect is not None)
    raise ValueError(f"--data {path} is in no known layout ({layouts}); for a table of clips use --csv FILE")


def read_source(spec: SourceSpec) -> DataSource:
    """Read the dataset `spec` names with its recipe (detected when `spec.dataset` is None).

    Sources without folds (a folder, a CSV without `fold_col`) are returned with `drawn=True` and
    no folds yet: they get `k` folds from `draw_folds`, stratified by label and, with `group_col`,
    grouped (no group in two folds). Folds are not drawn here: a source read twice gives the same
    table.

    Args:
        spec: where the dataset is and how to read it.

    Returns:
        The `DataSource`.

    Raises:
        ValueError: a bad option, column or table, naming the file, column or option at fault.
        FileNotFoundError: a dataset folder, CSV or clip folder that does not exist or holds no clips.
    """
    if spec.csv is not None:
        if spec.dataset not in (None, "csv"):
            raise ValueError(f"--csv reads a table of your own; it does not go with --dataset {spec.dataset}")
        return RECIPES["csv"].read(spec)
    if spec.data is None:
        raise ValueError("give --data DIR (a dataset folder) or --csv FILE")
    name = spec.dataset or detect_dataset(spec.data)
    if name not in RECIPES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(RECIPES)}")
    if name == "csv":
        raise ValueError("--dataset csv needs --csv FILE")
    return RECIPES[name].read(spec)


def draw_folds(labels, k: int, seed: int = 0, groups=None) -> np.ndarray:
    """Assign each clip to one of `k` folds (1..k), stratified by label and grouped by `groups`.

    Groups (every clip its own group when `groups` is None) are taken in a seeded random order,
    largest first, and each goes to the fold where the per-label shares stay closest to 1/k, ties
    to the smallest fold: sklearn's `StratifiedGroupKFold` strategy. No group is in two folds.

    Args:
        labels: (clips,) each clip's label.
        k: number of folds, >= 2.
        seed: the draw's seed (the same labels, groups and seed give the same folds).
        groups: (clips,) or None.

    Returns:
        (clips,) int array of fold numbers 1..k.

    Raises:
        ValueError: k < 2, or fewer groups (or clips) than folds.
    """
    import numpy as np

    labels = np.asarray(labels).astype(str)
    groups = np.arange(len(labels)).astype(str) if groups is None else np.asarray(groups).astype(str)
    if not (isinstance(k, int) and k >= 2):
        raise ValueError(f"k must be an integer >= 2 (the number of folds), got {k!r}")
    group_names, group_of = np.unique(groups, return_inverse=True)
    if len(group_names) < k:
        raise ValueError(f"cannot draw {k} folds from {len(group_names)} group(s); use a smaller k")
    label_names, label_of = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(group_names), len(label_names)))
    np.add.at(counts, (group_of, label_of), 1)
    totals = counts.sum(axis=0)
    order = np.random.default_rng(seed).permutation(len(group_names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    folds = np.zeros((k, len(label_names)))
    fold_of_group = np.zeros(len(group_names), dtype=int)
    for g in order:
        costs = []
        for f in range(k):
            trial = folds.copy()
            trial[f] += counts[g]
            costs.append(((trial / totals).std(axis=0)).mean())
        best = min(range(k), key=lambda f: (round(costs[f], 12), folds[f].sum()))
        folds[best] += counts[g]
        fold_of_group[g] = best + 1
    return fold_of_group[group_of]


def check_source_files(source: DataSource, full: bool = True) -> dict[str, dict]:
    """Check every clip of `source` (`check_audio_files`: every bad file named at once).

    ESC-50 tables were checked when read.

    Args:
        source: the `DataSource`.
        full: also decode every sample of each file (False: headers only).

    Returns:
        `{path: facts}`: each file's header facts `{"frames", "samplerate", "channels"}`, keyed by
            `str(path)`.

    Raises:
        AudioFilesError: (a ValueError) any file has a problem; the message names every bad file.
    """
    from ..audio.check import check_audio_files

    return check_audio_files(source.files(), full=full)


def source_dataloaders(source: DataSource, valid_fold: int, settings, batch_tfms=(), device=None, validate: bool | str = False,
                       progress: bool = True, **kwargs):  # fmt: skip
    """The `AudioDataLoaders` of one fold of `source`: training = every other fold.

    Args:
        source: a `DataSource` with folds (drawn ones included).
        valid_fold: the fold number held out for validation.
        settings: `AudioSettings`, resolved (`settings.resolved(rate)`) when the preset leaves
            the rate open.
        batch_tfms: transforms after `AudioToSpec`.
        device: where batches go (None: fastai's default device).
        validate: passed to `from_df` (the comparison checks the files once, before the grid).
        progress: show progress bars (cache building).
        kwargs: more `from_df` arguments.

    Returns:
        The `AudioDataLoaders`.

    Raises:
        ValueError: `valid_fold` is not a fold of `source`.
    """
    from ..data import AudioDataLoaders

    s = settings.resolved()
    if s.num_workers is not None:
        kwargs.setdefault("num_workers", s.num_workers)
    return AudioDataLoaders.from_df(
        source.table, path=source.root, fn_col="file", label_col="label", valid_col=None, fold_col="fold", valid_fold=valid_fold,
        sample_rate=s.sample_rate, duration=s.duration, bs=s.bs, spec=s.spec_kwargs(), waveform_norm=s.waveform_norm,
        batch_tfms=batch_tfms, cache=s.cache, validate=validate, device=device, vocab=source.vocab, audio_dtype=s.audio_dtype,
        progress=progress, **kwargs,
    )  # fmt: skip
