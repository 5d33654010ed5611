"""The package's tensor types, `AudioTensor` (waveforms) and `AudioSpectrogram`, the masks of padded
batches (`valid_mask`) and `rewrap`, which hands a result back with its input's metadata."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from fastai.torch_core import TensorBase
from fastcore.foundation import L
from torch import Tensor

from ..functional import padding_mask
from .io import downmix_mono, load_audio_with_subtype, resample

if TYPE_CHECKING:  # annotations only: matplotlib is imported when something is shown
    from matplotlib.axes import Axes

__all__ = ["AudioTensor", "AudioSpectrogram", "valid_mask", "valid_mask_or_none", "rewrap", "RefusePlainTensor"]


class _MetaTensor(TensorBase):
    "TensorBase whose metadata (in `__dict__`) also survives `clone`, which fastai's TensorBase re-creates without it."

    def clone(self, *, memory_format=None):
        return rewrap(super().clone(memory_format=memory_format), self)


class AudioTensor(_MetaTensor):
    """A waveform: `(channels, samples)` for one clip, `(batch, channels, samples)` for a batch.

    `AudioTensor(x, sr=16000)` wraps a tensor (or an array); `AudioTensor.create(path)` loads a file.
    The metadata (`sr`, `lengths`, `subtype` and any other keyword given) lives in the tensor's
    `__dict__` and survives `clone`, pickling and DataLoader workers.

    Attributes:
        sr: the sample rate in Hz; None when unknown.
        lengths: on a batch padded to its longest clip, the valid samples per item, a LongTensor
            `(batch,)`; None when nothing is padded (see `valid_mask`).
        subtype: on a clip from `create`, soundfile's name of the file's sample format (e.g.
            "PCM_16"), so a pipeline rounds it as it rounds the file itself (`LoadAudio`).

    Examples:
        >>> import torch
        >>> x = AudioTensor(torch.zeros(2, 8000), sr=16000)
        >>> x.sr, x.duration, x.nchannels
        (16000, 0.5, 2)
    """

    def __new__(cls, x, sr: int | None = 16000, **kwargs):
        return super().__new__(cls, x, sr=sr, **kwargs)

    @classmethod
    def create(cls, path: str | os.PathLike, sr: int | None = None, mono: bool = True, **kwargs) -> AudioTensor:
        """Load an audio file as an `AudioTensor`, optionally downmixed to mono and resampled.

        Args:
            path: the audio file (see `load_audio`).
            sr: the sample rate to resample to, in Hz; None keeps the file's rate.
            mono: downmix the channels to one (`downmix_mono`).
            **kwargs: more metadata kept on the tensor.

        Returns:
            float32 `(channels, samples)` (`(1, samples)` when `mono`) at `sr` Hz, with the file's `subtype`.

        Raises:
            FileNotFoundError: `path` is missing.
            AudioLoadError: (a ValueError) the file cannot be decoded (see `load_audio`).

        Examples:
            >>> import os, tempfile
            >>> import numpy as np, soundfile as sf
            >>> with tempfile.TemporaryDirectory() as d:
            ...     path = os.path.join(d, "silence.wav")
            ...     sf.write(path, np.zeros((4000, 2), dtype="float32"), 8000, subtype="PCM_16")
            ...     x = AudioTensor.create(path, sr=16000)
            >>> x.shape, x.sr, x.subtype
            (torch.Size([1, 8000]), 16000, 'PCM_16')
        """
        wav, file_sr, subtype = load_audio_with_subtype(path)
        if mono:
            wav = downmix_mono(wav)
        if sr is not None and sr != file_sr:
            wav = resample(wav, file_sr, sr)
        return cls(wav, sr=sr or file_sr, **{"subtype": subtype, **kwargs})

    @property
    def duration(self) -> float:
        """Length in seconds: `samples / sr`."""
        return self.shape[-1] / self.sr

    @property
    def nchannels(self) -> int:
        """Number of channels: the size of the channel axis (1 for a 1-D tensor)."""
        return self.shape[-2] if self.dim() >= 2 else 1

    def play(self, item: int = 0):
        """A notebook audio player of this clip.

        Args:
            item: on a batch `(batch, channels, samples)`, which item to play, without its padding.

        Returns:
            An `IPython.display.Audio` at `sr` Hz; channels as stereo when there are two.
        """
        from IPython.display import Audio

        x = self.as_subclass(Tensor).detach().float().cpu()
        if x.dim() == 3:
            lengths = getattr(self, "lengths", None)
            x = x[item, :, : int(lengths[item])] if lengths is not None else x[item]
        return Audio(x.numpy(), rate=self.sr, normalize=True)

    hear = play  # fastaudio's name

    def show(self, ctx: Axes | None = None, title: str | None = None, **kwargs):
        """Plot the waveform against time in seconds, one line per channel.

        Args:
            ctx: the matplotlib `Axes` to draw on; None makes a new figure.
            title: the plot's title; None for none.
            **kwargs: `figsize` (inches, default `(6, 2)`) for a new figure; the others go to
                matplotlib's `Axes.plot`.

        Returns:
            The matplotlib `Axes`.
        """
        import matplotlib.pyplot as plt

        ax = ctx if ctx is not None else plt.subplots(figsize=kwargs.pop("figsize", (6, 2)))[1]
        x = self.as_subclass(Tensor).detach().float().cpu()
        x = x.reshape(-1, x.shape[-1])
        t = np.arange(x.shape[-1]) / (self.sr or 1)
        for i, ch in enumerate(x):
            ax.plot(t, ch.numpy(), lw=0.5, label=f"ch {i}" if len(x) > 1 else None, **kwargs)
        ax.set(xlabel="time (s)", ylabel="amplitude", xlim=(0, t[-1] if len(t) else 1))
        if title:
            ax.set_title(title)
        return ax


class AudioSpectrogram(_MetaTensor):
    """A spectrogram: `(channels, freq, time)` for one clip, `(batch, channels, freq, time)` batched.

    Made by `AudioToSpec` (fastaudio's name). Its metadata is kept as `AudioTensor`'s.

    Attributes:
        sr: the audio's sample rate, in Hz.
        hop_length: the step between frames, in samples.
        n_fft: the FFT size, in samples.
        n_mels: the number of mel bins; None for a linear frequency axis.
        f_max: the top of the frequency axis, in Hz.
        unit: "dB", "power", "std" after standardization, "[0, 1]" after a min-max or dB range.
        lengths: on a batch made from a padded `AudioTensor`, the valid frames per item (LongTensor
            `(batch,)`: `n // hop_length + 1` for n samples); None when nothing is padded (see `valid_mask`).
    """

    def show(self, ctx: Axes | None = None, title: str | None = None, colorbar: bool = True, **kwargs):
        """Image of the first channel (of a batch's first item): time on x (seconds, or frames without `sr` and
        `hop_length`), frequency in Hz on y, colorbar in `unit`.

        Args:
            ctx: the matplotlib `Axes` to draw on; None makes a new figure.
            title: the plot's title; None for none.
            colorbar: add a colorbar labelled with `unit`.
            **kwargs: `figsize` (inches, default `(5, 3)`) for a new figure and `cmap` (default
                "magma"); the others go to matplotlib's `Axes.imshow`.

        Returns:
            The matplotlib `Axes`.
        """
        import matplotlib.pyplot as plt

        ax = ctx if ctx is not None else plt.subplots(figsize=kwargs.pop("figsize", (5, 3)))[1]
        x = self.as_subclass(Tensor).detach().float().cpu()
        x = x.reshape(-1, *x.shape[-2:])[0]  # the first item's first channel
        sr, hop = getattr(self, "sr", None), getattr(self, "hop_length", None)
        t_end = x.shape[-1] * hop / sr if sr and hop else x.shape[-1]
        f_max = getattr(self, "f_max", None) or (sr / 2 if sr else x.shape[-2])
        n_mels = getattr(self, "n_mels", None)
        im = ax.imshow(
            x.numpy(), origin="lower", aspect="auto", extent=(0, t_end, 0, f_max), cmap=kwargs.pop("cmap", "magma"), **kwargs
        )
        ax.set(xlabel="time (s)" if sr and hop else "frame", ylabel="frequency (Hz" + (", mel-spaced)" if n_mels else ")"))
        if n_mels:
            _mel_ticks(ax, n_mels, f_max)
        if colorbar:
            ax.figure.colorbar(im, ax=ax, label=getattr(self, "unit", None) or "value")
        if title:
            ax.set_title(title)
        return ax


class RefusePlainTensor:
    """Mixin for typed Transforms: called directly on a plain `torch.Tensor`, one raises TypeError saying
    what to wrap it in, rather than return it unchanged (fastai's rule). Inside a batch tuple it passes.

    Attributes:
        wrap_hint: the expected wrapper, named in the error, e.g. `"AudioTensor(x, sr=16000)"`.
    """

    wrap_hint = "AudioTensor(x, sr=16000)"

    def __call__(self, x, *args, **kwargs):
        if type(x) is Tensor:
            raise TypeError(
                f"{type(self).__name__} works on the package's tensor types and got a plain torch.Tensor of shape "
                f"{tuple(x.shape)}; wrap it first: {self.wrap_hint}"
            )
        return super().__call__(x, *args, **kwargs)


def valid_mask_or_none(x: Tensor) -> Tensor | None:
    """`valid_mask(x)` for a padded batch (one with `lengths`), None when nothing is padded (no masking work).

    Args:
        x: a batch, as for `valid_mask`.

    Raises:
        ValueError: `lengths` does not match the batch (see `valid_mask`).
    """
    lengths = getattr(x, "lengths", None)
    if lengths is None:
        return None
    if x.dim() < 3 or tuple(lengths.shape) != (x.shape[0],):
        raise ValueError(
            f"{type(x).__name__} of shape {tuple(x.shape)} carries lengths of shape {tuple(lengths.shape)}; "
            "expected a batch (batch, ..., time) and lengths (batch,)"
        )
    return padding_mask(lengths, x.shape[-1], x.device, ndim=x.dim())


def valid_mask(x: Tensor) -> Tensor:
    """Bool mask of the positions of a batch that hold audio, not padding, from its `lengths`.

    Args:
        x: an `AudioSpectrogram` `(batch, channels, freq, time)` or an `AudioTensor`
            `(batch, channels, samples)`, with or without `lengths`.

    Returns:
        bool `(batch, 1, 1, time)` for a spectrogram, `(batch, 1, samples)` for a waveform, on x's
            device; all True when x has no `lengths` (nothing padded).

    Raises:
        ValueError: `lengths` does not match the batch (e.g. a slice `x[:4]` of a batch keeps the
            batch's lengths: take `x.lengths[:4]` too).

    Examples:
        >>> import torch
        >>> x = AudioTensor(torch.zeros(2, 1, 4), sr=16000, lengths=torch.tensor([4, 2]))
        >>> valid_mask(x)
        tensor([[[ True,  True,  True,  True]],
                [[ True,  True, False, False]]])
    """
    mask = valid_mask_or_none(x)
    if mask is None:
        shape = (x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1]) if x.dim() >= 2 else tuple(x.shape)
        mask = torch.ones(shape, dtype=torch.bool, device=x.device)
    return mask


def rewrap(out: Tensor, like: Tensor, **meta) -> Tensor:
    """`out` as `like`'s tensor type, with a copy of `like`'s metadata (sr, lengths, ...) changed by `meta`.

    Args:
        out: the result, any shape; when it already has `like`'s type (e.g. `like` itself, from a
            transform that worked in place) it is returned with the new metadata.
        like: the tensor whose type and metadata the result takes, e.g. the transform's input.
        **meta: metadata to set on the result, e.g. `unit="std"` or `sr=8000`.

    Returns:
        `out` as `type(like)`, sharing its data.
    """
    res = out if type(out) is type(like) else out.as_subclass(type(like))
    res.__dict__ = {**like.__dict__, **meta}
    return res


def _mel_ticks(ax, n_mels: int, f_max: float) -> None:
    "Label a mel-binned axis (plotted linearly from 0 to f_max) with the Hz of its bins."
    mel_max = 2595 * math.log10(1 + f_max / 700)
    ticks_hz = [f for f in (0, 250, 500, 1000, 2000, 4000, 8000, 16000) if f <= f_max]
    pos = [2595 * math.log10(1 + f / 700) / mel_max * f_max for f in ticks_hz]
    ax.set_yticks(pos, labels=[f"{f:g}" for f in ticks_hz])


def _register_show_methods() -> None:
    "show_batch / show_results / plot_top_losses as a grid of items (fastai makes grids for TensorImage only)."
    from fastai.data.core import get_show_batch_func, show_batch, show_results
    from fastai.interpret import plot_top_losses
    from fastai.vision.data import get_grid

    def _grid(n, nrows, ncols, figsize, x):
        height = 2.8 if isinstance(x, AudioSpectrogram) else 1.8
        ncols = ncols or min(3, n)
        nrows = nrows or math.ceil(n / ncols)
        return get_grid(n, nrows=nrows, ncols=ncols, figsize=figsize or (4.5 * ncols, height * nrows))

    def without_padding(x, samples):
        "The samples with each item's input cut to its valid frames (samples), from the batch's `lengths`."
        lengths = getattr(x, "lengths", None)
        if lengths is None or tuple(lengths.shape) != (x.shape[0],):
            return samples
        res = []
        for s, n in zip(samples, lengths.tolist(), strict=False):
            item = s[0][..., : int(n)]
            item.lengths = None
            res.append((item, *s[1:]))
        return L(res)

    def show_audio_batch(
        x: AudioSpectrogram | AudioTensor, y, samples, ctxs=None, max_n=9, nrows=None, ncols=None, figsize=None, **kwargs
    ):
        samples = without_padding(x, samples)
        if ctxs is None:
            ctxs = _grid(min(len(samples), max_n), nrows, ncols, figsize, x)
        ctxs = get_show_batch_func(object)(x, y, samples, ctxs=ctxs, max_n=max_n, **kwargs)
        ctxs[0].figure.tight_layout()
        return ctxs

    def show_audio_results(
        x: AudioSpectrogram | AudioTensor, y, samples, outs, ctxs=None, max_n=9, nrows=None, ncols=None, figsize=None, **kwargs
    ):
        samples = without_padding(x, samples)
        if ctxs is None:
            ctxs = _grid(min(len(samples), max_n), nrows, ncols, figsize, x)
        for i in range(len(samples[0])):
            ctxs = [b.show(ctx=c, **kwargs) for b, c, _ in zip(samples.itemgot(i), ctxs, range(max_n), strict=False)]
        targets = samples.itemgot(1) if len(samples[0]) > 1 else None
        for i in range(len(outs[0])):
            if i == 0 and targets is not None:  # as fastai's images: the prediction green when right, red when wrong
                ctxs = [
                    b.show(ctx=c, color="green" if str(b) == str(t) else "red", **kwargs)
                    for b, t, c, _ in zip(outs.itemgot(i), targets, ctxs, range(max_n), strict=False)
                ]
            else:
                ctxs = [b.show(ctx=c, **kwargs) for b, c, _ in zip(outs.itemgot(i), ctxs, range(max_n), strict=False)]
        ctxs[0].figure.tight_layout()
        return ctxs

    def plot_audio_top_losses(
        x: AudioSpectrogram | AudioTensor, y, samples, outs, raws, losses, nrows=None, ncols=None, figsize=None, **kwargs
    ):
        "`Interpretation.plot_top_losses`: each item titled prediction / actual / loss / probability."
        samples = without_padding(x, samples)
        ctxs = _grid(len(samples), nrows, ncols, figsize, x)
        for ax, s, o, r, loss in zip(ctxs, samples, outs, raws, losses, strict=False):
            s[0].show(ctx=ax, **kwargs)
            ax.set_title(f"{o[0]} / {s[1]} / {loss.item():.2f} / {r.max().item():.2f}", fontsize=9)
        ctxs[0].figure.suptitle("prediction / actual / loss / probability")
        ctxs[0].figure.tight_layout()
        return ctxs

    show_batch.dispatch(show_audio_batch)
    show_results.dispatch(show_audio_results)
    plot_top_losses.dispatch(plot_audio_top_losses)


_register_show_methods()
