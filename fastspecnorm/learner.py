"""`audio_learner`: a fastai architecture (xResNet18 from scratch by default) on spectrograms, optionally
behind a BatchNorm over frequency bins (`FreqBatchNorm`, PANNs' bn0)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .audio.spectrogram import AudioToSpec
from .audio.tensors import valid_mask_or_none
from .functional import masked_moments
from .precision import BF16Autocast, resolve_precision

__all__ = ["audio_learner", "esc50_learner", "FreqBatchNorm", "n_freq_bins"]


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


def audio_learner(dls, arch=None, cbs=None, input_bn: bool = False, precision: str = "fp32", **kwargs):
    """A fastai `Learner` over spectrogram loaders.

    `arch` is built for one input channel and `dls.c` outputs, with the accuracy metric and
    fastai's default loss and optimizer (train with `learn.fit_one_cycle(epochs)` or
    `learn.fine_tune`). `learn.predict` on a longer file uses all of it. `learn.export()` /
    `load_learner` keep the whole pipeline, normalization included.

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
        **kwargs: further arguments of fastai's `Learner` (e.g. `loss_func`, `opt_func`,
            `metrics`, `wd`); `metrics` defaults to accuracy.

    Returns:
        The `Learner`.

    Raises:
        TypeError: `arch` is neither a callable nor an `nn.Module`, refuses `c_in` and `n_out`,
            or returns something that is not an `nn.Module`.
        ValueError: `precision` is not "fp32", "bf16" or "auto".
    """
    import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)
    from fastai.learner import Learner

    resolve_precision(precision)  # a bad value is refused before the model is built
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
    return Learner(dls, model, cbs=cbs, **kwargs)


#: The ESC-50 learner is the generic one (contract name kept): xResNet18 from scratch, one input
#: channel, accuracy; `input_bn=True` adds a BatchNorm over frequency bins.
esc50_learner = audio_learner
