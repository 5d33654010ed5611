"""The documentation's results tables and the README's short answer, generated from committed grids' `results.csv`.

Prints (or, with `--write FILE`, puts between FILE's markers `<!-- results:NAME:start -->` and
`<!-- results:NAME:end -->`, NAME being the grid folder's name) the per-normalization means with
95% intervals, the paired differences against `none` and against `global`, and the mean accuracy
per held-out fold (speaker). With `--answer`, one line per grid instead (the best normalization and
its paired differences), between the markers `results:answer`. `tests/test_results_tables.py`
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


def _pct(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _fold_name(dataset: str, fold: int) -> str:
    return FSDD_SPEAKERS[fold - 1] if dataset == "fsdd" and 1 <= fold <= len(FSDD_SPEAKERS) else f"fold {fold}"


def results_markdown(out: str | Path) -> str:
    "The markdown tables of the grid in `out` (its `results.csv`)."
    out = Path(out)
    df = pd.read_csv(out / "results.csv")
    dataset = "fsdd" if str(df["preset"].iloc[0]).startswith("fsdd") else "esc50"
    order = [n for n in NORMS if n in set(df["norm"])]
    folds = sorted(df["fold"].unique())
    lines = [
        f"{len(df)} runs: {len(order)} normalizations x {len(folds)} held-out "
        f"{'speakers' if dataset == 'fsdd' else 'folds'} x {df['seed'].nunique()} seeds, "
        f"{int(df['epochs'].iloc[0])} epochs, preset `{df['preset'].iloc[0]}`. Accuracy in %, 95% Student-t intervals; "
        "paired differences are matched on held-out fold and seed.",
        "",
        "| normalization | runs | mean accuracy [95% CI] | vs `none` [95% CI] | vs `global` [95% CI] | "
        + " | ".join(_fold_name(dataset, f) for f in folds)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(folds),
    ]
    by_none = summarize(df, baseline="none", order=order) if "none" in order else None
    by_global = summarize(df, baseline="global", order=order) if "global" in order else None
    per_fold = df.groupby(["norm", "fold"])["accuracy"].mean()
    for norm in order:
        row = by_none.per_norm.loc[norm] if by_none is not None else summarize(df, order=order).per_norm.loc[norm]
        cells = [f"`{norm}`", str(int(row["n"])), f"{_pct(row['mean'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"]
        for summary, base in ((by_none, "none"), (by_global, "global")):
            if summary is None or norm == base or norm not in summary.paired.index:
                cells.append("-")
            else:
                p = summary.paired.loc[norm]
                cells.append(f"{_pct(p['mean_diff'], True)} [{_pct(p['ci_low'], True)}, {_pct(p['ci_high'], True)}]")
        cells += [_pct(per_fold.get((norm, f), math.nan)) for f in folds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _diff(summary, norm: str) -> str:
    "`+x.x [+lo, +hi]` points: the paired difference of `norm` in `summary`, or '-' when it has none."
    if summary is None or norm not in summary.paired.index:
        return "-"
    p = summary.paired.loc[norm]
    return f"{_pct(p['mean_diff'], True)} [{_pct(p['ci_low'], True)}, {_pct(p['ci_high'], True)}]"


def answer_markdown(outs) -> str:
    "One line per grid in `outs`: its best normalization by mean accuracy, with its paired differences."
    lines = []
    for out in map(Path, outs):
        df = pd.read_csv(out / "results.csv")
        order = [n for n in NORMS if n in set(df["norm"])]
        by_none = summarize(df, baseline="none", order=order) if "none" in order else None
        by_global = summarize(df, baseline="global", order=order) if "global" in order else None
        per_norm = (by_none if by_none is not None else summarize(df, order=order)).per_norm
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
        lines.append(
            f"- {dataset}{augment} (`{out.name}`, {len(df)} runs): best `{best}`, "
            f"{_pct(row['mean'])}% [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]; "
            f"vs `none` {_diff(by_none, best)}, vs `global` {_diff(by_global, best)} points."
        )
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
