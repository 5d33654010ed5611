"""Groups of clips (the fragments of one recording, one speaker's takes) and folds that keep each group
whole, for the loaders and the comparison's sources: groups from file names by a regular expression
(`group_pattern`, `groups_from_names`), folds drawn with scikit-learn (`draw_folds`), and the warning
when names look like fragments of recordings but no group was given (`warn_shared_prefixes`).

Imports neither torch nor fastai (the command line checks `--group-regex` before torch)."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

import numpy as np

__all__ = ["group_pattern", "groups_from_names", "draw_folds", "shared_prefix_groups", "warn_shared_prefixes"]

_SEPARATORS = re.compile(r"[-_. ]+")


def group_pattern(regex: str, option: str = "group_regex") -> re.Pattern:
    r"""`regex` compiled, checked to have a group: the group named `group`, else the first.

    Args:
        regex: the regular expression, e.g. `r"(\d+)-[A-Z]-\d+\.wav$"` (ESC-50's source recording).
        option: how messages name the argument ("group_regex", "--group-regex").

    Returns:
        The compiled pattern.

    Raises:
        ValueError: `regex` is not a regular expression, or has no group.

    Examples:
        >>> group_pattern(r"_(?P<group>[a-z]+)_").groupindex
        mappingproxy({'group': 1})
    """
    try:
        pattern = re.compile(regex)
    except (re.error, TypeError) as e:
        raise ValueError(f"{option} '{regex}' is not a regular expression ({e})") from None
    if pattern.groups == 0:
        raise ValueError(f"{option} '{regex}' has no group: put the part of the file name that names the recording "
                         r"in parentheses, e.g. '(\w+)_\d+\.wav$'")  # fmt: skip
    return pattern


def groups_from_names(names: Iterable[str], regex: str, option: str = "group_regex") -> list[str]:
    r"""Each file's group: the group named `group` of `regex` (else its first group), searched in the name.

    Args:
        names: the files' paths relative to the source (e.g. `dog/1-100032-A-0.wav`), as posix strings.
        regex: the regular expression (see `group_pattern`).
        option: how messages name the argument ("group_regex", "--group-regex").

    Returns:
        One group per name, in order.

    Raises:
        ValueError: `regex` is no regular expression or has no group, or its group is empty or unmatched
            in a name (naming the first such file and how many there are).

    Examples:
        >>> groups_from_names(["0/0_george_1.wav", "0/0_theo_12.wav"], r"_([a-z]+)_\d+\.wav$")
        ['george', 'theo']
    """
    pattern = group_pattern(regex, option)
    key = "group" if "group" in pattern.groupindex else 1
    names = [str(name) for name in names]
    groups = [match.group(key) if (match := pattern.search(name)) else None for name in names]
    bad = [name for name, group in zip(names, groups, strict=True) if not group]
    if bad:
        more = f" (and {len(bad) - 1} more of the {len(groups)} files)" if len(bad) > 1 else ""
        raise ValueError(f"{option} '{regex}' does not match {bad[0]!r}{more}: its "
                         f"{'group named group' if key == 'group' else 'first group'} must match a non-empty part of "
                         "every file's path relative to the data folder")  # fmt: skip
    return groups


def draw_folds(labels, k: int, seed: int | None = 0, groups=None) -> np.ndarray:
    """Assign each clip to one of `k` folds (1..k), stratified by label, no group in two folds:
    scikit-learn's `StratifiedGroupKFold(k, shuffle=True, random_state=seed)`.

    Args:
        labels: (clips,) each clip's label.
        k: number of folds, >= 2.
        seed: the draw's seed (the same labels, groups and seed give the same folds); None: not seeded.
        groups: (clips,) each clip's group, or None: every clip its own group.

    Returns:
        (clips,) int array of fold numbers 1..k.

    Raises:
        ValueError: k < 2, or fewer groups (or clips) than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels).astype(str)
    groups = np.arange(len(labels)).astype(str) if groups is None else np.asarray(groups).astype(str)
    if not (isinstance(k, int) and k >= 2):
        raise ValueError(f"k must be an integer >= 2 (the number of folds), got {k!r}")
    if len(np.unique(groups)) < k:
        raise ValueError(f"cannot draw {k} folds from {len(np.unique(groups))} group(s); use a smaller k")
    folds = np.zeros(len(labels), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a label with fewer clips than folds is fine: it is in fewer folds
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(labels, labels, groups), start=1):
            folds[held_out] = fold
    return folds


