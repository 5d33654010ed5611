"""The Free Spoken Digit Dataset (FSDD): its download, its table with speaker-independent folds, and
its DataLoaders."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..presets import get_settings
from .sources import DataSource, Recipe, SourceSpec, describe_table, read_source, register, source_dataloaders

__all__ = ["FSDD_URL", "FSDD_SPEAKERS", "RECIPE", "download_fsdd", "fsdd_table", "resolve_fsdd", "fsdd_dataloaders"]

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
#: The six speakers in alphabetical order: fold k (1-based) holds out FSDD_SPEAKERS[k - 1].
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def download_fsdd() -> Path:
    """Download and extract FSDD (release v1.0.10) with fastai's `untar_data` (once; later calls reuse it).

    Source: github.com/Jakobovski/free-spoken-digit-dataset (Zohar Jackson and contributors),
    licensed CC BY-SA 4.0.

    Returns:
        The folder holding `recordings/`.

    Raises:
        FileNotFoundError: the download holds no `recordings/` folder.
    """
    from fastai.data.external import untar_data

    return resolve_fsdd(untar_data(FSDD_URL))


def resolve_fsdd(path: str | os.PathLike) -> Path:
    """The folder holding `recordings/`: `path` itself or its single subfolder that does (as in the release archive).

    Args:
        path: FSDD's folder, or the folder the release archive was extracted into.

    Returns:
        The folder holding `recordings/`.

    Raises:
        FileNotFoundError: neither `path` nor exactly one of its subfolders holds `recordings/`
            (the message names `path`).
    """
    root = Path(path)
    found = [root] if (root / "recordings").is_dir() else [p.parent for p in root.glob("*/recordings") if p.is_dir()]
    if len(found) != 1:
        raise FileNotFoundError(
            f"no recordings/ folder in {root} (expected FSDD's layout: recordings/{{digit}}_{{speaker}}_{{take}}.wav)"
        )
    return found[0]


def fsdd_table(path: str | os.PathLike) -> pd.DataFrame:
    """One row per recording under `path/recordings`, named `recordings/{digit}_{speaker}_{take}.wav`.

    Fold k holds out the k-th speaker of `FSDD_SPEAKERS`, so a model is validated on a voice it never heard.

    Args:
        path: FSDD's folder (as `resolve_fsdd` finds it).

    Returns:
        A DataFrame, columns `filename` (relative to `path`), `label` (the digit, as a string),
            `speaker`, `take` (int) and `fold` (1-6, the speaker's position in `FSDD_SPEAKERS`),
            sorted by file name.

    Raises:
        ValueError: files that do not follow the naming scheme or speakers not in
            `FSDD_SPEAKERS` (naming them).
        FileNotFoundError: there are no recordings, or no `recordings/` folder.
    """
    root = resolve_fsdd(path)
    names = sorted(p.name for p in (root / "recordings").glob("*.wav"))
    if not names:
        raise FileNotFoundError(f"no .wav files in {root / 'recordings'}")
    rows, bad = [], []
    for name in names:
        m = _NAME.match(name)
        if m is None or m.group(2) not in FSDD_SPEAKERS:
            bad.append(name)
        else:
            digit, speaker, take = m.groups()
            rows.append((f"recordings/{name}", digit, speaker, int(take), FSDD_SPEAKERS.index(speaker) + 1))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{len(bad)} file(s) in {root / 'recordings'} are not named {{digit}}_{{speaker}}_{{take}}.wav with a speaker "
            f"in {list(FSDD_SPEAKERS)}: {shown}"
        )
    return pd.DataFrame(rows, columns=["filename", "label", "speaker", "take", "fold"])


def fsdd_dataloaders(
    path: str | os.PathLike | None = None,
    valid_fold: int = 1,
    bs: int | None = None,
    preset: str = "fsdd",
    batch_tfms: Sequence = (),
    device: str | None = None,
    validate: bool | str = True,
    **settings,
):
    """fastai DataLoaders over FSDD (3000 recordings of the digits 0-9 by six speakers, 8 kHz, mono,
    0.14 to 2.3 s), holding out one speaker for validation; the other five train.

    Args:
        path: FSDD's folder (None: downloaded with `untar_data`, `download_fsdd`).
        valid_fold: 1-6: speaker `FSDD_SPEAKERS[valid_fold - 1]` is held out.
        bs: batch size (None: the preset's, 32 for "fsdd").
        preset: a name of `PRESETS`; "fsdd": the files' own 8 kHz, each clip at its own length
            (batches padded, `lengths` travel with them), 40 mel bins from 32 ms windows every 10 ms.
        batch_tfms: transforms after `AudioToSpec` (e.g. a normalization).
        device: where batches go (None: fastai's default device).
        validate: True (or "quick") checks every file's header first, "full" also decodes every
            sample, False skips it (as in `AudioDataLoaders.from_df`).
        **settings: any `AudioSettings` field, overriding the preset's.

    Returns:
        The DataLoaders; batches are `AudioSpectrogram` `(bs, 1, 40, frames)` (with the "fsdd"
            preset) and the digit's index.

    Raises:
        ValueError: `valid_fold` not in 1-6, no recordings of that speaker, or badly named files.
        TypeError: an unknown setting name.
        FileNotFoundError: no recordings under `path`.
        AudioFilesError: bad audio files found by `validate`, naming them all.
    """
    s = get_settings(preset, **settings, **({} if bs is None else {"bs": bs}))
    if valid_fold not in range(1, len(FSDD_SPEAKERS) + 1):
        raise ValueError(f"valid_fold must be 1-{len(FSDD_SPEAKERS)} (the speakers {list(FSDD_SPEAKERS)}), got {valid_fold!r}")
    source = read_source(SourceSpec(data=download_fsdd() if path is None else path, dataset="fsdd"))
    if valid_fold not in source.folds:
        raise ValueError(
            f"no recordings of speaker {FSDD_SPEAKERS[valid_fold - 1]!r} (fold {valid_fold}) in {source.root / 'recordings'}"
        )
    return source_dataloaders(source, valid_fold, s, batch_tfms=batch_tfms, device=device, validate=validate)


def _read(spec: SourceSpec) -> DataSource:
    root = resolve_fsdd(spec.data)
    table = fsdd_table(root)[["filename", "label", "fold"]].rename(columns={"filename": "file"})
    names = dict(enumerate(FSDD_SPEAKERS, start=1))
    return DataSource(
        "fsdd",
        root,
        table,
        "fsdd",
        fold_names=names,
        description=describe_table("FSDD (one fold per speaker)", table, names=names),
    )


def _is_fsdd(path: Path) -> bool:
    return (path / "recordings").is_dir() or len([p for p in path.glob("*/recordings") if p.is_dir()]) == 1


RECIPE = register(Recipe("fsdd", "fsdd", _read, "the Free Spoken Digit Dataset: recordings/ (fold k: the k-th speaker)",
                         "FSDD (real speech, speaker held out)", detect=_is_fsdd, download=download_fsdd))  # fmt: skip
