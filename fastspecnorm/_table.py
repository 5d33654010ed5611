"""The one rule for naming a table's column by name or position (`AudioDataLoaders.from_df`, the command's
`--csv` options) and `did_you_mean`, the closest names for a wrong one. Imports pandas only (the command
line reads it before torch)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import pandas as pd

__all__ = ["column", "did_you_mean"]


def did_you_mean(wrong: Iterable, known: Iterable) -> str:
    """A clause for an error message naming the known names closest to each wrong one (`difflib.get_close_matches`).

    Args:
        wrong: the names given that are not known.
        known: the names that are.

    Returns:
        E.g. " (did you mean 'channel'?)", or "".

    Examples:
        >>> did_you_mean(["chanel"], ["none", "global", "channel"])
        " (did you mean 'channel'?)"
        >>> did_you_mean(["zscore"], ["none", "global"])
        ''
    """
    known = [str(k) for k in known]
    close = [m for w in wrong for m in difflib.get_close_matches(str(w), known, n=1)]
    return f" (did you mean {' or '.join(repr(m) for m in dict.fromkeys(close))}?)" if close else ""


def column(df: pd.DataFrame, col: str | int, what: str, table: str = "the DataFrame") -> str:
    """The name of the column `col` of `df`, given by name or by 0-based position.

    Args:
        df: the table.
        col: a column name, or a position: an int, or a string of digits that is no column's name
            (as the command line passes `--fn-col 0`); negative positions count from the end.
        what: how the caller names the argument in messages, e.g. "fn_col" or "--fn-col".
        table: how messages name `df`, e.g. "the DataFrame" or a CSV's path.

    Returns:
        The column's name.

    Raises:
        ValueError: a position out of range or a name that is not a column, listing the columns.

    Examples:
        >>> column(pd.DataFrame({"file": [], "label": []}), "1", "--label-col")
        'label'
    """
    if isinstance(col, str) and col.lstrip("-").isdigit() and col not in df.columns:
        col = int(col)
    if isinstance(col, int) and not isinstance(col, bool) and col not in df.columns:
        if not -len(df.columns) <= col < len(df.columns):
            raise ValueError(f"{what} {col} is out of range: {table} has {len(df.columns)} columns {list(df.columns)}")
        return df.columns[col]
    if col not in df.columns:
        raise ValueError(f"{what} {col!r} is not a column of {table}{did_you_mean([col], df.columns)}; "
                         f"its columns are {list(df.columns)}")  # fmt: skip
    return col
