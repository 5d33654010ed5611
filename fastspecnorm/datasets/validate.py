"""Checking an ESC-50-layout folder before training, every problem reported at once (`validate_esc50`),
with the table's rules (`read_esc50_table`) and the loaders' file-name rule (`check_clip_names`, `resolve_clip`).
`fastspecnorm.audio.check` (torch) is imported where used: `fastspecnorm compare --help` reads this module."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "validate_esc50",
    "read_esc50_table",
    "resolve_clip",
    "ValidationReport",
    "DatasetValidationError",
    "DatasetNotFoundError",
    "REQUIRED_COLUMNS",
    "VALIDATION_MODES",
    "META_NAME",
]

META_NAME = "meta/esc50.csv"
REQUIRED_COLUMNS = ("filename", "fold", "target", "category")
VALIDATION_MODES = ("quick", "full")
_MAX_LISTED = 20  # problems of one kind shown by str(report); raise_if_errors lists them all


class DatasetValidationError(ValueError):
    """Raised by `ValidationReport.raise_if_errors` (a ValueError).

    Args:
        message: the error's text, listing every error with its file.
        report: the `ValidationReport` the errors come from, kept as `.report`.
    """

    def __init__(self, message: str, report: ValidationReport):
        super().__init__(message)
        self.report = report


class DatasetNotFoundError(DatasetValidationError, FileNotFoundError):
    """A `DatasetValidationError` whose every error is something absent (the CSV, `audio/`, listed
    files): also a `FileNotFoundError`, so either `except` clause catches it."""


@dataclass
class ValidationReport:
    """What `validate_esc50` found in one ESC-50-layout folder.

    `str(report)` lists the problems (the first 20 of each kind); `raise_if_errors` raises with all.
    Every list is in CSV order, problems of the table itself first.

    Attributes:
        root: the folder checked.
        mode: "quick" or "full" (`validate_esc50`), "table" (`read_esc50_table`: no audio file opened).
        skip_bad: whether rows with a problem of their own are skipped instead of errors.
        errors: `(name, message)` pairs; name is a filename from the CSV, "meta/esc50.csv" for
            problems of the table itself, or "audio/" for a missing folder.
        warnings: `(name, message)` pairs, named as errors are.
        skipped: `(filename, message)` of the rows dropped in `skip_bad` mode (also warnings).
        bad_files: every filename with a problem of its own, in CSV order.
        n_rows: the CSV's rows.
        n_files_checked: the audio files checked.
        sample_rates: how many checked files have each sample rate (Hz).
        channels: how many checked files have each channel count.
        table: the parsed CSV (None when unreadable), fold and target as numbers where they parse.
        facts: the header facts of each readable file (`{"frames", "samplerate", "channels"}`).
        absent: the errors that are missing files or folders.
        clip_paths: the file of each filename the name rule accepts, the files to check.
    """

    root: Path
    mode: str
    skip_bad: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)
    n_rows: int = 0
    n_files_checked: int = 0
    sample_rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    table: pd.DataFrame | None = None
    facts: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)
    absent: set[tuple[str, str]] = field(default_factory=set, repr=False)
    clip_paths: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        "True when there is no error (warnings and, in skip_bad mode, skipped rows are allowed)."
        return not self.errors

    def good_rows(self) -> pd.DataFrame:
        """The CSV rows without a problem of their own: every column, `fold` and `target` as int, index
        reset; empty (with the required columns) when the CSV could not be read."""
        if self.table is None:
            return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
        df = self.table[~self.table["filename"].isin(self.bad_files) & self.table["filename"].notna()]
        return df.astype({"fold": int, "target": int}).reset_index(drop=True)

    def _error(self, name: str, message: str, absent: bool = False) -> None:
        self.errors.append((name, message))
        if absent:
            self.absent.add((name, message))

    def _row_problem(self, filename: str, message: str, absent: bool = False) -> None:
        "A problem of one row: an error, or a skipped row (and a warning) in skip_bad mode."
        if filename not in self.bad_files:
            self.bad_files.append(filename)
        if self.skip_bad:
            self.skipped.append((filename, message))
            self.warnings.append((filename, f"skipped: {message}"))
        else:
            self._error(filename, message, absent)

    def summary_line(self) -> str:
        "One line: the folder, what was checked, and the numbers of errors, warnings and skipped rows."
        if self.mode == "table":
            what = f"table check of {self.n_rows} row(s), audio files not opened"
        else:
            what = f"{self.mode} check of {self.n_files_checked} audio file(s), {self.n_rows} row(s)"
        skipped = f", {len(self.skipped)} row(s) skipped" if self.skip_bad else ""
        return f"ESC-50 validation of {self.root} ({what}): {len(self.errors)} error(s), {len(self.warnings)} warning(s){skipped}"

    def __str__(self) -> str:
        lines = [self.summary_line()]
        for title, items in (("errors", self.errors), ("warnings", self.warnings)):
            if items:
                lines += [f"{title}:", *(f"  {name}: {msg}" for name, msg in items[:_MAX_LISTED])]
            if len(items) > _MAX_LISTED:
                lines.append(f"  ... and {len(items) - _MAX_LISTED} more {title} (see report.{title})")
        if self.sample_rates:
            rates = ", ".join(f"{sr} Hz: {n}" for sr, n in sorted(self.sample_rates.items()))
            chans = ", ".join(f"{c}: {n}" for c, n in sorted(self.channels.items()))
            lines.append(f"sample rates (files): {rates}; channels (files): {chans}")
        return "\n".join(lines)

    def raise_if_errors(self, skip_fix: str | None = "pass skip_bad=True to train without them") -> ValidationReport:
        """Raise on errors, listing every error, each with its file.

        Args:
            skip_fix: how the caller trains without the bad files, the end of the message's advice;
                None offers none (the command, which has no such option).

        Returns:
            The report, when there is no error.

        Raises:
            DatasetValidationError: (a ValueError) any error; a `DatasetNotFoundError` (also a
                FileNotFoundError) when every error is something absent (the CSV, `audio/`, files).
        """
        if self.ok:
            return self
        lines = [self.summary_line(), "errors:"] + [f"  {name}: {msg}" for name, msg in self.errors]
        if self.bad_files and not self.skip_bad:
            lines.append(
                "Fix or remove these files (and their rows in meta/esc50.csv)" + (f", or {skip_fix}." if skip_fix else ".")
            )
        error = DatasetNotFoundError if all(e in self.absent for e in self.errors) else DatasetValidationError
        raise error("\n".join(lines), self)


def resolve_clip(root: str | os.PathLike, filename: str) -> Path:
    """The path of the clip `filename` of `root/meta/esc50.csv`, by the loaders' file-name rule
    (`fastspecnorm.audio.check.check_clip_names`); only the name and a link's target are looked at.

    Args:
        root: the ESC-50-layout folder.
        filename: a value of the CSV's `filename` column.

    Returns:
        `root/audio/filename`, normalized (`os.path.normpath`).

    Raises:
        ValueError: naming the filename, for a name `check_clip_names` refuses: empty (or NaN), with
            leading or trailing whitespace, absolute, leaving `audio/` with `..`, or a link outside it
            (subfolders of `audio/` are allowed).

    Examples:
        >>> resolve_clip("ESC-50", "1-100032-A-0.wav").as_posix()
        'ESC-50/audio/1-100032-A-0.wav'
        >>> resolve_clip("ESC-50", "../1-100032-A-0.wav")
        Traceback (most recent call last):
        ...
        ValueError: filename '../1-100032-A-0.wav' leaves the audio folder with '..': list only clips inside ...
    """
    from ..audio.check import check_clip_names  # here: keeps `compare --help` free of torch

    audio = Path(root) / "audio"
    (name,), problems = check_clip_names([filename], audio)
    if problems:
        raise ValueError(f"filename {problems[0][1]}")
    return audio / name


def read_esc50_table(path: str | os.PathLike, skip_bad: bool = False) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and check `path/meta/esc50.csv` alone, opening no audio file.

    Every error `validate_esc50` lists except a requested fold and the files themselves (the rules
    `read_esc50_meta` and `esc50_dataloaders` share). Nothing is raised: call `report.raise_if_errors()`.

    Args:
        path: the ESC-50-layout folder.
        skip_bad: rows with a problem of their own are skipped (warnings) instead of errors.

    Returns:
        `(good_rows, report)`: `report.good_rows()` and a `ValidationReport` of mode "table" listing
            every problem (`report.table` holds every row as read).
    """
    report = ValidationReport(root=Path(path), mode="table", skip_bad=skip_bad)
    _check_table(report)
    _in_csv_order(report)
    return report.good_rows(), report


