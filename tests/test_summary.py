"""Tests for fastspecnorm.experiment.summary and .plots: the comparison's statistics, summary.md and summary.png.

Reference numbers are worked out by hand in each test (means, sample standard deviations,
Student-t quantiles and distribution functions in closed form for 1 and 2 degrees of freedom,
Holm's adjustment), or come from `scipy.stats` called directly on the fold-level values.
"""

import math
import os

import numpy as np
import pandas as pd
import pytest

from fastspecnorm.experiment import Summary, summarize, write_summary

# t quantile for 2 degrees of freedom in closed form: t_{p,2} = (2p - 1) * sqrt(2 / (4p(1 - p))).
# For p = 0.975: 0.95 * sqrt(2 / 0.0975) = 4.3026527297494638...
T_975_DF2 = 0.95 * math.sqrt(2.0 / 0.0975)
# t quantile for 1 degree of freedom (Cauchy): tan(pi * (p - 1/2)); for p = 0.975, 12.7062...
T_975_DF1 = math.tan(math.pi * 0.475)


def t_cdf_df2(t):
    "Student t distribution function with 2 degrees of freedom, in closed form."
    return 0.5 + t / (2.0 * math.sqrt(2.0 + t * t))


def make_row(norm="none", fold=1, seed=0, epochs=8, accuracy=0.5, **extra):
    return {"norm": norm, "fold": fold, "seed": seed, "epochs": epochs, "accuracy": accuracy, **extra}


def temp_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------------------


def frame(rows):
    return pd.DataFrame([make_row(norm, fold, seed, accuracy=accuracy) for norm, fold, seed, accuracy in rows])


def test_per_norm_statistics_by_hand():
    df = frame([("none", 1, 0, 0.70), ("none", 2, 0, 0.72), ("none", 3, 0, 0.74)])
    table = summarize(df).per_norm
    assert list(table.index) == ["none"]
    assert list(table.columns) == ["n", "mean", "std", "ci_low", "ci_high", "min", "max", "n_folds"]
    row = table.loc["none"]
    # mean = 2.16 / 3 = 0.72; deviations -0.02, 0, 0.02 -> variance 0.0008 / 2 -> std 0.02.
    half_width = T_975_DF2 * 0.02 / math.sqrt(3)  # 4.30265 * 0.0115470 = 0.0496828
    assert row["n"] == 3 and row["n_folds"] == 3
    assert row["mean"] == pytest.approx(0.72, rel=1e-12)
    assert row["std"] == pytest.approx(0.02, rel=1e-9)  # cancellation in 0.74 - 0.72
    assert row["ci_low"] == pytest.approx(0.72 - half_width, rel=1e-9)
    assert row["ci_high"] == pytest.approx(0.72 + half_width, rel=1e-9)
    assert half_width == pytest.approx(0.0496828, abs=1e-7)
    assert (row["min"], row["max"]) == (0.70, 0.74)


def test_other_confidence_level():
    # Two runs -> one degree of freedom; a 90% interval uses t_{0.95,1} = tan(0.45 pi) = 6.3138.
    df = frame([("none", 1, 0, 0.60), ("none", 2, 0, 0.64)])
    row = summarize(df, confidence=0.90).per_norm.loc["none"]
    std = math.sqrt(2 * 0.02**2)  # deviations +-0.02, divided by n - 1 = 1
    half_width = math.tan(math.pi * 0.45) * std / math.sqrt(2)
    assert row["std"] == pytest.approx(std, rel=1e-9)
    assert row["ci_high"] - row["mean"] == pytest.approx(half_width, rel=1e-9)
    assert half_width == pytest.approx(0.126275, abs=1e-6)


def test_single_run_has_nan_std_and_interval():
    row = summarize(frame([("none", 1, 0, 0.7)])).per_norm.loc["none"]
    assert row["n"] == 1 and row["mean"] == 0.7
    assert np.isnan(row["std"]) and np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert row["min"] == row["max"] == 0.7


