"""Crash-safe storage and statistical summary of experiment results.

Each finished training run of the normalization experiment gives one row: which
normalization (``norm``), validation fold (``fold``) and random seed (``seed``) it used,
how many ``epochs`` it trained, and its final-epoch validation ``accuracy`` as a fraction
in [0, 1]. Further columns (loss, duration, preset, ...) may be added freely.

:class:`ResultsStore` keeps those rows in a CSV file that is only ever replaced whole
(write a temporary file, ``fsync``, ``os.replace``), so a run killed at any moment leaves
either the old or the new file, never a half-written or duplicated row.

:func:`summarize` computes, per normalization, the mean accuracy with a Student-t
confidence interval, and paired differences against a baseline normalization matched on
(fold, seed), with a paired t-test. :func:`write_summary` writes those tables as
``summary.md`` and a plot as ``summary.png``.

Accuracies are stored and computed as fractions in [0, 1]; only the report shows percent.

Example::

    store = ResultsStore("out/results.csv")
    if ("none", 1, 0) not in store.done():
        store.append({"norm": "none", "fold": 1, "seed": 0, "epochs": 8, "accuracy": 0.71})
    write_summary(store.rows(), "out")
"""

import csv
import io
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .._io import atomic_write

__all__ = [
    "REQUIRED_COLUMNS",
    "DEFAULT_KEY",
    "ResultsStore",
    "Summary",
    "summarize",
    "write_summary",
]

REQUIRED_COLUMNS = ("norm", "fold", "seed", "epochs", "accuracy")
DEFAULT_KEY = ("norm", "fold", "seed")

# Columns whose values are whole numbers; they are written as plain integers ("3", not "3.0")
# and read back as ``int``.
_INTEGER_COLUMNS = ("fold", "seed", "epochs")

_PER_NORM_COLUMNS = ["n", "mean", "std", "ci_low", "ci_high", "min", "max"]
_PAIRED_COLUMNS = ["n_pairs", "mean_diff", "std_diff", "ci_low", "ci_high", "p_value"]


# ---------------------------------------------------------------------------------------
# Atomic file writing
# ---------------------------------------------------------------------------------------


def _atomic_write_bytes(path, data):
    """Replace the file ``path`` by ``data`` (bytes) so that a crash leaves old or new (see
    :func:`fastspecnorm._io.atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data))


# ---------------------------------------------------------------------------------------
# Row values
# ---------------------------------------------------------------------------------------


def _as_integer(value, column):
    """Return ``value`` as an ``int`` if it is a whole number (int, or a float such as 3.0).

    Raises ValueError naming ``column`` otherwise (bools, fractions, strings, NaN).
    """
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise ValueError(f"column {column!r} must be a whole number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r} must be a whole number, got {value!r}") from None
    if not math.isfinite(as_float) or not as_float.is_integer():
        raise ValueError(f"column {column!r} must be a whole number, got {value!r}")
    return int(as_float)


def _as_accuracy(value):
    """Return ``value`` as a float in [0, 1]; raise ValueError otherwise."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise ValueError(f"column 'accuracy' must be a finite number in [0, 1], got {value!r}")
    try:
        accuracy = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column 'accuracy' must be a finite number in [0, 1], got {value!r}") from None
    if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
        hint = " (a percentage? divide by 100)" if 1.0 < accuracy <= 100.0 else ""
        raise ValueError(f"column 'accuracy' must be a finite number in [0, 1], got {value!r}{hint}")
    return accuracy


def _as_scalar(value, column):
    """Unwrap NumPy / PyTorch zero-dimensional values to plain Python scalars."""
    # NumPy scalars first: np.float64 and np.str_ are also float and str subclasses.
    if isinstance(value, np.generic) or (hasattr(value, "item") and hasattr(value, "ndim")):
        if getattr(value, "ndim", 0) == 0:
            return value.item()
    elif value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(
        f"column {column!r} must hold a single value (str, number, bool or None), got {type(value).__name__}: {value!r}"
    )


