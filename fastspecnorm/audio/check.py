"""Checking a table of clips and its audio files before training, so that every bad name or file is named
at once, not the first one mid-epoch: `check_table` (and its file-name rule, `check_clip_names`),
`check_audio_file`, `check_audio_files` and `AudioFilesError`."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .io import header_problem, unreadable_format

__all__ = ["AudioFilesError", "check_audio_file", "check_audio_files", "check_clip_names", "check_table"]

_MAX_LISTED = 20
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT_EXACT = 2**53  # the largest float64 up to which every integer is exact


class AudioFilesError(ValueError):
    """Raised by `check_audio_files`, naming every bad file and its problems; a ValueError.

    Args:
        message: how many files cannot be used, and the first 20 of them with their problems.
        problems: `{path: [problem, ...]}` of every bad file (all of them), kept as `.problems`.
    """

    def __init__(self, message: str, problems: dict[str, list[str]]):
        super().__init__(message)
        self.problems = problems


def _wav_data_sizes(path: Path) -> tuple[int, int, int] | None:
    """For a RIFF/WAVE file `(declared data bytes, data bytes present, bytes per frame)`, which finds the
    truncated WAVs libsndfile silently shortens; None for other formats, RF64 and unknown data sizes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        block_align = 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(min(csize, 16))
                if len(fmt) >= 14:
                    block_align = struct.unpack(endian + "H", fmt[12:14])[0]
            elif cid == b"data":
                if csize in (0, 0xFFFFFFFF) or block_align == 0:
                    return None
                return csize, size - (pos + 8), block_align
            pos += 8 + csize + (csize & 1)
    return None


def _decode_problems(path: Path, frames: int) -> list[str]:
    "Decode every sample in blocks: count the frames and look for NaN/Inf."
    import soundfile as sf

    n_read = n_bad = 0
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                n_read += len(block)
                n_bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    except Exception as e:  # libsndfile raises several types by format
        return [f"cannot decode audio after {n_read} frames: {e}"]
    problems = []
    if n_read < frames:
        problems.append(f"truncated: the header claims {frames} frames but only {n_read} decode")
    if n_bad:
        problems.append(f"holds {n_bad} NaN or Inf sample(s)")
    return problems


