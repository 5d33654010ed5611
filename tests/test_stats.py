"""Tests for fastspecnorm.stats: StatsRecorder and collect_stats against NumPy float64, also over the
loaders' padded batches (padding never counted), and the statistics pass over a loader (`stats_loader`,
of fastspecnorm.callback, with `collect_stats(fraction)`) against the WAV files in NumPy float64.

The reference is NumPy float64 over the concatenated (float32) data, written position by position.
The contract asks for a relative 1e-6; the recorder's float64 accumulation is far better than that,
and its float32 outputs add a relative rounding of at most 6e-8.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
import torchaudio
from article_merge import naive_merge_mean_std
from fasttransform import Transform
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import TensorDataset

import fastspecnorm.functional as SF
from fastspecnorm import (
    AudioDataLoaders,
    AudioSpectrogram,
    AudioTensor,
    SpecNormalize,
    StatsRecorder,
    collect_stats,
    esc50_dataloaders,
    stats_loader,
)
from fastspecnorm.stats import STATS_FORMAT

RTOL = 1e-6
SEEDS = [0, 1, 2]
RED_DIMS = [(0, 2, 3), (0, 1, 3), (0, 3), (0,), (0, 2), (0, 1, 2, 3)]
SPLITS = [(1, 7, 3), (11,), (2, 2, 2, 5), (5, 1)]

N_FFT, HOP = 256, 128
SPEC = {"n_fft": N_FFT, "hop_length": HOP}

DB_ATOL = 2e-3  # dB, see the module docstring
STATS_RTOL = 1e-5


# ---------------------------------------------------------------------------------------------
# the reference: NumPy float64, one kept position at a time


def ref_mean_std(batches, red_dims, masks=None):
    """Mean and population std per kept position over all batches (masked values excluded)."""
    ndim = batches[0].ndim
    kept = [d for d in range(ndim) if d not in red_dims]
    kept_shape = [batches[0].shape[d] for d in kept]
    mean = np.zeros([1 if d in red_dims else batches[0].shape[d] for d in range(ndim)])
    std = np.zeros_like(mean)
    for pos in np.ndindex(*kept_shape):
        values = []
        for i, b in enumerate(batches):
            index = [slice(None)] * ndim
            for d, p in zip(kept, pos, strict=True):
                index[d] = p
            v = np.asarray(b, dtype=np.float64)[tuple(index)]
            if masks is not None and masks[i] is not None:
                m = np.broadcast_to(masks[i], b.shape)[tuple(index)]
                v = v[m]
            values.append(v.ravel())
        allv = np.concatenate(values)
        out = [0] * ndim
        for d, p in zip(kept, pos, strict=True):
            out[d] = p
        mean[tuple(out)] = allv.mean()
        std[tuple(out)] = allv.std()
    return mean, std


def make_batches(split, red_dims, seed, channels=2, freq=5, time=6, loc=-40.0, scale=12.0):
    """float32 batches of shape (n, channels, freq, time); reduced non-batch dims vary in size."""
    rng = np.random.default_rng(seed)
    batches = []
    for i, n in enumerate(split):
        shape = [n, channels, freq, time]
        for d in (1, 2, 3):
            if d in red_dims:
                shape[d] = max(1, shape[d] + (i * 3) % 5 - 1)  # e.g. time lengths 5, 8, 6, ...
        b = rng.normal(loc, scale, size=shape) + rng.normal(0, 5, size=(1, channels if 1 not in red_dims else 1, 1, 1))
        batches.append(b.astype(np.float32))
    return batches


def record(batches, red_dims, masks=None, **kw):
    rec = StatsRecorder(red_dims, **kw)
    for i, b in enumerate(batches):
        rec.update(torch.from_numpy(b), None if masks is None or masks[i] is None else torch.from_numpy(masks[i]))
    return rec


def assert_matches_reference(rec, batches, red_dims, masks=None):
    mean, std = ref_mean_std(batches, red_dims, masks)
    assert rec.mean.dtype == torch.float32 and rec.std.dtype == torch.float32
    assert tuple(rec.mean.shape) == mean.shape and tuple(rec.std.shape) == std.shape
    np.testing.assert_allclose(rec.mean.numpy(), mean, rtol=RTOL, atol=0)
    np.testing.assert_allclose(rec.std.numpy(), std, rtol=RTOL, atol=0)


# ---------------------------------------------------------------------------------------------
# exactness


@pytest.mark.parametrize("red_dims", RED_DIMS)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("seed", SEEDS)
def test_recorder_matches_numpy_on_concatenation(red_dims, split, seed):
    batches = make_batches(split, red_dims, seed)
    rec = record(batches, red_dims)
    assert_matches_reference(rec, batches, red_dims)
    assert rec.n_batches == len(split)


def test_keepdim_shape_of_the_contract():
    rec = StatsRecorder(red_dims=(0, 1, 3))
    rec.update(torch.randn(3, 1, 201, 17))
    rec.update(torch.randn(1, 1, 201, 40))  # other batch size and length: reduced dims may vary
    assert rec.mean.shape == (1, 1, 201, 1) and rec.std.shape == (1, 1, 201, 1)
    assert StatsRecorder((0, 2, 3)).update(torch.randn(2, 3, 8, 9)).mean.shape == (1, 3, 1, 1)


def test_hand_worked_values():
    # values 1, 2, 3, 4 and 10 at one position: mean 4, population variance (9+4+1+0+36)/5 = 10
    rec = StatsRecorder(red_dims=(0, 1))
    rec.update(torch.tensor([[1.0, 2.0]]))
    rec.update(torch.tensor([[3.0], [4.0], [10.0]]))
    assert float(rec.mean) == 4.0
    assert math.isclose(float(rec.std), math.sqrt(10.0), rel_tol=1e-7)
    assert float(rec.count) == 5.0


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3), (0, 3)])
@pytest.mark.parametrize("seed", SEEDS)
def test_masks_exclude_padding(red_dims, seed):
    rng = np.random.default_rng(seed)
    batches, masks = [], []
    for n in (1, 7, 3):
        time = 9
        b = rng.normal(-30, 8, size=(n, 2, 4, time)).astype(np.float32)
        lengths = rng.integers(1, time + 1, size=n)
        mask = np.arange(time)[None, None, None, :] < lengths[:, None, None, None]  # (n, 1, 1, time)
        b[~np.broadcast_to(mask, b.shape)] = 1e6  # padding that would wreck the statistics if counted
        batches.append(b)
        masks.append(mask)
    rec = record(batches, red_dims, masks)
    assert_matches_reference(rec, batches, red_dims, masks)
    assert float(rec.std.max()) < 100  # the 1e6 padding was not counted


@pytest.mark.parametrize("seed", SEEDS)
def test_full_shape_random_masks_and_unmasked_batches_mix(seed):
    rng = np.random.default_rng(seed)
    red_dims = (0, 1, 3)
    batches = [rng.normal(5, 3, size=(n, 1, 6, 7)).astype(np.float32) for n in (4, 2, 5)]
    masks = [rng.random(b.shape) < 0.6 for b in batches]
    masks[1] = None  # an unmasked batch counts every value
    rec = record(batches, red_dims, masks)
    assert_matches_reference(rec, batches, red_dims, masks)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_in_padding_is_ignored(bad):
    x = torch.randn(3, 1, 4, 6)
    mask = torch.ones(3, 1, 1, 6, dtype=torch.bool)
    mask[1, ..., 4:] = False
    x[1, ..., 4:] = bad  # padding holds NaN / Inf: not counted, so no error and no effect
    rec = StatsRecorder((0, 2, 3)).update(x, mask)
    m = np.broadcast_to(mask.numpy(), x.shape)
    ref = x.numpy().astype(np.float64)[m]
    assert torch.isfinite(rec.mean).all() and torch.isfinite(rec.std).all()
    np.testing.assert_allclose(float(rec.mean), ref.mean(), rtol=RTOL)
    np.testing.assert_allclose(float(rec.std), ref.std(), rtol=RTOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("split", [(1, 7, 3), (16, 16, 16)])
def test_large_offset_where_float32_sum_of_squares_fails(seed, split):
    """10000 + N(0, 1): E[x^2] - E[x]^2 in float32 subtracts two numbers near 1e8 whose ulp is 8,
    so its variance is mostly rounding error; the recorder stays within 1e-6 of NumPy float64."""
    rng = np.random.default_rng(seed)
    batches = [(10000.0 + rng.normal(0, 1, size=(n, 1, 16, 50))).astype(np.float32) for n in split]
    rec = record(batches, (0, 2, 3))
    allv = np.concatenate([b.ravel() for b in batches]).astype(np.float64)
    np.testing.assert_allclose(float(rec.mean), allv.mean(), rtol=RTOL)
    np.testing.assert_allclose(float(rec.std), allv.std(), rtol=RTOL)

    # the naive float32 formula, batch sums accumulated in float32
    s = torch.zeros((), dtype=torch.float32)
    ss = torch.zeros((), dtype=torch.float32)
    for b in batches:
        t = torch.from_numpy(b)
        s, ss = s + t.sum(), ss + (t * t).sum()
    n = allv.size
    naive_var = ss / n - (s / n) ** 2
    naive_std = math.sqrt(max(float(naive_var), 0.0))
    assert abs(naive_std - allv.std()) / allv.std() > 1e-2


@pytest.mark.parametrize("seed", SEEDS)
def test_recorder_exact_where_article_merge_is_not(seed):
    "The article's merge (unbiased per-batch std, item-count weights) vs the recorder, same batches."
    rng = np.random.default_rng(seed)
    batches = [
        rng.normal(loc, 4.0, size=(n, 1, 6, t)).astype(np.float32) for n, t, loc in ((1, 4, -20.0), (7, 9, -35.0), (3, 6, -25.0))
    ]
    truth = np.concatenate([b.ravel() for b in batches]).astype(np.float64)
    rec = record(batches, (0, 1, 2, 3))
    np.testing.assert_allclose(float(rec.std), truth.std(), rtol=RTOL)
    np.testing.assert_allclose(float(rec.mean), truth.mean(), rtol=RTOL)
    means = [torch.from_numpy(b).mean() for b in batches]
    stds = [torch.from_numpy(b).std() for b in batches]  # torch.std is unbiased by default, as in the article
    naive_mean, naive_std = naive_merge_mean_std(means, stds, [b.shape[0] for b in batches])
    assert abs(float(naive_std) - truth.std()) / truth.std() > 1e-3
    assert abs(float(naive_mean) - truth.mean()) / abs(truth.mean()) > 1e-3


# ---------------------------------------------------------------------------------------------
# merge


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3), (0, 3)])
@pytest.mark.parametrize("cut", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_merge_equals_one_recorder_over_concatenation(red_dims, cut, seed):
    batches = make_batches((1, 7, 3), red_dims, seed)
    left, right = record(batches[:cut], red_dims), record(batches[cut:], red_dims)
    left_before = [t.clone() for t in left.moments]
    merged = left.merge(right)
    single = record(batches, red_dims)
    for a, b in zip(merged.moments, single.moments, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-9)
    assert_matches_reference(merged, batches, red_dims)
    assert merged.n_batches == 3 and merged.red_dims == single.red_dims
    assert all(torch.equal(a, b) for a, b in zip(left_before, left.moments, strict=True))  # merge is pure


def test_merge_with_empty_recorder_and_errors():
    full = StatsRecorder((0, 2, 3)).update(torch.randn(4, 1, 3, 5))
    empty = StatsRecorder((0, 2, 3))
    for merged in (full.merge(empty), empty.merge(full)):
        assert torch.equal(merged.mean, full.mean) and torch.equal(merged.std, full.std)
    with pytest.raises(ValueError, match=re.escape("red_dims (0, 2, 3) and (0, 1, 3)")):
        full.merge(StatsRecorder((0, 1, 3)).update(torch.randn(1, 1, 3, 5)))
    with pytest.raises(ValueError, match=re.escape("shapes (1, 1, 1, 1) and (1, 2, 1, 1)")):
        full.merge(StatsRecorder((0, 2, 3)).update(torch.randn(1, 2, 3, 5)))
    with pytest.raises(TypeError, match="StatsRecorder"):
        full.merge({"mean": 0})


# ---------------------------------------------------------------------------------------------
# all_reduce without torch.distributed


def test_all_reduce_is_a_no_op_without_distributed():
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    rec = StatsRecorder((0, 1, 3)).update(torch.randn(3, 1, 4, 5)).update(torch.randn(2, 1, 4, 8))
    before = [t.clone() for t in rec.moments]
    assert rec.all_reduce() is rec
    assert all(torch.equal(a, b) for a, b in zip(before, rec.moments, strict=True)) and rec.n_batches == 2
    empty = StatsRecorder()
    assert empty.all_reduce() is empty and empty.moments is None


# ---------------------------------------------------------------------------------------------
# save / load


SETTINGS = {"spectrogram": {"n_fft": 400, "hop_length": 200, "n_mels": None, "to_db": True}, "fraction": 0.25, "note": "ä"}


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
def test_save_load_round_trip_is_exact(tmp_path, red_dims):
    batches = make_batches((1, 7, 3), red_dims, seed=4)
    rec = record(batches, red_dims, settings=SETTINGS)
    path = rec.save(tmp_path / "sub" / "stats.npz")
    assert path.is_file()
    loaded = StatsRecorder.load(path)
    assert loaded.red_dims == rec.red_dims == tuple(red_dims)
    assert loaded.settings == SETTINGS
    assert loaded.ndim == rec.ndim and loaded.n_batches == rec.n_batches
    for a, b in zip(loaded.moments, rec.moments, strict=True):
        assert a.dtype == torch.float64 and torch.equal(a, b)
    assert torch.equal(loaded.mean, rec.mean) and torch.equal(loaded.std, rec.std) and torch.equal(loaded.count, rec.count)
    # a loaded recorder keeps accumulating as if it had never been saved
    extra = make_batches((2,), red_dims, seed=5)[0]
    if red_dims == (0, 2, 3):
        loaded.update(torch.from_numpy(extra))
        rec.update(torch.from_numpy(extra))
        assert torch.equal(loaded.mean, rec.mean) and torch.equal(loaded.std, rec.std)
    assert not list(tmp_path.glob("sub/*.tmp"))  # the atomic write leaves no temporary file


def test_save_needs_data_and_json_settings(tmp_path):
    with pytest.raises(ValueError, match="seen no data"):
        StatsRecorder().save(tmp_path / "s.npz")
    rec = StatsRecorder(settings={"bad": object()}).update(torch.randn(2, 1, 3, 4))
    with pytest.raises(TypeError, match="JSON-serializable"):
        rec.save(tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


def test_load_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        StatsRecorder.load(path)


def _write_corrupt(path, kind):
    if kind == "text":
        path.write_text("mean,std\n1,2\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        StatsRecorder().update(torch.randn(2, 1, 3, 4)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "other_npz":
        np.savez(path, mean=np.zeros(3), std=np.ones(3))
    elif kind == "other_format":
        header = np.array('{"format": "someone-else/2", "red_dims": [0, 2, 3]}')
        np.savez(path, header=header, count=np.ones(1), mean=np.zeros(1), m2=np.zeros(1))
    elif kind == "inconsistent":
        header = np.array(f'{{"format": "{STATS_FORMAT}", "red_dims": [0, 2, 3]}}')
        np.savez(path, header=header, count=np.ones(2), mean=np.zeros(3), m2=np.zeros(3))
    elif kind == "negative":
        header = np.array(f'{{"format": "{STATS_FORMAT}", "red_dims": [0, 2, 3]}}')
        np.savez(path, header=header, count=np.ones(2), mean=np.zeros(2), m2=-np.ones(2))
    elif kind == "nan":
        header = np.array(f'{{"format": "{STATS_FORMAT}", "red_dims": [0, 2, 3]}}')
        np.savez(path, header=header, count=np.ones(2), mean=np.array([0.0, np.nan]), m2=np.zeros(2))


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "other_npz", "other_format", "inconsistent", "negative", "nan"])
def test_load_wrong_or_corrupt_file_raises_value_error_naming_it(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    _write_corrupt(path, kind)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        StatsRecorder.load(path)
    if kind == "other_format":
        assert "someone-else/2" in str(info.value) and STATS_FORMAT in str(info.value)
    assert str(info.value).endswith("delete it to recompute") and "\n" not in str(info.value)


def test_statistics_file_truncated_anywhere_is_refused_naming_it_and_the_fix(tmp_path):
    "A file cut at any byte (a copy or a disk that gave out): one ValueError, never a zipfile or NumPy error."
    path = tmp_path / "fold1-global.npz"
    StatsRecorder(red_dims=(0, 1, 3)).update(torch.randn(2, 1, 5, 7)).save(path)
    whole = path.read_bytes()
    for n in range(len(whole)):
        path.write_bytes(whole[:n])
        with pytest.raises(ValueError) as info:
            StatsRecorder.load(path)
        message = str(info.value)
        assert message.startswith(str(path)) and message.endswith("delete it to recompute") and "\n" not in message, (n, message)


@pytest.mark.parametrize(
    "header",
    [
        "[1, 2]",
        '"text"',
        f'{{"format": "{STATS_FORMAT}"}}',
        f'{{"format": "{STATS_FORMAT}", "red_dims": ["a"]}}',
        f'{{"format": "{STATS_FORMAT}", "red_dims": [0, 2, 3], "n_batches": "x"}}',
    ],
)
def test_statistics_file_with_a_bad_header_is_refused_naming_it(tmp_path, header):
    path = tmp_path / "bad.npz"
    np.savez(path, header=np.array(header), count=np.ones(2), mean=np.zeros(2), m2=np.zeros(2))
    with pytest.raises(ValueError) as info:
        StatsRecorder.load(path)
    assert str(path) in str(info.value) and str(info.value).endswith("delete it to recompute")


# ---------------------------------------------------------------------------------------------
# bad input to update


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_raises(bad):
    rec = StatsRecorder((0, 2, 3)).update(torch.randn(2, 1, 3, 4))
    before = [t.clone() for t in rec.moments]
    x = torch.randn(2, 1, 3, 4)
    x[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"\(2, 1, 3, 4\) has 1 NaN or Inf"):
        rec.update(x)
    assert all(torch.equal(a, b) for a, b in zip(before, rec.moments, strict=True))  # the bad batch left no trace


def test_mismatched_kept_dims_raise_with_both_shapes():
    rec = StatsRecorder((0, 1, 3)).update(torch.randn(2, 1, 64, 10))
    with pytest.raises(ValueError) as info:
        rec.update(torch.randn(2, 1, 128, 10))
    msg = str(info.value)
    assert "(2, 1, 128, 10)" in msg and "(1, 1, 128, 1)" in msg and "(1, 1, 64, 1)" in msg
    with pytest.raises(ValueError, match=re.escape("batch has 5 dimensions (shape (2, 1, 64, 10, 1)); earlier batches had 4")):
        rec.update(torch.randn(2, 1, 64, 10, 1))


@pytest.mark.parametrize(
    "red_dims, error, pattern",
    [
        ((0, 4), ValueError, "does not fit input of shape"),
        ((), ValueError, "empty"),
        ((0, -1), ValueError, "non-negative"),
        ((0, 0), ValueError, "repeated"),
        (5, TypeError, "sequence of ints"),
    ],
)
def test_bad_red_dims(red_dims, error, pattern):
    with pytest.raises(error, match=pattern):
        StatsRecorder(red_dims).update(torch.randn(2, 1, 3, 4))


def test_bad_tensor_and_mask_types():
    rec = StatsRecorder()
    with pytest.raises(TypeError, match="floating-point"):
        rec.update(torch.ones(2, 1, 3, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        rec.update(np.ones((2, 1, 3, 4)))
    with pytest.raises(TypeError, match="bool"):
        rec.update(torch.randn(2, 1, 3, 4), mask=torch.ones(2, 1, 3, 4))
    with pytest.raises(ValueError, match=re.escape("mask of shape (2, 1, 3, 5) does not broadcast to x of shape (2, 1, 3, 4)")):
        rec.update(torch.randn(2, 1, 3, 4), mask=torch.ones(2, 1, 3, 5, dtype=torch.bool))


def test_empty_batches_and_empty_recorder():
    rec = StatsRecorder()
    with pytest.raises(ValueError, match="seen no data"):
        rec.mean  # noqa: B018
    rec.update(torch.zeros(0, 1, 3, 4))
    assert rec.moments is None
    rec.update(torch.randn(2, 1, 3, 4) + 1)
    mean = rec.mean.clone()
    rec.update(torch.zeros(0, 1, 3, 4))
    assert torch.equal(rec.mean, mean) and rec.n_batches == 1


def test_update_accepts_tensor_subclasses_and_does_not_modify_input():
    x = AudioSpectrogram(torch.randn(3, 1, 4, 5), sr=16000, unit="dB")
    before = x.clone()
    rec = StatsRecorder((0, 1, 3)).update(x)
    assert type(rec.mean) is torch.Tensor and type(rec.moments.mean) is torch.Tensor
    assert torch.equal(x, before)
    mean, std = ref_mean_std([x.as_subclass(torch.Tensor).numpy()], (0, 1, 3))
    np.testing.assert_allclose(rec.mean.numpy(), mean, rtol=RTOL)
    np.testing.assert_allclose(rec.std.numpy(), std, rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# collect_stats


def _tensor_loader(n_items=20, bs=3, seed=0, time=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_items, 1, 6, time, generator=g) * 10 - 30
    y = torch.arange(n_items)
    return x, TorchDataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
def test_collect_stats_plain_torch_dataloader(red_dims):
    x, dl = _tensor_loader()  # 20 items in batches of 3: the last batch has 2
    rec = collect_stats(dl, red_dims, progress=False)
    assert rec.n_batches == 7
    assert_matches_reference(rec, [x.numpy()], red_dims)


def test_collect_stats_fastai_dataloader():
    from fastai.data.load import DataLoader as FastaiDataLoader

    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 1, 5, 8, generator=g) * 4 + 2
    items = [(x[i], i) for i in range(10)]
    dl = FastaiDataLoader(items, bs=4, shuffle=False)
    rec = collect_stats(dl, (0, 1, 3))
    assert rec.n_batches == 3
    assert_matches_reference(rec, [x.numpy()], (0, 1, 3))


@pytest.mark.parametrize("fraction, n_use", [(1 / 7, 1), (0.2, 2), (0.3, 3), (3 / 7, 3), (0.5, 4), (0.99, 7), (1.0, 7), (1, 7)])
def test_collect_stats_fraction_uses_first_ceil_fraction_batches(fraction, n_use):
    x, dl = _tensor_loader(n_items=20, bs=3)  # 7 batches, the last of 2 items
    assert n_use == math.ceil(fraction * 7 - 1e-9)  # by hand: ceil(0.2 * 7 = 1.4) = 2, ...
    rec = collect_stats(dl, (0, 2, 3), fraction=fraction, progress=False)
    assert rec.n_batches == n_use
    used = x[: min(20, 3 * n_use)]
    assert_matches_reference(rec, [used.numpy()], (0, 2, 3))


@pytest.mark.parametrize("fraction", [1e-9, 0.1, 0.14])
def test_collect_stats_fraction_below_one_batch_raises(fraction):
    _, dl = _tensor_loader(n_items=20, bs=3)  # 7 batches: fractions below 1/7 ask for less than one
    with pytest.raises(ValueError, match=re.escape(f"fraction={fraction!r} of 7 batch(es) selects less than one batch")):
        collect_stats(dl, fraction=fraction, progress=False)


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", None, True])
def test_collect_stats_bad_fraction_raises(fraction):
    _, dl = _tensor_loader()
    with pytest.raises(ValueError, match=re.escape(f"fraction must be in (0, 1], got {fraction!r}")):
        collect_stats(dl, fraction=fraction, progress=False)


def test_collect_stats_iterable_without_length_and_empty_loaders():
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(n, 1, 3, 4, generator=g) for n in (1, 7, 3)]
    rec = collect_stats((x for x in xs), (0, 2, 3), progress=False)  # bare tensors, no len()
    assert_matches_reference(rec, [x.numpy() for x in xs], (0, 2, 3))
    with pytest.raises(ValueError, match="needs a loader with a length"):
        collect_stats((x for x in xs), fraction=0.5, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        collect_stats([], progress=False)
    with pytest.raises(ValueError, match="saw no values"):
        collect_stats((x for x in []), progress=False)
    with pytest.raises(TypeError, match="first element to be a tensor"):
        collect_stats([("a", 1)], progress=False)


def test_collect_stats_mask_fn_and_settings():
    x, dl = _tensor_loader(n_items=9, bs=4)
    rec = collect_stats(dl, (0, 1, 3), mask_fn=lambda b: b > -30, settings={"k": 1}, progress=False)
    assert rec.settings == {"k": 1}
    mask = (x > -30).numpy()
    assert_matches_reference(rec, [x.numpy()], (0, 1, 3), masks=[mask])


# ---------------------------------------------------------------------------------------------
# data that is hard for floating point: large offsets, constant and quiet bins, means near 0


def _hard_batches(kind, split, seed):
    rng = np.random.default_rng(seed)
    out = []
    for n in split:
        z = rng.normal(size=(n, 1, 20, 300))
        if kind == "dB":
            b = np.clip(-30 + 20 * z, -100, 60)
        elif kind == "const_bin":
            b = -30 + 20 * z
            b[:, :, 3, :] = -100.0
        elif kind == "quiet_bins":
            b = -30 + 20 * z
            b[:, :, :10, :] = -85 + 3 * z[:, :, :10, :]
        else:
            b = {"offset1e4": 1e4 + z, "offset1e6": 1e6 + z, "near_zero": 1e-3 * z}[kind]
        out.append(b.astype(np.float32))
    return out


@pytest.mark.parametrize("kind", ["dB", "offset1e4", "offset1e6", "const_bin", "quiet_bins", "near_zero"])
@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3)])
@pytest.mark.parametrize("split", [(1, 7, 3, 64), (64, 64)])
def test_hard_data_matches_numpy(kind, red_dims, split):
    batches = _hard_batches(kind, split, 0)
    rec = record(batches, red_dims)
    allv = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(rec.mean.numpy(), allv.mean(axis=red_dims, keepdims=True), rtol=RTOL, atol=0)
    np.testing.assert_allclose(rec.std.numpy(), allv.std(axis=red_dims, keepdims=True), rtol=RTOL, atol=0)


# ---------------------------------------------------------------------------------------------
# padded batches from the loaders: padding never counted


def _alone_db(clip: torch.Tensor) -> torch.Tensor:
    "Reference: torchaudio Spectrogram + AmplitudeToDB of one clip (channels, samples)."
    spec = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=2.0)(clip)
    return torchaudio.transforms.AmplitudeToDB()(spec)


def _reference_frames(dls) -> np.ndarray:
    """The training clips' spectrograms computed one at a time: (freq, all frames) float64.

    Each clip alone is standardized with the masked formula WaveformNormalize applies to padded
    batches (mask all True): the unmasked formula rounds differently by 1 ulp, and in the nearly
    empty band of the 8 kHz clips upsampled to 16 kHz (frames near -90 dB) 1 ulp of waveform moves a
    frame by up to ~1 dB and a bin's mean by ~1e-3 dB. That the standardization itself ignores the
    padding is test_normalize.py::test_waveform_standardization_independent_of_padding's subject."""
    frames = []
    for row in dls.train.items.itertuples():
        wav = AudioTensor.create(dls.path / row.file, sr=16000).as_subclass(torch.Tensor)
        standardized = SF.standardize_waveform(wav, mask=torch.ones_like(wav, dtype=torch.bool))
        frames.append(_alone_db(standardized)[0].numpy().astype(np.float64))
    return np.concatenate(frames, axis=1)


