"""Summary statistics of experiment results (`summarize`) and the `summary.md` report (`write_summary`).

Accuracies are fractions in [0, 1]; only the report shows percent.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .._io import atomic_write, atomic_write_text

__all__ = ["Summary", "summarize", "summary_markdown", "write_summary"]

_PER_NORM_COLUMNS = ["n", "mean", "std", "ci_low", "ci_high", "min", "max"]
_PAIRED_COLUMNS = ["n_pairs", "mean_diff", "std_diff", "ci_low", "ci_high", "p_value"]


@dataclass(frozen=True)
class Summary:
    """Result of `summarize`; `summary["per_norm"]` and `summary["paired"]` also work, as for a dict.

    Attributes:
        per_norm: one row per normalization (index ``norm``): ``n`` (runs), ``mean``, ``std``
            (sample std, ddof=1), ``ci_low``, ``ci_high`` (Student-t interval of the mean),
            ``min``, ``max``; accuracies as fractions in [0, 1].
        paired: one row per normalization other than the baseline: ``n_pairs`` (runs matched on
            fold and seed), ``mean_diff`` (norm minus baseline), ``std_diff``, ``ci_low``,
            ``ci_high``, ``p_value`` (two-sided paired t-test); empty when the baseline has no runs.
        baseline: the baseline's name.
        confidence: the level of the intervals, e.g. 0.95.
    """

    per_norm: pd.DataFrame
    paired: pd.DataFrame
    baseline: str
    confidence: float

    def __getitem__(self, name):
        """``summary['per_norm']`` and ``summary['paired']``, as for a dict."""
        if name not in ("per_norm", "paired"):
            raise KeyError(f"Summary has the tables 'per_norm' and 'paired', not {name!r}")
        return getattr(self, name)


def _mean_test(values, confidence: float) -> tuple[int, float, float, float, float, float]:
    """n, mean, sample std, Student-t interval of the mean and two-sided p-value of mean = 0
    (`scipy.stats.ttest_1samp`). With n < 2 all but n and mean are NaN; equal values give a
    zero-width interval and p = 0 (NaN when they are all 0), as scipy does."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n < 2:
        return n, (float(values[0]) if n else math.nan), math.nan, math.nan, math.nan, math.nan
    with warnings.catch_warnings():  # scipy warns about equal values ("precision loss"), decided above
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_1samp(values, 0.0)
        low, high = test.confidence_interval(confidence)
    return n, float(values.mean()), float(values.std(ddof=1)), float(low), float(high), float(test.pvalue)


def _check_results_frame(df) -> None:
    "Raise a clear error unless `df` has the columns and values `summarize` needs."
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of results (e.g. RunStore.rows()), got {type(df).__name__}")
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


def _norm_order(norms: pd.Series, order) -> list[str]:
    "Names in `order` that have runs, then the others in order of first appearance."
    present = list(dict.fromkeys(norms))
    if order is None:
        return present
    if isinstance(order, str):
        raise TypeError(f"order must be a sequence of normalization names, got {order!r}")
    ordered = [str(norm) for norm in dict.fromkeys(order) if str(norm) in present]
    return ordered + [norm for norm in present if norm not in ordered]


def paired_differences(df: pd.DataFrame, norm: str, baseline: str) -> np.ndarray:
    """Accuracy of `norm` minus `baseline` on each (fold, seed) both have; unmatched runs left out.

    Args:
        df: one row per run with columns ``norm``, ``fold``, ``seed``, ``accuracy``.
        norm: the normalization compared.
        baseline: the normalization it is compared against.

    Returns:
        The differences (fractions), one per matched (fold, seed), as a float64 array.
    """
    runs = df.loc[df["norm"].astype(str) == norm, ["fold", "seed", "accuracy"]]
    base = df.loc[df["norm"].astype(str) == baseline, ["fold", "seed", "accuracy"]]
    matched = runs.merge(base, on=["fold", "seed"], suffixes=("", "_baseline"))
    return (pd.to_numeric(matched["accuracy"]) - pd.to_numeric(matched["accuracy_baseline"])).to_numpy(dtype=np.float64)


