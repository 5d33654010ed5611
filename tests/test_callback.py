"""Tests for fastspecnorm.callback.StatsCallback on a tiny synthetic ESC-50 folder.

The folder (conftest.tiny_esc50) has 4 classes x 5 folds, one 1 s clip at 16 kHz per class and
fold: 16 training clips (folds 2-5) and 4 validation clips (fold 1). Clips are exactly 1 s, so
the training crop is deterministic and every statistic can be recomputed independently. A
four-layer model keeps each `fit(1)` to about a second on 2 CPU cores.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio
from fastai.learner import Learner, load_learner
from fasttransform import Transform
from torch import nn

from fastspecnorm import (
    AudioSpectrogram,
    InstanceMinMax,
    SpecNormalize,
    StatsCallback,
    StatsRecorder,
    WaveformNormalize,
    collect_stats,
    esc50_dataloaders,
    stats_loader,
)
from fastspecnorm.normalize import SpecNormalizer

RTOL = 1e-6
N_TRAIN, N_VALID = 16, 4


def make_dls(root, bs=3, **settings):
    # bs 3 over 16 training clips: the statistics pass must include the last, partial batch
    return esc50_dataloaders(root, valid_fold=1, preset="quick", bs=bs, num_workers=0, duration=1.0, **settings)


def make_learner(dls, cb):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, dls.c))
    return Learner(dls, model, cbs=[cb])


def spec_normalizers(dl):
    return [t for t in dl.after_batch.fs if isinstance(t, SpecNormalize)]


def plain(x):
    return x.as_subclass(torch.Tensor)


def training_spectrograms_via_stats_loader(dls):
    xs = [plain(b[0]).double().numpy() for b in stats_loader(dls.train, shuffle=False)]
    return np.concatenate(xs)


def training_spectrograms_from_files(root, settings):
    """Independent of the package's code: soundfile -> NumPy standardization -> torchaudio mel + dB,
    with the preset's spectrogram settings (16 kHz, 64 mel bins, hop 400)."""
    assert (settings.sample_rate, settings.n_mels, settings.hop_length, settings.waveform_norm) == (16000, 64, 400, True)
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=settings.n_fft, hop_length=400, n_mels=64)
    to_db = torchaudio.transforms.AmplitudeToDB()
    specs = []
    for name in meta.loc[meta.fold != 1, "filename"]:
        wav, sr = sf.read(root / "audio" / name, dtype="float32")
        assert sr == 16000 and wav.shape == (16000,)
        w = wav.astype(np.float64)
        std = w.std()
        w = np.zeros_like(w) if std <= 1e-8 else (w - w.mean()) / std
        specs.append(to_db(mel(torch.from_numpy(w.astype(np.float32))[None])).double().numpy())
    return np.stack(specs)


def ref_stats(x, red_dims):
    return x.mean(axis=red_dims, keepdims=True), x.std(axis=red_dims, keepdims=True)


@pytest.fixture
def planted_copy(tiny_esc50, tmp_path):
    """A copy of the tiny dataset where only the validation clips (fold 1) differ: loud noise."""
    root = tmp_path / "planted"
    shutil.copytree(tiny_esc50, root)
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    rng = np.random.default_rng(123)
    for name in meta.loc[meta.fold == 1, "filename"]:
        noise = np.clip(rng.normal(0.0, 0.6, size=16000), -1, 1) + 0.3  # loud, offset, broadband
        sf.write(root / "audio" / name, noise, 16000, subtype="PCM_16")
    return root


# ---------------------------------------------------------------------------------------------
# training statistics only


