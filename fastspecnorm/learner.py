"""`audio_learner`: a fastai architecture (xResNet18 from scratch by default) on spectrograms, optionally
behind a BatchNorm over frequency bins (`FreqBatchNorm`, PANNs' bn0)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import Tensor, nn

from .audio.check import check_audio_file
from .audio.spectrogram import AudioToSpec
from .audio.tensors import AudioTensor, valid_mask_or_none
from .audio.transforms import array_layout
from .data import MAX_DURATION
from .functional import masked_moments
from .precision import BF16Autocast, resolve_precision

__all__ = ["audio_learner", "esc50_learner", "AudioLearner", "FreqBatchNorm", "n_freq_bins"]


class FreqBatchNorm(nn.Module):
    """BatchNorm over frequency bins as a model's first layer (PANNs' `bn0`).

    One learned shift and scale per bin, statistics over batch, channels and time. Input
    `(batch, channels, freq, time)` -> same shape. Equal to `nn.BatchNorm2d(n_freq)` applied with
    frequency on the channel axis. On a padded batch (an `AudioSpectrogram` with `lengths`) the
    batch statistics are over the valid frames only and padded frames come out as 0.

    Args:
        n_freq: number of frequency bins of the spectrograms (`n_freq_bins(dls)`).
        eps: added to the variance (as `nn.BatchNorm2d`).
        momentum: weight of each batch in the running statistics (as `nn.BatchNorm2d`).

    Attributes:
        bn: the `nn.BatchNorm2d(n_freq)` holding the learned parameters and running statistics.

    Examples:
        >>> FreqBatchNorm(64)(torch.randn(8, 1, 64, 100)).shape
        torch.Size([8, 1, 64, 100])
    """

    def __init__(self, n_freq: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm2d(n_freq, eps=eps, momentum=momentum)

    def forward(self, x: Tensor) -> Tensor:
        mask = valid_mask_or_none(x)
        xs = x.as_subclass(Tensor).transpose(1, 2)  # (batch, freq, channels, time)
        if mask is None:
            return self.bn(xs).transpose(1, 2)
        bn = self.bn
        if self.training:
            moments = masked_moments(xs, (0, 2, 3), mask, dtype=xs.dtype)  # (1, freq, 1, 1) each
            count = moments.count.flatten().clamp_min(1)
            mean, var = moments.mean.flatten(), moments.m2.flatten() / count
            with torch.no_grad():
                bn.num_batches_tracked += 1
                bn.running_mean.lerp_(mean.detach(), bn.momentum)
                bn.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), bn.momentum)
        else:
            mean, var = bn.running_mean, bn.running_var
        out = (xs - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + bn.eps)
        out = out * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
        return out.masked_fill(~mask, 0.0).transpose(1, 2)


def n_freq_bins(dls) -> int:
    """Frequency bins of the spectrograms `dls` yields: from its `AudioToSpec`, else from one batch.

    Args:
        dls: fastai `DataLoaders` of spectrograms `(batch, channels, freq, time)`.

    Returns:
        The number of bins: `n_mels`, or `n_fft // 2 + 1` for a linear frequency axis.
    """
    for t in dls.train.after_batch.fs:
        if isinstance(t, AudioToSpec):
            return t.n_mels or t.n_fft // 2 + 1
    return int(dls.one_batch()[0].shape[-2])


class AudioLearner(Learner):
    """fastai's `Learner` whose `predict` refuses a clip longer than `max_duration` before decoding it.

    `predict` computes one spectrogram and one forward pass over the whole clip (never a crop or
    an average of windows, as fastai's `predict` on any item), so its memory grows with the clip's
    length (measured in docs/failures.md). A longer clip is refused with a `ValueError` naming its
    length and the limit, read from the file's header (nothing decoded) or from the audio given. Everything else is fastai's `Learner` (built by `audio_learner`, kept by
    `export` / `load_learner`, as fastai's `TabularLearner`).

    Attributes:
        max_duration: the longest clip `predict` takes, in seconds (default `MAX_DURATION`, 600 s,
            the loaders' bound on training clips); None: no bound. Set it on a learner, also on
            one from `load_learner`: `learn.max_duration = 3600`.
    """

    max_duration: float | None = MAX_DURATION

    def predict(self, item, rm_type_tfms=None, with_input: bool = False):
        """fastai's `Learner.predict` of one clip, after its length is checked against `max_duration`.

        Args:
            item: a file path (str or Path), an `AudioTensor` `(channels, samples)` (its `sr`), or a
                NumPy array `(samples,)`, `(channels, samples)` or `(samples, channels)` at the
                loaders' rate (see `AudioDataLoaders`); other items (e.g. a table row) go to fastai
                unchecked.
            rm_type_tfms: as in fastai.
            with_input: as in fastai: also return the decoded input.

        Returns:
            fastai's `(label, class index, probabilities)` (with the input first when `with_input`).

        Raises:
            ValueError: the clip is longer than `max_duration` seconds (its length, the limit and the
                ways out named); or as fastai and `LoadAudio` raise for a bad item.
        """
        seconds = _clip_seconds(item, getattr(self.dls, "sample_rate", None))
        if self.max_duration is not None and seconds is not None and seconds > self.max_duration:
            name = f" {os.fspath(item)}" if isinstance(item, str | os.PathLike) else ""
            raise ValueError(
                f"the clip{name} lasts {seconds:,.1f} s, longer than this learner's max_duration={self.max_duration:g} s: "
                "predict computes it whole, in memory that grows with its length; predict shorter pieces of it "
                "(e.g. learn.get_preds(dl=learn.dls.test_dl(pieces))), or set learn.max_duration = None "
                "(or more seconds) to predict it whole"
            )
        return super().predict(item, rm_type_tfms=rm_type_tfms, with_input=with_input)


def _clip_seconds(item, sample_rate: int | None = None) -> float | None:
    """How long the clip `item` lasts, in seconds, without decoding a file; None when it cannot tell.

    Args:
        item: a file path (read from its header: frames / sample rate), an `AudioTensor`
            `(..., samples)` with `sr`, or a NumPy waveform (see `array_layout`) at `sample_rate`.
        sample_rate: the rate of a NumPy array, in Hz (the loaders' rate, `dls.sample_rate`).

    Returns:
        The duration in seconds; None for other items, an unreadable file, an `AudioTensor` without
            `sr`, an array of no known layout or without `sample_rate` (the loading step then
            refuses them with its own message).

    Examples:
        >>> _clip_seconds(np.zeros(48000, dtype=np.float32), sample_rate=16000)
        3.0
        >>> _clip_seconds(AudioTensor(torch.zeros(2, 8000), sr=8000))
        1.0
    """
    if isinstance(item, str | os.PathLike):
        _, facts = check_audio_file(item)
        return facts["frames"] / facts["samplerate"] if facts and facts["samplerate"] > 0 else None
    if isinstance(item, AudioTensor):
        sr = getattr(item, "sr", None)
        return item.shape[-1] / sr if sr and item.dim() else None
    if isinstance(item, np.ndarray) and sample_rate:
        try:
            layout = array_layout(item.shape)
        except ValueError:
            return None
        return item.shape[1 if layout == "(channels, samples)" else 0] / sample_rate
    return None


def audio_learner(
    dls: DataLoaders,
    arch: Callable | None = None,
    cbs: Callback | Sequence[Callback] | None = None,
    input_bn: bool = False,
    precision: str = "fp32",
    max_duration: float | None = MAX_DURATION,
    **kwargs,
):
    """A fastai `Learner` (an `AudioLearner`) over spectrogram loaders.

    `arch` is built for one input channel and `dls.c` outputs, with the accuracy metric and
    fastai's default loss and optimizer (train with `learn.fit_one_cycle(epochs)` or
    `learn.fine_tune`). `learn.predict` on a longer file uses all of it, up to `max_duration`
    seconds. `learn.export()` / `load_learner` keep the whole pipeline, normalization included.

    Args:
        dls: fastai `DataLoaders` of spectrograms `(batch, 1, freq, time)` with `dls.c` classes,
            e.g. from `AudioDataLoaders.from_folder` or `esc50_dataloaders`.
        arch: None (xResNet18 from scratch, `fastai.vision.models.xresnet.xresnet18`), any callable
            taking `c_in` and `n_out` and returning a module, as every fastai xresnet does
            (`xresnet34`, `xresnet50`, `xse_resnext18`, ..., or your own function), or an
            `nn.Module` already built (used as is; its input takes `(batch, 1, freq, time)`).
            Models must pool over time to take clips of any length, as xresnets do. For
            torchvision's pretrained image models build the module yourself (e.g. with fastai's
            `create_vision_model(arch, n_out, n_in=1)`) and pass it.
        cbs: callbacks of the learner, e.g. `StatsCallback()`; None: none.
        input_bn: put `FreqBatchNorm` (a BatchNorm over the frequency bins) before the network,
            the learned alternative to dataset statistics (the `bn` norm).
        precision: "fp32"; "bf16" (bf16 autocast of the forward pass and loss on the batch's
            device, CPU or CUDA, with a channels_last model and inputs: `BF16Autocast`); or
            "auto" (bf16 where the device computes it natively, `bf16_native`, else fp32). The
            statistics pass and every normalization stay float32/float64 either way.
        max_duration: the longest clip `learn.predict` takes, in seconds (600 by default, as the
            loaders' `max_duration`); a longer one is refused before it is decoded, since memory
            grows with the clip's length (see `AudioLearner`). None: no bound.
        **kwargs: further arguments of fastai's `Learner` (e.g. `loss_func`, `opt_func`,
            `metrics`, `wd`); `metrics` defaults to accuracy.

    Returns:
        The `AudioLearner` (a fastai `Learner`).

    Raises:
        TypeError: `arch` is neither a callable nor an `nn.Module`, refuses `c_in` and `n_out`,
            or returns something that is not an `nn.Module`.
        ValueError: `precision` is not "fp32", "bf16" or "auto"; `max_duration` is neither None
            nor a positive number of seconds.
    """
    import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)

    resolve_precision(precision)  # a bad value is refused before the model is built
    if max_duration is not None and (
        isinstance(max_duration, bool) or not (isinstance(max_duration, int | float) and max_duration > 0)
    ):
        raise ValueError(f"max_duration must be positive seconds or None (no bound), got {max_duration!r}")
    from fastai.metrics import accuracy
    from fastai.vision.models.xresnet import xresnet18

    if arch is None:
        arch = xresnet18
    if isinstance(arch, nn.Module):
        model = arch
    elif callable(arch):
        try:
            model = arch(c_in=1, n_out=dls.c)
        except TypeError as e:
            name = getattr(arch, "__name__", type(arch).__name__)
            raise TypeError(
                f"audio_learner builds arch(c_in=1, n_out={dls.c}) and {name} refused it ({e}); pass a function taking "
                "c_in and n_out (fastai's xresnet18, xresnet34, ...) or an nn.Module already built"
            ) from e
        if not isinstance(model, nn.Module):
            raise TypeError(f"arch(c_in=1, n_out={dls.c}) returned a {type(model).__name__}, not an nn.Module")
    else:
        raise TypeError(f"arch must be a callable like fastai's xresnet18 or an nn.Module, got {type(arch).__name__}")
    if input_bn:
        model = nn.Sequential(FreqBatchNorm(n_freq_bins(dls)), model)
    kwargs.setdefault("metrics", accuracy)
    if precision != "fp32":  # the callback also makes the model channels_last, at each fit
        cbs = [*(cbs if isinstance(cbs, list | tuple) else [cbs] if cbs is not None else []), BF16Autocast(precision)]
    learn = AudioLearner(dls, model, cbs=cbs, **kwargs)
    learn.max_duration = max_duration
    return learn


#: The ESC-50 learner is the generic one (contract name kept): xResNet18 from scratch, one input
#: channel, accuracy; `input_bn=True` adds a BatchNorm over frequency bins.
esc50_learner = audio_learner