PAIRED_COLUMNS = [
    "n_pairs",
    "n_folds",
    "mean_diff",
    "std_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "p_better",
    "p_equivalent",
    "p_worse",
    "verdict",
    "folds_needed",
]


def test_paired_differences_by_hand_exclude_unmatched_runs():
    df = frame(
        [
            ("none", 1, 0, 0.70),
            ("none", 2, 0, 0.80),
            ("none", 3, 0, 0.60),
            ("global", 1, 0, 0.75),  # +0.05
            ("global", 2, 0, 0.81),  # +0.01
            ("global", 3, 0, 0.63),  # +0.03
            ("global", 4, 0, 0.99),  # no "none" run on fold 4: must be left out
            ("channel", 2, 0, 0.78),  # one pair only: -0.02
        ]
    )
    summary = summarize(df)
    assert isinstance(summary, Summary)
    assert summary["paired"] is summary.paired
    assert list(summary.paired.index) == ["global", "channel"]
    assert list(summary.paired.columns) == PAIRED_COLUMNS
    glob = summary.paired.loc["global"]
    # differences 0.05, 0.01, 0.03: mean 0.03, deviations +-0.02 -> std 0.02.
    assert glob["n_pairs"] == 3 and glob["n_folds"] == 3
    assert glob["mean_diff"] == pytest.approx(0.03, rel=1e-9)
    assert glob["std_diff"] == pytest.approx(0.02, rel=1e-8)
    half_width = T_975_DF2 * 0.02 / math.sqrt(3)
    assert glob["ci_low"] == pytest.approx(0.03 - half_width, rel=1e-8)
    assert glob["ci_high"] == pytest.approx(0.03 + half_width, rel=1e-8)
    # t = 0.03 / (0.02 / sqrt 3) = 1.5 sqrt 3; with 2 degrees of freedom the two-sided
    # p-value is 1 - t / sqrt(2 + t^2) = 1 - 1.5 sqrt3 / sqrt(8.75).
    t_statistic = 1.5 * math.sqrt(3)
    assert glob["p_value"] == pytest.approx(1 - t_statistic / math.sqrt(2 + t_statistic**2), rel=1e-7)
    assert glob["p_value"] == pytest.approx(0.12168, abs=1e-5)

    chan = summary.paired.loc["channel"]
    assert chan["n_pairs"] == 1 and chan["n_folds"] == 1
    assert chan["mean_diff"] == pytest.approx(-0.02, rel=1e-9)
    for column in ["std_diff", "ci_low", "ci_high", "p_value", "p_adjusted", "p_better"]:
        assert np.isnan(chan[column])
    assert chan["verdict"] == "undecided"

    # The per-norm table still counts every run, matched or not.
    assert summary.per_norm.loc["global", "n"] == 4
    assert summary.per_norm.loc["global", "max"] == 0.99


def test_seeds_of_one_fold_are_averaged_before_the_test():
    "Two folds x two seeds are 2 replicates, not 4: the seeds' mean differences are the values tested."
    df = frame(
        [
            ("none", 1, 0, 0.70),
            ("none", 1, 1, 0.60),
            ("none", 2, 0, 0.80),
            ("none", 2, 1, 0.70),
            ("pcen", 1, 0, 0.75),  # +0.05
            ("pcen", 1, 1, 0.63),  # +0.03 -> fold 1: +0.04
            ("pcen", 2, 0, 0.90),  # +0.10
            ("pcen", 2, 1, 0.78),  # +0.08 -> fold 2: +0.09
        ]
    )
    summary = summarize(df)
    row = summary.paired.loc["pcen"]
    assert row["n_pairs"] == 4 and row["n_folds"] == 2
    # fold-level differences 0.04 and 0.09: mean 0.065, std = 0.05 / sqrt 2; one degree of freedom.
    std = 0.05 / math.sqrt(2)
    assert row["mean_diff"] == pytest.approx(0.065, rel=1e-9)
    assert row["std_diff"] == pytest.approx(std, rel=1e-9)
    assert row["ci_high"] - row["mean_diff"] == pytest.approx(T_975_DF1 * std / math.sqrt(2), rel=1e-9)
    # t = 0.065 / 0.025 = 2.6 with 1 df (Cauchy): p = 1 - 2 atan(2.6) / pi.
    assert row["p_value"] == pytest.approx(1 - 2 * math.atan(2.6) / math.pi, rel=1e-9)
    # The per-norm mean is the mean of fold means (0.65 and 0.75 for none), its std theirs.
    none = summary.per_norm.loc["none"]
    assert none["n"] == 4 and none["n_folds"] == 2
    assert none["std"] == pytest.approx(0.1 / math.sqrt(2), rel=1e-9)


