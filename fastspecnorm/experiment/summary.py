"""The comparison's statistics (`summarize`, method in `METHOD`); `report` renders and writes them.

The replicate is the (repeat, fold), never the seed. Accuracies are fractions in [0, 1]; only the
report shows percent.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["Summary", "VERDICTS", "METHOD", "summarize", "fold_differences", "holm", "folds_needed", "complete_folds"]

_PER_NORM_COLUMNS = ["n", "mean", "std", "ci_low", "ci_high", "min", "max", "n_folds"]
_PAIRED_COLUMNS = ["n_pairs", "n_folds", "mean_diff", "std_diff", "ci_low", "ci_high", "p_value", "p_adjusted",
                   "p_better", "p_equivalent", "p_worse", "verdict", "folds_needed"]  # fmt: skip
_INT_COLUMNS = {"n", "n_pairs", "n_folds"}
VERDICTS = ("better", "worse", "equivalent", "undecided")
METHOD = (
    "corrected resampled t-test over the (repeat, fold) replicates, seeds of one fold averaged first "
    "(Nadeau & Bengio 2003, Bouckaert & Frank 2004); Holm-adjusted over the norms compared with the "
    "baseline (Demsar 2006); Bayesian correlated t-test with a region of practical equivalence "
    "(Benavoli et al. 2017)"
)


@dataclass(frozen=True)
class Summary:
    """Result of `summarize`; `summary["per_norm"]` and `summary["paired"]` also work, as for a dict.

    Attributes:
        per_norm: one row per normalization (index ``norm``): ``n`` (runs), ``mean`` (of the fold-level
            means), ``std`` (their std, ddof=1), ``ci_low``, ``ci_high`` (the corrected interval of the mean,
            clipped to [0, 1]), ``min``, ``max`` (over runs), ``n_folds`` (the replicates J).
        paired: one row per normalization other than the baseline: ``n_pairs`` (runs matched on
            repeat, fold and seed), ``n_folds`` (replicates with a pair), ``mean_diff`` (norm minus
            baseline), ``std_diff`` (of the fold-level differences), ``ci_low``, ``ci_high``,
            ``p_value`` (corrected resampled t), ``p_adjusted`` (Holm), ``p_better``,
            ``p_equivalent``, ``p_worse`` (Bayesian correlated t with the ROPE), ``verdict`` (one of
            `VERDICTS`) and ``folds_needed`` (for undecided norms: the replicates at which the
            observed variance would resolve a difference of `resolve`; inf when no number would,
            NaN otherwise); empty when the baseline has no runs.
        baseline: the baseline's name.
        confidence: the level of the intervals, e.g. 0.95.
        rope: the half-width of the region of practical equivalence (a fraction: 0.01 is 1 point).
        correction: the mean ``n_valid / n_train`` of the replicates (0.0: unknown, a plain fold-level t).
        resolve: the difference (a fraction) ``folds_needed`` is sized for.
        diverged: the runs left out as diverged, as ``(norm, repeat, fold, seed)`` tuples.
    """

    per_norm: pd.DataFrame
    paired: pd.DataFrame
    baseline: str
    confidence: float
    rope: float = 0.01
    correction: float = 0.0
    resolve: float = 0.02
    diverged: tuple = ()

    def __getitem__(self, name):
        """``summary['per_norm']`` and ``summary['paired']``, as for a dict."""
        if name not in ("per_norm", "paired"):
            raise KeyError(f"Summary has the tables 'per_norm' and 'paired', not {name!r}")
        return getattr(self, name)


class _Test(NamedTuple):
    "The corrected t of J fold-level values: the posterior of their mean is t(J - 1, mean, scale)."

    n: int
    mean: float
    std: float
    scale: float
    low: float
    high: float
    p_value: float


def corrected_t(values, correction: float, confidence: float) -> _Test:
    """The corrected resampled t-test of mean = 0 over J fold-level values (one per replicate).

    Returns J, mean, std (ddof=1), the standard error ``std * sqrt(1/J + correction)`` (correction 0:
    the plain one-sample t), the interval and the two-sided p (J - 1 degrees of freedom). J < 2: NaN
    but J and the mean; equal values: a zero-width interval and p = 0 (NaN when all are 0), as scipy.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return _Test(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan)
    std = float(values.std(ddof=1))
    scale = std * math.sqrt(1.0 / n + correction)
    if scale == 0.0:
        return _Test(n, mean, std, 0.0, mean, mean, 0.0 if mean != 0.0 else math.nan)
    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    p_value = float(2.0 * stats.t.sf(abs(mean) / scale, n - 1))
    return _Test(n, mean, std, scale, mean - quantile * scale, mean + quantile * scale, p_value)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries left out of the family).

    The i-th smallest of m p-values becomes ``max_{k <= i} min(1, (m - k + 1) p_(k))``.

    Args:
        p_values: the family's p-values.

    Returns:
        The adjusted p-values, in the order given (NaN where the input is NaN).

    Examples:
        >>> holm([0.01, 0.04, 0.03]).round(4).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def _posterior(test: _Test, rope: float) -> tuple[float, float, float]:
    "P(mean > rope), P(|mean| <= rope), P(mean < -rope) under the correlated t posterior (Benavoli et al. 2017, eq. 9)."
    if not math.isfinite(test.scale):
        return math.nan, math.nan, math.nan
    if test.scale == 0.0:  # all differences equal: the posterior is a point
        better, worse = float(test.mean > rope), float(test.mean < -rope)
    else:
        better = float(stats.t.sf((rope - test.mean) / test.scale, test.n - 1))
        worse = float(stats.t.cdf((-rope - test.mean) / test.scale, test.n - 1))
    return better, max(0.0, 1.0 - better - worse), worse