def _cell_text(value):
    """The CSV text of a plain Python scalar; None and NaN become the empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _key_value(column, text):
    """Normalized key value from the CSV text of a key column: int for whole-number
    columns (fold, seed), the text itself otherwise (norm and any other key column)."""
    if column in _INTEGER_COLUMNS:
        return int(text)
    return text


# ---------------------------------------------------------------------------------------
# Results store
# ---------------------------------------------------------------------------------------


class ResultsStore:
    """One CSV file of experiment results, one row per finished run, written crash-safely.

    Args:
        path: the CSV file, e.g. ``OUT_DIR / "results.csv"``. It and its folder are created
            by the first :meth:`append`.
        key: the columns that identify a run; no two rows may share a key. Default
            ``("norm", "fold", "seed")``. Key columns are required in every row.

    Every row needs at least the columns ``norm`` (str), ``fold``, ``seed``, ``epochs``
    (whole numbers) and ``accuracy`` (a fraction in [0, 1]); any other columns are kept,
    in the order in which they first appeared. A row without some other row's column
    gets an empty cell (NaN when read).

    Every :meth:`append` rewrites the whole file through a temporary file and
    :func:`os.replace`, so a process killed at any moment leaves the previous file or the
    new one, never a partial or duplicated row; a temporary file left behind by such a
    kill is deleted by the next append. One process writes a store at a time (in a
    distributed run, rank 0): concurrent appends from several processes are not merged.

    Example::

        >>> store = ResultsStore(tmp_dir / "results.csv")            # doctest: +SKIP
        >>> store.append({"norm": "none", "fold": 1, "seed": 0,
        ...               "epochs": 8, "accuracy": 0.705})            # doctest: +SKIP
        >>> store.done()                                               # doctest: +SKIP
        {('none', 1, 0)}
    """

    def __init__(self, path, key=DEFAULT_KEY):
        if isinstance(key, str):
            raise TypeError(f"key must be a sequence of column names, got the string {key!r}")
        key = tuple(key)
        if not key:
            raise ValueError("key must name at least one column, got an empty sequence")
        for column in key:
            if not isinstance(column, str) or not column:
                raise TypeError(f"key columns must be non-empty strings, got {column!r}")
        self.path = Path(path)
        self.key = key
        # Required columns: the standard ones plus any extra key columns, in that order.
        self.required_columns = REQUIRED_COLUMNS + tuple(column for column in key if column not in REQUIRED_COLUMNS)

    def __repr__(self):
        return f"ResultsStore({str(self.path)!r}, key={self.key!r})"

    # -- reading ------------------------------------------------------------------------

    def _bad_file(self, problem):
        return ValueError(
            f"cannot read results file {self.path}: {problem}. ResultsStore writes this file "
            "atomically, so it was edited or written by something else; repair it by hand, "
            "or move it aside to start again (runs missing from it will be redone)."
        )

    def _read_text(self):
        """The file's text, or None when the file does not exist."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._bad_file(f"it is not UTF-8 text ({error})") from None

    def _read_table(self):
        """Parse and check the file with the ``csv`` module.

        Returns ``(header, records, keys)``: the column names, one list of cell strings per
        row, and the normalized key tuple of each row; ``([], [], [])`` when there is no file.
        Raises ValueError (see :meth:`_bad_file`) for a malformed file.
        """
        text = self._read_text()
        if text is None:
            return [], [], []
        try:
            lines = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as error:
            raise self._bad_file(f"malformed CSV ({error})") from None
        if not lines:
            raise self._bad_file("the file is empty, without even a header line")
        header, records = lines[0], lines[1:]
        if len(set(header)) != len(header):
            raise self._bad_file(f"the header repeats a column name: {header}")
        missing = [column for column in self.required_columns if column not in header]
        if missing:
            raise self._bad_file(f"the header {header} lacks required column(s) {missing}")
        positions = [header.index(column) for column in self.key]
        keys = []
        first_line_of_key = {}
        for line_number, record in enumerate(records, start=2):
            if len(record) != len(header):
                raise self._bad_file(f"line {line_number} has {len(record)} fields, the header has {len(header)}")
            try:
                key = tuple(_key_value(column, record[position]) for column, position in zip(self.key, positions, strict=True))
            except ValueError:
                written = {column: record[position] for column, position in zip(self.key, positions, strict=True)}
                raise self._bad_file(
                    f"line {line_number} has the key {written}, whose "
                    f"{'/'.join(c for c in self.key if c in _INTEGER_COLUMNS)} must be whole numbers"
                ) from None
            if key in first_line_of_key:
                raise self._bad_file(f"lines {first_line_of_key[key]} and {line_number} both record the run {key}")
            first_line_of_key[key] = line_number
            keys.append(key)
        return header, records, keys

    def rows(self):
        """All recorded rows as a DataFrame, one row per run, columns in file order.

        ``norm`` (and any other non-numeric key column) is read as text; ``fold``, ``seed``
        and ``epochs`` as integers, ``accuracy`` as float in [0, 1]; empty cells are NaN.
        When the file does not exist yet the result has no rows and the required columns.

        Raises:
            ValueError: the file exists but cannot be parsed; the message names it.
        """
        if not self.path.exists():
            return pd.DataFrame({column: [] for column in self.required_columns})
        header, _, _ = self._read_table()  # checks the structure, with clear messages
        text_columns = {column: str for column in self.key if column not in _INTEGER_COLUMNS}
        try:
            # Only the empty cell means "missing": a normalization called "null" or "NA"
            # must stay a string.
            frame = pd.read_csv(
                self.path,
                dtype=text_columns,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8",
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
            raise self._bad_file(f"pandas could not parse it ({error})") from None
        if list(frame.columns) != header:
            raise self._bad_file(f"pandas read the columns {list(frame.columns)}, not {header}")
        return frame

    def done(self):
        """The set of keys already recorded, e.g. ``{("none", 1, 0), ("global", 1, 0)}``.

        Values are normalized: ``norm`` is a str, ``fold`` and ``seed`` are ints, so the
        runner can test ``(norm, fold, seed) in store.done()`` with its own arguments.
        """
        _, _, keys = self._read_table()
        return set(keys)

    def __len__(self):
        return len(self._read_table()[1])

    def __contains__(self, key):
        return tuple(key) in self.done()

    # -- writing ------------------------------------------------------------------------

    def _clean_row(self, row):
        """Check ``row`` and return it as {column: plain Python scalar}, in the row's order."""
        if not isinstance(row, dict):
            try:
                row = dict(row)
            except (TypeError, ValueError):
                raise TypeError(f"row must be a dict of column -> value, got {type(row).__name__}") from None
        for column in row:
            if not isinstance(column, str) or not column:
                raise TypeError(f"column names must be non-empty strings, got {column!r}")
        missing = [
            column
            for column in self.required_columns
            if column not in row or row[column] is None or (isinstance(row[column], float) and math.isnan(row[column]))
        ]
        if missing:
            raise ValueError(
                f"row lacks required column(s) {missing} (required: {list(self.required_columns)}); got columns {list(row)}"
            )
        clean = {}
        for column, value in row.items():
            if column == "accuracy":
                clean[column] = _as_accuracy(value)
            elif column in _INTEGER_COLUMNS:
                clean[column] = _as_integer(value, column)
            else:
                clean[column] = _as_scalar(value, column)
        if not isinstance(clean["norm"], str) or not clean["norm"]:
            raise ValueError(f"column 'norm' must be a non-empty string such as 'global', got {row['norm']!r}")
        if clean["epochs"] < 0:
            raise ValueError(f"column 'epochs' must be >= 0, got {clean['epochs']}")
        return clean

    def append(self, row):
        """Add one finished run to the file, atomically.

        Args:
            row: dict of column -> value with at least ``norm``, ``fold``, ``seed``,
                ``epochs`` and ``accuracy`` (and any other key column). Values are plain
                scalars (NumPy and zero-dimensional tensor values are unwrapped).

        The existing rows are read, the new one added, and the whole file rewritten to a
        temporary file in the same folder, flushed, fsynced and renamed onto ``path``.

        Raises:
            ValueError: a required column is missing; ``accuracy`` is not a finite number
                in [0, 1]; ``fold``, ``seed`` or ``epochs`` is not a whole number; a row
                with the same key is already recorded (the runner should have skipped it);
                or the existing file cannot be parsed.
            TypeError: ``row`` is not a dict, or a value is not a single scalar.
        """
        clean = self._clean_row(row)
        new_cells = {column: _cell_text(value) for column, value in clean.items()}
        new_key = tuple(_key_value(column, new_cells[column]) for column in self.key)

        header, records, keys = self._read_table()
        if new_key in keys:
            raise ValueError(
                f"run {dict(zip(self.key, new_key, strict=True))} is already recorded in {self.path}; "
                "a finished run must be skipped, not run again (check done() before training)"
            )
        added_columns = [column for column in clean if column not in header]
        header = header + added_columns
        records = [record + [""] * len(added_columns) for record in records]
        records.append([new_cells.get(column, "") for column in header])

        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(records)
        _atomic_write_bytes(self.path, buffer.getvalue().encode("utf-8"))


# ---------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Result of :func:`summarize`.

    Attributes:
        per_norm: one row per normalization (index ``norm``) with columns ``n`` (runs),
            ``mean``, ``std`` (sample std, ddof=1), ``ci_low``, ``ci_high`` (Student-t
            interval for the mean), ``min``, ``max``; accuracies as fractions in [0, 1].
        paired: one row per normalization other than the baseline (index ``norm``) with
            ``n_pairs`` (runs matched on fold and seed), ``mean_diff`` (norm minus
            baseline, fraction), ``std_diff``, ``ci_low``, ``ci_high`` and ``p_value``
            (two-sided paired t-test). Empty when the baseline has no runs.
        baseline: the baseline normalization's name.
        confidence: the confidence level of the intervals, e.g. 0.95.
    """

    per_norm: pd.DataFrame
    paired: pd.DataFrame
    baseline: str
    confidence: float

    def __getitem__(self, name):
        """``summary["per_norm"]`` and ``summary["paired"]``, as for a dict."""
        if name not in ("per_norm", "paired"):
            raise KeyError(f"Summary has the tables 'per_norm' and 'paired', not {name!r}")
        return getattr(self, name)


def _mean_interval(values, confidence):
    """n, mean, sample std, and the Student-t interval of the mean of 1-D ``values``.

    The interval is mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n). With n = 1 the std
    and interval are NaN; with n = 0 everything but n is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return n, mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half_width = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return n, mean, std, mean - half_width, mean + half_width


