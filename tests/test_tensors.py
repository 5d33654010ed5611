"""Tests for fastspecnorm.audio.tensors: `AudioTensor.create`, metadata that survives clone, pickling and
DataLoader workers, `rewrap`, `valid_mask`, and showing (`show`, `show_batch`, `show_results`, `play`).

References: NumPy channel means, torchaudio.functional.resample, the figures' own axes and images (Agg).
"""

from __future__ import annotations

import os
import pickle

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchaudio
from fastai.data.core import Datasets, TfmdDL
from fasttransform import Transform

from fastspecnorm import AudioDataLoaders, AudioSpectrogram, AudioTensor, LoadAudio, ResizeSignal, audio_learner, valid_mask
from fastspecnorm.audio.tensors import rewrap, valid_mask_or_none

SPEC = {"n_fft": 256, "hop_length": 128}
SMALL = {"bs": 2, "spec": SPEC, "cache": False}

N_FFT, HOP = 256, 128


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _noise(seed, n, channels=None, amplitude=0.5):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    return rng.uniform(-amplitude, amplitude, size=shape)


def test_create_downmixes_stereo_to_mono_by_default(write_audio):
    data = _noise(2, 3000, 2).astype(np.float32)
    path = write_audio("st.wav", data, sr=16000, subtype="FLOAT")
    mono = AudioTensor.create(path)
    assert isinstance(mono, AudioTensor) and mono.sr == 16000 and mono.shape == (1, 3000)
    np.testing.assert_allclose(mono.numpy()[0], data.astype(np.float64).mean(axis=1), rtol=0, atol=1e-7)
    both = AudioTensor.create(path, mono=False)
    assert both.shape == (2, 3000) and both.nchannels == 2
    np.testing.assert_array_equal(both.numpy(), data.T)
    assert mono.duration == pytest.approx(3000 / 16000) and mono.nchannels == 1


def test_create_resamples_to_requested_rate(write_audio, sine):
    path = write_audio("s.wav", sine(440, 0.3, 44100), sr=44100, subtype="FLOAT")
    wav = AudioTensor.create(path, sr=16000)
    raw = torch.from_numpy(sine(440, 0.3, 44100).astype(np.float32))[None]
    expected = torchaudio.functional.resample(raw.double(), 44100, 16000)  # float32 kernel rounding: see test_audio_io.py
    assert wav.sr == 16000 and wav.shape == expected.shape and wav.dtype == torch.float32
    torch.testing.assert_close(wav.as_subclass(torch.Tensor).double(), expected, rtol=0, atol=2e-5)


# ---------------------------------------------------------------------------------------------
# tensor types: metadata survives


def _spec():
    return AudioSpectrogram(torch.randn(1, 64, 41), sr=16000, hop_length=400, n_fft=1024, n_mels=64, f_max=8000.0, unit="dB")


@pytest.mark.parametrize("make", [lambda: AudioTensor(torch.randn(1, 800), sr=8000), _spec])
@pytest.mark.parametrize(
    "op",
    [
        lambda t: t.clone(),
        lambda t: pickle.loads(pickle.dumps(t)),
        lambda t: t * 2.0 + 1.0,
        lambda t: -t,
        lambda t: t[..., :10],
        lambda t: t.unsqueeze(0),
        lambda t: t.to("cpu", torch.float64),
        lambda t: t.detach(),
        lambda t: torch.cat([t, t]),
        lambda t: t.new_zeros(t.shape),
    ],
    ids=["clone", "pickle", "arith", "neg", "index", "unsqueeze", "to", "detach", "cat", "new_zeros"],
)
def test_metadata_survives(make, op):
    t = make()
    meta = dict(t.__dict__)
    out = op(t)
    assert type(out) is type(t)
    assert out.__dict__ == meta
    assert t.__dict__ == meta  # the source's metadata is not changed either


def test_clone_copies_metadata_rather_than_sharing_it():
    t = _spec()
    c = t.clone()
    c.unit = "std"
    assert t.unit == "dB"


def test_rewrap_gives_a_plain_result_the_type_and_a_copy_of_the_metadata():
    t = _spec()
    plain = torch.ones(2, 3)
    out = rewrap(plain, t, unit="std")
    assert type(out) is AudioSpectrogram and out.data_ptr() == plain.data_ptr()  # no copy of the data
    assert out.__dict__ == {**t.__dict__, "unit": "std"}
    assert t.unit == "dB"  # the source keeps its own
    same = rewrap(t, t, unit="[0, 1]")  # a transform that worked in place hands back its input
    assert same is t and t.unit == "[0, 1]"


class _TagPid(Transform):
    "Records the process that loaded the item, to prove the item came from a worker."

    def encodes(self, x: AudioTensor) -> AudioTensor:
        x.loaded_by = os.getpid()
        return x