def folds_needed(std: float, correction: float, confidence: float, resolve: float, limit: int = 10_000) -> float:
    """How many (repeat, fold) replicates would resolve a difference of `resolve`, at this variance.

    The smallest J at which the corrected interval's half-width, ``t_{(1+confidence)/2, J-1} · std
    · sqrt(1/J + correction)``, is at most `resolve` (about even odds of declaring a true difference
    of `resolve`). Rough by design: it takes the observed std as the truth.

    Args:
        std: the sample std of the fold-level differences (a fraction).
        correction: n_valid / n_train of the replicates (0: none).
        confidence: the level of the interval, in (0, 1).
        resolve: the difference to resolve (a fraction: 0.02 is 2 points).
        limit: the largest J tried.

    Returns:
        That J as a float; inf when no J up to `limit` reaches it (with a correction, the interval
            is never narrower than its floor ``z · std · sqrt(correction)``); NaN for a NaN std.

    Examples:
        >>> folds_needed(0.05, 0.0, 0.95, 0.02)  # t_{0.975, J-1} * 0.05 / sqrt(J) <= 0.02 from J = 27 on
        27.0
        >>> folds_needed(0.05, 0.25, 0.95, 0.02)  # 1.96 * 0.05 * 0.5 = 0.049 > 0.02
        inf
    """
    if not math.isfinite(std):
        return math.nan
    if std == 0.0:
        return 2.0
    if stats.norm.ppf(0.5 + confidence / 2.0) * std * math.sqrt(correction) >= resolve:
        return math.inf  # the floor: t quantiles are above the normal one at every J
    replicates = np.arange(2, limit + 1)
    half_width = stats.t.ppf(0.5 + confidence / 2.0, replicates - 1) * std * np.sqrt(1.0 / replicates + correction)
    reached = np.flatnonzero(half_width <= resolve)
    return float(replicates[reached[0]]) if reached.size else math.inf