def test_corrected_resampled_t_by_hand():
    "With n_train and n_valid the variance is multiplied by (1/J + n_valid/n_train) / (1/J)."
    rows = [("none", 1, 0, 0.70), ("none", 2, 0, 0.80), ("none", 3, 0, 0.60)]
    rows += [("global", 1, 0, 0.75), ("global", 2, 0, 0.81), ("global", 3, 0, 0.63)]
    df = frame(rows).assign(n_train=400, n_valid=100)
    summary = summarize(df)
    assert summary.correction == pytest.approx(0.25, rel=1e-12)
    row = summary.paired.loc["global"]
    # differences 0.05, 0.01, 0.03: mean 0.03, std 0.02; standard error 0.02 * sqrt(1/3 + 1/4).
    scale = 0.02 * math.sqrt(1 / 3 + 0.25)
    assert row["ci_low"] == pytest.approx(0.03 - T_975_DF2 * scale, rel=1e-8)
    assert row["ci_high"] == pytest.approx(0.03 + T_975_DF2 * scale, rel=1e-8)
    t_statistic = 0.03 / scale
    assert row["p_value"] == pytest.approx(2 * (1 - t_cdf_df2(t_statistic)), rel=1e-7)
    # The Bayesian correlated t posterior is t(2, 0.03, scale): P(diff > 0.01), P(diff < -0.01).
    assert row["p_better"] == pytest.approx(1 - t_cdf_df2((0.01 - 0.03) / scale), rel=1e-7)
    assert row["p_worse"] == pytest.approx(t_cdf_df2((-0.01 - 0.03) / scale), rel=1e-7)
    assert row["p_better"] + row["p_equivalent"] + row["p_worse"] == pytest.approx(1.0, abs=1e-12)
    # the per-norm interval is corrected too: none's fold means 0.7, 0.8, 0.6 have std 0.1.
    none = summary.per_norm.loc["none"]
    assert none["mean"] - none["ci_low"] == pytest.approx(T_975_DF2 * 0.1 * math.sqrt(1 / 3 + 0.25), rel=1e-8)
    assert none["ci_high"] == 1.0  # 0.7 + 0.329 clipped: an accuracy is at most 1
    # Folds of different sizes: the mean of the per-fold ratios.
    uneven = frame(rows).assign(n_train=[400, 300, 200] * 2, n_valid=[100, 150, 200] * 2)
    assert summarize(uneven).correction == pytest.approx((0.25 + 0.5 + 1.0) / 3, rel=1e-12)
    # A run without the counts: no correction at all.
    partial = df.copy()
    partial.loc[0, "n_train"] = np.nan
    assert summarize(partial).correction == 0.0


def test_repeats_are_replicates_and_old_results_are_repeat_0():
    rows = [("none", f, 0, 0.6 + 0.01 * f) for f in (1, 2)] + [("bn", f, 0, 0.62 + 0.01 * f) for f in (1, 2)]
    old = frame(rows)  # no repeat column: all repeat 0
    two = pd.concat([old.assign(repeat=0), old.assign(repeat=1, accuracy=old["accuracy"] + [0.0, 0.0, 0.04, 0.04])])
    assert summarize(old).paired.loc["bn", "n_folds"] == 2
    row = summarize(two).paired.loc["bn"]
    assert row["n_folds"] == 4 and row["n_pairs"] == 4  # (repeat, fold) replicates
    assert row["mean_diff"] == pytest.approx(0.04, rel=1e-9)  # differences 0.02, 0.02 (repeat 0), 0.06, 0.06 (repeat 1)
    # the same (norm, fold, seed) in two repeats is no duplicate; twice in one repeat is
    with pytest.raises(ValueError, match="repeat"):
        summarize(pd.concat([two, two.iloc[:1]]))


