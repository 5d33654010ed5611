"""Your own audio: a folder with one subfolder per label (`folder`) and a CSV listing the clips
(`csv`), the two recipes whose folds can be drawn (`draw_folds`). Torch is imported where used."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .._table import column
from .sources import DataSource, Recipe, SourceSpec, describe_table, register

__all__ = ["FOLDER", "CSV"]


def _read_folder(spec: SourceSpec) -> DataSource:
    from ..audio.check import check_table  # here: keeps `compare --help` free of torch
    from ..audio.io import unreadable_files_note
    from ..data import get_audio_files

    root = Path(spec.data)
    labels = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) if root.is_dir() else []
    rows = [(f.relative_to(root).as_posix(), label) for label in labels for f in get_audio_files(root / label)]
    if not rows:
        raise FileNotFoundError(f"no audio files in subfolders of {root}: a folder source holds one subfolder per label, "
                                f"each with that label's clips{unreadable_files_note(root.rglob('*')) if root.is_dir() else ''}")  # fmt: skip
    # The loaders' file-name rule (two names of one clip through a link, links leading outside), before anything is written.
    table = check_table(pd.DataFrame(rows, columns=["file", "label"]), root, "file",
                        outside_fix="copying the linked files into it")  # fmt: skip
    table["fold"] = pd.array([pd.NA] * len(table), dtype="Int64")
    return DataSource("folder", root, table, "own", description=describe_table("a folder per label", table, drawn=True),
                      identity={"k": spec.k, "fold_seed": spec.fold_seed}, drawn=True)  # fmt: skip


def _wrong_folder(csv: Path, root: Path, names: list[str], default: bool) -> str:
    """The message for a CSV none of whose files is under `root`: the folder tried, and a folder next to
    it (its parent, or a subfolder of it or of its parent) that holds the CSV's first files, if any."""
    sample = [n for n in names if not os.path.isabs(n)][:3]
    near = [root.parent] + [d for base in (root, root.parent) if base.is_dir() for d in sorted(base.iterdir()) if d.is_dir()]
    found = next((d for d in near if all((d / n).is_file() for n in sample)), None)
    tried = f"{root} (the CSV's folder, the default)" if default else str(root)
    fix = f"--path {found}" if found is not None else "--path DIR, the folder its file names are relative to"
    return (f"none of the {len(names)} files listed in {csv} is under {tried}, e.g. {root / sample[0]}: pass {fix} "
            "(path= in compare())")  # fmt: skip


#: Labels that stand for a missing value (pandas' and spreadsheets' spellings), refused as classes.
_MISSING = {"nan", "na", "n/a", "null", "none", "<na>", "#n/a"}


