"""Datasets as recipes (`RECIPES`) over one loader factory, `AudioDataLoaders.from_df`: reading a
source, drawing its folds, building the loaders of one fold.

Dataset modules (`esc50`, `fsdd`, `own`) import this one and `register` their recipe; this module
imports none of them. They all import torch and fastai (`fastspecnorm.audio`, `fastspecnorm.data`)
only where used: `fastspecnorm compare --help` lists `RECIPES` without them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._groups import draw_folds, groups_from_names, warn_shared_prefixes
from .._options import option, positive_int

if TYPE_CHECKING:  # imported where used, so that the command line starts fast
    import pandas as pd

    from ..presets import AudioSettings

__all__ = [
    "SourceSpec",
    "DataSource",
    "Recipe",
    "RECIPES",
    "register",
    "describe_table",
    "detect_dataset",
    "read_source",
    "draw_folds",
    "source_dataloaders",
    "check_source_files",
]


@dataclass
class SourceSpec:
    """Where a dataset is and how to read it: the command line's data options (`--data`, `--csv`, ...),
    declared once here (see `fastspecnorm._options.option`); `ExperimentConfig` inherits them.

    Args:
        data: a dataset folder (ESC-50 layout, FSDD's folder, or one subfolder per label).
        dataset: the recipe's name; None detects it from `data` (or "csv" with `csv`).
        csv: a CSV file listing the clips (instead of `data`).
        path: the folder the CSV's file names are relative to (default: the CSV's folder).
        fn_col: the CSV's file column, by name or 0-based position.
        label_col: the CSV's label column, by name or 0-based position.
        fold_col: the CSV column whose distinct values are the folds (a fold number, a speaker).
        group_col: without `fold_col`: the column whose values are never split across drawn folds.
        group_regex: a regular expression whose group named `group` (else its first group), searched in
            each file's path relative to the source, is the clip's group: drawn folds never split a
            group, and fixed folds are checked not to.
        k: how many folds to draw when the source has none.
        fold_seed: the seed of the fold draw.
        allow_outside: accept CSV file names outside `path` (on by itself when every name is absolute).
    """

    data: str | os.PathLike | None = option(None, help='a dataset folder: ESC-50 layout (meta/esc50.csv + audio/), FSDD '
                                            '(recordings/) or one subfolder per label (detected); "synthetic" (generated '
                                            'ESC-50 layout) or "download"')  # fmt: skip
    dataset: str | None = option(None, help="force the layout instead of detecting it", choices=lambda: list(RECIPES))
    csv: str | os.PathLike | None = option(
        None, help="a CSV listing the clips (file and label columns, and a fold or group column)"
    )
    path: str | os.PathLike | None = option(
        None, help="the folder the CSV's file names are relative to (default: the CSV's folder)"
    )
    fn_col: str | int = option(0, help="the CSV's file column, a name or 0-based position (default: the first)")
    label_col: str | int = option(1, help="the CSV's label column (default: the second)")
    fold_col: str | int | None = option(
        None, help="the CSV column whose values are the folds (a fold number, a speaker, a session)"
    )
    group_col: str | int | None = option(
        None, help="without --fold-col: folds are drawn so that no value of this column is in two"
    )
    group_regex: str | None = option(None, help="a regular expression whose first group (or group named 'group'), searched "
                                     "in each file's path relative to the data, is its recording: no recording in two folds "
                                     r"(e.g. '(\d+-\d+)-[A-Z]-\d+\.wav$' for ESC-50's names)", metavar="REGEX")  # fmt: skip
    k: int = option(5, help="folds to draw when the data have none (default: 5)", parse=positive_int)
    fold_seed: int = option(0, help="the seed of the fold draw (default: 0)", parse=int)
    allow_outside: bool = option(False, help="accept CSV file names outside --path (absolute, or leaving it with ..); "
                                 "on by itself when every name is absolute")  # fmt: skip


@dataclass
class DataSource:
    """A dataset read by its recipe.

    Attributes:
        dataset: the recipe's name.
        root: the folder the table's `file` names are relative to.
        table: one row per clip: `file` (str, relative to `root`), `label` (str), `fold` (int 1..n, or
            <NA> until folds are drawn) and, when grouped, `group`.
        preset: the recipe's default preset.
        fold_names: fold number -> the source's name for it (e.g. a speaker), for tables.
        named_folds: results record the folds by their names in `fold_names` (a CSV's fold column
            of speakers; `fold_value`), not by number (ESC-50's folds, FSDD's speakers, drawn folds).
        vocab: the class order (None: sorted labels).
        fingerprint_names: files besides the clips whose content identifies the data (`meta/esc50.csv`).
        identity: how the table was read (columns, k, seed), part of an experiment's identity.
        description: one line saying what was found.
        drawn: whether the folds come from `draw_folds`.
        allow_outside: its file names may lie outside `root` (absolute paths in a CSV).
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
    allow_outside: bool = False
    named_folds: bool = False

    @property
    def folds(self) -> list[int]:
        "The fold numbers present, sorted."
        return sorted(int(f) for f in self.table["fold"].dropna().unique())

    def fold_name(self, fold: int) -> str:
        """How tables name a fold.

        Args:
            fold: the fold number.

        Returns:
            Its name in `fold_names` (a speaker), or 'fold k'.
        """
        return self.fold_names.get(int(fold), f"fold {fold}")

    def fold_value(self, fold: int) -> int | str:
        """A fold as results record it: the source's own value, its name when the folds are names.

        Args:
            fold: the fold number.

        Returns:
            The name (`named_folds`, e.g. "theo"), else the number.
        """
        return self.fold_names[int(fold)] if self.named_folds else int(fold)

    def files(self) -> list[Path]:
        "Every clip's path (`root` / `file`), in table order."
        return [self.root / f for f in self.table["file"]]