def test_paired_p_value_matches_scipy_on_fold_level_differences():
    from scipy import stats

    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, size=(5, 2))  # 5 folds x 2 seeds
    other = base + rng.normal(0.02, 0.03, size=(5, 2))
    runs = [(fold, seed) for fold in range(1, 6) for seed in (0, 1)]
    df = frame(
        [("none", fold, seed, base[fold - 1, seed]) for fold, seed in runs]
        + [("global", fold, seed, other[fold - 1, seed]) for fold, seed in runs]
    )
    row = summarize(df).paired.loc["global"]
    expected = stats.ttest_rel(other.mean(axis=1), base.mean(axis=1))
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-10)
    low, high = expected.confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-10)


def test_holm_adjustment_by_hand():
    from fastspecnorm.experiment.summary import holm

    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    # NaN is not in the family: m = 2, so 2 * 0.5 = 1.0, then max(1.0, 0.6) = 1.0 (adjusted p never decrease)
    np.testing.assert_allclose(holm([0.5, np.nan, 0.6]), [1.0, np.nan, 1.0])
    np.testing.assert_allclose(holm([0.2, np.nan, 0.01]), [0.2, np.nan, 0.02])
    np.testing.assert_allclose(holm([0.001]), [0.001])
    assert holm([]).shape == (0,)


def verdict_frame(differences: dict[str, list[float]], base=(0.60, 0.70, 0.80, 0.65, 0.75, 0.55)):
    "One seed per fold; each norm's accuracy is the baseline's plus the given difference per fold."
    rows = [("none", fold, 0, a) for fold, a in enumerate(base, start=1)]
    for norm, diffs in differences.items():
        rows += [(norm, fold, 0, a + d) for fold, (a, d) in enumerate(zip(base, diffs, strict=True), start=1)]
    return frame(rows)


def test_verdicts():
    df = verdict_frame(
        {
            "pcen": [0.10, 0.11, 0.09, 0.10, 0.12, 0.08],  # large and steady: better
            "utterance": [-0.10, -0.11, -0.09, -0.10, -0.12, -0.08],  # worse
            "global": [0.001, -0.001, 0.002, 0.0, -0.002, 0.001],  # within +-1 point: equivalent
            "channel": [0.10, -0.08, 0.05, -0.06, 0.12, -0.09],  # noisy: undecided
        }
    )
    paired = summarize(df).paired
    assert paired["verdict"].to_dict() == {"pcen": "better", "utterance": "worse", "global": "equivalent", "channel": "undecided"}
    assert paired.loc["pcen", "p_better"] > 0.99 and paired.loc["utterance", "p_worse"] > 0.99
    assert paired.loc["global", "p_equivalent"] > 0.99
    # With a wider region of practical equivalence, pcen's +10 points is no longer beyond it.
    wide = summarize(df, rope=0.2).paired
    assert wide.loc["pcen", "verdict"] == "equivalent" and wide.loc["pcen", "p_equivalent"] > 0.99
    # Only the undecided say how many folds would resolve 2 points.
    assert paired["folds_needed"].isna().tolist() == [True, True, True, False]


def test_holm_turns_a_lone_p_below_005_undecided():
    "p = 0.03 for one norm alone is 'better'; in a family of three with larger p-values Holm makes it 0.09."
    from scipy import stats

    # differences with mean m and std s over 6 folds give t = m / (s / sqrt 6); choose t for p = 0.03
    t_target = stats.t.isf(0.015, 5)
    spread = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]) * 0.02  # std 0.02 * sqrt(6/5)
    mean = t_target * float(np.std(spread, ddof=1)) / math.sqrt(6)
    lone = summarize(verdict_frame({"pcen": list(mean + spread)})).paired.loc["pcen"]
    assert lone["p_value"] == pytest.approx(0.03, rel=1e-6) and lone["p_adjusted"] == pytest.approx(0.03, rel=1e-6)
    assert lone["verdict"] == "better"
    noisy = [0.10, -0.08, 0.05, -0.06, 0.12, -0.09]
    family = summarize(verdict_frame({"pcen": list(mean + spread), "channel": noisy, "bn": noisy[::-1]})).paired
    assert family.loc["pcen", "p_adjusted"] == pytest.approx(0.09, rel=1e-6)
    assert family.loc["pcen", "verdict"] == "undecided"


