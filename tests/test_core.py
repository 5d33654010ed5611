"""Tests for fastspecnorm.core: loading, downmix, resampling, crop/pad, tensor types and show().

References: the data written with soundfile in the test (exact for float WAV, 1/32768 for 16-bit
PCM, which is what 16-bit storage can hold), NumPy channel means, and torchaudio.functional.resample.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import re
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchaudio
from fastai.data.core import Datasets, TfmdDL
from fasttransform import Transform

from fastspecnorm import (
    AudioLoadError,
    AudioSpectrogram,
    AudioTensor,
    DownmixMono,
    LoadAudio,
    Resample,
    ResizeSignal,
    crop_pad,
    downmix_mono,
    load_audio,
    resample,
)
from fastspecnorm.audio import quantize_waveform
from fastspecnorm.audio.tensors import rewrap

PCM16_ATOL = 1.0 / 32768  # one 16-bit quantization step


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _noise(seed, n, channels=None, amplitude=0.5):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    return rng.uniform(-amplitude, amplitude, size=shape)


# ---------------------------------------------------------------------------------------------
# loading


@pytest.mark.parametrize("channels", [None, 1, 2, 3])
def test_load_float_wav_exact(write_audio, channels):
    data = _noise(0, 1234, channels).astype(np.float32)
    path = write_audio("a.wav", data, sr=22050, subtype="FLOAT")
    wav, sr = load_audio(path)
    expected = data.reshape(1234, -1).T  # (channels, samples)
    assert sr == 22050 and wav.dtype == torch.float32 and tuple(wav.shape) == expected.shape
    assert wav.is_contiguous()
    np.testing.assert_array_equal(wav.numpy(), expected)


@pytest.mark.parametrize(
    "ext, kwargs, atol",
    [("wav", {"subtype": "PCM_16"}, PCM16_ATOL), ("flac", {}, PCM16_ATOL), ("wav", {"subtype": "PCM_24"}, 2.0**-23)],
)
def test_load_integer_formats(write_audio, ext, kwargs, atol):
    data = _noise(1, 4000, 2)
    path = write_audio(f"a.{ext}", data, sr=8000, **kwargs)
    wav, sr = load_audio(str(path))  # str paths work too
    assert sr == 8000 and wav.dtype == torch.float32 and wav.shape == (2, 4000)
    np.testing.assert_allclose(wav.numpy(), data.T, rtol=0, atol=atol)


def test_load_ogg_vorbis(write_audio, sine):
    # Vorbis is lossy: check layout and that the tone survives (correlation), not exact samples.
    data = np.stack([sine(440, 0.5, 16000), sine(880, 0.5, 16000, 0.3)], axis=1)
    path = write_audio("a.ogg", data, sr=16000, format="OGG", subtype="VORBIS")
    wav, sr = load_audio(path)
    assert sr == 16000 and wav.dtype == torch.float32 and wav.shape == (2, 8000)
    for ch in range(2):
        corr = np.corrcoef(wav[ch].numpy()[500:-500], data[500:-500, ch])[0, 1]
        assert corr > 0.99


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
    expected = torchaudio.functional.resample(raw.double(), 44100, 16000)  # float32 kernel rounding: see below
    assert wav.sr == 16000 and wav.shape == expected.shape and wav.dtype == torch.float32
    torch.testing.assert_close(wav.as_subclass(torch.Tensor).double(), expected, rtol=0, atol=2e-5)


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    path = tmp_path / "missing" / "clip.wav"
    for call in (lambda: load_audio(path), lambda: AudioTensor.create(path), lambda: LoadAudio()(path)):
        with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
            call()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_audio(tmp_path)  # a folder is not an audio file


@pytest.mark.parametrize("kind", ["text", "empty", "garbage", "zero_frames", "nan"])
def test_unreadable_file_raises_audio_load_error_naming_it(tmp_path, kind):
    import soundfile as sf

    path = tmp_path / f"{kind}.wav"
    if kind == "text":
        path.write_text("this is not audio\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    elif kind == "zero_frames":
        sf.write(str(path), np.zeros((0, 1)), 16000)
    elif kind == "nan":
        sf.write(str(path), np.array([0.0, np.nan, 0.5], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match=re.escape(str(path))) as info:
        AudioTensor.create(path)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------------
# downmix and resample


def test_downmix_mono_shapes_and_values():
    x = torch.randn(3, 2, 50, dtype=torch.float64)
    out = downmix_mono(x)
    assert out.shape == (3, 1, 50)
    np.testing.assert_allclose(out.numpy(), x.numpy().mean(axis=1, keepdims=True), rtol=0, atol=1e-15)
    one = torch.randn(1, 50)
    assert downmix_mono(one) is one  # already mono: untouched
    t = AudioTensor(torch.randn(2, 80), sr=8000)
    res = DownmixMono()(t)
    assert isinstance(res, AudioTensor) and res.sr == 8000 and res.shape == (1, 80)


@pytest.mark.parametrize("orig_sr, new_sr", [(44100, 16000), (8000, 16000), (22050, 16000), (16000, 8000), (48000, 44100)])
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-5), (torch.float64, 1e-12), (torch.float16, 5e-4)])
def test_resample_matches_torchaudio(orig_sr, new_sr, dtype, atol):
    """float32: the sinc kernel is itself rounded to float32, and torchaudio's own float32 result is
    up to 1.2e-5 from its float64 result on these signals (measured, 22.05 -> 16 kHz), so two float32
    computations of it may differ by about that: atol 2e-5 against the float64 reference. float16 is
    computed in float32 and rounded back: half an ulp at 0.5 is 2.4e-4, so atol 5e-4."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, orig_sr // 10, generator=g, dtype=dtype) - 0.5
    out = resample(x, orig_sr, new_sr)
    expected = torchaudio.functional.resample(x.double(), orig_sr, new_sr)
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=atol)


