"""`AudioToSpec`: batches of waveforms to spectrograms in dB, on the batch's device."""

from __future__ import annotations

from typing import Any

import torch
import torchaudio
from fasttransform import DisplayedTransform
from torch import Tensor, nn

from .core import AudioSpectrogram, AudioTensor

__all__ = ["AudioToSpec", "spec_shape"]


def spec_shape(n_samples: int, n_fft: int = 400, hop_length: int = 200, n_mels: int | None = None, center: bool = True):
    "`(freq, time)` of the spectrogram of `n_samples` samples: e.g. 80000 samples -> (201, 401)."
    n_freq = n_mels if n_mels else n_fft // 2 + 1
    n_frames = n_samples // hop_length + 1 if center else (n_samples - n_fft) // hop_length + 1
    return n_freq, n_frames


class AudioToSpec(DisplayedTransform):
    """Batch transform: `AudioTensor` `(batch, channels, samples)` -> `AudioSpectrogram`
    `(batch, channels, freq, time)`, computed on the batch's device.

    torchaudio `Spectrogram(n_fft, hop_length, power=2)` (or `MelSpectrogram` with `n_mels` bins up
    to `f_max` Hz) followed, when `to_db`, by `AmplitudeToDB(stype="power", top_db=top_db)` with the
    `top_db` floor taken per item (never across the batch). Defaults turn a 5 s clip at 16 kHz into
    `(1, 201, 401)`, equal to torchaudio `Spectrogram()` + `AmplitudeToDB()`.
    """

    order = 60  # after waveform transforms (WaveformNormalize is 50), before spectrogram normalizations (99)

    def __init__(
        self,
        n_fft: int = 400,
        hop_length: int = 200,
        n_mels: int | None = None,
        to_db: bool = True,
        sample_rate: int = 16000,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = None,
        win_length: int | None = None,
    ):
        super().__init__()
        if n_fft <= 0 or hop_length <= 0:
            raise ValueError(f"n_fft and hop_length must be positive, got n_fft={n_fft}, hop_length={hop_length}")
        if n_mels is not None and n_mels <= 0:
            raise ValueError(f"n_mels must be positive or None (linear spectrogram), got {n_mels}")
        self.n_fft, self.hop_length, self.n_mels, self.to_db = n_fft, hop_length, n_mels, to_db
        self.sample_rate, self.f_min, self.f_max, self.top_db = sample_rate, f_min, f_max, top_db
        self.win_length = win_length
        self._module = self._build()

    def _build(self) -> nn.Module:
        if self.n_mels:
            spec = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.sample_rate,
                n_fft=self.n_fft,
                win_length=self.win_length,
                hop_length=self.hop_length,
                f_min=self.f_min,
                f_max=self.f_max,
                n_mels=self.n_mels,
                power=2.0,
            )
        else:
            spec = torchaudio.transforms.Spectrogram(
                n_fft=self.n_fft, win_length=self.win_length, hop_length=self.hop_length, power=2.0
            )
        return spec.eval()

    @property
    def settings(self) -> dict[str, Any]:
        "The settings that determine the output values (saved with statistics to detect mismatches)."
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "to_db": self.to_db,
            "top_db": self.top_db,
        }

    def to(self, device):
        "Move the STFT window and filter bank (fastai's `DataLoader.to` calls this)."
        self._module = self._module.to(device)
        return self

    def _module_on(self, device: torch.device) -> nn.Module:
        # A DataLoader moved without DataLoader.to (e.g. a batch on another device) still works.
        window = next(iter(self._module.buffers()))
        return self._module if window.device == device else self._module.to(device)

    def encodes(self, x: AudioTensor) -> AudioSpectrogram:
        sr = getattr(x, "sr", None)
        if sr is not None and sr != self.sample_rate:
            raise ValueError(
                f"AudioToSpec is set for sample_rate={self.sample_rate} Hz but got audio at {sr} Hz; "
                "resample first (AudioBlock(sample_rate=...)) or set AudioToSpec(sample_rate=...)"
            )
        wav = x.as_subclass(Tensor)
        if wav.dtype in (torch.float16, torch.bfloat16):
            wav = wav.float()
        with torch.no_grad():
            spec = self._module_on(wav.device)(wav)
            if self.to_db:
                spec = power_to_db(spec, self.top_db)
        return AudioSpectrogram(
            spec,
            sr=self.sample_rate,
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            f_max=self.f_max or self.sample_rate / 2,
            unit="dB" if self.to_db else "power",
        )


def power_to_db(spec: Tensor, top_db: float | None = None) -> Tensor:
    """`10 * log10(max(spec, 1e-10))` like torchaudio `AmplitudeToDB(stype="power")`, with the
    `top_db` floor `max(db, item_max - top_db)` taken per item over all non-batch dimensions."""
    db = 10.0 * torch.log10(spec.clamp_min(1e-10))
    if top_db is not None:
        if spec.dim() < 2:
            raise ValueError(f"top_db needs a batched spectrogram, got shape {tuple(spec.shape)}")
        peak = db.reshape(db.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (db.dim() - 1)))
        db = torch.maximum(db, peak - top_db)
    return db
