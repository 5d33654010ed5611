"""FSDD's table: speaker-independent folds from file names (generated files; the real data is not needed)."""

import numpy as np
import pytest
import soundfile as sf

from fastspecnorm.datasets.fsdd import FSDD_SPEAKERS, fsdd_table, resolve_fsdd


def _write(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        sf.write(folder / name, np.zeros(800, dtype=np.int16), 8000, subtype="PCM_16")


def test_folds_hold_out_speakers_in_alphabetical_order(tmp_path):
    _write(tmp_path / "recordings", ["3_theo_12.wav", "0_george_0.wav", "9_yweweler_49.wav", "5_jackson_7.wav"])
    df = fsdd_table(tmp_path).set_index("filename")
    assert FSDD_SPEAKERS == tuple(sorted(FSDD_SPEAKERS))
    assert df.loc["recordings/0_george_0.wav", "fold"] == 1  # george is first alphabetically
    assert df.loc["recordings/5_jackson_7.wav", "fold"] == 2
    assert df.loc["recordings/3_theo_12.wav", "fold"] == 5
    assert df.loc["recordings/9_yweweler_49.wav", "fold"] == 6
    assert df.loc["recordings/3_theo_12.wav", "label"] == "3" and df.loc["recordings/3_theo_12.wav", "take"] == 12


def test_release_archive_layout_is_found(tmp_path):
    _write(tmp_path / "free-spoken-digit-dataset-1.0.10" / "recordings", ["1_lucas_3.wav"])
    assert resolve_fsdd(tmp_path) == tmp_path / "free-spoken-digit-dataset-1.0.10"
    assert fsdd_table(tmp_path)["fold"].tolist() == [3]


def test_bad_names_and_missing_folder_are_named(tmp_path):
    _write(tmp_path / "recordings", ["1_lucas_3.wav", "x_lucas_1.wav", "2_alice_0.wav"])
    with pytest.raises(ValueError, match=r"2 file\(s\).*(x_lucas_1|2_alice_0)"):
        fsdd_table(tmp_path)
    with pytest.raises(FileNotFoundError, match="no recordings/ folder"):
        fsdd_table(tmp_path / "nowhere")
