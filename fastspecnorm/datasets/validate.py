"""Check an ESC-50-layout folder before training and report every problem at once.

`validate_esc50(path)` makes one pass over `meta/esc50.csv` and the files it lists in `audio/` and
returns a `ValidationReport` holding every problem found, not only the first:

errors (training would fail or be wrong)
    the CSV is missing, unparsable, lacks a required column (filename, fold, target, category) or
    lists no clip; a category has several targets; a requested fold does not exist; a row has no
    filename or a non-integer fold or target; a filename is listed twice; a listed file is missing,
    is not audio (unreadable), is truncated (its WAV header claims more frames than the file
    holds, or fewer frames decode than the header says), has zero length, or (full mode) holds
    NaN or Inf samples.
warnings (handled by policy, reported)
    a file whose channel count differs from `expected_channels` (downmixed to mono) or whose
    sample rate differs from the dataset's usual rate (resampled to `sample_rate`).

Modes: "quick" reads the CSV, checks that each file exists and reads its header (soundfile
`info` plus a parse of the WAV chunk sizes, which finds truncated WAV files); about 0.3 ms per file.
"full" also decodes every sample (finds NaN/Inf samples and damaged compressed files).

With `skip_bad=True`, problems tied to one row (a bad file, a duplicate, a bad fold) do not stop
training: the rows are dropped, listed in `report.skipped` and as warnings, and the cleaned table
of good rows is returned with the report. Problems of the whole dataset stay errors.

>>> report = validate_esc50("data/ESC-50", mode="quick", progress=False)  # doctest: +SKIP
>>> report.raise_if_errors()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["validate_esc50", "ValidationReport", "DatasetValidationError", "VALIDATION_MODES", "META_NAME"]

META_NAME = "meta/esc50.csv"
REQUIRED_COLUMNS = ("filename", "fold", "target", "category")
VALIDATION_MODES = ("quick", "full")
_MAX_LISTED = 20  # problems of one kind shown by str(report); raise_if_errors lists them all


class DatasetValidationError(ValueError):
    "Raised by `ValidationReport.raise_if_errors`; `.report` holds the full `ValidationReport`."

    def __init__(self, message: str, report: ValidationReport):
        super().__init__(message)
        self.report = report


@dataclass
class ValidationReport:
    """What `validate_esc50` found in one ESC-50-layout folder.

    errors, warnings: lists of `(name, message)`, where name is a filename from the CSV or
    "meta/esc50.csv" for problems of the table itself. skipped: `(filename, message)` of the rows
    dropped in `skip_bad` mode (also listed as warnings). bad_files: every filename with a
    problem of its own (missing, unreadable, truncated, empty, NaN/Inf, duplicated, bad fold or
    target), in CSV order. table: the parsed CSV (None when it could not be read), fold and target
    as ints where they parse. sample_rates, channels: how many checked files have each value.
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
    facts: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)  # header facts per readable file

    @property
    def ok(self) -> bool:
        "True when there is no error (warnings and, in skip_bad mode, skipped rows are allowed)."
        return not self.errors

    def good_rows(self) -> pd.DataFrame:
        """The CSV rows without a problem of their own, `fold` and `target` as int, index reset.

        An empty table (with the required columns) when the CSV could not be read."""
        if self.table is None:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in REQUIRED_COLUMNS})
        bad = set(self.bad_files)
        df = self.table[~self.table["filename"].isin(bad) & self.table["filename"].notna()].copy()
        for col in ("fold", "target"):
            df[col] = df[col].astype(int)
        return df.reset_index(drop=True)

    def _add(self, kind: str, name: str, message: str) -> None:
        getattr(self, kind).append((name, message))

    def _file_problem(self, filename: str, message: str) -> None:
        "A problem tied to one row: an error, or a skipped row in skip_bad mode."
        if filename not in self.bad_files:
            self.bad_files.append(filename)
        if self.skip_bad:
            self.skipped.append((filename, message))
            self.warnings.append((filename, f"skipped: {message}"))
        else:
            self.errors.append((filename, message))

    def summary_line(self) -> str:
        what = f"{self.mode} check of {self.n_files_checked} audio file(s), {self.n_rows} row(s)"
        parts = [f"{len(self.errors)} error(s)", f"{len(self.warnings)} warning(s)"]
        if self.skip_bad:
            parts.append(f"{len(self.skipped)} row(s) skipped")
        return f"ESC-50 validation of {self.root} ({what}): " + ", ".join(parts)

    def __str__(self) -> str:
        lines = [self.summary_line()]
        for title, items in (("errors", self.errors), ("warnings", self.warnings)):
            if not items:
                continue
            lines.append(f"{title}:")
            lines += [f"  {name}: {msg}" for name, msg in items[:_MAX_LISTED]]
            if len(items) > _MAX_LISTED:
                lines.append(f"  ... and {len(items) - _MAX_LISTED} more {title} (see report.{title})")
        if self.sample_rates:
            rates = ", ".join(f"{sr} Hz: {n}" for sr, n in sorted(self.sample_rates.items()))
            chans = ", ".join(f"{c}: {n}" for c, n in sorted(self.channels.items()))
            lines.append(f"sample rates (files): {rates}; channels (files): {chans}")
        return "\n".join(lines)

    def raise_if_errors(self) -> ValidationReport:
        """Raise `DatasetValidationError` (a ValueError) listing every error, each with its file;
        return the report unchanged when there is none."""
        if self.ok:
            return self
        lines = [self.summary_line(), "errors:"] + [f"  {name}: {msg}" for name, msg in self.errors]
        if self.bad_files and not self.skip_bad:
            lines.append(
                "Fix or remove these files (and their rows in meta/esc50.csv), "
                "or pass skip_bad=True to train without them."
            )
        raise DatasetValidationError("\n".join(lines), self)


