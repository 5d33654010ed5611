"""The results store (fastspecnorm.experiment.store.RunStore): records, derived results.csv,
claims taken over from dead or stale holders, and many writer processes at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fastspecnorm.experiment import RunStore
from fastspecnorm.experiment.store import scheduler_job

REPO = Path(__file__).resolve().parents[1]


def row(norm="none", fold=1, seed=0, accuracy=0.5, **extra):
    return {"norm": norm, "fold": fold, "seed": seed, "epochs": 2, "accuracy": accuracy, **extra}


def test_records_and_results_csv_round_trip(tmp_path):
    store = RunStore(tmp_path)
    assert store.records() == [] and len(store.rows()) == 0
    store.save("b", row("global", 2, 0, 0.25, note="a, b"), info={"seconds": 1.5})
    store.save("a", row("none", 1, 1, 0.75))
    store.save("c", row("none", 2, 0, 0.125))
    assert store.is_done("a") and not store.is_done("d")
    rows = store.rebuild(order=["none", "global"])
    # Sorted by repeat, fold, seed, then norm in `order`, whatever the save order; a record
    # without `repeat` (written before repeated k-fold) is repeat 0.
    assert rows["run_id"].tolist() == ["a", "c", "b"]
    text = (tmp_path / "results.csv").read_text()
    assert text.splitlines()[0] == "norm,repeat,fold,seed,epochs,accuracy,run_id,note"
    assert text.splitlines()[3] == 'global,0,2,0,2,0.25,b,"a, b"'
    back = pd.read_csv(tmp_path / "results.csv")
    assert back["accuracy"].tolist() == [0.75, 0.125, 0.25]  # floats round-trip exactly
    # Rebuilding from the same records gives the same bytes; the info stays out of the table.
    store.rebuild(order=["none", "global"])
    assert (tmp_path / "results.csv").read_text() == text and "seconds" not in text
    assert json.loads((tmp_path / "runs" / "b.json").read_text())["info"] == {"seconds": 1.5}
    assert not [p for p in tmp_path.rglob("*.tmp")]
    # A later repeat sorts after every run of repeat 0, whatever its fold.
    store.save("e", {"norm": "none", "repeat": 1, "fold": 1, "seed": 0, "epochs": 2, "accuracy": 0.5})
    assert store.rebuild(order=["none", "global"])["run_id"].tolist() == ["a", "c", "b", "e"]
    with pytest.raises(ValueError, match="repeat"):
        store.save("f", {"norm": "none", "repeat": -1, "fold": 1, "seed": 0, "epochs": 2, "accuracy": 0.5})


def test_store_stores_and_summaries_render_from_its_rows(tmp_path):
    from fastspecnorm.experiment import write_summary

    store = RunStore(tmp_path)
    for seed, (a, b) in enumerate([(0.5, 0.6), (0.55, 0.6), (0.6, 0.7)]):
        store.save(f"none-{seed}", row("none", 1, seed, a))
        store.save(f"global-{seed}", row("global", 1, seed, b))
    rows = store.rebuild(order=["none", "global"])
    assert not (tmp_path / "summary.md").exists()  # the store renders nothing
    write_summary(rows, tmp_path, order=["none", "global"], title="Store test")
    text = (tmp_path / "summary.md").read_text()
    # one fold, three seeds: one replicate, so a mean difference but no interval
    assert text.startswith("# Store test") and "| global | undecided | 1 | 3 | +8.33 | n/a |" in text
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"accuracy": 1.5}, "accuracy"),
        ({"accuracy": float("nan")}, "accuracy"),
        ({"fold": 1.5}, "fold"),
        ({"seed": "0"}, "seed"),
        ({"epochs": -1}, "epochs"),
        ({"norm": ""}, "norm"),
        ({"accuracy": None}, "accuracy"),
    ],
)
def test_bad_rows_are_refused_and_nothing_written(tmp_path, bad, message):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match=message):
        store.save("x", {**row(), **bad})
    assert not store.is_done("x")


def test_a_live_claim_excludes_others_and_is_released(tmp_path):
    first, second = RunStore(tmp_path, settle=0.0), RunStore(tmp_path, settle=0.0)
    assert first.claim("r") and first.claim("r")  # ours, also when asked again
    assert not second.claim("r")
    holder = second.claim_holder("r")
    assert holder["pid"] == os.getpid() and holder["host"] == first.host
    second.release("r")  # not second's claim: left alone
    assert first.claim_holder("r") is not None
    first.release("r")
    assert first.claim_holder("r") is None and second.claim("r")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claim_of_a_dead_process_is_taken_over(tmp_path):
    store = RunStore(tmp_path, settle=0.0)
    claim = {"host": store.host, "pid": _dead_pid(), "token": "dead", "heartbeat": time.time()}
    store.claim_path("r").parent.mkdir(parents=True)
    store.claim_path("r").write_text(json.dumps(claim))
    assert store.claim_holder("r") is None
    assert store.claim("r") and store.claim_holder("r")["pid"] == os.getpid()


def test_claim_of_another_host_is_taken_over_only_when_stale(tmp_path):
    store = RunStore(tmp_path, settle=0.0, heartbeat_every=0.1, stale_after=1.0)
    store.claim_path("r").parent.mkdir(parents=True)
    # pid 1 on another host: only the heartbeat tells whether it lives.
    fresh = {"host": "other-node", "pid": 1, "token": "t", "heartbeat": time.time()}
    store.claim_path("r").write_text(json.dumps(fresh))
    assert not store.claim("r")
    store.claim_path("r").write_text(json.dumps({**fresh, "heartbeat": time.time() - 5.0}))
    assert store.claim("r")


def test_heartbeat_keeps_a_claim_alive_while_the_block_runs(tmp_path):
    store = RunStore(tmp_path, settle=0.0, heartbeat_every=0.1, stale_after=0.5)
    other = RunStore(tmp_path, settle=0.0, heartbeat_every=0.1, stale_after=0.5)
    other.host = "other-node"  # sees the claim as another host would: by heartbeat only
    with store.claimed("r") as mine:
        assert mine
        time.sleep(1.2)  # more than stale_after: only the heartbeat keeps it
        assert other.claim_holder("r") is not None and not other.claim("r")
    assert store.claim_holder("r") is None  # released at the end of the block


def test_claim_is_released_when_the_block_raises(tmp_path):
    store = RunStore(tmp_path, settle=0.0)
    with pytest.raises(KeyboardInterrupt), store.claimed("r"):
        raise KeyboardInterrupt
    assert store.claim_holder("r") is None


WRITER = r"""
import sys
from fastspecnorm.experiment.store import RunStore
out, writer, n_records, n_shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = RunStore(out, settle=0.05)
for i in range(n_records):  # records of this writer only, a rebuild after every fifth
    store.save(f"w{writer}-r{i}", {"norm": f"w{writer}", "fold": 1, "seed": i, "epochs": 1, "accuracy": 0.5})
    if i % 5 == 4:
        store.rebuild()
