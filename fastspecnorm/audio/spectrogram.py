"""Spectrograms: `spectrogram` (the math, on torch.stft) and `AudioToSpec` (the batch Transform).

One implementation on every device: torchaudio's `spectrogram` (torch.stft, centred, reflect
padding, Hann window), its mel filter bank, and `10 * log10` with a `top_db` floor taken per item.

Padded batches: a clip of n samples in a batch padded to its longest clip has `n // hop_length + 1`
valid frames (`AudioSpectrogram.lengths`), and these equal the frames of the clip's spectrogram
computed alone: before the STFT, the `n_fft // 2` samples after each clip's end are replaced by
the reflection that torch.stft's centred framing would put there for the clip alone. The frames
after a clip's last valid frame hold silence (power 0, -100 dB; with `top_db`, the item's floor).
"""

from __future__ import annotations

from typing import Any

import torch
from fastcore.foundation import L
from fasttransform import DisplayedTransform
from torch import Tensor

from .._compat import import_torchaudio
from .tensors import AudioSpectrogram, AudioTensor, RefusePlainTensor, lengths_mask

__all__ = ["AudioToSpec", "spectrogram", "power_to_db", "spec_shape", "reflect_clip_ends", "frame_lengths"]

torchaudio = import_torchaudio()

#: The rate `AudioToSpec(sample_rate=None)` assumes for a batch that carries none (Hz).
DEFAULT_SAMPLE_RATE = 16000

STFT_PIECE_BYTES = 8 * 2**20
"About how many bytes of complex STFT `spectrogram` computes at once (at least one row)."