# ---------------------------------------------------------------------------------------------
# Audio headers


def _wav_data_sizes(path: Path) -> tuple[int, int, int] | None:
    """For a RIFF/WAVE file: `(declared data bytes, data bytes present, bytes per frame)`.

    None for other formats, for RF64 and for streaming headers whose data size is unknown
    (0 or 0xFFFFFFFF): there is nothing to compare. libsndfile silently shortens a truncated WAV,
    so this parse is what finds a header that claims more frames than the file holds.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        block_align = 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(min(csize, 16))
                if len(fmt) >= 14:
                    block_align = struct.unpack(endian + "H", fmt[12:14])[0]
            elif cid == b"data":
                if csize in (0, 0xFFFFFFFF) or block_align == 0:
                    return None
                return csize, size - (pos + 8), block_align
            pos += 8 + csize + (csize & 1)
    return None


def _check_audio_file(path: Path, full: bool) -> tuple[list[str], dict | None]:
    """Problems (error messages) of one audio file and its header facts (None when unreadable)."""
    import soundfile as sf

    if not path.exists():
        return [f"file is missing (expected at {path})"], None
    if not path.is_file():
        return [f"{path} is not a regular file"], None
    try:
        info = sf.info(str(path))
    except Exception as e:  # LibsndfileError / RuntimeError / TypeError depending on the format
        kind = "file is empty (0 bytes)" if path.stat().st_size == 0 else "not a readable audio file"
        return [f"{kind}: {e}"], None
    facts = {"frames": int(info.frames), "samplerate": int(info.samplerate), "channels": int(info.channels)}
    problems: list[str] = []
    try:
        sizes = _wav_data_sizes(path)
    except OSError as e:
        return [f"cannot read file: {e}"], facts
    if sizes is not None:
        declared, present, block_align = sizes
        if present < declared:
            problems.append(
                f"truncated: the WAV header claims {declared // block_align} frames ({declared} data bytes) "
                f"but the file holds {present // block_align} ({present} bytes)"
            )
    if facts["frames"] == 0 and not problems:
        problems.append("zero-length audio (0 frames)")
    if full and not problems:
        problems += _decode_problems(path, facts["frames"])
    return problems, facts


def _decode_problems(path: Path, frames: int) -> list[str]:
    "Decode every sample (in blocks): count frames and look for NaN/Inf."
    import soundfile as sf

    n_read = n_bad = 0
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                n_read += len(block)
                n_bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    except Exception as e:
        return [f"cannot decode audio after {n_read} frames: {e}"]
    problems = []
    if n_read < frames:
        problems.append(f"truncated: the header claims {frames} frames but only {n_read} decode")
    if n_bad:
        problems.append(f"holds {n_bad} NaN or Inf sample(s)")
    return problems


# ---------------------------------------------------------------------------------------------
# The CSV


def _read_table(report: ValidationReport, csv: Path) -> pd.DataFrame | None:
    "Read and check the table; record its problems. None when nothing more can be checked."
    if not csv.is_file():
        report._add("errors", META_NAME, f"metadata not found: {csv} (expected an ESC-50-layout folder with meta/esc50.csv and audio/)")
        return None
    try:
        df = pd.read_csv(csv, dtype={"filename": str, "category": str, "fold": str, "target": str})
    except Exception as e:  # ParserError, UnicodeDecodeError, EmptyDataError
        report._add("errors", META_NAME, f"cannot parse {csv}: {type(e).__name__}: {e}")
        return None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        report._add("errors", META_NAME, f"lacks required column(s) {missing}; it has {list(df.columns)}")
        return None
    report.n_rows = len(df)
    if df.empty:
        report._add("errors", META_NAME, f"{csv} lists no clips")
        return None
    df = df.copy()
    df["filename"] = df["filename"].where(df["filename"].isna(), df["filename"].astype(str).str.strip())
    return df


def _check_rows(report: ValidationReport, df: pd.DataFrame) -> pd.DataFrame:
    "Per-row checks: filename present, fold/target integers, no duplicate filenames."
    line = df.index + 2  # CSV line numbers (line 1 is the header)
    no_name = df["filename"].isna()
    for ln in line[no_name.to_numpy()]:
        # No filename to skip by: always an error.
        report._add("errors", META_NAME, f"line {ln} has no filename")
    for col in ("fold", "target"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = (num.isna() | (num != num.round())) & ~no_name
        for name, value in zip(df.loc[bad, "filename"], df.loc[bad, col], strict=True):
            what = f"has no {col}" if pd.isna(value) else f"{col} {value!r} is not an integer"
            report._file_problem(name, f"{what} in {META_NAME}")
        df[col] = num.where(~bad)
    for name in df.loc[df["category"].isna() & ~no_name, "filename"]:
        report._file_problem(name, f"has no category in {META_NAME}")
    counts = df.loc[~no_name, "filename"].value_counts()
    for name in df.loc[~no_name, "filename"].drop_duplicates():
        if counts[name] > 1:
            lines = ", ".join(str(ln) for ln in line[(df["filename"] == name).to_numpy()])
            report._file_problem(name, f"listed {counts[name]} times in {META_NAME} (lines {lines})")
    return df


def _check_categories(report: ValidationReport, df: pd.DataFrame) -> None:
    ok = df["target"].notna() & df["category"].notna()
    per_cat = df[ok].groupby("category")["target"].unique()
    for cat, targets in per_cat.items():
        if len(targets) > 1:
            report._add("errors", META_NAME, f"category {cat!r} has several targets {sorted(int(t) for t in targets)}")


def _norm_mode(mode) -> str:
    if mode is True:
        return "quick"
    if mode not in VALIDATION_MODES:
        raise ValueError(f"mode must be one of {VALIDATION_MODES} (or True for 'quick'), got {mode!r}")
    return mode


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
    """Check the ESC-50-layout folder `path` (`meta/esc50.csv` and `audio/`) in one pass.

    sample_rate: the rate (Hz) the data pipeline resamples to, named in the warnings.
    expected_channels: files with another channel count are reported as warnings (they are
    downmixed to mono). expected_sample_rate: files at another rate (Hz) are reported as warnings
    (they are resampled); None takes the rate most files have. folds: folds that must exist (e.g.
    `[valid_fold]`). mode: "full" decodes every file (NaN/Inf, damaged data), "quick" reads the CSV
    and each file's header only (missing, unreadable, truncated WAV, zero-length, channels, rates).
    progress: show a progress bar over the files.

    Returns a `ValidationReport`; call `.raise_if_errors()` to stop on errors. With `skip_bad=True`
    returns `(report, good_rows)`: rows with a problem of their own are dropped and listed in
    `report.skipped`, and `good_rows` is the cleaned table (fold and target as int).
    """
    mode = _norm_mode(mode)
    root = Path(path)
    report = ValidationReport(root=root, mode=mode, skip_bad=skip_bad)
    df = _read_table(report, root / "meta" / "esc50.csv")
    if df is not None:
        df = _check_rows(report, df)
        _check_categories(report, df)
        report.table = df
        _check_files(report, df, root / "audio", mode == "full", progress, expected_channels)
        _check_rates(report, sample_rate, expected_sample_rate)
        _check_folds(report, folds)
        first_line = {name: i for i, name in reversed(list(enumerate(df["filename"])))}
        # Report in CSV order (problems of the table itself first), whatever check found them.
        report.bad_files.sort(key=lambda name: first_line.get(name, len(first_line)))
        for items in (report.errors, report.warnings, report.skipped):
            items.sort(key=lambda item: first_line.get(item[0], -1))
        if skip_bad and df["filename"].notna().any() and not len(report.good_rows()):
            report._add("errors", META_NAME, "no row is left after skipping the bad files")
    if skip_bad:
        return report, report.good_rows()
    return report


def _check_files(report: ValidationReport, df: pd.DataFrame, audio: Path, full: bool, progress: bool, expected_channels: int) -> None:
    names = df["filename"].dropna().drop_duplicates().tolist()
    if not audio.is_dir():
        report._add("errors", "audio/", f"audio folder not found: {audio} ({len(names)} listed file(s) cannot be checked)")
        for name in names:
            if name not in report.bad_files:
                report.bad_files.append(name)
        return
    items = names
    if progress and names:
        from fastprogress.fastprogress import progress_bar

        items = progress_bar(names, leave=False)
        items.comment = "validating audio files"
    for name in items:
        problems, facts = _check_audio_file(audio / name, full)
        report.n_files_checked += 1
        for msg in problems:
            report._file_problem(name, msg)
        if facts is not None:
            report.facts[name] = facts
            report.sample_rates[facts["samplerate"]] += 1
            report.channels[facts["channels"]] += 1
            if facts["channels"] != expected_channels:
                report._add(
                    "warnings", name, f"has {facts['channels']} channels, expected {expected_channels}: it is downmixed to mono"
                )


def _check_rates(report: ValidationReport, sample_rate: int, expected_sample_rate: int | None) -> None:
    facts = report.facts
    if not facts:
        return
    usual = expected_sample_rate or report.sample_rates.most_common(1)[0][0]
    for name, f in facts.items():
        if f["samplerate"] != usual:
            what = "the expected" if expected_sample_rate else "most files'"
            report._add(
                "warnings", name, f"sample rate {f['samplerate']} Hz differs from {what} {usual} Hz: it is resampled to {sample_rate} Hz"
            )


def _check_folds(report: ValidationReport, folds: Iterable[int] | None) -> None:
    if folds is None or report.table is None:
        return
    rows = report.good_rows() if report.skip_bad else report.table[report.table["fold"].notna()]
    present = sorted({int(f) for f in rows["fold"]})
    for fold in folds:
        if fold not in present:
            after = " after skipping bad rows" if report.skip_bad and report.skipped else ""
            report._add("errors", META_NAME, f"fold {fold!r} does not exist{after}; folds are {present}")
