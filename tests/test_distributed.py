"""`StatsRecorder.all_reduce` and `StatsCallback` under torch.distributed: 2 local processes, gloo, CPU.

Each test starts two worker processes (`python _worker.py RANK ...`, loopback 127.0.0.1 only, a
free port, a 60 s collective timeout), each sees its own shard of the data, and every rank writes
what it ended with; the test compares that with one process over all the data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fastspecnorm import StatsCallback, StatsRecorder, esc50_dataloaders, esc50_learner
from fastspecnorm.callback import stats_item_indices
from fastspecnorm.datasets.synthetic import make_synthetic_esc50

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
RTOL = 1e-6
# 3 classes x 4 clips over 3 folds; fold 3 is validation, so 9 training clips: with bs 4 the
# shards hold 5 and 4 clips and the batches differ in size.
DATA = {"n_classes": 3, "clips_per_class": 4, "n_folds": 3, "sample_rate": 16000, "duration": 0.5, "seed": 0, "n_silent": 1}
# A linear spectrogram: its values do not depend on how items are grouped into batches.
DLS = {
    "preset": "quick",
    "valid_fold": 3,
    "bs": 4,
    "duration": 0.5,
    "n_mels": None,
    "n_fft": 256,
    "hop_length": 256,
    "num_workers": 0,
}

COMMON = """
import datetime, json, os, sys
import torch, torch.distributed as dist

rank, world, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
results = {}

def expect_error(fn):
    try:
        fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None
"""

# Phase 1: StatsRecorder.all_reduce on shards of random tensors.
RECORDER_PART = """
from fastspecnorm import StatsRecorder

def shard(seed):
    g = torch.Generator().manual_seed(seed)
    # different batch sizes and lengths per batch, some values masked out, other numbers of batches per rank
    return [(torch.randn(1 + i + seed, 2, 5, 7 + 3 * i, generator=g) * 3 + 40,
             torch.rand(1 + i + seed, 1, 1, 7 + 3 * i, generator=g) > 0.3) for i in range(2 + seed)]

for red_dims in [(0, 2, 3), (0, 1, 3), (0, 3)]:
    rec = StatsRecorder(red_dims)
    for x, m in shard(rank):
        rec.update(x, m)
    rec.all_reduce()
    results[f"masked{red_dims}"] = (rec.mean, rec.std, rec.count, rec.n_batches)

# A rank that saw nothing contributes nothing.
rec = StatsRecorder((0, 2, 3))
if rank == 0:
    for x, m in shard(0):
        rec.update(x, m)
rec.all_reduce()
results["one_empty"] = (rec.mean, rec.std, rec.count, rec.n_batches)

# Mismatches raise on every rank (all_gather_object first, so no rank is left waiting).
results["red_dims_error"] = expect_error(lambda: StatsRecorder((0, 2, 3) if rank == 0 else (0, 1, 3)).update(torch.ones(2, 1, 3, 4)).all_reduce())
results["shape_error"] = expect_error(lambda: StatsRecorder((0, 2, 3)).update(torch.ones(2, 1 + rank, 3, 4)).all_reduce())
"""

# Phase 2: StatsCallback in a plain Learner, each rank in the same process group.
CALLBACK_PART = """
import fastspecnorm.callback as cbmod
from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner
from torch import nn
from fastspecnorm import StatsCallback, esc50_dataloaders

root, dls_kw = sys.argv[4], json.loads(sys.argv[5])
seen = []
_collect = cbmod.collect_stats
def counting_collect(dl, *args, **kwargs):
    seen.append(len(dl.dataset))
    return _collect(dl, *args, **kwargs)
cbmod.collect_stats = counting_collect

class StopAfterStats(Callback):
    order = 0  # after StatsCallback (-50): its statistics are installed, nothing needs training
    def before_train(self): raise CancelFitException()

def learner(cb, dls):
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, dls.c))
    return Learner(dls, model, cbs=[cb, StopAfterStats()])