def test_folds_needed_by_hand():
    "The smallest J with t_{0.975, J-1} * std * sqrt(1/J + correction) <= 0.02; inf past the correction's floor."
    from scipy import stats

    noisy = [0.10, -0.08, 0.05, -0.06, 0.12, -0.09]
    df = verdict_frame({"channel": noisy})
    row = summarize(df).paired.loc["channel"]
    std = float(np.std(noisy, ddof=1))
    expected = next(j for j in range(2, 100_000) if stats.t.ppf(0.975, j - 1) * std / math.sqrt(j) <= 0.02)
    assert row["folds_needed"] == expected and expected > 6
    # with n_valid / n_train = 1/4 the interval never gets narrower than 1.96 * std * 0.5 > 0.02
    assert summarize(df.assign(n_train=400, n_valid=100)).paired.loc["channel", "folds_needed"] == math.inf


def test_identical_differences_give_limit_p_values():
    same = frame([("none", 1, 0, 0.5), ("none", 2, 0, 0.6), ("a", 1, 0, 0.5), ("a", 2, 0, 0.6)])
    assert np.isnan(summarize(same).paired.loc["a", "p_value"])
    shifted = frame([("none", 1, 0, 0.5), ("none", 2, 0, 0.6), ("a", 1, 0, 0.75), ("a", 2, 0, 0.85)])
    row = summarize(shifted).paired.loc["a"]
    # 0.75 - 0.5 and 0.85 - 0.6 are both 0.25 up to rounding; p is 0 or nearly so.
    assert row["p_value"] < 1e-6


def test_absent_baseline_gives_empty_paired_table():
    summary = summarize(frame([("global", 1, 0, 0.7), ("channel", 1, 0, 0.6)]))
    assert summary.paired.empty
    assert list(summary.paired.columns) == PAIRED_COLUMNS
    assert list(summary.per_norm.index) == ["global", "channel"]


def test_other_baseline():
    df = frame([("none", 1, 0, 0.5), ("global", 1, 0, 0.6)])
    row = summarize(df, baseline="global").paired.loc["none"]
    assert row["mean_diff"] == pytest.approx(-0.1, rel=1e-9)


def test_order_argument_and_first_appearance():
    df = frame([("instance", 1, 0, 0.5), ("none", 1, 0, 0.6), ("global", 1, 0, 0.7)])
    assert list(summarize(df).per_norm.index) == ["instance", "none", "global"]
    ordered = summarize(df, order=["none", "global", "dbrange"])  # dbrange has no runs
    assert list(ordered.per_norm.index) == ["none", "global", "instance"]
    assert list(ordered.paired.index) == ["global", "instance"]


def test_empty_frame_gives_empty_tables(tmp_path):
    summary = summarize(pd.DataFrame({c: [] for c in ["norm", "fold", "seed", "epochs", "accuracy"]}))
    assert summary.per_norm.empty and summary.paired.empty


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError, match="accuracy"):
        summarize(pd.DataFrame({"norm": ["a"], "fold": [1], "seed": [0]}))
    with pytest.raises(ValueError, match="same"):
        summarize(frame([("none", 1, 0, 0.5), ("none", 1, 0, 0.6)]))
    with pytest.raises(ValueError, match="confidence"):
        summarize(frame([("none", 1, 0, 0.5)]), confidence=95)
    with pytest.raises(ValueError, match="accuracy"):
        summarize(frame([("none", 1, 0, float("nan"))]))
    with pytest.raises(TypeError, match="DataFrame"):
        summarize([make_row()])
    with pytest.raises(ValueError, match="rope"):
        summarize(frame([("none", 1, 0, 0.5)]), rope=-0.01)
    with pytest.raises(ValueError, match="resolve"):
        summarize(frame([("none", 1, 0, 0.5)]), resolve=0)