@pytest.mark.parametrize("red_dims, fraction", [((0, 2, 3), 1.0), ((0, 1, 3), 1.0), ((0, 2, 3), 0.5)])
def test_statistics_ignore_the_validation_split(tiny_esc50, planted_copy, red_dims, fraction):
    cbs, loaders = [], []
    for root in (tiny_esc50, planted_copy):
        dls = make_dls(root)
        cb = StatsCallback(red_dims=red_dims, fraction=fraction)
        make_learner(dls, cb).fit(1)
        cbs.append(cb)
        loaders.append(dls)
    # the planted audio really is different: validation statistics differ by decibels
    valid_means = [float(collect_stats(stats_loader(d.valid, shuffle=False), (0, 1, 2, 3), progress=False).mean) for d in loaders]
    assert abs(valid_means[0] - valid_means[1]) > 1.0
    # ... but the statistics the callback gathered are bit-identical
    a, b = cbs[0].stats_recorder, cbs[1].stats_recorder
    for x, y in zip(a.moments, b.moments, strict=True):
        assert torch.equal(x, y)
    n_items = N_TRAIN if fraction == 1 else 9  # 0.5 of 6 batches of 3: 3 batches, 9 items
    assert a.n_values == n_items * 41 * (64 if 2 in red_dims else 1)  # training values only
    for dl_a, dl_b in zip(loaders[0].loaders, loaders[1].loaders, strict=True):
        assert torch.equal(spec_normalizers(dl_a)[0].mean, spec_normalizers(dl_b)[0].mean)


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
def test_statistics_equal_numpy_over_training_spectrograms(tiny_esc50, red_dims):
    dls = make_dls(tiny_esc50, batch_tfms=[InstanceMinMax()])  # a normalizer already there is bypassed
    cb = StatsCallback(red_dims=red_dims)
    make_learner(dls, cb).fit(1)
    rec = cb.stats_recorder
    assert rec.red_dims == red_dims

    x = training_spectrograms_via_stats_loader(dls)
    assert x.shape == (N_TRAIN, 1, 64, 41)  # every training clip, the last partial batch included
    assert x.min() < -50  # dB values, not InstanceMinMax's [0, 1]
    mean, std = ref_stats(x, red_dims)
    np.testing.assert_allclose(rec.mean.numpy(), mean, rtol=RTOL)
    np.testing.assert_allclose(rec.std.numpy(), std, rtol=RTOL)

    # the same numbers from the WAV files, without the package: the waveform standardization is
    # float32 there and float64 here (relative 1e-7 on the samples, ~1e-6 dB), hence rtol 1e-5
    indep = training_spectrograms_from_files(tiny_esc50, dls.esc50_settings)
    assert indep.shape == x.shape
    mean_i, std_i = ref_stats(indep, red_dims)
    np.testing.assert_allclose(rec.mean.numpy(), mean_i, rtol=1e-5)
    np.testing.assert_allclose(rec.std.numpy(), std_i, rtol=1e-5)

    # installed on every loader, in place of the InstanceMinMax, with these statistics
    for dl in dls.loaders:
        norms = spec_normalizers(dl)
        assert len(norms) == 1 and not any(isinstance(t, InstanceMinMax) for t in dl.after_batch.fs)
        assert torch.equal(norms[0].mean, rec.mean) and torch.equal(norms[0].std, rec.std)
    xb = plain(dls.valid.one_batch()[0])
    raw = plain(stats_loader(dls.valid, shuffle=False).one_batch()[0])
    torch.testing.assert_close(xb, (raw - rec.mean) / rec.std, rtol=0, atol=1e-5)


class AddThousandDb(SpecNormalizer):
    "A spectrogram normalizer of the user's own: it only subclasses `SpecNormalizer`, nothing lists it."

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return x + 1000.0


def test_a_spec_normalizer_subclass_of_your_own_is_left_out_of_the_statistics(tiny_esc50):
    dls = make_dls(tiny_esc50, batch_tfms=[AddThousandDb()])
    assert plain(dls.valid.one_batch()[0]).min() > 500  # it runs in the loaders' pipeline ...
    cb = StatsCallback(red_dims=(0, 2, 3))
    make_learner(dls, cb).fit(1)
    # ... but the statistics are those of the un-normalized dB spectrograms, computed without the package
    indep = training_spectrograms_from_files(tiny_esc50, dls.esc50_settings)
    mean_i, std_i = ref_stats(indep, (0, 2, 3))
    np.testing.assert_allclose(cb.stats_recorder.mean.numpy(), mean_i, rtol=1e-5)
    np.testing.assert_allclose(cb.stats_recorder.std.numpy(), std_i, rtol=1e-5)
    for dl in dls.loaders:  # and the installed SpecNormalize replaced it
        assert len(spec_normalizers(dl)) == 1 and not any(isinstance(t, AddThousandDb) for t in dl.after_batch.fs)


class CountBatches(Transform):
    "Counts the spectrogram batches of a loader (order 98: before the normalizer, also in the statistics pass)."

    order = 98

    def __init__(self):
        super().__init__()
        self.n = 0

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        self.n += 1
        return x