def test_padded_statistics_equal_clips_one_at_a_time(folder):
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, cache=False)
    xb, _ = dls.train.one_batch()
    assert xb.lengths is not None  # the batches really are padded
    ref = _reference_frames(dls)
    glob = collect_stats(stats_loader(dls.train), red_dims=(0, 2, 3), progress=False)
    per_bin = collect_stats(stats_loader(dls.train), red_dims=(0, 1, 3), progress=False)
    assert int(glob.count.item()) == ref.size
    # The same float32 frames up to FFT rounding (see test_spectrogram.py::test_padded_frames_equal_each_clip_alone),
    # summed in float64; counting the padding would move the mean by dB (below).
    tol = {"rtol": 0, "atol": 1e-4}
    np.testing.assert_allclose(glob.mean.item(), ref.mean(), **tol)
    np.testing.assert_allclose(glob.std.item(), ref.std(), **tol)
    np.testing.assert_allclose(per_bin.mean.flatten().numpy(), ref.mean(1), **tol)
    np.testing.assert_allclose(per_bin.std.flatten().numpy(), ref.std(1), **tol)
    # counting the padding would have moved the mean by dB, not by 1e-4
    with_padding = collect_stats(
        stats_loader(dls.train), red_dims=(0, 2, 3), progress=False, mask_fn=lambda x: torch.ones_like(x, dtype=torch.bool)
    )
    assert abs(with_padding.mean.item() - ref.mean()) > 1.0


