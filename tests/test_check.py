"""Tests for fastspecnorm.audio.check: the one file-name rule of a table of clips (`check_table`,
`check_clip_names`: one name per clip, no name outside the folder, labels that fit) as the loaders apply it,
and `check_audio_files` before training. References: the generated folders' own layout.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import write_tone as _write

from fastspecnorm import AudioDataLoaders, AudioFilesError, check_audio_files

SPEC = {"n_fft": 256, "hop_length": 128}
SMALL = {"bs": 2, "spec": SPEC, "cache": False}


# ---------------------------------------------------------------------------------------------
# One clip, one name


def _df(root):
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    return pd.DataFrame({"file": files, "label": [f.split("/")[0] for f in files]})


@pytest.mark.parametrize("twin", ["./a/a_0.wav", "a/a_0.wav/", "a//a_0.wav", "b/../a/a_0.wav"])
def test_one_clip_under_two_spellings_refused(flat, twin):
    df = _df(flat)
    df.loc[len(df)] = [twin, "a"]
    with pytest.raises(ValueError, match=r"same clip as row 0 \('a/a_0.wav'\)"):
        AudioDataLoaders.from_df(df, path=flat, **SMALL)


def test_spaces_around_a_name_and_a_name_listed_again_refused(flat):
    "The rule ESC-50's validation shares (`check_clip_names`): a name listed N times is said once, with its rows."
    df = _df(flat)
    df.loc[len(df)] = [" a/a_1.wav", "a"]
    with pytest.raises(ValueError, match=r"row 12: ' a/a_1.wav' has leading or trailing whitespace"):
        AudioDataLoaders.from_df(df, path=flat, **SMALL)
    df = _df(flat)
    df.loc[len(df)] = ["a/a_0.wav", "a"]
    df.loc[len(df)] = ["a/a_0.wav", "a"]
    one_line = (
        r"^1 problem\(s\) with the file names in column 'file': row 12: 'a/a_0.wav' is listed 3 times \(row 0, row 12, row 13\)"
    )
    with pytest.raises(ValueError, match=one_line + ": list each clip once$"):  # one problem: one line
        AudioDataLoaders.from_df(df, path=flat, **SMALL)


def test_names_outside_the_folder_refused(flat, tmp_path):
    outside = _write(tmp_path / "elsewhere" / "o.wav")
    os.symlink(outside, flat / "a" / "link.wav")
    for name, why in (("../elsewhere/o.wav", "leaves"), (str(outside), "absolute path"), ("a/link.wav", "is a link to")):
        df = _df(flat)
        df = df[df.file != "a/link.wav"].reset_index(drop=True)
        df.loc[len(df)] = [name, "a"]
        with pytest.raises(ValueError, match=why):
            AudioDataLoaders.from_df(df, path=flat, **SMALL)
    dls = AudioDataLoaders.from_df(df, path=flat, allow_outside=True, seed=0, **SMALL)  # the explicit opt-out
    assert "a/link.wav" in set(dls.train.items.file) | set(dls.valid.items.file)


def test_huge_integer_labels_refused(flat):
    df = _df(flat)
    df["target"] = [0, 1, 0, 99999999999999999999] + [0, 1] * 4  # as pd.read_csv reads it: Python ints, dtype object
    with pytest.raises(ValueError, match=r"'target' holds 99999999999999999999 \(row 3"):
        AudioDataLoaders.from_df(df, path=flat, fn_col="file", label_col="target", **SMALL)
    df["target"] = [0.0, 1.0, 0.0, 1e20] + [0.0, 1.0] * 4
    with pytest.raises(ValueError, match="2\\*\\*53"):
        AudioDataLoaders.from_df(df, path=flat, fn_col="file", label_col="target", **SMALL)


# ---------------------------------------------------------------------------------------------
# check_audio_files: implausible sample rates


def test_implausible_sample_rates_named_with_their_rate(tmp_path):
    "check_audio_files refuses by file and rate what load_audio would refuse mid-epoch."
    for sr in (999, 1000, 384_000, 384_001):
        sf.write(tmp_path / f"r{sr}.wav", np.full(50, 0.25), sr, subtype="PCM_16")
    with pytest.raises(AudioFilesError) as info:
        check_audio_files(sorted(tmp_path.glob("*.wav")))
    assert sorted(info.value.problems) == [str(tmp_path / "r384001.wav"), str(tmp_path / "r999.wav")]
    for sr in (999, 384_001):
        assert f"r{sr}.wav: the header claims a sample rate of {sr} Hz" in str(info.value)
    facts = check_audio_files([tmp_path / "r1000.wav", tmp_path / "r384000.wav"])
    assert [f["samplerate"] for f in facts.values()] == [1000, 384_000]
