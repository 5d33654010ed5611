"""Reading audio files and the plain waveform operations: downmix, resample, crop/pad, rounding.

Audio is read with soundfile (WAV, FLAC, OGG; no FFmpeg or torchcodec needed); resampling is
torchaudio's windowed sinc.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._compat import import_torchaudio

__all__ = ["AudioLoadError", "load_audio", "downmix_mono", "resample", "crop_pad", "quantize_waveform", "STORAGE_DTYPES"]


class AudioLoadError(ValueError):
    "An audio file exists but cannot be decoded; the message names the file."




def load_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """Read an audio file with soundfile. Returns `(waveform, sample_rate)`, waveform float32
    `(channels, samples)` in [-1, 1], sample rate in Hz.

    Raises FileNotFoundError for a missing file and `AudioLoadError` (a ValueError) naming the file
    for one that cannot be decoded, is empty or holds NaN/Inf.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise AudioLoadError(f"cannot read audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise AudioLoadError(f"audio file {path} has no samples (zero length)")
    if not np.isfinite(data).all():
        raise AudioLoadError(f"audio file {path} holds NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def downmix_mono(x: Tensor) -> Tensor:
    "Average the channels: `(..., channels, samples)` -> `(..., 1, samples)`."
    return x if x.shape[-2] == 1 else x.mean(dim=-2, keepdim=True)


@lru_cache(maxsize=16)
def _resampler(orig_sr: int, new_sr: int, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    torchaudio = import_torchaudio()
    # The sinc kernel must have the waveform's dtype and device (conv1d does not mix them).
    return torchaudio.transforms.Resample(orig_sr, new_sr, dtype=dtype).to(device)


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited (windowed sinc) resampling with torchaudio: `(..., samples)` at `orig_sr` Hz to
    `(..., ceil(samples * new_sr / orig_sr))` at `new_sr` Hz, same dtype and device as `x`
    (float16/bfloat16 are computed in float32)."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, new_sr={new_sr}")
    if orig_sr == new_sr:
        return x
    plain = x.as_subclass(Tensor) if type(x) is not Tensor else x
    dtype = plain.dtype if plain.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.no_grad():
        return _resampler(int(orig_sr), int(new_sr), dtype, str(plain.device))(plain.to(dtype)).to(plain.dtype)


#: Precisions decoded audio can be kept at (the `AudioCache` storage types).
STORAGE_DTYPES = {"int16": np.int16, "float16": np.float16, "float32": np.float32}


def quantize_waveform(x: Tensor, dtype: str | None = "int16") -> Tensor:
    """Round a float waveform to the precision `dtype` keeps, returned as float32 (same shape).

    "int16": 16-bit PCM, `clamp(round(x * 32768), -32768, 32767) / 32768` (exact for audio decoded
    from 16-bit files; values beyond full scale are clipped); "float16": half precision;
    "float32" or None: unchanged. `AudioCache` stores exactly this, so an uncached pipeline that
    applies it yields the same values as a cached one.
    """
    if dtype is None or dtype == "float32":
        return x.float()
    if dtype == "int16":
        return (x.float() * 32768.0).round_().clamp_(-32768.0, 32767.0).mul_(1.0 / 32768.0)
    if dtype == "float16":
        return x.half().float()
    raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)} or None, got {dtype!r}")


def crop_pad(x: Tensor, n_samples: int, start: int = 0, pad_mode: str = "zeros") -> Tensor:
    """Fixed length along the last axis: crop `n_samples` from `start`, or pad at the end.

    x: `(..., samples)`. `pad_mode` "zeros" pads with silence, "repeat" tiles the clip.
    """
    length = x.shape[-1]
    if length >= n_samples:
        return x[..., start : start + n_samples]
    if pad_mode == "zeros":
        return torch.nn.functional.pad(x, (0, n_samples - length))
    if pad_mode == "repeat":
        reps = math.ceil(n_samples / max(length, 1))
        return x.repeat(*([1] * (x.dim() - 1)), reps)[..., :n_samples]
    raise ValueError(f"pad_mode must be 'zeros' or 'repeat', got {pad_mode!r}")


