"""The documentation's results tables and the README's short answer, generated from committed grids' `results.csv`.

Prints (or, with `--write FILE`, puts between FILE's markers `<!-- results:NAME:start -->` and
`<!-- results:NAME:end -->`, NAME being the grid folder's name) the per-normalization means with
95% intervals, the paired differences against `none` and against `global` with their verdicts
(`fastspecnorm.experiment.summarize`: seeds of a fold averaged, corrected resampled t over folds,
Holm, a region of practical equivalence of 1 point), and the mean accuracy per held-out fold
(speaker). With `--answer`, one line per grid instead (the best mean and every verdict against
`none`), between the markers `results:answer`. `tests/test_results_tables.py`
checks that `docs/results.md` and `README.md` hold exactly what this prints for every committed
grid, so the numbers there always match `results.csv`.

    python experiments/results_tables.py results/fsdd --write docs/results.md
    python experiments/results_tables.py --answer results/fsdd results/fsdd-augment --write README.md
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pandas as pd

from fastspecnorm.datasets.fsdd import FSDD_SPEAKERS
from fastspecnorm.experiment import summarize
from fastspecnorm.experiment.norms import NORMS
from fastspecnorm.experiment.summary import complete_folds


def _pct(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _fold_name(dataset: str, fold: int) -> str:
    return FSDD_SPEAKERS[fold - 1] if dataset == "fsdd" and 1 <= fold <= len(FSDD_SPEAKERS) else f"fold {fold}"


def _verdicts(df: pd.DataFrame, order: list[str], baseline: str):
    "`summarize` against `baseline`, or None when the grid has no runs of it."
    return summarize(df, baseline=baseline, order=order) if baseline in order else None


def results_markdown(out: str | Path) -> str:
    "The markdown tables of the grid in `out` (its `results.csv`)."
    out = Path(out)
    every = pd.read_csv(out / "results.csv")
    df = complete_folds(every)
    dataset = "fsdd" if str(df["preset"].iloc[0]).startswith("fsdd") else "esc50"
    order = [n for n in NORMS if n in set(df["norm"])]
    folds = sorted(df["fold"].unique())
    running = f" ({len(every) - len(df)} more runs of folds still running are left out)" if len(every) > len(df) else ""
    lines = [
        f"{len(df)} runs{running}: {len(order)} normalizations x {len(folds)} held-out "
        f"{'speakers' if dataset == 'fsdd' else 'folds'} x {df['seed'].nunique()} seeds, "
        f"{int(df['epochs'].iloc[0])} epochs, preset `{df['preset'].iloc[0]}`. Accuracy in %; the seeds of a fold are "
        "averaged, and intervals (95%) and verdicts come from the corrected resampled t-test over folds, Holm-adjusted "
        "(`better`/`worse`), or an interval within ±1 point (`equivalent`); paired on fold and seed. Intervals are per "
        "comparison, verdicts adjusted for the seven, so an interval that excludes 0 can still be `undecided`.",
        "",
        "| normalization | runs | mean accuracy [95% CI] | vs `none` [95% CI] | verdict | vs `global` [95% CI] | verdict | "
        + " | ".join(_fold_name(dataset, f) for f in folds)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(folds),
    ]
    by_none, by_global = _verdicts(df, order, "none"), _verdicts(df, order, "global")
    per_norm = (by_none or summarize(df, order=order)).per_norm
    per_fold = df.groupby(["norm", "fold"])["accuracy"].mean()
    for norm in order:
        row = per_norm.loc[norm]
        cells = [f"`{norm}`", str(int(row["n"])), f"{_pct(row['mean'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"]
        for summary in (by_none, by_global):
            cells += [_diff(summary, norm), _verdict(summary, norm)]
        cells += [_pct(per_fold.get((norm, f), math.nan)) for f in folds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _diff(summary, norm: str) -> str:
    "`+x.x [+lo, +hi]` points: the paired difference of `norm` in `summary`, or '-' when it has none."
    if summary is None or norm not in summary.paired.index:
        return "-"
    p = summary.paired.loc[norm]
    return f"{_pct(p['mean_diff'], True)} [{_pct(p['ci_low'], True)}, {_pct(p['ci_high'], True)}]"


def _verdict(summary, norm: str) -> str:
    "The verdict of `norm` in `summary` (bold when better or worse), or '-'."
    if summary is None or norm not in summary.paired.index:
        return "-"
    verdict = summary.paired.loc[norm, "verdict"]
    return f"**{verdict}**" if verdict in ("better", "worse") else verdict


def _names(norms) -> str:
    return ", ".join(f"`{n}`" for n in norms)


def answer_markdown(outs) -> str:
    "One line per grid in `outs`: its best mean, then every norm's verdict against `none`."
    lines = []
    for out in map(Path, outs):
        every = pd.read_csv(out / "results.csv")
        df = complete_folds(every)
        running = f", {len(every) - len(df)} more still running" if len(every) > len(df) else ""
        order = [n for n in NORMS if n in set(df["norm"])]
        by_none = _verdicts(df, order, "none")
        per_norm = (by_none or summarize(df, order=order)).per_norm
        best = per_norm["mean"].idxmax()
        settings = (
            json.loads((out / "experiment.json").read_text()).get("settings", {}) if (out / "experiment.json").is_file() else {}
        )
        dataset = "FSDD, speakers held out" if str(df["preset"].iloc[0]).startswith("fsdd") else "ESC-50"
        kind = settings.get("augment") or False
        augment = {False: "", "waveform": ", waveform augmentations", "all": ", all augmentations"}.get(
            kind, ", SpecAugment + mixup"
        )
        row = per_norm.loc[best]
        line = (
            f"- {dataset}{augment} (`{out.name}`, {len(df)} runs, {df['fold'].nunique()} folds{running}): highest mean `{best}`, "
            f"{_pct(row['mean'])}% [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"
        )
        if by_none is not None:
            verdicts = by_none.paired["verdict"]
            said = []
            for verdict in ("better", "worse", "equivalent"):
                norms = list(verdicts.index[verdicts == verdict])
                if norms:
                    said.append(
                        f"{verdict} than `none`: " + ", ".join(f"`{n}` {_diff(by_none, n)}" for n in norms)
                        if verdict != "equivalent"
                        else f"equivalent to `none`: {_names(norms)}"
                    )
            undecided = list(verdicts.index[verdicts == "undecided"])
            if undecided:
                said.append(f"undecided against `none`: {'all' if len(undecided) == len(verdicts) else _names(undecided)}")
            line += "; " + "; ".join(said)
            if best in by_none.paired.index and verdicts[best] not in ("better", "worse"):
                line += f" (`{best}` vs `none` {_diff(by_none, best)} points)"
        lines.append(line + ".")
    return "\n".join(lines) + "\n"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:start -->\n", f"<!-- results:{name}:end -->"


def readme_region(readme: str, name: str) -> str | None:
    "The text between the README's markers for grid `name`, or None when it has none."
    start, end = _markers(name)
    m = re.search(re.escape(start) + r"(.*?)" + re.escape(end), readme, flags=re.S)
    return m.group(1) if m else None


def write_region(path: Path, name: str, text: str) -> None:
    "Replace the text between `path`'s markers for `name` with `text`."
    doc = path.read_text()
    start, end = _markers(name)
    if readme_region(doc, name) is None:
        raise SystemExit(f"{path} has no markers {start.strip()} ... {end}; add them where the table goes")
    path.write_text(re.sub(re.escape(start) + r".*?" + re.escape(end), lambda m: start + text + end, doc, flags=re.S))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, nargs="+", help="grid output folders holding results.csv, e.g. results/fsdd")
    p.add_argument("--answer", action="store_true", help="one line per grid (the README's short answer) instead of the tables")
    p.add_argument("--write", type=Path, default=None, help="file to update between the markers (docs/results.md, README.md)")
    args = p.parse_args(argv)
    if args.answer:
        items = [("answer", answer_markdown(args.out))]
    else:
        items = [(out.name, results_markdown(out)) for out in args.out]
    for name, text in items:
        if args.write is None:
            print(text, end="")
        else:
            write_region(args.write, name, text)


if __name__ == "__main__":
    main()
