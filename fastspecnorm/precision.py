"""Training precision: bf16 autocast with channels_last on the batch's device (CPU or CUDA), or fp32.

Unlike fastai's `MixedPrecision` (CUDA only), `BF16Autocast` works on any device, for the forward
pass and the loss only: data, statistics, weights and optimizer state stay float32/float64.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.torch_core import to_float

from .presets import PRECISIONS

__all__ = ["PRECISIONS", "BF16Autocast", "bf16_native", "resolve_precision"]


@functools.cache
def _cpu_bf16() -> bool:
    "Whether this CPU computes bf16 natively, from its feature flags (Linux) or sysctl (macOS on Apple silicon)."
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set()
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[1].split())
        return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", "bf16"))  # x86 and aarch64 names
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5)
            return out.stdout.strip() == "1"
        except (OSError, subprocess.SubprocessError):
            return False
    return False


def bf16_native(device=None) -> bool:
    """Whether `device` computes bfloat16 natively.

    CUDA: `torch.cuda.is_bf16_supported()`. CPU: the processor's feature flags (x86 AVX512-BF16 or
    AMX-BF16, aarch64 BF16) as the operating system reports them.

    Args:
        device: a `torch.device`, a string such as "cpu" or "cuda:0", or None (the CPU).

    Returns:
        True where bf16 matrix products run in hardware (False for other device types).
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_bf16()


def resolve_precision(precision: str, device=None) -> str:
    """The precision a run computes in: "fp32" or "bf16".

    Args:
        precision: one of `PRECISIONS`: "fp32", "bf16", or "auto" (bf16 where `bf16_native`).
        device: where the batches go (None: the CPU).

    Returns:
        "fp32" or "bf16".

    Raises:
        ValueError: `precision` is not one of `PRECISIONS`.

    Examples:
        >>> resolve_precision("fp32"), resolve_precision("bf16", "cpu")
        ('fp32', 'bf16')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


class BF16Autocast(Callback):
    """bf16 autocast of the forward pass and loss, on the batch's device type, with channels_last inputs.

    Per batch, the 4-D inputs are made channels_last (the model too, at each fit) and
    `torch.autocast(device_type, torch.bfloat16)` is entered on the batch's device, left after the
    loss; predictions are cast back to float32. With `precision="auto"` a device without native
    bf16 stays in float32. No gradient scaler: bf16 has float32's range.

    Args:
        precision: "bf16" or "auto" (see `resolve_precision`).

    Examples:
        >>> BF16Autocast("bf16").precision
        'bf16'
    """

    order = 10  # as fastai's MixedPrecision: after the callbacks that prepare the batch, before the recorder

    def __init__(self, precision: str = "bf16"):
        resolve_precision(precision)  # ValueError now, not at the first batch
        self.precision = precision
        self._autocast = None

    def before_fit(self):
        if resolve_precision(self.precision, self.dls.device) == "bf16":
            self.learn.model.to(memory_format=torch.channels_last)

    def before_batch(self):
        device = next((x.device for x in self.xb if isinstance(x, torch.Tensor)), torch.device("cpu"))
        if resolve_precision(self.precision, device) != "bf16":
            return
        self.learn.xb = tuple(
            x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4 else x
            for x in self.xb
        )
        self._autocast = torch.autocast(device.type, dtype=torch.bfloat16)
        self._autocast.__enter__()

    def after_pred(self):
        if self._autocast is not None:
            self.learn.pred = to_float(self.pred)

    def after_loss(self):
        if self._autocast is not None:
            self._autocast.__exit__(None, None, None)
            self._autocast = None

    after_batch = after_loss  # also after a cancelled batch, which skips after_loss