@dataclass(frozen=True)
class Recipe:
    """One dataset: everything about it that is not the same for every dataset. A dataset module
    defines its recipe and adds it with `register`.

    Attributes:
        name: the recipe's name (`--dataset`).
        preset: the name of its default preset.
        read: `read(spec) -> DataSource`.
        summary: one line describing its layout (listed when no layout is recognized).
        title: how summaries name the data, e.g. "FSDD (real speech, speaker held out)".
        detect: `detect(folder)`, whether a folder is in its layout (None: named with `--dataset` only).
        fallback: a layout most folders have (one subfolder per label), detected only when no other is.
        fixed_folds: its folds are part of the data (official folds, speakers): no `--repeats`.
        download: `download() -> folder`, for `--data download` (None: not downloadable).
        synthetic: `synthetic(folder, n_classes, clips_per_class) -> folder`, a generated set in its
            layout, for `--data synthetic` (None: none).
        check: `check(source, folds)`, the dataset's own checks of its table and every clip of `folds`,
            raising ValueError naming each problem (None: `check_source_files`).
    """

    name: str
    preset: str
    read: Callable[[SourceSpec], DataSource]
    summary: str
    title: str
    detect: Callable[[Path], bool] | None = None
    fallback: bool = False
    fixed_folds: bool = True
    download: Callable[[], Path] | None = None
    synthetic: Callable[[Path, int, int], Path] | None = None
    check: Callable[[DataSource, list[int]], None] | None = None


