"""Tests for fastspecnorm.audio.spectrogram.AudioToSpec against torchaudio's transforms, also on padded
batches (each clip's valid frames as torchaudio gives them for the clip alone).

Both sides run the same float32 STFT; the dB conversion `10 * log10(max(p, 1e-10))` of values of
order 100 dB has an ulp of ~8e-6, so atol 1e-4 dB leaves room for a different operation order.
Power values are compared with rtol 1e-5 (float32 STFT and |.|^2 rounding).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchaudio
from helpers import padded_batch as _padded_batch

from fastspecnorm import AudioSpectrogram, AudioTensor, AudioToSpec, WaveformNormalize, spec_shape
from fastspecnorm.audio.spectrogram import power_to_db

DB_ATOL = 1e-4

N_FFT, HOP = 256, 128
SPEC = {"n_fft": N_FFT, "hop_length": HOP}


def _clips(batch, seconds=5.0, sr=16000, seed=0, levels=None):
    "Noise plus a tone per clip, `(batch, 1, samples)`, each clip at its own level."
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sr)
    t = torch.arange(n) / sr
    levels = levels or [10.0 ** (-i) for i in range(batch)]
    rows = [
        lv * (0.3 * torch.sin(2 * torch.pi * (300 + 200 * i) * t) + 0.1 * torch.randn(n, generator=g))
        for i, lv in enumerate(levels)
    ]
    return torch.stack(rows)[:, None, :]


def _plain(x):
    return x.as_subclass(torch.Tensor)


# ---------------------------------------------------------------------------------------------
# defaults: torchaudio Spectrogram() + AmplitudeToDB(), [1, 201, 401]


def test_defaults_equal_torchaudio_and_give_reference_shape_for_one_clip():
    wav = _clips(1)[0]  # (1, 80000): 5 s at 16 kHz
    out = AudioToSpec()(AudioTensor(wav, sr=16000))
    assert isinstance(out, AudioSpectrogram) and out.shape == (1, 201, 401)
    expected = torchaudio.transforms.AmplitudeToDB()(torchaudio.transforms.Spectrogram()(wav))
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)
    assert spec_shape(80000) == (201, 401)


@pytest.mark.parametrize("batch", [1, 3])
def test_defaults_batched(batch):
    wav = _clips(batch, seed=batch)
    before = wav.clone()
    out = AudioToSpec()(AudioTensor(wav, sr=16000))
    assert out.shape == (batch, 1, 201, 401) and out.dtype == torch.float32
    expected = torchaudio.transforms.AmplitudeToDB()(torchaudio.transforms.Spectrogram()(wav))
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)
    assert torch.equal(wav, before)
    assert out.__dict__ == {
        "sr": 16000,
        "hop_length": 200,
        "n_fft": 400,
        "n_mels": None,
        "f_max": 8000.0,
        "unit": "dB",
        "lengths": None,
    }


@pytest.mark.parametrize("n_mels", [None, 64])
def test_batch_spanning_several_stft_pieces_equals_torchaudio(n_mels):
    "`spectrogram` hands torch.stft a few clips at a time; the pieces must join into the batch's spectrogram."
    from fastspecnorm.audio.spectrogram import STFT_PIECE_BYTES

    wav = _clips(24, levels=[1.0, 0.5, 0.1] * 8)  # 24 clips of 5 s at 16 kHz
    assert 24 * 201 * 401 * 8 > STFT_PIECE_BYTES  # their complex STFT needs more than one piece
    out = AudioToSpec(n_mels=n_mels)(AudioTensor(wav, sr=16000))
    spec = (
        torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=200, n_mels=n_mels)
        if n_mels
        else torchaudio.transforms.Spectrogram()
    )
    torch.testing.assert_close(_plain(out), torchaudio.transforms.AmplitudeToDB()(spec(wav)), rtol=0, atol=DB_ATOL)


def test_power_without_db_equals_torchaudio_spectrogram():
    wav = _clips(2, seconds=1.0)
    out = AudioToSpec(to_db=False)(AudioTensor(wav, sr=16000))
    torch.testing.assert_close(_plain(out), torchaudio.transforms.Spectrogram()(wav), rtol=1e-5, atol=1e-9)
    assert out.unit == "power"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 1024, "hop_length": 400, "n_mels": 64},
        {"n_fft": 512, "hop_length": 160, "n_mels": 40, "f_max": 4000.0, "f_min": 50.0},
        {"n_fft": 400, "hop_length": 200, "n_mels": 80},
    ],
)
def test_mel_variant_equals_torchaudio(kwargs):
    wav = _clips(2, seconds=1.0, seed=1)
    out = AudioToSpec(sample_rate=16000, **kwargs)(AudioTensor(wav, sr=16000))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, **kwargs)
    expected = torchaudio.transforms.AmplitudeToDB()(mel(wav))
    n_freq, n_frames = spec_shape(16000, kwargs["n_fft"], kwargs["hop_length"], kwargs["n_mels"])
    assert out.shape == (2, 1, n_freq, n_frames) == expected.shape
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)
    assert out.n_mels == kwargs["n_mels"] and out.f_max == kwargs.get("f_max", 8000.0)


def test_other_sample_rate_setting():
    wav = _clips(1, seconds=0.5, sr=8000)
    out = AudioToSpec(sample_rate=8000, n_mels=32, n_fft=256, hop_length=80)(AudioTensor(wav, sr=8000))
    expected = torchaudio.transforms.AmplitudeToDB()(
        torchaudio.transforms.MelSpectrogram(8000, n_fft=256, hop_length=80, n_mels=32)(wav)
    )
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)
    assert out.sr == 8000 and out.f_max == 4000.0


# ---------------------------------------------------------------------------------------------
# top_db is taken per item


@pytest.mark.parametrize("top_db", [30.0, 80.0])
@pytest.mark.parametrize("n_mels", [None, 64])
def test_top_db_is_per_item(top_db, n_mels):
    wav = _clips(3, seconds=1.0, levels=[1.0, 3e-5, 0.05])  # a loud clip, one 90 dB quieter and a medium one
    tfm = AudioToSpec(n_mels=n_mels, top_db=top_db, n_fft=512 if n_mels else 400, hop_length=256 if n_mels else 200)
    together = tfm(AudioTensor(wav, sr=16000))
    for i in range(3):
        alone = tfm(AudioTensor(wav[i : i + 1], sr=16000))
        torch.testing.assert_close(_plain(together[i : i + 1]), _plain(alone), rtol=0, atol=0)
        # the same as torchaudio's AmplitudeToDB(top_db) on that one item (batch of one)
        power = AudioToSpec(n_mels=n_mels, to_db=False, n_fft=tfm.n_fft, hop_length=tfm.hop_length)(
            AudioTensor(wav[i : i + 1], sr=16000)
        )
        expected = torchaudio.transforms.AmplitudeToDB(top_db=top_db)(_plain(power))
        torch.testing.assert_close(_plain(alone), expected, rtol=0, atol=DB_ATOL)
        item = _plain(together[i])
        assert float(item.max() - item.min()) <= top_db + 1e-4
    # a floor taken over the whole batch would flatten the quiet clip: ours does not
    quiet = _plain(together[1])
    loud_peak = float(_plain(together[0]).max())
    assert float(quiet.max()) < loud_peak - top_db
    assert float(quiet.max() - quiet.min()) > 1.0


# ---------------------------------------------------------------------------------------------
# errors, settings, devices


def test_wrong_sample_rate_raises():
    "A rate given explicitly is checked; the default (None) takes the batch's rate (issue 20)."
    with pytest.raises(ValueError, match=re.escape("sample_rate=16000 Hz but got audio at 44100 Hz")):
        AudioToSpec(sample_rate=16000)(AudioTensor(torch.randn(1, 1, 4410), sr=44100))
    assert AudioToSpec()(AudioTensor(torch.randn(1, 1, 4410), sr=44100)).sr == 44100


@pytest.mark.parametrize(
    "kwargs, pattern", [({"n_fft": 0}, "n_fft"), ({"hop_length": -1}, "hop_length"), ({"n_mels": 0}, "n_mels")]
)
def test_bad_settings_raise(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        AudioToSpec(**kwargs)


def test_settings_record_what_determines_the_output():
    s = AudioToSpec(n_fft=1024, hop_length=400, n_mels=64, sample_rate=16000).settings
    assert s == {
        "sample_rate": 16000,
        "n_fft": 1024,
        "win_length": None,
        "hop_length": 400,
        "n_mels": 64,
        "f_min": 0.0,
        "f_max": None,
        "to_db": True,
        "top_db": None,
    }
    assert AudioToSpec().settings["sample_rate"] is None  # the batch's rate


def test_half_precision_input_computes_in_float32():
    wav = _clips(2, seconds=0.5)
    out = AudioToSpec()(AudioTensor(wav.half(), sr=16000))
    assert out.dtype == torch.float32
    expected = torchaudio.transforms.AmplitudeToDB()(torchaudio.transforms.Spectrogram()(wav.half().float()))
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)


@pytest.mark.parametrize(
    "n_samples, n_fft, hop, n_mels, center, expected",
    [
        (80000, 400, 200, None, True, (201, 401)),
        (80000, 1024, 400, 64, True, (64, 201)),
        (16000, 400, 200, None, False, (201, 79)),
    ],
)
def test_spec_shape_by_hand(n_samples, n_fft, hop, n_mels, center, expected):
    assert spec_shape(n_samples, n_fft, hop, n_mels, center) == expected


def test_to_moves_the_window_and_filter_bank():
    from fastcore.foundation import L

    tfm = AudioToSpec(n_mels=32)
    assert tfm.to("meta") is tfm
    assert sorted(tfm.parameters) == ["mel_fb", "window"]
    assert all(getattr(tfm, name).device.type == "meta" for name in L(tfm.parameters))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_batch_device_cuda():
    wav = _clips(2, seconds=1.0)
    tfm = AudioToSpec(n_mels=64, n_fft=1024, hop_length=400)
    out = tfm(AudioTensor(wav.cuda(), sr=16000))
    assert out.device.type == "cuda"
    cpu = tfm.to("cpu")(AudioTensor(wav, sr=16000))
    np.testing.assert_allclose(_plain(out).cpu().numpy(), _plain(cpu).numpy(), rtol=0, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# framing variants against torchaudio


def _torchaudio_db(wav, n_fft=400, hop_length=200, n_mels=None, win_length=None, top_db=None, to_db=True):
    if n_mels:
        spec = torchaudio.transforms.MelSpectrogram(
            16000, n_fft=n_fft, win_length=win_length, hop_length=hop_length, n_mels=n_mels
        )(wav)
    else:
        spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, win_length=win_length, hop_length=hop_length)(wav)
    return torchaudio.transforms.AmplitudeToDB(top_db=top_db)(spec) if to_db else spec


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 401, "hop_length": 160},  # odd n_fft: one frame fewer than spec_shape's even-n_fft formula would say
        {"n_fft": 512, "hop_length": 128, "win_length": 300},  # a window shorter than n_fft, centred like torch.stft
        {"n_fft": 256, "hop_length": 300},  # hop longer than the frame
        {"n_fft": 400, "hop_length": 200, "n_mels": 40, "win_length": 256},
    ],
)
def test_framing_variants_equal_torchaudio(kwargs):
    wav = _clips(3, seconds=0.7, seed=4)
    out = AudioToSpec(**kwargs)(AudioTensor(wav, sr=16000))
    expected = _torchaudio_db(wav, **kwargs)
    assert out.shape == expected.shape
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)


@pytest.mark.parametrize("top_db", [None, 20.0, 80.0])
def test_power_to_db_equals_torchaudio_and_numpy_per_item(top_db):
    g = torch.Generator().manual_seed(7)
    power = torch.rand(3, 2, 5, 6, generator=g) ** 8 * torch.tensor([1.0, 1e-3, 0.0])[:, None, None, None]
    db = power_to_db(power, top_db)
    # (batch, channels, freq, time): torchaudio's AmplitudeToDB, whose top_db is per item too
    expected = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)(power)
    assert torch.equal(db, expected)
    # any other layout: the floor per item along the first dimension, in NumPy float64
    p64 = power[:, 0].double().numpy()  # (batch, freq, time)
    ref = 10 * np.log10(np.maximum(p64, 1e-10))
    if top_db is not None:
        ref = np.maximum(ref, ref.max(axis=(1, 2), keepdims=True) - top_db)
    np.testing.assert_allclose(power_to_db(power[:, 0], top_db).double().numpy(), ref, rtol=0, atol=1e-4)
    # inplace: the same values, written into the input as well
    copy = power.clone()
    assert torch.equal(power_to_db(copy, top_db, inplace=True), db) and torch.equal(copy, db)
    assert power_to_db(power[:0], top_db).shape == (0, 2, 5, 6)  # an empty batch has no peak, and no error


def test_multichannel_top_db_is_per_item_over_its_channels():
    wav = torch.cat(
        [_clips(3, seconds=0.5, seed=5), _clips(3, seconds=0.5, seed=6, levels=[1e-3, 1.0, 1e-2])], dim=1
    )  # (3, 2, n)
    tfm = AudioToSpec(top_db=40.0)
    out = _plain(tfm(AudioTensor(wav, sr=16000)))
    assert out.shape == (3, 2, 201, 41)
    power = torchaudio.transforms.Spectrogram()(wav)
    for i in range(3):  # torchaudio's top_db on a batch of one item covers both of its channels
        expected = torchaudio.transforms.AmplitudeToDB(top_db=40.0)(power[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=DB_ATOL)


def test_non_contiguous_input_and_input_left_alone():
    base = _clips(4, seconds=0.5, seed=9)
    wav = base.transpose(0, 1).contiguous().transpose(0, 1)[::2]  # strided view of 2 clips
    assert not wav.is_contiguous()
    before = wav.clone()
    out = AudioToSpec(to_db=False)(AudioTensor(wav, sr=16000))
    torch.testing.assert_close(_plain(out), _torchaudio_db(wav.contiguous(), to_db=False), rtol=1e-5, atol=1e-9)
    assert torch.equal(wav, before)


def test_too_short_for_reflect_padding_is_padded_with_lengths():
    """A batch of at most n_fft // 2 samples, which torch.stft refuses (reflect padding by 200 needs
    more than 200 samples), is padded and carries lengths; its one valid frame is the STFT of the
    clip continued by its own reflection (what torch would pad a long-enough clip with), from
    torchaudio on that signal built by hand in NumPy."""
    with pytest.raises(RuntimeError):
        torchaudio.transforms.Spectrogram()(torch.randn(2, 1, 150))
    wav = torch.randn(2, 1, 150)
    out = AudioToSpec()(AudioTensor(wav, sr=16000))
    assert out.shape == (2, 1, 201, 2) and out.lengths.tolist() == [1, 1]
    for i in range(2):
        x = wav[i, 0].numpy()
        y = np.concatenate([x, x[-2::-1][:51]])  # 201 samples: the clip, then its reflection
        ref = torchaudio.transforms.AmplitudeToDB()(torchaudio.transforms.Spectrogram()(torch.from_numpy(y)))[:, :1]
        torch.testing.assert_close(_plain(out)[i, 0, :, :1], ref, rtol=0, atol=DB_ATOL)
    one = AudioToSpec()(AudioTensor(wav[0], sr=16000))  # one clip (channels, samples)
    assert one.shape == (1, 201, 1) and one.lengths is None
    torch.testing.assert_close(_plain(one), _plain(out)[0, :, :, :1])


# ---------------------------------------------------------------------------------------------
# AudioToSpec.from_cfg: fastaudio's configurations


# every field fastaudio's AudioConfig.BasicMelSpectrogram holds (torchaudio's MelSpectrogram arguments, mel and to_db)
FULL_MEL_CFG = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, f_min=20.0, f_max=7600.0, n_mels=64,
                    mel=True, to_db=True, power=2.0, normalized=False, center=True, pad_mode="reflect", onesided=None,
                    norm=None, mel_scale="htk", pad=0, wkwargs=None, window_fn=torch.hann_window)  # fmt: skip


@pytest.mark.parametrize(
    "cfg",
    [
        FULL_MEL_CFG,
        dict(sample_rate=16000, n_fft=400, mel=False, to_db=True),  # AudioConfig.BasicSpectrogram
        dict(sample_rate=16000, n_mels=40, to_db=False),  # fastaudio's defaults: n_fft 1024, hop 512
    ],
)
def test_from_cfg_equals_torchaudio_of_the_same_configuration(cfg):
    "The reference is torchaudio itself, built from the same keyword arguments as fastaudio builds it."
    wav = torch.randn(2, 1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    kwargs = {k: v for k, v in cfg.items() if k not in ("mel", "to_db")}
    kwargs.setdefault("n_fft", 1024)  # fastaudio's default where a configuration has none
    mel = cfg.get("mel", "n_mels" in cfg)
    if mel:
        transform = torchaudio.transforms.MelSpectrogram(**kwargs)
    else:
        transform = torchaudio.transforms.Spectrogram(**{k: v for k, v in kwargs.items() if k != "sample_rate"})
    expected = transform(wav)
    if cfg.get("to_db", True):
        expected = torchaudio.transforms.AmplitudeToDB(stype="power")(expected)
    out = AudioToSpec.from_cfg(cfg)(AudioTensor(wav, sr=16000))
    assert out.shape == expected.shape
    if cfg.get("to_db", True):
        torch.testing.assert_close(_plain(out), expected, rtol=0, atol=DB_ATOL)
    else:
        torch.testing.assert_close(_plain(out), expected, rtol=1e-5, atol=1e-9)  # as the power test above


def test_from_cfg_of_a_dataclass_and_a_preset():
    import dataclasses

    from fastspecnorm import get_settings

    @dataclasses.dataclass
    class BasicMelSpectrogram:  # the shape of fastaudio's AudioConfig.BasicMelSpectrogram (made with make_dataclass)
        sample_rate: int = 16000
        n_fft: int = 400
        win_length: int | None = None
        hop_length: int | None = None
        n_mels: int = 128
        mel: bool = True
        to_db: bool = True

    spec = AudioToSpec.from_cfg(BasicMelSpectrogram(n_fft=1024, n_mels=64))
    assert (spec.n_fft, spec.hop_length, spec.n_mels, spec.sample_rate) == (1024, 512, 64, 16000)
    assert AudioToSpec.from_cfg(get_settings("blog")).settings == get_settings("blog").spectrogram().settings


@pytest.mark.parametrize(
    "cfg, error, message",
    [
        (dict(n_fft=512, normalized=True), ValueError, "AudioToSpec computes only normalized=False"),
        (dict(n_fft=512, power=1.0), ValueError, "AudioToSpec computes only power=2.0"),
        (dict(n_fft=512, window_fn=torch.hamming_window), ValueError, "window_fn=hann_window"),
        (dict(n_fft=512, n_mfcc=13), TypeError, "unknown setting(s) ['n_mfcc']"),
        (dict(mel=False, n_mels=64), ValueError, "mel=False (a linear spectrogram) with n_mels=64"),
        (dict(mel="True", to_db="False"), TypeError, "mel='True' must be True or False"),
        ("quick", TypeError, "takes an AudioSettings, a dict or a dataclass, got str"),
    ],
)
def test_from_cfg_refuses_what_it_would_not_compute(cfg, error, message):
    with pytest.raises(error, match=re.escape(message)):
        AudioToSpec.from_cfg(cfg)


# ---------------------------------------------------------------------------------------------
# the batch's sample rate


def test_audio_to_spec_takes_the_batch_rate(flat):
    "AudioBlock at 8 kHz + AudioToSpec without a rate: the mel bank follows the batch (torchaudio's at 8 kHz)."
    import torchaudio

    wav = AudioTensor(torch.randn(2, 1, 4000), sr=8000)
    spec = AudioToSpec(n_fft=256, hop_length=128, n_mels=20)(wav)
    ref = torchaudio.transforms.MelSpectrogram(8000, n_fft=256, hop_length=128, n_mels=20)(wav.as_subclass(torch.Tensor))
    torch.testing.assert_close(spec.as_subclass(torch.Tensor), torchaudio.transforms.AmplitudeToDB()(ref), rtol=0, atol=1e-3)
    assert spec.sr == 8000 and spec.f_max == 4000


# ---------------------------------------------------------------------------------------------
# padded batches: each clip's frames as if alone


def _alone_db(clip: torch.Tensor) -> torch.Tensor:
    "Reference: torchaudio Spectrogram + AmplitudeToDB of one clip (channels, samples)."
    spec = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=2.0)(clip)
    return torchaudio.transforms.AmplitudeToDB()(spec)


def test_padded_frames_equal_each_clip_alone(clips):
    """Every valid frame of a padded batch (the last ones included) equals torchaudio's spectrogram
    of the clip alone: the reflection torch.stft pads a lone clip with is rebuilt at each clip's end."""
    wav = WaveformNormalize()(_padded_batch(clips))
    spec = AudioToSpec(**SPEC)(wav)
    assert torch.equal(spec.lengths, torch.tensor([len(c) // HOP + 1 for c in clips]))
    for i, c in enumerate(clips):
        alone = _alone_db(wav[i, :, : len(c)].as_subclass(torch.Tensor))  # the same samples, alone
        n = int(spec.lengths[i])
        assert alone.shape[-1] == n
        # float32 FFTs of the same samples in another batch layout: ~1e-6 relative power, ~1e-5 dB
        torch.testing.assert_close(spec[i, :, :, :n].as_subclass(torch.Tensor), alone, rtol=0, atol=1e-4)
        assert (spec[i, :, :, n:] == -100).all()  # padded frames: the silence floor
