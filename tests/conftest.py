"""Shared fixtures: the fixtures that more than one test file takes.

- generated audio files: `write_audio`, `sine`, `wav_claiming`;
- a tiny synthetic ESC-50 folder, `tiny_esc50`, and the reference spectrograms of its WAV files,
  `refs` (NumPy float64 and torchaudio, not the package; test_norms.py, test_stats.py);
- folders of clips: `flat` (2 labels x 6 clips), `folder` (mixed rates, formats, channels and
  lengths), and `clips` (arrays of different lengths, for padded batches);
- for the experiment's tests: `esc` (a synthetic ESC-50 folder), `own` (clips of 3 labels by 4
  speakers, as a folder and a CSV) and `fake_training` (training replaced by a deterministic fake).

Fixtures that one file takes stay in that file. Tests build their own data (no network, no GPU).
Plots use the non-interactive Agg backend.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Spinning OpenMP threads collapse when the 2-core CI machine is oversubscribed (DataLoader
# workers, the notebook kernel, CLI subprocesses): training steps measured 3x slower. Waiting
# passively avoids it; set before torch loads OpenMP, and inherited by subprocesses.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The decoded-audio cache is on by default; tests must never write into the user's cache folder.
os.environ.setdefault("FASTSPECNORM_CACHE", tempfile.mkdtemp(prefix="fastspecnorm-test-cache-"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402
from helpers import write_tone as _write

from fastspecnorm import esc50_dataloaders  # noqa: E402
from fastspecnorm.datasets.synthetic import make_synthetic_esc50  # noqa: E402
from fastspecnorm.experiment import train as train_module  # noqa: E402

# The tiny ESC-50 stand-in: 4 classes x 5 clips over 5 folds (one clip per class and fold),
# 1 s clips at 16 kHz, so no resampling and no cropping happens on the way to the spectrogram.
TINY_ESC50 = {"n_classes": 4, "clips_per_class": 5, "n_folds": 5, "sample_rate": 16000, "duration": 1.0, "seed": 0}


@pytest.fixture
def write_audio(tmp_path):
    """Factory: `write_audio(name, data, sr=16000, **soundfile_kwargs) -> Path` in `tmp_path`.

    data: `(samples,)` for mono or `(samples, channels)`; the format follows the file extension
    (WAV, FLAC, OGG) unless given.
    """

    def _write(name: str, data, sr: int = 16000, **kwargs):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.asarray(data), sr, **kwargs)
        return path

    return _write


@pytest.fixture
def sine():
    "Factory: `sine(freq_hz, seconds, sr, amplitude=0.5) -> float64 (samples,)`."

    def _sine(freq_hz: float, seconds: float, sr: int, amplitude: float = 0.5):
        t = np.arange(int(round(seconds * sr))) / sr
        return amplitude * np.sin(2 * np.pi * freq_hz * t)

    return _sine


@pytest.fixture(scope="session")
def tiny_esc50(tmp_path_factory):
    "A tiny synthetic ESC-50-layout folder (read-only for tests: copy it before changing files)."
    root = tmp_path_factory.mktemp("esc50") / "tiny"
    return make_synthetic_esc50(root, **TINY_ESC50)


@pytest.fixture
def wav_claiming(write_audio):
    """Factory: `wav_claiming(name, data, subtype="PCM_16", channels=None, bits=None) -> Path`.

    A WAV written by soundfile whose header is then edited to claim another channel count or bits per
    sample over the same bytes (its block align left as written), as a damaged or hand-made header
    does. soundfile's PCM header is the canonical 44 bytes: the fmt chunk at byte 12, the channel
    count at 22, the bits per sample at 34 (little-endian 16-bit fields).
    """
    import struct

    def _write(name: str, data, subtype: str = "PCM_16", channels: int | None = None, bits: int | None = None):
        path = write_audio(name, data, subtype=subtype)
        raw = bytearray(path.read_bytes())
        assert raw[12:16] == b"fmt " and raw[36:40] == b"data", "not soundfile's canonical PCM header"
        if channels is not None:
            raw[22:24] = struct.pack("<H", channels)
        if bits is not None:
            raw[34:36] = struct.pack("<H", bits)
        path.write_bytes(bytes(raw))
        return path

    return _write


# ---------------------------------------------------------------------------------------------
# folders of clips


@pytest.fixture
def flat(tmp_path):
    "6 clips per label in one folder each, named {label}_{k}.wav."
    root = tmp_path / "flat"
    for label, f0 in (("a", 300.0), ("b", 2000.0)):
        for k in range(6):
            _write(root / label / f"{label}_{k}.wav", f0=f0, seed=k)
    return root


@pytest.fixture
def clips():
    "Four clips `(samples,)` float64 of 3000, 1234, 2600 and 700 samples, for padded batches."
    rng = np.random.default_rng(0)
    lengths = [3000, 1234, 2600, 700]
    return [(0.1 + i) * rng.standard_normal(n) + np.sin(np.arange(n) * 0.05 * (i + 1)) + 0.3 for i, n in enumerate(lengths)]


@pytest.fixture
def folder(tmp_path):
    "2 classes x 6 clips, 0.15-0.9 s, at 8/16/22.05 kHz, WAV (16-bit, float) and FLAC, mono and stereo."
    rng = np.random.default_rng(0)
    root = tmp_path / "clips"
    for label, f0 in (("low", 300.0), ("high", 2500.0)):
        (root / label).mkdir(parents=True)
        for k in range(6):
            sr = (8000, 16000, 22050)[k % 3]
            n = int(sr * (0.15 + 0.15 * k))
            t = np.arange(n) / sr
            x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(n)
            if k % 2:
                x = np.stack([x, 0.5 * x], axis=1)
            ext, subtype = [("wav", "PCM_16"), ("flac", "PCM_16"), ("wav", "FLOAT")][k % 3]
            sf.write(root / label / f"{label}{k}.{ext}", x, sr, subtype=subtype)
    return root


# ---------------------------------------------------------------------------------------------
# the reference spectrograms of tiny_esc50's WAV files, computed without the package

N_FFT, HOP, N_MELS, SR = 1024, 400, 64, 16000  # the "quick" preset


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


@pytest.fixture(scope="session")
def refs(tiny_esc50):
    """Reference spectrograms: training folds and the validation fold (in loader order), raw and standardized
    (read-only for tests, like `tiny_esc50`; test_norms.py and test_stats.py compare with them)."""
    valid = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, duration=1.0, num_workers=0).valid
    valid_names = valid.items["filename"].tolist()
    out = {"valid_names": valid_names}
    for wn in (True, False):
        out["train", wn] = reference_specs(tiny_esc50, fold_names(tiny_esc50, train=True), wn)
        out["valid", wn] = reference_specs(tiny_esc50, valid_names, wn)
    return out


# ---------------------------------------------------------------------------------------------
# the experiment's data and a fake training


@pytest.fixture(scope="module")
def esc(tmp_path_factory):
    "A synthetic ESC-50 folder, 3 classes x 5 clips of 1 s (test_esc50.py has an `esc` of its own)."
    return make_synthetic_esc50(tmp_path_factory.mktemp("exp") / "data", n_classes=3, clips_per_class=5, duration=1.0)


SPEAKERS = ("ann", "bob", "cid", "dee")


def _clip(rng, label: int, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Clips of 3 labels by 4 speakers at 8 kHz, of different lengths: as a folder per label and
    as a CSV with a speaker column."""
    root = tmp_path_factory.mktemp("own") / "clips"
    rng = np.random.default_rng(0)
    rows = []
    for label in range(3):
        for speaker in SPEAKERS:
            for take in range(2):
                name = f"digit{label}/{speaker}_{take}.wav"
                (root / f"digit{label}").mkdir(parents=True, exist_ok=True)
                sf.write(root / name, _clip(rng, label, 8000, 0.3 + 0.1 * take), 8000, subtype="PCM_16")
                rows.append({"file": name, "label": f"digit{label}", "speaker": speaker})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def _fake_train_one(source, norm, fold, seed, settings, training, *args, **kwargs):
    "Stands in for training: a deterministic accuracy, and the fold's clips for the checks."
    n_valid = int((source.table["fold"] == fold).sum())
    return {"norm": norm, "fold": source.fold_value(fold), "seed": seed, "epochs": training.epochs, "accuracy": (fold + seed) / 20,
            "preset": kwargs.get("preset"), "n_valid": n_valid, "seconds": 0.0}  # fmt: skip


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setattr(train_module, "train_one", _fake_train_one)