def _check_table(report: ValidationReport) -> None:
    "Read the CSV into `report.table` (as strings, then numbers) and record every problem of its rows and labels."
    from ..audio.check import check_clip_names  # here: keeps `compare --help` free of torch

    csv = report.root / META_NAME
    if not csv.is_file():
        message = f"metadata not found: {csv} (expected an ESC-50-layout folder with meta/esc50.csv and audio/)"
        report._error(META_NAME, message, absent=True)
        return
    try:
        df = pd.read_csv(csv, dtype=dict.fromkeys(REQUIRED_COLUMNS, str))
    except Exception as e:  # ParserError, UnicodeDecodeError, EmptyDataError, OSError
        report._error(META_NAME, f"cannot parse {csv}: {type(e).__name__}: {e}")
        return
    if missing := [c for c in REQUIRED_COLUMNS if c not in df.columns]:
        report._error(META_NAME, f"lacks required column(s) {missing}; it has {list(df.columns)}")
        return
    report.n_rows = len(df)
    if df.empty:
        report._error(META_NAME, f"{csv} lists no clips")
        return
    named = df["filename"].notna()
    for line in df.index[~named] + 2:  # CSV line numbers (line 1 is the header); no filename to skip by: an error
        report._error(META_NAME, f"line {line} has no filename")
    names, audio = df.loc[named, "filename"], report.root / "audio"
    paths, problems = check_clip_names(names.tolist(), audio, rows=[f"line {i + 2}" for i in names.index])
    for name, message in dict.fromkeys((names.iloc[row], message) for row, message in problems):
        report._row_problem(name, message)  # once per filename: the report names rows by filename
    refused = {row for row, _ in problems}
    report.clip_paths = {name: audio / p for row, (name, p) in enumerate(zip(names, paths, strict=True)) if row not in refused}
    for col, lowest in (("fold", 1), ("target", 0)):
        num = pd.to_numeric(df[col], errors="coerce")
        said = f"{col} " + df[col].map(repr)
        what = np.select(  # the first that holds, per row; "" for a fine value
            [df[col].isna(), ~np.isfinite(num) | (num != num.round()), num.abs() > 2**53, num < lowest],
            [f"has no {col}", said + " is not an integer", said + f" is too large ({col}s are integers below 2**53)",
             said + f" is below {lowest} ({col}s are integers >= {lowest})"],  # 2**53: past float64's exact integers
            "",
        )  # fmt: skip
        bad = (what != "") & named
        for name, message in zip(df["filename"][bad], what[bad.to_numpy()], strict=True):
            report._row_problem(name, f"{message} in {META_NAME}")
        df[col] = num.where(~bad)
    for name in df.loc[df["category"].isna() & named, "filename"]:
        report._row_problem(name, f"has no category in {META_NAME}")
    labels = df[df["target"].notna() & df["category"].notna()]
    for category, targets in labels.groupby("category")["target"].unique().items():
        if len(targets) > 1:
            found = sorted(int(t) for t in targets)
            report._error(META_NAME, f"category {category!r} has several targets {found}: give each category one target")
    for target, categories in labels.groupby("target")["category"].unique().items():
        if len(categories) > 1:
            message = (f"target {int(target)} has several categories {sorted(categories)}: give each target one category "
                       "(spelled the same, case included) or each category its own target")  # fmt: skip
            report._error(META_NAME, message)
    report.table = df


