"""What a user sees, pinned through public names against references that do not use the package.

Each experiment norm is built the way the experiment runner builds it (`norm_setup`, then
`esc50_dataloaders(..., batch_tfms=setup.batch_tfms, **setup.settings)` and
`esc50_learner(dls, cbs=setup.cbs)`), and what it installs is compared with NumPy float64 on
spectrograms computed here from the WAV files (soundfile, NumPy standardization, torchaudio's
`MelSpectrogram` + `AmplitudeToDB` in float64): the statistics' shape and values over the
training folds, the per-item min-max, Tacotron's dB range, raw dB. Also pinned: the learner's
architecture, decoding and showing batches in dB after `StatsCallback`, and `stats_loader` +
`collect_stats(..., fraction)`.

Data: conftest's `tiny_esc50` (4 classes x 5 folds, one 1 s clip at 16 kHz per class and fold, one
of them digital silence): 16 training clips (folds 2-5), 4 validation clips (fold 1).

Tolerances: the package computes spectrograms in float32, the reference in float64; both clamp
power at 1e-10 (-100 dB). Above -40 dB the float32 round-off is below 5e-5 dB; it grows as the
level falls (measured at most 9e-4 dB, in bins near -91 dB of standardized clips with silent
padding), so dB values are compared to 2e-3 dB absolute. Statistics over thousands of such values
agree to a relative 1e-6 (measured 3e-7), compared to 1e-5.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio
from fastai.vision.models.xresnet import xresnet18
from fasttransform import Transform

import fastspecnorm
from fastspecnorm import (
    AudioSpectrogram,
    DbRangeNormalize,
    InstanceMinMax,
    SpecNormalize,
    StatsCallback,
    collect_stats,
    esc50_dataloaders,
    esc50_learner,
    stats_loader,
)
from fastspecnorm.experiment.norms import NORMS, norm_setup

DB_ATOL = 2e-3  # dB, see the module docstring
STATS_RTOL = 1e-5
N_FFT, HOP, N_MELS, SR = 1024, 400, 64, 16000  # the "quick" preset


def plain(x) -> np.ndarray:
    return x.as_subclass(torch.Tensor).detach().double().cpu().numpy()


def build_run(root, norm: str, bs: int = 4):
    "DataLoaders and learner of one run of `norm`, as `experiment.runner.train_one` builds them."
    setup = norm_setup(norm)
    dls = esc50_dataloaders(
        root, valid_fold=1, preset="quick", bs=bs, duration=1.0, num_workers=0, batch_tfms=setup.batch_tfms, **setup.settings
    )
    learn = esc50_learner(dls, cbs=setup.cbs, **setup.learner_kwargs)
    return dls, learn


# ---------------------------------------------------------------------------------------------
# the independent reference: WAV file -> NumPy -> torchaudio float64 mel spectrogram in dB


def reference_spec(path: Path, waveform_norm: bool) -> np.ndarray:
    "`(1, n_mels, frames)` float64 dB spectrogram of one 1 s, 16 kHz clip."
    wav, sr = sf.read(path, dtype="float64")
    assert sr == SR and wav.shape == (SR,)
    if waveform_norm:
        std = wav.std()
        wav = np.zeros_like(wav) if std <= 1e-8 else (wav - wav.mean()) / std
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS).double()
    spec = torchaudio.transforms.AmplitudeToDB()(mel(torch.from_numpy(wav)[None]))
    return spec.numpy()


def reference_specs(root: Path, names, waveform_norm: bool) -> np.ndarray:
    "`(len(names), 1, n_mels, frames)` for the clips `names` of `root/audio`, in that order."
    return np.stack([reference_spec(root / "audio" / n, waveform_norm) for n in names])


def fold_names(root: Path, train: bool) -> list[str]:
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    return meta.loc[(meta.fold != 1) if train else (meta.fold == 1), "filename"].tolist()


@pytest.fixture(scope="module")
def refs(tiny_esc50):
    "Reference spectrograms: training folds and the validation fold (in loader order), raw and standardized."
    valid = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, duration=1.0, num_workers=0).valid
    valid_names = valid.items["filename"].tolist()
    out = {"valid_names": valid_names}
    for wn in (True, False):
        out["train", wn] = reference_specs(tiny_esc50, fold_names(tiny_esc50, train=True), wn)
        out["valid", wn] = reference_specs(tiny_esc50, valid_names, wn)
    return out


def valid_batch(dls) -> np.ndarray:
    "The whole validation fold as one batch (bs >= 4), normalized as the model sees it."
    xb = dls.valid.one_batch()[0]
    assert isinstance(xb, AudioSpectrogram) and xb.shape[0] == len(dls.valid.items)
    return plain(xb)


def spec_normalizers(dl) -> list:
    return [t for t in dl.after_batch.fs if isinstance(t, (SpecNormalize, InstanceMinMax, DbRangeNormalize))]


# ---------------------------------------------------------------------------------------------
# per experiment norm: what is installed, with which statistics


def test_reference_matches_the_pipeline_before_normalization(tiny_esc50, refs):
    # the reference itself: `none` batches are raw dB spectrograms of the unstandardized clips
    dls, _ = build_run(tiny_esc50, "none")
    np.testing.assert_allclose(valid_batch(dls), refs["valid", False], rtol=0, atol=DB_ATOL)


def test_none_installs_nothing_and_gives_raw_db(tiny_esc50, refs):
    dls, learn = build_run(tiny_esc50, "none")
    learn.fit(0)  # before_fit of every callback, no training
    assert [spec_normalizers(dl) for dl in dls.loaders] == [[], []]
    np.testing.assert_allclose(valid_batch(dls), refs["valid", False], rtol=0, atol=DB_ATOL)
    assert valid_batch(dls).min() < -50  # dB, not a [0, 1] or standardized scale


@pytest.mark.parametrize("norm, red_dims, axes", [("global", (0, 2, 3), (0, 2, 3)), ("channel", (0, 1, 3), (0, 1, 3))])
def test_dataset_statistics_norms(tiny_esc50, refs, norm, red_dims, axes):
    """`global`: one mean/std per audio channel, shape (1, C, 1, 1); `channel`: one per frequency bin,
    shape (1, 1, F, 1); both over the training folds only, waveforms standardized first."""
    assert NORMS[norm].red_dims == red_dims
    dls, learn = build_run(tiny_esc50, norm)
    assert [spec_normalizers(dl) for dl in dls.loaders] == [[], []]  # nothing before the statistics pass
    learn.fit(0)
    train = refs["train", True]
    mean = train.mean(axis=axes, keepdims=True)
    std = train.std(axis=axes, keepdims=True)  # population std, ddof 0
    expected_shape = (1, 1, 1, 1) if norm == "global" else (1, 1, N_MELS, 1)
    assert mean.shape == expected_shape
    for dl in dls.loaders:
        (tfm,) = spec_normalizers(dl)
        assert type(tfm) is SpecNormalize
        assert tuple(tfm.mean.shape) == expected_shape and tuple(tfm.std.shape) == expected_shape
        np.testing.assert_allclose(plain(tfm.mean), mean, rtol=STATS_RTOL, atol=0)
        np.testing.assert_allclose(plain(tfm.std), std, rtol=STATS_RTOL, atol=0)
    # and the validation batches the model sees: (x - mean) / std with those training statistics
    np.testing.assert_allclose(valid_batch(dls), (refs["valid", True] - mean) / std, rtol=0, atol=DB_ATOL / std.min())


def test_instance_is_per_item_min_max(tiny_esc50, refs):
    dls, learn = build_run(tiny_esc50, "instance")
    learn.fit(0)
    for dl in dls.loaders:
        assert [type(t) for t in spec_normalizers(dl)] == [InstanceMinMax]
    x = refs["valid", True]
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    silent = (hi - lo).ravel() == 0  # the silent clip: a constant -100 dB spectrogram
    assert silent.sum() == 1 and (~silent).sum() == 3
    assert np.ptp(hi[~silent].ravel()) > 1  # the other items differ, so a batch-wide min-max would differ
    span = np.where(hi - lo == 0, np.inf, hi - lo)
    expected = (x - lo) / span  # constant items: zeros
    got = valid_batch(dls)
    # errors of DB_ATOL in x scale by 1 / (hi - lo) (ranges of tens of dB here)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2 * DB_ATOL / span.min())
    assert (got[silent] == 0).all()
    assert (got[~silent].min(axis=(1, 2, 3)) == 0).all() and (got[~silent].max(axis=(1, 2, 3)) == 1).all()  # per item


def test_instance_min_max_of_an_item_does_not_depend_on_its_batch(tiny_esc50):
    dls, _ = build_run(tiny_esc50, "instance")
    xb = plain(dls.valid.one_batch()[0])
    dls1, _ = build_run(tiny_esc50, "instance", bs=1)
    alone = np.concatenate([plain(b[0]) for b in dls1.valid])
    np.testing.assert_allclose(alone, xb, rtol=0, atol=1e-6)


def test_dbrange_is_tacotrons_fixed_range_on_raw_levels(tiny_esc50, refs):
    assert NORMS["dbrange"].waveform_norm is False
    dls, learn = build_run(tiny_esc50, "dbrange")
    learn.fit(0)
    for dl in dls.loaders:
        assert [type(t) for t in spec_normalizers(dl)] == [DbRangeNormalize]
    s = refs["valid", False]  # dB of the raw (unstandardized) clip
    min_level_db, ref_level_db = -100.0, 20.0  # Tacotron (keithito/tacotron): -80..+20 dB -> [0, 1]
    expected = np.clip((s - ref_level_db - min_level_db) / -min_level_db, 0, 1)
    got = valid_batch(dls)
    np.testing.assert_allclose(got, expected, rtol=0, atol=DB_ATOL / 100)
    # values worked out by hand: -80 dB -> 0, -30 dB -> 0.5, +20 dB -> 1
    tfm = spec_normalizers(dls.valid)[0]
    hand = tfm(AudioSpectrogram(torch.tensor([[[[-90.0, -80.0, -30.0, 20.0, 30.0]]]])))
    np.testing.assert_allclose(plain(hand).ravel(), [0, 0, 0.5, 1, 1], atol=1e-7)


def test_utterance_is_per_item_and_frequency_bin_over_time(tiny_esc50, refs):
    from fastspecnorm.normalize import UtteranceNormalize

    dls, learn = build_run(tiny_esc50, "utterance")
    learn.fit(0)
    for dl in dls.loaders:
        assert [type(t) for t in dl.after_batch.fs if isinstance(t, UtteranceNormalize)] == [UtteranceNormalize]
    x = refs["valid", True]  # 1 s clips: no padding, every frame counts
    mean = x.mean(axis=3, keepdims=True)
    std = np.maximum(x.std(axis=3, keepdims=True), 1e-5)  # ESPnet's floor
    got = valid_batch(dls)
    # dB errors scale by 1 / std; near-constant bins (std ~ 0, e.g. the silent clip) give 0 on both sides
    ok = std > 1e-2
    np.testing.assert_allclose(
        got[np.broadcast_to(ok, got.shape)], ((x - mean) / std)[np.broadcast_to(ok, x.shape)], rtol=0, atol=2 * DB_ATOL / 1e-2
    )
    assert np.abs(got[np.broadcast_to(~ok, got.shape)]).max(initial=0) <= 2 * DB_ATOL / 1e-5


def test_bn_puts_a_batchnorm_over_frequency_bins_first_and_installs_nothing(tiny_esc50, refs):
    dls, learn = build_run(tiny_esc50, "bn")
    learn.fit(0)
    assert [spec_normalizers(dl) for dl in dls.loaders] == [[], []]
    np.testing.assert_allclose(valid_batch(dls), refs["valid", True], rtol=0, atol=DB_ATOL)  # standardized clips, dB
    first = learn.model[0]  # the model's first layer
    assert sum(p.numel() for p in first.parameters()) == 2 * N_MELS  # a scale and a shift per bin
    rest = learn.model[1]
    assert [type(m) for m in rest.modules()] == [type(m) for m in xresnet18(c_in=1, n_out=dls.c).modules()]
    # in training mode it standardizes each frequency bin over the batch and time (BatchNorm, eps 1e-5)
    x = torch.from_numpy(refs["valid", True]).float()
    first.train()
    with torch.no_grad():
        y = first(AudioSpectrogram(x.clone())).as_subclass(torch.Tensor).double().numpy()
    xd = refs["valid", True]
    expected = (xd - xd.mean(axis=(0, 1, 3), keepdims=True)) / np.sqrt(xd.var(axis=(0, 1, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-4)


def test_waveform_standardization_per_norm():
    expected = {
        "none": False,
        "global": True,
        "channel": True,
        "instance": True,
        "dbrange": False,
        "pcen": False,
        "utterance": True,
        "bn": True,
    }
    assert set(expected) == set(NORMS)  # a new norm is pinned here too
    for name in expected:
        assert norm_setup(name).settings["waveform_norm"] is expected[name], name


# ---------------------------------------------------------------------------------------------
# the learner

LEARNERS = [name for name in ("esc50_learner", "audio_learner") if hasattr(fastspecnorm, name)]


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_is_xresnet18_with_one_input_channel_and_one_output_per_class(tiny_esc50, name):
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, duration=1.0, num_workers=0)
    learn = getattr(fastspecnorm, name)(dls)
    assert dls.c == 4  # the CSV's classes
    ref = xresnet18(c_in=1, n_out=4)
    layers = [(type(m), tuple(p.shape)) for m in learn.model.modules() for p in m.parameters(recurse=False)]
    assert layers == [(type(m), tuple(p.shape)) for m in ref.modules() for p in m.parameters(recurse=False)]
    assert [type(m) for m in learn.model.modules()] == [type(m) for m in ref.modules()]
    convs = [m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 1 and len(convs) == 22  # xResNet18: 3 stem + 8 blocks x 2 + 3 shortcut convs (stages 2-4)
    linears = [m for m in learn.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 and linears[-1].out_features == 4
    assert [m.name for m in learn.metrics] == ["accuracy"]
    xb, yb = dls.valid.one_batch()
    with torch.no_grad():
        out = learn.model.eval()(xb)
    assert out.shape == (4, 4)
    acc = learn.metrics[0].func(out, yb)
    assert float(acc) == float((out.argmax(1) == yb).float().mean())


# ---------------------------------------------------------------------------------------------
# decode and show after StatsCallback


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
def test_decode_and_show_batch_in_db_after_stats_callback(tiny_esc50, refs, red_dims):
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, duration=1.0, num_workers=0)
    esc50_learner(dls, cbs=StatsCallback(red_dims=red_dims)).fit(0)
    b = dls.valid.one_batch()
    assert abs(plain(b[0]).mean()) < 1  # what the model sees is standardized...
    decoded = dls.valid.decode_batch(b, max_n=4)
    x = np.stack([plain(item[0]) for item in decoded])
    np.testing.assert_allclose(x, refs["valid", True], rtol=0, atol=2 * DB_ATOL)  # ...decoded: dB again

    plt.close("all")
    dls.valid.show_batch(b, max_n=2)
    fig = plt.gcf()
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2
    for i, ax in enumerate(images):
        assert ax.get_xlabel() == "time (s)" and ax.get_ylabel().startswith("frequency (Hz")
        np.testing.assert_allclose(ax.images[0].get_extent(), [0, 41 * HOP / SR, 0, SR / 2])  # 41 frames of 25 ms
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), refs["valid", True][i, 0], atol=2 * DB_ATOL)
        assert ax.get_title() == dls.vocab[int(b[1][i])]
    colorbars = [ax for ax in fig.axes if not ax.images]
    assert len(colorbars) == 2 and all(ax.get_ylabel() == "dB" for ax in colorbars)
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# stats_loader and collect_stats(fraction)


class TrainOnlyOffset(Transform):
    "A train-only batch augmentation (split_idx 0) that shifts spectrograms by +1000 dB."

    split_idx, order = 0, 98

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return x + 1000


def test_stats_loader_drops_train_only_transforms_and_normalizers(tiny_esc50, refs):
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, duration=1.0, num_workers=0)
    dls.train.after_batch.add(TrainOnlyOffset())
    dls.train.after_batch.add(SpecNormalize(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 10.0)))
    assert plain(dls.train.one_batch()[0]).min() > 80  # the training loader applies both: (x + 1000) / 10
    xs = np.concatenate([plain(b[0]) for b in stats_loader(dls.train, shuffle=False)])
    np.testing.assert_allclose(xs, refs["train", True], rtol=0, atol=DB_ATOL)  # neither, every item once


@pytest.mark.parametrize("bs", [2, 3])
def test_collect_stats_fraction_uses_ceil_of_the_batches_and_equals_numpy_on_those_items(tiny_esc50, refs, bs):
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=bs, duration=1.0, num_workers=0)
    n = len(stats_loader(dls.train))
    assert n == math.ceil(16 / bs)  # the last, partial batch is kept
    rec = collect_stats(stats_loader(dls.train), fraction=0.2)  # the README's call
    k = math.ceil(0.2 * n)
    assert rec.n_batches == k
    # the items of those k batches: the first k batches of the same (fixed-seed) shuffled loader,
    # identified among the reference spectrograms of the training folds
    used = [plain(b[0]) for b in itertools.islice(stats_loader(dls.train), k)]
    used = np.concatenate(used)
    assert len(used) == min(16, k * bs)
    train = refs["train", True]
    idx = [int(np.abs(train - u).reshape(len(train), -1).max(1).argmin()) for u in used]
    assert len(set(idx)) == len(idx)
    np.testing.assert_allclose(used, train[idx], rtol=0, atol=DB_ATOL)
    np.testing.assert_allclose(plain(rec.mean), train[idx].mean(axis=(0, 2, 3), keepdims=True), rtol=STATS_RTOL)
    np.testing.assert_allclose(plain(rec.std), train[idx].std(axis=(0, 2, 3), keepdims=True), rtol=STATS_RTOL)
    assert not np.allclose(plain(rec.mean), train.mean())  # a subset, not the whole training set