def summarize(df: pd.DataFrame, baseline: str = "none", confidence: float = 0.95, order=None) -> Summary:
    """Per-normalization accuracy statistics and paired differences against `baseline`.

    The interval of a mean is mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n)
    (`scipy.stats.ttest_1samp(...).confidence_interval`); the paired test is the one-sample t-test
    of the differences, equal to `scipy.stats.ttest_rel`. One run: NaN std, interval and p-value.
    An empty `df` gives empty tables; an absent baseline an empty ``paired``.

    Args:
        df: one row per run with columns ``norm``, ``fold``, ``seed``, ``accuracy`` (fraction in
            [0, 1]), at most one row per (norm, fold, seed) (e.g. `RunStore.rows()`).
        baseline: the normalization the paired differences are taken against.
        confidence: level of the Student-t intervals, in (0, 1).
        order: optional names giving the row order (names without runs skipped, others follow in
            order of first appearance).

    Returns:
        The `Summary`: tables `per_norm` and `paired`, with `baseline` and `confidence`.

    Raises:
        TypeError: `df` is not a DataFrame, or `order` is one string.
        ValueError: `confidence` outside (0, 1); a required column missing; a missing or
            non-numeric accuracy; more than one row for the same (norm, fold, seed).

    Examples:
        Accuracies 0.70, 0.72, 0.74 give mean 0.72, std 0.02 and the 95% interval
        0.72 ± 4.3027 · 0.02 / sqrt(3) = [0.6703, 0.7697]:

        >>> import pandas as pd
        >>> df = pd.DataFrame({"norm": "none", "fold": [1, 2, 3], "seed": 0, "accuracy": [0.70, 0.72, 0.74]})
        >>> s = summarize(df).per_norm.loc["none"]
        >>> tuple(round(float(s[c]), 4) for c in ("mean", "std", "ci_low", "ci_high"))
        (0.72, 0.02, 0.6703, 0.7697)
    """
    if not isinstance(confidence, numbers.Real) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be a number in (0, 1) such as 0.95, got {confidence!r}")
    confidence, baseline = float(confidence), str(baseline)
    _check_results_frame(df)
    norms_column = df["norm"].astype(str)
    accuracy = pd.to_numeric(df["accuracy"]).to_numpy(dtype=np.float64)
    norms = _norm_order(norms_column, order)

    per_norm = {}
    for norm in norms:
        values = accuracy[(norms_column == norm).to_numpy()]
        n, mean, std, low, high, _ = _mean_test(values, confidence)
        per_norm[norm] = [n, mean, std, low, high, values.min(), values.max()]
    paired = {}
    if baseline in norms:
        for norm in norms:
            if norm != baseline:
                paired[norm] = list(_mean_test(paired_differences(df, norm, baseline), confidence))
    return Summary(
        per_norm=_table(per_norm, _PER_NORM_COLUMNS),
        paired=_table(paired, _PAIRED_COLUMNS),
        baseline=baseline,
        confidence=confidence,
    )


def _table(rows: dict, columns: list[str]) -> pd.DataFrame:
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table = table.astype({columns[0]: "int64"}).astype({c: "float64" for c in columns[1:]})
    table.index.name = "norm"
    return table


# -- summary.md ------------------------------------------------------------------------------


def _percent(fraction: float, signed: bool = False) -> str:
    "A fraction as percent / percentage points with two decimals; NaN as 'n/a'."
    if not math.isfinite(fraction):
        return "n/a"
    return f"{100.0 * fraction:+.2f}" if signed else f"{100.0 * fraction:.2f}"


def _interval(low: float, high: float, signed: bool = False) -> str:
    return f"[{_percent(low, signed)}, {_percent(high, signed)}]" if math.isfinite(low) and math.isfinite(high) else "n/a"


def _p_value_text(p_value: float) -> str:
    if not math.isfinite(p_value):
        return "n/a"
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _listing(values, sort: bool = True) -> str:
    "'1, 2 and 3': the distinct values of a column (sorted when `sort`)."
    values = pd.Series(values).dropna().unique().tolist()
    values = [str(v) for v in (sorted(values) if sort else values)]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def provenance_markdown(infos: list[dict]) -> list[str]:
    """Lines of the section "How these runs were made": the commands, the versions, hosts, and the wall time.

    Each value is counted over the runs that recorded it, so a grid resumed on another machine or
    version says so.

    Args:
        infos: the runs' records' `info` dicts (see `RunStore.save`).

    Returns:
        The Markdown lines, starting with a blank line and the section's heading.
    """
    n = len(infos)

    def counts(key: str) -> Counter:
        "Runs per recorded value of `key`, in order of first appearance."
        return Counter(str(i[key]) for i in infos if i.get(key) is not None)

    def counted(key: str) -> str | None:
        values = counts(key)
        if not values:
            return None
        if len(values) == 1 and sum(values.values()) == n:
            return next(iter(values))
        return ", ".join(f"{v} ({c} run{'s' * (c > 1)})" for v, c in values.items())

    lines = ["", "## How these runs were made", ""]
    commands = counts("command")
    for command, count in commands.items():
        lines.append(f"- Command ({count} run{'s' * (count > 1)}): `{command}`")
    if (unrecorded := n - sum(commands.values())) > 0:
        lines.append(f"- Command: not recorded for {unrecorded} run(s) (records written before commands were recorded)")
    versions = [
        (name, counted(key))
        for name, key in (
            ("Python", "python"),
            ("torch", "torch"),
            ("torchaudio", "torchaudio"),
            ("fastai", "fastai"),
            ("fastspecnorm", "fastspecnorm"),
        )
    ]
    if any(v for _, v in versions):
        lines.append("- Versions: " + "; ".join(f"{name} {v}" for name, v in versions if v))
    if hosts := counted("host"):
        lines.append(f"- Host: {hosts}")
    seconds = pd.Series([i.get("seconds") for i in infos], dtype=float).dropna()
    if len(seconds):
        finished = sorted(str(i["finished"]).replace("T", " ") for i in infos if i.get("finished"))
        when = f"; finished {finished[0]} to {finished[-1]}" if finished else ""
        lines.append(
            f"- Wall time: {seconds.sum() / 60:.1f} min of training over {len(seconds)} runs, "
            f"{seconds.median():.0f} s per run (median; {seconds.min():.0f}-{seconds.max():.0f} s){when}"
        )
    return lines