# ---------------------------------------------------------------------------------------
# write_summary
# ---------------------------------------------------------------------------------------


def experiment_frame():
    rows = []
    offsets = {"none": 0.0, "global": 0.03, "channel": 0.02, "instance": 0.0, "dbrange": -0.01}
    rng = np.random.default_rng(1)
    for norm, offset in offsets.items():
        for fold in (1, 2):
            for seed in (0, 1):
                rows.append((norm, fold, seed, 0.6 + offset + 0.01 * fold + rng.normal(0, 0.01)))
    return frame(rows)


def test_write_summary_markdown_tables(tmp_path):
    df = frame(
        [
            ("none", 1, 0, 0.70),
            ("none", 2, 0, 0.72),
            ("none", 3, 0, 0.74),
            ("global", 1, 0, 0.75),
            ("global", 2, 0, 0.73),
            ("global", 3, 0, 0.77),
        ]
    )
    md_path, png_path = write_summary(df, tmp_path / "out", title="Test run")
    assert md_path == tmp_path / "out" / "summary.md"
    assert png_path == tmp_path / "out" / "summary.png"
    text = md_path.read_text()
    assert text.startswith("# Test run\n")
    assert "2 normalization(s)" in text and "3 fold(s)" in text and "1 seed(s)" in text
    assert "8 epochs" in text
    # none: mean 72.00 %, std 2.00 points, CI 72 -+ 4.97 = [67.03, 76.97].
    assert "| none | 3 | 3 | 72.00 | 2.00 | [67.03, 76.97] | 70.00 | 74.00 |" in text
    # global: mean 75.00, deviations 0, -2, +2 -> std 2.00 points.
    assert "| global | 3 | 3 | 75.00 | 2.00 | [70.03, 79.97] | 73.00 | 77.00 |" in text
    # differences +5, +1, +3 points: mean +3.00, CI 3 -+ 4.97, p = 0.122 (Holm: one norm, the same).
    assert "| global | undecided | 3 | 3 | +3.00 | [-1.97, +7.97] | 0.122 | 0.122 |" in text
    assert (
        "- `global`: undecided against `none` (+3.00 points, 95% interval [-1.97, +7.97], 3 folds, Holm-adjusted p 0.122)" in text
    )
    assert "no evidence of a difference, nor of equality" in text
    assert "Nadeau & Bengio 2003" in text and "Holm" in text and "Benavoli" in text
    assert temp_files(tmp_path / "out") == []


def test_write_summary_without_baseline_explains(tmp_path):
    df = frame([("global", 1, 0, 0.7), ("global", 2, 0, 0.6)])
    md_path, png_path = write_summary(df, tmp_path)
    assert "`none` has no runs" in md_path.read_text()
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_summary_single_runs_show_na(tmp_path):
    md_path, _ = write_summary(frame([("none", 1, 0, 0.7), ("global", 1, 0, 0.8)]), tmp_path)
    text = md_path.read_text()
    assert "| none | 1 | 1 | 70.00 | n/a | n/a | 70.00 | 70.00 |" in text
    assert "| global | undecided | 1 | 1 | +10.00 | n/a | n/a | n/a |" in text
    assert "too few for an interval" in text