def _paired_p_value(n, mean, std):
    """Two-sided p-value of the one-sample t-test of mean = 0 on n paired differences.

    NaN when n < 2. When all differences are equal (std = 0) the t statistic is infinite:
    p = 0 if they are non-zero, NaN if they are all zero (as scipy.stats.ttest_rel).
    """
    if n < 2:
        return math.nan
    if std == 0.0:
        return math.nan if mean == 0.0 else 0.0
    t_statistic = mean / (std / math.sqrt(n))
    return float(2.0 * stats.t.sf(abs(t_statistic), n - 1))


def _check_results_frame(df):
    """Raise a clear error unless ``df`` has the columns and values :func:`summarize` needs."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of results (e.g. ResultsStore.rows()), got {type(df).__name__}")
    needed = ["norm", "fold", "seed", "accuracy"]
    missing = [column for column in needed if column not in df.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}; they need {needed}, got {list(df.columns)}")
    accuracy = pd.to_numeric(df["accuracy"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(accuracy)
    if bad.any():
        raise ValueError(f"column 'accuracy' has missing or non-numeric values in rows {list(df.index[bad][:10])}")
    duplicated = df.duplicated(subset=["norm", "fold", "seed"], keep=False)
    if duplicated.any():
        examples = df.loc[duplicated, ["norm", "fold", "seed"]].head(6).to_dict("records")
        raise ValueError(f"results have more than one row for the same (norm, fold, seed), so runs cannot be paired: {examples}")


def _norm_order(df, order):
    """Normalizations in ``order`` (those without runs skipped), then the rest in order of
    first appearance in ``df``."""
    present = list(dict.fromkeys(df["norm"].astype(str)))
    if order is None:
        return present
    if isinstance(order, str):
        raise TypeError(f"order must be a sequence of normalization names, got {order!r}")
    ordered = [str(norm) for norm in dict.fromkeys(order) if str(norm) in present]
    return ordered + [norm for norm in present if norm not in ordered]


def summarize(df, baseline="none", confidence=0.95, order=None):
    """Per-normalization accuracy statistics and paired differences against a baseline.

    Args:
        df: one row per run with columns ``norm``, ``fold``, ``seed`` and ``accuracy``
            (fraction in [0, 1]), e.g. ``ResultsStore.rows()``; at most one row per
            (norm, fold, seed).
        baseline: the normalization that the others are compared with, default "none".
        confidence: level of the Student-t confidence intervals, in (0, 1); default 0.95.
        order: optional sequence of normalization names giving the row order; names without
            runs are skipped and normalizations not listed follow in order of first
            appearance. Default: order of first appearance.

    Returns:
        :class:`Summary` with tables ``per_norm`` and ``paired`` (see there), in fractions.

    Statistics: ``std`` is the sample standard deviation (ddof=1); the interval is
    mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n). With one run std and interval are
    NaN. Paired differences use only (fold, seed) pairs present for both the normalization
    and the baseline; the p-value is a two-sided paired t-test (NaN with fewer than two
    pairs). An empty ``df`` gives empty tables; an absent baseline gives an empty ``paired``.

    Example: accuracies 0.70, 0.72, 0.74 give mean 0.72, std 0.02 and the 95% interval
    0.72 ± 4.3027 · 0.02 / sqrt(3) = [0.6703, 0.7697].
    """
    if not isinstance(confidence, numbers.Real) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be a number in (0, 1) such as 0.95, got {confidence!r}")
    confidence = float(confidence)
    baseline = str(baseline)
    _check_results_frame(df)

    data = pd.DataFrame(
        {
            "norm": df["norm"].astype(str).to_numpy(),
            "fold": df["fold"].to_numpy(),
            "seed": df["seed"].to_numpy(),
            "accuracy": pd.to_numeric(df["accuracy"]).to_numpy(dtype=np.float64),
        }
    )
    norms = _norm_order(data, order)

    per_norm_rows = {}
    for norm in norms:
        accuracy = data.loc[data["norm"] == norm, "accuracy"].to_numpy()
        n, mean, std, ci_low, ci_high = _mean_interval(accuracy, confidence)
        per_norm_rows[norm] = [n, mean, std, ci_low, ci_high, accuracy.min(), accuracy.max()]
    per_norm = pd.DataFrame.from_dict(per_norm_rows, orient="index", columns=_PER_NORM_COLUMNS)
    per_norm = per_norm.astype({"n": "int64"}).astype({c: "float64" for c in _PER_NORM_COLUMNS[1:]})
    per_norm.index.name = "norm"

    paired_rows = {}
    if baseline in norms:
        base_runs = data.loc[data["norm"] == baseline, ["fold", "seed", "accuracy"]]
        for norm in norms:
            if norm == baseline:
                continue
            runs = data.loc[data["norm"] == norm, ["fold", "seed", "accuracy"]]
            # Inner join: a run whose (fold, seed) the baseline lacks, or vice versa, is left out.
            matched = runs.merge(base_runs, on=["fold", "seed"], suffixes=("", "_baseline"))
            differences = (matched["accuracy"] - matched["accuracy_baseline"]).to_numpy()
            n, mean, std, ci_low, ci_high = _mean_interval(differences, confidence)
            paired_rows[norm] = [n, mean, std, ci_low, ci_high, _paired_p_value(n, mean, std)]
    paired = pd.DataFrame.from_dict(paired_rows, orient="index", columns=_PAIRED_COLUMNS)
    paired = paired.astype({"n_pairs": "int64"}).astype({c: "float64" for c in _PAIRED_COLUMNS[1:]})
    paired.index.name = "norm"

    return Summary(per_norm=per_norm, paired=paired, baseline=baseline, confidence=confidence)


# ---------------------------------------------------------------------------------------
# Report: summary.md and summary.png
# ---------------------------------------------------------------------------------------


def _percent(fraction, signed=False):
    """Format a fraction as percent / percentage points with two decimals; NaN as 'n/a'."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{100.0 * fraction:+.2f}" if signed else f"{100.0 * fraction:.2f}"