def summary_markdown(df: pd.DataFrame, summary: Summary, title: str, infos: list[dict] | None = None) -> str:
    """The text of `summary.md`: what was compared, the per-norm table and the paired table.

    Args:
        df: the runs, one row each (columns ``norm``, ``fold``, ``seed``, ``accuracy`` and
            optionally ``epochs``).
        summary: `summarize(df)`.
        title: the report's heading.
        infos: the runs' records' `info` dicts; given, the report ends with how the runs were
            made (`provenance_markdown`); None or empty: no such section.

    Returns:
        The Markdown text, ending in a newline.
    """
    provenance = provenance_markdown(infos) if infos else []
    level, baseline = f"{100 * summary.confidence:g}%", summary.baseline
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    description = (
        f"Final-epoch validation accuracy of {len(df)} runs: {len(summary.per_norm)} normalization(s) "
        f"({_listing(summary.per_norm.index, sort=False)}) over {df['fold'].nunique()} fold(s) ({_listing(df['fold'])}) "
        f"and {df['seed'].nunique()} seed(s) ({_listing(df['seed'])})"
    )
    if "epochs" in df.columns:
        description += f", {_listing(df['epochs'])} epochs per run"
    lines = [f"# {title}", "", description + "."]
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
    for norm, s in summary.per_norm.iterrows():
        lines.append(
            f"| {cell(norm)} | {int(s['n'])} | {_percent(s['mean'])} | {_percent(s['std'])} "
            f"| {_interval(s['ci_low'], s['ci_high'])} | {_percent(s['min'])} | {_percent(s['max'])} |"
        )
    lines += ["", f"## Paired difference against `{baseline}`", ""]
    if summary.paired.empty:
        lines.append(
            f"`{baseline}` is the only normalization, so there is nothing to compare."
            if baseline in summary.per_norm.index
            else f"The baseline `{baseline}` has no runs in these results, so no paired differences are computed."
        )
        return "\n".join(lines + provenance) + "\n"
    lines += [
        f"Each run is matched with the `{baseline}` run on the same fold and seed (unmatched runs are left "
        f"out); the difference is the normalization's accuracy minus `{baseline}`'s, in percentage points. "
        "The p-value is a two-sided paired t-test.",
        "",
        f"| normalization | pairs | mean difference (points) | std (points) | {level} CI (points) | p-value |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for norm, s in summary.paired.iterrows():
        lines.append(
            f"| {cell(norm)} | {int(s['n_pairs'])} | {_percent(s['mean_diff'], signed=True)} "
            f"| {_percent(s['std_diff'])} | {_interval(s['ci_low'], s['ci_high'], signed=True)} "
            f"| {_p_value_text(s['p_value'])} |"
        )
    lines += [
        "",
        f"An interval that contains zero (equivalently p >= {1 - summary.confidence:.2g}) means these runs "
        f"give no evidence of a difference from `{baseline}`; it does not show that the two are equal. "
        "With few runs the intervals are wide.",
    ]
    return "\n".join(lines + provenance) + "\n"


def write_summary(
    df: pd.DataFrame,
    out_dir,
    baseline: str = "none",
    confidence: float = 0.95,
    title: str | None = None,
    order=None,
    infos: list[dict] | None = None,
) -> tuple[Path, Path]:
    """Write ``out_dir/summary.md`` and ``out_dir/summary.png`` for the runs in `df`, each atomically.

    See `summary_markdown` and `plots.summary_figure`. Nothing is written when matplotlib is missing.

    Args:
        df: one row per run (``RunStore.rows()``).
        out_dir: the folder both files are written to.
        baseline: as in `summarize`.
        confidence: as in `summarize`.
        title: heading of both (None: "Spectrogram normalization comparison").
        order: as in `summarize`.
        infos: the runs' records' `info` dicts (command, versions, host, seconds), summarized at
            the end of `summary.md` (`schedule.rebuild_outputs` passes them).

    Returns:
        `(md_path, png_path)`: the paths of both files.

    Raises:
        ValueError: `df` has no rows or is not valid for `summarize`.
        TypeError: `df` is not a DataFrame.
        ImportError: matplotlib is not installed.
    """
    from .plots import summary_png

    _check_results_frame(df)
    if len(df) == 0:
        raise ValueError("there are no results to summarize: the DataFrame has no rows")
    summary = summarize(df, baseline=baseline, confidence=confidence, order=order)
    title = "Spectrogram normalization comparison" if title is None else str(title)
    out_dir = Path(out_dir)
    png = summary_png(df, summary, title)  # before writing anything: matplotlib may be missing
    md_path = atomic_write_text(out_dir / "summary.md", summary_markdown(df, summary, title, infos))
    png_path = atomic_write(out_dir / "summary.png", lambda f: f.write(png))
    return md_path, png_path
