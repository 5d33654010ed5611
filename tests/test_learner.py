"""Tests for fastspecnorm.learner: `audio_learner` (fastai architectures, `input_bn`'s `FreqBatchNorm`,
`max_duration`), and `learn.predict` on any input giving what training gives, also after export.
References: fastai's `xresnet18(c_in=1, n_out=c)`, nn.BatchNorm2d, NumPy, soundfile.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from fastspecnorm import AudioDataLoaders, AudioTensor, audio_learner

SPEC = {"n_fft": 256, "hop_length": 128}
SMALL = {"bs": 2, "spec": SPEC, "cache": False}


def _write(path, sr=8000, n=1600, f0=400.0, seed=0, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * np.random.default_rng(seed).standard_normal(n)
    sf.write(path, x, sr, subtype=subtype)
    return path


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