dls = esc50_dataloaders(root, **dls_kw)
for fraction in (1.0, 0.5):
    seen.clear()
    cb = StatsCallback(red_dims=(0, 1, 3), fraction=fraction, path=os.path.join(out, f"stats{fraction}.npz"))
    learner(cb, dls).fit(1)
    rec = cb.stats_recorder
    norm = [t for t in dls.valid.after_batch.fs if type(t).__name__ == "SpecNormalize"]
    results[fraction] = dict(mean=rec.mean, std=rec.std, count=rec.count, seen=list(seen),
                             installed=(norm[0].mean, norm[0].std) if norm else None)
    # A second learner finds the file rank 0 saved and loads it on every rank, collecting nothing.
    seen.clear()
    cb2 = StatsCallback(red_dims=(0, 1, 3), fraction=fraction, path=os.path.join(out, f"stats{fraction}.npz"))
    learner(cb2, dls).fit(1)
    results[f"reload{fraction}"] = dict(mean=cb2.stats_recorder.mean, seen=list(seen))

# An error on one rank is raised on both; neither waits forever.
def fail_on_rank1(dl, *args, **kwargs):
    if rank == 1:
        raise ValueError("broken clip on rank 1")
    return _collect(dl, *args, **kwargs)
cbmod.collect_stats = fail_on_rank1
results["error"] = expect_error(lambda: learner(StatsCallback(red_dims=(0, 1, 3)), dls).fit(1))
torch.save(results, os.path.join(out, f"rank{rank}.pt"))
dist.destroy_process_group()
"""

# One pair of processes for both phases: starting them (importing fastai) is the slow part.
WORKER = COMMON + RECORDER_PART + CALLBACK_PART

FASTAI_DDP_WORKER = (
    COMMON
    + """
from fastai.callback.core import Callback
from fastai.learner import Learner
from torch import nn
from fastspecnorm import StatsCallback, esc50_dataloaders
from fastspecnorm.distributed import gloo_distrib_ctx  # fastai's distrib_ctx with a gloo-safe DistributedDL

root, dls_kw = sys.argv[4], json.loads(sys.argv[5])
dls = esc50_dataloaders(root, **dls_kw)

class Spy(Callback):
    "What the training loop sees: the loader type, its normalizer and the per-rank batch sizes."
    order = 20
    def before_fit(self): self.batches, self.loader, self.norm, self.model = [], None, None, None
    def before_batch(self):
        if not self.training: return
        self.loader, self.model = type(self.dl).__name__, type(self.learn.model).__name__
        inner = getattr(self.dl, "dl", self.dl)
        norm = [t for t in inner.after_batch.fs if type(t).__name__ == "SpecNormalize"]
        self.norm = (norm[0].mean.clone(), norm[0].std.clone()) if norm else None
        self.batches.append(int(self.xb[0].shape[0]))

cb, spy = StatsCallback(red_dims=(0, 1, 3)), Spy()
model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, dls.c))
learn = Learner(dls, model, cbs=[cb, spy])
with gloo_distrib_ctx(learn):  # no SyncBatchNorm and no CUDA on CPU
    learn.fit(1)
results = dict(mean=cb.stats_recorder.mean, std=cb.stats_recorder.std, loader=spy.loader, norm=spy.norm,
               batches=spy.batches, model=spy.model)
