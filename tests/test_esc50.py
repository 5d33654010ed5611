"""ESC-50 data: official-fold split, class subsets and metadata validation."""

import pandas as pd
import pytest
import soundfile as sf

from fastspecnorm import CrossValidationSplitter, esc50_dataloaders, read_esc50_meta
from fastspecnorm.datasets.synthetic import make_synthetic_esc50


@pytest.fixture(scope="module")
def esc(tmp_path_factory):
    return make_synthetic_esc50(tmp_path_factory.mktemp("esc50") / "data", n_classes=4, clips_per_class=5, duration=1.0)


def test_splitter_by_hand():
    df = pd.DataFrame({"fold": [1, 2, 3, 1, 2]})
    assert CrossValidationSplitter("fold", 1)(df) == ([1, 2, 4], [0, 3])
    assert CrossValidationSplitter("fold", 3)(df) == ([0, 1, 3, 4], [2])
    with pytest.raises(ValueError, match=r"valid_fold=7 is not a value of column 'fold'; its values are \[1, 2, 3\]"):
        CrossValidationSplitter("fold", 7)(df)


def test_one_fold_splitter():
    "ESC-50's name for it is the loaders' splitter, and it survives pickling (learn.export)."
    import pickle

    from fastspecnorm import data
    from fastspecnorm.datasets import esc50

    assert esc50.CrossValidationSplitter is data.CrossValidationSplitter is CrossValidationSplitter
    df = pd.DataFrame({"fold": ["george", "theo", "george"]})
    assert pickle.loads(pickle.dumps(CrossValidationSplitter("fold", "theo")))(df) == ([0, 2], [1])


@pytest.mark.parametrize("fold", [1, 3, 5])
def test_fold_split_never_mixes_folds(esc, fold):
    meta = read_esc50_meta(esc)
    dls = esc50_dataloaders(esc, valid_fold=fold, preset="quick", bs=4, num_workers=0, duration=1.0)
    train_folds = set(dls.train.items["fold"])
    valid_folds = set(dls.valid.items["fold"])
    assert valid_folds == {fold}
    assert fold not in train_folds and train_folds == set(meta["fold"]) - {fold}
    assert len(dls.train.items) + len(dls.valid.items) == len(meta)
    # no source recording appears on both sides
    assert not set(dls.train.items["src_file"]) & set(dls.valid.items["src_file"])


def test_batches_quick_preset_shape(esc):
    dls = esc50_dataloaders(esc, valid_fold=1, preset="quick", bs=4, num_workers=0, duration=1.0)
    xb, yb = dls.one_batch()
    # 1 s at 16 kHz, hop 400 -> 16000 // 400 + 1 = 41 frames; 64 mel bins
    assert tuple(xb.shape) == (4, 1, 64, 41) and xb.unit == "dB"
    assert dls.vocab == ["dog", "rooster", "pig", "cow"]  # ordered by target, not alphabetically


def test_class_subset_works(esc, tmp_path):
    import shutil

    sub = tmp_path / "sub"
    shutil.copytree(esc, sub)
    meta = pd.read_csv(sub / "meta" / "esc50.csv")
    keep = meta[meta["category"].isin(["pig", "cow"])]
    keep.to_csv(sub / "meta" / "esc50.csv", index=False)
    dls = esc50_dataloaders(sub, valid_fold=2, preset="quick", bs=2, num_workers=0, duration=1.0)
    assert dls.c == 2 and list(dls.vocab) == ["pig", "cow"]
    _, yb = dls.one_batch()
    assert int(yb.max()) <= 1


def _copy(esc, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(esc, dst)
    return dst


def test_missing_columns_named(esc, tmp_path):
    root = _copy(esc, tmp_path)
    meta = pd.read_csv(root / "meta" / "esc50.csv").drop(columns=["fold"])
    meta.to_csv(root / "meta" / "esc50.csv", index=False)
    with pytest.raises(ValueError, match="lacks required column\\(s\\) \\['fold'\\]"):
        read_esc50_meta(root)


def test_missing_csv_and_files_named(esc, tmp_path):
    with pytest.raises(FileNotFoundError, match="meta/esc50.csv"):
        read_esc50_meta(tmp_path / "nowhere")
    root = _copy(esc, tmp_path)
    victim = pd.read_csv(root / "meta" / "esc50.csv")["filename"].iloc[3]
    (root / "audio" / victim).unlink()
    with pytest.raises(FileNotFoundError, match=victim):
        read_esc50_meta(root)


def test_unknown_valid_fold(esc):
    with pytest.raises(ValueError, match="fold 9 does not exist"):
        esc50_dataloaders(esc, valid_fold=9, preset="quick", num_workers=0)


def test_audio_format_of_synthetic(esc):
    info = sf.info(str(next((esc / "audio").glob("*.wav"))))
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")


@pytest.mark.parametrize(
    "edit,words",
    [
        (lambda m: m.assign(filename=m["filename"].where(m.index != 2, "../" + m["filename"])), "leaves the audio folder"),
        (lambda m: m.assign(filename=m["filename"].where(m.index != 2, " " + m["filename"])), "leading or trailing whitespace"),
        (lambda m: m.assign(fold=m["fold"].where(m.index != 2, 0)), "fold '0' is below 1"),
        (
            lambda m: m.assign(category=m["category"].where(m["category"] != "dog", "Dog").where(m.index != 1, "dog")),
            r"target 0 has several categories \['Dog', 'dog'\]",
        ),
    ],
    ids=["dotdot", "space", "fold0", "Dog-dog"],
)
@pytest.mark.parametrize("validate", [True, False])
def test_loading_refuses_bad_rows_by_name(esc, tmp_path, edit, words, validate):
    "The loader applies the table rules with and without file validation; a bad name is never opened."
    root = _copy(esc, tmp_path)
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    for name in meta["filename"]:  # every clip also exists one level up, where `../` would find it
        (root / name).write_bytes((root / "audio" / name).read_bytes())
    edit(meta).to_csv(root / "meta" / "esc50.csv", index=False)
    with pytest.raises(ValueError, match=words):
        esc50_dataloaders(root, valid_fold=1, preset="quick", bs=4, num_workers=0, duration=1.0, validate=validate)


def test_clips_in_subfolders_of_audio_load(esc, tmp_path):
    root = _copy(esc, tmp_path)
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    (root / "audio" / "sub").mkdir()
    moved = meta["filename"].iloc[0]
    (root / "audio" / moved).rename(root / "audio" / "sub" / moved)
    meta.loc[0, "filename"] = f"sub/{moved}"
    meta.to_csv(root / "meta" / "esc50.csv", index=False)
    assert read_esc50_meta(root)["filename"].iloc[0] == f"sub/{moved}"
    dls = esc50_dataloaders(root, valid_fold=int(meta.loc[0, "fold"]), preset="quick", bs=4, num_workers=0, duration=1.0)
    x, _ = dls.valid.one_batch()
    assert x.shape[0] == 4 and f"sub/{moved}" in set(dls.valid.items["filename"])