def test_metadata_survives_fastai_dataloader_workers(write_audio):
    paths = [write_audio(f"w{i}.wav", _noise(i, 8000 + 500 * i), sr=8000) for i in range(6)]
    dsets = Datasets(paths, tfms=[[LoadAudio(sample_rate=16000), ResizeSignal(1.0), _TagPid()]])
    dl = TfmdDL(dsets, bs=2, num_workers=2, shuffle=False)
    assert dl.fake_l.num_workers == 2
    batches = list(dl)
    assert len(batches) == 3
    for (x,) in batches:
        assert isinstance(x, AudioTensor) and x.sr == 16000 and x.shape == (2, 1, 16000)
        assert x.loaded_by != os.getpid()  # made in a worker process, metadata carried back
    first = AudioTensor.create(paths[0], sr=16000)
    torch.testing.assert_close(
        batches[0][0][0, :, :16000].as_subclass(torch.Tensor), first.as_subclass(torch.Tensor)[:, :16000], rtol=0, atol=0
    )


# ---------------------------------------------------------------------------------------------
# show()


def test_audio_tensor_show_plots_seconds():
    x = AudioTensor(torch.randn(2, 1600), sr=16000)
    ax = x.show(title="two channels")
    assert ax.get_xlabel() == "time (s)" and ax.get_title() == "two channels"
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_xdata()[-1], 1599 / 16000)


@pytest.mark.parametrize("n_mels", [None, 64])
def test_spectrogram_show_has_db_colorbar_and_hz_seconds_axes(n_mels):
    n_freq = n_mels or 201
    spec = AudioSpectrogram(
        torch.randn(1, n_freq, 41) * 10 - 50, sr=16000, hop_length=400, n_mels=n_mels, f_max=8000.0, unit="dB"
    )
    ax = spec.show()
    fig = ax.figure
    assert len(fig.axes) == 2  # the image and its colorbar
    cbar_ax = next(a for a in fig.axes if a is not ax)
    assert cbar_ax.get_ylabel() == "dB"
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel().startswith("frequency (Hz")
    x0, x1, y0, y1 = ax.images[0].get_extent()
    assert (x0, y0) == (0, 0) and x1 == pytest.approx(41 * 400 / 16000) and y1 == pytest.approx(8000.0)
    # batched input shows its first item; a given axis is reused
    _, ax2 = plt.subplots()
    assert AudioSpectrogram(torch.randn(3, 1, 8, 5), sr=8000, hop_length=80, unit="dB").show(ctx=ax2) is ax2


# ---------------------------------------------------------------------------------------------
# play / hear and show_results


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


# ---------------------------------------------------------------------------------------------
# variable-length batches: valid_mask, and showing each clip without its padding


# ---------------------------------------------------------------------------------------------
# Lengths and masks


def test_valid_mask_shapes_and_default():
    spec = AudioSpectrogram(torch.zeros(3, 1, 5, 7))
    assert valid_mask(spec).shape == (3, 1, 1, 7) and valid_mask(spec).all()
    spec.lengths = torch.tensor([7, 2, 0])
    expected = torch.tensor([[True] * 7, [True] * 2 + [False] * 5, [False] * 7])
    assert torch.equal(valid_mask(spec)[:, 0, 0], expected)
    wav = AudioTensor(torch.zeros(2, 1, 4), sr=16000)
    wav.lengths = torch.tensor([4, 1])
    assert valid_mask(wav).shape == (2, 1, 4) and valid_mask(wav).sum() == 5
    part = spec[:2]  # a slice keeps the batch's lengths: refused, not silently wrong
    with pytest.raises(ValueError, match="lengths"):
        valid_mask(part)
    # the transforms' form: the same mask on a padded batch, None when nothing is padded
    assert torch.equal(valid_mask_or_none(spec), valid_mask(spec))
    assert valid_mask_or_none(AudioSpectrogram(torch.zeros(3, 1, 5, 7))) is None
    with pytest.raises(ValueError, match="lengths"):
        valid_mask_or_none(part)


def test_show_and_top_losses(folder):
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation

    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC)
    learn = audio_learner(dls)
    dls.show_batch(max_n=3)
    learn.show_results(max_n=3)
    ClassificationInterpretation.from_learner(learn).plot_top_losses(2)
    assert plt.gcf().axes
    plt.close("all")
    player = AudioTensor(torch.zeros(1, 800), sr=8000).play()
    assert "audio" in player._repr_html_()


def test_show_batch_draws_each_clip_without_its_padding(folder):
    "Each panel spans its own clip's frames (the batch's `lengths`), not the longest clip's padding."
    import matplotlib.pyplot as plt

    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.5, seed=0, bs=4, spec=SPEC)
    xb, _ = b = dls.valid.one_batch()
    frames = xb.lengths.tolist()
    assert len(set(frames)) > 1  # clips of different lengths, so some are padded
    dls.valid.show_batch(b, max_n=4)
    axes = [ax for ax in plt.gcf().axes if ax.images]
    ends = [ax.images[0].get_extent()[1] for ax in axes]
    np.testing.assert_allclose(ends, [n * HOP / xb.sr for n in frames])  # seconds: frames x hop / rate
    for ax, n in zip(axes, frames, strict=True):
        assert ax.images[0].get_array().shape[-1] == n
    plt.close("all")