def spec_shape(n_samples: int, n_fft: int = 400, hop_length: int = 200, n_mels: int | None = None, center: bool = True):
    """`(freq, time)` of the spectrogram of `n_samples` samples: e.g. 80000 samples -> (201, 401).
    With centred framing (the default) a clip of n samples has `n // hop_length + 1` frames (even
    `n_fft`; one fewer for some lengths with odd `n_fft`)."""
    n_freq = n_mels if n_mels else n_fft // 2 + 1
    padded = n_samples + 2 * (n_fft // 2) if center else n_samples
    return n_freq, (padded - n_fft) // hop_length + 1


def frame_lengths(lengths: Tensor, hop_length: int = 200) -> Tensor:
    "Valid frames of clips of `lengths` samples with centred framing: `lengths // hop_length + 1`."
    return torch.as_tensor(lengths) // hop_length + 1


def reflect_clip_ends(wav: Tensor, lengths: Tensor, n_fft: int = 400) -> Tensor:
    """A copy of the padded batch `wav` `(batch, channels, samples)` where the `n_fft // 2` samples
    after each clip's end (`lengths`, `(batch,)` samples) are the reflection torch.stft's centred
    framing would pad that clip with alone (`x[n - 2 - j]` at position `n + j`), so the clip's
    valid frames equal its spectrogram computed alone. Positions a clip too short to reflect
    (fewer than `n_fft // 2 + 1` samples, which torch.stft refuses alone) keep their padding."""
    n_samples = wav.shape[-1]
    pos = torch.arange(n_samples, device=wav.device)
    n = lengths.to(wav.device)[:, None]
    after = pos[None, :] - n  # (batch, samples): offset past each clip's end
    src = n - 2 - after
    reflect = (after >= 0) & (after < n_fft // 2) & (src >= 0)
    index = torch.where(reflect, src, pos[None, :])
    return wav.gather(-1, index[:, None, :].expand(wav.shape))


def power_to_db(spec: Tensor, top_db: float | None = None, inplace: bool = False) -> Tensor:
    """`10 * log10(max(spec, 1e-10))` like torchaudio `AmplitudeToDB(stype="power")`, with the
    `top_db` floor `max(db, item_max - top_db)` taken per item over all non-batch dimensions
    (spec: `(batch, ...)`; torchaudio's would take it over the whole batch). `inplace`: compute in
    `spec` itself (a fresh intermediate; ignored where autograd tracks it)."""
    if inplace and not (torch.is_grad_enabled() and spec.requires_grad):
        db = spec.clamp_min_(1e-10).log10_().mul_(10.0)
    else:
        db = 10.0 * torch.log10(spec.clamp_min(1e-10))
    if top_db is not None and db.numel():
        if db.dim() < 2:
            raise ValueError(f"top_db needs a batched spectrogram (batch, ...), got shape {tuple(db.shape)}")
        peak = db.reshape(db.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (db.dim() - 1)))
        db = torch.maximum(db, peak - top_db)
    return db


def spectrogram(
    wav: Tensor,
    window: Tensor,
    n_fft: int = 400,
    hop_length: int = 200,
    mel_fb: Tensor | None = None,
    to_db: bool = True,
    top_db: float | None = None,
) -> Tensor:
    """Power spectrogram of `wav` `(..., samples)` -> `(..., freq, time)`, in dB when `to_db`.

    torch.stft, centred with reflect padding, one-sided, power `re^2 + im^2`.
    window: `(win_length,)`, e.g. `torch.hann_window(n_fft)`; mel_fb: `(n_fft // 2 + 1, n_mels)`
    from `torchaudio.functional.melscale_fbanks`, or None for linear frequency bins. Equal to
    torchaudio `Spectrogram` / `MelSpectrogram` followed by `AmplitudeToDB()`; `top_db` (dB) is
    taken per item (see `power_to_db`). Silence sits at the -100 dB floor. The STFT runs on a few
    rows at a time (`STFT_PIECE_BYTES` of complex output each); the values do not depend on it.
    """
    rows = wav.reshape(-1, wav.shape[-1])
    n_frames = spec_shape(wav.shape[-1], n_fft, hop_length)[1]
    n_freq = n_fft // 2 + 1
    out = rows.new_empty(rows.shape[0], mel_fb.shape[1] if mel_fb is not None else n_freq, n_frames)
    # The batch goes through torch.stft a few clips at a time, so that its largest buffers (the
    # windowed frames and the complex STFT) stay near STFT_PIECE_BYTES: glibc hands every freed
    # block over 32 MB back to the kernel, and the next batch pays a page fault per 4 KiB to get it
    # back (a 64-clip blog-preset batch: 41 MB; pieces took AudioToSpec from 0.93-0.97 to
    # 0.44-0.48 ms per clip on 2 CPU cores, benchmarks/README.md). The values do not depend on it.
    step = max(1, STFT_PIECE_BYTES // (n_freq * n_frames * 8))  # 8 bytes per complex64 bin
    window = window.to(wav.dtype)
    for i in range(0, rows.shape[0], step):
        # torch.stft as torchaudio calls it (centred, reflect padding); |X|^2 as re^2 + im^2 rather
        # than torchaudio's abs().pow(2): the same values to float32 rounding, without a square
        # root per bin (2.4x faster on CPU).
        stft = torch.stft(
            rows[i : i + step],
            n_fft,
            hop_length,
            window.numel(),
            window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        re, im = torch.view_as_real(stft).unbind(-1)
        power = re.square().addcmul_(im, im)
        if mel_fb is not None:  # as torchaudio's MelScale
            power = torch.matmul(power.transpose(-1, -2), mel_fb).transpose(-1, -2)
        out[i : i + step] = power
    spec = out.reshape(*wav.shape[:-1], *out.shape[-2:])
    return power_to_db(spec, top_db, inplace=True) if to_db else spec


class AudioToSpec(RefusePlainTensor, DisplayedTransform):
    """Batch transform: `AudioTensor` `(batch, channels, samples)` -> `AudioSpectrogram`
    `(batch, channels, freq, time)`, computed on the batch's device with `spectrogram`.

    torchaudio `Spectrogram(n_fft, hop_length, power=2)` (or `MelSpectrogram` with `n_mels` bins from
    `f_min` to `f_max` Hz) followed, when `to_db`, by `AmplitudeToDB(stype="power", top_db=top_db)`
    with the `top_db` floor taken per item. Defaults turn a 5 s clip at 16 kHz into `(1, 201, 401)`.
    float16/bfloat16 waveforms are transformed in float32 and give float32 spectrograms; an empty
    batch gives an empty spectrogram batch. The window and filter bank are `parameters`, so
    fastai's `DataLoader.to(device)` moves them.

    sample_rate: Hz; None (the default) takes the batch's rate (`AudioTensor.sr`; 16000 Hz for a
    batch without one), so `AudioBlock(sample_rate=8000)` needs no second rate here; the mel filter
    bank and `f_max`'s default (the Nyquist frequency) follow that rate. A number fixes the rate:
    a batch at another rate raises ValueError.
    Short clips: torch.stft's centred framing needs more than `n_fft // 2` samples. A batch of at
    most `n_fft // 2` samples (e.g. a 100-sample clip given to `learn.predict`) is zero-padded to
    `n_fft // 2 + 1` samples and its spectrogram carries `lengths` (`n // hop_length + 1` valid
    frames per clip; one clip `(channels, samples)` comes out with just those frames): the same
    values such a clip gets in a padded batch of longer clips.
    """

    order = 60  # after waveform transforms (WaveformNormalize is 50), before spectrogram normalizations (99)

    def __init__(
        self,
        n_fft: int = 400,
        hop_length: int = 200,
        n_mels: int | None = None,
        to_db: bool = True,
        sample_rate: int | None = None,
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
        if win_length is not None and not 0 < win_length <= n_fft:
            raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
        if sample_rate is not None and not (isinstance(sample_rate, int) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive integer (Hz) or None (the batch's rate), got {sample_rate!r}")
        self.n_fft, self.hop_length, self.n_mels, self.to_db = n_fft, hop_length, n_mels, to_db
        self.sample_rate, self.f_min, self.f_max, self.top_db = sample_rate, f_min, f_max, top_db
        self.win_length = win_length
        self.window = torch.hann_window(win_length or n_fft)
        # The filter bank of the fixed rate, or with sample_rate=None of 16 kHz (the fallback, when
        # f_max allows it); a batch at another rate gets its own, made per batch (a small
        # (n_fft // 2 + 1, n_mels) matrix, cheap next to the STFT).
        fb_rate = sample_rate or (DEFAULT_SAMPLE_RATE if f_max is None or f_max <= DEFAULT_SAMPLE_RATE / 2 else None)
        self.mel_fb = self._mel_fb(fb_rate) if n_mels and fb_rate else None

    def _mel_fb(self, sample_rate: int) -> Tensor:
        "The mel filter bank `(n_fft // 2 + 1, n_mels)` at `sample_rate` Hz; ValueError for f_min/f_max outside it."
        nyquist = sample_rate / 2
        if self.f_max is not None and self.f_max > nyquist:
            raise ValueError(
                f"f_max={self.f_max} Hz is above the Nyquist frequency of sample_rate={sample_rate} Hz ({nyquist:g} Hz)"
            )
        if not 0 <= self.f_min < (self.f_max or nyquist):
            raise ValueError(f"f_min must be in [0, f_max), got f_min={self.f_min}, f_max={self.f_max or nyquist}")
        return torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, self.f_min, self.f_max or nyquist, self.n_mels, sample_rate
        )

    @property
    def parameters(self):
        "The tensors fastai's `DataLoader.to(device)` moves."
        return L("window") if self.mel_fb is None else L("window", "mel_fb")

    def to(self, device):
        "Move the window and filter bank to `device`."
        for name in self.parameters:
            setattr(self, name, getattr(self, name).to(device))
        return self

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

    def encodes(self, x: AudioTensor) -> AudioSpectrogram:
        batch_sr = getattr(x, "sr", None)
        if self.sample_rate is not None and batch_sr is not None and batch_sr != self.sample_rate:
            raise ValueError(
                f"AudioToSpec is set for sample_rate={self.sample_rate} Hz but got audio at {batch_sr} Hz; "
                "resample first (AudioBlock(sample_rate=...)) or leave AudioToSpec's sample_rate at None (the batch's rate)"
            )
        sr = self.sample_rate or batch_sr or DEFAULT_SAMPLE_RATE
        lengths = getattr(x, "lengths", None)
        wav = x.as_subclass(Tensor)
        if wav.dtype in (torch.float16, torch.bfloat16):
            wav = wav.float()
        if self.window.device != wav.device:  # a batch on another device than the DataLoader's
            self.to(wav.device)
        mel_fb = self.mel_fb
        if self.n_mels and self.sample_rate is None and (mel_fb is None or sr != DEFAULT_SAMPLE_RATE):
            mel_fb = self._mel_fb(sr).to(wav.device)  # the batch's rate
        if 0 < wav.shape[-1] <= self.n_fft // 2:  # too short for centred framing: pad, record lengths
            if lengths is None:
                lengths = torch.full(wav.shape[:1], wav.shape[-1], dtype=torch.long) if wav.dim() == 3 else None
            wav = torch.nn.functional.pad(wav, (0, self.n_fft // 2 + 1 - wav.shape[-1]))
            if lengths is None:  # one clip (channels, samples): a batch of one, cut to its valid frames
                batch = self.encodes(AudioTensor(wav[None], sr=sr, lengths=torch.tensor([x.shape[-1]])))
                one = batch[0, ..., : int(batch.lengths[0])].clone()
                one.lengths = None
                return one
        frames = None
        with torch.no_grad():
            if wav.numel() == 0:  # an empty batch gives an empty spectrogram; torch.stft rejects it
                spec = wav.new_zeros(*wav.shape[:-1], *spec_shape(wav.shape[-1], self.n_fft, self.hop_length, self.n_mels))
            elif lengths is None:
                spec = spectrogram(wav, self.window, self.n_fft, self.hop_length, mel_fb, self.to_db, self.top_db)
            else:
                if wav.dim() != 3 or tuple(lengths.shape) != (wav.shape[0],):
                    raise ValueError(
                        f"AudioTensor of shape {tuple(wav.shape)} carries lengths of shape {tuple(lengths.shape)}; expected (batch,)"
                    )
                wav = reflect_clip_ends(wav, lengths, self.n_fft)
                power = spectrogram(wav, self.window, self.n_fft, self.hop_length, mel_fb, to_db=False)
                frames = frame_lengths(lengths.cpu(), self.hop_length).clamp_max(power.shape[-1])
                power = power.masked_fill(~lengths_mask(frames, power.shape[-1], power.device)[:, None, None, :], 0.0)
                spec = power_to_db(power, self.top_db) if self.to_db else power
        return AudioSpectrogram(
            spec,
            sr=sr,
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            f_max=self.f_max or sr / 2,
            unit="dB" if self.to_db else "power",
            lengths=frames,
        )
