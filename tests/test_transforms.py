"""Tests for fastspecnorm.audio.transforms: `LoadAudio`, `Resample`, `ResizeSignal` (random crops on the
training split only), `array_layout` and the padding loader's `lengths`.

References: torchaudio.functional.resample, the generated ramps and clips themselves.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torchaudio
from fastai.data.core import Datasets

from fastspecnorm import AudioDataLoaders, AudioTensor, LoadAudio, Resample, ResizeSignal
from fastspecnorm.audio.transforms import array_layout
from fastspecnorm.presets import MAX_DURATION

N_FFT, HOP = 256, 128
SPEC = {"n_fft": N_FFT, "hop_length": HOP}


def _noise(seed, n, channels=None, amplitude=0.5):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    return rng.uniform(-amplitude, amplitude, size=shape)


def test_resample_transform_updates_sample_rate_and_keeps_metadata():
    x = AudioTensor(torch.randn(1, 4410), sr=44100, origin="test")
    out = Resample(16000)(x)
    assert isinstance(out, AudioTensor) and out.sr == 16000 and out.origin == "test"
    expected = torchaudio.functional.resample(x.as_subclass(torch.Tensor).double(), 44100, 16000)
    torch.testing.assert_close(out.as_subclass(torch.Tensor).double(), expected, rtol=0, atol=2e-5)
    assert x.sr == 44100  # the input's metadata is untouched


def _ramp(n, sr=1000):
    return AudioTensor(torch.arange(float(n))[None], sr=sr)


def test_resize_signal_random_crop_on_training_only():
    x = _ramp(3000)  # 3 s at 1 kHz, cropped to 1 s: 2001 possible starts
    tfm = ResizeSignal(1.0)
    random.seed(0)
    train_starts = set()
    for _ in range(20):
        out = tfm(x, split_idx=0)
        start = int(out[0, 0])
        assert isinstance(out, AudioTensor) and out.sr == 1000 and out.shape == (1, 1000)
        assert torch.equal(out.as_subclass(torch.Tensor), torch.arange(float(start), start + 1000.0)[None])  # a window of x
        train_starts.add(start)
    assert len(train_starts) > 10
    for split_idx in (1, None):
        starts = {int(tfm(x, split_idx=split_idx)[0, 0]) for _ in range(10)}
        assert starts == {0}
    center = ResizeSignal(1.0, valid_crop="center")
    assert {int(center(x, split_idx=1)[0, 0]) for _ in range(5)} == {1000}


@pytest.mark.parametrize("split_idx", [0, 1])
def test_resize_signal_pads_short_clips(split_idx):
    out = ResizeSignal(0.5)(_ramp(300), split_idx=split_idx)
    assert out.shape == (1, 500) and torch.equal(out[0, 300:].as_subclass(torch.Tensor), torch.zeros(200))
    rep = ResizeSignal(0.5, pad_mode="repeat")(_ramp(300), split_idx=split_idx)
    assert rep[0, 300:].tolist() == list(range(200))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"duration": 0}, "duration"),
        ({"duration": 1, "valid_crop": "end"}, "valid_crop"),
        ({"duration": 1, "pad_mode": "x"}, "pad_mode"),
    ],
)
def test_resize_signal_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ResizeSignal(**kwargs)


def test_resize_signal_refuses_milliseconds():
    "fastaudio's `ResizeSignal(5000)` (ms) would pad every clip to 5000 s: refused, naming the cap and the fix."
    with pytest.raises(ValueError) as caught:
        ResizeSignal(5000)
    message = str(caught.value)
    assert "\n" not in message
    assert "5000" in message and f"{MAX_DURATION:g}" in message
    assert "milliseconds" in message and "pass 5.0" in message
    assert ResizeSignal(MAX_DURATION).duration == MAX_DURATION  # the cap itself is allowed


def test_resize_signal_in_fastai_datasets_train_random_valid_fixed(write_audio):
    data = ((np.arange(24000) % 1000) / 1000.0 + np.repeat(np.arange(24), 1000) / 100).astype(np.float32)
    paths = [write_audio(f"{i}.wav", data, sr=8000, subtype="FLOAT") for i in range(2)]  # 3 s clips
    dsets = Datasets(paths, tfms=[[LoadAudio(sample_rate=None), ResizeSignal(1.0)]], splits=[[0], [1]])
    random.seed(1)
    train = [dsets.train[0][0] for _ in range(8)]
    valid = [dsets.valid[0][0] for _ in range(8)]
    assert all(t.shape == (1, 8000) and t.sr == 8000 for t in train + valid)
    assert len({float(t[0, 0]) for t in train}) > 1  # random crops on the training split
    assert all(torch.equal(v, valid[0]) for v in valid)  # deterministic on validation
    np.testing.assert_array_equal(valid[0].numpy()[0], data[:8000])  # the start of the clip, exactly


def test_load_audio_transform_keeps_or_sets_rate(write_audio):
    path = write_audio("x.wav", _noise(3, 2205), sr=22050)
    assert LoadAudio(sample_rate=None)(path).sr == 22050
    out = LoadAudio(sample_rate=16000)(path)
    assert isinstance(out, AudioTensor) and out.sr == 16000 and out.shape == (1, 1600)


# ---------------------------------------------------------------------------------------------
# array layouts of what predict takes


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


# ---------------------------------------------------------------------------------------------
# the padding loader's lengths


def test_lengths_survive_worker_processes(folder):
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, cache=False, num_workers=1)
    lengths = [xb.lengths for xb, _ in dls.valid]
    assert all(n is None or (n.dtype == torch.long and n.shape == (3,)) for n in lengths) and any(n is not None for n in lengths)
