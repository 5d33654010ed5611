"""Tests for fastspecnorm.normalize: each Transform equals its functional form, decodes inverts
encodes, type dispatch, declared statistics that follow the DataLoader's device, padded batches
(each clip normalized as if alone, padding set to 0), `PCEN` and `UtteranceNormalize` (against librosa
and NumPy, and equal to their functional forms).

References are NumPy float64 formulas and `fastspecnorm.functional` (itself tested against NumPy in
test_functional.py). dB values of order 100 round to ~8e-6 in float32: atol 1e-4 dB on inverses.
"""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from fastai.data.core import TfmdDL
from fastai.torch_core import TensorCategory
from fasttransform import Pipeline
from helpers import energies, librosa_pcen, numpy_utterance_mvn
from helpers import padded_batch as _padded_batch

import fastspecnorm.functional as SF
from fastspecnorm import (
    PCEN,
    AudioSpectrogram,
    AudioTensor,
    AudioToSpec,
    DbRangeNormalize,
    InstanceMinMax,
    SpecNormalize,
    StatsRecorder,
    UtteranceNormalize,
    WaveformNormalize,
)

N_FFT, HOP = 256, 128
SPEC = {"n_fft": N_FFT, "hop_length": HOP}

# float32: the IIR and the exp/log steps round at about 1e-6 relative (measured 3e-6); 1e-4 is the contract.
RTOL = 1e-4


def _spec(batch=3, channels=1, freq=16, time=20, seed=0, unit="dB"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, freq, time, generator=g) * 15 - 45
    return AudioSpectrogram(x, sr=16000, hop_length=200, n_fft=400, n_mels=None, f_max=8000.0, unit=unit)


def _plain(x):
    return x.as_subclass(torch.Tensor)


# ---------------------------------------------------------------------------------------------
# WaveformNormalize


@pytest.mark.parametrize("shape", [(1, 800), (2, 800), (4, 1, 800), (3, 2, 500)])
def test_waveform_normalize_equals_functional(shape):
    g = torch.Generator().manual_seed(1)
    x = AudioTensor(torch.randn(shape, generator=g) * 0.2 + 0.01, sr=16000)
    before = x.clone()
    out = WaveformNormalize()(x)
    assert isinstance(out, AudioTensor) and out.sr == 16000
    torch.testing.assert_close(_plain(out), SF.standardize_waveform(_plain(x)), rtol=0, atol=0)
    ref = _plain(x).double().numpy()
    ref = (ref - ref.mean(-1, keepdims=True)) / ref.std(-1, keepdims=True)
    np.testing.assert_allclose(_plain(out).numpy(), ref, rtol=0, atol=1e-5)
    assert torch.equal(x, before)


def test_waveform_normalize_padded_batch_equals_masked_functional():
    "On a padded batch the Transform is the functional with the batch's valid_mask (see test_waveform_standardization_independent_of_padding)."
    g = torch.Generator().manual_seed(2)
    x = AudioTensor(torch.randn(3, 2, 600, generator=g) * 0.3 + 0.05, sr=16000)
    x.lengths = torch.tensor([600, 250, 1])
    out = WaveformNormalize()(x)
    assert isinstance(out, AudioTensor) and out.sr == 16000 and torch.equal(out.lengths, x.lengths)
    mask = torch.arange(600) < x.lengths[:, None, None]  # (batch, 1, samples), built by hand
    torch.testing.assert_close(_plain(out), SF.standardize_waveform(_plain(x), mask=mask), rtol=0, atol=0)
    assert (_plain(out)[1, :, 250:] == 0).all() and (_plain(out)[2] == 0).all()  # one sample: silent


def test_waveform_normalize_silent_clip_and_decodes():
    x = AudioTensor(torch.zeros(2, 1, 400), sr=8000)
    tfm = WaveformNormalize()
    out = tfm(x)
    assert torch.equal(_plain(out), torch.zeros(2, 1, 400))
    assert tfm.decode(out) is out  # not invertible: decodes returns its input


def test_transforms_dispatch_on_their_types_only():
    wav = AudioTensor(torch.randn(1, 100) * 3, sr=16000)
    spec = _spec()
    assert WaveformNormalize()(spec) is spec  # a spectrogram is not a waveform
    for tfm in (SpecNormalize(torch.zeros(1), torch.ones(1) * 2), InstanceMinMax(), DbRangeNormalize()):
        assert tfm(wav) is wav


