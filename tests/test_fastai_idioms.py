"""fastai idioms without surprises (issue 20): loaders with fastai's split semantics, keyword
checks, one list of audio extensions, one name per clip, and `learn.predict` on any input giving
what training gives. References: the generated folders' own layout, NumPy, soundfile."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from fastspecnorm import AudioDataLoaders, AudioTensor, AudioToSpec, DbRangeNormalize, audio_learner, get_audio_files
from fastspecnorm.audio.io import audio_extensions
from fastspecnorm.audio.transforms import array_layout
from fastspecnorm.data import LOADER_KWARGS

SPEC = {"n_fft": 256, "hop_length": 128}
SMALL = {"bs": 2, "spec": SPEC, "cache": False}


def _write(path, sr=8000, n=1600, f0=400.0, seed=0, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * np.random.default_rng(seed).standard_normal(n)
    sf.write(path, x, sr, subtype=subtype)
    return path


@pytest.fixture
def imagenet_style(tmp_path):
    "train/{a,b}/ 4 clips each, valid/{a,b}/ 2 each, and a test/ folder that belongs to neither split."
    root = tmp_path / "data"
    for split, n in (("train", 4), ("valid", 2), ("test", 1)):
        for label, f0 in (("a", 300.0), ("b", 2000.0)):
            for k in range(n):
                _write(root / split / label / f"{split}{k}.wav", f0=f0, seed=k)
    return root


@pytest.fixture
def flat(tmp_path):
    "6 clips per label in one folder each, named {label}_{k}.wav."
    root = tmp_path / "flat"
    for label, f0 in (("a", 300.0), ("b", 2000.0)):
        for k in range(6):
            _write(root / label / f"{label}_{k}.wav", f0=f0, seed=k)
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


def test_one_extension_list_from_soundfile(tmp_path):
    formats = sf.available_formats()
    exts = audio_extensions()
    assert (".mp3" in exts) == ("MP3" in formats) and ".wav" in exts and ".flac" in exts
    (tmp_path / "a").mkdir()
    for ext in (".wav", ".FLAC", ".aiff", ".txt"):
        (tmp_path / "a" / f"x{ext}").write_bytes(b"")
    found = {p.suffix for p in get_audio_files(tmp_path)}
    assert found == {".wav", ".FLAC", ".aiff"}
    if "MP3" in formats:
        (tmp_path / "a" / "y.mp3").write_bytes(b"")
        assert ".mp3" in {p.suffix for p in get_audio_files(tmp_path)}


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


# ---------------------------------------------------------------------------------------------
# predict on any input


@pytest.mark.parametrize(
    "shape, layout",
    [((5,), "(samples,)"), ((2, 50), "(channels, samples)"), ((50, 2), "(samples, channels)"), ((1, 3), "(channels, samples)")],
)
def test_array_layouts(shape, layout):
    assert array_layout(shape) == layout


@pytest.mark.parametrize("shape", [(2, 2), (100, 200), (1, 2, 3), ()])
def test_array_layouts_refused_naming_them(shape):
    with pytest.raises(ValueError, match=r"\(samples,\), \(channels, samples\) or \(samples, channels\)"):
        array_layout(shape)


@pytest.fixture(scope="module")
def learner_8k_files_16k(tmp_path_factory):
    "A learner at 16 kHz trained one epoch on 8 kHz 16-bit files (so every input is resampled), with the cache on."
    root = tmp_path_factory.mktemp("predict") / "clips"
    for label, f0 in (("low", 300.0), ("high", 3000.0)):
        for k in range(4):
            _write(root / label / f"{k}.wav", f0=f0 * (1 + 0.1 * k), seed=k, n=2400)
    cache = tmp_path_factory.mktemp("cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upsampling 8 -> 16 kHz warns
        dls = AudioDataLoaders.from_folder(root, seed=0, bs=2, spec=SPEC, cache=cache)
        torch.manual_seed(0)
        learn = audio_learner(dls)
        learn.fit(1)
    return learn, root


def test_file_and_its_audio_tensor_predict_the_same(learner_8k_files_16k):
    learn, root = learner_8k_files_16k
    for path in sorted(root.rglob("*.wav"))[:3]:
        _, _, by_path = learn.predict(path)
        _, _, by_tensor = learn.predict(AudioTensor.create(path))  # at 8 kHz: resampled by the learner
        torch.testing.assert_close(by_tensor, by_path, rtol=0, atol=1e-4)
        _, _, by_16k = learn.predict(AudioTensor.create(path, sr=16000))  # resampled before
        torch.testing.assert_close(by_16k, by_path, rtol=0, atol=1e-4)
        pcm, _ = sf.read(path, dtype="int16")
        _, _, by_int16 = learn.predict(AudioTensor(torch.from_numpy(pcm / 32768.0).float()[None], sr=8000, subtype="PCM_16"))
        torch.testing.assert_close(by_int16, by_path, rtol=0, atol=1e-4)


def test_predict_array_layouts_short_clips_and_rates(learner_8k_files_16k):
    learn, root = learner_8k_files_16k
    rng = np.random.default_rng(0)
    mono = rng.uniform(-0.3, 0.3, 3000).astype(np.float32)
    stereo = np.stack([mono, 0.5 * mono])
    _, _, p_cs = learn.predict(stereo)  # (channels, samples)
    _, _, p_sc = learn.predict(stereo.T.copy())  # soundfile's (samples, channels)
    torch.testing.assert_close(p_sc, p_cs, rtol=0, atol=1e-6)
    _, _, p_mono = learn.predict(0.75 * mono)  # the downmix of the stereo clip
    torch.testing.assert_close(p_mono, p_cs, rtol=0, atol=1e-5)
    label, _, p_short = learn.predict(mono[:100])  # shorter than an STFT window: padded
    assert label in learn.dls.vocab and torch.isfinite(p_short).all()
    with pytest.raises(ValueError, match=r"\(samples, channels\)"):
        learn.predict(np.zeros((3, 3), dtype=np.float32))
    # an AudioTensor at 8 kHz into the 16 kHz learner is resampled: as the 16 kHz version
    clip8k = torch.from_numpy(mono)[None]
    _, _, p8 = learn.predict(AudioTensor(clip8k, sr=8000))
    from fastspecnorm import resample

    _, _, p16 = learn.predict(AudioTensor(resample(clip8k, 8000, 16000), sr=16000))
    torch.testing.assert_close(p8, p16, rtol=0, atol=1e-6)


def test_audio_to_spec_takes_the_batch_rate(flat):
    "AudioBlock at 8 kHz + AudioToSpec without a rate: the mel bank follows the batch (torchaudio's at 8 kHz)."
    import torchaudio

    wav = AudioTensor(torch.randn(2, 1, 4000), sr=8000)
    spec = AudioToSpec(n_fft=256, hop_length=128, n_mels=20)(wav)
    ref = torchaudio.transforms.MelSpectrogram(8000, n_fft=256, hop_length=128, n_mels=20)(wav.as_subclass(torch.Tensor))
    torch.testing.assert_close(spec.as_subclass(torch.Tensor), torchaudio.transforms.AmplitudeToDB()(ref), rtol=0, atol=1e-3)
    assert spec.sr == 8000 and spec.f_max == 4000


# ---------------------------------------------------------------------------------------------
# audio_learner, hear, show_results


def test_audio_learner_takes_fastai_architectures(flat):
    from fastai.vision.models.xresnet import xresnet18, xresnet34

    dls = AudioDataLoaders.from_folder(flat, seed=0, **SMALL)
    xb, _ = dls.one_batch()
    default = audio_learner(dls)
    assert sum(p.numel() for p in default.model.parameters()) == sum(p.numel() for p in xresnet18(c_in=1, n_out=2).parameters())
    learn = audio_learner(dls, arch=xresnet34)
    assert sum(p.numel() for p in learn.model.parameters()) == sum(p.numel() for p in xresnet34(c_in=1, n_out=2).parameters())
    assert learn.model(xb).shape == (2, 2)
    module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2))
    assert audio_learner(dls, arch=module).model is module
    with pytest.raises(TypeError, match=r"arch\(c_in=1, n_out=2\)"):
        audio_learner(dls, arch=lambda: None)


def test_hear_is_play_and_show_results_colours(flat):
    import matplotlib.pyplot as plt

    clip = AudioTensor(torch.sin(torch.arange(800) * 0.1)[None], sr=8000)
    assert clip.hear()._repr_html_() == clip.play()._repr_html_()
    dls = AudioDataLoaders.from_folder(flat, seed=0, **SMALL)
    learn = audio_learner(dls)
    learn.show_results(max_n=2)
    axes = [ax for ax in plt.gcf().axes if ax.images]
    preds = learn.get_preds(dl=dls.valid.new(shuffle=False), with_decoded=True)[2][:2]
    for ax, pred in zip(axes, preds.tolist(), strict=True):
        actual, predicted = ax.get_title().split("\n")
        assert predicted == dls.vocab[pred]
        assert ax.title.get_color() == ("green" if actual == predicted else "red")
    plt.close("all")


def test_from_df_folder_suffix_and_vocab(flat):
    "fastai's from_df arguments: names in `path/folder`, `suff` appended, classes in `vocab`'s order."
    files = sorted(p.relative_to(flat / "a").as_posix() for p in (flat / "a").glob("*.wav"))
    df = pd.DataFrame({"name": [f[:-4] for f in files], "label": ["x", "y"] * 3})
    dls = AudioDataLoaders.from_df(df, path=flat, folder="a", suff=".wav", vocab=["y", "x"], seed=0, **SMALL)
    assert list(dls.vocab) == ["y", "x"] and set(dls.train.items["name"]) <= {f for f in files}
    assert dls.path == flat / "a"