#: The one registry of datasets, by name, in the order they were registered (the package's: `esc50`,
#: `fsdd`, `folder` and `csv`). `register` adds one.
RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add `recipe` to `RECIPES`: `--dataset NAME`, detection and the summaries follow.

    Args:
        recipe: the dataset's recipe.

    Returns:
        `recipe`.

    Raises:
        ValueError: a recipe of that name is registered already.
    """
    if recipe.name in RECIPES:
        raise ValueError(f"a dataset recipe named {recipe.name!r} is registered already")
    RECIPES[recipe.name] = recipe
    return recipe


def describe_table(what: str, table: pd.DataFrame, drawn: bool = False, names: dict[int, str] | None = None) -> str:
    """The one line a recipe prints about what it read.

    Args:
        what: the layout, e.g. "ESC-50 layout".
        table: the source's table (`file`, `label`, `fold`).
        drawn: the folds are drawn later (not listed).
        names: fold number -> its name (a speaker).

    Returns:
        e.g. "FSDD (one fold per speaker): 3000 clips, 10 labels, folds george, jackson, ...".
    """
    numbers = sorted(int(f) for f in table["fold"].dropna().unique())
    folds = "" if drawn else f", folds {', '.join((names or {}).get(f, str(f)) for f in numbers)}"
    return f"{what}: {len(table)} clips, {table['label'].nunique()} labels{folds}"


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
    for recipe in sorted(RECIPES.values(), key=lambda r: r.fallback):  # specific layouts first
        if recipe.detect is not None and recipe.detect(path):
            return recipe.name
    layouts = "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values() if r.detect is not None)
    from ..audio.io import unreadable_files_note  # here: keeps `compare --help` free of torch

    raise ValueError(f"--data {path} is in no known layout ({layouts}); for a table of clips use --csv FILE"
                     f"{unreadable_files_note(itertools.islice(path.rglob('*'), 100_000))}")  # fmt: skip


def read_source(spec: SourceSpec) -> DataSource:
    """Read the dataset `spec` names with its recipe (detected when `spec.dataset` is None).

    Sources without folds (a folder, a CSV without `fold_col`) are returned with `drawn=True` and
    no folds yet (later drawn by `draw_folds`, grouped by `group_col` or `group_regex`); one whose
    names look like fragments of recordings, with no groups, gets a warning naming the fix. With
    `group_regex`, fixed folds (ESC-50's, FSDD's speakers, a fold column) are checked to keep each
    group in one fold.

    Args:
        spec: where the dataset is and how to read it.

    Returns:
        The `DataSource`.

    Raises:
        ValueError: a bad option, column or table, naming the file, column or option at fault; a
            `group_regex` that does not match a file (naming it), or that puts one group in two fixed folds.
        FileNotFoundError: a dataset folder, CSV or clip folder that does not exist or holds no clips.
    """
    if spec.csv is not None:
        if spec.dataset not in (None, "csv"):
            raise ValueError(f"--csv reads a table of your own; it does not go with --dataset {spec.dataset}")
        return _grouped(RECIPES["csv"].read(spec), spec.group_regex)
    if spec.data is None:
        raise ValueError("give --data DIR (a dataset folder) or --csv FILE")
    name = spec.dataset or detect_dataset(spec.data)
    if name not in RECIPES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(RECIPES)}")
    if name == "csv":
        raise ValueError("--dataset csv needs --csv FILE")
    return _grouped(RECIPES[name].read(spec), spec.group_regex)


def _grouped(source: DataSource, regex: str | None) -> DataSource:
    """`source` with the groups of `regex` (see `read_source`); without it, the warning when its
    names look like fragments of recordings and its folds are still to be drawn clip by clip."""
    table = source.table
    if regex is None:
        if source.drawn and "group" not in table.columns:
            warn_shared_prefixes(list(table["file"]), list(table["label"]), fix="--group-regex (group_regex= in compare())",
                                 example="--group-regex '{regex}'", stacklevel=4)  # fmt: skip
        return source
    if "group" in table.columns:
        raise ValueError("give --group-col (groups from a CSV column) or --group-regex (groups from file names), not both")
    groups = groups_from_names(table["file"], regex, "--group-regex")
    if source.drawn:
        table = table.assign(group=groups)
    else:  # fixed folds: they must already keep each group whole
        folds = table.assign(group=groups).groupby("group")["fold"].unique()
        split = folds[folds.map(len) > 1]
        if len(split):
            group, where = split.index[0], sorted(int(f) for f in split.iloc[0])
            raise ValueError(f"--group-regex '{regex}' puts group {group!r} in {source.fold_name(where[0])} and "
                             f"{source.fold_name(where[1])} ({len(split)} group(s) span folds) of {source.description or source.dataset}: "
                             "those folds are the source's own, so one recording would be trained and validated on; fix the "
                             "folds (or the regex)")  # fmt: skip
    return replace(source, table=table, identity={**source.identity, "group_regex": regex})


def check_source_files(source: DataSource, full: bool = True) -> dict[str, dict]:
    """Check every clip of `source` (`check_audio_files`: every bad file named at once).

    Args:
        source: the `DataSource`.
        full: also decode every sample of each file (False: headers only).

    Returns:
        `{str(path): {"frames", "samplerate", "channels"}}`, each file's header facts.

    Raises:
        AudioFilesError: (a ValueError) any file has a problem; the message names every bad file.
    """
    from ..audio.check import check_audio_files  # here: keeps `compare --help` free of torch

    return check_audio_files(source.files(), full=full)


def source_dataloaders(source: DataSource, valid_fold: int, settings: AudioSettings, batch_tfms: Sequence = (), device: str | None = None, validate: bool | str = False,
                       progress: bool = True, **kwargs):  # fmt: skip
    """The `AudioDataLoaders` of one fold of `source`: training = every other fold.

    Args:
        source: a `DataSource` with folds (drawn ones included).
        valid_fold: the fold number held out for validation.
        settings: `AudioSettings`, resolved (`settings.resolved(rate)`) when the preset leaves the rate open.
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
    from ..data import AudioDataLoaders  # here: keeps `compare --help` free of torch

    s = settings.resolved()
    if s.num_workers is not None:
        kwargs.setdefault("num_workers", s.num_workers)
    return AudioDataLoaders.from_df(
        source.table, path=source.root, fn_col="file", label_col="label", valid_col=None, fold_col="fold", valid_fold=valid_fold,
        sample_rate=s.sample_rate, duration=s.duration, bs=s.bs, spec=s.spec_kwargs(), waveform_norm=s.waveform_norm,
        batch_tfms=batch_tfms, cache=s.cache, validate=validate, device=device, vocab=source.vocab, audio_dtype=s.audio_dtype,
        progress=progress, allow_outside=source.allow_outside, **kwargs,
    )  # fmt: skip
