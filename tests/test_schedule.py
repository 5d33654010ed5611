"""Tests for fastspecnorm.experiment.schedule: running a grid (`run_experiment`): which process trains
which run (claims, `--devices` workers, shards, two processes on one OUT, SIGKILL and SIGTERM), resuming
after a crash, the statistics files, the records and `--summarize`; and what a grid will do, said
before it trains (`say_plan`): the runs, preset, resolved rate and spectrogram shape, a wall-time
estimate from one timed batch, and the audio cache's place and size (issue 31 item 5).

The tests of several processes run the command through a driver whose training is a fake that sleeps
(`DRIVER`); they are marked `process` or `slow`."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import esc50_config as _cfg

from fastspecnorm.experiment import ExperimentConfig, main, prepare, run_experiment, schedule
from fastspecnorm.experiment import runner as experiment
from fastspecnorm.experiment import train as train_module
from fastspecnorm.experiment.log import RunLog
from fastspecnorm.experiment.schedule import say_plan

RATE = 8000
LENGTHS = (1000, 1700, 2400, 3100)  # samples per take; the same four takes for every label

ESC50_TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}

# A driver for tests of several processes: the experiment command with training replaced by a fake
# that sleeps FAKE_SECONDS (FAKE_SLOW_SECONDS for the run FAKE_SLOW_RUN) and notes every run it
# trains in TRAINED_DIR. Patched at import, so `--devices` workers (spawned: they import this
# module again) train the fake too.
DRIVER = r"""
import os, sys, time, uuid
from pathlib import Path
import fastspecnorm.experiment.runner as runner
import fastspecnorm.experiment.train as train


def fake_train_one(source, norm, fold, seed, settings=None, training=None, stats_path=None, stats_fraction=1.0,
                   device=None, **kwargs):
    key = f"{norm}-fold{fold}-seed{seed}"
    slow = key == os.environ.get("FAKE_SLOW_RUN")
    if slow and os.environ.get("FAKE_SLOW_ONCE"):  # slow the first time only: a takeover then trains it quickly
        marker = Path(os.environ["TRAINED_DIR"]).parent / f"{key}.slow-started"
        slow = not marker.exists()
        marker.touch()
    time.sleep(float(os.environ["FAKE_SLOW_SECONDS" if slow else "FAKE_SECONDS"]))
    (Path(os.environ["TRAINED_DIR"]) / f"{key}.{os.getpid()}.{uuid.uuid4().hex}").write_text(str(device))
    accuracy = ((hash(norm) % 7) + 3 * fold + 5 * seed) % 10 / 10  # deterministic within a run of the test
    return {"norm": norm, "fold": fold, "seed": seed, "epochs": 1, "accuracy": accuracy, "device": "cpu", "seconds": 0.0}


train.train_one = fake_train_one
if __name__ == "__main__":
    sys.exit(runner.main(sys.argv[1:]))