def test_installed_exactly_once_also_after_a_second_fit(tiny_esc50):
    dls = make_dls(tiny_esc50)
    counter = CountBatches()
    dls.train.after_batch.add(counter)
    cb = StatsCallback()
    learn = make_learner(dls, cb)
    learn.fit(1)
    # the statistics pass reads every training batch (6, the last partial), then one epoch of 5
    assert counter.n == 6 + 5
    first = cb.stats_recorder
    assert [len(spec_normalizers(dl)) for dl in dls.loaders] == [1, 1]

    learn.fit(1)  # frozen statistics: reused, not recomputed
    assert counter.n == 6 + 5 + 5  # training batches only
    assert cb.stats_recorder is first
    assert [len(spec_normalizers(dl)) for dl in dls.loaders] == [1, 1]
    assert torch.equal(spec_normalizers(dls.valid)[0].mean, first.mean)


@pytest.mark.parametrize("fraction", [0.3, 0.5])
def test_fraction_uses_a_reproducible_subset_of_training_batches(tiny_esc50, fraction):
    dls = make_dls(tiny_esc50)
    n_batches = len(stats_loader(dls.train))  # 16 clips in batches of 3: 6 batches
    assert n_batches == 6
    recs = []
    for _ in range(2):
        cb = StatsCallback(fraction=fraction)
        make_learner(dls, cb).fit(1)
        recs.append(cb.stats_recorder)
    assert recs[0].n_batches == math.ceil(fraction * n_batches)
    assert torch.equal(recs[0].mean, recs[1].mean) and torch.equal(recs[0].std, recs[1].std)
    full = collect_stats(stats_loader(dls.train, shuffle=False), progress=False)
    assert not torch.equal(recs[0].mean, full.mean)  # a subset, not everything


@pytest.mark.parametrize("fraction", [0, -0.5, 1.01, float("nan")])
def test_bad_fraction_raises_at_construction(fraction):
    with pytest.raises(ValueError, match=re.escape(f"fraction must be in (0, 1], got {fraction!r}")):
        StatsCallback(fraction=fraction)


def test_fraction_below_one_batch_raises_at_fit(tiny_esc50):
    learn = make_learner(make_dls(tiny_esc50), StatsCallback(fraction=0.1))  # 0.1 of 6 batches
    with pytest.raises(ValueError, match=re.escape("fraction=0.1 of 6 batch(es) selects less than one batch")):
        learn.fit(1)


# ---------------------------------------------------------------------------------------------
# the statistics file


def test_saved_file_is_reused_and_other_settings_are_refused(tiny_esc50, tmp_path):
    path = tmp_path / "stats" / "esc50.npz"
    dls = make_dls(tiny_esc50)
    counter = CountBatches()
    dls.train.after_batch.add(counter)
    cb = StatsCallback(path=path)
    make_learner(dls, cb).fit(1)
    assert counter.n == 6 + 5  # statistics pass (6 batches), then one epoch (5)
    assert path.is_file()
    saved = StatsRecorder.load(path)
    assert saved.red_dims == (0, 2, 3) and saved.settings["red_dims"] == [0, 2, 3]
    assert saved.settings["spectrogram"]["n_mels"] == 64 and saved.settings["n_train"] == N_TRAIN
    assert torch.equal(saved.mean, cb.stats_recorder.mean) and torch.equal(saved.std, cb.stats_recorder.std)
    stamp = path.stat().st_mtime_ns

    # a second learner with the same settings reads the file and gathers nothing
    dls2 = make_dls(tiny_esc50)
    counter2 = CountBatches()
    dls2.train.after_batch.add(counter2)
    cb2 = StatsCallback(path=path)
    make_learner(dls2, cb2).fit(1)
    assert counter2.n == 5  # training batches only: no statistics pass
    assert torch.equal(cb2.stats_recorder.mean, saved.mean) and torch.equal(spec_normalizers(dls2.train)[0].std, saved.std)
    assert path.stat().st_mtime_ns == stamp

    # other red_dims, other spectrogram settings: refused, naming the file and what differs
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        make_learner(make_dls(tiny_esc50), StatsCallback(red_dims=(0, 1, 3), path=path)).fit(1)
    assert "red_dims" in str(info.value)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        make_learner(make_dls(tiny_esc50, n_mels=32), StatsCallback(path=path)).fit(1)
    assert "spectrogram" in str(info.value)
    assert path.stat().st_mtime_ns == stamp  # a refused file is left alone