def _pieces(stem: str) -> list[tuple[str, str]] | None:
    "The stem's parts (split at `-`, `_`, `.`, spaces), each after its separator ('' for the first); None if one is empty."
    parts = _SEPARATORS.split(stem)
    return list(zip(["", *_SEPARATORS.findall(stem)], parts, strict=True)) if all(parts) else None


def shared_prefix_groups(names: Sequence[str], labels: Sequence[str], min_share: float = 0.1) -> tuple[int, list[str]]:
    """Whether clips' names look like fragments of recordings: names that, less their last one or two
    parts (split at `-`, `_`, `.` or spaces), share a prefix with some, not all, clips of their label.

    Args:
        names: the files' paths relative to the source.
        labels: each file's label.
        min_share: the least share of clips in such shared groups that counts.

    Returns:
        `(drop, example)`: how many trailing parts were dropped (1 or 2) and the names of one such group,
            sorted; `(0, [])` when fewer than `min_share` of the clips (or fewer than two groups) share
            prefixes so.
    """
    per_label = Counter(labels)
    for drop in (1, 2):
        keys = []
        for name, label in zip(names, labels, strict=True):
            pieces = _pieces(PurePosixPath(name).stem)
            keys.append((label, "".join(s + p for s, p in pieces[:-drop])) if pieces and len(pieces) > drop else None)
        sizes = Counter(k for k in keys if k is not None)
        shared = {k: n for k, n in sizes.items() if 2 <= n < per_label[k[0]]}
        if len(shared) >= 2 and sum(shared.values()) >= min_share * len(names):
            first = min(shared)
            return drop, sorted(n for n, k in zip(names, keys, strict=True) if k == first)
    return 0, []


def _suggested_regex(name: str, drop: int) -> str:
    "A regex whose first group is `name`'s stem less its last `drop` parts, the parts' kinds generalized."

    def kind(part: str) -> str:
        return r"\d+" if part.isdigit() else "[A-Za-z]+" if part.isalpha() else "[A-Za-z0-9]+" if part.isalnum() else "[^/]+?"

    def literal(sep: str) -> str:  # separators are made of - _ . and spaces: only the dot needs escaping
        return sep.replace(".", r"\.")

    pieces = [literal(sep) + kind(part) for sep, part in _pieces(PurePosixPath(name).stem)]
    return f"({''.join(pieces[:-drop])}){''.join(pieces[-drop:])}" + r"\.\w+$"


def warn_shared_prefixes(names: Sequence[str], labels: Sequence[str], fix: str = "group_regex=",
                         example: str = "group_regex=r'{regex}'", stacklevel: int = 3) -> bool:  # fmt: skip
    """One UserWarning when clips' names look like fragments of recordings (`shared_prefix_groups`) and
    folds or a random split are about to be drawn clip by clip, which would put a recording in both
    training and validation.

    Args:
        names: the files' paths relative to the source.
        labels: each file's label.
        fix: how the caller's user gives groups, e.g. "--group-regex" or "group_regex=".
        example: `fix` with a regex, `{regex}` standing for it, e.g. "--group-regex '{regex}'".
        stacklevel: passed on to `warnings.warn`.

    Returns:
        Whether it warned.
    """
    drop, group = shared_prefix_groups(names, labels)
    if not drop:
        return False
    regex = _suggested_regex(group[0], drop)
    try:
        fits = all(groups_from_names(names, regex))
    except ValueError:
        fits = False
    shown = ", ".join(group[:2]) + (f" and {len(group) - 2} more" if len(group) > 2 else "")
    suggestion = f" (e.g. {example.format(regex=regex)}, which fits every name here)" if fits else ""
    warnings.warn(
        f"clips share name prefixes as fragments of one recording do ({shown}): drawn clip by clip, the same recording "
        f"can be in training and validation, and accuracy then measures recognizing it. If clips sharing a prefix come "
        f"from one recording (or speaker, or session), give the group with {fix}: a regular expression whose first "
        f"group is that prefix{suggestion}",
        UserWarning,
        stacklevel=stacklevel,
    )
    return True
