"""Tests for fastspecnorm.experiment.summary and .plots: summary statistics, summary.md and summary.png.

Reference numbers are worked out by hand in each test (means, sample standard deviations,
Student-t quantiles in closed form for 2 degrees of freedom).
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
    assert list(table.columns) == ["n", "mean", "std", "ci_low", "ci_high", "min", "max"]
    row = table.loc["none"]
    # mean = 2.16 / 3 = 0.72; deviations -0.02, 0, 0.02 -> variance 0.0008 / 2 -> std 0.02.
    half_width = T_975_DF2 * 0.02 / math.sqrt(3)  # 4.30265 * 0.0115470 = 0.0496828
    assert row["n"] == 3
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


def test_paired_differences_by_hand_exclude_unmatched_runs():
    df = frame(
        [
            ("none", 1, 0, 0.70),
            ("none", 1, 1, 0.60),
            ("none", 2, 0, 0.80),
            ("global", 1, 0, 0.75),  # +0.05
            ("global", 1, 1, 0.61),  # +0.01
            ("global", 2, 0, 0.83),  # +0.03
            ("global", 3, 0, 0.99),  # no "none" run on fold 3: must be left out
            ("channel", 2, 0, 0.78),  # one pair only: -0.02
        ]
    )
    summary = summarize(df)
    assert isinstance(summary, Summary)
    assert summary["paired"] is summary.paired
    assert list(summary.paired.index) == ["global", "channel"]
    assert list(summary.paired.columns) == [
        "n_pairs",
        "mean_diff",
        "std_diff",
        "ci_low",
        "ci_high",
        "p_value",
    ]
    glob = summary.paired.loc["global"]
    # differences 0.05, 0.01, 0.03: mean 0.03, deviations +-0.02 -> std 0.02.
    assert glob["n_pairs"] == 3
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
    assert chan["n_pairs"] == 1
    assert chan["mean_diff"] == pytest.approx(-0.02, rel=1e-9)
    for column in ["std_diff", "ci_low", "ci_high", "p_value"]:
        assert np.isnan(chan[column])

    # The per-norm table still counts every run, matched or not.
    assert summary.per_norm.loc["global", "n"] == 4
    assert summary.per_norm.loc["global", "max"] == 0.99


def test_paired_p_value_matches_scipy_ttest_rel():
    from scipy import stats

    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, size=6)
    other = base + rng.normal(0.02, 0.03, size=6)
    runs = [(fold, seed) for fold in (1, 2, 3) for seed in (0, 1)]
    df = frame(
        [("none", fold, seed, a) for (fold, seed), a in zip(runs, base, strict=True)]
        + [("global", fold, seed, a) for (fold, seed), a in zip(runs, other, strict=True)]
    )
    row = summarize(df).paired.loc["global"]
    expected = stats.ttest_rel(other, base)
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-10)


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
    assert list(summary.paired.columns) == [
        "n_pairs",
        "mean_diff",
        "std_diff",
        "ci_low",
        "ci_high",
        "p_value",
    ]
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
    assert "| none | 3 | 72.00 | 2.00 | [67.03, 76.97] | 70.00 | 74.00 |" in text
    # global: mean 75.00, deviations 0, -2, +2 -> std 2.00 points.
    assert "| global | 3 | 75.00 | 2.00 | [70.03, 79.97] | 73.00 | 77.00 |" in text
    # differences +5, +1, +3 points: mean +3.00, std 2.00, CI 3 -+ 4.97, p = 0.122.
    assert "| global | 3 | +3.00 | 2.00 | [-1.97, +7.97] | 0.122 |" in text
    assert "no evidence of a difference" in text
    assert temp_files(tmp_path / "out") == []


def test_write_summary_without_baseline_explains(tmp_path):
    df = frame([("global", 1, 0, 0.7), ("global", 2, 0, 0.6)])
    md_path, png_path = write_summary(df, tmp_path)
    assert "`none` has no runs" in md_path.read_text()
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_summary_single_runs_show_na(tmp_path):
    md_path, _ = write_summary(frame([("none", 1, 0, 0.7), ("global", 1, 0, 0.8)]), tmp_path)
    text = md_path.read_text()
    assert "| none | 1 | 70.00 | n/a | n/a | 70.00 | 70.00 |" in text
    assert "| global | 1 | +10.00 | n/a | n/a | n/a |" in text


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
    assert "| none | 2 | 80.00 |" in md_path.read_text()
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
    augmented = frame([("none", 1, 0, 0.60), ("none", 2, 0, 0.64), ("global", 1, 0, 0.70), ("global", 2, 0, 0.66)])
    fig = comparison_figure({"plain": plain, "augmented": augmented}, order=["none", "global"], title="t")
    left, right = fig.axes
    points = lambda ax: [np.asarray(c.lines[0].get_ydata(), dtype=float) for c in ax.containers]  # noqa: E731
    (plain_means, aug_means), (plain_diff, aug_diff) = points(left), points(right)
    np.testing.assert_allclose(plain_means, [72.0, 75.0])
    np.testing.assert_allclose(aug_means, [62.0, 68.0])
    np.testing.assert_allclose(plain_diff, [3.0])  # differences +5, +1, +3
    np.testing.assert_allclose(aug_diff, [6.0])  # +10, +2
    # the plain grid's `global` interval: 75 -+ t(0.975, 2) * 2 / sqrt(3) = 75 -+ 4.968
    caps = sorted(y for line in left.containers[0].lines[1] for y in line.get_ydata())
    np.testing.assert_allclose([caps[1], caps[-1]], [75 - 4.9682, 75 + 4.9682], atol=1e-3)
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["plain (6 runs)", "augmented (4 runs)"]
    with pytest.raises(ValueError, match="at least one grid"):
        comparison_figure({})