def test_one_fold_plot_draws_points_on_an_axis_from_zero_and_names_the_fold(tmp_path):
    "One run per norm (fold 'theo'): no interval exists, so none is promised or drawn, and 12.5 vs 20% is not zoomed."
    from fastspecnorm.experiment.plots import summary_figure

    df = frame([("none", "theo", 0, 0.125), ("global", "theo", 0, 0.20)])
    left, right = summary_figure(df, summarize(df), "t").axes
    assert left.get_ylim() == (0.0, 100.0)
    assert "fold theo" in left.get_title() and "no interval" in left.get_title() and "CI" not in left.get_title()
    assert not left.containers and not right.containers  # no error bars, no mean beside a lone dot
    assert [c.get_offsets()[:, 1].tolist() for c in left.collections] == [[12.5], [20.0]]
    low, high = right.get_ylim()
    assert low == -high and high >= 7.5 * 1.5 and "fold theo" in right.get_title()
    assert [c.get_offsets()[:, 1].tolist() for c in right.collections] == [[pytest.approx(7.5)]]
    md = write_summary(df, tmp_path, title="t")[0].read_text()
    assert "over 1 fold(s) (theo)" in md

    # several seeds of the one fold: their mean (black, no bars), still on an axis from 0
    seeds = frame([("none", "theo", 0, 0.10), ("none", "theo", 1, 0.15), ("global", "theo", 0, 0.2), ("global", "theo", 1, 0.3)])
    left, _ = summary_figure(seeds, summarize(seeds), "t").axes
    assert left.get_ylim() == (0.0, 100.0) and "mean over seeds" in left.get_title()
    assert [np.asarray(c.lines[0].get_ydata(), dtype=float).tolist() for c in left.containers] == [[12.5], [25.0]]
    assert all(not c.has_yerr for c in left.containers)

    # two folds: the means with their intervals, as before
    left, _ = summary_figure(experiment_frame(), summarize(experiment_frame()), "t").axes
    assert "95% CI" in left.get_title() and all(c.has_yerr for c in left.containers)


def test_write_summary_png_is_valid(tmp_path):
    _, png_path = write_summary(experiment_frame(), tmp_path)
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 300
    assert len(data) > 10_000


def test_write_summary_replaces_previous_files(tmp_path):
    write_summary(frame([("none", 1, 0, 0.7)]), tmp_path)
    md_path, _ = write_summary(frame([("none", 1, 0, 0.7), ("none", 2, 0, 0.9)]), tmp_path)
    assert "| none | 2 | 2 | 80.00 |" in md_path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["summary.md", "summary.png"]