torch.save(results, os.path.join(out, f"rank{rank}.pt"))
dist.destroy_process_group()
"""
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(tmp_path: Path, source: str, *args: str, timeout: float = 150) -> list[dict]:
    "Run `source` as ranks 0..WORLD-1 on loopback; return what each rank saved."
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": str(WORLD),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    procs = []
    for rank in range(WORLD):
        env_r = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(WORLD)}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(rank), str(WORLD), str(out), *args],
                env=env_r,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (p, log) in enumerate(zip(procs, logs, strict=False)):
        assert p.returncode == 0, f"rank {rank} exited with {p.returncode}:\n{log[-4000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _shard(seed):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(1 + i + seed, 2, 5, 7 + 3 * i, generator=g) * 3 + 40,
            torch.rand(1 + i + seed, 1, 1, 7 + 3 * i, generator=g) > 0.3,
        )
        for i in range(2 + seed)
    ]


def _reference(batches, red_dims):
    "NumPy float64 mean / population std of the counted values, keepdim shape."
    keep = [d for d in range(4) if d not in red_dims]
    vals = []
    for x, m in batches:
        xm = np.broadcast_to(m.numpy(), x.shape)
        moved = np.moveaxis(x.double().numpy(), keep, list(range(len(keep))))
        mm = np.moveaxis(xm, keep, list(range(len(keep))))
        vals.append(
            [
                v[mask]
                for v, mask in zip(
                    moved.reshape(-1, *moved.shape[len(keep) :]), mm.reshape(-1, *mm.shape[len(keep) :]), strict=True
                )
            ]
        )
    per_pos = [np.concatenate([v[i] for v in vals]) for i in range(len(vals[0]))]
    shape = [1 if d in red_dims else s for d, s in enumerate(batches[0][0].shape)]
    mean = np.array([p.mean() for p in per_pos]).reshape(shape)
    std = np.array([p.std() for p in per_pos]).reshape(shape)
    count = np.array([p.size for p in per_pos], dtype=np.float64).reshape(shape)
    return mean, std, count


@pytest.fixture(scope="module")
def esc_root(tmp_path_factory):
    return make_synthetic_esc50(tmp_path_factory.mktemp("dist_data") / "esc", **DATA)


@pytest.fixture(scope="module")
def worker_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dist_run")


@pytest.fixture(scope="module")
def recorder_results(worker_dir, esc_root):
    "What each of the two ranks ended with (both phases of WORKER)."
    return run_workers(worker_dir, WORKER, str(esc_root), json.dumps(DLS))


@pytest.mark.process
@pytest.mark.parametrize("red_dims", [(0, 2, 3), (0, 1, 3), (0, 3)])
def test_all_reduce_equals_one_process_over_all_shards(recorder_results, red_dims):
    everything = _shard(0) + _shard(1)
    mean, std, count = _reference(everything, red_dims)
    for rank, res in enumerate(recorder_results):
        r_mean, r_std, r_count, n_batches = res[f"masked{red_dims}"]
        np.testing.assert_allclose(r_mean.numpy(), mean, rtol=RTOL, err_msg=f"rank {rank}")
        np.testing.assert_allclose(r_std.numpy(), std, rtol=RTOL, err_msg=f"rank {rank}")
        np.testing.assert_array_equal(r_count.numpy(), count)
        assert n_batches == len(everything)
    # Every rank merges in rank order: bit-identical results.
    a, b = (res[f"masked{red_dims}"] for res in recorder_results)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.process
def test_all_reduce_with_an_empty_rank(recorder_results):
    mean, std, count = _reference(_shard(0), (0, 2, 3))
    for res in recorder_results:
        r_mean, r_std, r_count, n_batches = res["one_empty"]
        np.testing.assert_allclose(r_mean.numpy(), mean, rtol=RTOL)
        np.testing.assert_allclose(r_std.numpy(), std, rtol=RTOL)
        assert n_batches == 2


@pytest.mark.process
def test_all_reduce_mismatch_raises_on_every_rank(recorder_results):
    for res in recorder_results:
        assert res["red_dims_error"].startswith("ValueError") and "red_dims" in res["red_dims_error"]
        assert res["shape_error"].startswith("ValueError") and "shape" in res["shape_error"]


def test_all_reduce_is_a_no_op_without_distributed():
    rec = StatsRecorder((0, 2, 3))
    for x, m in _shard(1):
        rec.update(x, m)
    before = (rec.mean.clone(), rec.std.clone(), rec.n_batches)
    assert rec.all_reduce() is rec
    assert torch.equal(rec.mean, before[0]) and torch.equal(rec.std, before[1]) and rec.n_batches == before[2]


def _single_process_stats(root, fraction):
    "What one process computes (StatsCallback without torch.distributed) and how many items it selects."
    dls = esc50_dataloaders(root, **DLS)
    cb = StatsCallback(red_dims=(0, 1, 3), fraction=fraction)
    esc50_learner(dls, cbs=cb).fit(0)  # the statistics pass only
    n_items = len(stats_item_indices(len(dls.train.dataset), dls.train.bs, fraction, seed=0))
    return cb.stats_recorder, n_items


def test_stats_item_indices_split_the_selection_exactly():
    for n, bs, fraction in [(9, 4, 1.0), (9, 4, 0.5), (100, 8, 0.2), (1, 4, 1.0)]:
        whole = stats_item_indices(n, bs, fraction, seed=3)
        parts = [stats_item_indices(n, bs, fraction, seed=3, rank=r, world_size=3) for r in range(3)]
        assert sorted(sum(parts, [])) == sorted(whole) and len(set(whole)) == len(whole)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert len(whole) == min(n, bs * int(np.ceil(fraction * np.ceil(n / bs) - 1e-9)))
    with pytest.raises(ValueError, match="rank must be in"):
        stats_item_indices(10, 2, rank=2, world_size=2)


@pytest.mark.process
def test_stats_callback_two_ranks_equal_one_process(recorder_results, worker_dir, esc_root):
    results = recorder_results
    for fraction in (1.0, 0.5):
        ref, n_items = _single_process_stats(esc_root, fraction)
        shards = [res[fraction]["seen"] for res in results]
        # Each rank read only its own share of the selected items, and together all of them.
        assert [len(s) for s in shards] == [1, 1] and sum(s[0] for s in shards) == n_items
        assert all(s[0] < n_items for s in shards)
        for rank, res in enumerate(results):
            r = res[fraction]
            np.testing.assert_allclose(r["mean"].numpy(), ref.mean.numpy(), rtol=RTOL, atol=1e-6, err_msg=f"rank {rank}")
            np.testing.assert_allclose(r["std"].numpy(), ref.std.numpy(), rtol=RTOL, err_msg=f"rank {rank}")
            np.testing.assert_array_equal(r["count"].numpy(), ref.count.numpy())
            # The installed normalizer holds the global statistics on every rank.
            assert torch.equal(r["installed"][0], r["mean"])
            # The file rank 0 saved is reused by every rank, and nothing is collected again.
            assert res[f"reload{fraction}"]["seen"] == [] and torch.equal(res[f"reload{fraction}"]["mean"], r["mean"])
        assert torch.equal(results[0][fraction]["mean"], results[1][fraction]["mean"])
    assert (worker_dir / "out" / "stats1.0.npz").is_file()
    # The error of rank 1 stops both ranks with a message naming it.
    assert results[1]["error"].startswith("ValueError") and "broken clip on rank 1" in results[1]["error"]
    assert (
        results[0]["error"].startswith("RuntimeError")
        and "rank 1" in results[0]["error"]
        and "broken clip" in results[0]["error"]
    )


@pytest.mark.process
@pytest.mark.skipif(
    importlib.util.find_spec("accelerate") is None, reason="fastai.distributed needs `accelerate` (pip install accelerate)"
)
def test_fastai_distrib_ctx_trains_with_global_stats(tmp_path, esc_root):
    results = run_workers(tmp_path, FASTAI_DDP_WORKER, str(esc_root), json.dumps(DLS))
    ref, n_items = _single_process_stats(esc_root, 1.0)
    for rank, res in enumerate(results):
        np.testing.assert_allclose(res["mean"].numpy(), ref.mean.numpy(), rtol=RTOL, atol=1e-6, err_msg=f"rank {rank}")
        np.testing.assert_allclose(res["std"].numpy(), ref.std.numpy(), rtol=RTOL, err_msg=f"rank {rank}")
        # Training ran on DistributedDL shards wrapped around loaders that normalize with the global stats.
        assert res["loader"] == "GlooDistributedDL" and res["model"] == "DistributedDataParallel"
        assert torch.equal(res["norm"][0], res["mean"]) and torch.equal(res["norm"][1], res["std"])
    # DistributedDL pads the 9 training items to 10 and gives each rank half: 5 items, one batch
    # of 4 (the training loader drops the last partial batch, fastai's default).
    assert [res["batches"] for res in results] == [[4], [4]]