def test_resample_same_rate_and_errors():
    x = torch.randn(1, 100)
    assert resample(x, 16000, 16000) is x
    with pytest.raises(ValueError, match="orig_sr=0"):
        resample(x, 0, 16000)
    with pytest.raises(ValueError, match="new_sr=-1"):
        resample(x, 16000, -1)


def test_resample_transform_updates_sample_rate_and_keeps_metadata():
    x = AudioTensor(torch.randn(1, 4410), sr=44100, origin="test")
    out = Resample(16000)(x)
    assert isinstance(out, AudioTensor) and out.sr == 16000 and out.origin == "test"
    expected = torchaudio.functional.resample(x.as_subclass(torch.Tensor).double(), 44100, 16000)
    torch.testing.assert_close(out.as_subclass(torch.Tensor).double(), expected, rtol=0, atol=2e-5)
    assert x.sr == 44100  # the input's metadata is untouched


@pytest.mark.parametrize("sr", [1, 999, 384_001, 1_000_000])
def test_load_audio_refuses_implausible_sample_rates_by_name(write_audio, sr):
    "A damaged header claiming 1 Hz would be upsampled 16000-fold (a 979 MB clip): refused from the header."
    path = write_audio(f"rate_{sr}.wav", np.zeros(100), sr=sr, subtype="PCM_16")
    with pytest.raises(AudioLoadError, match=rf"rate_{sr}\.wav.* {sr} Hz.*1000-384000 Hz"):
        load_audio(path)
    with pytest.raises(AudioLoadError, match=rf"rate_{sr}\.wav"):
        LoadAudio(16000)(path)


@pytest.mark.parametrize("sr", [1000, 8000, 384_000])
def test_load_audio_accepts_the_plausible_range(write_audio, sr):
    path = write_audio(f"rate_{sr}.wav", np.full(100, 0.25), sr=sr, subtype="PCM_16")
    wav, got = load_audio(path)
    assert got == sr and wav.shape == (1, 100) and torch.all(wav == 0.25)


# A header whose channel count or bits per sample disagree with its block align (the bytes of one
# frame): libsndfile trusts the channels and bits and reads the samples at the wrong stride (noise).
DAMAGED_HEADERS = [
    ("seven_channels_over_mono_16bit", "PCM_16", {"channels": 7}, "7 channel(s) of PCM_16 samples, 7 x 2 = 14 bytes"),
    ("thirteen_bits_over_8bit", "PCM_U8", {"bits": 13}, "1 channel(s) of PCM_16 samples, 1 x 2 = 2 bytes"),
    ("twentyfour_bits_over_16bit", "PCM_16", {"bits": 24}, "1 channel(s) of PCM_24 samples, 1 x 3 = 3 bytes"),
]


@pytest.mark.parametrize("subtype, claim, expected", [c[1:] for c in DAMAGED_HEADERS], ids=[c[0] for c in DAMAGED_HEADERS])
def test_a_header_whose_frame_size_disagrees_is_refused_naming_the_file(wav_claiming, subtype, claim, expected):
    from fastspecnorm import check_audio_files

    path = wav_claiming("damaged.wav", np.linspace(-0.5, 0.5, 1600), subtype=subtype, **claim)
    written_block_align = 1 if subtype == "PCM_U8" else 2  # one mono sample of the data as written
    message = rf"damaged\.wav claims {re.escape(expected)} a frame, but a block align of {written_block_align} bytes"
    with pytest.raises(AudioLoadError, match=message):
        load_audio(path)
    with pytest.raises(AudioLoadError, match=r"damaged\.wav .*header is damaged"):
        LoadAudio(16000)(path)
    with pytest.raises(ValueError, match=r"damaged\.wav: the header claims .*block align") as info:  # checked before training
        check_audio_files([path])
    assert len(str(info.value).splitlines()) == 1  # one bad file: one line


