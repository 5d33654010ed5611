"""Crash safety of the experiment command: SIGKILL at several points, then the same command again.

A driver runs `fastspecnorm.experiment.main` (what `experiments/esc50_normalization.py` calls) and
SIGKILLs its own process at a chosen point: halfway through writing the temporary file of
a run's record, `results.csv` or a statistics file, with the temporary file complete but not yet
renamed, or right after a file is in place (e.g. a run claimed, or its statistics saved and its
record not yet written).
Running the same command again must give the `results.csv` of an uninterrupted run, byte for
byte, read back no corrupt statistics file and leave no temporary file behind.

Clips (0.5 s) are longer than the training duration (0.25 s), so runs draw random crops: a resumed
run that loads saved statistics instead of computing them must still see the same random numbers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastspecnorm import StatsRecorder
from fastspecnorm.datasets.synthetic import make_synthetic_esc50

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL hooks read /proc/self/fd")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "esc50_normalization.py"
COMMON = [
    "--folds",
    "1",
    "--seeds",
    "0",
    "--preset",
    "quick",
    "--epochs",
    "1",
    "--bs",
    "4",
    "--num-workers",
    "0",
    "--set",
    "duration=0.25",
]

DRIVER = r'''
"""python driver.py POINT TARGET NTH -- ARGS: the experiment command, SIGKILLed at POINT of the
NTH write of a file whose name contains TARGET."""
import os, signal, sys
from pathlib import Path

point, target, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = sys.argv[sys.argv.index("--") + 1:]
hits = 0


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def hit(name):
    global hits
    if target not in name:
        return False
    hits += 1
    return hits == nth


if point == "partial-write":  # half of the first write() into the temporary file, then die
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: max(1, len(data) // 2)])
            self.f.flush()
            os.fsync(self.f.fileno())
            die()

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        return HalfWriter(f) if hit(name) else f

    os.fdopen = fdopen
elif point in ("before-replace", "after-replace"):  # the temporary file complete; die before / after the rename
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if point == "before-replace" and hit(Path(dst).name):
            die()
        res = real_replace(src, dst, *a, **k)
        if point == "after-replace" and hit(Path(dst).name):
            die()
        return res

    os.replace = replace
elif point != "none":
    raise SystemExit(f"unknown point {point}")

from fastspecnorm.experiment import main

sys.exit(main(args))
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_esc50(tmp_path_factory.mktemp("crash") / "data", n_classes=2, clips_per_class=5, duration=0.5)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def _args(data: Path, out: Path, norms: list[str]) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--norms", *norms, *COMMON]


def _start(tmp: Path, args: list[str], point: str = "none", target: str = "-", nth: int = 0) -> subprocess.Popen:
    driver = tmp / "driver.py"
    if not driver.exists():
        driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), point, target, str(nth), "--", *args],
        env=_env(),
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, expect_killed: bool) -> str:
    log = proc.communicate(timeout=300)[0]
    if expect_killed:
        assert proc.returncode == -signal.SIGKILL, f"expected a SIGKILL, got {proc.returncode}:\n{log[-3000:]}"
    else:
        assert proc.returncode == 0, log[-3000:]
    return log


def _temp_files(out: Path) -> list[str]:
    return sorted(
        p.name
        for folder in (out, out / "stats", out / "runs", out / "claims")
        if folder.is_dir()
        for p in folder.iterdir()
        if p.name.endswith(".tmp")
    )


def _check_consistent(out: Path, ref: Path) -> None:
    "What a killed run leaves: complete rows of the reference only, statistics files that load."
    if (out / "results.csv").exists():
        rows = pd.read_csv(out / "results.csv")
        ref_rows = pd.read_csv(ref / "results.csv").set_index(["norm", "fold", "seed"])
        for _, row in rows.iterrows():
            expected = ref_rows.loc[(row["norm"], row["fold"], row["seed"])]
            assert (row["accuracy"], row["valid_loss"]) == (expected["accuracy"], expected["valid_loss"]), f"row {row['norm']}"
    for npz in (out / "stats").glob("*.npz"):
        _assert_same_stats(npz, ref / "stats" / npz.name)


def _assert_same_stats(path: Path, ref_path: Path) -> None:
    got, want = StatsRecorder.load(path), StatsRecorder.load(ref_path)
    assert got.settings == want.settings
    for a, b in zip(got.moments, want.moments, strict=True):
        # The same computation in another process: equal (a margin of 1e-12 for float64 summation order).
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=0)


def _assert_same_as_reference(out: Path, ref: Path) -> None:
    assert (out / "results.csv").read_bytes() == (ref / "results.csv").read_bytes()
    assert sorted(p.name for p in (out / "stats").glob("*.npz")) == sorted(p.name for p in (ref / "stats").glob("*.npz"))
    for npz in (out / "stats").glob("*.npz"):
        _assert_same_stats(npz, ref / "stats" / npz.name)
    assert _temp_files(out) == []
    assert (out / "summary.md").is_file() and (out / "summary.png").is_file()


def _run_sequence(tmp: Path, data: Path, norms: list[str], kills: list[tuple[str, str, int, str]]) -> None:
    """An uninterrupted reference run (in parallel) and, in OUT, one killed run per entry of
    `kills` = (point, target, nth, temp file expected afterwards or ""), then the command again."""
    ref, out = tmp / "ref", tmp / "out"
    reference = _start(tmp, _args(data, ref, norms))
    logs = []
    for point, target, nth, leftover in kills:
        logs.append(_finish(_start(tmp, _args(data, out, norms), point, target, nth), expect_killed=True))
        if leftover:
            assert any(name.startswith(leftover) for name in _temp_files(out)), (point, target, _temp_files(out))
    _finish(reference, expect_killed=False)
    assert len(pd.read_csv(ref / "results.csv")) == len(norms)
    _check_consistent(out, ref)
    log = _finish(_start(tmp, _args(data, out, norms)), expect_killed=False)
    _assert_same_as_reference(out, ref)
    # Finished runs were skipped, the interrupted ones redone.
    assert f"{len(norms)} runs in the grid" in log


@pytest.mark.process
def test_sigkill_mid_row_write_then_same_command_gives_same_results(tmp_path, data):
    """Killed halfway through writing the row of `global`, its statistics already saved: the same
    command loads those statistics (no corrupt file, the same random numbers as when computing
    them), takes over the dead process's claim, trains again and ends with the uninterrupted run's
    results.csv, byte for byte."""
    _run_sequence(tmp_path, data, ["global"], [("partial-write", "global-fold1-seed0", 2, ".global-fold1-seed0")])


@pytest.mark.slow
def test_sigkill_at_every_write_point(tmp_path, data):
    "Every kind of point, for results, statistics, summary and run logs, one after another."
    _run_sequence(
        tmp_path,
        data,
        ["none", "global", "channel"],
        [
            ("after-replace", "none-fold1-seed0", 1, ""),  # `none` claimed, then killed: claim taken over
            ("before-replace", "none-fold1-seed0", 2, ".none-fold1-seed0"),  # record of `none` complete, not renamed
            ("before-replace", "results.csv", 1, ".results.csv."),  # record of `none` in place, table not rebuilt
            ("partial-write", "fold1-global", 1, ".fold1-global-"),  # statistics file half written
            ("before-replace", "fold1-global", 1, ".fold1-global-"),  # statistics complete, not renamed
            ("after-replace", "fold1-global", 1, ""),  # statistics saved, training not started
            ("before-replace", "global-fold1-seed0", 2, ""),  # trained on loaded statistics; its record
            ("partial-write", "summary.md", 1, ".summary.md."),  # row of `global` written, summary half
            ("partial-write", "fold1-channel", 1, ".fold1-channel-"),
            ("partial-write", "channel-fold1-seed0", 2, ".channel-fold1-seed0"),  # the record of `channel`
        ],
    )


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path, data):
    "An outside SIGKILL at random moments, until a run gets through; then the results are the reference's."
    norms = ["none", "global", "channel"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    _finish(_start(tmp_path, _args(data, ref, norms)), expect_killed=False)
    rng = random.Random(0)
    for _attempt in range(12):
        proc = _start(tmp_path, _args(data, out, norms))
        time.sleep(rng.uniform(3.0, 12.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=300)
        if proc.returncode == 0:
            break
        _check_consistent(out, ref)
    else:
        _finish(_start(tmp_path, _args(data, out, norms)), expect_killed=False)
    _finish(_start(tmp_path, _args(data, out, norms)), expect_killed=False)  # nothing left to do
    _assert_same_as_reference(out, ref)
