"""Tests for fastspecnorm.experiment.norms: each normalization of `NORMS` as the runner builds it, pinned
through public names against references that do not use the package, and through a training run.

Each norm is built the way the experiment runner builds it (`norm_setup`, then
`esc50_dataloaders(..., batch_tfms=setup.batch_tfms, **setup.settings)` and
`esc50_learner(dls, cbs=setup.cbs)`), and what it installs is compared with NumPy float64 on
spectrograms computed from the WAV files (conftest's `refs`: soundfile, NumPy standardization,
torchaudio's `MelSpectrogram` + `AmplitudeToDB` in float64): the statistics' shape and values over the
training folds, the per-item min-max, Tacotron's dB range, raw dB, per-utterance MVN, `bn`'s
BatchNorm over frequency bins, and decoding and showing batches in dB after `StatsCallback`. Every
norm also trains one epoch, with and without the train-only augmentations, and a norm added from a
test with `register_norm` trains by name.

Data: conftest's `tiny_esc50` (4 classes x 5 folds, one 1 s clip at 16 kHz per class and fold, one
of them digital silence): 16 training clips (folds 2-5), 4 validation clips (fold 1).

Tolerances: the package computes spectrograms in float32, the reference in float64; both clamp
power at 1e-10 (-100 dB). Above -40 dB the float32 round-off is below 5e-5 dB; it grows as the
level falls (measured at most 9e-4 dB, in bins near -91 dB of standardized clips with silent
padding), so dB values are compared to 2e-3 dB absolute. Statistics over thousands of such values
agree to a relative 1e-6 (measured 3e-7), compared to 1e-5.
"""

import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from fastai.vision.models.xresnet import xresnet18

from fastspecnorm import (
    AudioSpectrogram,
    DbRangeNormalize,
    InstanceMinMax,
    SpecNormalize,
    StatsCallback,
    esc50_dataloaders,
    esc50_learner,
)
from fastspecnorm.experiment.norms import NORMS, norm_setup
from fastspecnorm.experiment.runner import train_one

TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}

# `bn` needs `audio_learner(dls, input_bn=True)` (the learner's BatchNorm over frequency bins); the
# mark lifts itself once the learner takes `input_bn`.
HAS_INPUT_BN = "input_bn" in inspect.signature(esc50_learner).parameters
needs_input_bn = pytest.mark.xfail(not HAS_INPUT_BN, reason="esc50_learner/audio_learner has no input_bn yet", strict=True)

DB_ATOL = 2e-3  # dB, see the module docstring
STATS_RTOL = 1e-5
N_FFT, HOP, N_MELS, SR = 1024, 400, 64, 16000  # the "quick" preset


def _marks(norm):
    return [needs_input_bn] if norm == "bn" else []


def test_all_eight_norms_in_order():
    assert list(NORMS) == ["none", "global", "channel", "instance", "dbrange", "pcen", "utterance", "bn"]


@pytest.mark.parametrize("norm", [pytest.param(n, marks=_marks(n)) for n in NORMS])
def test_every_norm_trains_one_epoch(tiny_esc50, norm):
    row = train_one(tiny_esc50, norm, fold=1, seed=0, preset="quick", epochs=1, **TINY)
    assert row["norm"] == norm and row["epochs"] == 1 and 0 <= row["accuracy"] <= 1
    assert math.isfinite(row["valid_loss"]) and math.isfinite(row["train_loss"])


@pytest.mark.parametrize("norm", [pytest.param(n, marks=_marks(n)) for n in ("global", "pcen", "bn")])
def test_norms_train_with_augmentations(tiny_esc50, norm):
    row = train_one(tiny_esc50, norm, fold=1, seed=0, preset="quick", epochs=1, augment=True, **TINY)
    assert 0 <= row["accuracy"] <= 1 and math.isfinite(row["train_loss"])


def test_new_norm_setups():
    pcen = norm_setup("pcen")
    assert pcen.settings == {"waveform_norm": False, "to_db": False} and [type(t).__name__ for t in pcen.batch_tfms] == ["PCEN"]
    utt = norm_setup("utterance")
    assert utt.settings == {"waveform_norm": True} and [type(t).__name__ for t in utt.batch_tfms] == ["UtteranceNormalize"]
    bn = norm_setup("bn")
    assert bn.learner_kwargs == {"input_bn": True} and bn.batch_tfms == [] and bn.cbs == []  # no dataset statistics


@needs_input_bn
def test_bn_learner_starts_with_a_batchnorm_over_frequency_bins(tiny_esc50):
    from fastspecnorm import esc50_dataloaders

    dls = esc50_dataloaders(tiny_esc50, preset="quick", **TINY)
    learn = esc50_learner(dls, **norm_setup("bn").learner_kwargs)
    first = next(m for m in learn.model.modules() if not list(m.children()))
    n_freq = dls.valid.one_batch()[0].shape[2]
    assert isinstance(first, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) and first.num_features == n_freq


def test_a_normalization_added_in_one_file_trains_by_name(tiny_esc50):
    # What a new normalization needs: a SpecNormalizer subclass and its Norm, registered; the grid,
    # --norms checks and the summaries take it by name (norm_setup, check_norms, train_one).
    from fastspecnorm import AudioSpectrogram, SpecNormalizer
    from fastspecnorm.experiment.norms import Norm, check_norms, register_norm

    class Halve(SpecNormalizer):
        def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
            return x / 2

    register_norm(Norm("halve-test", "x / 2", "fixed", True, spec_tfms=lambda: [Halve()]))
    try:
        assert check_norms(["none", "halve-test"]) == ["none", "halve-test"]
        setup = norm_setup("halve-test")
        assert [type(t) for t in setup.batch_tfms] == [Halve]
        row = train_one(tiny_esc50, "halve-test", fold=1, seed=0, preset="quick", epochs=1, **TINY)
        assert row["norm"] == "halve-test" and 0 <= row["accuracy"] <= 1 and math.isfinite(row["train_loss"])
        with pytest.raises(ValueError, match="exists already"):
            register_norm(Norm("halve-test", "x / 2", "fixed", True, spec_tfms=lambda: [Halve()]))
    finally:
        NORMS.pop("halve-test")


# ---------------------------------------------------------------------------------------------
# each norm built as the runner builds it, against NumPy float64 on the WAV files (see the module docstring)


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
