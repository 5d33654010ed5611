"""experiments/fsdd_stats_fraction.py: a subset's statistics merged from per-clip moments equal
`collect_stats` over those clips alone and NumPy float64 over their valid frames, on generated
padded batches (no FSDD needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from fastspecnorm import AudioSpectrogram, collect_stats

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "fsdd_stats_fraction.py"
_spec = importlib.util.spec_from_file_location("fsdd_stats_fraction", SCRIPT)
fsf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fsf)

N_CLIPS, FREQ, MAX_T, BS = 23, 5, 17, 4


def padded_batches(seed: int):
    """Float32 clips `(1, FREQ, length)` in dB-like values (mean 10 + bin, std 15), lengths
    1..MAX_T, in padded batches of BS carrying `lengths` (AudioSpectrogram keeps float32, as the
    loaders give); padding is NaN, so a counted padding value shows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, MAX_T + 1, (N_CLIPS,), generator=g)
    clips = [(10 + torch.arange(FREQ, dtype=torch.float64)[:, None] + 15 * torch.randn(1, FREQ, int(n), generator=g, dtype=torch.float64)).float()
             for n in lengths]  # fmt: skip
    batches = []
    for i in range(0, N_CLIPS, BS):
        part, lens = clips[i : i + BS], lengths[i : i + BS]
        x = torch.full((len(part), 1, FREQ, int(lens.max())), float("nan"))
        for j, c in enumerate(part):
            x[j, :, :, : c.shape[-1]] = c
        batches.append((AudioSpectrogram(x, lengths=lens.clone()), torch.zeros(len(part))))
    return clips, batches


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
@pytest.mark.parametrize("subset", [[7], [0, 22], [3, 4, 9, 10, 21], list(range(N_CLIPS))])
def test_subset_merge_equals_collect_stats_and_numpy(seed, red_dims, subset):
    clips, batches = padded_batches(seed)
    merged = fsf.merge_clips(fsf.clip_moments(batches, red_dims), subset)
    # independent reference 1: collect_stats over the chosen clips alone, one unpadded clip per batch
    ref = collect_stats([c[None] for c in (clips[i] for i in subset)], red_dims, progress=False)
    # independent reference 2: NumPy float64 over the chosen clips' frames, concatenated in time
    cat = np.concatenate([clips[i].numpy().astype(np.float64) for i in subset], axis=-1)  # (1, FREQ, frames)
    axes = (0, 1, 2) if red_dims == (0, 2, 3) else (0, 2)
    np_mean, np_std = cat.mean(axis=axes), cat.std(axis=axes)
    expected_shape = (1, 1, 1, 1) if red_dims == (0, 2, 3) else (1, 1, FREQ, 1)
    assert merged.count.shape == ref.count.shape == expected_shape
    torch.testing.assert_close(merged.count, ref.moments.count, rtol=0, atol=0)
    # float64 sums of the same ~100 values in other orders: agree to ~1e-15 relative; 1e-12 is ample
    torch.testing.assert_close(merged.mean, ref.moments.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.m2, ref.moments.m2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.mean.numpy().reshape(np_mean.shape), np_mean, rtol=1e-12, atol=1e-12)
    std = fsf.moments_std(merged).numpy().reshape(np_std.shape)
    np.testing.assert_allclose(std, np_std, rtol=1e-12)


def test_subset_errors_by_hand():
    # full set: clip A = [0, 2], clip B = [4, 6, 8, 10] (one bin): mean 5, std sqrt(35/3)
    batches = [(AudioSpectrogram(torch.tensor([[[[0.0, 2, 0, 0]]], [[[4.0, 6, 8, 10]]]], dtype=torch.float64),
                                 lengths=torch.tensor([2, 4])),)]  # fmt: skip
    per_clip = fsf.clip_moments(batches, (0, 1, 3))
    full = fsf.merge_clips(per_clip, [0, 1])
    full_std = fsf.moments_std(full)
    assert float(full.mean) == 5.0 and float(full_std) == pytest.approx((35 / 3) ** 0.5, rel=1e-15)
    err = fsf.subset_errors(fsf.merge_clips(per_clip, [1]), full.mean, full_std)  # clip B: mean 7, std sqrt(5)
    assert err["mean_db"] == pytest.approx(2.0, rel=1e-15)
    assert err["std_rel"] == pytest.approx(1 - (5 / (35 / 3)) ** 0.5, rel=1e-12)
    assert err["mean_sd"] == pytest.approx(2.0 / (35 / 3) ** 0.5, rel=1e-12)
    assert fsf.subset_errors(full, full.mean, full_std) == {"mean_db": 0.0, "std_rel": 0.0, "mean_sd": 0.0}


def test_bad_arguments_raise():
    _, batches = padded_batches(0)
    with pytest.raises(ValueError, match="batch dimension 0"):
        fsf.clip_moments(batches, (2, 3))
    with pytest.raises(ValueError, match="no batches"):
        fsf.clip_moments([], (0, 2, 3))
    with pytest.raises(ValueError, match="at least one clip"):
        fsf.merge_clips(fsf.clip_moments(batches, (0, 2, 3)), [])
