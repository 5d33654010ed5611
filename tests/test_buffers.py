"""Tests for fastspecnorm._buffers: a batch buffer is handed out again only when nothing uses it.

A wrongly reused buffer would silently overwrite data a user still holds, so every way of holding
on to a buffer is tried, and whole epochs of batches kept in a list are checked against batches
copied one at a time.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from fastai.torch_core import set_seed
from torch import nn

import fastspecnorm._buffers as buffers_module
from fastspecnorm import AudioSpectrogram, AudioTensor, AudioToSpec, esc50_dataloaders
from fastspecnorm._buffers import BufferPool


def _holders_torch():
    "Ways to keep a tensor buffer in use (each returns what the caller keeps)."
    return {
        "the object": lambda b: b,
        "a view": lambda b: b.view(-1),
        "a slice": lambda b: b[:1],
        "an AudioSpectrogram alias": lambda b: AudioSpectrogram(b, sr=1),
        "a NumPy view": lambda b: b.numpy(),
        "a tensor saved for backward": lambda b: nn.Linear(3, 2)(b).sum(),
    }


@pytest.mark.parametrize("how", list(_holders_torch()))
def test_torch_buffer_in_use_is_never_handed_out_and_is_reused_once_released(how):
    pool = BufferPool("torch")
    buf = pool.get((4, 3), torch.float32)
    buf.fill_(7.0)
    kept = _holders_torch()[how](buf)
    first_id = id(buf)
    del buf
    other = pool.get((4, 3), torch.float32)
    assert id(other) != first_id  # a new buffer, not the one in use
    other.fill_(-1.0)  # writing to it leaves the kept one alone
    if how == "a tensor saved for backward":
        kept.backward()
    else:
        assert (torch.as_tensor(kept) == 7.0).all()
    del kept, other
    again = pool.get((4, 3), torch.float32)
    assert id(again) == first_id  # released buffers come back (oldest matching first)


@pytest.mark.parametrize("how", ["the array", "a view", "a tensor from_numpy", "a view of that tensor"])
def test_numpy_buffer_in_use_is_never_handed_out(how):
    pool = BufferPool("numpy")
    buf = pool.get((5,), np.float32)
    buf[:] = 3.0
    kept = {
        "the array": lambda b: b,
        "a view": lambda b: b[1:],
        "a tensor from_numpy": lambda b: torch.from_numpy(b),
        "a view of that tensor": lambda b: AudioTensor(torch.from_numpy(b), sr=1)[1:],
    }[how](buf)
    first_id = id(buf)
    del buf
    other = pool.get((5,), np.float32)
    assert id(other) != first_id
    other[:] = -1.0
    assert (np.asarray(kept) == 3.0).all()
    del kept, other
    assert id(pool.get((5,), np.float32)) == first_id  # released: reused (most recently freed match first)


def test_pool_keeps_at_most_max_items_and_matches_shape_and_dtype():
    pool = BufferPool("torch", max_items=3)
    held = [pool.get((2, i + 1), torch.float32) for i in range(5)]
    assert len(pool) == 3
    a = pool.get((2, 1), torch.float64)
    assert a.dtype == torch.float64 and a.shape == (2, 1)
    del held, a
    with pytest.raises(ValueError, match="kind"):
        BufferPool("list")


def test_pool_is_thread_safe():
    pool = BufferPool("numpy", max_items=4)
    errors = []

    def work(k):
        for _ in range(200):
            b = pool.get((64,), np.float32)
            b[:] = k
            if not (b == k).all():  # another thread got the same buffer at the same time
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_audio_to_spec_outputs_kept_by_the_caller_stay_intact():
    tfm = AudioToSpec()
    g = torch.Generator().manual_seed(0)
    wavs = [torch.randn(3, 1, 4000, generator=g) * (i + 1) for i in range(4)]
    kept = [tfm(AudioTensor(w, sr=16000)) for w in wavs]  # all alive at once: four buffers
    assert len({k.data_ptr() for k in kept}) == 4
    for w, k in zip(wavs, kept, strict=True):
        assert torch.equal(k.as_subclass(torch.Tensor), tfm(AudioTensor(w, sr=16000)).as_subclass(torch.Tensor))


def test_epochs_of_batches_kept_in_a_list_equal_batches_copied_one_by_one(tiny_esc50):
    "The loader's waveform buffers and AudioToSpec's outputs are recycled only once released."
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, num_workers=0, duration=1.0)
    for dl in (dls.valid.new(bs=1), dls.train.new(shuffle=False)):  # random crops, fixed order
        set_seed(0)  # the same shuffle and random crops for both passes
        kept = list(dl)  # every batch alive at once
        set_seed(0)
        copied = [(x.clone(), y.clone()) for x, y in dl]  # each released before the next is made
        assert len(kept) == len(copied) > 1
        for (xk, yk), (xc, yc) in zip(kept, copied, strict=True):
            assert torch.equal(xk.as_subclass(torch.Tensor), xc.as_subclass(torch.Tensor)) and torch.equal(yk, yc)
        assert len({x.data_ptr() for x, _ in kept}) == len(kept)


def test_pools_are_fresh_in_a_forked_process():
    before = (buffers_module.WAVEFORM_BATCHES, buffers_module.SPECTROGRAM_BATCHES)
    try:
        buffers_module._reset_after_fork()  # what os.register_at_fork runs in the child
        assert buffers_module.WAVEFORM_BATCHES is not before[0] and len(buffers_module.WAVEFORM_BATCHES) == 0
        assert buffers_module.SPECTROGRAM_BATCHES is not before[1] and len(buffers_module.SPECTROGRAM_BATCHES) == 0
    finally:
        buffers_module.WAVEFORM_BATCHES, buffers_module.SPECTROGRAM_BATCHES = before
