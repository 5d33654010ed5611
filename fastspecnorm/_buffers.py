"""Reuse of batch-sized CPU buffers that nothing references any more.

A fresh batch-sized allocation (20 MB for 64 5-second clips, as waveforms or as spectrograms) is
returned to the operating system when freed and costs about 5000 page faults, zero-filled, when the
next batch touches it: on a 2-core CPU that was a quarter of the data pipeline's time. The batch
pipeline (`AudioDataLoader`'s batches, `AudioToSpec`'s output) takes its buffers from a
`BufferPool` instead, which hands a buffer out again only once every tensor and array built on it
is gone: its reference counts are back to those of a buffer only the pool holds (the NumPy array's
count for arrays; for tensors, the object's reference count and the use counts of its TensorImpl and
its storage, which views, aliases such as `AudioSpectrogram(x)`, NumPy views and tensors saved for
backward raise). A buffer still in use
(kept by the user, a learner's `xb`, `get_preds(with_input=True)`) is never reused; a new one is
allocated. At most `max_items` buffers are kept.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import torch
from torch import Tensor

__all__ = ["BufferPool"]


def _storage_uses(t: Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


class BufferPool:
    """Up to `max_items` CPU buffers (`kind` "numpy" or "torch"), handed out again only when
    unreferenced. Thread-safe. `get(shape, dtype)` returns an uninitialized buffer."""

    def __init__(self, kind: str, max_items: int = 4):
        if kind not in ("numpy", "torch"):
            raise ValueError(f"kind must be 'numpy' or 'torch', got {kind!r}")
        self.kind, self.max_items = kind, max_items
        self._items: list = []
        self._lock = threading.Lock()
        # What an unreferenced buffer's count reads as, measured the same way on a private one.
        self._items.append(self._new((1,), np.float32 if kind == "numpy" else torch.float32))
        self._free_count = self._count(0)
        self._items.clear()

    def _new(self, shape, dtype):
        return np.empty(shape, dtype=dtype) if self.kind == "numpy" else torch.empty(shape, dtype=dtype)

    def _count(self, i: int) -> tuple[int, ...]:
        # Only ever called with the lock held and with no other local reference to the buffer.
        # Python references to the object itself, and for tensors the references to its TensorImpl
        # (`_use_count`) and to its storage (views, aliases, tensors saved for backward).
        if self.kind == "numpy":
            return (sys.getrefcount(self._items[i]),)
        return sys.getrefcount(self._items[i]), self._items[i]._use_count(), _storage_uses(self._items[i])

    def _is_free(self, i: int) -> bool:
        return self._count(i) == self._free_count

    def get(self, shape, dtype):
        shape = tuple(shape)
        with self._lock:
            for i in range(len(self._items)):
                b = self._items[i]
                match = tuple(b.shape) == shape and b.dtype == dtype
                del b  # no local reference while counting
                if match and self._is_free(i):
                    buf = self._items.pop(i)
                    self._items.append(buf)  # most recently used last
                    return buf
            buf = self._new(shape, dtype)
            self._items.append(buf)
            while len(self._items) > self.max_items:  # drop the oldest free buffer, else the oldest
                free = [i for i in range(len(self._items) - 1) if self._is_free(i)]
                self._items.pop(free[0] if free else 0)
            return buf

    def clear(self) -> None:
        "Forget every buffer (those in use stay valid for their users)."
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


# The pools of the batch pipeline: `AudioDataLoader`'s waveform batches and `AudioToSpec`'s CPU output.
WAVEFORM_BATCHES = BufferPool("numpy")
SPECTROGRAM_BATCHES = BufferPool("torch")


def _reset_after_fork() -> None:
    # A forked process (a DataLoader worker) starts with empty pools and fresh locks.
    global WAVEFORM_BATCHES, SPECTROGRAM_BATCHES
    WAVEFORM_BATCHES, SPECTROGRAM_BATCHES = BufferPool("numpy"), BufferPool("torch")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
