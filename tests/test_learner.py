"""Tests for fastspecnorm.learner: `audio_learner` / `esc50_learner` (the default xResNet18, fastai
architectures, `input_bn`'s `FreqBatchNorm`, `max_duration`), and `learn.predict` on any input giving
what training gives, also after export.
References: fastai's `xresnet18(c_in=1, n_out=c)`, nn.BatchNorm2d, NumPy, soundfile.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from fastai.vision.models.xresnet import xresnet18
from helpers import write_tone as _write

import fastspecnorm
from fastspecnorm import (
    AudioDataLoaders,
    AudioSpectrogram,
    AudioTensor,
    FreqBatchNorm,
    SpecNormalize,
    StatsCallback,
    audio_learner,
    esc50_dataloaders,
)

SPEC = {"n_fft": 256, "hop_length": 128}
SMALL = {"bs": 2, "spec": SPEC, "cache": False}

N_FFT, HOP = 256, 128

LEARNERS = [name for name in ("esc50_learner", "audio_learner") if hasattr(fastspecnorm, name)]


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


# ---------------------------------------------------------------------------------------------
# input_bn, prediction on any file and the export round trip


def test_freq_batchnorm_masked_equals_batchnorm_on_valid_frames():
    torch.manual_seed(0)
    x = AudioSpectrogram(torch.randn(3, 1, 4, 10) * 5 + 2)
    x.lengths = torch.tensor([10, 6, 3])
    layer = FreqBatchNorm(4).train()
    out = layer(x)
    # reference: the valid frames of all items, per bin, population mean/var (BatchNorm's training rule)
    valid = np.concatenate([x[i, 0, :, : int(n)].numpy() for i, n in enumerate(x.lengths)], axis=1).astype(np.float64)
    mean, std = valid.mean(1, keepdims=True), np.sqrt(valid.var(1, keepdims=True) + 1e-5)
    for i, n in enumerate(x.lengths.tolist()):
        np.testing.assert_allclose(out[i, 0, :, :n].detach().numpy(), (x[i, 0, :, :n].numpy() - mean) / std, atol=1e-5)
        assert (out[i, :, :, n:] == 0).all()
    plain = torch.randn(2, 1, 4, 5)
    bn = torch.nn.BatchNorm2d(4).train()
    torch.testing.assert_close(FreqBatchNorm(4).train()(plain), bn(plain.transpose(1, 2)).transpose(1, 2))


def test_predict_any_input_and_export_round_trip(folder, tmp_path):
    from fastai.learner import load_learner

    # cache=False: a file and the same audio in memory then take the same (float32) path
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, duration=0.3, cache=False)
    learn = audio_learner(dls, cbs=StatsCallback(red_dims=(0, 1, 3)), input_bn=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit(1)
    # a file longer than the training duration, at another rate, in stereo: used whole, never cropped
    long = tmp_path / "long.wav"
    sr, n = 44100, 44100 * 2
    sf.write(long, np.stack([np.sin(np.arange(n) * 0.06), np.cos(np.arange(n) * 0.06)], 1) * 0.3, sr)
    xb = dls.test_dl([long]).one_batch()[0]
    assert xb.shape[-1] == 32000 // HOP + 1  # the whole 2 s at 16 kHz, not 0.3 s
    label, idx, probs = learn.predict(long)
    assert label in dls.vocab and probs.shape == (2,)
    wav, file_sr = sf.read(long, dtype="float32")
    _, _, probs_tensor = learn.predict(AudioTensor(torch.from_numpy(wav.T.copy()), sr=file_sr))
    torch.testing.assert_close(probs_tensor, probs, atol=1e-4, rtol=0)  # the same audio, decoded vs in memory
    _, _, probs_np = learn.predict(np.random.default_rng(0).uniform(-0.3, 0.3, 5000).astype(np.float32))
    assert probs_np.shape == (2,)
    learn.export(tmp_path / "export.pkl")
    loaded = load_learner(tmp_path / "export.pkl")
    _, _, probs_loaded = loaded.predict(long)
    torch.testing.assert_close(probs_loaded, probs, atol=1e-6, rtol=0)
    norms = [t for t in loaded.dls.valid.after_batch.fs if isinstance(t, SpecNormalize)]
    assert len(norms) == 1 and norms[0].mean.shape == (1, 1, N_FFT // 2 + 1, 1)


def test_predict_refuses_a_clip_longer_than_max_duration_before_decoding_it(folder, tmp_path, monkeypatch):
    "An hour of audio took 3.2 GB in one forward pass: predict refuses clips over the learner's max_duration, by their length."
    from fastai.learner import load_learner

    import fastspecnorm.audio.tensors as tensors
    from fastspecnorm import AudioLearner

    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, cache=False)
    learn = audio_learner(dls)
    assert isinstance(learn, AudioLearner) and learn.max_duration == 600.0  # the loaders' own bound on clips
    long = tmp_path / "ten_minutes_and_a_second.wav"
    sf.write(long, np.zeros(601 * 1000, dtype=np.int16), 1000)  # 601 s in its header, 1.2 MB on disk
    with monkeypatch.context() as patch:  # refused from the header: no sample is decoded
        patch.setattr(tensors, "load_audio_with_subtype", lambda *a: pytest.fail("the long clip was decoded"))
        with pytest.raises(ValueError, match=r"ten_minutes_and_a_second\.wav lasts 601\.0 s, longer than this learner's "
                           r"max_duration=600 s.*learn\.max_duration = None"):  # fmt: skip
            learn.predict(long)

    learn = audio_learner(dls, max_duration=0.5)
    rate = dls.sample_rate  # NumPy arrays are taken at the loaders' rate
    for item, seconds in [
        (np.zeros(rate, dtype=np.float32), 1.0),  # (samples,)
        (np.zeros((2, rate // 10 * 6), dtype=np.float32), 0.6),  # (channels, samples)
        (np.zeros((rate // 10 * 6, 2), dtype=np.float32), 0.6),  # (samples, channels)
        (AudioTensor(torch.zeros(1, 4400), sr=8000), 0.55),  # at its own rate, not the loaders'
    ]:
        with pytest.raises(ValueError, match=rf"the clip lasts {seconds:.1f} s, longer than this learner's max_duration=0\.5 s"):
            learn.predict(item)
    label, _, probs = learn.predict(np.zeros(rate // 2, dtype=np.float32))  # exactly the limit: predicted
    assert label in dls.vocab and probs.shape == (2,)

    learn.export(tmp_path / "export.pkl")
    loaded = load_learner(tmp_path / "export.pkl")
    assert isinstance(loaded, AudioLearner) and loaded.max_duration == 0.5  # the bound travels with the learner
    with pytest.raises(ValueError, match="longer than this learner's max_duration"):
        loaded.predict(np.zeros(rate, dtype=np.float32))
    loaded.max_duration = None  # no bound: the whole clip is predicted
    assert loaded.predict(np.zeros(rate, dtype=np.float32))[2].shape == (2,)
    for bad in (0, -1.0, float("nan"), True, "600"):
        with pytest.raises(ValueError, match="max_duration must be positive seconds or None"):
            audio_learner(dls, max_duration=bad)


# ---------------------------------------------------------------------------------------------
# the default architecture


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
