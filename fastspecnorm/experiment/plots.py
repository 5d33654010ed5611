"""The experiment's figures: `summary.png` of one grid (`summary_figure`) and several grids side by
side (`comparison_figure`)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from .summary import Summary, _fold_keys, complete_folds, fold_differences, summarize

__all__ = ["summary_figure", "summary_png", "comparison_figure"]


def _dots_and_means(axes, groups: list[tuple[str, np.ndarray, float, float, float]], colors: dict, rng) -> None:
    "Per group (name, values in %, mean, ci_low, ci_high as fractions): jittered dots, then the mean and CI."
    for position, (name, values, mean, low, high) in enumerate(groups):
        jittered = position + rng.uniform(-0.15, 0.15, size=values.size)
        axes.scatter(jittered, values, s=22, alpha=0.55, color=colors[name], edgecolors="none")
        if math.isfinite(mean) and (math.isfinite(low) or values.size > 1):  # one dot alone needs no mean
            error = [[100 * (mean - low)], [100 * (high - mean)]] if math.isfinite(low) else None
            axes.errorbar(
                [position + 0.3], [100 * mean], yerr=error, fmt="D", color="black", markersize=6, capsize=5, linewidth=1.5
            )
    axes.set_xticks(range(len(groups)), [name for name, *_ in groups], rotation=30 if len(groups) > 6 else 0)
    axes.set_xlim(-0.6, len(groups) - 0.3)
    axes.set_xlabel("normalization")
    axes.grid(axis="y", alpha=0.3)


def _figure(figsize):
    "A matplotlib Figure drawn by Agg, without pyplot: the caller's backend is left alone."
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "the experiment's figures need matplotlib: `pip install matplotlib` (or `pip install fastspecnorm[experiments]`)"
        ) from None
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def summary_figure(df: pd.DataFrame, summary: Summary, title: str):
    """The figure of `summary.png`: accuracies per normalization and the verdicts against the baseline.

    Left: each run's accuracy per normalization (dots) with the mean and its corrected interval over
    folds; right: each fold's paired difference against the baseline (dots, seeds averaged), their
    mean with its interval, the region of practical equivalence shaded and each norm's verdict under
    its name. Accuracies in percent, differences in points; the jitter has a fixed seed. Results of
    one fold have no interval: the titles say so, the accuracy axis runs from 0 to 100% and the
    difference axis is symmetric about 0, so a difference of a few clips does not look large.

    Args:
        df: the runs, one row each, with columns `norm` and `accuracy` (fraction in [0, 1]) and
            the `fold`, `seed` (and optionally `repeat`) the pairing matches on.
        summary: `summarize(df)`.
        title: the figure's title.

    Returns:
        A two-panel matplotlib `Figure`.

    Raises:
        ImportError: matplotlib is not installed.
    """
    per_norm, paired, baseline = summary.per_norm, summary.paired, summary.baseline
    level = f"{100 * summary.confidence:g}%"
    figure = _figure((12, 5))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    colors = {norm: f"C{i % 10}" for i, norm in enumerate(per_norm.index)}
    rng = np.random.default_rng(0)
    norms = df["norm"].astype(str).to_numpy()
    accuracy = pd.to_numeric(df["accuracy"]).to_numpy(dtype=np.float64)

    one_fold = int(per_norm["n_folds"].max()) < 2 if len(per_norm) else False
    only = f"\nfold {', '.join(str(f) for f in pd.unique(df['fold']))} only: one fold gives no interval"
    groups = [(norm, 100 * accuracy[norms == norm], s["mean"], s["ci_low"], s["ci_high"]) for norm, s in per_norm.iterrows()]
    _dots_and_means(left, groups, colors, rng)
    left.set_ylabel("validation accuracy (%)")
    if one_fold:
        several = " and mean over seeds (black)" if int(per_norm["n"].max()) > 1 else ""
        left.set_title(f"Accuracy per run (dots){several}{only}")
        left.set_ylim(0, 100)
    else:
        left.set_title(f"Accuracy per run (dots), mean and {level} CI over folds (black)")

    if paired.empty:
        text = (
            "nothing to compare" if baseline in per_norm.index else f"no paired differences:\nbaseline '{baseline}' has no runs"
        )
        right.text(0.5, 0.5, text, ha="center", va="center", transform=right.transAxes, color="gray")
        right.set_xticks([])
        right.set_yticks([])
    else:
        rope = 100 * summary.rope
        right.axhspan(
            -rope, rope, color="gray", alpha=0.18, linewidth=0, label=f"equivalence region ±{rope:g} point{'s' * (rope != 1)}"
        )
        right.axhline(0.0, color="gray", linewidth=1.2, linestyle="--")
        differences = [
            (norm, 100 * fold_differences(df, norm, baseline)["diff"].to_numpy(), s["mean_diff"], s["ci_low"], s["ci_high"])
            for norm, s in paired.iterrows()
        ]
        _dots_and_means(right, differences, colors, rng)
        labels = [f"{norm}\n{verdict}" for norm, verdict in paired["verdict"].items()]
        right.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 6 else 0, fontsize=9)
        right.set_xlabel("normalization and its verdict")
        right.legend(loc="lower left", fontsize=8)
        if one_fold:  # symmetric about 0, with room around the farthest dot and the equivalence region
            reach = max([float(np.abs(values).max()) for _, values, *_ in differences if values.size] + [rope])
            right.set_ylim(-1.5 * reach, 1.5 * reach)
    right.set_ylabel(f"accuracy minus '{baseline}' (percentage points)")
    if one_fold:
        right.set_title(f"Difference vs '{baseline}' (dots){only}")
    else:
        right.set_title(f"Difference vs '{baseline}' per fold (dots), {level} CI")
    figure.suptitle(title)
    return figure


def summary_png(df: pd.DataFrame, summary: Summary, title: str) -> bytes:
    """`summary_figure` as PNG bytes (110 dpi); ImportError when matplotlib is not installed.

    Args:
        df: the runs, as for `summary_figure`.
        summary: `summarize(df)`.
        title: the figure's title.
    """
    buffer = io.BytesIO()
    summary_figure(df, summary, title).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def comparison_figure(
    grids: dict[str, pd.DataFrame], baseline: str = "none", confidence: float = 0.95, order=None, title: str | None = None
):
    """Several grids' results side by side, one colour per grid.

    Per normalization the mean accuracy with its interval over folds (left) and the paired
    difference against `baseline` within each grid (right), as `summarize` computes them: does a
    ranking survive a change of protocol? Only the (repeat, fold)s every grid has complete
    (`complete_folds`) are used.

    Args:
        grids: name -> results frame (e.g.
            ``{"plain": pd.read_csv("results/fsdd/results.csv"), "augmented": ...}``).
        baseline: the normalization the paired differences are taken against.
        confidence: the level of the intervals, in (0, 1).
        order: the normalizations shown, in order (None: those of the first grid).
        title: the figure's title (None: no title).

    Returns:
        A two-panel matplotlib `Figure`.

    Raises:
        ValueError: `grids` is empty, or a results frame is not valid for `summarize`.
        TypeError: a results frame that is not a DataFrame, or `order` given as one string.
        ImportError: matplotlib is not installed.
    """
    if not grids:
        raise ValueError("comparison_figure needs at least one grid: {name: results DataFrame}")
    common = set.intersection(*(_fold_keys(complete_folds(df)) for df in grids.values()))
    grids = {name: complete_folds(df, common) for name, df in grids.items()}
    summaries = {name: summarize(df, baseline=baseline, confidence=confidence, order=order) for name, df in grids.items()}
    norms = list(order) if order is not None else list(next(iter(summaries.values())).per_norm.index)
    level = f"{100 * confidence:g}%"
    figure = _figure((12, 4.5))
    left, right = figure.subplots(1, 2)
    width = 0.7 / len(summaries)
    for k, (name, summary) in enumerate(summaries.items()):
        shift = (k - (len(summaries) - 1) / 2) * width
        for axes, table, column in ((left, summary.per_norm, "mean"), (right, summary.paired, "mean_diff")):
            shown = [n for n in norms if n in table.index]
            if not shown:
                continue
            rows = table.loc[shown]
            mean, low, high = 100 * rows[[column, "ci_low", "ci_high"]].to_numpy(dtype=float).T
            error = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)
            runs, unit = (rows["n"], "runs") if column == "mean" else (rows["n_pairs"], "pairs")
            label = f"{name} ({runs.astype(int).sum()} {unit})"
            axes.errorbar(
                [norms.index(n) + shift for n in shown], mean, yerr=error, fmt="o", color=f"C{k}", capsize=4, label=label
            )
    right.axhline(0.0, color="gray", linewidth=1.2, linestyle="--")
    for axes in (left, right):
        axes.set_xticks(range(len(norms)), norms, rotation=30 if len(norms) > 6 else 0)
        axes.set_xlabel("normalization")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=9)
    left.set_ylabel("validation accuracy (%)")
    left.set_title(f"Mean accuracy and {level} CI")
    right.set_ylabel(f"accuracy minus '{baseline}' (percentage points)")
    right.set_title(f"Paired difference vs '{baseline}' within each grid, {level} CI")
    if title:
        figure.suptitle(title)
    return figure