def _verdict(test: _Test, p_adjusted: float, rope: float, alpha: float) -> str:
    "equivalent: the interval inside ±rope; better / worse: Holm-adjusted p < alpha; else undecided."
    if math.isfinite(test.low) and -rope <= test.low and test.high <= rope:
        return "equivalent"
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return "better" if test.mean > 0 else "worse"
    return "undecided"


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
    keys = ["norm", "repeat", "fold", "seed"] if "repeat" in df.columns else ["norm", "fold", "seed"]
    duplicated = df.duplicated(subset=keys, keep=False)
    if duplicated.any():
        examples = df.loc[duplicated, keys].head(6).to_dict("records")
        raise ValueError(f"results have more than one row for the same ({', '.join(keys)}), so runs cannot be paired: {examples}")


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    "The columns the statistics use: norm (str), repeat (0 where absent), fold, seed, accuracy, n_train, n_valid."
    runs = pd.DataFrame({"norm": df["norm"].astype(str), "fold": df["fold"], "seed": df["seed"]})
    runs["repeat"] = pd.to_numeric(df["repeat"]).fillna(0).astype("int64") if "repeat" in df.columns else 0
    runs["accuracy"] = pd.to_numeric(df["accuracy"]).astype(np.float64)
    for column in ("n_train", "n_valid"):
        runs[column] = pd.to_numeric(df[column], errors="coerce") if column in df.columns else np.nan
    return runs


def _without_diverged(df: pd.DataFrame) -> tuple[pd.DataFrame, tuple]:
    "`df` without the runs whose `diverged` column is True, and those runs as (norm, repeat, fold, seed) tuples."
    if "diverged" not in df.columns:
        return df, ()
    flags = df["diverged"].map(lambda v: v is True or v == 1 or str(v).strip().lower() == "true").to_numpy(dtype=bool)
    runs = _runs(df[flags])
    left_out = tuple(zip(runs["norm"], runs["repeat"], runs["fold"], runs["seed"], strict=True))
    return df[~flags], left_out


def _correction(runs: pd.DataFrame) -> float:
    "The mean n_valid / n_train over the replicates; 0.0 unless every run says both."
    sizes = runs[["n_train", "n_valid"]].to_numpy(dtype=np.float64)
    if not len(sizes) or not np.isfinite(sizes).all() or (sizes <= 0).any():
        return 0.0
    per_fold = runs.assign(ratio=sizes[:, 1] / sizes[:, 0]).groupby(["repeat", "fold"])["ratio"].mean()
    return float(per_fold.mean())


def _fold_keys(df: pd.DataFrame) -> set:
    runs = _runs(df)
    return set(zip(runs["repeat"], runs["fold"], strict=True))


def complete_folds(df: pd.DataFrame, folds=None) -> pd.DataFrame:
    """The runs of the (repeat, fold)s that every normalization has with every seed.

    Means over different sets of folds would not compare (one held-out fold moves every
    normalization), e.g. while a grid is still running or when grids are compared side by side.

    Args:
        df: one row per run with columns ``norm``, ``fold``, ``seed`` and optionally ``repeat``.
        folds: optionally, the (repeat, fold) pairs to keep at most (e.g. those of another grid).

    Returns:
        The rows of `df` whose (repeat, fold) is complete (and in `folds`), in their order.

    Examples:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"norm": ["none", "pcen", "none"], "fold": [1, 1, 2], "seed": 0, "accuracy": [0.6, 0.7, 0.9]})
        >>> complete_folds(df)["fold"].tolist()
        [1, 1]
    """
    runs = _runs(df)
    cells = runs.drop_duplicates(["repeat", "fold", "norm", "seed"]).groupby(["repeat", "fold"]).size()
    keep = set(cells.index[cells == runs["norm"].nunique() * runs["seed"].nunique()])
    if folds is not None:
        keep &= set(folds)
    return df[[key in keep for key in zip(runs["repeat"], runs["fold"], strict=True)]]


def _norm_order(norms: pd.Series, order) -> list[str]:
    "Names in `order` that have runs, then the others in order of first appearance."
    present = list(dict.fromkeys(norms))
    if order is None:
        return present
    if isinstance(order, str):
        raise TypeError(f"order must be a sequence of normalization names, got {order!r}")
    ordered = [str(norm) for norm in dict.fromkeys(order) if str(norm) in present]
    return ordered + [norm for norm in present if norm not in ordered]


