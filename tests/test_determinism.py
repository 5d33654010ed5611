"""Determinism: the same seed gives the same split, statistics and batch order, in one process
(after fastai `set_seed`) and in a fresh process; another seed gives another batch order.
With DataLoader workers, runs repeat too, but the random crops are drawn in the worker processes,
so crops and statistics depend on `num_workers` (the batch order does not).

The recipe is the experiment runner's: `set_seed(seed, reproducible=True)` before building the
DataLoaders. Clips (1 s) are longer than the training duration (0.5 s), so the random training
crops are part of what must repeat; the statistics pass uses `fraction=0.5`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastspecnorm.datasets.synthetic import make_synthetic_esc50

REPO = Path(__file__).resolve().parents[1]
DATA = {"n_classes": 3, "clips_per_class": 5, "n_folds": 5, "sample_rate": 16000, "duration": 1.0, "seed": 0}

# Runs as a fresh process (`python -c RUN root seeds...`) and inside the test process (`run_once`).
RUN = r"""
import hashlib, json, sys

import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner
from fastai.torch_core import set_seed
from torch import nn

from fastspecnorm import StatsCallback, esc50_dataloaders


def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class StopAfterStats(Callback):
    order = 0  # after StatsCallback (-50)

    def before_train(self):
        raise CancelFitException()


def run_once(root, seed, num_workers=0):
    set_seed(seed, reproducible=True)
    dls = esc50_dataloaders(root, valid_fold=1, preset="quick", bs=4, duration=0.5, num_workers=num_workers)
    split = [dls.train.items["filename"].tolist(), dls.valid.items["filename"].tolist()]
    valid = [digest(xb) for xb, _ in dls.valid]  # before the statistics are installed
    cb = StatsCallback(red_dims=(0, 1, 3), fraction=0.5)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, dls.c))
    Learner(dls, model, cbs=[cb, StopAfterStats()]).fit(1)
    stats = digest(cb.stats_recorder.mean, cb.stats_recorder.std)
    batches = []
    for _epoch in range(2):
        batches.append([[digest(xb), yb.tolist()] for xb, yb in dls.train])  # normalized with the statistics
    return {"split": split, "stats": stats, "train_batches": batches, "valid_batches": valid}


if __name__ == "__main__":
    root, num_workers, seeds = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    print(json.dumps([run_once(root, s, num_workers) for s in seeds]))
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_esc50(tmp_path_factory.mktemp("det") / "esc", **DATA)


def _namespace() -> dict:
    ns: dict = {"__name__": "determinism_run"}
    exec(compile(RUN, "determinism_run", "exec"), ns)
    return ns


def _fresh_process(root: Path, num_workers: int, *seeds: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(root), str(num_workers), *map(str, seeds)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> list[dict]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.process
def test_same_seed_same_split_stats_and_batches(root):
    # Start the fresh processes first, so they run while this one computes.
    fresh = _fresh_process(root, 0, 0, 1)
    fresh_workers = _fresh_process(root, 2, 0, 0)
    run_once = _namespace()["run_once"]
    here = [run_once(root, 0), run_once(root, 0)]
    seed0_fresh, seed1_fresh = _result(fresh)
    workers_a, workers_b = _result(fresh_workers)

    # Same process, same seed (after other work, e.g. the first run): identical.
    assert here[0] == here[1]
    # A fresh process with the same seed: identical.
    assert seed0_fresh == here[0]
    # With DataLoader worker processes, runs repeat as well; the batch order and split are those of
    # num_workers=0, but the random crops are drawn in the workers, so crops and statistics differ.
    assert workers_a == workers_b
    assert workers_a["split"] == here[0]["split"] and workers_a["valid_batches"] == here[0]["valid_batches"]
    assert [[y for _, y in epoch] for epoch in workers_a["train_batches"]] == [
        [y for _, y in epoch] for epoch in here[0]["train_batches"]
    ]
    # Two epochs differ from each other (the loader reshuffles), but repeat across runs.
    assert here[0]["train_batches"][0] != here[0]["train_batches"][1]
    # Another seed: same split, another batch order and other crops ...
    assert seed1_fresh["split"] == here[0]["split"]
    assert [[y for _, y in e] for e in seed1_fresh["train_batches"]] != [[y for _, y in e] for e in here[0]["train_batches"]]
    # ... but the same statistics: their pass runs under StatsCallback's own seed.
    assert seed1_fresh["stats"] == here[0]["stats"]
    assert seed1_fresh["valid_batches"] == here[0]["valid_batches"]  # validation is deterministic: no crop, no shuffle
    # The split is the fold split, whatever the seed.
    meta = pd.read_csv(root / "meta" / "esc50.csv")
    assert sorted(here[0]["split"][1]) == sorted(meta.loc[meta.fold == 1, "filename"])
    assert sorted(here[0]["split"][0]) == sorted(meta.loc[meta.fold != 1, "filename"])
