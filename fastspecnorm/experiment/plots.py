"""`summary.png`: each run's accuracy per normalization with the mean and its confidence interval
(left), and the paired differences against the baseline (right)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from .summary import Summary, paired_differences

__all__ = ["summary_figure", "summary_png"]


def _dots_and_means(axes, groups: list[tuple[str, np.ndarray, float, float, float]], colors: dict, rng) -> None:
    "Per group (name, values in %, mean, ci_low, ci_high as fractions): jittered dots, then the mean and CI."
    for position, (name, values, mean, low, high) in enumerate(groups):
        axes.scatter(position + rng.uniform(-0.15, 0.15, size=values.size), values, s=22, alpha=0.55,
                     color=colors[name], edgecolors="none")
        if math.isfinite(mean):
            error = [[100 * (mean - low)], [100 * (high - mean)]] if math.isfinite(low) else None
            axes.errorbar([position + 0.3], [100 * mean], yerr=error, fmt="D", color="black", markersize=6, capsize=5,
                          linewidth=1.5)
    axes.set_xticks(range(len(groups)), [name for name, *_ in groups], rotation=30 if len(groups) > 6 else 0)
    axes.set_xlim(-0.6, len(groups) - 0.3)
    axes.set_xlabel("normalization")
    axes.grid(axis="y", alpha=0.3)


def summary_figure(df: pd.DataFrame, summary: Summary, title: str):
    """A two-panel matplotlib `Figure` of `summarize(df)` (no pyplot: the caller's backend is left
    alone). Accuracies in percent, differences in percentage points; jitter has a fixed seed, so
    the same results always give the same picture."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("summary.png needs matplotlib: `pip install matplotlib` "
                          "(or `pip install fastspecnorm[experiments]`)") from None
    per_norm, paired, baseline = summary.per_norm, summary.paired, summary.baseline
    level = f"{100 * summary.confidence:g}%"
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    colors = {norm: f"C{i % 10}" for i, norm in enumerate(per_norm.index)}
    rng = np.random.default_rng(0)
    norms = df["norm"].astype(str).to_numpy()
    accuracy = pd.to_numeric(df["accuracy"]).to_numpy(dtype=np.float64)

    _dots_and_means(left, [(norm, 100 * accuracy[norms == norm], s["mean"], s["ci_low"], s["ci_high"])
                           for norm, s in per_norm.iterrows()], colors, rng)
    left.set_ylabel("validation accuracy (%)")
    left.set_title(f"Accuracy per run (dots), mean and {level} CI (black)")

    if paired.empty:
        text = "nothing to compare" if baseline in per_norm.index else f"no paired differences:\nbaseline '{baseline}' has no runs"
        right.text(0.5, 0.5, text, ha="center", va="center", transform=right.transAxes, color="gray")
        right.set_xticks([])
        right.set_yticks([])
    else:
        right.axhline(0.0, color="gray", linewidth=1.2, linestyle="--")
        _dots_and_means(right, [(norm, 100 * paired_differences(df, norm, baseline), s["mean_diff"], s["ci_low"], s["ci_high"])
                                for norm, s in paired.iterrows()], colors, rng)
    right.set_ylabel(f"accuracy minus '{baseline}' (percentage points)")
    right.set_title(f"Paired difference vs '{baseline}' (same fold and seed)")
    figure.suptitle(title)
    return figure


def summary_png(df: pd.DataFrame, summary: Summary, title: str) -> bytes:
    "`summary_figure` as PNG bytes (110 dpi)."
    buffer = io.BytesIO()
    summary_figure(df, summary, title).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