def _in_csv_order(report: ValidationReport) -> None:
    "Problems of the table itself first, then by the first CSV line of their filename, whichever check found them."
    if report.table is None:
        return
    first = {name: i for i, name in reversed(list(enumerate(report.table["filename"])))}
    report.bad_files.sort(key=lambda name: first.get(name, len(first)))
    for items in (report.errors, report.warnings, report.skipped):
        items.sort(key=lambda item: first.get(item[0], -1))


def validate_esc50(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    expected_channels: int = 1,
    skip_bad: bool = False,
    progress: bool = True,
    folds: Iterable[int] | None = None,
    mode: str = "full",
    expected_sample_rate: int | None = None,
):
    """Check the ESC-50-layout folder `path` (`meta/esc50.csv` and `audio/`) in one pass, reporting
    every problem found: the table first, then each listed file whose name passes `resolve_clip`, by
    `fastspecnorm.audio.check.check_audio_file`, the loaders' check.

    - errors (training would fail or be wrong): the CSV is missing, unparsable, lacks a required
      column (filename, fold, target, category) or lists no clip; a category has several targets
      or a target several categories (case counts); a requested fold does not exist; a row has no
      filename, a fold that is not an integer >= 1 or a target that is not an integer >= 0; a
      filename breaks `resolve_clip`'s rule; a clip is listed twice, under any spelling (`x.wav`
      and `./x.wav`); a listed file is missing, unreadable, claims a sample rate outside
      `SAMPLE_RATE_RANGE`, is truncated, has zero length, or (full mode) holds NaN or Inf samples.
    - warnings (handled, reported): a channel count other than `expected_channels` (downmixed to
      mono) or a sample rate other than the dataset's usual one (resampled to `sample_rate`).

    Args:
        path: the ESC-50-layout folder.
        sample_rate: the rate (Hz) the data pipeline resamples to, named in the warnings.
        expected_channels: files with another channel count are reported as warnings.
        skip_bad: rows with a problem of their own (a bad file or name, a duplicate, a bad fold) are
            dropped and listed in `report.skipped` and as warnings instead of errors; problems of the
            whole dataset stay errors.
        progress: show a progress bar over the files.
        folds: folds that must exist (e.g. `[valid_fold]`); None: no fold is required.
        mode: "full" decodes every sample (NaN/Inf samples, damaged compressed files); "quick" (or
            True) reads each file's header only (and a WAV's chunk sizes), much faster.
        expected_sample_rate: files at another rate (Hz) are reported as warnings; None takes the
            rate most files have.

    Returns:
        A `ValidationReport`; call `.raise_if_errors()` to stop on errors. With `skip_bad=True`,
            `(report, good_rows)`, `good_rows` the cleaned table (fold and target as int).

    Raises:
        ValueError: `mode` is not "quick", "full" or True. Problems in the data are never raised
            here: they are in the report.

    Examples:
        A small generated dataset with one listed file removed:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from fastspecnorm.datasets.synthetic import make_synthetic_esc50
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = make_synthetic_esc50(Path(tmp) / "esc50", n_classes=2, clips_per_class=2, sample_rate=8000, duration=0.5)
        ...     (root / "audio" / "1-156051-A-1.wav").unlink()
        ...     report = validate_esc50(root, mode="quick", progress=False)
        ...     print(report.ok, report.n_files_checked, report.bad_files)
        False 4 ['1-156051-A-1.wav']
    """
    mode = "quick" if mode is True else mode
    if mode not in VALIDATION_MODES:
        raise ValueError(f"mode must be one of {VALIDATION_MODES} (or True for 'quick'), got {mode!r}")
    report = ValidationReport(root=Path(path), mode=mode, skip_bad=skip_bad)
    _check_table(report)
    if report.table is not None:
        _check_files(report, mode == "full", progress, sample_rate, expected_channels, expected_sample_rate)
        if folds is not None:
            table = report.good_rows() if skip_bad else report.table[report.table["fold"].notna()]
            present = sorted({int(f) for f in table["fold"]})
            after = " after skipping bad rows" if skip_bad and report.skipped else ""
            for fold in (f for f in folds if f not in present):
                report._error(META_NAME, f"fold {fold!r} does not exist{after}; folds are {present}")
        if skip_bad and report.table["filename"].notna().any() and report.good_rows().empty:
            report._error(META_NAME, "no row is left after skipping the bad files")
        _in_csv_order(report)
    return (report, report.good_rows()) if skip_bad else report