def test_headers_that_agree_with_their_frames_are_read(wav_claiming, write_audio):
    "13 valid bits in 16-bit samples (the WAV rule for odd widths) decode as written; a real 7-channel file is read whole."
    pcm = np.arange(-800, 800, dtype=np.int16) * 8  # multiples of 8: what 13 valid bits in 16 hold
    path = wav_claiming("thirteen.wav", pcm, subtype="PCM_16", bits=13)
    wav, sr = load_audio(path)
    assert sr == 16000 and torch.equal(wav, torch.from_numpy(pcm / 32768.0).float()[None])
    seven = np.random.default_rng(0).integers(-3000, 3000, size=(400, 7)).astype(np.int16)
    wav, _ = load_audio(write_audio("seven.wav", seven, subtype="PCM_16"))
    assert torch.equal(wav, torch.from_numpy(seven.T / 32768.0).float())


def test_resample_odd_rate_matches_the_sampled_sine_within_the_rate_rounding():
    """44101 Hz shares no factor with 16000 Hz: torchaudio's exact kernel would hold 706 million
    values (2.6 GiB). `resample` treats the clip as 44100 Hz instead, which scales its frequencies by
    eps = 44100/44101 - 1 = -22.7 ppm. Reference: the sine evaluated exactly at the output times.
    Tolerance: the phase drift 2*pi*f*t*|eps| times the amplitude at the last compared sample, plus
    the error of the same resampler at an exact rate pair (44100 -> 16000, measured here)."""
    freq, amplitude, seconds = 440.0, 0.5, 0.2

    def sine(sr, n):
        return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / sr)

    n = int(seconds * 44101)
    with pytest.warns(UserWarning, match=r"44101 Hz -> 16000 Hz.*as if it were at 44100 Hz.*-23 ppm"):
        out = resample(torch.from_numpy(sine(44101, n)).float()[None], 44101, 16000)
    assert out.shape == (1, math.ceil(n * 16000 / 44101))  # the exact rate's length
    inner = slice(100, out.shape[-1] - 100)  # away from the zero-padded edges
    err = np.abs(out[0].double().numpy() - sine(16000, out.shape[-1]))[inner].max()
    exact = resample(torch.from_numpy(sine(44100, n)).float()[None], 44100, 16000)
    baseline = np.abs(exact[0].double().numpy() - sine(16000, exact.shape[-1]))[inner].max()
    drift = 2 * np.pi * freq * (out.shape[-1] - 100) / 16000 * (1 / 44101) * amplitude
    assert baseline < 1e-3 and err <= baseline + drift
    assert err > baseline  # the drift is real: the bound is not vacuous


@pytest.mark.process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux")
def test_resample_odd_rate_memory_stays_small():
    "Peak memory of 44101 -> 16000 Hz in a fresh process: under 100 MiB more than before (2.6 GiB unbounded)."
    code = """
import resource, warnings, torch
from fastspecnorm.audio.io import resample
x = torch.randn(1, 44101)
resample(x, 44100, 16000)  # loads torchaudio and its kernel code first
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    y = resample(x, 44101, 16000)
print(y.shape[-1], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    samples, grown_mib = done.stdout.split()
    assert int(samples) == 16000 and float(grown_mib) < 100


def test_resample_refuses_a_rate_pair_no_rounding_helps():
    with pytest.raises(ValueError, match=r"16000 Hz -> 44101 Hz.*choose a target rate"):
        resample(torch.zeros(1, 1600), 16000, 44101)


def test_quantize_auto_needs_the_source(write_audio):
    x = torch.tensor([[0.5, 1.25]])
    with pytest.raises(ValueError, match="auto"):
        quantize_waveform(x, "auto")
    path = write_audio("f.wav", np.zeros(10), subtype="FLOAT")
    assert torch.equal(quantize_waveform(x, "auto", source=path), x)  # float source: kept as is
    path16 = write_audio("i.wav", np.zeros(10), subtype="PCM_16")
    assert torch.equal(quantize_waveform(x, "auto", source=path16), x)  # 1.25 does not fit int16: float32
    assert torch.equal(quantize_waveform(x[:, :1] + 1e-6, "auto", source=path16), torch.tensor([[0.5]]))


# ---------------------------------------------------------------------------------------------
# crop / pad and ResizeSignal


def test_crop_pad_by_hand():
    x = torch.arange(1.0, 6.0)[None]  # [[1, 2, 3, 4, 5]]
    assert crop_pad(x, 3).tolist() == [[1, 2, 3]]
    assert crop_pad(x, 3, start=2).tolist() == [[3, 4, 5]]
    assert crop_pad(x, 7).tolist() == [[1, 2, 3, 4, 5, 0, 0]]
    assert crop_pad(x, 12, pad_mode="repeat").tolist() == [[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]]
    assert crop_pad(x, 5).tolist() == [[1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="pad_mode"):
        crop_pad(x, 9, pad_mode="reflect")


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


def test_load_audio_transform_keeps_or_sets_rate(write_audio):
    path = write_audio("x.wav", _noise(3, 2205), sr=22050)
    assert LoadAudio(sample_rate=None)(path).sr == 22050
    out = LoadAudio(sample_rate=16000)(path)
    assert isinstance(out, AudioTensor) and out.sr == 16000 and out.shape == (1, 1600)


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