# ---------------------------------------------------------------------------------------------
# SpecNormalize


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_spec_normalize_from_stats_equals_functional_and_numpy(red_dims, seed):
    x = _spec(batch=4, channels=2, seed=seed)
    rec = StatsRecorder(red_dims).update(x)
    tfm = SpecNormalize.from_stats(rec)
    assert tfm.red_dims == red_dims
    assert torch.equal(tfm.mean, rec.mean) and torch.equal(tfm.std, rec.std)
    out = tfm(x)
    assert isinstance(out, AudioSpectrogram) and out.unit == "std" and out.sr == 16000
    torch.testing.assert_close(_plain(out), SF.normalize(_plain(x), rec.mean, rec.std), rtol=0, atol=0)
    xn = _plain(x).double().numpy()
    ref = (xn - xn.mean(axis=red_dims, keepdims=True)) / xn.std(axis=red_dims, keepdims=True)
    np.testing.assert_allclose(_plain(out).numpy(), ref, rtol=0, atol=1e-5)
    # normalized with its own statistics: zero mean and unit std over red_dims
    np.testing.assert_allclose(ref.mean(axis=red_dims), 0, atol=1e-12)
    assert x.unit == "dB"  # the input's metadata is not changed


@pytest.mark.parametrize("stats_shape", [(1, 1, 16, 1), (1, 1, 1, 1), (1,)])
def test_spec_normalize_decodes_inverts_encodes(stats_shape):
    g = torch.Generator().manual_seed(2)
    mean = torch.randn(stats_shape, generator=g) * 10 - 40
    std = torch.rand(stats_shape, generator=g) * 10 + 1
    tfm = SpecNormalize(mean, std)
    x = _spec()
    y = tfm(x)
    back = tfm.decode(y)
    assert isinstance(back, AudioSpectrogram) and back.unit == "dB"
    torch.testing.assert_close(_plain(back), _plain(x), rtol=0, atol=1e-4)


def test_spec_normalize_accepts_lists_and_floors_small_stds_with_a_warning():
    with pytest.warns(UserWarning, match="1 of 3 standard deviations are below min_std=0.001"):
        tfm = SpecNormalize([[[[0.0]], [[1.0]], [[2.0]]]], [[[[1.0]], [[0.0]], [[4.0]]]], min_std=1e-3)
    assert torch.equal(tfm.std.flatten(), torch.tensor([1.0, 1e-3, 4.0])) and tfm.mean.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpecNormalize(torch.zeros(1), torch.ones(1))  # no warning when nothing is floored


@pytest.mark.parametrize(
    "mean, std, pattern",
    [
        (torch.zeros(1, 1, 3, 1), torch.ones(1, 1, 4, 1), "same shape, got (1, 1, 3, 1) and (1, 1, 4, 1)"),
        (torch.tensor([float("nan")]), torch.ones(1), "finite"),
        (torch.zeros(1), torch.tensor([float("inf")]), "finite"),
        (torch.zeros(1), -torch.ones(1), "non-negative"),
    ],
)
def test_spec_normalize_bad_stats(mean, std, pattern):
    with pytest.raises(ValueError, match=re.escape(pattern)):
        SpecNormalize(mean, std)


def test_spec_normalize_shape_mismatch_names_both_shapes():
    tfm = SpecNormalize(torch.zeros(1, 1, 201, 1), torch.ones(1, 1, 201, 1))
    with pytest.raises(
        ValueError, match=re.escape("statistics of shape (1, 1, 201, 1) do not broadcast to spectrograms of shape (3, 1, 16, 20)")
    ):
        tfm(_spec())


def test_spec_normalize_declares_parameters_and_pickles():
    assert list(SpecNormalize.parameters) == ["mean", "std"]
    tfm = SpecNormalize(torch.full((1, 1, 16, 1), -40.0), torch.full((1, 1, 16, 1), 12.0), red_dims=(0, 1, 3))
    back = pickle.loads(pickle.dumps(tfm))
    assert torch.equal(back.mean, tfm.mean) and torch.equal(back.std, tfm.std) and back.red_dims == (0, 1, 3)
    x = _spec()
    torch.testing.assert_close(_plain(back(x)), _plain(tfm(x)), rtol=0, atol=0)


def _loader_with(tfm, n=6):
    items = [(_spec(batch=1, seed=i)[0],) for i in range(n)]
    return TfmdDL(items, bs=3, after_batch=[tfm])