def test_write_summary_rejects_empty_results(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        write_summary(pd.DataFrame({c: [] for c in ["norm", "fold", "seed", "epochs", "accuracy"]}), tmp_path)
    assert not (tmp_path / "summary.md").exists()


def test_summary_says_how_the_runs_were_made(tmp_path):
    "Commands, versions (counted when a resumed grid mixes them), host and wall time, from the records' info."
    df = frame([("none", 1, 0, 0.70), ("global", 1, 0, 0.75), ("none", 2, 0, 0.72)])
    base = {"python": "3.11.7", "torchaudio": "2.11.1", "fastai": "2.8.12", "fastspecnorm": "0.1.0", "host": "vm"}
    infos = [
        {**base, "torch": "2.14.1", "seconds": 60.0, "finished": "2026-11-28T10:00:00", "command": "python run.py --out 'a b'"},
        {**base, "torch": "2.14.1", "seconds": 90.0, "finished": "2026-11-28T10:02:00", "command": "python run.py --out 'a b'"},
        {**base, "torch": "2.15.0", "seconds": 120.0, "finished": "2026-11-28T09:58:00"},
    ]
    text = write_summary(df, tmp_path, title="t", infos=infos)[0].read_text()
    section = text[text.index("## How these runs were made") :]
    assert "- Command (2 runs): `python run.py --out 'a b'`" in section
    assert "not recorded for 1 run(s)" in section
    assert "Python 3.11.7; torch 2.14.1 (2 runs), 2.15.0 (1 run); torchaudio 2.11.1; fastai 2.8.12" in section
    assert "- Host: vm" in section
    # 60 + 90 + 120 s = 4.5 min; median 90 s; range 60-120 s; earliest and latest finish
    assert (
        "4.5 min of training over 3 runs, 90 s per run (median; 60-120 s); finished 2026-11-28 09:58:00 to 2026-11-28 10:02:00"
        in section
    )
    assert "How these runs were made" not in write_summary(df, tmp_path / "plain", title="t")[0].read_text()


def test_comparison_figure_plots_each_grids_means_and_paired_differences():
    "Two grids side by side: the plotted points are the hand-computed means and paired differences."
    from fastspecnorm.experiment import comparison_figure

    plain = frame(
        [
            ("none", 1, 0, 0.70),
            ("none", 2, 0, 0.72),
            ("none", 3, 0, 0.74),
            ("global", 1, 0, 0.75),
            ("global", 2, 0, 0.73),
            ("global", 3, 0, 0.77),
        ]
    )
    augmented = frame(
        [("none", 1, 0, 0.60), ("none", 2, 0, 0.64), ("none", 3, 0, 0.62), ("global", 1, 0, 0.70), ("global", 2, 0, 0.66)]
        + [("global", 3, 0, 0.68)]
    )
    # a fold only one grid has is left out of both (means over different folds would not compare)
    plain = pd.concat([plain, frame([("none", 4, 0, 0.99), ("global", 4, 0, 0.10)])], ignore_index=True)
    fig = comparison_figure({"plain": plain, "augmented": augmented}, order=["none", "global"], title="t")
    left, right = fig.axes
    points = lambda ax: [np.asarray(c.lines[0].get_ydata(), dtype=float) for c in ax.containers]  # noqa: E731
    (plain_means, aug_means), (plain_diff, aug_diff) = points(left), points(right)
    np.testing.assert_allclose(plain_means, [72.0, 75.0])
    np.testing.assert_allclose(aug_means, [62.0, 68.0])
    np.testing.assert_allclose(plain_diff, [3.0])  # differences +5, +1, +3
    np.testing.assert_allclose(aug_diff, [6.0])  # +10, +2, +6
    # the plain grid's `global` interval: 75 -+ t(0.975, 2) * 2 / sqrt(3) = 75 -+ 4.968
    caps = sorted(y for line in left.containers[0].lines[1] for y in line.get_ydata())
    np.testing.assert_allclose([caps[1], caps[-1]], [75 - 4.9682, 75 + 4.9682], atol=1e-3)
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["plain (6 runs)", "augmented (6 runs)"]
    with pytest.raises(ValueError, match="at least one grid"):
        comparison_figure({})


def test_diverged_runs_are_left_out_and_named(tmp_path):
    "A run with a non-finite loss (diverged=True) is no result: out of every statistic, named in summary.md."
    rows = [("none", 1, 0, 0.70), ("none", 2, 0, 0.80), ("none", 3, 0, 0.60)]
    rows += [("global", 1, 0, 0.75), ("global", 2, 0, 0.81), ("global", 3, 0, 0.63)]
    df = frame(rows).assign(diverged=False)
    diverged = pd.concat([df, frame([("global", 4, 0, 0.02), ("none", 4, 0, 0.9)]).assign(diverged=[True, False])])
    summary = summarize(diverged)
    assert summary.diverged == (("global", 0, 4, 0),)
    # global as without the diverged run: differences 0.05, 0.01, 0.03 on folds 1-3 (fold 4 has no pair left)
    assert summary.paired.loc["global", "n_folds"] == 3
    assert summary.paired.loc["global", "mean_diff"] == pytest.approx(0.03, rel=1e-9)
    assert summary.per_norm.loc["global", "n"] == 3 and summary.per_norm.loc["global", "min"] == 0.63
    # read back from a CSV, where the column holds True/False (and nothing for older rows)
    diverged = diverged.reset_index(drop=True).astype({"diverged": object})
    diverged.loc[0, "diverged"] = None
    path = tmp_path / "results.csv"
    diverged.to_csv(path, index=False)
    assert summarize(pd.read_csv(path)).diverged == (("global", 0, 4, 0),)
    text = write_summary(pd.read_csv(path), tmp_path)[0].read_text()
    assert "**1 run(s) diverged**" in text and "global fold 4 seed 0" in text and "--lr" in text
    assert "diverged" not in write_summary(df, tmp_path / "plain")[0].read_text()
