"""Tests for fastspecnorm.audio.io: loading (soundfile), damaged headers, downmix, resampling, crop/pad, int16 rounding.

(`fastspecnorm._io`, the crash-safe writes, is tested in test_io.py.)

References: the data written with soundfile in the test (exact for float WAV, 1/32768 for 16-bit
PCM, which is what 16-bit storage can hold), NumPy channel means, and torchaudio.functional.resample.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from fastspecnorm import (
    AudioDataLoaders,
    AudioFilesError,
    AudioLoadError,
    AudioTensor,
    DownmixMono,
    LoadAudio,
    check_audio_files,
    crop_pad,
    downmix_mono,
    get_audio_files,
    load_audio,
    resample,
)
from fastspecnorm.audio import quantize_waveform
from fastspecnorm.audio.io import audio_extensions

PCM16_ATOL = 1.0 / 32768  # one 16-bit quantization step

# A header whose channel count or bits per sample disagree with its block align (the bytes of one
# frame): libsndfile trusts the channels and bits and reads the samples at the wrong stride (noise).
DAMAGED_HEADERS = [
    ("seven_channels_over_mono_16bit", "PCM_16", {"channels": 7}, "7 channel(s) of PCM_16 samples, 7 x 2 = 14 bytes"),
    ("thirteen_bits_over_8bit", "PCM_U8", {"bits": 13}, "1 channel(s) of PCM_16 samples, 1 x 2 = 2 bytes"),
    ("twentyfour_bits_over_16bit", "PCM_16", {"bits": 24}, "1 channel(s) of PCM_24 samples, 1 x 3 = 3 bytes"),
]


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
# crop / pad


def test_crop_pad_by_hand():
    x = torch.arange(1.0, 6.0)[None]  # [[1, 2, 3, 4, 5]]
    assert crop_pad(x, 3).tolist() == [[1, 2, 3]]
    assert crop_pad(x, 3, start=2).tolist() == [[3, 4, 5]]
    assert crop_pad(x, 7).tolist() == [[1, 2, 3, 4, 5, 0, 0]]
    assert crop_pad(x, 12, pad_mode="repeat").tolist() == [[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]]
    assert crop_pad(x, 5).tolist() == [[1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="pad_mode"):
        crop_pad(x, 9, pad_mode="reflect")


# ---------------------------------------------------------------------------------------------
# one list of audio extensions, from soundfile


def test_one_extension_list_from_soundfile(tmp_path):
    formats = sf.available_formats()
    exts = audio_extensions()
    assert (".mp3" in exts) == ("MP3" in formats) and ".wav" in exts and ".flac" in exts
    (tmp_path / "a").mkdir()
    for ext in (".wav", ".FLAC", ".aiff", ".txt"):
        (tmp_path / "a" / f"x{ext}").write_bytes(b"")
    found = {p.suffix for p in get_audio_files(tmp_path)}
    assert found == {".wav", ".FLAC", ".aiff"}
    if "MP3" in formats:
        (tmp_path / "a" / "y.mp3").write_bytes(b"")
        assert ".mp3" in {p.suffix for p in get_audio_files(tmp_path)}


# ---------------------------------------------------------------------------------------------
# formats soundfile cannot read, named where they are met


def test_m4a_files_are_named_as_a_format_soundfile_cannot_read(tmp_path, write_audio):
    "AAC in MP4 (.m4a), as phones record it: named with the way out wherever it is met, not 'not audio' or 'no layout'."
    from fastspecnorm.datasets.sources import detect_dataset

    for label in ("dog", "cat"):
        (tmp_path / "phone" / label).mkdir(parents=True)
        (tmp_path / "phone" / label / "take1.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(ValueError, match=r"no known layout .*2 \.m4a file\(s\): \.m4a \(AAC or ALAC in MP4\) is not a format "
                       "soundfile reads: convert it first, e.g. ffmpeg -i take1.m4a take1.flac"):  # fmt: skip
        detect_dataset(tmp_path / "phone")
    with pytest.raises(FileNotFoundError, match=r"no audio files .* it holds 2 \.m4a file\(s\)"):
        AudioDataLoaders.from_folder(tmp_path / "phone", bs=2)
    write_audio("mixed/dog/ok.wav", np.zeros(1600, dtype="float32"))
    (tmp_path / "mixed" / "dog" / "take1.m4a").write_bytes(bytes(300))
    with pytest.raises(AudioFilesError, match=r"take1\.m4a: not a readable audio file: \.m4a \(AAC or ALAC in MP4\) is not"):
        check_audio_files([tmp_path / "mixed" / "dog" / "ok.wav", tmp_path / "mixed" / "dog" / "take1.m4a"])