def _check_files(
    report: ValidationReport, full: bool, progress: bool, sample_rate: int, channels: int, expected_rate: int | None
) -> None:
    "Each accepted clip by `check_audio_file`; a warning for other channel counts and, for usable files, other rates."
    from ..audio.check import check_audio_file  # here: keeps `compare --help` free of torch

    paths, audio = report.clip_paths, report.root / "audio"
    if not audio.is_dir():
        report._error("audio/", f"audio folder not found: {audio} ({len(paths)} listed file(s) cannot be checked)", absent=True)
        report.bad_files += [name for name in paths if name not in report.bad_files]
        return
    names = list(paths)
    if progress and names:
        from fastprogress.fastprogress import progress_bar

        names = progress_bar(names, leave=False)
        names.comment = "validating audio files"
    for name in names:
        report.n_files_checked += 1
        problems, facts = check_audio_file(paths[name], full)
        for message in problems:
            report._row_problem(name, message, absent=facts is None and not paths[name].exists())
        if facts is not None:
            report.facts[name] = facts
    report.sample_rates = Counter(f["samplerate"] for f in report.facts.values())
    report.channels = Counter(f["channels"] for f in report.facts.values())
    usual = expected_rate or max(report.sample_rates, key=report.sample_rates.get, default=None)  # the most common
    whose = "the expected" if expected_rate else "most files'"
    bad = set(report.bad_files)  # refused or skipped: never resampled, so no warning
    for name, f in report.facts.items():
        if f["channels"] != channels:
            report.warnings.append((name, f"has {f['channels']} channels, expected {channels}: it is downmixed to mono"))
        if f["samplerate"] != usual and name not in bad:
            report.warnings.append(
                (name, f"sample rate {f['samplerate']} Hz differs from {whose} {usual} Hz: it is resampled to {sample_rate} Hz")
            )