def _interval(low, high, signed=False):
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"[{_percent(low, signed)}, {_percent(high, signed)}]"


def _p_value_text(p_value):
    if not math.isfinite(p_value):
        return "n/a"
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _markdown_cell(text):
    return str(text).replace("|", "\\|")


def _values_text(values):
    """'1, 2 and 3' style list of the distinct values of a column."""
    values = [str(value) for value in values]
    if len(values) <= 1:
        return "".join(values)
    return ", ".join(values[:-1]) + " and " + values[-1]


def _distinct(series):
    values = series.dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return values


def _summary_markdown(df, summary, title):
    level = f"{100 * summary.confidence:g}%"
    baseline = summary.baseline
    folds, seeds = _distinct(df["fold"]), _distinct(df["seed"])
    lines = [f"# {title}", ""]
    description = (
        f"Final-epoch validation accuracy of {len(df)} runs: "
        f"{len(summary.per_norm)} normalization(s) ({_values_text(summary.per_norm.index)}) "
        f"over {len(folds)} fold(s) ({_values_text(folds)}) "
        f"and {len(seeds)} seed(s) ({_values_text(seeds)})"
    )
    if "epochs" in df.columns:
        epochs = _distinct(df["epochs"])
        description += f", {_values_text(epochs)} epochs per run"
    lines.append(description + ".")
    if summary.per_norm["n"].nunique() > 1:
        lines.append("Not every normalization has the same number of runs.")
    lines += [
        f"Intervals are {level} Student-t confidence intervals for the mean over runs.",
        "",
        "## Accuracy per normalization",
        "",
        f"| normalization | runs | mean accuracy (%) | std (points) | {level} CI (%) | min (%) | max (%) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for norm, stat in summary.per_norm.iterrows():
        lines.append(
            f"| {_markdown_cell(norm)} | {int(stat['n'])} | {_percent(stat['mean'])} "
            f"| {_percent(stat['std'])} | {_interval(stat['ci_low'], stat['ci_high'])} "
            f"| {_percent(stat['min'])} | {_percent(stat['max'])} |"
        )
    lines += ["", f"## Paired difference against `{baseline}`", ""]
    if summary.paired.empty:
        if baseline in summary.per_norm.index:
            lines.append(f"`{baseline}` is the only normalization, so there is nothing to compare.")
        else:
            lines.append(f"The baseline `{baseline}` has no runs in these results, so no paired differences are computed.")
    else:
        lines += [
            f"Each run is matched with the `{baseline}` run on the same fold and seed "
            f"(unmatched runs are left out); the difference is the normalization's accuracy "
            f"minus `{baseline}`'s, in percentage points. The p-value is a two-sided paired "
            "t-test.",
            "",
            f"| normalization | pairs | mean difference (points) | std (points) | {level} CI (points) | p-value |",
            "|---|---:|---:|---:|---|---:|",
        ]
        for norm, stat in summary.paired.iterrows():
            lines.append(
                f"| {_markdown_cell(norm)} | {int(stat['n_pairs'])} "
                f"| {_percent(stat['mean_diff'], signed=True)} | {_percent(stat['std_diff'])} "
                f"| {_interval(stat['ci_low'], stat['ci_high'], signed=True)} "
                f"| {_p_value_text(stat['p_value'])} |"
            )
        lines += [
            "",
            f"An interval that contains zero (equivalently p >= {1 - summary.confidence:.2g}) "
            f"means these runs give no evidence of a difference from `{baseline}`; it does not "
            "show that the two are equal. With few runs the intervals are wide.",
        ]
    return "\n".join(lines) + "\n"


def _summary_figure(df, summary, title):
    """Two-panel matplotlib Figure (no pyplot, so the user's backend is left alone)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "write_summary needs matplotlib for summary.png; install it with "
            "`pip install matplotlib` (or `pip install fastspecnorm[experiments]`)"
        ) from None

    per_norm, paired = summary.per_norm, summary.paired
    level = f"{100 * summary.confidence:g}%"
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    color_of = {norm: f"C{i % 10}" for i, norm in enumerate(per_norm.index)}
    # Fixed seed: the same results always give the same picture.
    rng = np.random.default_rng(0)
    norms = df["norm"].astype(str)
    accuracy = pd.to_numeric(df["accuracy"]).to_numpy(dtype=np.float64)

    for position, (norm, stat) in enumerate(per_norm.iterrows()):
        values = 100.0 * accuracy[(norms == norm).to_numpy()]
        jitter = rng.uniform(-0.15, 0.15, size=values.size)
        left.scatter(position + jitter, values, s=22, alpha=0.55, color=color_of[norm], edgecolors="none", label=None)
        if math.isfinite(stat["ci_low"]):
            error = [[100 * (stat["mean"] - stat["ci_low"])], [100 * (stat["ci_high"] - stat["mean"])]]
        else:
            error = None
        left.errorbar(
            [position + 0.3], [100 * stat["mean"]], yerr=error, fmt="D", color="black", markersize=6, capsize=5, linewidth=1.5
        )
    left.set_xticks(range(len(per_norm)), [str(n) for n in per_norm.index])
    left.set_xlim(-0.6, len(per_norm) - 0.3)
    left.set_xlabel("normalization")
    left.set_ylabel("validation accuracy (%)")
    left.set_title(f"Accuracy per run (dots), mean and {level} CI (black)")
    left.grid(axis="y", alpha=0.3)

    if paired.empty:
        right.text(
            0.5,
            0.5,
            f"no paired differences:\nbaseline '{summary.baseline}' has no runs"
            if summary.baseline not in per_norm.index
            else "nothing to compare",
            ha="center",
            va="center",
            transform=right.transAxes,
            color="gray",
        )
        right.set_xticks([])
        right.set_yticks([])
    else:
        right.axhline(0.0, color="gray", linewidth=1.2, linestyle="--")
        base = df.loc[(norms == summary.baseline).to_numpy(), ["fold", "seed", "accuracy"]]
        for position, (norm, stat) in enumerate(paired.iterrows()):
            runs = df.loc[(norms == norm).to_numpy(), ["fold", "seed", "accuracy"]]
            matched = runs.merge(base, on=["fold", "seed"], suffixes=("", "_baseline"))
            differences = 100.0 * (pd.to_numeric(matched["accuracy"]) - pd.to_numeric(matched["accuracy_baseline"])).to_numpy()
            jitter = rng.uniform(-0.15, 0.15, size=differences.size)
            right.scatter(position + jitter, differences, s=22, alpha=0.55, color=color_of[norm], edgecolors="none")
            if math.isfinite(stat["ci_low"]):
                error = [[100 * (stat["mean_diff"] - stat["ci_low"])], [100 * (stat["ci_high"] - stat["mean_diff"])]]
            else:
                error = None
            if math.isfinite(stat["mean_diff"]):
                right.errorbar(
                    [position + 0.3],
                    [100 * stat["mean_diff"]],
                    yerr=error,
                    fmt="D",
                    color="black",
                    markersize=6,
                    capsize=5,
                    linewidth=1.5,
                )
        right.set_xticks(range(len(paired)), [str(n) for n in paired.index])
        right.set_xlim(-0.6, len(paired) - 0.3)
    right.set_xlabel("normalization")
    right.set_ylabel(f"accuracy minus '{summary.baseline}' (percentage points)")
    right.set_title(f"Paired difference vs '{summary.baseline}' (same fold and seed)")
    right.grid(axis="y", alpha=0.3)

    for axes in (left, right):
        if len(axes.get_xticks()) > 6:
            for label in axes.get_xticklabels():
                label.set_rotation(30)
                label.set_horizontalalignment("right")
    figure.suptitle(title)
    return figure


def write_summary(df, out_dir, baseline="none", confidence=0.95, title=None, order=None):
    """Write ``out_dir/summary.md`` and ``out_dir/summary.png`` for the results in ``df``.

    Args:
        df: one row per run (``ResultsStore.rows()``), columns ``norm``, ``fold``, ``seed``,
            ``accuracy`` (fraction in [0, 1]) and, if present, ``epochs``.
        out_dir: folder to write into; created if missing.
        baseline: normalization the others are compared with; default "none".
        confidence: level of the confidence intervals; default 0.95.
        title: heading of the report and plot; default "Spectrogram normalization comparison".
        order: optional order of the normalizations, as in :func:`summarize`.

    ``summary.md`` says what was compared (runs, folds, seeds, epochs), has a table per
    normalization (runs, mean accuracy in %, std in points, CI in %, min, max) and a table of
    paired differences against ``baseline`` in percentage points with CI and p-value.
    ``summary.png`` shows each run as a jittered dot per normalization with the mean and its
    CI (left) and the paired differences with their CIs and a zero line (right). Both files
    are written atomically. The plot uses matplotlib's ``Figure`` directly, so the
    interactive backend of the caller is not changed.

    Returns:
        ``(md_path, png_path)`` as :class:`pathlib.Path`.

    Raises:
        ValueError: ``df`` has no rows, or is not valid for :func:`summarize`.
    """
    _check_results_frame(df)
    if len(df) == 0:
        raise ValueError("there are no results to summarize: the DataFrame has no rows")
    summary = summarize(df, baseline=baseline, confidence=confidence, order=order)
    title = "Spectrogram normalization comparison" if title is None else str(title)

    out_dir = Path(out_dir)
    md_path = _atomic_write_bytes(out_dir / "summary.md", _summary_markdown(df, summary, title).encode("utf-8"))
    figure = _summary_figure(df, summary, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    png_path = _atomic_write_bytes(out_dir / "summary.png", buffer.getvalue())
    return md_path, png_path
