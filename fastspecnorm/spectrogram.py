"""`AudioToSpec`: batches of waveforms to spectrograms in dB, on the batch's device."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from fasttransform import DisplayedTransform
from torch import Tensor, nn

from . import _buffers
from ._compat import import_torchaudio
from .core import AudioSpectrogram, AudioTensor

__all__ = ["AudioToSpec", "spec_shape"]

torchaudio = import_torchaudio()

# On CPU, the STFT is taken a few items at a time so that its complex output (about this size) stays
# in the CPU cache and is reused, instead of a fresh full-batch allocation costing page faults.
_STFT_CHUNK_BYTES = 3 << 20

# Per-thread scratch buffers of `AudioToSpec._cpu_spectrogram` (padded waveforms, power), reused
# across batches: a few MB, kept for the last few spectrogram shapes.
_SCRATCH = threading.local()
_SCRATCH_KEEP = 4


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of `workers` threads for chunks of a CPU batch, created on first use and
    recreated after a fork (a DataLoader worker process does not inherit the parent's threads) or
    when more threads are asked for."""
    global _POOL
    pid = os.getpid()
    if _POOL is None or _POOL[0] != pid or _POOL[1] < workers:
        if _POOL is not None and _POOL[0] == pid:
            _POOL[2].shutdown(wait=False)  # its threads finish their (no) work and exit
        _POOL = (pid, workers, ThreadPoolExecutor(workers, thread_name_prefix="fastspecnorm-stft"))
    return _POOL[2]