def fold_differences(df: pd.DataFrame, norm: str, baseline: str) -> pd.DataFrame:
    """The paired differences of `norm` against `baseline`, averaged over the seeds of each fold.

    Runs are matched on (repeat, fold, seed); unmatched runs are left out. The seeds of one
    (repeat, fold) share its validation clips, so their differences are averaged: the replicate of
    every test in `summarize`.

    Args:
        df: one row per run with columns ``norm``, ``fold``, ``seed``, ``accuracy`` and optionally
            ``repeat`` (absent: 0).
        norm: the normalization compared.
        baseline: the normalization it is compared against.

    Returns:
        One row per (repeat, fold) with a matched pair: ``repeat``, ``fold``, ``diff`` (mean
        difference, a fraction) and ``pairs`` (matched seeds).

    Examples:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"norm": ["none", "none", "pcen", "pcen"], "fold": [1, 1, 1, 1],
        ...                    "seed": [0, 1, 0, 1], "accuracy": [0.70, 0.60, 0.75, 0.61]})
        >>> fold_differences(df, "pcen", "none").round(4).to_dict("records")
        [{'repeat': 0, 'fold': 1, 'diff': 0.03, 'pairs': 2}]
    """
    return _fold_differences(_runs(df), str(norm), str(baseline))


def _fold_differences(runs: pd.DataFrame, norm: str, baseline: str) -> pd.DataFrame:
    wide = runs.pivot(index=["repeat", "fold", "seed"], columns="norm", values="accuracy")
    absent = pd.Series(np.nan, index=wide.index)
    matched = (wide.get(norm, absent) - wide.get(baseline, absent)).dropna()
    per_fold = matched.groupby(level=["repeat", "fold"]).agg(["mean", "size"]).rename(columns={"mean": "diff", "size": "pairs"})
    return per_fold.reset_index().astype({"diff": "float64", "pairs": "int64"})


