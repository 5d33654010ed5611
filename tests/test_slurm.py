"""Grids sent elsewhere (`experiment.slurm`): `compare(..., executor=...)`, the `--slurm-*` options,
the claim of a cancelled Slurm job, and, marked `slurm`, the documented job array and
`--slurm-array` on a real Slurm (CI starts a one-node one with scripts/slurm-one-node.sh).

A run counts as trained once when exactly one task logged its accuracy line; a duplicate would show
there even though its record, named by run id, would be one file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

import fastspecnorm
from fastspecnorm.experiment import ExperimentConfig, prepare, run_experiment
from fastspecnorm.experiment import train as train_module
from fastspecnorm.experiment.cli import main, parse_args
from fastspecnorm.experiment.log import RunLog
from fastspecnorm.experiment.schedule import run_id
from fastspecnorm.experiment.store import RunStore

REPO = Path(__file__).resolve().parents[1]
# The tiny grid of CI's installed-command step: 3 classes x 6 clips, 1 s, one epoch.
TINY = ["--data", "synthetic", "--synthetic-classes", "3", "--synthetic-clips", "6", "--epochs", "1", "--bs", "4",
        "--set", "duration=1.0"]  # fmt: skip
RESULT_LINE = re.compile(r"^run \d+ of \d+: (\S+) fold (\S+) seed (\d+): accuracy", re.MULTILINE)


def _fake_train_one(source, norm, fold, seed, settings, training, *args, **kwargs):
    "Stands in for training: a deterministic accuracy."
    return {"norm": norm, "fold": int(fold), "seed": seed, "epochs": training.epochs, "accuracy": (fold + seed) / 20,
            "seconds": 0.0}  # fmt: skip


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setattr(train_module, "train_one", _fake_train_one)


class InlineExecutor:
    "An executor running each task at once in this process (what `submit` promises, without processes)."

    def __init__(self):
        self.submitted = 0

    def submit(self, fn, *args):
        self.submitted += 1
        future = Future()
        future.set_result(fn(*args))
        return future


def test_compare_with_an_executor_submits_pulling_tasks_that_give_each_run_once(tiny_esc50, tmp_path, fake_training):
    executor = InlineExecutor()
    table = fastspecnorm.compare(tiny_esc50, tmp_path / "out", norms=["none", "global"], folds=[1, 2], epochs=1, quiet=True,
                                 executor=executor, slurm_array=3, bs=4)  # fmt: skip
    assert executor.submitted == 3  # the first task trained all four runs, the others found none left
    assert list(table["norm"]) == ["none", "global"] and (table["n"] == 2).all()
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(zip(results["norm"], results["fold"], strict=True)) == [("global", 1), ("global", 2), ("none", 1), ("none", 2)]


def test_an_executor_of_threads_or_without_submit_is_refused_before_anything_is_written(tiny_esc50, tmp_path):
    with ThreadPoolExecutor(1) as threads, pytest.raises(TypeError, match="ProcessPoolExecutor"):
        fastspecnorm.compare(tiny_esc50, tmp_path / "out", norms=["none"], executor=threads)
    with pytest.raises(TypeError, match="submit"):
        fastspecnorm.compare(tiny_esc50, tmp_path / "out", norms=["none"], executor=object())
    with pytest.raises(ValueError, match="own settings"):
        fastspecnorm.compare(tiny_esc50, tmp_path / "out", norms=["none"], executor=InlineExecutor(), slurm_partition="gpu")
    with pytest.raises(ValueError, match="--shard"):
        fastspecnorm.compare(tiny_esc50, tmp_path / "out", norms=["none"], executor=InlineExecutor(), shard=(1, 2))
    assert not (tmp_path / "out").exists()


def test_slurm_options_are_parsed_and_leave_the_experiment_identity_alone(tiny_esc50, tmp_path):
    plain = parse_args(["--data", str(tiny_esc50), "--out", str(tmp_path / "a"), "--norms", "none", "--bs", "4"])
    cfg = parse_args(["--data", str(tiny_esc50), "--out", str(tmp_path / "b"), "--norms", "none", "--bs", "4",
                      "--slurm-array", "8", "--slurm-partition", "gpu", "--slurm-time", "1-02:03:04", "--slurm-mem", "16g",
                      "--slurm-gpus-per-task", "1", "--wait"])  # fmt: skip
    slurm = cfg.slurm
    assert (slurm.slurm_array, slurm.slurm_partition, slurm.slurm_mem, slurm.slurm_gpus_per_task) == (8, "gpu", "16G", 1)
    assert cfg.slurm.slurm_time == 24 * 60 + 2 * 60 + 4  # minutes, rounded up
    assert cfg.wait and plain.slurm.slurm_array is None and not plain.wait
    for text, minutes in (("90", 90), ("30:30", 31), ("04:00:00", 240), ("2-00", 2880)):
        assert parse_args(["--data", "x", "--out", "o", "--slurm-array", "1", "--slurm-time", text]).slurm.slurm_time == minutes
    log = RunLog(progress=False, quiet=True)
    assert prepare(plain, log).experiment == prepare(cfg, log).experiment
    assert (tmp_path / "a" / "experiment.json").read_text() == (tmp_path / "b" / "experiment.json").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slurm-partition", "gpu"], "--slurm-partition describe(s) the tasks of --slurm-array N"),
        (["--wait"], "--wait waits for the tasks of --slurm-array N"),
        (["--slurm-array", "2", "--shard", "1/2"], "leave out --shard 1/2"),
        (["--slurm-array", "0"], "--slurm-array: expected a positive integer"),
        (["--slurm-array", "2", "--slurm-time", "soon"], "--slurm-time: expected a time limit"),
        (["--slurm-array", "2", "--slurm-mem", "lots"], "--slurm-mem: expected a memory size"),
    ],
)
def test_bad_slurm_options_are_refused_in_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["--data", "synthetic", "--out", str(tmp_path / "out"), *args])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error, error
    assert not (tmp_path / "out").exists()


def test_slurm_array_without_submitit_or_sbatch_says_what_to_install_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if the extra were not installed: `import submitit` fails
    assert main([*TINY, "--out", str(tmp_path / "out"), "--slurm-array", "2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: --slurm-array needs submitit, the extra 'slurm': pip install \"fastspecnorm[slurm]\""]
    monkeypatch.delitem(sys.modules, "submitit")
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch
    assert main([*TINY, "--out", str(tmp_path / "out"), "--slurm-array", "2"]) == 2
    assert "no sbatch on PATH" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.name != "posix", reason="the stand-in squeue is a shell script")
def test_a_run_held_by_a_cancelled_job_on_another_host_is_retrained_at_once(tiny_esc50, tmp_path, monkeypatch, fake_training):
    # Its task was cancelled on node-17 a moment ago: the claim's heartbeat is fresh (a live claim
    # for another 2 minutes by the clock), but squeue no longer runs job 9001_3.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\n# stand-in: the job is no longer in the queue\nexit 0\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = ExperimentConfig(data=str(tiny_esc50), out=tmp_path / "out", norms=["none"], folds=[1], epochs=1, overrides={"bs": 4})
    log = RunLog(progress=False, quiet=True)
    prep = prepare(cfg, log)
    held = run_id("none", 1, 0, prep.experiment_id)
    store = RunStore(cfg.out)
    store.claims_dir.mkdir(parents=True, exist_ok=True)
    claim = {"host": "node-17", "pid": 4242, "token": "theirs", "heartbeat": time.time(), "job": "9001_3"}
    store.claim_path(held).write_text(json.dumps(claim))
    started = time.monotonic()
    run_experiment(cfg, log, prep=prep)
    assert time.monotonic() - started < 60  # not the 120 s of a stale heartbeat
    record = json.loads(store.record_path(held).read_text())
    assert record["info"]["host"] == store.host and record["info"]["pid"] == os.getpid()


# -- on a real Slurm (-m slurm) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm():
    "A Slurm cluster answering `sinfo` (skipped without sbatch; a cluster that does not answer fails)."
    if shutil.which("sbatch") is None:
        pytest.skip("needs Slurm (no sbatch on PATH): scripts/slurm-one-node.sh starts a one-node one; CI runs -m slurm in it")
    info = subprocess.run(["sinfo", "-h", "-o", "%P %t %c"], capture_output=True, text=True, timeout=30)
    assert info.returncode == 0 and info.stdout.strip(), f"sbatch is here but no Slurm answers: {info.stderr.strip()}"
    return info.stdout.strip()


def _env() -> dict[str, str]:
    "The jobs' environment (sbatch exports it): this interpreter's `fastspecnorm` first, one thread per task."
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def _docs_job_script(out: Path, grid: list[str]) -> str:
    "The job array script of docs/guide/clusters.md, its command's arguments replaced by `grid`."
    guide = (REPO / "docs" / "guide" / "clusters.md").read_text()
    script = next(b for b in re.findall(r"```bash\n(.*?)```", guide, re.DOTALL) if "#SBATCH --array" in b)
    header = [line for line in script.splitlines() if line.startswith("#")]
    command = re.search(r"^exec fastspecnorm compare ", script, re.MULTILINE)
    assert command is not None, "the documented script runs `exec fastspecnorm compare ...`"
    return "\n".join([*header, "exec fastspecnorm compare " + " ".join([*grid, "--out", str(out)]), ""])


def _sbatch(script: Path, *options: str) -> str:
    done = subprocess.run(["sbatch", "--parsable", *options, str(script)], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def _wait_for(jobs: list[str], timeout: float = 240) -> None:
    "Until Slurm runs none of `jobs` (pending, running or completing)."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i"], capture_output=True, text=True, timeout=30)
        if queued.returncode == 0 and not queued.stdout.strip():
            return
        time.sleep(1)
    raise AssertionError(f"jobs {jobs} still queued after {timeout} s")


def _states(job: str) -> dict[str, str]:
    "Array task id -> its final Slurm state (`squeue -t all` keeps ended jobs for MinJobAge)."
    done = subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def _each_run_once(out: Path, logs: list[Path], norms: list[str], folds: list[int]) -> None:
    "Every run of the grid recorded once and trained by exactly one task (one accuracy line in all logs)."
    expected = {(norm, str(fold), "0") for norm in norms for fold in folds}
    trained = Counter(m for log in logs for m in RESULT_LINE.findall(log.read_text(errors="replace")))
    missing, twice = expected - set(trained), {k: n for k, n in trained.items() if n > 1}
    assert not missing and not twice and set(trained) == expected, f"missing {missing}, trained more than once {twice}"
    results = pd.read_csv(out / "results.csv")
    assert sorted(zip(results["norm"], results["fold"].astype(str), strict=True)) == sorted((n, f) for n, f, _ in expected)
    assert len(list((out / "runs").glob("*.json"))) == len(expected) and not list((out / "claims").glob("*.json"))


def _cancel_the_first_task_that_trains(out: Path, timeout: float = 180) -> tuple[str, str, int]:
    "Cancel (scancel: SIGTERM) the first task seen holding a claim; returns its job, run id and pid."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (out / "claims").glob("*.json") if (out / "claims").is_dir() else []:
            try:
                claim = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being renamed into place
            if claim.get("job"):
                subprocess.run(["scancel", claim["job"]], check=True, timeout=30)
                return claim["job"], path.stem, claim["pid"]
        time.sleep(0.1)
    raise AssertionError(f"no task claimed a run in {timeout} s")


@pytest.mark.slurm
def test_the_documented_array_submitted_twice_with_a_task_cancelled_trains_each_run_once(slurm, tmp_path):
    # The docs' script as written (its #SBATCH lines, `exec fastspecnorm compare`), on a tiny grid:
    # submitted twice at once, and the first task seen training is cancelled; the others finish its run.
    out, norms, folds = tmp_path / "out", ["none", "global"], [1, 2]
    script = tmp_path / "job.sh"
    script.write_text(_docs_job_script(out, [*TINY, "--norms", *norms, "--folds", *map(str, folds)]))
    logs = tmp_path / "logs"
    logs.mkdir()
    jobs = [_sbatch(script, "--array=1-2", f"--output={logs}/%A_%a.out", f"--chdir={tmp_path}") for _ in range(2)]
    victim, held, pid = _cancel_the_first_task_that_trains(out)
    _wait_for(jobs)
    states = {task: state for job in jobs for task, state in _states(job).items()}
    assert states == {task: "CANCELLED" if task == victim else "COMPLETED" for task in states} and len(states) == 4, states
    victim_log = (logs / f"{victim}.out").read_text()
    assert victim_log.count("error: interrupted (stopped by signal 15 (SIGTERM))") == 1, victim_log[-2000:]
    assert json.loads((out / "runs" / f"{held}.json").read_text())["info"]["pid"] != pid  # trained again by another task
    _each_run_once(out, sorted(logs.iterdir()), norms, folds)


@pytest.mark.slurm
def test_slurm_array_through_submitit_returns_at_once_or_waits(slurm, tmp_path):
    pytest.importorskip("submitit")
    out, norms, folds = tmp_path / "out", ["none", "global"], [1, 2]
    command = [sys.executable, "-m", "fastspecnorm", "compare", *TINY, "--norms", *norms, "--folds", *map(str, folds),
               "--out", str(out), "--slurm-array", "2", "--slurm-time", "10", "--slurm-mem", "1G", "--slurm-gpus-per-task", "1"]  # fmt: skip
    submitted = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job = re.search(r"submitted Slurm job (\d+) \(2 task\(s\)", submitted.stdout)
    assert job is not None and f"squeue -j {job[1]}" in submitted.stdout, submitted.stdout
    assert not (out / "results.csv").exists()  # returned once queued, before any run ended
    # The same array again, waiting: its tasks pull from the same grid; it returns when they end, the outputs complete.
    again = subprocess.run([*command, "--wait", "--quiet"], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "results: " in again.stdout, again.stderr[-3000:]
    _wait_for([job[1]])
    assert set(_states(job[1]).values()) == {"COMPLETED"}, _states(job[1])
    _each_run_once(out, sorted((out / "slurm").glob("*_log.out")), norms, folds)