def _scratch(rows: int, padded_length: int, n_frames: int, n_freq: int) -> tuple[Tensor, Tensor]:
    "This thread's scratch buffers with room for `rows` rows of these sizes."
    cache = _SCRATCH.__dict__.setdefault("bufs", {})
    key = (padded_length, n_frames, n_freq)
    bufs = cache.pop(key, None)
    if bufs is None or bufs[0].shape[0] < rows:
        bufs = (torch.empty(rows, padded_length), torch.empty(rows, n_frames, n_freq))
    cache[key] = bufs  # most recently used last
    while len(cache) > _SCRATCH_KEEP:
        cache.pop(next(iter(cache)))
    return bufs


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
    float16/bfloat16 waveforms are transformed in float32 and give float32 spectrograms; silence
    (power below 1e-10) sits at the -100 dB floor; an empty batch gives an empty spectrogram batch.
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
            spec.spectrogram.power = None  # complex STFT; `_power_spectrogram` squares it in place
        else:
            spec = torchaudio.transforms.Spectrogram(
                n_fft=self.n_fft, win_length=self.win_length, hop_length=self.hop_length, power=None
            )
        return spec.eval()

    def _power_spectrogram(self, wav: Tensor) -> Tensor:
        """torchaudio's power (mel) spectrogram of `wav` `(..., samples)`, with `|STFT|^2` taken as
        `re^2 + im^2` instead of torchaudio's `abs().pow(2.0)` (a square root, then a square, and a
        second full-size tensor): equal to within a relative 2e-7 (float32 rounding). Used off the
        CPU, for inputs too short to reflect-pad, and for power spectrograms on the CPU when
        `_cpu_spectrogram` does not apply."""
        module = self._module_on(wav.device)
        stft = module.spectrogram if self.n_mels else module
        spec = stft(wav)
        spec = spec.real.square().addcmul_(spec.imag, spec.imag)
        return module.mel_scale(spec) if self.n_mels else spec

    def _cpu_spectrogram(self, wav: Tensor) -> Tensor:
        """The (mel) spectrogram, in dB when `to_db`, of a CPU float32 batch `(batch, ..., samples)`,
        computed a few items at a time in reused scratch buffers, so that every intermediate stays
        in the CPU cache; the result goes into a recycled batch buffer when one is free (`_buffers`).

        The same arithmetic as `torch.stft(center=True, pad_mode="reflect")`, which torchaudio
        calls: reflect-pad by `n_fft // 2`, frame, multiply by the window, real FFT; then
        `|X|^2` as NumPy's vectorized `abs(X)^2` (what torchaudio computes, `abs().pow(2)`), the
        mel filter bank as torchaudio applies it, and the dB floor written straight into the
        `(freq, time)` layout. What is saved against `torch.stft`: its `reflection_pad1d` (slow on
        CPU), its per-call allocations, and elementwise passes over its transposed, strided output.
        Every step is per item (`top_db` included), so an item's result does not depend on its
        batch or on where the chunks fall."""
        module = self._module
        stft = module.spectrogram if self.n_mels else module
        n_fft, hop, length = self.n_fft, self.hop_length, wav.shape[-1]
        pad = n_fft // 2
        window = stft.window
        if window.numel() < n_fft:  # torch.stft centres a shorter window in n_fft
            left = (n_fft - window.numel()) // 2
            window = torch.nn.functional.pad(window, (left, n_fft - window.numel() - left))
        n_frames = (length + 2 * pad - n_fft) // hop + 1
        n_freq = n_fft // 2 + 1
        n_out = self.n_mels or n_freq
        inner = wav.shape[1:-1]
        rows_per_item = max(1, math.prod(inner))
        # A spectrogram batch of earlier that nothing references any more, else a new one (see _buffers).
        out = _buffers.SPECTROGRAM_BATCHES.get((wav.shape[0], *inner, n_out, n_frames), torch.float32)
        step = max(1, _STFT_CHUNK_BYTES // (8 * n_freq * n_frames * rows_per_item))
        fb = module.mel_scale.fb if self.n_mels else None

        def run(first: int, stop: int) -> None:
            "Items first..stop-1, `step` at a time, in this thread's scratch buffers."
            padded, power = _scratch(min(step, stop - first) * rows_per_item, length + 2 * pad, n_frames, n_freq)
            for start in range(first, stop, step):
                end = min(start + step, stop)
                w = wav[start:end].reshape(-1, length)
                rows = w.shape[0]
                p = padded[:rows]
                p[:, pad : pad + length] = w
                if pad:
                    p[:, :pad] = w[:, 1 : pad + 1].flip(-1)
                    p[:, pad + length :] = w[:, length - pad - 1 : length - 1].flip(-1)
                spec = torch.fft.rfft(p.unfold(-1, n_fft, hop) * window)  # (rows, frames, freq), complex
                pw = power[:rows]
                np.abs(spec.numpy(), out=pw.numpy())
                pw.square_()
                if fb is not None:
                    pw = torch.matmul(pw, fb)  # (rows, frames, n_mels), as torchaudio's MelScale
                o = out[start:end].view(rows, n_out, n_frames)
                if self.to_db:
                    torch.clamp(pw.transpose(-1, -2), min=1e-10, out=o).log10_().mul_(10.0)  # torch's log10, as torchaudio
                    _top_db_floor_(out[start:end], self.top_db)
                else:
                    o.copy_(pw.transpose(-1, -2))

        n_chunks = -(-wav.shape[0] // step)
        n_par = min(torch.get_num_threads(), n_chunks)
        if n_par <= 1:
            run(0, wav.shape[0])
        else:  # contiguous groups of whole chunks, one per thread (torch and NumPy release the GIL)
            per = -(-n_chunks // n_par) * step
            bounds = [(i, min(i + per, wav.shape[0])) for i in range(0, wav.shape[0], per)]
            for f in [_pool(len(bounds)).submit(run, *b) for b in bounds]:
                f.result()
        return out

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
            if wav.numel() == 0:
                # An empty batch (batch size 0) gives an empty spectrogram; torch.stft rejects it.
                n_freq, n_frames = spec_shape(wav.shape[-1], self.n_fft, self.hop_length, self.n_mels)
                spec = wav.new_zeros(*wav.shape[:-1], n_freq, n_frames)
            elif self._cpu_path_applies(wav):
                spec = self._cpu_spectrogram(wav)
            else:
                spec = self._power_spectrogram(wav)
                if self.to_db:
                    spec = _power_to_db_(spec, self.top_db)
        return AudioSpectrogram(
            spec,
            sr=self.sample_rate,
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            f_max=self.f_max or self.sample_rate / 2,
            unit="dB" if self.to_db else "power",
        )

    def _cpu_path_applies(self, wav: Tensor) -> bool:
        "A batched float32 CPU waveform long enough to reflect-pad (shorter ones get torch.stft's error)."
        window = next(iter(self._module.buffers()))
        return (
            wav.device.type == "cpu"
            and window.device.type == "cpu"
            and wav.dtype == torch.float32
            and window.dtype == torch.float32
            and wav.dim() >= 2
            and wav.shape[-1] > self.n_fft // 2
        )


def power_to_db(spec: Tensor, top_db: float | None = None) -> Tensor:
    """`10 * log10(max(spec, 1e-10))` like torchaudio `AmplitudeToDB(stype="power")`, with the
    `top_db` floor `max(db, item_max - top_db)` taken per item over all non-batch dimensions."""
    return _top_db_floor(10.0 * torch.log10(spec.clamp_min(1e-10)), top_db)


def _power_to_db_(spec: Tensor, top_db: float | None = None) -> Tensor:
    """`power_to_db` computed in place in `spec`, a tensor the caller owns and needs no gradient of
    (`AudioToSpec` under no_grad): the same values without two extra full-size copies."""
    return _top_db_floor(spec.clamp_min_(1e-10).log10_().mul_(10.0), top_db)


def _top_db_floor_(db: Tensor, top_db: float | None) -> Tensor:
    "`_top_db_floor` in place in `db` (a batch `(batch, ...)`)."
    if top_db is not None and db.numel():
        peak = db.reshape(db.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (db.dim() - 1)))
        torch.maximum(db, peak - top_db, out=db)
    return db


def _top_db_floor(db: Tensor, top_db: float | None) -> Tensor:
    if top_db is not None and db.numel():
        if db.dim() < 2:
            raise ValueError(f"top_db needs a batched spectrogram, got shape {tuple(db.shape)}")
        peak = db.reshape(db.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (db.dim() - 1)))
        db = torch.maximum(db, peak - top_db)
    return db