@pytest.mark.parametrize("content", [b"", b"not a stats file", b"PK\x03\x04broken zip"])
def test_corrupt_stats_file_raises_naming_it(tiny_esc50, tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        make_learner(make_dls(tiny_esc50), StatsCallback(path=path)).fit(1)


def replace_training_clips(root, n=4, seed=7):
    """Overwrite `n` training clips (folds 2-5) with loud noise of the same length and format: the
    same names, number of clips and file sizes, other content. Their modification time is set one
    second later, as a file replaced later has it (file systems with coarse timestamps could
    otherwise give the new file the old time within one test)."""
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    rng = np.random.default_rng(seed)
    for name in meta.loc[meta.fold != 1, "filename"][:n]:
        path = root / "audio" / name
        before = path.stat()
        sf.write(path, np.clip(rng.normal(0.0, 0.5, size=16000), -1, 1), 16000, subtype="PCM_16")
        assert path.stat().st_size == before.st_size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))


@pytest.fixture
def esc50_copy(tiny_esc50, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_esc50, root)
    return root


def test_saved_statistics_of_replaced_clips_are_refused_or_computed_again(esc50_copy, tmp_path):
    "Training clips replaced by others of the same names, count and size: the saved file is stale."
    path = tmp_path / "stats.npz"
    make_learner(make_dls(esc50_copy), StatsCallback(path=path)).fit(1)
    old = StatsRecorder.load(path)
    replace_training_clips(esc50_copy)
    stamp = path.stat().st_mtime_ns

    with pytest.raises(ValueError) as info:
        make_learner(make_dls(esc50_copy), StatsCallback(path=path)).fit(1)
    message = str(info.value).splitlines()[-1].strip()  # fastai puts a line naming the callback's event above it
    assert message.startswith(f"statistics file {path} ") and "train_items" in message and "refresh=True" in message
    assert "n_train" not in message  # the count did not change
    assert path.stat().st_mtime_ns == stamp  # a refused file is left alone

    cb = StatsCallback(path=path, refresh=True)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        make_learner(make_dls(esc50_copy), cb).fit(1)
    # computed again from the new clips: the statistics of their spectrograms, without the package
    mean, std = ref_stats(training_spectrograms_from_files(esc50_copy, make_dls(esc50_copy).esc50_settings), (0, 2, 3))
    np.testing.assert_allclose(cb.stats_recorder.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(cb.stats_recorder.std.numpy(), std, rtol=1e-5)
    assert abs(float(cb.stats_recorder.mean) - float(old.mean)) > 1.0  # dB: the old file really was stale
    saved = StatsRecorder.load(path)  # and the file replaced
    assert torch.equal(saved.mean, cb.stats_recorder.mean) and saved.settings == cb.stats_recorder.settings

    # a file whose settings match is reused, refresh or not: no warning, no new pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = StatsCallback(path=path, refresh=True)
        make_learner(make_dls(esc50_copy), again).fit(1)
    assert torch.equal(again.stats_recorder.mean, saved.mean)


def test_statistics_in_memory_are_computed_again_when_the_clips_change(esc50_copy):
    "The same learner fitted again after training clips were replaced: new statistics, not the frozen ones."
    dls = make_dls(esc50_copy)
    cb = StatsCallback()
    learn = make_learner(dls, cb)
    learn.fit(1)
    first = cb.stats_recorder
    replace_training_clips(esc50_copy)
    learn.fit(1)
    assert cb.stats_recorder is not first
    mean, std = ref_stats(training_spectrograms_from_files(esc50_copy, dls.esc50_settings), (0, 2, 3))
    np.testing.assert_allclose(cb.stats_recorder.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(cb.stats_recorder.std.numpy(), std, rtol=1e-5)
    for dl in dls.loaders:  # and installed
        assert torch.equal(spec_normalizers(dl)[0].mean, cb.stats_recorder.mean)


def test_the_seed_is_part_of_the_saved_settings(tiny_esc50, tmp_path):
    "Statistics of half the batches under seed 0 are not those of seed 1: another seed is refused, or computed again."
    path = tmp_path / "stats.npz"
    make_learner(make_dls(tiny_esc50), StatsCallback(fraction=0.5, seed=0, path=path)).fit(1)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        make_learner(make_dls(tiny_esc50), StatsCallback(fraction=0.5, seed=1, path=path)).fit(1)
    assert "seed 0 -> 1" in str(info.value)

    refreshed = StatsCallback(fraction=0.5, seed=1, path=path, refresh=True)
    with pytest.warns(UserWarning, match="seed 0 -> 1"):
        make_learner(make_dls(tiny_esc50), refreshed).fit(1)
    in_memory = StatsCallback(fraction=0.5, seed=1)  # the same statistics, never saved
    make_learner(make_dls(tiny_esc50), in_memory).fit(1)
    assert torch.equal(refreshed.stats_recorder.mean, in_memory.stats_recorder.mean)
    seed0 = StatsCallback(fraction=0.5, seed=0)
    make_learner(make_dls(tiny_esc50), seed0).fit(1)
    assert not torch.equal(seed0.stats_recorder.mean, in_memory.stats_recorder.mean)  # the seeds select other batches


# ---------------------------------------------------------------------------------------------
# export / load_learner


def test_export_and_load_learner_normalize_and_predict_identically(tiny_esc50, tmp_path):
    dls = make_dls(tiny_esc50)
    cb = StatsCallback(red_dims=(0, 1, 3))
    learn = make_learner(dls, cb)
    learn.fit(1)
    learn.export(tmp_path / "export.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fastai's notice that load_learner unpickles
        loaded = load_learner(tmp_path / "export.pkl")

    norms = spec_normalizers(loaded.dls.valid)
    assert len(norms) == 1
    assert torch.equal(norms[0].mean, cb.stats_recorder.mean) and torch.equal(norms[0].std, cb.stats_recorder.std)

    items = dls.valid.items
    dl_a, dl_b = learn.dls.test_dl(items), loaded.dls.test_dl(items)
    xa, xb = plain(dl_a.one_batch()[0]), plain(dl_b.one_batch()[0])
    assert torch.equal(xa, xb)
    raw = plain(stats_loader(dls.valid, shuffle=False).one_batch()[0])
    torch.testing.assert_close(xa, (raw - cb.stats_recorder.mean) / cb.stats_recorder.std, rtol=0, atol=1e-5)
    preds_a = learn.get_preds(dl=dl_a)[0]
    preds_b = loaded.get_preds(dl=dl_b)[0]
    assert preds_a.shape == (N_VALID, 4)
    torch.testing.assert_close(preds_a, preds_b, rtol=0, atol=0)
    # the loaded learner kept its frozen statistics through get_preds (whose before_fit has no training data)
    loaded_cb = next(c for c in loaded.cbs if isinstance(c, StatsCallback))
    assert torch.equal(loaded_cb.stats_recorder.mean, cb.stats_recorder.mean)


class _Stash(Transform):
    "A spectrogram augmentation stand-in that keeps a reference to what it returns."

    order = 80

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        self.last = x
        return x


def test_installed_normalizer_works_in_place_only_on_audio_to_spec_output(tiny_esc50):
    dls = make_dls(tiny_esc50)
    learn = make_learner(dls, StatsCallback())
    learn.fit(1)
    norm = spec_normalizers(dls.valid)[0]
    assert norm.inplace  # AudioToSpec's fresh output comes right before it
    assert all(t.inplace for dl in dls.loaders for t in dl.after_batch.fs if isinstance(t, WaveformNormalize))
    # the same batch as an out-of-place normalizer gives
    xb = plain(dls.valid.one_batch()[0])
    out_of_place = SpecNormalize(norm.mean, norm.std)
    dls.valid.after_batch.fs = dls.valid.after_batch.fs.filter(lambda t: not isinstance(t, SpecNormalize))
    dls.valid.after_batch.add(out_of_place)
    assert torch.equal(xb, plain(dls.valid.one_batch()[0]))

    # a transform between AudioToSpec and the normalizer may keep its output: then out of place
    dls2 = make_dls(tiny_esc50, batch_tfms=[_Stash()])
    learn2 = make_learner(dls2, StatsCallback())
    learn2.fit(1)
    assert not spec_normalizers(dls2.valid)[0].inplace
    stash = next(t for t in dls2.valid.after_batch.fs if isinstance(t, _Stash))
    xb2 = dls2.valid.one_batch()[0]
    assert plain(stash.last).mean() < -20  # still in dB, not overwritten by the normalized batch
    assert abs(float(plain(xb2).mean())) < 5