for i in range(n_shared):  # runs every writer competes for: trained by whoever claims them
    rid = f"shared-{i}"
    with store.claimed(rid) as mine:
        if mine and not store.is_done(rid):
            store.save(rid, {"norm": "shared", "fold": 1, "seed": i, "epochs": 1, "accuracy": 0.25, "writer": writer})
store.rebuild()
"""


@pytest.mark.process
def test_many_writer_processes_lose_and_duplicate_nothing(tmp_path):
    n_writers, n_records, n_shared = 4, 20, 8
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), str(w), str(n_records), str(n_shared)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for w in range(n_writers)
    ]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * n_writers, "\n".join(logs)[-3000:]
    # The last rebuild of the last writer saw every record: results.csv holds each run once.
    table = pd.read_csv(out / "results.csv")
    expected = {f"w{w}-r{i}" for w in range(n_writers) for i in range(n_records)} | {f"shared-{i}" for i in range(n_shared)}
    assert len(table) == len(expected) and set(table["run_id"]) == expected
    assert RunStore(out).rows()["run_id"].tolist() == table["run_id"].tolist()
    assert not list(out.rglob("*.tmp")) and not list((out / "claims").iterdir())


# ---------------------------------------------------------------------------------------------
# issue 23: a killed worker not yet reaped, clocks ahead, files that are not what the store wrote

HOLDER = r"""
import os, signal, sys
from fastspecnorm.experiment.store import RunStore
store = RunStore(sys.argv[1], settle=0.0)
assert store.claim("r")
os.kill(os.getpid(), signal.SIGKILL)  # dies holding the claim, like an OOM-killed worker
"""


@pytest.mark.skipif(os.name != "posix", reason="zombies (exited, unreaped children) exist on POSIX")
def test_claim_of_a_killed_unreaped_worker_is_taken_over_at_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env)
    store = RunStore(tmp_path, settle=0.0)  # default stale_after: 300 s, far beyond this test
    deadline = time.monotonic() + 120
    while Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # not reaped: a zombie
        assert time.monotonic() < deadline, "the worker did not die"
        time.sleep(0.05)
    try:
        assert json.loads(store.claim_path("r").read_text())["pid"] == worker.pid
        assert store.claim_holder("r") is None and store.claim("r")
    finally:
        worker.wait()
    assert worker.returncode == -signal.SIGKILL


def test_claim_with_a_heartbeat_far_ahead_is_stale(tmp_path):
    store = RunStore(tmp_path, settle=0.0, heartbeat_every=1.0, stale_after=10.0)
    store.claim_path("r").parent.mkdir(parents=True)
    ahead = {"host": "other-node", "pid": 1, "token": "t", "heartbeat": time.time() + 5.0}  # within the bound: live
    store.claim_path("r").write_text(json.dumps(ahead))
    assert store.claim_holder("r") is not None and not store.claim("r")
    ten_years = time.time() + 10 * 365 * 24 * 3600.0  # a clock run ahead: never an unbounded wait
    store.claim_path("r").write_text(json.dumps({**ahead, "heartbeat": ten_years}))
    assert store.claim_holder("r") is None and store.claim("r")


@pytest.mark.parametrize(
    "content",
    [
        '{"host": "h", "pid": 1, "token": "t", "heartbeat": "abc"}',
        '{"host": "h", "pid": 1, "token": "t", "heartbeat": NaN}',
        '{"host": "h", "pid": "1", "token": "t", "heartbeat": 1e18}',
        '{"host": "h", "pid": 1, "tok',
        "[]",
        "null",
        "",
        "\xff",
    ],
)
def test_a_garbage_claim_counts_as_free(tmp_path, content):
    store = RunStore(tmp_path, settle=0.0)
    store.claim_path("r").parent.mkdir(parents=True)
    store.claim_path("r").write_bytes(content.encode("utf-8", "surrogateescape") if content != "\xff" else b"\xff")
    assert store.claim_holder("r") is None
    assert store.claim("r") and store.claim_holder("r")["pid"] == os.getpid()
    store.release("r")
    assert not store.claim_path("r").exists()


@pytest.mark.parametrize(
    "content, fault",
    [
        ("[]", "holds a list"),
        ('{"run_id": "x"}', "lacks the key(s) ['row']"),
        ('{"run_id": "x", "row": {"norm": "no', "truncated"),
        ("", "is empty"),
        ('{"run_id": "x", "row": []}', "expected an object"),
        ('{"run_id": 3, "row": {}}', "run_id 3"),
        ('{"run_id": "x", "row": {"norm": "none", "fold": 1, "seed": 0, "epochs": 2}}', "accuracy"),
    ],
)
def test_a_bad_record_is_refused_naming_the_file_and_the_fix(tmp_path, content, fault):
    store = RunStore(tmp_path)
    store.save("good", row())
    store.record_path("x").write_text(content)
    for read in (store.records, store.rows, store.rebuild):
        with pytest.raises(ValueError) as info:
            read()
        message = str(info.value)
        assert str(store.record_path("x")) in message and fault in message and "delete it" in message, message
        assert "\n" not in message


def test_claim_left_on_a_finished_run_by_a_dead_process_is_removed_by_the_next_rebuild(tmp_path):
    store = RunStore(tmp_path, settle=0.0)
    store.save("r", row())
    store.save("s", row(seed=1))
    store.claim_path("r").parent.mkdir(parents=True)
    # killed after its record was saved, before its claim was released
    store.claim_path("r").write_text(json.dumps({"host": store.host, "pid": _dead_pid(), "token": "t", "heartbeat": time.time()}))
    assert store.claim("s")  # a live holder's claim on a finished run is left alone
    store.rebuild()
    assert not store.claim_path("r").exists() and store.claim_holder("s") is not None


@pytest.mark.skipif(os.name != "posix", reason="the stand-in squeue is a shell script")
@pytest.mark.parametrize("state, taken_over", [("", True), ("CANCELLED", True), ("PENDING", True), ("RUNNING", False)])
def test_claim_of_a_job_the_scheduler_no_longer_runs_is_free_at_once_on_any_host(tmp_path, monkeypatch, state, taken_over):
    # A Slurm task on another node trained the run and was cancelled (or requeued): its heartbeat
    # is fresh, but squeue no longer runs its job, so the claim is taken over now, not in minutes.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(f"#!/bin/sh\n# stand-in: squeue -h -j JOB -o %T\necho '{state}' | grep . || true\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    store = RunStore(tmp_path / "out", settle=0.0)
    run_id = "none-fold1-seed0-abc123def456"
    store.claims_dir.mkdir(parents=True)
    claim = {"host": "node-17", "pid": 4242, "token": "theirs", "heartbeat": time.time(), "job": "9001_3"}
    store.claim_path(run_id).write_text(json.dumps(claim))
    assert (store.claim_holder(run_id) is None) == taken_over
    assert store.claim(run_id) == taken_over
    if taken_over:
        assert json.loads(store.claim_path(run_id).read_text())["host"] == store.host


def test_claims_record_the_slurm_job(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "9005")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "9001")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    store = RunStore(tmp_path / "out", settle=0.0)
    assert store.claim("none-fold1-seed0-abc123def456")
    assert json.loads(store.claim_path("none-fold1-seed0-abc123def456").read_text())["job"] == "9001_3"
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert scheduler_job() == "9005"
    monkeypatch.delenv("SLURM_JOB_ID")
    assert scheduler_job() is None
