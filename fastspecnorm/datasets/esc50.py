"""ESC-50 on the official folds: its recipe (`RECIPE`), reading its table, its DataLoaders and download.

`CrossValidationSplitter`, the split by fold of the reference article, is `fastspecnorm.data`'s, also named here."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

import pandas as pd

from ..presets import get_settings
from .sources import DataSource, Recipe, SourceSpec, describe_table, register, source_dataloaders
from .synthetic import make_synthetic_esc50
from .validate import VALIDATION_MODES, read_esc50_table, resolve_clip, validate_esc50

__all__ = ["ESC50_URL", "RECIPE", "read_esc50_meta", "esc50_dataloaders", "esc50_source", "download_esc50"]

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"


def download_esc50() -> Path:
    """Download and extract ESC-50 with fastai's `untar_data` (once; later calls reuse it).

    Returns:
        The folder holding `meta/` and `audio/`.

    Raises:
        FileNotFoundError: the download holds no `meta/esc50.csv`.
    """
    from fastai.data.external import untar_data

    root = Path(untar_data(ESC50_URL))
    found = [root] if _is_esc50(root) else sorted(p.parent.parent for p in root.glob("*/meta/esc50.csv"))
    if not found:
        raise FileNotFoundError(f"downloaded ESC-50 to {root} but found no meta/esc50.csv inside")
    return found[0]


def read_esc50_meta(path: str | os.PathLike, check_files: bool = True) -> pd.DataFrame:
    """Read and check `path/meta/esc50.csv` by the rules of `validate_esc50`.

    Args:
        path: the ESC-50-layout folder (holding `meta/esc50.csv` and `audio/`).
        check_files: also check every listed file's header (`validate_esc50(mode="quick")`); False
            checks the table alone (`read_esc50_table`).

    Returns:
        The table (every column of the CSV) with `fold` and `target` as ints.

    Raises:
        DatasetValidationError: a ValueError listing every problem with its file or CSV line (see
            `ValidationReport.raise_if_errors`).
    """
    report = validate_esc50(path, mode="quick", progress=False) if check_files else read_esc50_table(path)[1]
    return report.raise_if_errors().good_rows()


def _checked_meta(root: Path, valid_fold: int, validate: bool | str, skip_bad: bool, sample_rate: int):
    "The metadata table after `validate_esc50` (see `esc50_dataloaders`), and the report (None if not validated)."
    if validate is False:
        if skip_bad:
            raise ValueError("skip_bad=True needs validation; pass validate=True (quick) or validate='full'")
        return read_esc50_meta(root, check_files=False), None
    if validate is not True and validate not in VALIDATION_MODES:
        raise ValueError(f"validate must be True, False, 'quick' or 'full', got {validate!r}")
    result = validate_esc50(
        root, sample_rate=sample_rate, skip_bad=skip_bad, progress=validate == "full", folds=[valid_fold], mode=validate
    )
    report = (result[0] if skip_bad else result).raise_if_errors()
    if report.warnings:
        shown = "; ".join(f"{name}: {msg}" for name, msg in report.warnings[:5])
        more = f"; ... and {len(report.warnings) - 5} more (dls.validation_report has all)" if len(report.warnings) > 5 else ""
        warnings.warn(f"ESC-50 data in {root}: {len(report.warnings)} warning(s): {shown}{more}", stacklevel=3)
    return report.good_rows(), report


def esc50_dataloaders(
    path: str | os.PathLike | None = None,
    valid_fold: int = 1,
    bs: int | None = None,
    preset: str = "blog",
    batch_tfms: Sequence = (),
    device: str | None = None,
    validate: bool | str = True,
    skip_bad: bool = False,
    **settings,
):
    """fastai DataLoaders over an ESC-50-layout folder, on its official folds.

    ESC-50 layout: `ROOT/meta/esc50.csv` (columns filename, fold, target, category, ...) and the
    clips in `ROOT/audio/`. Training = every fold except `valid_fold` (fragments of one source
    recording share a fold, so the official folds are the only honest split). Classes are the CSV's
    categories, ordered by target, so a subset of classes works.

    Args:
        path: the ESC-50-layout folder (None: downloaded with `untar_data`, `download_esc50`).
        valid_fold: the fold held out for validation.
        bs: batch size (None: the preset's, 64 for "blog", 16 for "quick").
        preset: a name of `PRESETS`: "blog" is the reference experiment (16 kHz, linear dB
            spectrograms `(1, 201, 401)`), "quick" the CPU preset (64 mel bins, `(1, 64, 201)`).
        batch_tfms: transforms after `AudioToSpec` (e.g. a normalization).
        device: where batches go (None: fastai's default device).
        validate: True or "quick" checks the CSV and every listed file's header (`validate_esc50`);
            "full" also decodes every file; False only checks the CSV. Unusual channel counts or
            sample rates are warnings.
        skip_bad: drop the rows with a bad file (listed in a warning and in
            `dls.validation_report.skipped`) instead of raising; needs validation.
        **settings: any field of `ESC50Settings` (`AudioSettings`), overriding the preset's.

    Returns:
        The DataLoaders; batches are `AudioSpectrogram` `(bs, 1, freq, time)` and category
            indices. `dls.esc50_settings` holds the settings and `dls.validation_report` the
            `ValidationReport` (None when `validate=False`).

    Raises:
        DatasetValidationError: problems in the data, a ValueError listing every bad file at once
            (a `DatasetNotFoundError`, also a FileNotFoundError, when everything wrong is absent).
        ValueError: a bad `bs`, `validate` or `valid_fold`, `skip_bad` without validation, or a
            table with a single fold.
        TypeError: an unknown setting name.
    """
    s = get_settings(preset, **settings, **({} if bs is None else {"bs": bs}))
    root = download_esc50() if path is None else Path(path)
    df, report = _checked_meta(root, valid_fold, validate, skip_bad, s.sample_rate)
    dls = source_dataloaders(esc50_source(root, df), valid_fold, s, batch_tfms=batch_tfms, device=device, validate=False)
    dls.esc50_settings = s
    dls.validation_report = report
    return dls


def esc50_source(root: str | os.PathLike, df: pd.DataFrame) -> DataSource:
    """The `DataSource` of a checked ESC-50 table.

    Args:
        root: the ESC-50-layout folder.
        df: the checked rows of `meta/esc50.csv` (fold and target as int).

    Returns:
        The source: files in `audio/`, labels the categories (classes ordered by target), the CSV's
            folds, preset "quick"; the table keeps every column of the CSV.
    """
    root = Path(root)
    vocab = df.sort_values("target").drop_duplicates("category")["category"].astype(str).tolist()
    table = df.reset_index(drop=True).copy()  # every column of the CSV stays with its row (items, interpretation)
    table["file"] = [resolve_clip(root, f).relative_to(root).as_posix() for f in table["filename"]]  # links judged in root
    table["label"] = table["category"].astype(str)
    table["fold"] = table["fold"].astype(int)
    return DataSource("esc50", root, table, "quick", vocab=vocab, fingerprint_names=["meta/esc50.csv"])


def _read(spec: SourceSpec) -> DataSource:
    root = Path(spec.data)
    source = esc50_source(root, read_esc50_meta(root, check_files=False))
    source.description = describe_table("ESC-50 layout", source.table)
    return source


def _check(source: DataSource, folds: list[int]) -> None:
    "The table's rules and every clip, decoded (the validation folds' sample rates too)."
    validate_esc50(source.root, folds=folds, progress=False).raise_if_errors(skip_fix=None)  # the command has no skip_bad


def _is_esc50(path: Path) -> bool:
    return (path / "meta" / "esc50.csv").is_file()


RECIPE = register(Recipe("esc50", "quick", _read, "ESC-50 layout: meta/esc50.csv and audio/ (folds from the CSV)", "ESC-50",
                         detect=_is_esc50, download=download_esc50, synthetic=make_synthetic_esc50, check=_check))  # fmt: skip


def __getattr__(name: str):
    # `CrossValidationSplitter` is the loaders' (`fastspecnorm.data`), named here too, imported on first use (PEP 562).
    if name == "CrossValidationSplitter":
        return import_module("..data", __package__).CrossValidationSplitter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