# ---------------------------------------------------------------------------------------------
# the statistics pass over a loader: stats_loader (fastspecnorm.callback) and collect_stats(fraction), against
# NumPy float64 on the WAV files (conftest's refs)


def plain(x) -> np.ndarray:
    return x.as_subclass(torch.Tensor).detach().double().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# stats_loader and collect_stats(fraction)


class TrainOnlyOffset(Transform):
    "A train-only batch augmentation (split_idx 0) that shifts spectrograms by +1000 dB."

    split_idx, order = 0, 98

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return x + 1000


def test_stats_loader_drops_train_only_transforms_and_normalizers(tiny_esc50, refs):
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=4, duration=1.0, num_workers=0)
    dls.train.after_batch.add(TrainOnlyOffset())
    dls.train.after_batch.add(SpecNormalize(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 10.0)))
    assert plain(dls.train.one_batch()[0]).min() > 80  # the training loader applies both: (x + 1000) / 10
    xs = np.concatenate([plain(b[0]) for b in stats_loader(dls.train, shuffle=False)])
    np.testing.assert_allclose(xs, refs["train", True], rtol=0, atol=DB_ATOL)  # neither, every item once


@pytest.mark.parametrize("bs", [2, 3])
def test_collect_stats_fraction_uses_ceil_of_the_batches_and_equals_numpy_on_those_items(tiny_esc50, refs, bs):
    dls = esc50_dataloaders(tiny_esc50, valid_fold=1, preset="quick", bs=bs, duration=1.0, num_workers=0)
    n = len(stats_loader(dls.train))
    assert n == math.ceil(16 / bs)  # the last, partial batch is kept
    rec = collect_stats(stats_loader(dls.train), fraction=0.2)  # the README's call
    k = math.ceil(0.2 * n)
    assert rec.n_batches == k
    # the items of those k batches: the first k batches of the same (fixed-seed) shuffled loader,
    # identified among the reference spectrograms of the training folds
    used = [plain(b[0]) for b in itertools.islice(stats_loader(dls.train), k)]
    used = np.concatenate(used)
    assert len(used) == min(16, k * bs)
    train = refs["train", True]
    idx = [int(np.abs(train - u).reshape(len(train), -1).max(1).argmin()) for u in used]
    assert len(set(idx)) == len(idx)
    np.testing.assert_allclose(used, train[idx], rtol=0, atol=DB_ATOL)
    np.testing.assert_allclose(plain(rec.mean), train[idx].mean(axis=(0, 2, 3), keepdims=True), rtol=STATS_RTOL)
    np.testing.assert_allclose(plain(rec.std), train[idx].std(axis=(0, 2, 3), keepdims=True), rtol=STATS_RTOL)
    assert not np.allclose(plain(rec.mean), train.mean())  # a subset, not the whole training set
