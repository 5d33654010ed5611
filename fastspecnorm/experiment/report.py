"""The comparison's report: `summary.md` (`summary_markdown`), written with `plots.summary_png` at once
(`write_summary`). It only renders the statistics of `summary.summarize`."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from .._io import atomic_write, atomic_write_text
from .plots import summary_png
from .summary import METHOD, Summary, _check_results_frame, summarize

__all__ = ["summary_markdown", "provenance_markdown", "verdict_sentence", "write_summary"]


def _percent(fraction: float, signed: bool = False) -> str:
    "A fraction as percent / percentage points with two decimals (and a sign when `signed`); NaN as 'n/a'."
    return f"{100.0 * fraction:{'+' if signed else ''}.2f}" if math.isfinite(fraction) else "n/a"


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
    if not values:
        return "none"
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def provenance_markdown(infos: list[dict]) -> list[str]:
    """Lines of the section "How these runs were made": the commands, the versions, hosts, and the wall time.

    Each value is counted over the runs that recorded it (a grid resumed on another machine says so).

    Args:
        infos: the runs' records' `info` dicts (see `RunStore.save`).

    Returns:
        The Markdown lines, starting with a blank line and the section's heading.
    """
    n = len(infos)

    def counts(key: str) -> Counter:
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
    lines += [f"- Command ({count} run{'s' * (count > 1)}): `{command}`" for command, count in commands.items()]
    if (unrecorded := n - sum(commands.values())) > 0:
        lines.append(f"- Command: not recorded for {unrecorded} run(s) (records written before commands were recorded)")
    versions = [(name, counted(name.lower())) for name in ("Python", "torch", "torchaudio", "fastai", "fastspecnorm")]
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


def _points(fraction: float) -> str:
    "A fraction as accuracy points without sign, for prose ('1 point', '2.5 points')."
    return f"{100 * fraction:g} point" + ("" if 100 * fraction == 1 else "s")


def verdict_sentence(norm: str, row: pd.Series, summary: Summary) -> str:
    """One plain sentence saying what the evidence says about `norm` against the baseline.

    Args:
        norm: the normalization.
        row: its row of `summary.paired`.
        summary: the `Summary` (for the baseline, the confidence level and the ROPE).

    Returns:
        The sentence, in Markdown, e.g. "`pcen`: better than `none`: +12.2 points [+2.1, +22.2] ...".
    """
    base, rope, level = f"`{summary.baseline}`", _points(summary.rope), f"{100 * summary.confidence:g}%"
    interval = f"{_percent(row['mean_diff'], signed=True)} points, {level} interval {_interval(row['ci_low'], row['ci_high'], signed=True)}"
    folds = f"{int(row['n_folds'])} fold{'s' * (int(row['n_folds']) != 1)}"
    verdict = row["verdict"]
    if int(row["n_folds"]) < 2:
        return f"- `{norm}`: undecided: {folds} with a paired run, too few for an interval."
    if verdict == "equivalent":
        return f"- `{norm}`: equivalent to {base} within ±{rope} ({interval})."
    if verdict in ("better", "worse"):
        return (f"- `{norm}`: {verdict} than {base} ({interval}; Holm-adjusted p {_p_value_text(row['p_adjusted'])}, "
                f"{folds}).")  # fmt: skip
    needed = row["folds_needed"]
    resolve = f"a {100 * summary.resolve:g}-point difference"
    if math.isfinite(needed):
        more = f"about {int(needed)} (repeat, fold) replicates at this variance would resolve {resolve}"
    else:
        floor = 1.96 * row["std_diff"] * math.sqrt(summary.correction)
        more = (f"at this variance more folds alone would not resolve {resolve} (the correction for overlapping "
                f"training sets keeps the interval wider than ±{100 * floor:.1f} points): less variance between folds would")  # fmt: skip
    return (
        f"- `{norm}`: undecided against {base} ({interval}, {folds}, Holm-adjusted p {_p_value_text(row['p_adjusted'])}); {more}."
    )


def summary_markdown(df: pd.DataFrame, summary: Summary, title: str, infos: list[dict] | None = None) -> str:
    """The text of `summary.md`: what was compared, the per-norm table, the verdicts and how they were made.

    Args:
        df: the runs, one row each (columns ``norm``, ``fold``, ``seed``, ``accuracy`` and
            optionally ``repeat`` and ``epochs``).
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
    repeats = df["repeat"].nunique() if "repeat" in df.columns else 1
    description = (
        f"Final-epoch validation accuracy of {len(df)} runs: {len(summary.per_norm)} normalization(s) "
        f"({_listing(summary.per_norm.index, sort=False)}) over {df['fold'].nunique()} fold(s) ({_listing(df['fold'])})"
        + (f" in {repeats} repeats" if repeats > 1 else "")
        + f" and {df['seed'].nunique()} seed(s) ({_listing(df['seed'])})"
    )
    if "epochs" in df.columns:
        description += f", {_listing(df['epochs'])} epochs per run"
    correction = (
        f"the variance of the fold-level values times 1/J + n_valid/n_train (here {summary.correction:.3g}), since the "
        "folds' training sets overlap"
        if summary.correction > 0
        else "no correction for overlapping training sets (the results do not give n_train and n_valid)"
    )
    lines = [f"# {title}", "", description + "."]
    if summary.diverged:
        listed = ", ".join(f"{n} fold {f}" + (f" repeat {r}" if r else "") + f" seed {s}" for n, r, f, s in summary.diverged)
        lines.append(f"**{len(summary.diverged)} run(s) diverged** (a non-finite loss; their accuracy is not a result) and are "
                     f"left out of every statistic below: {listed}. Try a lower learning rate (`--lr`).")  # fmt: skip
    if summary.per_norm["n"].nunique() > 1:
        lines.append("Not every normalization has the same number of runs.")
    lines += [
        f"The replicate is the fold: the seeds of one fold are averaged first. Intervals are {level} corrected "
        f"resampled t intervals over the J folds ({correction}).",
        "",
        "## Accuracy per normalization",
        "",
        f"| normalization | runs | folds | mean accuracy (%) | std over folds (points) | {level} CI (%) | min (%) | max (%) |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for norm, s in summary.per_norm.iterrows():
        lines.append(
            f"| {cell(norm)} | {int(s['n'])} | {int(s['n_folds'])} | {_percent(s['mean'])} | {_percent(s['std'])} "
            f"| {_interval(s['ci_low'], s['ci_high'])} | {_percent(s['min'])} | {_percent(s['max'])} |"
        )
    lines += ["", f"## Against `{baseline}`: the verdicts", ""]
    if summary.paired.empty:
        lines.append(
            f"`{baseline}` is the only normalization, so there is nothing to compare."
            if baseline in summary.per_norm.index
            else f"The baseline `{baseline}` has no runs in these results, so no paired differences are computed."
        )
        return "\n".join(lines + provenance) + "\n"
    rope = _points(summary.rope)
    lines += [
        f"Each run is matched with the `{baseline}` run on the same fold and seed, the differences of one fold "
        f"averaged; the difference is the normalization's accuracy minus `{baseline}`'s, in percentage points. "
        f"**better** / **worse**: the Holm-adjusted p-value is below {1 - summary.confidence:.2g}; **equivalent**: the "
        f"{level} interval lies within ±{rope} (the region of practical equivalence); **undecided**: neither. "
        f"P(better), P(equivalent) and P(worse) are the Bayesian correlated t-test's probabilities that the true "
        f"difference is above +{rope}, within ±{rope} or below -{rope}. The intervals and p-values are per comparison, "
        "the verdicts adjusted for all of them: an interval that excludes 0 can still be undecided.",
        "",
        f"| normalization | verdict | folds | pairs | mean difference (points) | {level} CI (points) | p-value | "
        "p (Holm) | P(better) | P(equivalent) | P(worse) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    probability = lambda p: f"{p:.2f}" if math.isfinite(p) else "n/a"  # noqa: E731
    for norm, s in summary.paired.iterrows():
        verdict = f"**{s['verdict']}**" if s["verdict"] in ("better", "worse") else s["verdict"]  # bold: a difference declared
        lines.append(
            f"| {cell(norm)} | {verdict} | {int(s['n_folds'])} | {int(s['n_pairs'])} "
            f"| {_percent(s['mean_diff'], signed=True)} | {_interval(s['ci_low'], s['ci_high'], signed=True)} "
            f"| {_p_value_text(s['p_value'])} | {_p_value_text(s['p_adjusted'])} | {probability(s['p_better'])} "
            f"| {probability(s['p_equivalent'])} | {probability(s['p_worse'])} |"
        )
    lines += ["", "In words:", ""]
    lines += [verdict_sentence(norm, s, summary) for norm, s in summary.paired.iterrows()]
    lines += ["", f"Method: {METHOD}. An undecided verdict is no evidence of a difference, nor of equality."]
    return "\n".join(lines + provenance) + "\n"


def write_summary(
    df: pd.DataFrame,
    out_dir,
    baseline: str = "none",
    confidence: float = 0.95,
    title: str | None = None,
    order=None,
    infos: list[dict] | None = None,
    rope: float = 0.01,
) -> tuple[Path, Path]:
    """Write ``out_dir/summary.md`` and ``out_dir/summary.png`` (`summary_markdown`, `plots.summary_figure`), each atomically.

    Args:
        df: one row per run (``RunStore.rows()``).
        out_dir: the folder both files are written to.
        baseline: as in `summarize`.
        confidence: as in `summarize`.
        title: heading of both (None: "Spectrogram normalization comparison").
        order: as in `summarize`.
        infos: the runs' records' `info` dicts (command, versions, host, seconds), summarized at
            the end of `summary.md`.
        rope: as in `summarize` (a fraction: 0.01 is 1 point).

    Returns:
        `(md_path, png_path)`: the paths of both files.

    Raises:
        ValueError: `df` has no rows or is not valid for `summarize`.
        TypeError: `df` is not a DataFrame.
        ImportError: matplotlib is not installed (nothing is written).
    """
    _check_results_frame(df)
    if len(df) == 0:
        raise ValueError("there are no results to summarize: the DataFrame has no rows")
    summary = summarize(df, baseline=baseline, confidence=confidence, order=order, rope=rope)
    title = "Spectrogram normalization comparison" if title is None else str(title)
    out_dir = Path(out_dir)
    png = summary_png(df, summary, title)  # before writing anything: matplotlib may be missing
    md_path = atomic_write_text(out_dir / "summary.md", summary_markdown(df, summary, title, infos))
    png_path = atomic_write(out_dir / "summary.png", lambda f: f.write(png))
    return md_path, png_path
