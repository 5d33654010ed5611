"""The results tables of `docs/results.md` and the README's short answer are exactly what
`experiments/results_tables.py` computes from the committed `results/*/results.csv`, and that
script's numbers agree with pandas on the same rows."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
GRIDS = sorted(p.parent for p in (REPO / "results").glob("*/results.csv"))


def _script():
    spec = importlib.util.spec_from_file_location("results_tables", REPO / "experiments" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS_PAGE = REPO / "docs" / "results.md"


@pytest.mark.parametrize("grid", GRIDS, ids=[g.name for g in GRIDS])
def test_results_page_holds_the_tables_of_the_committed_results(grid):
    tables = _script()
    region = tables.readme_region(RESULTS_PAGE.read_text(), grid.name)
    assert region is not None, f"docs/results.md has no <!-- results:{grid.name}:start --> ... end --> markers"
    assert region == tables.results_markdown(grid), (
        f"docs/results.md's table for {grid.name} is out of date: "
        f"run python experiments/results_tables.py {grid.relative_to(REPO)} --write docs/results.md"
    )


def test_readme_answer_is_that_of_the_committed_results():
    tables = _script()
    region = tables.readme_region((REPO / "README.md").read_text(), "answer")
    assert region is not None, "README.md has no <!-- results:answer:start --> ... end --> markers"
    grids = " ".join(str(g.relative_to(REPO)) for g in GRIDS)
    assert region == tables.answer_markdown(GRIDS), (
        f"README.md's short answer is out of date: run python experiments/results_tables.py --answer {grids} --write README.md"
    )


def test_answer_names_the_best_normalization(tmp_path):
    rows = [("none", 1, 0, 0.60), ("none", 2, 0, 0.70), ("global", 1, 0, 0.65), ("global", 2, 0, 0.80)]
    pd.DataFrame(
        [{"norm": n, "fold": f, "seed": s, "epochs": 6, "accuracy": a, "preset": "quick"} for n, f, s, a in rows]
    ).to_csv(tmp_path / "results.csv", index=False)
    line = _script().answer_markdown([tmp_path])
    # global: mean 72.5; paired against none +7.5 [-24.3, +39.3] (worked out in test_paired_difference_by_hand)
    assert line.startswith("- ESC-50 (") and "highest mean `global`, 72.5%" in line and "vs `none` +7.5 [-24.3, +39.3]" in line
    assert "undecided against `none`: all" in line and "better" not in line


@pytest.mark.parametrize("grid", GRIDS, ids=[g.name for g in GRIDS])
def test_table_means_agree_with_pandas(grid):
    text = _script().results_markdown(grid)
    df = pd.read_csv(grid / "results.csv")
    # only folds every norm has with every seed (a grid still running has some without)
    per_fold = df.groupby("fold").apply(lambda g: len(set(zip(g["norm"], g["seed"], strict=True))), include_groups=False)
    df = df[df["fold"].isin(per_fold.index[per_fold == df["norm"].nunique() * df["seed"].nunique()])]
    for norm, acc in df.groupby("norm")["accuracy"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{norm}` |"))
        assert row.split(" | ")[1] == str(len(acc))
        # the mean over folds of each fold's mean over seeds (the fold is the replicate)
        fold_means = df[df["norm"] == norm].groupby("fold")["accuracy"].mean()
        assert row.split(" | ")[2].startswith(f"{100 * fold_means.mean():.1f}")


def test_paired_difference_by_hand(tmp_path):
    rows = [("none", 1, 0, 0.60), ("none", 2, 0, 0.70), ("global", 1, 0, 0.65), ("global", 2, 0, 0.80)]
    pd.DataFrame([{"norm": n, "fold": f, "seed": s, "epochs": 6, "accuracy": a, "preset": "fsdd"} for n, f, s, a in rows]).to_csv(
        tmp_path / "results.csv", index=False
    )
    text = _script().results_markdown(tmp_path)
    glob_row = next(line for line in text.splitlines() if line.startswith("| `global` |"))
    # differences +0.05 and +0.10: mean +7.5 points; t(0.975, 1) = 12.706, sd 0.0354: +-31.8 points
    # (one seed per fold and no clip counts: the plain fold-level t)
    assert "+7.5 [-24.3, +39.3] | undecided" in glob_row
    assert glob_row.endswith("| 65.0 | 80.0 |")  # per speaker: george, jackson
    assert "george | jackson" in text


def test_answer_states_each_verdict_of_summarize(tmp_path):
    "The README line says what the verdict column says: better, worse, equivalent, the rest undecided."
    from fastspecnorm.experiment import summarize

    base = [0.60, 0.70, 0.80, 0.65, 0.75, 0.55]
    shifts = {
        "none": [0.0] * 6,
        "pcen": [0.10, 0.11, 0.09, 0.10, 0.12, 0.08],
        "utterance": [-0.10, -0.11, -0.09, -0.10, -0.12, -0.08],
        "global": [0.001, -0.001, 0.002, 0.0, -0.002, 0.001],
        "channel": [0.10, -0.08, 0.05, -0.06, 0.12, -0.09],
    }
    rows = [
        {"norm": n, "fold": f + 1, "seed": 0, "epochs": 6, "accuracy": base[f] + d[f], "preset": "quick"}
        for n, d in shifts.items()
        for f in range(6)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    line = _script().answer_markdown([tmp_path])
    verdicts = summarize(pd.DataFrame(rows)).paired["verdict"].to_dict()
    assert verdicts == {"global": "equivalent", "channel": "undecided", "pcen": "better", "utterance": "worse"}
    assert "better than `none`: `pcen` +10.0 [" in line and "worse than `none`: `utterance` -10.0 [" in line
    assert "equivalent to `none`: `global`" in line and "undecided against `none`: `channel`" in line


def test_tables_leave_out_folds_still_running(tmp_path):
    "Means over different sets of folds would not compare: a fold not every norm and seed has yet is left out, and said so."
    rows = [("none", 1, 0, 0.60), ("none", 2, 0, 0.70), ("pcen", 1, 0, 0.65), ("pcen", 2, 0, 0.80), ("none", 3, 0, 0.99)]
    pd.DataFrame(
        [{"norm": n, "fold": f, "seed": s, "epochs": 6, "accuracy": a, "preset": "quick"} for n, f, s, a in rows]
    ).to_csv(tmp_path / "results.csv", index=False)
    script = _script()
    text = script.results_markdown(tmp_path)
    assert text.startswith("4 runs (1 more runs of folds still running are left out): 2 normalizations x 2 held-out folds")
    assert "| `none` | 2 | 65.0 [" in text  # folds 1 and 2 only, not fold 3's 99%
    assert "highest mean `pcen`, 72.5%" in script.answer_markdown([tmp_path])
