"""Tests for fastspecnorm.functional against NumPy float64 references and hand-worked numbers; `pcen`
against librosa, `utterance_mvn` (per-utterance MVN) against NumPy float64.

Tolerances: the functions compute in float32 (float16/bfloat16 inputs are upcast), so results of
order 1 carry a relative rounding error of a few float32 ulps (~1e-7 each, a few dozen operations
in the reductions): atol 1e-5 on standardized values, 1e-6 on [0, 1] values. dB values of order
100 have an ulp of ~8e-6, hence atol 1e-4 dB on round trips through dB.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from article_merge import naive_merge_mean_std
from helpers import energies, librosa_pcen, numpy_utterance_mvn

import fastspecnorm.functional as SF

SEEDS = [0, 1, 2]

# float32: the IIR and the exp/log steps round at about 1e-6 relative (measured 3e-6); 1e-4 is the contract.
RTOL = 1e-4


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


# ---------------------------------------------------------------------------------------------
# NumPy references, written the simplest way


def ref_standardize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)  # ddof=0
    out = (x - mean) / np.where(std <= eps, 1.0, std)
    return np.where(std <= eps, 0.0, out)


def ref_instance_minmax(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        item = x[i].astype(np.float64)
        z = (item - item.mean()) / (item.std() + eps)
        lo, hi = z.min(), z.max()
        if hi - lo > eps:
            out[i] = (np.clip(z, lo, hi) - lo) / (hi - lo)
    return out


# ---------------------------------------------------------------------------------------------
# standardize_waveform


@pytest.mark.parametrize("shape", [(3, 1, 100), (2, 2, 57), (1, 500), (7,), (4, 3, 2, 33)])
@pytest.mark.parametrize("seed", SEEDS)
def test_standardize_waveform_matches_numpy(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(shape, generator=g) + 0.05
    out = SF.standardize_waveform(x)
    np.testing.assert_allclose(np64(out), ref_standardize(np64(x)), rtol=0, atol=1e-5)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_standardize_waveform_hand_example():
    # mean 2, population std 1 -> [-1, 1]; mean 0.5, std 0.5 -> [1, -1]... worked by hand
    x = torch.tensor([[1.0, 3.0], [1.0, 0.0]])
    torch.testing.assert_close(SF.standardize_waveform(x), torch.tensor([[-1.0, 1.0], [1.0, -1.0]]), rtol=0, atol=1e-7)


@pytest.mark.parametrize("value", [0.0, 0.3, -1.0])
def test_standardize_waveform_silent_and_constant_become_zeros(value):
    x = torch.full((2, 1, 160), value)
    out = SF.standardize_waveform(x)
    assert not torch.isnan(out).any()
    assert torch.equal(out, torch.zeros_like(x))


def test_standardize_waveform_silent_item_does_not_affect_others():
    g = torch.Generator().manual_seed(3)
    loud = torch.randn(1, 1, 200, generator=g)
    batch = torch.cat([torch.zeros(1, 1, 200), loud, torch.full((1, 1, 200), 0.25)])
    out = SF.standardize_waveform(batch)
    assert torch.equal(out[0], torch.zeros(1, 200)) and torch.equal(out[2], torch.zeros(1, 200))
    np.testing.assert_allclose(np64(out[1]), ref_standardize(np64(loud[0])), rtol=0, atol=1e-5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "dtype, atol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2), (torch.float64, 1e-12), (torch.float32, 1e-5)]
)
def test_standardize_waveform_keeps_dtype(dtype, atol):
    # float16: 11-bit mantissa, relative error ~5e-4 on values up to ~3 -> atol 5e-3; bfloat16: 8 bits -> 3e-2.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 300, generator=g).to(dtype)
    out = SF.standardize_waveform(x)
    assert out.dtype == dtype
    np.testing.assert_allclose(np64(out), ref_standardize(np64(x)), rtol=0, atol=atol)
    silent = SF.standardize_waveform(torch.zeros(1, 50, dtype=dtype))
    assert silent.dtype == dtype and torch.equal(silent, torch.zeros(1, 50, dtype=dtype))


def test_standardize_waveform_does_not_modify_input():
    x = torch.randn(2, 1, 100) * 3 + 1
    before = x.clone()
    SF.standardize_waveform(x)
    assert torch.equal(x, before)


def test_standardize_waveform_bad_input():
    with pytest.raises(ValueError, match=r"no samples.*\(2, 1, 0\)"):
        SF.standardize_waveform(torch.zeros(2, 1, 0))
    with pytest.raises(TypeError, match="floating-point"):
        SF.standardize_waveform(torch.zeros(2, 1, 10, dtype=torch.int16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        SF.standardize_waveform(np.zeros((1, 10)))


# ---------------------------------------------------------------------------------------------
# instance_minmax


@pytest.mark.parametrize("shape", [(4, 16, 20), (3, 1, 8, 11), (2, 2, 5, 7), (1, 201, 31)])
@pytest.mark.parametrize("seed", SEEDS)
def test_instance_minmax_matches_numpy(shape, seed):
    g = torch.Generator().manual_seed(seed)
    # items on very different scales, as spectrograms in dB of loud and quiet clips
    scales = torch.tensor([10.0 ** (i % 3) for i in range(shape[0])]).reshape(-1, *([1] * (len(shape) - 1)))
    x = torch.randn(shape, generator=g) * scales - 40.0
    out = SF.instance_minmax(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(np64(out), ref_instance_minmax(np64(x)), rtol=0, atol=1e-6)
    flat = out.reshape(shape[0], -1)
    assert torch.all(flat.amin(1) == 0) and torch.allclose(flat.amax(1), torch.ones(shape[0]), rtol=0, atol=1e-6)


def test_instance_minmax_hand_example():
    # [1, 2, 3]: mean 2, std sqrt(2/3); z is symmetric around 0, so min-max gives [0, 0.5, 1].
    out = SF.instance_minmax(torch.tensor([[[1.0, 2.0, 3.0]]]))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.5, 1.0]]]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("constant", [0.0, -100.0, 37.5])
@pytest.mark.parametrize("position", [0, 2])
def test_instance_minmax_constant_item_becomes_zeros_and_leaves_others_alone(constant, position):
    g = torch.Generator().manual_seed(position)
    others = torch.randn(2, 1, 6, 9, generator=g) * 20 - 50
    batch = torch.cat([others[:position], torch.full((1, 1, 6, 9), constant), others[position:]])
    out = SF.instance_minmax(batch)
    assert torch.equal(out[position], torch.zeros(1, 6, 9))
    rest = torch.cat([out[:position], out[position + 1 :]])
    torch.testing.assert_close(rest, SF.instance_minmax(others), rtol=0, atol=0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_instance_minmax_batch_composition_independence(seed):
    g = torch.Generator().manual_seed(seed)
    batch = torch.randn(5, 1, 12, 10, generator=g) * torch.tensor([1.0, 100.0, 0.01, 5.0, 30.0]).reshape(5, 1, 1, 1)
    together = SF.instance_minmax(batch)
    for i in range(5):
        alone = SF.instance_minmax(batch[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=0)
    # reordering the batch reorders the output and changes nothing else
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(SF.instance_minmax(batch[perm]), together[perm], rtol=0, atol=0)


def test_instance_minmax_3d_equals_4d_with_one_channel():
    x = torch.randn(3, 10, 12)
    torch.testing.assert_close(SF.instance_minmax(x), SF.instance_minmax(x.unsqueeze(1)).squeeze(1), rtol=0, atol=0)


def test_instance_minmax_dtype_and_no_in_place():
    x = (torch.randn(2, 1, 4, 5) * 10).half()
    before = x.clone()
    out = SF.instance_minmax(x)
    assert out.dtype == torch.float16 and torch.equal(x, before)
    # float16 output rounding: values in [0, 1] with an ulp of at most 2^-11 ~ 5e-4
    np.testing.assert_allclose(np64(out), ref_instance_minmax(np64(x)), rtol=0, atol=1e-3)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("shape", [(10, 12), (2, 1, 1, 3, 4), (5,)])
def test_instance_minmax_rejects_other_ranks(shape):
    with pytest.raises(ValueError, match=re.escape(f"got shape {shape}")):
        SF.instance_minmax(torch.zeros(shape))


def test_instance_minmax_empty_batch():
    out = SF.instance_minmax(torch.zeros(0, 1, 3, 4))
    assert out.shape == (0, 1, 3, 4)


# ---------------------------------------------------------------------------------------------
# db_range


def test_db_range_hand_values():
    x = torch.tensor([-120.0, -100.0, -50.0, 0.0, 20.0])
    torch.testing.assert_close(SF.db_range(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]), rtol=0, atol=1e-7)
    torch.testing.assert_close(SF.db_range(x, clip=False), torch.tensor([-0.2, 0.0, 0.5, 1.0, 1.2]), rtol=0, atol=1e-7)
    # Tacotron's reference level: (x - 20) maps 20 dB to 1 and -80 dB to 0
    torch.testing.assert_close(
        SF.db_range(torch.tensor([-80.0, -30.0, 20.0]), ref_level_db=20.0), torch.tensor([0.0, 0.5, 1.0]), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("min_level_db", [-100.0, -80.0, -60.0])
@pytest.mark.parametrize("ref_level_db", [0.0, 20.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_db_range_formula_clip_and_inverse(min_level_db, ref_level_db, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 8, 9, generator=g) * 200 - 150  # -150..50 dB: values on both sides of the range
    ref = ((np64(x) - ref_level_db) - min_level_db) / -min_level_db
    unclipped = SF.db_range(x, min_level_db, clip=False, ref_level_db=ref_level_db)
    clipped = SF.db_range(x, min_level_db, clip=True, ref_level_db=ref_level_db)
    np.testing.assert_allclose(np64(unclipped), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np64(clipped), np.clip(ref, 0, 1), rtol=0, atol=1e-6)
    assert (ref < 0).any() and (ref > 1).any()  # the case where clipping matters is exercised
    back = SF.db_range_inverse(unclipped, min_level_db, ref_level_db=ref_level_db)
    np.testing.assert_allclose(np64(back), np64(x), rtol=0, atol=1e-4)
    # clipped values come back at the range ends, the others exactly
    back_clipped = np64(SF.db_range_inverse(clipped, min_level_db, ref_level_db=ref_level_db))
    inside = (ref >= 0) & (ref <= 1)
    np.testing.assert_allclose(back_clipped[inside], np64(x)[inside], rtol=0, atol=1e-4)
    np.testing.assert_allclose(back_clipped[ref < 0], min_level_db + ref_level_db, rtol=0, atol=1e-4)
    np.testing.assert_allclose(back_clipped[ref > 1], ref_level_db, rtol=0, atol=1e-4)


@pytest.mark.parametrize("bad", [0.0, 100.0])
def test_db_range_rejects_non_negative_min_level(bad):
    with pytest.raises(ValueError, match=f"min_level_db must be negative.*{bad}"):
        SF.db_range(torch.zeros(3), min_level_db=bad)
    with pytest.raises(ValueError, match="min_level_db must be negative"):
        SF.db_range_inverse(torch.zeros(3), min_level_db=bad)


def test_db_range_does_not_modify_input():
    x = torch.linspace(-150, 50, 30)
    before = x.clone()
    SF.db_range(x)
    SF.db_range_inverse(x)
    assert torch.equal(x, before)


# ---------------------------------------------------------------------------------------------
# normalize / denormalize


@pytest.mark.parametrize("stats_shape", [(1, 1, 6, 1), (1, 2, 1, 1), (1,), (1, 1, 1, 1), (6, 1)])
@pytest.mark.parametrize("seed", SEEDS)
def test_normalize_denormalize_broadcast(stats_shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 6, 7, generator=g) * 15 - 40
    mean = torch.randn(stats_shape, generator=g, dtype=torch.float64) * 10 - 40
    std = torch.rand(stats_shape, generator=g, dtype=torch.float64) * 10 + 0.5
    y = SF.normalize(x, mean, std)
    assert y.dtype == torch.float32 and y.shape == x.shape
    # float32 values of ~100 over std >= 0.5: relative 1e-7 of 200 -> atol 1e-5
    np.testing.assert_allclose(np64(y), (np64(x) - mean.numpy()) / std.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np64(SF.denormalize(y, mean, std)), np64(x), rtol=0, atol=1e-4)


def test_normalize_does_not_modify_input_and_rejects_int():
    x = torch.randn(2, 1, 3, 4)
    before = x.clone()
    SF.normalize(x, torch.tensor(1.0), torch.tensor(2.0))
    SF.denormalize(x, torch.tensor(1.0), torch.tensor(2.0))
    assert torch.equal(x, before)
    with pytest.raises(TypeError, match="floating-point"):
        SF.normalize(torch.zeros(2, dtype=torch.int64), torch.tensor(0.0), torch.tensor(1.0))


# ---------------------------------------------------------------------------------------------
# moments: masked_moments / merge_moments / moments_std


@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3), (0, 3), (0,), (1, 2)])
@pytest.mark.parametrize("seed", SEEDS)
def test_masked_moments_and_merge_match_numpy(red_dims, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(3.0, 2.0, size=(5, 2, 4, 6))
    b = rng.normal(-1.0, 0.5, size=(2, 2, 4, 6))
    ma = SF.masked_moments(torch.from_numpy(a).float(), red_dims)
    mb = SF.masked_moments(torch.from_numpy(b).float(), red_dims)
    if 0 in red_dims:
        both = np.concatenate([a.astype(np.float32), b.astype(np.float32)]).astype(np.float64)
        merged = SF.merge_moments(ma, mb)
        np.testing.assert_allclose(merged.mean.numpy(), both.mean(axis=red_dims, keepdims=True), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(SF.moments_std(merged).numpy(), both.std(axis=red_dims, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(merged.count.numpy(), np.prod([both.shape[d] for d in red_dims]))
        np.testing.assert_allclose(
            SF.moments_std(merged, correction=1).numpy(), both.std(axis=red_dims, ddof=1, keepdims=True), rtol=1e-12
        )
    a32 = a.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(ma.mean.numpy(), a32.mean(axis=red_dims, keepdims=True), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        ma.m2.numpy(), ((a32 - a32.mean(axis=red_dims, keepdims=True)) ** 2).sum(axis=red_dims, keepdims=True), rtol=1e-12
    )


def test_merge_moments_is_pure_and_handles_empty_positions():
    m = torch.tensor([[True, False], [True, False]])  # second column never counted
    x = torch.tensor([[1.0, 5.0], [3.0, 7.0]])
    mo = SF.masked_moments(x, (0,), m)
    assert mo.count.tolist() == [[2.0, 0.0]] and mo.mean.tolist() == [[2.0, 0.0]] and mo.m2.tolist() == [[2.0, 0.0]]
    snapshot = [t.clone() for t in mo]
    merged = SF.merge_moments(mo, mo)
    assert all(torch.equal(s, t) for s, t in zip(snapshot, mo, strict=True))
    # two copies of [1, 3]: mean 2, population variance 1 (m2 4 over 4 values); empty column stays 0
    assert merged.count.tolist() == [[4.0, 0.0]] and merged.mean.tolist() == [[2.0, 0.0]] and merged.m2.tolist() == [[4.0, 0.0]]
    assert SF.moments_std(merged).tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("red_dims", [(0, 3), (3,), (0, 1, 2, 3), (-1,)])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seed", SEEDS)
def test_masked_moments_match_numpy_over_the_counted_values(red_dims, dtype, rtol, seed):
    "Count, mean and m2 of the True positions only, whatever the others hold (NaN padding included)."
    rng = np.random.default_rng(seed)
    x = rng.normal(50.0, 3.0, size=(4, 2, 3, 9))
    lengths = np.array([9, 5, 1, 0])
    keep = np.broadcast_to(np.arange(9)[None, None, None, :] < lengths[:, None, None, None], x.shape)
    x[~keep] = np.nan
    m = SF.masked_moments(torch.from_numpy(x), red_dims, torch.from_numpy(keep[:, :1, :1].copy()), dtype=dtype)
    assert m.mean.dtype == dtype and m.mean.shape == tuple(
        1 if d in [r % 4 for r in red_dims] else s for d, s in enumerate(x.shape)
    )
    count = keep.sum(axis=red_dims, keepdims=True)
    filled = np.where(keep, x, 0.0)
    mean = filled.sum(axis=red_dims, keepdims=True) / np.maximum(count, 1)
    m2 = (np.where(keep, x - mean, 0.0) ** 2).sum(axis=red_dims, keepdims=True)
    np.testing.assert_array_equal(m.count.numpy(), count)
    np.testing.assert_allclose(m.mean.numpy(), mean, rtol=rtol)
    np.testing.assert_allclose(m.m2.numpy(), m2, rtol=rtol, atol=rtol * 9)  # positions with one value: m2 0
    np.testing.assert_allclose(SF.moments_std(m).numpy(), np.sqrt(m2 / np.maximum(count, 1)), rtol=rtol, atol=rtol)


def test_masked_moments_gradient():
    x = torch.tensor([[1.0, 3.0, 8.0]], requires_grad=True)
    m = SF.masked_moments(x, (1,), torch.tensor([[True, True, False]]), dtype=torch.float32)
    m.mean.sum().backward()  # d mean / dx: 1/2 on the two counted values, 0 on the masked one
    assert x.grad.tolist() == [[0.5, 0.5, 0.0]]


def test_padding_mask_by_hand():
    mask = SF.padding_mask(torch.tensor([2, 0, 4]), 3)
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert SF.padding_mask([1, 3], 4, ndim=4).shape == (2, 1, 1, 4)
    assert SF.padding_mask(torch.tensor([1]), 2, ndim=3).tolist() == [[[True, False]]]
    with pytest.raises(ValueError, match=r"lengths must have shape \(batch,\)"):
        SF.padding_mask(torch.tensor([[1]]), 2)
    with pytest.raises(ValueError, match="ndim"):
        SF.padding_mask(torch.tensor([1]), 2, ndim=1)


# ---------------------------------------------------------------------------------------------
# the reference article's merge (tests/article_merge.py), documented by test


def _article_batches(seed):
    "Uneven batches (1, 7, 3 items) of items with 4 x 5 values, drawn around different levels."
    rng = np.random.default_rng(seed)
    return [rng.normal(loc, 2.0, size=(n, 1, 4, 5)) for n, loc in zip((1, 7, 3), (-30.0, -45.0, -20.0), strict=True)]


@pytest.mark.parametrize("seed", SEEDS)
def test_naive_merge_is_measurably_off_on_uneven_batches(seed):
    batches = _article_batches(seed)
    truth = np.concatenate(batches).std()
    means = [torch.tensor(b.mean()) for b in batches]
    unbiased = [torch.tensor(b.std(ddof=1)) for b in batches]
    items = [b.shape[0] for b in batches]
    _, naive_std = naive_merge_mean_std(means, unbiased, items)
    exact = SF.masked_moments(torch.from_numpy(batches[0]), (0, 1, 2, 3))
    for b in batches[1:]:
        exact = SF.merge_moments(exact, SF.masked_moments(torch.from_numpy(b), (0, 1, 2, 3)))
    assert abs(float(SF.moments_std(exact)) - truth) / truth < 1e-12
    # The article's unbiased per-batch stds inflate each batch's variance by n/(n-1): with a one-item
    # batch of 20 values that alone is a 5% excess on its share; the result is off by far more than 1e-6.
    assert abs(float(naive_std) - truth) / truth > 1e-4


@pytest.mark.parametrize("seed", SEEDS)
def test_naive_merge_differs_only_by_ddof_and_item_weights(seed):
    """With population (ddof=0) per-batch stds and per-batch *value* counts, the same formula is
    exact; the article passed unbiased stds and item counts, and items of different lengths make
    item weights wrong too."""
    rng = np.random.default_rng(seed)
    # items of different lengths per batch (like clips of different durations): 4x5, 4x11, 4x2 values
    batches = [
        rng.normal(loc, s, size=(n, 1, 4, t))
        for n, t, loc, s in zip((2, 5, 3), (5, 11, 2), (0.0, 3.0, -2.0), (1.0, 2.0, 0.5), strict=True)
    ]
    truth = np.concatenate([b.ravel() for b in batches])
    means = [torch.tensor(b.mean()) for b in batches]
    pop = [torch.tensor(b.std()) for b in batches]
    values = [b.size for b in batches]
    m, s = naive_merge_mean_std(means, pop, values)
    np.testing.assert_allclose(float(m), truth.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(s), truth.std(), rtol=1e-12)
    m_items, s_items = naive_merge_mean_std(means, [torch.tensor(b.std(ddof=1)) for b in batches], [b.shape[0] for b in batches])
    assert abs(float(m_items) - truth.mean()) > 1e-3  # item weights misplace even the mean
    assert abs(float(s_items) - truth.std()) / truth.std() > 1e-3


# ---------------------------------------------------------------------------------------------
# inplace=True: the same values written into x (what the batch pipelines use to save allocations)


def _inplace_cases():
    g = torch.Generator().manual_seed(7)
    wav = torch.randn(4, 2, 300, generator=g) * 0.3 + 0.05
    wav[1] = 0.25  # a constant (silent) clip
    spec = torch.randn(3, 2, 6, 7, generator=g) * 15 - 40
    spec[2] = -100.0  # a constant spectrogram
    mean, std = torch.tensor([[[[-40.0]], [[-35.0]]]]), torch.tensor([[[[12.0]], [[9.0]]]])
    return [
        ("standardize_waveform", wav, lambda x, **kw: SF.standardize_waveform(x, **kw), lambda x: ref_standardize(x)),
        ("instance_minmax", spec, lambda x, **kw: SF.instance_minmax(x, **kw), lambda x: ref_instance_minmax(x)),
        (
            "db_range",
            spec,
            lambda x, **kw: SF.db_range(x, -100.0, True, 20.0, **kw),
            lambda x: np.clip((x - 20.0 + 100.0) / 100.0, 0, 1),
        ),
        (
            "normalize",
            spec,
            lambda x, **kw: SF.normalize(x, mean, std, **kw),
            lambda x: (x - mean.double().numpy()) / std.double().numpy(),
        ),
    ]


@pytest.mark.parametrize("case", range(4), ids=[c[0] for c in _inplace_cases()])
def test_inplace_writes_the_same_values_into_x(case):
    name, x0, fn, ref = _inplace_cases()[case]
    expected = fn(x0.clone())
    x = x0.clone()
    out = fn(x, inplace=True)
    assert out.data_ptr() == x.data_ptr() and out.shape == x.shape  # x holds the result
    assert torch.equal(out, expected) and torch.equal(x, expected)  # bit for bit the out-of-place values
    np.testing.assert_allclose(np64(x), ref(np64(x0)), rtol=0, atol=1e-5)  # against NumPy float64
    # the default leaves x alone
    x = x0.clone()
    fn(x)
    assert torch.equal(x, x0)


@pytest.mark.parametrize("case", range(4), ids=[c[0] for c in _inplace_cases()])
def test_inplace_half_precision_and_autograd(case):
    name, x0, fn, _ = _inplace_cases()[case]
    # float16 is computed in float32 and the result copied back into x
    xh = x0.half()
    out = fn(xh, inplace=True)
    assert out.data_ptr() == xh.data_ptr() and out.dtype == torch.float16
    assert torch.equal(out, fn(x0.half()))
    # a tensor autograd tracks is never overwritten: inplace is ignored and gradients flow
    xg = x0.clone().requires_grad_(True)
    out = fn(xg, inplace=True)
    assert out.data_ptr() != xg.data_ptr() and torch.equal(xg.detach(), x0)
    out.sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_normalize_inplace_falls_back_when_stats_broadcast_beyond_x():
    x = torch.randn(2, 5)  # stats of shape (3, 1, 1) broadcast to (3, 2, 5): cannot be written into x
    before = x.clone()
    y = SF.normalize(x, torch.zeros(3, 1, 1), torch.ones(3, 1, 1) * 2, inplace=True)
    assert y.shape == (3, 2, 5) and torch.equal(x, before)
    np.testing.assert_allclose(np64(y), np.broadcast_to(np64(before) / 2, (3, 2, 5)), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# masks


def test_instance_minmax_mask_matches_numpy():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2, 1, 3, 6)).astype(np.float32))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2]).reshape(2, 1, 1, 6)
    out = SF.instance_minmax(x, mask=mask)
    v = x[1, :, :, :4].numpy().astype(np.float64)
    np.testing.assert_allclose(out[1, :, :, :4].numpy(), (v - v.min()) / (v.max() - v.min()), atol=1e-6)
    assert (out[1, :, :, 4:] == 0).all()


# ---------------------------------------------------------------------------------------------
# PCEN against librosa


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, RTOL)])
def test_pcen_equals_librosa_with_defaults(dtype, rtol):
    S = energies((3, 40, 150))
    expected = librosa_pcen(S, sr=16000, hop_length=200)
    got = SF.pcen(torch.tensor(S, dtype=dtype))
    assert got.dtype == dtype and got.shape == S.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=rtol, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sr=8000, hop_length=64, gain=0.8, bias=10.0, power=0.25, time_constant=0.06, eps=1e-9),
        dict(sr=22050, hop_length=512),  # librosa's own defaults
        dict(sr=16000, hop_length=400, power=0.0),  # log1p branch
        dict(sr=16000, hop_length=400, bias=0.0),  # pure power-law branch
        dict(sr=44100, hop_length=441, gain=0.5, bias=1.0, power=1.0 / 3, time_constant=1.5, eps=1e-3),
    ],
)
def test_pcen_equals_librosa_with_other_parameters(kwargs):
    S = energies((2, 16, 300), seed=1)
    expected = librosa_pcen(S, **kwargs)
    got = SF.pcen(torch.tensor(S, dtype=torch.float32), **kwargs).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-30)


def test_pcen_smoothing_coefficient_by_hand():
    # 0.4 s at 16 kHz, hop 200: t = 32 frames, b = (sqrt(1 + 4 * 32**2) - 1) / (2 * 32**2)
    assert SF.pcen_smoothing_coef(16000, 200, 0.4) == pytest.approx((np.sqrt(4097) - 1) / 2048, rel=1e-12)
    assert SF.pcen_smoothing_coef(16000, 200, 0.4) == pytest.approx(0.030765, abs=1e-6)


def test_pcen_of_silence_and_of_a_first_frame_by_hand():
    assert SF.pcen(torch.zeros(2, 3, 5)).abs().max().item() == 0.0
    # one frame: M = b * x + (1 - b) (librosa's initial state), out = sqrt(bias) * (sqrt(1 + x * (eps + M)**-gain / bias) - 1)
    x, b = 1e6, SF.pcen_smoothing_coef(16000, 200, 0.4)
    m = b * x + (1 - b)
    expected = np.sqrt(2.0) * (np.sqrt(1 + x * (1e-6 + m) ** -0.98 / 2.0) - 1)
    got = SF.pcen(torch.tensor([[x]], dtype=torch.float64)).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_pcen_batch_item_equals_item_alone():
    S = torch.tensor(energies((4, 1, 24, 80), seed=2), dtype=torch.float32)
    batch = SF.pcen(S)
    for i in range(len(S)):
        torch.testing.assert_close(batch[i], SF.pcen(S[i]), rtol=0, atol=0)


def test_pcen_ignores_padded_frames():
    S = energies((3, 1, 20, 100), seed=3)
    lengths = [100, 61, 7]
    padded = S.copy()
    padded[1, ..., 61:] = 1e12  # whatever padding holds
    padded[2, ..., 7:] = np.nan
    mask = torch.arange(100) < torch.tensor(lengths)[:, None, None, None]
    got = SF.pcen(torch.tensor(padded, dtype=torch.float32), mask=mask).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, ..., :n], librosa_pcen(S[i, ..., :n], sr=16000, hop_length=200), rtol=RTOL)
        assert (got[i, ..., n:] == 0).all()


def test_pcen_refuses_db_input():
    with pytest.raises(ValueError, match="energies"):
        SF.pcen(torch.full((1, 4, 8), -30.0))
    with pytest.raises(ValueError, match="b must be in"):
        SF.pcen(torch.ones(1, 4, 8), b=1.5)


def test_pcen_keeps_float16_and_runs_on_cuda_when_there():
    S = torch.tensor(energies((2, 8, 30), seed=4, low=0, high=3), dtype=torch.float16)
    got = SF.pcen(S)
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.float().numpy(), librosa_pcen(S.double().numpy(), sr=16000, hop_length=200), rtol=2e-3)
    if torch.cuda.is_available():
        torch.testing.assert_close(SF.pcen(S.float().cuda()).cpu(), SF.pcen(S.float()), rtol=1e-5, atol=0)


# ---------------------------------------------------------------------------------------------
# per-utterance mean and variance normalization


@pytest.mark.parametrize("lengths", [None, [50, 23, 1, 0]])
def test_utterance_mvn_equals_numpy(lengths):
    rng = np.random.default_rng(6)
    x = rng.normal(-40, 15, size=(4, 2, 12, 50))
    x[0, 0, 3] = -100.0  # a constant bin (silence at the dB floor): 0, not NaN
    mask = None if lengths is None else torch.arange(50) < torch.tensor(lengths)[:, None, None, None]
    xt = torch.tensor(x, dtype=torch.float32)
    if lengths is not None:
        xt[1, ..., 23:] = float("nan")  # padding never counts, whatever it holds
    got = SF.utterance_mvn(xt, mask=mask).numpy()
    expected = numpy_utterance_mvn(x, lengths)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    assert (got[0, 0, 3] == 0).all()


def test_utterance_mvn_bad_mask():
    with pytest.raises(ValueError, match="broadcast"):
        SF.utterance_mvn(torch.zeros(2, 1, 4, 10), mask=torch.ones(3, 1, 1, 10, dtype=torch.bool))
