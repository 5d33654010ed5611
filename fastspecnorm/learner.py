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

    One learned shift and scale per bin, statistics over batch, channels and time: `nn.BatchNorm2d(n_freq)`
    with frequency on the channel axis, `(batch, channels, freq, time)` -> same shape. On a padded
    batch (with `lengths`) the statistics are over the valid frames only and padded frames come out as 0.

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
        bn, per_bin = self.bn, (1, -1, 1, 1)
        if self.training:
            moments = masked_moments(xs, (0, 2, 3), mask, dtype=xs.dtype)  # (1, freq, 1, 1) each
            count = moments.count.clamp_min(1)
            mean, var = moments.mean, moments.m2 / count
            with torch.no_grad():
                bn.num_batches_tracked += 1
                bn.running_mean.lerp_(mean.flatten(), bn.momentum)
                bn.running_var.lerp_((var * count / (count - 1).clamp_min(1)).flatten(), bn.momentum)
        else:
            mean, var = bn.running_mean.view(per_bin), bn.running_var.view(per_bin)
        out = (xs - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(per_bin) + bn.bias.view(per_bin)
        return out.masked_fill(~mask, 0.0).transpose(1, 2)


def n_freq_bins(dls) -> int:
    """Frequency bins of the spectrograms `dls` yields: from its `AudioToSpec`, else from one batch.

    Args:
        dls: fastai `DataLoaders` of spectrograms `(batch, channels, freq, time)`.

    Returns:
        `n_mels`, or `n_fft // 2 + 1` for a linear frequency axis.
    """
    for t in dls.train.after_batch.fs:
        if isinstance(t, AudioToSpec):
            return t.n_mels or t.n_fft // 2 + 1
    return int(dls.one_batch()[0].shape[-2])


class AudioLearner(Learner):
    """fastai's `Learner` whose `predict` refuses a clip longer than `max_duration` before decoding it.

    `predict` computes the whole clip in one pass, in memory that grows with its length; a longer
    clip is refused with a `ValueError` naming its length and the limit.

    Attributes:
        max_duration: the longest clip `predict` takes, in seconds (default `MAX_DURATION`, 600 s);
            None: no bound. Settable, also on a learner from `load_learner`.
    """

    max_duration: float | None = MAX_DURATION

    def predict(self, item, rm_type_tfms=None, with_input: bool = False):
        """fastai's `Learner.predict` of one clip, after its length is checked against `max_duration`.

        Args:
            item: a file path, an `AudioTensor` `(channels, samples)` (at its `sr`), or a NumPy array
                `(samples,)`, `(channels, samples)` or `(samples, channels)` at the loaders' rate;
                other items go to fastai unchecked.
            rm_type_tfms: as in fastai.
            with_input: as in fastai: also return the decoded input.

        Returns:
            fastai's `(label, class index, probabilities)` (with the input first when `with_input`).

        Raises:
            ValueError: the clip is longer than `max_duration` seconds, or as `LoadAudio` raises.
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
    """Seconds of the clip `item` (a file's header, an `AudioTensor`, or an array at `sample_rate`); None when unknown.

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
    fastai's default loss and optimizer. `learn.predict` takes whole clips up to `max_duration`
    seconds; `learn.export()` / `load_learner` keep the whole pipeline, normalization included.

    Args:
        dls: fastai `DataLoaders` of spectrograms `(batch, 1, freq, time)` with `dls.c` classes,
            e.g. from `AudioDataLoaders.from_folder` or `esc50_dataloaders`.
        arch: None (fastai's `xresnet18` from scratch), any callable taking `c_in` and `n_out` and
            returning a module (every fastai xresnet, or your own function), or an `nn.Module`
            already built (used as is; input `(batch, 1, freq, time)`). Models must pool over time
            to take clips of any length, as xresnets do.
        cbs: callbacks of the learner, e.g. `StatsCallback()`; None: none.
        input_bn: put `FreqBatchNorm` (a BatchNorm over the frequency bins) before the network,
            the learned alternative to dataset statistics (the `bn` norm).
        precision: "fp32"; "bf16" (`BF16Autocast`: bf16 autocast of the forward pass and loss on
            CPU or CUDA, channels_last); or "auto" (bf16 where `bf16_native`, else fp32). Statistics
            and normalizations stay float32/float64 either way.
        max_duration: the longest clip `learn.predict` takes, in seconds (see `AudioLearner`);
            None: no bound.
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

    arch = xresnet18 if arch is None else arch
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


#: The old name of `audio_learner`, kept for the contract.
esc50_learner = audio_learner
