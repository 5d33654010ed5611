"""Checking audio files before training: `check_audio_file`, `check_audio_files` and `AudioFilesError`,
so that every bad file is named at once, not the first one mid-epoch.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .io import sample_rate_problem

__all__ = ["AudioFilesError", "check_audio_file", "check_audio_files"]

_MAX_LISTED = 20


class AudioFilesError(ValueError):
    """Raised by `check_audio_files`, naming every bad file and its problems; a ValueError.

    Args:
        message: the error message: how many files cannot be used, and the first 20 of them with
            their problems.
        problems: `{path: [problem, ...]}` of every bad file, kept as `.problems`.

    Attributes:
        problems: `{path: [problem, ...]}`: each bad file's list of problems, all of them (the
            message lists at most 20 files).
    """

    def __init__(self, message: str, problems: dict[str, list[str]]):
        super().__init__(message)
        self.problems = problems


def _wav_data_sizes(path: Path) -> tuple[int, int, int] | None:
    """For a RIFF/WAVE file: `(declared data bytes, data bytes present, bytes per frame)`.

    None for other formats, for RF64 and for streaming headers whose data size is unknown
    (0 or 0xFFFFFFFF): there is nothing to compare. libsndfile silently shortens a truncated WAV,
    so this parse is what finds a header that claims more frames than the file holds.
    """
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
    """Problems of one audio file and its header facts.

    Problems: missing, not a regular file, unreadable (not audio), empty, zero frames, a sample
    rate outside `SAMPLE_RATE_RANGE` (the rule `load_audio` refuses by), a WAV header that claims
    more frames than the file holds (libsndfile silently shortens such files), and with `full=True`
    NaN/Inf samples or data that stops decoding early. Only the header (and, for WAV files, the
    chunk headers) is read unless `full`, so the check is cheap next to decoding
    (docs/performance.md). The ESC-50 validation (`fastspecnorm.datasets.validate`) uses the
    same check.

    Args:
        path: the audio file.
        full: also decode every sample (NaN/Inf, data that stops early); skipped once a header
            problem is found.

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
        return [f"{kind}: {e}"], None
    facts = {"frames": int(info.frames), "samplerate": int(info.samplerate), "channels": int(info.channels)}
    rate_problem = sample_rate_problem(facts["samplerate"])
    problems: list[str] = [f"the header {rate_problem}"] if rate_problem else []
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

    All problems are reported together, so a dataset is fixed in one go, before any training.

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
        lines = [f"  {p}: {'; '.join(msgs)}" for p, msgs in list(problems.items())[:_MAX_LISTED]]
        more = (
            f"\n  ... and {len(problems) - _MAX_LISTED} more (AudioFilesError.problems has all)"
            if len(problems) > _MAX_LISTED
            else ""
        )
        raise AudioFilesError(
            f"{len(problems)} of {len(problems) + len(facts_of)} audio file(s) cannot be used; fix or remove them:\n"
            + "\n".join(lines)
            + more,
            problems,
        )
    return facts_of
