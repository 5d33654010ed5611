"""Spectrograms: `spectrogram` (the math, on torch.stft), `AudioToSpec` (the batch Transform) and the
helpers of padded batches (`spec_shape`, `frame_lengths`, `reflect_clip_ends`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from fastcore.foundation import L
from fasttransform import DisplayedTransform
from torch import Tensor

from .._compat import import_torchaudio
from ..functional import padding_mask
from .tensors import AudioSpectrogram, AudioTensor, RefusePlainTensor

__all__ = ["AudioToSpec", "spectrogram", "power_to_db", "spec_shape", "reflect_clip_ends", "frame_lengths"]

torchaudio = import_torchaudio()

#: The rate `AudioToSpec(sample_rate=None)` assumes for a batch that carries none (Hz); `presets.DEFAULT_SAMPLE_RATE`
#: has the same value (not imported: presets imports this module to build `AudioSettings.spectrogram()`).
DEFAULT_SAMPLE_RATE = 16000

#: About how many bytes of complex STFT `spectrogram` computes at once (at least one row).
STFT_PIECE_BYTES = 8 * 2**20


def spec_shape(n_samples: int, n_fft: int = 400, hop_length: int = 200, n_mels: int | None = None, center: bool = True):
    """`(freq, time)` of the spectrogram of `n_samples` samples (centred: `n // hop_length + 1` frames for even `n_fft`).

    Args:
        n_samples: the clip's length, in samples.
        n_fft: the FFT size, in samples.
        hop_length: the step between frames, in samples.
        n_mels: the number of mel bins; None for the `n_fft // 2 + 1` linear bins.
        center: centred framing (as `spectrogram`); False: the first frame starts at sample 0.

    Returns:
        `(freq, time)`: the frequency bins and the frames.

    Examples:
        >>> spec_shape(80000)
        (201, 401)
        >>> spec_shape(80000, n_mels=64)
        (64, 401)
    """
    n_freq = n_mels if n_mels else n_fft // 2 + 1
    padded = n_samples + 2 * (n_fft // 2) if center else n_samples
    return n_freq, (padded - n_fft) // hop_length + 1


def frame_lengths(lengths: Tensor, hop_length: int = 200) -> Tensor:
    """Valid frames of clips of `lengths` samples with centred framing: `lengths // hop_length + 1`.

    Args:
        lengths: the clips' lengths in samples, `(batch,)` (anything `torch.as_tensor` takes).
        hop_length: the step between frames, in samples.

    Returns:
        An integer tensor shaped like `lengths`.

    Examples:
        >>> frame_lengths([16000, 8000])
        tensor([81, 41])
    """
    return torch.as_tensor(lengths) // hop_length + 1


def reflect_clip_ends(wav: Tensor, lengths: Tensor, n_fft: int = 400) -> Tensor:
    """A copy of a padded batch whose clips end as torch.stft's centred framing would pad each clip alone.

    The `n_fft // 2` samples after each clip's end (n samples) become its reflection, `x[n - 2 - j]`
    at `n + j`, so its `n // hop_length + 1` valid frames equal those of its spectrogram computed
    alone. A clip too short to reflect keeps its padding.

    Args:
        wav: the padded batch `(batch, channels, samples)`.
        lengths: each clip's length in samples, `(batch,)`.
        n_fft: the FFT size, in samples.

    Returns:
        A new `(batch, channels, samples)` tensor.
    """
    pos = torch.arange(wav.shape[-1], device=wav.device)
    n = lengths.to(wav.device)[:, None]
    after = pos[None, :] - n  # (batch, samples): offset past each clip's end
    src = n - 2 - after
    reflect = (after >= 0) & (after < n_fft // 2) & (src >= 0)
    index = torch.where(reflect, src, pos[None, :])
    return wav.gather(-1, index[:, None, :].expand(wav.shape))


def power_to_db(spec: Tensor, top_db: float | None = None, inplace: bool = False) -> Tensor:
    """Power to dB, `10 * log10(max(spec, 1e-10))`: torchaudio's `amplitude_to_DB` (`AmplitudeToDB(stype="power")`).

    With `top_db`, the floor `max(db, item_max - top_db)` is taken per item over all non-batch
    dimensions, whatever the layout.

    Args:
        spec: a power spectrogram `(batch, ...)`, e.g. `(batch, channels, freq, time)`.
        top_db: the floor, in dB below each item's peak; None for none (-100 dB remains).
        inplace: also write the result into `spec` (unless autograd tracks it).

    Returns:
        dB, same shape and dtype as `spec` (`spec` itself with `inplace`).

    Raises:
        ValueError: `top_db` is given and `spec` is not batched (fewer than 2 dimensions).

    Examples:
        >>> import torch
        >>> power_to_db(torch.tensor([[1.0, 1e-2, 0.0]]), top_db=30.0)
        tensor([[  0., -20., -30.]])
    """
    if top_db is not None and spec.dim() < 2:
        raise ValueError(f"top_db needs a batched spectrogram (batch, ...), got shape {tuple(spec.shape)}")
    # torchaudio takes the top_db floor per item of (batch, channels, freq, time) only: flatten each item
    items = spec.reshape(spec.shape[0], 1, 1, -1) if spec.dim() >= 2 and spec.numel() else spec
    top_db = top_db if spec.numel() else None  # an empty batch has no peak
    db = torchaudio.functional.amplitude_to_DB(items, 10.0, 1e-10, 0.0, top_db).reshape(spec.shape)
    if inplace and not (torch.is_grad_enabled() and spec.requires_grad):
        return spec.copy_(db)
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

    torch.stft, centred with reflect padding, one-sided, power `re^2 + im^2`: equal to torchaudio
    `Spectrogram` / `MelSpectrogram` followed by `AmplitudeToDB()`. Silence sits at the -100 dB
    floor. Each clip needs more than `n_fft // 2` samples (`AudioToSpec` pads shorter ones).

    Args:
        wav: waveforms `(..., samples)`, float32 or float64.
        window: `(win_length,)`, e.g. `torch.hann_window(n_fft)`.
        n_fft: the FFT size, in samples.
        hop_length: the step between frames, in samples.
        mel_fb: the mel filter bank `(n_fft // 2 + 1, n_mels)` (`torchaudio.functional.melscale_fbanks`),
            or None for linear frequency bins.
        to_db: convert the power to dB (`power_to_db`); False returns the power.
        top_db: the floor in dB below each item's peak (see `power_to_db`); None for none.

    Returns:
        `(..., freq, time)` (the shape of `spec_shape`), dB or power, same dtype as `wav`.

    Examples:
        >>> import torch
        >>> spectrogram(torch.zeros(2, 1, 16000), torch.hann_window(400)).shape
        torch.Size([2, 1, 201, 81])
    """
    rows = wav.reshape(-1, wav.shape[-1])
    n_frames = spec_shape(wav.shape[-1], n_fft, hop_length)[1]
    n_freq = n_fft // 2 + 1
    out = rows.new_empty(rows.shape[0], mel_fb.shape[1] if mel_fb is not None else n_freq, n_frames)
    # A few clips at a time: freed buffers over 32 MB cost page faults on the next batch (docs/performance.md).
    step = max(1, STFT_PIECE_BYTES // (n_freq * n_frames * 8))  # 8 bytes per complex64 bin
    window = window.to(wav.dtype)
    for i in range(0, rows.shape[0], step):
        stft = torch.stft(rows[i : i + step], n_fft, hop_length, window.numel(), window, return_complex=True)
        # |X|^2 as re^2 + im^2, not torchaudio's abs().pow(2): no square root per bin (faster on CPU)
        re, im = torch.view_as_real(stft).unbind(-1)
        power = re.square().addcmul_(im, im)
        if mel_fb is not None:  # as torchaudio's MelScale
            power = torch.matmul(power.transpose(-1, -2), mel_fb).transpose(-1, -2)
        out[i : i + step] = power
    spec = out.reshape(*wav.shape[:-1], *out.shape[-2:])
    return power_to_db(spec, top_db) if to_db else spec


class AudioToSpec(RefusePlainTensor, DisplayedTransform):
    """Batch transform: `AudioTensor` `(batch, channels, samples)` -> `AudioSpectrogram` `(batch, channels, freq, time)`.

    `spectrogram` on the batch's device: torchaudio's `Spectrogram(n_fft, hop_length, power=2)` (or
    `MelSpectrogram`) with a Hann window, then, when `to_db`, `AmplitudeToDB(stype="power", top_db=top_db)`
    per item. The output carries `sr`, `hop_length`, `n_fft`, `n_mels`, `f_max`, `unit` ("dB" or
    "power") and `lengths`. float16/bfloat16 waveforms give float32 spectrograms; an empty batch an empty one.

    A batch carrying `lengths` gives each clip's valid frames (`n // hop_length + 1` for n samples) as
    if computed alone (`reflect_clip_ends`), and silence (power 0) after them. A batch of at most
    `n_fft // 2` samples (too short for centred framing) is zero-padded to `n_fft // 2 + 1` and gets
    `lengths` the same way; one such clip `(channels, samples)` comes out with just its valid frames.

    Args:
        n_fft: the FFT size, in samples: `n_fft // 2 + 1` linear frequency bins.
        hop_length: the step between frames, in samples.
        n_mels: the number of mel bins; None for a linear frequency axis.
        to_db: convert the power to dB; False keeps the power.
        sample_rate: Hz; None (the default) takes the batch's rate (`AudioTensor.sr`; 16000 Hz for
            a batch without one), which the mel filter bank and `f_max`'s default (the Nyquist
            frequency) follow. A number fixes the rate: a batch at another rate raises ValueError.
        f_min: the lowest frequency of the mel bins, in Hz.
        f_max: the highest frequency of the mel bins, in Hz; None for the Nyquist frequency.
        top_db: the floor, in dB below each item's peak; None for none.
        win_length: the length of the Hann window, in samples, at most `n_fft`; None for `n_fft`.

    Raises:
        ValueError: a setting is out of range (e.g. `f_max` above the Nyquist frequency, `win_length`
            above `n_fft`); when called, a batch at another rate than a fixed `sample_rate`, or whose
            `lengths` do not match it.

    Examples:
        >>> import torch
        >>> spec = AudioToSpec()(AudioTensor(torch.zeros(2, 1, 80000), sr=16000))
        >>> type(spec).__name__, tuple(spec.shape), spec.unit
        ('AudioSpectrogram', (2, 1, 201, 401), 'dB')
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
        self.n_fft, self.hop_length, self.win_length, self.n_mels = n_fft, hop_length, win_length, n_mels
        self.sample_rate, self.f_min, self.f_max, self.to_db, self.top_db = sample_rate, f_min, f_max, to_db, top_db
        self.window = torch.hann_window(win_length or n_fft)
        # The filter bank of the fixed rate, or else of 16 kHz when f_max allows; other rates get one per batch.
        fb_rate = sample_rate or (DEFAULT_SAMPLE_RATE if f_max is None or f_max <= DEFAULT_SAMPLE_RATE / 2 else None)
        self.mel_fb = self._mel_fb(fb_rate) if n_mels and fb_rate else None

    @classmethod
    def from_cfg(cls, cfg: Any) -> AudioToSpec:
        """fastaudio's `AudioToSpec.from_cfg`: the transform a configuration describes, for code written for fastaudio.

        Args:
            cfg: an `AudioSettings` (giving `settings.spectrogram()`), or a mapping or dataclass of
                torchaudio's `Spectrogram` / `MelSpectrogram` arguments plus fastaudio's `mel` and `to_db`
                (as fastaudio's `AudioConfig.BasicMelSpectrogram(...)`). Defaults as in fastaudio: `n_fft`
                1024, `win_length` `n_fft`, `hop_length` `win_length // 2`, `mel` whether `n_mels` is
                given (128 bins by default), `to_db` True. torchaudio's other arguments only at the
                values computed here (`power=2.0`, `center=True`, `window_fn=torch.hann_window`, ...).

        Returns:
            The `AudioToSpec` equal to torchaudio's `MelSpectrogram(**cfg)` (or `Spectrogram`) + `AmplitudeToDB()`.

        Raises:
            TypeError: `cfg` is not an `AudioSettings`, a mapping or a dataclass, names an unknown
                argument, or gives `mel` or `to_db` as something else than a bool.
            ValueError: a torchaudio argument at another value than the one computed here,
                `mel=False` with `n_mels`, or a setting out of range (see `AudioToSpec`).

        Examples:
            >>> spec = AudioToSpec.from_cfg(dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64))
            >>> spec.n_fft, spec.win_length, spec.hop_length, spec.n_mels, spec.to_db
            (512, None, 160, 64, True)
        """
        if callable(getattr(cfg, "spectrogram", None)):  # an `AudioSettings` (not imported: it imports this module)
            return cfg.spectrogram()
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
            cfg = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        if not isinstance(cfg, Mapping):
            raise TypeError(f"AudioToSpec.from_cfg takes an AudioSettings, a dict or a dataclass, got {type(cfg).__name__}")
        fixed = {"power": (2.0,), "center": (True,), "pad_mode": ("reflect",), "normalized": (False,), "pad": (0,),
                 "onesided": (True, None), "norm": (None,), "mel_scale": ("htk",), "window_fn": (torch.hann_window,),
                 "wkwargs": (None,)}  # fmt: skip
        taken = ("sample_rate", "n_fft", "win_length", "hop_length", "f_min", "f_max", "n_mels", "mel", "to_db", "top_db")
        unknown = sorted(set(cfg) - set(taken) - set(fixed))
        if unknown:
            raise TypeError(f"AudioToSpec.from_cfg got unknown setting(s) {unknown}; it takes {list(taken)} and torchaudio's "
                            f"{list(fixed)} at the values computed here")  # fmt: skip
        other = {k: cfg[k] for k in fixed if k in cfg and cfg[k] not in fixed[k]}
        if other:
            expected = ", ".join(f"{k}={fixed[k][0].__name__ if callable(fixed[k][0]) else repr(fixed[k][0])}" for k in other)
            raise ValueError(f"AudioToSpec computes only {expected}; the configuration has {other}: drop these settings")
        for name in ("mel", "to_db"):
            if name in cfg and not isinstance(cfg[name], bool):
                raise TypeError(f"{name}={cfg[name]!r} must be True or False (fastaudio's AudioConfig.Voice spells it as a "
                                "string, which fastaudio reads as True whatever it says)")  # fmt: skip
        n_fft = cfg.get("n_fft") or 1024
        win_length = cfg.get("win_length") or n_fft
        mel = cfg.get("mel", cfg.get("n_mels") is not None)
        if not mel and cfg.get("n_mels") is not None:
            raise ValueError(f"mel=False (a linear spectrogram) with n_mels={cfg['n_mels']}: give one or the other")
        return cls(
            n_fft=n_fft,
            hop_length=cfg.get("hop_length") or win_length // 2,
            n_mels=(cfg.get("n_mels") or 128) if mel else None,
            to_db=bool(cfg.get("to_db", True)),
            sample_rate=cfg.get("sample_rate"),
            f_min=float(cfg.get("f_min") or 0.0),
            f_max=cfg.get("f_max"),
            top_db=cfg.get("top_db"),
            win_length=None if win_length == n_fft else win_length,
        )

    def _mel_fb(self, sample_rate: int) -> Tensor:
        "The mel filter bank `(n_fft // 2 + 1, n_mels)` at `sample_rate` Hz; ValueError for f_min/f_max outside it."
        nyquist = sample_rate / 2
        f_max = self.f_max or nyquist
        if f_max > nyquist:
            raise ValueError(
                f"f_max={self.f_max} Hz is above the Nyquist frequency of sample_rate={sample_rate} Hz ({nyquist:g} Hz)"
            )
        if not 0 <= self.f_min < f_max:
            raise ValueError(f"f_min must be in [0, f_max), got f_min={self.f_min}, f_max={f_max}")
        return torchaudio.functional.melscale_fbanks(self.n_fft // 2 + 1, self.f_min, f_max, self.n_mels, sample_rate)

    @property
    def parameters(self):
        """The names of the tensors fastai's `DataLoader.to(device)` moves: "window", and "mel_fb" with mel bins."""
        return L("window") if self.mel_fb is None else L("window", "mel_fb")

    def to(self, device: str | torch.device):
        """Move the window and filter bank to `device` and return this transform.

        Args:
            device: a `torch.device` or its name, e.g. "cuda".
        """
        for name in self.parameters:
            setattr(self, name, getattr(self, name).to(device))
        return self

    @property
    def settings(self) -> dict[str, Any]:
        "The settings that determine the output values (saved with statistics to detect mismatches)."
        names = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "to_db", "top_db")
        return {name: getattr(self, name) for name in names}

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
            if lengths is None and wav.dim() != 3:  # one clip (channels, samples): a batch of one, cut to its valid frames
                batch = self.encodes(AudioTensor(wav[None], sr=sr, lengths=torch.tensor([wav.shape[-1]])))
                one = batch[0, ..., : int(batch.lengths[0])].clone()
                one.lengths = None
                return one
            if lengths is None:
                lengths = torch.full(wav.shape[:1], wav.shape[-1], dtype=torch.long)
            wav = torch.nn.functional.pad(wav, (0, self.n_fft // 2 + 1 - wav.shape[-1]))
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
                power = power.masked_fill(~padding_mask(frames, power.shape[-1], power.device, ndim=4), 0.0)
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