"""
FAKE_GRID = [
    "--norms",
    "none",
    "instance",
    "--folds",
    "1",
    "--seeds",
    "0",
    "1",
    "2",
    "--epochs",
    "1",
    "--bs",
    "4",
    "--num-workers",
    "0",
    "--set",
    "duration=1.0",
]
GRID_KEYS = {f"{n}-fold1-seed{s}" for n in ("none", "instance") for s in (0, 1, 2)}

TINY = {"bs": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    "3 labels x 4 takes at 8 kHz, of known lengths."
    root = tmp_path_factory.mktemp("plan") / "clips"
    rng = np.random.default_rng(0)
    for label in ("lo", "mid", "hi"):
        (root / label).mkdir(parents=True)
        for take, n in enumerate(LENGTHS):
            sf.write(root / label / f"take{take}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), RATE, subtype="PCM_16")
    return root


def _plan(clips, out, **overrides) -> tuple[str, ExperimentConfig]:
    cfg = ExperimentConfig(data=str(clips), out=out, norms=["none", "global"], seeds=[0, 1], k=2, epochs=3,
                           overrides={"bs": 4, "num_workers": 0, **overrides})  # fmt: skip
    stream = io.StringIO()
    log = RunLog(progress=False, stream=stream)
    say_plan(cfg, prepare(cfg, RunLog(quiet=True)), log)
    return stream.getvalue(), cfg


@pytest.mark.parametrize("duration", [None, 0.25])
def test_the_plan_line_says_rate_shape_runs_and_an_estimate(clips, tmp_path, duration):
    text, cfg = _plan(clips, tmp_path / "out", **({} if duration is None else {"duration": duration}))
    plan, cache = text.strip().splitlines()
    # Worked out by hand for the "own" preset: the files' 8 kHz, a window of the power of two nearest
    # 64 ms (512 samples), a quarter of it as hop, 64 mel bins; centred frames: n // hop + 1.
    n_fft = 2 ** round(math.log2(0.064 * RATE))
    hop = n_fft // 4
    assert (n_fft, hop) == (512, 128)
    if duration is None:
        frames = f"{min(LENGTHS) // hop + 1}-{max(LENGTHS) // hop + 1} frames"  # 8-25
    else:
        frames = str(int(duration * RATE) // hop + 1)  # 16
    runs = 2 * 2 * 2  # norms x folds x seeds
    assert plan.startswith(f"plan: {runs} of {runs} runs to train, preset own, 8000 Hz, n_fft 512, hop 128, "
                           f"spectrograms (1, 64, {frames}), bs 4, 3 epoch(s); about ")  # fmt: skip
    # The estimate: every run's batches (training batches of 4, the last partial one dropped, and every
    # validation batch) times the timed batch, over 3 epochs.
    folds = pd.read_csv(cfg.out / "folds.csv")["fold"]
    per_epoch = {f: (folds != f).sum() // 4 + math.ceil((folds == f).sum() / 4) for f in (1, 2)}
    batches = 3 * 2 * 2 * sum(per_epoch.values())  # epochs x norms x seeds x both folds
    found = re.search(r"about (\d+) (s|min|h) \((\d+) batches at ([0-9.e+-]+) s, one timed on cpu\)$", plan)
    assert found is not None, plan
    assert int(found[3]) == batches
    total = batches * float(found[4])
    shown = int(found[1]) * {"s": 1, "min": 60, "h": 3600}[found[2]]
    assert abs(shown - total) <= 0.5 * {"s": 1, "min": 60, "h": 3600}[found[2]] + 0.005 * total
    # The audio cache: its folder (under the test's cache root) and the size of its data file.
    where = re.fullmatch(r"audio cache: (.+), ([0-9.]+) kB for 12 clips \(fastspecnorm cache --info .*\)", cache)
    assert where is not None, cache
    data = list(Path(where[1]).glob("data-*.bin"))
    assert len(data) == 1 and float(where[2]) == pytest.approx(data[0].stat().st_size / 1e3, abs=0.05)


def test_a_finished_grid_times_nothing(clips, tmp_path, monkeypatch):
    from fastspecnorm.experiment import run_experiment
    from fastspecnorm.experiment import train as train_module

    def fake(source, norm, fold, seed, *args, **kwargs):
        return {"norm": norm, "fold": int(fold), "seed": seed, "epochs": 3, "accuracy": 0.5, "seconds": 0.0}

    monkeypatch.setattr(train_module, "train_one", fake)
    cfg = ExperimentConfig(data=str(clips), out=tmp_path / "out", norms=["none"], k=2, epochs=3,
                           overrides={"bs": 2, "num_workers": 0})  # fmt: skip
    run_experiment(cfg, RunLog(quiet=True))
    stream = io.StringIO()
    say_plan(cfg, prepare(cfg, RunLog(quiet=True)), RunLog(progress=False, stream=stream))
    assert stream.getvalue().strip() == (
        "plan: 0 of 2 runs to train, preset own, 8000 Hz, n_fft 512, hop 128, spectrograms (1, 64, 8-25 frames), bs 2, 3 epoch(s)"
    )


# ---------------------------------------------------------------------------------------------
# running a grid on a synthetic ESC-50 folder (conftest's esc): outputs, resume, statistics files, shards,
# several processes, signals, records


REPO = Path(__file__).resolve().parents[1]


def test_grid_outputs_and_resume_after_crash(esc, tmp_path, monkeypatch):
    # uninterrupted reference
    full = tmp_path / "full"
    run_experiment(_cfg(esc, full, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    ref = pd.read_csv(full / "results.csv")
    assert len(ref) == 4 and set(ref["norm"]) == {"none", "global", "channel", "dbrange"}
    assert {"norm", "fold", "seed", "epochs", "accuracy"} <= set(ref.columns)
    assert ref["accuracy"].between(0, 1).all() and (ref["epochs"] == 1).all()
    assert (full / "summary.md").read_text().count("| ") > 4
    assert (full / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((full / "stats").glob("*.npz"))) == 2  # global and channel, fold 1
    assert len(list((full / "runs").glob("*.json"))) == 4 and not list((full / "claims").iterdir())

    # crash after two finished runs (inside the third), then resume with the same command
    crashed = tmp_path / "crashed"
    real_train_one = experiment.train_one
    calls = []

    def dying_train_one(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_train_one(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one", dying_train_one)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_cfg(esc, crashed, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    assert len(pd.read_csv(crashed / "results.csv")) == 2
    assert not list((crashed / "claims").iterdir())  # the interrupted run's claim was released
    monkeypatch.setattr(train_module, "train_one", real_train_one)
    run_experiment(_cfg(esc, crashed, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    # same seeds -> identical file, byte for byte: nothing lost, nothing duplicated
    assert (crashed / "results.csv").read_bytes() == (full / "results.csv").read_bytes()

    # a third invocation has nothing to do and trains nothing
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("finished run trained again"))
    run_experiment(_cfg(esc, crashed, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    assert (crashed / "results.csv").read_bytes() == (full / "results.csv").read_bytes()


def test_statistics_files_are_keyed_on_the_data():
    settings = {"n_fft": 1024}
    a = schedule._stats_path(Path("o"), "global", 1, settings, 1.0, "aaaa")
    assert a == schedule._stats_path(Path("o"), "global", 1, settings, 1.0, "aaaa")
    assert a != schedule._stats_path(Path("o"), "global", 1, settings, 1.0, "bbbb")


def test_stale_statistics_are_refused_or_refreshed_without_changing_the_experiment(esc, tmp_path, capsys):
    "Clips copied without their modification times: the saved statistics no longer match them; --refresh-stats recomputes."
    import shutil
    import warnings

    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(esc, data)
    run_experiment(_cfg(data, out, norms=("global",)), log=lambda *a: None)
    identity = (out / "experiment.json").read_bytes()
    [stats_file] = (out / "stats").glob("*.npz")
    for clip in (data / "audio").iterdir():  # the same content, later times
        os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))

    with pytest.raises(ValueError, match=re.escape(f"statistics file {stats_file} was made with other settings")) as info:
        run_experiment(_cfg(data, out, norms=("global",), seeds=(0, 1)), log=lambda *a: None)
    assert "train_items" in str(info.value) and "--refresh-stats" in str(info.value)
    # The command says it in one error line (fastai's "Exception occured in ..." line folded into it).
    argv = ["--data", str(data), "--out", str(out), "--folds", "1", "--seeds", "0", "1", "--norms", "global", "--preset",
            "quick", "--epochs", "1", "--bs", "4", "--num-workers", "0", "--set", "duration=1.0", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: statistics file {stats_file} was made with other settings")
    assert line.endswith("(in StatsCallback.before_fit)") and "Exception occured" not in line

    refreshed = _cfg(data, out, norms=("global",), seeds=(0, 1))
    refreshed.refresh_stats = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(refreshed, log=lambda *a: None)
    assert any(str(stats_file) in str(w.message) for w in caught)
    assert (out / "experiment.json").read_bytes() == identity  # not part of the experiment
    assert sorted(pd.read_csv(out / "results.csv")["seed"]) == [0, 1]


def test_shards_are_disjoint_and_cover_the_grid(esc, tmp_path):
    cfg = _cfg(esc, tmp_path, norms=("none", "global", "instance"), seeds=(0, 1, 2))
    whole = experiment.grid_runs(cfg)
    for n in (1, 2, 4, 9, 10):
        parts = []
        for i in range(1, n + 1):
            cfg.shard = (i, n)
            parts += experiment.grid_runs(cfg)
        assert sorted(parts) == sorted(whole) and len(parts) == len(whole) == 9
    for bad in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(SystemExit):
            experiment.parse_args(["--data", str(esc), "--out", str(tmp_path), "--shard", bad])


def _start(tmp_path, esc, out, *extra, seconds=0.5, slow_run="", slow_seconds=0.0, slow_once=False):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    trained = tmp_path / "trained"
    trained.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "FAKE_SECONDS": str(seconds),
        "FAKE_SLOW_RUN": slow_run,
        "FAKE_SLOW_SECONDS": str(slow_seconds),
        "TRAINED_DIR": str(trained),
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "FAKE_SLOW_ONCE": "1" if slow_once else "",
    }
    return subprocess.Popen(
        [sys.executable, str(driver), "--data", str(esc), "--out", str(out), *FAKE_GRID, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(*procs):
    logs = [p.communicate(timeout=240)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0 and "Traceback" not in log, log[-3000:]
    return logs


def _trained(tmp_path):
    "How many times each run was trained, from the fake's notes."
    from collections import Counter

    return Counter(p.name.split(".")[0] for p in (tmp_path / "trained").iterdir())


def _check_results(out, reference=None):
    table = pd.read_csv(out / "results.csv")
    assert sorted(f"{n}-fold{f}-seed{s}" for n, f, s in zip(table["norm"], table["fold"], table["seed"], strict=True)) == sorted(
        GRID_KEYS
    )
    assert not list(out.rglob("*.tmp")) and not list((out / "claims").iterdir())
    if reference is not None:
        assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()


@pytest.fixture(scope="module")
def fake_reference(esc, tmp_path_factory):
    "The fake grid run by one process."
    tmp = tmp_path_factory.mktemp("reference")
    _finish(_start(tmp, esc, tmp / "out", seconds=0.0))
    assert _trained(tmp) == dict.fromkeys(GRID_KEYS, 1)
    return tmp / "out"


@pytest.mark.process
def test_two_processes_started_together_train_each_run_once(esc, tmp_path, fake_reference):
    _finish(_start(tmp_path, esc, tmp_path / "out"), _start(tmp_path, esc, tmp_path / "out"))
    assert _trained(tmp_path) == dict.fromkeys(GRID_KEYS, 1)
    _check_results(tmp_path / "out", fake_reference)


@pytest.mark.slow
def test_two_processes_started_seconds_apart_train_each_run_once(esc, tmp_path, fake_reference):
    first = _start(tmp_path, esc, tmp_path / "out", seconds=1.5)
    time.sleep(8.0)  # the first is training by now (importing takes a few seconds)
    second = _start(tmp_path, esc, tmp_path / "out", seconds=1.5)
    _finish(first, second)
    assert _trained(tmp_path) == dict.fromkeys(GRID_KEYS, 1)
    _check_results(tmp_path / "out", fake_reference)


@pytest.mark.slow
def test_shards_and_devices_give_the_runs_of_one_process(esc, tmp_path, fake_reference):
    _finish(
        _start(tmp_path, esc, tmp_path / "shards", "--shard", "1/2", seconds=0.0),
        _start(tmp_path, esc, tmp_path / "shards", "--shard", "2/2", seconds=0.0),
    )
    _check_results(tmp_path / "shards", fake_reference)
    log = _finish(_start(tmp_path, esc, tmp_path / "devices", "--devices", "cpu", "cpu", seconds=0.3))[0]
    _check_results(tmp_path / "devices", fake_reference)
    assert _trained(tmp_path) == dict.fromkeys(GRID_KEYS, 2)  # once for the shards, once for the devices
    assert "[cpu pid" in log and len(set(re.findall(r"\[cpu pid (\d+)\]", log))) == 2


@pytest.mark.slow
def test_sigkill_mid_run_then_survivor_or_rerun_completes_it(esc, tmp_path, fake_reference):
    import signal

    out = tmp_path / "out"
    victim = _start(tmp_path, esc, out, seconds=0.2, slow_run="none-fold1-seed0", slow_seconds=300)
    claim = None
    for _ in range(600):  # wait until it trains the slow run
        claim = next((out / "claims").glob("none-fold1-seed0-*.json"), None) if (out / "claims").is_dir() else None
        if claim is not None:
            break
        time.sleep(0.1)
    assert claim is not None, victim.communicate(timeout=5)[0] if victim.poll() is not None else "no claim"
    survivor = _start(tmp_path, esc, out, seconds=0.2)  # finds the live claim, trains the rest, waits
    time.sleep(10.0)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    _finish(survivor)  # took the dead process's claim over
    trained = _trained(tmp_path)
    assert trained.pop("none-fold1-seed0") == 1 and all(v == 1 for v in trained.values())  # the killed try left no note
    _check_results(out, fake_reference)
    # A killed process's claim, with no survivor: the same command again takes it over.
    out2 = tmp_path / "out2"
    victim = _start(tmp_path, esc, out2, seconds=0.0, slow_run="instance-fold1-seed2", slow_seconds=300)
    for _ in range(600):
        if (out2 / "claims").is_dir() and list((out2 / "claims").glob("instance-fold1-seed2-*.json")):
            break
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    _finish(_start(tmp_path, esc, out2, seconds=0.0))
    _check_results(out2, fake_reference)


def test_run_records_keep_the_command_and_versions(esc, tmp_path, monkeypatch):
    "Each record's info holds the command line and the versions, and summary.md repeats them."
    import json

    import fastai
    import torch
    import torchaudio

    def fake_train_one(root, norm, fold, seed, *args, **kwargs):
        return {"norm": norm, "fold": fold, "seed": seed, "epochs": 1, "accuracy": 0.5, "device": "cpu", "seconds": 3.0}

    monkeypatch.setattr(train_module, "train_one", fake_train_one)
    out = tmp_path / "with space"
    argv = ["--data", str(esc), "--out", str(out), "--folds", "1", "--norms", "none", "--epochs", "1", "--bs", "4"]
    assert main(argv) == 0
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    info = record["info"]
    assert info["command"] == f"fastspecnorm compare --data {esc} --out '{out}' --folds 1 --norms none --epochs 1 --bs 4"
    assert (info["torch"], info["torchaudio"], info["fastai"]) == (torch.__version__, torchaudio.__version__, fastai.__version__)
    summary = (out / "summary.md").read_text()
    assert f"- Command (1 run): `{info['command']}`" in summary and f"torchaudio {torchaudio.__version__}" in summary


def test_summarize_rebuilds_outputs_without_training(esc, tmp_path, fake_training, monkeypatch, capsys):
    # A grid trained in this process (training faked), its outputs then rebuilt from the records alone.
    out = tmp_path / "copy"
    grid = [
        "--data",
        str(esc),
        "--out",
        str(out),
        "--folds",
        "1",
        "2",
        "--seeds",
        "0",
        "1",
        "--norms",
        "none",
        "instance",
        "--bs",
        "4",
    ]
    assert main([*grid, "--quiet"]) == 0
    reference = (out / "results.csv").read_bytes()
    assert len(pd.read_csv(out / "results.csv")) == 8
    for name in ("results.csv", "summary.md", "summary.png"):
        (out / name).unlink()
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    assert main(["--summarize", "--out", str(out)]) == 0
    assert (out / "results.csv").read_bytes() == reference
    md = (out / "summary.md").read_text()
    assert main(["--summarize", "--out", str(out)]) == 0  # idempotent
    assert (out / "summary.md").read_text() == md and (out / "results.csv").read_bytes() == reference
    assert main(["--summarize", "--out", str(tmp_path / "nothing")]) == 2
    assert "no experiment" in capsys.readouterr().err


def _claim_of(out, key):
    import json

    for path in (out / "claims").glob(f"{key}-*.json") if (out / "claims").is_dir() else []:
        try:
            return json.loads(path.read_text())
        except (ValueError, FileNotFoundError):
            return None
    return None


@pytest.mark.process
def test_sigkilled_devices_worker_run_is_taken_over_within_seconds(esc, tmp_path, fake_reference):
    import signal

    out = tmp_path / "out"
    proc = _start(tmp_path, esc, out, "--devices", "cpu", "cpu", seconds=0.2, slow_run="instance-fold1-seed0", slow_seconds=300.0,
                  slow_once=True)  # fmt: skip
    deadline = time.monotonic() + 180
    # The other worker has recorded every other run and waits for this one when its holder is killed.
    while (claim := _claim_of(out, "instance-fold1-seed0")) is None or len(list((out / "runs").glob("*.json"))) < len(
        GRID_KEYS
    ) - 1:
        assert time.monotonic() < deadline and proc.poll() is None, "the grid never got to the slow run alone"
        time.sleep(0.1)
    os.kill(claim["pid"], signal.SIGKILL)  # as the OOM killer would
    killed_at = time.monotonic()
    while (taken := _claim_of(out, "instance-fold1-seed0")) is None or taken["pid"] == claim["pid"]:
        assert time.monotonic() - killed_at < 10, "the dead worker's run was not taken over within 10 s"
        time.sleep(0.1)
    log = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, log[-3000:]
    assert "exit code -9" in log and "take over" in log
    _check_results(out, fake_reference)


@pytest.mark.process
def test_sigterm_to_the_devices_parent_stops_its_workers(esc, tmp_path):
    import signal

    import psutil

    out = tmp_path / "out"
    proc = _start(tmp_path, esc, out, "--devices", "cpu", "cpu", seconds=30.0)
    deadline = time.monotonic() + 120
    while len(list((out / "claims").glob("*.json")) if (out / "claims").is_dir() else []) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the workers never started training"
        time.sleep(0.1)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM and log.count("run the same command again to resume") == 1, log[-2000:]
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "workers left training"


@pytest.mark.process
def test_sigterm_interrupts_like_ctrl_c_releasing_the_claim(esc, tmp_path, fake_reference):
    "A scheduler's SIGTERM (cancel, preemption, requeue): the claim released at once, one resume line, exit 143; the rerun completes."
    import signal

    out = tmp_path / "out"
    proc = _start(tmp_path, esc, out, seconds=0.0, slow_run="instance-fold1-seed1", slow_seconds=300)
    deadline = time.monotonic() + 120
    while not ((out / "claims").is_dir() and list((out / "claims").glob("instance-fold1-seed1-*.json"))):
        assert time.monotonic() < deadline and proc.poll() is None, "the slow run never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, log[-2000:]
    assert "error: interrupted (stopped by signal 15 (SIGTERM)); finished runs are kept" in log and "Traceback" not in log
    assert log.count("run the same command again to resume") == 1
    assert not list((out / "claims").glob("*.json"))  # released, not left for the heartbeat to expire
    _finish(_start(tmp_path, esc, out, seconds=0.0))
    _check_results(out, fake_reference)


def test_a_diverging_run_is_recorded_as_such_and_left_out_of_the_summary(esc, tmp_path, capsys):
    "--lr far too high: non-finite losses; the run is recorded with diverged=True, flagged, and no statistic uses it."
    from fastspecnorm.experiment.log import RunLog

    out = tmp_path / "out"
    cfg = _cfg(esc, out, norms=("none",))
    cfg.overrides = {**cfg.overrides, "lr": 1e6}
    run_experiment(cfg, RunLog(progress=False, quiet=True))
    results = pd.read_csv(out / "results.csv")
    assert results["diverged"].tolist() == [True]
    assert not all(math.isfinite(results.loc[0, c]) for c in ("valid_loss", "train_loss"))
    assert "DIVERGED" in capsys.readouterr().out
    text = (out / "summary.md").read_text()
    assert "**1 run(s) diverged**" in text and "none fold 1 seed 0" in text
    assert "0 normalization(s) (none)" in text  # no run is left to summarize


# ---------------------------------------------------------------------------------------------
# your own clips (conftest's own): records of another experiment, data changed while the grid runs, claims


def _fake_train_one(source, norm, fold, seed, settings, training, *args, **kwargs):
    "Stands in for training: a deterministic accuracy, and the fold's clips for the checks."
    n_valid = int((source.table["fold"] == fold).sum())
    return {"norm": norm, "fold": source.fold_value(fold), "seed": seed, "epochs": training.epochs, "accuracy": (fold + seed) / 20,
            "preset": kwargs.get("preset"), "n_valid": n_valid, "seconds": 0.0}  # fmt: skip


def _quiet() -> RunLog:
    return RunLog(progress=False, quiet=True)


def test_a_record_of_another_experiment_is_left_out_and_named(own, tmp_path, fake_training, capsys):
    from fastspecnorm.experiment.cli import main

    args = ["--data", own, "--k", "3", "--folds", "1", "--norms", "none", "global", "--bs", "4", "--quiet"]
    assert main([*args, "--out", tmp_path / "a"]) == 0
    assert main([*args, "--out", tmp_path / "b", "--epochs", "2"]) == 0
    stranger = next((tmp_path / "b" / "runs").glob("none-*.json"))
    shutil.copy(stranger, tmp_path / "a" / "runs" / stranger.name)
    capsys.readouterr()
    assert main(["--summarize", "--out", tmp_path / "a"]) == 0
    assert f"left out 1 record(s) in {tmp_path / 'a' / 'runs'} of another experiment" in capsys.readouterr().out
    results = pd.read_csv(tmp_path / "a" / "results.csv")
    assert len(results) == 2 and stranger.stem not in set(results["run_id"])


def test_a_record_for_a_fold_the_experiment_lacks_is_left_out_and_named(own, tmp_path, fake_training, capsys):
    # A record of this experiment edited by hand to a fold 9 that its folds.csv does not hold.
    from fastspecnorm.experiment.cli import main

    out = tmp_path / "a"
    assert (
        main(["--data", own, "--k", "3", "--folds", "1", "--norms", "none", "global", "--bs", "4", "--quiet", "--out", out]) == 0
    )
    real = next((out / "runs").glob("none-fold1-*.json"))
    record = json.loads(real.read_text())
    record["run_id"] = record["run_id"].replace("-fold1-", "-fold9-")
    record["row"]["fold"] = 9
    (out / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["--summarize", "--out", out]) == 0
    assert f"left out 1 record(s) in {out / 'runs'} for a fold this experiment does not have" in capsys.readouterr().out
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 2 and set(results["fold"]) == {1}


def test_clip_edited_while_the_grid_runs_stops_it_naming_the_file(own, tmp_path, monkeypatch, capsys):
    import shutil

    from fastspecnorm.experiment.cli import main

    data = tmp_path / "clips"
    shutil.copytree(own, data)
    clip = data / "digit0" / "ann_0.wav"
    calls = []

    def edit_during_second_run(source, norm, fold, seed, *args, **kwargs):
        calls.append(norm)
        if len(calls) == 2:  # someone rewrites a clip while the grid runs
            samples, sr = sf.read(clip)
            sf.write(clip, samples * 0.5, sr, subtype="PCM_16")
        return _fake_train_one(source, norm, fold, seed, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_one", edit_during_second_run)
    status = main(["--data", data, "--out", tmp_path / "out", "--k", "2", "--folds", "1", "--norms", "none", "global", "pcen",
                   "--bs", "4", "--quiet"])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "data changed while the grid ran" in err and "changed content: digit0/ann_0.wav" in err
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 1  # the run on the edited clip was not recorded
    assert len(calls) == 2  # and the grid stopped there


def test_clip_touched_but_unchanged_while_the_grid_runs_is_accepted(own, tmp_path, monkeypatch):
    # Stat first, content when the stat changed: a new modification time makes the grid hash the
    # data again, and the same content lets it go on.
    import shutil

    from fastspecnorm.experiment.cli import main

    data = tmp_path / "clips"
    shutil.copytree(own, data)
    calls = []

    def touch_during_second_run(source, norm, fold, seed, *args, **kwargs):
        calls.append(norm)
        if len(calls) == 2:
            os.utime(data / "digit0" / "ann_0.wav", ns=(1, 10**18))
        return _fake_train_one(source, norm, fold, seed, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_one", touch_during_second_run)
    status = main(["--data", data, "--out", tmp_path / "out", "--k", "2", "--folds", "1", "--norms", "none", "global", "pcen",
                   "--bs", "4", "--quiet"])  # fmt: skip
    assert status == 0 and len(calls) == 3
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 3


def test_claim_left_on_a_recorded_run_is_cleared_by_the_next_start(own, tmp_path, fake_training):

    out = tmp_path / "out"
    cfg = ExperimentConfig(data=str(own), out=out, norms=["none"], k=2, folds=[1], overrides=dict(TINY))
    run_experiment(cfg, _quiet())
    (record,) = (out / "runs").glob("*.json")
    claim = out / "claims" / record.name  # as left by a process killed after recording, while rebuilding
    claim.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "x", "heartbeat": __import__("time").time()}))
    run_experiment(cfg, _quiet())
    assert not claim.exists()