def _read_csv(spec: SourceSpec) -> DataSource:
    from ..audio.check import check_table  # here: keeps `compare --help` free of torch

    csv = Path(spec.csv)
    if not csv.is_file():
        raise FileNotFoundError(f"--csv {csv}: no such file")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"cannot read {csv} as CSV: {e}") from None
    if df.empty:
        raise ValueError(f"{csv} has no rows")
    fn, label = column(df, spec.fn_col, "--fn-col", str(csv)), column(df, spec.label_col, "--label-col", str(csv))
    root = Path(spec.path) if spec.path is not None else csv.parent
    if empty := [i + 2 for i, (f, v) in enumerate(zip(df[fn], df[label], strict=True)) if not f.strip() or not v.strip()]:
        raise ValueError(f"{csv}: line(s) {empty[:10]} have an empty file name or label")
    if missing := [i + 2 for i, v in enumerate(df[label]) if v.strip().lower() in _MISSING]:
        raise ValueError(f"{csv}: line(s) {missing[:10]} have the label {df[label].iloc[missing[0] - 2]!r}, which spreadsheets "
                         "and pandas write for a missing value, not a class: fill in the label or remove the row")  # fmt: skip
    # The loaders' file-name rule, on the CSV's own columns, before anything is written.
    outside = spec.allow_outside or all(os.path.isabs(v) for v in df[fn])
    df = check_table(df, root, fn, allow_outside=outside, outside_fix="--allow-outside (allow_outside=True in compare())")
    names = [str(v) for v in df[fn]]
    if not all(os.path.isabs(n) for n in names) and not any((root / n).exists() for n in names):
        raise FileNotFoundError(_wrong_folder(csv, root, names, spec.path is None))
    table = pd.DataFrame({"file": df[fn], "label": df[label]})
    identity: dict[str, Any] = {"fn_col": fn, "label_col": label}
    if outside:  # only when set: other CSV grids keep their identity
        identity["allow_outside"] = True
    names: dict[int, str] = {}
    drawn = spec.fold_col is None
    if not drawn:
        col = column(df, spec.fold_col, "--fold-col", str(csv))
        values = df[col].str.strip()
        if blank := [i + 2 for i, v in enumerate(values) if not v]:
            raise ValueError(f"{csv}: line(s) {blank[:10]} have an empty {col!r} (the fold): give every clip its fold")
        distinct = sorted(values.unique(), key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
        if len(distinct) < 2:
            raise ValueError(f"--fold-col {col!r} of {csv} holds only {distinct}: a comparison needs at least two folds")
        numbered = all(v.lstrip("-").isdigit() for v in distinct)
        if numbered and (big := [i + 2 for i, v in enumerate(values) if not -(2**63) <= int(v) < 2**63]):
            raise ValueError(f"{csv}: line(s) {big[:10]} have the fold {values.iloc[big[0] - 2]!r}, beyond 64-bit integers: "
                             "number the folds with smaller integers, or name them")  # fmt: skip
        if numbered and len({int(v) for v in distinct}) < len(distinct):
            spellings = [v for v in distinct if sum(int(w) == int(v) for w in distinct) > 1]
            raise ValueError(f"--fold-col {col!r} of {csv} spells one fold number several ways ({spellings}): "
                             "write each fold one way, so that no two folds merge unseen")  # fmt: skip
        index = {v: (int(v) if numbered else i + 1) for i, v in enumerate(distinct)}
        table["fold"] = values.map(index).astype("Int64")
        names = {} if numbered else {i: v for v, i in index.items()}
        identity["fold_col"] = col
    else:
        table["fold"] = pd.array([pd.NA] * len(table), dtype="Int64")
        identity.update({"k": spec.k, "fold_seed": spec.fold_seed})
        if spec.group_col is not None:
            col = column(df, spec.group_col, "--group-col", str(csv))
            if blank := [i + 2 for i, v in enumerate(df[col]) if not v.strip()]:
                raise ValueError(f"{csv}: line(s) {blank[:10]} have an empty {col!r} (the group): an empty group would "
                                 "put unrelated clips together")  # fmt: skip
            table["group"] = df[col]
            identity["group_col"] = col
    what = f"CSV {csv.name}" + (f", folds from column {identity['fold_col']!r}" if not drawn else "")
    return DataSource("csv", root, table, "own", fold_names=names, identity=identity, drawn=drawn, allow_outside=outside,
                      named_folds=bool(names), description=describe_table(what, table, drawn=drawn, names=names))  # fmt: skip


def _is_folder(path: Path) -> bool:
    from ..data import get_audio_files  # here: keeps `compare --help` free of torch

    return any(d.is_dir() and not d.name.startswith(".") and get_audio_files(d) for d in path.iterdir())


FOLDER = register(Recipe("folder", "own", _read_folder, "one subfolder per label, clips found recursively (k folds drawn)",
                         "own data (a folder per label)", detect=_is_folder, fallback=True, fixed_folds=False))  # fmt: skip
CSV = register(Recipe("csv", "own", _read_csv, "a CSV of file, label and fold (or group) columns", "own data (CSV)",
                      fixed_folds=False))  # fmt: skip
