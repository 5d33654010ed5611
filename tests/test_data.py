"""Tests for fastspecnorm.data: `AudioDataLoaders.from_df` and the factories over it (`from_folder`,
`from_csv`, `from_path_func`, `from_name_re`) with fastai's split semantics, keyword checks, variable-length
batches, and the checks made before training. References: the generated folders' own layout, NumPy, soundfile.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import write_tone as _write

from fastspecnorm import AudioDataLoaders, AudioFilesError, DbRangeNormalize, get_audio_files
from fastspecnorm.data import LOADER_KWARGS

SPEC = {"n_fft": 256, "hop_length": 128}
SMALL = {"bs": 2, "spec": SPEC, "cache": False}

N_FFT, HOP = 256, 128


@pytest.fixture
def imagenet_style(tmp_path):
    "train/{a,b}/ 4 clips each, valid/{a,b}/ 2 each, and a test/ folder that belongs to neither split."
    root = tmp_path / "data"
    for split, n in (("train", 4), ("valid", 2), ("test", 1)):
        for label, f0 in (("a", 300.0), ("b", 2000.0)):
            for k in range(n):
                _write(root / split / label / f"{split}{k}.wav", f0=f0, seed=k)
    return root


def _names(items: pd.DataFrame) -> set[str]:
    return set(items["file"])


# ---------------------------------------------------------------------------------------------
# Splits


def test_from_folder_follows_train_and_valid_folders(imagenet_style):
    dls = AudioDataLoaders.from_folder(imagenet_style, **SMALL)
    valid = sorted(p.relative_to(imagenet_style).as_posix() for p in (imagenet_style / "valid").rglob("*.wav"))
    train = sorted(p.relative_to(imagenet_style).as_posix() for p in (imagenet_style / "train").rglob("*.wav"))
    assert sorted(dls.valid.items["file"]) == valid and sorted(dls.train.items["file"]) == train  # test/ left out
    assert list(dls.vocab) == ["a", "b"]
    assert set(dls.valid.items["label"]) == {"a", "b"}  # labels: parent folders, not train/valid
    # other folder names, and valid_pct asking for a random split over every file
    (imagenet_style / "valid").rename(imagenet_style / "val")
    dls = AudioDataLoaders.from_folder(imagenet_style, valid="val", **SMALL)
    assert all(f.startswith("val/") for f in dls.valid.items["file"])
    dls = AudioDataLoaders.from_folder(imagenet_style, valid="val", valid_pct=0.5, seed=0, **SMALL)
    assert len(dls.valid.items) == 7 and any(not f.startswith("val/") for f in dls.valid.items["file"])


def test_from_folder_without_split_folders_is_random_20_percent(flat):
    dls = AudioDataLoaders.from_folder(flat, seed=0, **SMALL)
    assert len(dls.valid.items) == 2 and len(dls.train.items) == 10  # int(0.2 * 12) = 2, fastai's RandomSplitter
    with pytest.raises(TypeError, match="valid_pct="):
        AudioDataLoaders.from_folder(flat, 0.25)  # the old positional valid_pct


def test_from_df_uses_is_valid_by_default(flat):
    files = sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*.wav"))
    df = pd.DataFrame({"file": files, "label": [f.split("/")[0] for f in files]})
    df["is_valid"] = [f.endswith(("_0.wav", "_1.wav")) for f in files]
    dls = AudioDataLoaders.from_df(df, path=flat, **SMALL)
    assert _names(dls.valid.items) == set(df.file[df.is_valid])
    dls = AudioDataLoaders.from_df(df, path=flat, valid_col=None, seed=0, **SMALL)  # ignored when asked
    assert _names(dls.valid.items) != set(df.file[df.is_valid])
    df["fold"] = [int(f[-5]) % 3 for f in files]
    dls = AudioDataLoaders.from_df(df, path=flat, fold_col="fold", valid_fold=2, **SMALL)  # folds win over the default
    assert set(dls.valid.items["fold"]) == {2}
    no_col = df.drop(columns="is_valid")
    dls = AudioDataLoaders.from_df(no_col, path=flat, seed=0, **SMALL)  # no column: the random split, silently
    assert len(dls.valid.items) == 2
    with pytest.raises(ValueError, match="'valid' is not a column"):  # a column asked for by another name must exist
        AudioDataLoaders.from_df(no_col, path=flat, valid_col="valid", **SMALL)


def test_from_csv_reads_labels_csv(flat):
    files = sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*.wav"))
    pd.DataFrame({"name": files, "label": [f[0] for f in files], "is_valid": [f.endswith("_5.wav") for f in files]}).to_csv(
        flat / "labels.csv", index=False
    )
    dls = AudioDataLoaders.from_csv(flat, **SMALL)
    assert _names(dls.valid.items.rename(columns={"name": "file"})) == {"a/a_5.wav", "b/b_5.wav"}
    with pytest.raises(FileNotFoundError, match="other.csv"):
        AudioDataLoaders.from_csv(flat, csv_fname="other.csv")


def test_from_path_func_and_name_re(flat):
    fnames = get_audio_files(flat)
    dls = AudioDataLoaders.from_path_func(flat, fnames, lambda p: p.parent.name, seed=0, **SMALL)
    labels = dict(zip(dls.train.items["file"], dls.train.items["label"], strict=True))
    assert all(labels[f] == f.split("/")[0] for f in labels) and len(dls.train.items) + len(dls.valid.items) == 12
    dls = AudioDataLoaders.from_name_re(flat, fnames, r"^([ab])_\d+\.wav$", seed=0, **SMALL)
    assert list(dls.vocab) == ["a", "b"] and all(r.label == r.file.split("/")[1][0] for r in dls.train.items.itertuples())
    with pytest.raises(ValueError, match=r"does not match 'a_0.wav'"):
        AudioDataLoaders.from_name_re(flat, fnames, r"^(x)")


# ---------------------------------------------------------------------------------------------
# Keywords and extensions


@pytest.mark.parametrize("bad", ["folder_name", "label_delim", "shufle", "batch_size"])
def test_unknown_keywords_raise_naming_them(flat, bad):
    with pytest.raises(TypeError, match=bad):
        AudioDataLoaders.from_folder(flat, **{bad: 1}, **SMALL)


def test_passed_keywords_are_fastais():
    "Every keyword let through is one that fastai 2.8's loaders take (checked against their signatures)."
    import inspect

    from fastai.data.core import DataLoader, Datasets, TfmdDL

    accepted = set()
    for f in (Datasets.dataloaders, TfmdDL.__init__, DataLoader.__init__):
        accepted |= set(inspect.signature(f).parameters)
    assert LOADER_KWARGS <= accepted
    assert {"shuffle", "num_workers", "pin_memory", "drop_last", "val_bs"} <= LOADER_KWARGS


def test_long_clips_named_with_their_size_before_decoding(flat):
    sf.write(flat / "a" / "long.flac", np.zeros(8000 * 61, dtype=np.int16), 8000)  # 61 s of silence
    with pytest.raises(ValueError, match=r"long.flac: 1.0 min, up to 4 MB decoded at 16000 Hz") as info:
        AudioDataLoaders.from_folder(flat, max_duration=60, **SMALL)
    assert "max_duration=None" in str(info.value)
    AudioDataLoaders.from_folder(flat, seed=0, **SMALL)  # the default bound: 10 minutes


def test_dbrange_after_waveform_norm_warns(flat):
    with pytest.warns(UserWarning, match="DbRangeNormalize assume"):
        AudioDataLoaders.from_folder(flat, seed=0, batch_tfms=[DbRangeNormalize()], **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AudioDataLoaders.from_folder(flat, seed=0, batch_tfms=[DbRangeNormalize()], waveform_norm=False, **SMALL)


def test_from_df_folder_suffix_and_vocab(flat):
    "fastai's from_df arguments: names in `path/folder`, `suff` appended, classes in `vocab`'s order."
    files = sorted(p.relative_to(flat / "a").as_posix() for p in (flat / "a").glob("*.wav"))
    df = pd.DataFrame({"name": [f[:-4] for f in files], "label": ["x", "y"] * 3})
    dls = AudioDataLoaders.from_df(df, path=flat, folder="a", suff=".wav", vocab=["y", "x"], seed=0, **SMALL)
    assert list(dls.vocab) == ["y", "x"] and set(dls.train.items["name"]) <= {f for f in files}
    assert dls.path == flat / "a"


# ---------------------------------------------------------------------------------------------
# your own audio: mixed rates, formats, channel counts and lengths


def test_duration_crops_and_pads(folder):
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, duration=0.5)
    xb, _ = dls.train.one_batch()
    assert xb.shape[-1] == 8000 // HOP + 1 and xb.lengths is None


def test_sample_rate_none(folder, tmp_path):
    with pytest.raises(ValueError, match=r"8000 Hz \(4 files\), 16000 Hz \(4 files\), 22050 Hz \(4 files\)"):
        AudioDataLoaders.from_folder(folder, sample_rate=None, bs=2)
    one = tmp_path / "one_rate"
    for label in ("a", "b"):
        for k in range(3):
            (one / label).mkdir(parents=True, exist_ok=True)
            sf.write(one / label / f"{k}.wav", np.random.default_rng(k).uniform(-0.5, 0.5, 800 + 300 * k), 8000)
    dls = AudioDataLoaders.from_folder(one, sample_rate=None, bs=2, valid_pct=0.3, seed=0, spec=SPEC)
    assert dls.sample_rate == 8000 and dls.one_batch()[0].sr == 8000


def test_bad_files_named_before_training(folder):
    (folder / "low" / "empty.wav").write_bytes(b"")
    (folder / "low" / "notes.wav").write_text("not audio")
    data = (folder / "high" / "high0.wav").read_bytes()
    (folder / "high" / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFilesError) as info:
        AudioDataLoaders.from_folder(folder, bs=2)
    msg = str(info.value)
    for name, why in (("empty.wav", "empty"), ("notes.wav", "not a readable audio file"), ("cut.wav", "truncated")):
        assert name in msg and why in msg
    assert len(info.value.problems) == 3


def test_from_df_group_split(folder):
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*"))
    df = pd.DataFrame(
        {"file": files, "label": [f.split("/")[0] for f in files], "speaker": [f"s{i % 3}" for i in range(len(files))]}
    )
    dls = AudioDataLoaders.from_df(df, path=folder, fold_col="speaker", valid_fold="s1", bs=2, spec=SPEC)
    assert set(dls.valid.items["speaker"]) == {"s1"} and "s1" not in set(dls.train.items["speaker"])
    df["is_valid"] = df["speaker"] == "s2"
    dls = AudioDataLoaders.from_df(df, path=folder, fn_col="file", label_col="label", valid_col="is_valid", bs=2, spec=SPEC)
    assert set(dls.valid.items["speaker"]) == {"s2"}
    with pytest.raises(ValueError, match=r"valid_fold='s9' is not a value of column 'speaker'"):
        AudioDataLoaders.from_df(df, path=folder, fold_col="speaker", valid_fold="s9", bs=2)


# ---------------------------------------------------------------------------------------------
# a class only validation holds


def test_from_df_refuses_a_class_that_only_validation_holds(own):
    table = pd.read_csv(own / "labels.csv")
    table["is_valid"] = table["label"] == "digit2"  # digit2 only in validation
    with pytest.raises(ValueError, match=r"class\(es\) \['digit2'\] have no training clip in this split"):
        AudioDataLoaders.from_df(table, path=own, fn_col="file", label_col="label", valid_col="is_valid", bs=2, cache=False)


def test_a_table_of_absolute_paths_loads_its_clips(tmp_path):
    # fastai's ColReader joins `pref` and a name as strings; an absolute name must still be read as itself.
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(6):
        names.append(str(clips / f"{i}.wav"))
        sf.write(names[-1], rng.uniform(-0.5, 0.5, 800).astype("float32"), 8000)
    df = pd.DataFrame({"file": names, "label": ["a", "b"] * 3})
    dls = AudioDataLoaders.from_df(df, path=tmp_path / "elsewhere", allow_outside=True, bs=2, valid_pct=0.5, seed=0,
                                   sample_rate=8000, cache=False, device="cpu", spec={"n_fft": 256, "hop_length": 64})  # fmt: skip
    x, y = dls.one_batch()
    assert x.shape[:3] == (2, 1, 129) and set(dls.vocab) == {"a", "b"}


def test_a_table_of_one_class_is_refused(tmp_path):
    for i in range(4):
        sf.write(tmp_path / f"{i}.wav", np.zeros(800, dtype="float32"), 8000)
    df = pd.DataFrame({"file": [f"{i}.wav" for i in range(4)], "label": ["dog"] * 4})
    with pytest.raises(ValueError, match=r"column 'label' holds one class \('dog'\): a classifier needs two or more"):
        AudioDataLoaders.from_df(df, path=tmp_path, bs=2, valid_pct=0.5, seed=0, cache=False, device="cpu")


def test_audio_files_in_formats_soundfile_cannot_read_are_named_when_left_out(tmp_path):
    (tmp_path / "dog").mkdir()
    sf.write(tmp_path / "dog" / "a.wav", np.zeros(800, dtype="float32"), 8000)
    (tmp_path / "dog" / "b.m4a").write_bytes(b"\\x00\\x00\\x00\\x18ftypM4A ")
    (tmp_path / "dog" / "notes.txt").write_text("not audio")
    with pytest.warns(UserWarning, match=r"left out the files soundfile cannot read; it holds 1 \.m4a file\(s\).*ffmpeg"):
        files = get_audio_files(tmp_path)
    assert [f.name for f in files] == ["a.wav"]