def summarize(
    df: pd.DataFrame,
    baseline: str = "none",
    confidence: float = 0.95,
    order: Sequence[str] | None = None,
    rope: float = 0.01,
    resolve: float = 0.02,
) -> Summary:
    """Per-normalization accuracy and the verdict of each normalization against `baseline`.

    The seeds of one (repeat, fold) share its validation clips, so they are averaged first: that
    replicate, not the run, is the unit of every test (`METHOD` names the references). Over the J
    replicates, the interval of a mean or of a paired difference is
    ``mean ± t_{(1+confidence)/2, J-1} · std · sqrt(1/J + n_valid/n_train)``, the corrected resampled
    t-test (correction 0 without ``n_train``/``n_valid``). The p-values against the baseline are
    Holm-adjusted as one family; the Bayesian correlated t posterior gives ``p_better`` =
    P(difference > rope), ``p_worse`` = P(difference < -rope) and ``p_equivalent`` the rest. The
    verdict: ``equivalent`` when the interval lies inside ±rope; else ``better`` or ``worse`` when the
    Holm-adjusted p is below 1 - confidence; else ``undecided`` (also with fewer than 2 replicates:
    NaN intervals and p-values). An empty `df` gives empty tables, an absent baseline an empty
    ``paired``; runs whose ``diverged`` column is True are left out and listed in ``Summary.diverged``.

    Args:
        df: one row per run with columns ``norm``, ``fold``, ``seed``, ``accuracy`` (fraction in
            [0, 1]) and, when known, ``n_train``, ``n_valid`` (clips), ``repeat`` (absent: 0)
            and ``diverged``, at most one row per (norm, repeat, fold, seed) (e.g. `RunStore.rows()`).
        baseline: the normalization the paired differences are taken against.
        confidence: level of the intervals, in (0, 1); 1 - confidence is the tests' level.
        order: optional names giving the row order (names without runs skipped, others follow in
            order of first appearance).
        rope: half-width of the region of practical equivalence, a fraction (0.01: 1 point).
        resolve: the difference (a fraction) that ``folds_needed`` sizes the grid to resolve.

    Returns:
        The `Summary`: tables `per_norm` and `paired`, with `baseline`, `confidence`, `rope` and
        the `correction` used.

    Raises:
        TypeError: `df` is not a DataFrame, or `order` is one string.
        ValueError: `confidence` outside (0, 1), a negative `rope` or a non-positive `resolve`; a
            required column missing; a missing or non-numeric accuracy; more than one row for the
            same (norm, repeat, fold, seed).

    Examples:
        Fold accuracies 0.70, 0.72, 0.74 (one seed, no clip counts) give mean 0.72, std 0.02 and
        the 95% interval 0.72 ± 4.3027 · 0.02 / sqrt(3) = [0.6703, 0.7697]:

        >>> import pandas as pd
        >>> df = pd.DataFrame({"norm": "none", "fold": [1, 2, 3], "seed": 0, "accuracy": [0.70, 0.72, 0.74]})
        >>> s = summarize(df).per_norm.loc["none"]
        >>> tuple(round(float(s[c]), 4) for c in ("mean", "std", "ci_low", "ci_high"))
        (0.72, 0.02, 0.6703, 0.7697)

        With 100 training and 50 validation clips per fold the variance is multiplied by
        (1/3 + 0.5) / (1/3) = 2.5, so the interval widens by sqrt(2.5):

        >>> s = summarize(df.assign(n_train=100, n_valid=50)).per_norm.loc["none"]
        >>> round(float(s["ci_high"] - s["mean"]), 4), round(0.0497 * 2.5**0.5, 4)
        (0.0786, 0.0786)
    """
    if not isinstance(confidence, numbers.Real) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be a number in (0, 1) such as 0.95, got {confidence!r}")
    if not isinstance(rope, numbers.Real) or not 0.0 <= float(rope) < 1.0:
        raise ValueError(f"rope must be a fraction in [0, 1) such as 0.01 (1 point), got {rope!r}")
    if not isinstance(resolve, numbers.Real) or not 0.0 < float(resolve) < 1.0:
        raise ValueError(f"resolve must be a fraction in (0, 1) such as 0.02 (2 points), got {resolve!r}")
    confidence, baseline, rope, resolve = float(confidence), str(baseline), float(rope), float(resolve)
    _check_results_frame(df)
    df, diverged = _without_diverged(df)
    runs = _runs(df)
    norms = _norm_order(runs["norm"], order)
    correction = _correction(runs)

    per_norm, tests = {}, {}
    for norm in norms:
        mine = runs[runs["norm"] == norm]
        test = corrected_t(mine.groupby(["repeat", "fold"])["accuracy"].mean(), correction, confidence)
        accuracy = mine["accuracy"].to_numpy()
        low, high = np.clip([test.low, test.high], 0.0, 1.0)  # an accuracy lies in [0, 1]; NaN stays NaN
        per_norm[norm] = [len(mine), test.mean, test.std, low, high, accuracy.min(), accuracy.max(), test.n]
        if baseline in norms and norm != baseline:
            per_fold = _fold_differences(runs, norm, baseline)
            tests[norm] = (int(per_fold["pairs"].sum()), corrected_t(per_fold["diff"], correction, confidence))
    adjusted = dict(zip(tests, holm([test.p_value for _, test in tests.values()]), strict=True))
    paired = {}
    for norm, (pairs, test) in tests.items():
        verdict = _verdict(test, adjusted[norm], rope, 1.0 - confidence)
        needed = folds_needed(test.std, correction, confidence, resolve) if verdict == "undecided" else math.nan
        row = [pairs, test.n, test.mean, test.std, test.low, test.high, test.p_value, adjusted[norm]]
        paired[norm] = [*row, *_posterior(test, rope), verdict, needed]
    return Summary(
        per_norm=_table(per_norm, _PER_NORM_COLUMNS),
        paired=_table(paired, _PAIRED_COLUMNS),
        baseline=baseline,
        confidence=confidence,
        rope=rope,
        correction=correction,
        resolve=resolve,
        diverged=diverged,
    )


def _table(rows: dict, columns: list[str]) -> pd.DataFrame:
    types = {c: "int64" if c in _INT_COLUMNS else str if c == "verdict" else "float64" for c in columns}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).astype(types).rename_axis("norm")