def check_audio_file(path: str | os.PathLike, full: bool = False) -> tuple[list[str], dict | None]:
    """Problems of one audio file and its header facts: the check of the loaders and of the ESC-50 validation.

    Problems: missing, not a regular file, unreadable (not audio), empty, zero frames, a header
    `header_problem` refuses (as `load_audio` does: a sample rate outside `SAMPLE_RATE_RANGE`, or
    channels and sample size that disagree with the WAV frame size), or a WAV header that claims
    more frames than the file holds. Unless `full`, only the headers are read (docs/performance.md).

    Args:
        path: the audio file.
        full: also decode every sample, for NaN/Inf samples or data that stops decoding early
            (skipped once a header problem is found).

    Returns:
        `(problems, facts)`: the problems as messages without the file's name (empty when the file
            is fine), and the header facts `{"frames", "samplerate", "channels"}` (frames in samples
            per channel, samplerate in Hz), None when the header cannot be read.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np, soundfile as sf
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = os.path.join(d, "silence.wav")
        ...     sf.write(path, np.zeros(1600, dtype="float32"), 16000)
        ...     print(check_audio_file(path))
        ...     print(check_audio_file(os.path.join(d, "missing.wav"))[0])
        ([], {'frames': 1600, 'samplerate': 16000, 'channels': 1})
        ['file is missing (expected at ...missing.wav)']
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        return [f"file is missing (expected at {path})"], None
    if not path.is_file():
        return [f"{path} is not a regular file"], None
    try:
        info = sf.info(str(path))
    except Exception as e:  # LibsndfileError / RuntimeError / TypeError depending on the format
        kind = "file is empty (0 bytes)" if path.stat().st_size == 0 else "not a readable audio file"
        return [f"{kind}: {unreadable_format(path) or e}"], None
    facts = {"frames": int(info.frames), "samplerate": int(info.samplerate), "channels": int(info.channels)}
    problem = header_problem(info)
    problems: list[str] = [f"the header {problem}"] if problem else []
    try:
        sizes = _wav_data_sizes(path)
    except OSError as e:
        return [*problems, f"cannot read file: {e}"], facts
    if sizes is not None:
        declared, present, block_align = sizes
        if present < declared:
            problems.append(
                f"truncated: the WAV header claims {declared // block_align} frames ({declared} data bytes) "
                f"but the file holds {present // block_align} ({present} bytes)"
            )
    if facts["frames"] == 0 and not problems:
        problems.append("zero-length audio (0 frames)")
    if full and not problems:
        problems += _decode_problems(path, facts["frames"])
    return problems, facts


def check_audio_files(paths: Iterable[str | os.PathLike], full: bool = False) -> dict[str, dict]:
    """Check every file of `paths` with `check_audio_file`, naming every bad file at once.

    Args:
        paths: the audio files.
        full: also decode every sample of each file (see `check_audio_file`).

    Returns:
        `{path: facts}`: each file's header facts `{"frames", "samplerate", "channels"}`, keyed by
            `str(path)`.

    Raises:
        AudioFilesError: (a ValueError) any file has a problem; the message names every bad file
            and its problems (the first 20; `.problems` holds all).
    """
    facts_of: dict[str, dict] = {}
    problems: dict[str, list[str]] = {}
    for p in paths:
        found, facts = check_audio_file(p, full=full)
        if found:
            problems[str(p)] = found
        else:
            facts_of[str(p)] = facts
    if problems:
        them = "it" if len(problems) == 1 else "them"
        lines = [f"{p}: {'; '.join(msgs)}" for p, msgs in problems.items()]
        raise AudioFilesError(
            f"{len(problems)} of {len(problems) + len(facts_of)} audio file(s) cannot be used; fix or remove {them}:"
            + _listed(lines, " (AudioFilesError.problems has all)"),
            problems,
        )
    return facts_of


def check_clip_names(
    names: Sequence, root: str | os.PathLike, allow_outside: bool = False, rows: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[int, str]]]:
    """The file-name rule of every table of clips, the loaders' (`check_table`) and the ESC-50 validation's.

    Each name is normalized (`os.path.normpath`, posix separators) and refused, with a message naming
    it, when it names no file (None, NaN, blank, "."), has leading or trailing whitespace, names a clip
    listed before under any spelling (`x.wav`, `./x.wav`, `sub/../x.wav`, a link to it), or, unless
    `allow_outside`, is absolute, leaves `root` with `..` or is a link to a file outside `root`. Only
    names and links are looked at, not the files.

    Args:
        names: the file names, relative to `root`, in table order.
        root: the folder the names are relative to.
        allow_outside: accept absolute names and names or links leading outside `root`.
        rows: what the messages call each name's row; None: "row 0", "row 1", ...

    Returns:
        `(normalized, problems)`: every name normalized (a posix string), and `(position, message)` for
            each refused name, in table order.

    Examples:
        >>> names, problems = check_clip_names(["a.wav", "./a.wav", "../b.wav"], "clips")
        >>> names
        ['a.wav', 'a.wav', '../b.wav']
        >>> for row, message in problems:
        ...     print(row, message)
        1 './a.wav' is the same clip as row 0 ('a.wav'): list each clip once
        2 '../b.wav' leaves the audio folder with '..': list only clips inside clips
    """
    root = Path(root)
    rows = [f"row {i}" for i in range(len(names))] if rows is None else list(rows)
    texts = ["" if (pd.api.types.is_scalar(v) and pd.isna(v)) or not str(v).strip() else str(v) for v in names]
    normalized = [os.path.normpath(t).replace(os.sep, "/") if t else "" for t in texts]
    problems, first = [], {}
    for i, (raw, text, norm) in enumerate(zip(names, texts, normalized, strict=True)):
        problem = _name_problem(text, norm, root, allow_outside)
        j = i if problem else first.setdefault(os.path.normcase(os.path.realpath(root / norm)), i)
        if j != i and text != texts[j]:
            problem = f"is the same clip as {rows[j]} ({texts[j]!r}): list each clip once"
        elif j != i and texts[:i].count(text) == 1:  # listed again as spelled before: said once, at its second row
            again = [rows[k] for k, t in enumerate(texts) if t == text]
            problem = f"is listed {len(again)} times ({', '.join(again)}): list each clip once"
        if problem:
            problems.append((i, f"{raw!r} {problem}"))
    return normalized, problems


def _name_problem(text: str, norm: str, root: Path, allow_outside: bool) -> str | None:
    "What is wrong with one name on its own (see `check_clip_names`), or None."
    if not text.strip() or norm == ".":
        return f"names no file: list each clip by its name inside {root}"
    if text != text.strip():
        return (
            f"has leading or trailing whitespace: write the name exactly as the file in {root} is called, "
            "without spaces around it"
        )
    if allow_outside:
        return None
    if os.path.isabs(norm):
        return f"is an absolute path: list clips by their path relative to {root}"
    if norm == ".." or norm.startswith("../"):
        return f"leaves the audio folder with '..': list only clips inside {root}"
    real_root, real = os.path.realpath(root), os.path.realpath(root / norm)
    if os.path.commonpath([real_root, real]) != real_root:
        return f"is a link to {real}, outside {root}"
    return None


def check_table(
    df: pd.DataFrame,
    root: str | os.PathLike,
    fn_col,
    label_col=None,
    fold_col=None,
    suff: str = "",
    allow_outside: bool = False,
    outside_fix: str = "allow_outside=True",
) -> pd.DataFrame:
    """A table of clips checked before any file is opened: the step `AudioDataLoaders.from_df`, and every
    loader built on it, takes first.

    The file names obey `check_clip_names`; the label and fold columns, when they hold integers, must
    fit 64 bits (floats: +-2**53, where float64 stops holding every integer), or labels and folds
    would wrap or merge silently.

    Args:
        df: the table, one row per clip.
        root: the folder the file names are relative to.
        fn_col: the label of the column of file names.
        label_col: the label of the column of labels, or None.
        fold_col: the label of the column of folds, or None.
        suff: appended to every file name, e.g. ".wav".
        allow_outside: accept names outside `root` (see `check_clip_names`).
        outside_fix: how the message tells the caller to accept them (the command says `--allow-outside`).

    Returns:
        A copy of `df` with a fresh index (0, 1, ...) and the file names normalized, `suff` appended.

    Raises:
        ValueError: every problem with the file names at once, each with its row; or an integer label
            or fold beyond 64 bits, with its row.

    Examples:
        >>> import pandas as pd
        >>> check_table(pd.DataFrame({"file": ["a", "sub//b"], "label": [1, 2]}), "clips", "file", "label", suff=".wav")
                 file  label
        0       a.wav      1
        1   sub/b.wav      2
    """
    table = df.reset_index(drop=True)
    for col, what in ((label_col, "label"), (fold_col, "fold")):
        if col is not None:
            _check_integer_column(table, col, what)
    names = [v if pd.api.types.is_scalar(v) and pd.isna(v) else f"{v}{suff}" for v in table[fn_col]]
    table[fn_col], problems = check_clip_names(names, root, allow_outside)
    if problems:
        outside = not allow_outside and len(check_clip_names(names, root, allow_outside=True)[1]) < len(problems)
        raise ValueError(
            f"{len(problems)} problem(s) with the file names in column {fn_col!r}"
            + (f" (clips must lie inside {root}; {outside_fix} lifts that)" if outside else "")
            + ":"
            + _listed([f"row {i}: {message}" for i, message in problems])
        )
    return table


def _listed(lines: list[str], more: str = "") -> str:
    "Up to 20 problems, one on the message's own line, several one per line below it; then how many more, and `more`."
    if len(lines) > _MAX_LISTED:
        lines = [*lines[:_MAX_LISTED], f"... and {len(lines) - _MAX_LISTED} more{more}"]
    return f" {lines[0]}" if len(lines) == 1 else "".join(f"\n  {line}" for line in lines)


def _check_integer_column(df: pd.DataFrame, col, what: str) -> None:
    "ValueError when the label or fold column `col` holds integers beyond int64 (floats beyond 2**53)."
    values, int64 = df[col], f"the 64-bit integer range [{_INT64[0]}, {_INT64[1]}]"
    if pd.api.types.is_float_dtype(values):
        bad = values.notna() & (values.abs() > _FLOAT_EXACT)
        limit = f"+-2**53 ({_FLOAT_EXACT}), where float64 stops holding integers exactly"
    elif pd.api.types.is_unsigned_integer_dtype(values):
        bad, limit = values > _INT64[1], int64
    elif values.dtype == object:
        big = [isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1] for v in values]
        bad, limit = pd.Series(big, index=values.index), int64
    else:
        return
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(
            f"{what} column {col!r} holds {values.iloc[row]!r} (row {row}; {int(bad.sum())} such value(s)), outside {limit}: "
            "use smaller integers, or strings, as labels and folds"
        )