def test_spec_normalize_stats_follow_the_dataloader_device():
    tfm = SpecNormalize(torch.full((1, 1, 16, 1), -40.0), torch.full((1, 1, 16, 1), 12.0))
    dl = _loader_with(tfm)
    # the CPU: batches are normalized on the loader's device with the declared statistics
    dl.to(torch.device("cpu"))
    assert tfm.mean.device.type == "cpu" and tfm.std.device.type == "cpu"
    (x,) = dl.one_batch()
    raw = torch.stack([_spec(batch=1, seed=i)[0] for i in range(3)])
    torch.testing.assert_close(_plain(x), (_plain(raw) + 40.0) / 12.0, rtol=0, atol=1e-6)
    # another device: fastai's device setter replaces both attributes with moved tensors
    # ("meta" tensors have a device but no storage, so this runs without a GPU)
    old_mean, old_std = tfm.mean, tfm.std
    dl.device = torch.device("meta")
    assert tfm.mean is not old_mean and tfm.std is not old_std
    assert tfm.mean.device.type == "meta" and tfm.std.device.type == "meta"
    assert tfm.mean.shape == (1, 1, 16, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_spec_normalize_stats_follow_the_dataloader_to_cuda():
    tfm = SpecNormalize(torch.full((1, 1, 16, 1), -40.0), torch.full((1, 1, 16, 1), 12.0))
    dl = _loader_with(tfm)
    dl.to("cuda")
    assert tfm.mean.is_cuda and tfm.std.is_cuda
    (x,) = dl.one_batch()
    assert x.is_cuda
    raw = torch.stack([_spec(batch=1, seed=i)[0] for i in range(3)])
    torch.testing.assert_close(_plain(x).cpu(), (_plain(raw) + 40.0) / 12.0, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# InstanceMinMax


@pytest.mark.parametrize("channels", [1, 2])
def test_instance_minmax_equals_functional(channels):
    x = _spec(batch=4, channels=channels)
    x[2] = -100.0  # a silent clip's spectrogram: constant
    tfm = InstanceMinMax()
    out = tfm(x)
    assert isinstance(out, AudioSpectrogram) and out.unit == "[0, 1]" and x.unit == "dB"
    torch.testing.assert_close(_plain(out), SF.instance_minmax(_plain(x)), rtol=0, atol=0)
    assert torch.equal(_plain(out[2]), torch.zeros_like(_plain(out[2])))
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert tfm.decode(out) is out


# ---------------------------------------------------------------------------------------------
# DbRangeNormalize


@pytest.mark.parametrize("min_level_db, ref_level_db", [(-100.0, 20.0), (-80.0, 0.0)])
def test_db_range_normalize_equals_formula_and_inverts(min_level_db, ref_level_db):
    x = _spec()
    unclipped = DbRangeNormalize(min_level_db, ref_level_db, clip=False)
    y = unclipped(x)
    ref = ((_plain(x).double().numpy() - ref_level_db) - min_level_db) / -min_level_db
    np.testing.assert_allclose(_plain(y).numpy(), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(_plain(y), SF.db_range(_plain(x), min_level_db, False, ref_level_db), rtol=0, atol=0)
    assert y.unit == "[0, 1]"
    back = unclipped.decode(y)
    assert back.unit == "dB"
    torch.testing.assert_close(_plain(back), _plain(x), rtol=0, atol=1e-4)
    clipped = DbRangeNormalize(min_level_db, ref_level_db)(x)
    np.testing.assert_allclose(_plain(clipped).numpy(), np.clip(ref, 0, 1), rtol=0, atol=1e-6)


def test_db_range_normalize_refuses_non_db_input_and_bad_level():
    with pytest.raises(ValueError, match="expects a spectrogram in dB, got unit 'std'"):
        DbRangeNormalize()(_spec(unit="std"))
    with pytest.raises(ValueError, match="min_level_db must be negative"):
        DbRangeNormalize(min_level_db=10.0)


# ---------------------------------------------------------------------------------------------
# orders: a Pipeline sorts waveform norm -> spectrogram -> spectrogram norm


def test_pipeline_orders_and_decodes_to_db():
    g = torch.Generator().manual_seed(5)
    wav = AudioTensor(torch.randn(2, 1, 4000, generator=g) * 0.1, sr=16000)
    to_spec = AudioToSpec(n_fft=256, hop_length=128, n_mels=32)
    norm = SpecNormalize(torch.tensor(-30.0).reshape(1, 1, 1, 1), torch.tensor(8.0).reshape(1, 1, 1, 1))
    pipe = Pipeline([norm, to_spec, WaveformNormalize()])  # given out of order on purpose
    assert [type(t) for t in pipe.fs] == [WaveformNormalize, AudioToSpec, SpecNormalize]
    out = pipe(wav)
    manual = (_plain(to_spec(AudioTensor(SF.standardize_waveform(_plain(wav)), sr=16000))) + 30.0) / 8.0
    torch.testing.assert_close(_plain(out), manual, rtol=0, atol=1e-5)
    decoded = pipe.decode(out)
    assert decoded.unit == "dB"
    torch.testing.assert_close(_plain(decoded), manual * 8.0 - 30.0, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# inplace=True on the transforms


def _transforms_inplace(inplace):
    mean, std = torch.full((1, 1, 16, 1), -40.0), torch.full((1, 1, 16, 1), 12.0)
    return [
        (
            WaveformNormalize(inplace=inplace),
            lambda: AudioTensor(torch.randn(3, 1, 800, generator=torch.Generator().manual_seed(3)) * 0.1, sr=16000),
        ),
        (SpecNormalize(mean, std, inplace=inplace), _spec),
        (InstanceMinMax(inplace=inplace), _spec),
        (DbRangeNormalize(inplace=inplace), _spec),
    ]


@pytest.mark.parametrize("i", range(4), ids=["WaveformNormalize", "SpecNormalize", "InstanceMinMax", "DbRangeNormalize"])
def test_transforms_inplace_give_the_same_batch_in_the_input(i):
    tfm, make = _transforms_inplace(True)[i]
    plain_tfm, _ = _transforms_inplace(False)[i]
    assert tfm.inplace and not plain_tfm.inplace  # the default never changes a tensor passed in
    x = make()
    expected = plain_tfm(make())
    out = tfm(x)
    assert type(out) is type(expected) and out.__dict__ == expected.__dict__
    assert torch.equal(_plain(out), _plain(expected)) and _plain(out).data_ptr() == _plain(x).data_ptr()
    # pickled (learn.export) with the flag; a transform pickled before the flag existed is out of place
    assert pickle.loads(pickle.dumps(tfm)).inplace
    old = pickle.loads(pickle.dumps(tfm))
    del old.inplace
    y = make()
    torch.testing.assert_close(_plain(old(y)), _plain(expected), rtol=0, atol=0)
    assert torch.equal(_plain(y), _plain(make()))


# ---------------------------------------------------------------------------------------------
# padded batches: each clip normalized as if alone


def test_waveform_standardization_independent_of_padding(clips):
    """Each clip of a padded batch equals the clip standardized alone in NumPy float64 (from the
    float32 samples the batch holds), to a bound on float32 rounding. A float32 sum is off by at most
    K u sum|x| (u = 2**-24) when each value meets at most K roundings on its way to the total; torch's
    CPU sum (SumKernel's cascade: 4 levels, each adding at most 16 partial sums in sequence for clips
    below ~16M samples, after the vector-lane and tail folds) gives K = 4 * 16 + 16 = 80. The mean's
    error shows in every value as K u mean|x| / std (atol); the std's (sum of squares, division,
    sqrt), the subtraction's and the division's scale with the value: (K + 4) u |z| (rtol). Measured
    errors are 1 ulp, about 2% of that bound; a std with ddof=1 (1/(2n) relative: 20x the tolerance or more) or
    any counted padding fails."""
    batch = WaveformNormalize()(_padded_batch(clips))
    u, k = 2.0**-24, 80
    for i, c in enumerate(clips):
        held = c.astype(np.float32).astype(np.float64)  # the samples the batch holds
        alone = (held - held.mean()) / held.std()
        atol = k * u * np.abs(held).mean() / held.std()
        np.testing.assert_allclose(batch[i, 0, : len(c)].numpy(), alone, rtol=(k + 4) * u, atol=atol)
        assert (batch[i, 0, len(c) :] == 0).all()  # padding becomes silence
    assert torch.equal(batch.lengths, torch.tensor([len(c) for c in clips]))


@pytest.mark.parametrize("norm", [SpecNormalize(torch.tensor(-30.0), torch.tensor(20.0)), InstanceMinMax(), DbRangeNormalize()])
def test_normalizations_set_padding_to_zero_and_use_valid_frames(clips, norm):
    spec = AudioToSpec(**SPEC)(WaveformNormalize()(_padded_batch(clips)))
    out = norm(spec.clone())
    for i in range(len(clips)):
        n = int(spec.lengths[i])
        assert (out[i, :, :, n:] == 0).all()
        alone = spec[i : i + 1, :, :, :n].clone()
        alone.lengths = None
        torch.testing.assert_close(
            out[i : i + 1, :, :, :n].as_subclass(torch.Tensor), norm(alone).as_subclass(torch.Tensor), rtol=1e-5, atol=1e-5
        )


def test_plain_tensor_refused_labels_pass():
    with pytest.raises(TypeError, match=r"AudioTensor\(x, sr="):
        AudioToSpec()(torch.randn(1, 4000))
    with pytest.raises(TypeError, match="AudioSpectrogram"):
        InstanceMinMax()(torch.randn(2, 1, 4, 5))
    y = TensorCategory([1, 0])
    assert AudioToSpec()(y) is y and WaveformNormalize()(y) is y


def test_db_range_reference_levels():
    db = torch.tensor([-100.0, -80.0, 0.0, 20.0])
    torch.testing.assert_close(SF.db_range(db), torch.tensor([0.0, 0.2, 1.0, 1.0]))  # ref 0: -100..0 dB
    out = DbRangeNormalize()(AudioSpectrogram(db.reshape(1, 1, 1, 4)))
    torch.testing.assert_close(out.flatten().as_subclass(torch.Tensor), torch.tensor([0.0, 0.0, 0.8, 1.0]))  # -80..+20 dB
    assert "ref_level_db': 20.0" in repr(DbRangeNormalize())


# ---------------------------------------------------------------------------------------------
# PCEN and UtteranceNormalize: thin wrappers of functional


def spec(x, unit="power", lengths=None, sr=16000, hop_length=200):
    s = AudioSpectrogram(torch.as_tensor(x, dtype=torch.float32), sr=sr, hop_length=hop_length, unit=unit)
    s.lengths = None if lengths is None else torch.tensor(lengths)
    return s


def test_pcen_transform_scales_to_int32_range_and_reads_time_settings():
    S = energies((2, 1, 16, 60), seed=5, low=-9, high=-2)  # energies of [-1, 1] audio
    x = spec(S, sr=8000, hop_length=80, lengths=[60, 33])
    out = PCEN()(x)
    assert out.unit == "pcen" and out.sr == 8000 and out.hop_length == 80 and out.lengths.tolist() == [60, 33]
    scaled = S * 2.0**62
    for i, n in enumerate([60, 33]):
        expected = librosa_pcen(scaled[i, ..., :n], sr=8000, hop_length=80)
        np.testing.assert_allclose(out[i, ..., :n].numpy(), expected, rtol=RTOL)
        assert (out[i, ..., n:] == 0).all()
    # the transform equals the function on the same scaled energies (thin wrapper)
    torch.testing.assert_close(
        PCEN(input_scale=1.0)(spec(S)).as_subclass(torch.Tensor), SF.pcen(torch.tensor(S, dtype=torch.float32))
    )


def test_pcen_transform_refuses_db_spectrograms():
    with pytest.raises(ValueError, match="to_db=False"):
        PCEN()(spec(np.zeros((1, 1, 4, 5)), unit="dB"))


# ---------------------------------------------------------------------------------------------
# per-utterance mean and variance normalization


def test_utterance_mvn_item_alone_and_transform():
    rng = np.random.default_rng(7)
    x = rng.normal(-30, 10, size=(3, 1, 8, 40))
    lengths = [40, 17, 29]
    out = UtteranceNormalize()(spec(x, unit="dB", lengths=lengths))
    assert out.unit == "std" and out.lengths.tolist() == lengths
    np.testing.assert_allclose(out.numpy(), numpy_utterance_mvn(x, lengths), rtol=0, atol=2e-5)
    for i, n in enumerate(lengths):
        alone = SF.utterance_mvn(torch.tensor(x[i : i + 1, ..., :n], dtype=torch.float32))
        torch.testing.assert_close(out[i : i + 1, ..., :n].as_subclass(torch.Tensor), alone, rtol=0, atol=1e-6)
