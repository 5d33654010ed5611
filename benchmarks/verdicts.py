"""The comparison's statistics on simulated grids: false positives where no norm differs, power where one does.

Each scenario simulates grids shaped like a committed real grid (normalizations x folds x seeds)
with the variances estimated from its `results.csv`:

    accuracy[norm, fold, seed] = mean + fold[fold] + interaction[norm, fold] + seed noise

`fold` is what a held-out fold does to every norm alike, `interaction` what it does to one norm
(correlated across the folds of one norm with rho = n_valid / (n_train + n_valid), since their
training sets overlap: Nadeau & Bengio 2003), `seed noise` the spread of seeds within one fold.
Every simulated grid goes through `fastspecnorm.experiment.summarize` as a user's grid does, and
through the test the comparison used before (a paired t over every (fold, seed) pair, unadjusted).
Printed per scenario: the share of comparisons against `none` declared different at the nominal
5% (per comparison and per grid: at least one of the seven), and the power: the share of grids
in which a norm `effect` points better than the others is declared better.

    python benchmarks/verdicts.py                   # the committed ESC-50 and FSDD grids
    python benchmarks/verdicts.py --grids 2000      # more grids: narrower Monte Carlo error
    python benchmarks/verdicts.py --scenarios fsdd-6   # one grid shape

Goal: the new verdicts' false-positive rate at most 5% per comparison; a large effect found in most grids.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fastspecnorm.experiment import summarize

ROOT = Path(__file__).resolve().parent.parent
NORMS = ["none", "global", "channel", "instance", "dbrange", "pcen", "utterance", "bn"]


@dataclass
class Variances:
    "Standard deviations (fractions) of the model's terms, and the grid's n_valid / n_train."

    fold: float
    interaction: float
    seed: float
    ratio: float
    source: str


def estimate(results: Path) -> Variances:
    """The model's standard deviations from a real grid's results (balanced over norms, folds, seeds).

    Seed noise: the pooled within-(norm, fold) variance. Interaction: the two-way residual variance
    of the (norm, fold) means, less the seed noise's share, divided by 1 - rho (the part shared by a
    norm's folds is absorbed by the norm's mean). Fold: the variance of the fold means.
    """
    df = pd.read_csv(results)
    seeds = df["seed"].nunique()
    complete = df.groupby("fold")["norm"].transform("size") == df["norm"].nunique() * seeds
    df = df[complete]  # folds of a grid still running are left out until every norm and seed is in
    seed_var = df.groupby(["norm", "fold"])["accuracy"].var(ddof=1).mean()
    cell = df.groupby(["norm", "fold"])["accuracy"].mean().unstack("fold")
    residual = cell.sub(cell.mean(axis=1), axis=0).sub(cell.mean(axis=0), axis=1) + cell.to_numpy().mean()
    n_norms, n_folds = cell.shape
    residual_var = float((residual.to_numpy() ** 2).sum() / ((n_norms - 1) * (n_folds - 1)))
    ratio = float((df["n_valid"] / df["n_train"]).mean())
    rho = ratio / (1.0 + ratio)
    interaction_var = max(residual_var - seed_var / seeds, 0.0) / (1.0 - rho)
    fold_var = max(float(cell.mean(axis=0).var(ddof=1)) - residual_var / n_norms, 0.0)
    return Variances(math.sqrt(fold_var), math.sqrt(interaction_var), math.sqrt(seed_var), ratio, str(results.relative_to(ROOT)))


def simulate(rng, v: Variances, folds: int, seeds: int, ratio: float, effect: float = 0.0) -> pd.DataFrame:
    "One grid's results: the model above; `pcen` `effect` (a fraction) better than every other norm."
    rho = ratio / (1.0 + ratio)
    n = len(NORMS)
    fold = rng.normal(0.0, v.fold, size=folds)
    shared = rng.normal(0.0, v.interaction * math.sqrt(rho), size=(n, 1))  # equicorrelated across a norm's folds
    interaction = shared + rng.normal(0.0, v.interaction * math.sqrt(1.0 - rho), size=(n, folds))
    accuracy = 0.6 + fold[None, :, None] + interaction[:, :, None] + rng.normal(0.0, v.seed, size=(n, folds, seeds))
    accuracy[NORMS.index("pcen")] += effect
    norm, f, s = np.meshgrid(np.arange(n), np.arange(folds), np.arange(seeds), indexing="ij")
    n_train = 1000
    return pd.DataFrame(
        {
            "norm": np.array(NORMS)[norm.ravel()],
            "fold": f.ravel() + 1,
            "seed": s.ravel(),
            "accuracy": np.clip(accuracy.ravel(), 0.0, 1.0),
            "n_train": n_train,
            "n_valid": round(n_train * ratio),
        }
    )


def old_test(df: pd.DataFrame) -> pd.Series:
    "The earlier test: per norm, a one-sample t of every (fold, seed) difference against `none`; its p-value."
    wide = df.pivot(index=["fold", "seed"], columns="norm", values="accuracy")
    return pd.Series({norm: stats.ttest_1samp(wide[norm] - wide["none"], 0.0).pvalue for norm in NORMS[1:]})


def run(name: str, v: Variances, folds: int, seeds: int, ratio: float, grids: int, effects, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    old_hits, corrected_hits, verdict_hits = [], [], []
    for _ in range(grids):
        df = simulate(rng, v, folds, seeds, ratio)
        paired = summarize(df).paired
        old_hits.append((old_test(df) < 0.05).to_numpy())
        corrected_hits.append((paired["p_value"] < 0.05).to_numpy())
        verdict_hits.append(paired["verdict"].isin(["better", "worse"]).to_numpy())
    rates = {
        label: (np.mean(hits), np.mean(np.any(hits, axis=1)))
        for label, hits in (
            ("old: paired t over (fold, seed) pairs", np.array(old_hits)),
            ("fold-level corrected t, unadjusted", np.array(corrected_hits)),
            ("new: verdict better/worse (corrected t, Holm)", np.array(verdict_hits)),
        )
    }
    power_rows = []
    for effect in effects:
        old_found = new_found = 0
        for _ in range(max(grids // 4, 50)):
            df = simulate(rng, v, folds, seeds, ratio, effect / 100.0)
            old_found += bool(old_test(df)["pcen"] < 0.05)
            new_found += summarize(df).paired.loc["pcen", "verdict"] == "better"
        count = max(grids // 4, 50)
        power_rows.append(f"| +{effect:g} points | {old_found / count:.0%} | {new_found / count:.0%} |")
    margin = 1.96 * math.sqrt(0.05 * 0.95 / (grids * (len(NORMS) - 1)))
    lines = [
        f"### {name}",
        "",
        f"{len(NORMS)} norms x {folds} folds x {seeds} seeds, n_valid/n_train {ratio:.3g}; standard deviations from "
        f"`{v.source}`: fold {100 * v.fold:.2f}, norm x fold {100 * v.interaction:.2f}, seed {100 * v.seed:.2f} points. "
        f"{grids} null grids ({time.perf_counter() - started:.0f} s).",
        "",
        "| test | declared different, per comparison (nominal 5%) | grids with at least one of 7 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {per:.1%} | {grid:.1%} |" for label, (per, grid) in rates.items()]
    lines += [
        "",
        f"Monte Carlo error of a rate near 5% per comparison: about ±{margin:.1%}.",
        "",
        f"| `pcen` truly better by | old test finds it | new verdict `better` ({max(grids // 4, 50)} grids each) |",
        "|---|---:|---:|",
        *power_rows,
        "",
    ]
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grids", type=int, default=1000, help="null grids per scenario (power: a quarter as many per effect)")
    p.add_argument("--effects", type=float, nargs="+", default=[2.0, 5.0, 10.0, 20.0], help="true effects to find, in points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenarios", nargs="+", default=["esc50", "esc50-5fold", "fsdd", "fsdd-6"],
                   choices=["esc50", "esc50-5fold", "fsdd", "fsdd-6"], help="which grid shapes to simulate")  # fmt: skip
    args = p.parse_args(argv)
    esc50 = estimate(ROOT / "results" / "esc50-real400" / "results.csv")
    fsdd = estimate(ROOT / "results" / "fsdd" / "results.csv")
    fsdd_runs = pd.read_csv(ROOT / "results" / "fsdd" / "results.csv")
    fsdd_folds = int((fsdd_runs.groupby("fold").size() == fsdd_runs["norm"].nunique() * fsdd_runs["seed"].nunique()).sum())
    scenarios = {
        "esc50": ("ESC-50 400 clips as committed", esc50, 4, 3, esc50.ratio),
        "esc50-5fold": ("ESC-50 variances, 5 folds x 3 seeds (a 5-fold grid)", esc50, 5, 3, 0.25),
        "fsdd": (f"FSDD as committed ({fsdd_folds} speakers held out)", fsdd, fsdd_folds, 2, fsdd.ratio),
        "fsdd-6": ("FSDD variances, all 6 speakers held out x 2 seeds", fsdd, 6, 2, fsdd.ratio),
    }
    lines = []
    for i, name in enumerate(args.scenarios):
        lines += run(*scenarios[name], args.grids, args.effects, args.seed + i)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
