"""The experiment runner: grid, resume after interruption, bad input before training, outputs."""

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fastspecnorm.datasets.synthetic import make_synthetic_esc50
from fastspecnorm.experiment import ExperimentConfig, main, run_experiment, schedule
from fastspecnorm.experiment import runner as experiment
from fastspecnorm.experiment import train as train_module

REPO = Path(__file__).resolve().parents[1]
TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def esc(tmp_path_factory):
    return make_synthetic_esc50(tmp_path_factory.mktemp("exp") / "data", n_classes=3, clips_per_class=5, duration=1.0)


def _cfg(esc, out, norms=("none", "global", "instance"), seeds=(0,)):
    return ExperimentConfig(
        data=str(esc), out=out, folds=[1], seeds=list(seeds), norms=list(norms), preset="quick", epochs=1, overrides=dict(TINY)
    )


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


def test_other_settings_in_same_out_refused(esc, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    out = tmp_path / "o"
    from fastspecnorm.experiment import RunStore

    cfg = _cfg(esc, out, norms=("none",))
    prep = experiment.prepare(cfg)
    cfg2 = _cfg(esc, out, norms=("none",))
    cfg2.epochs = 3
    with pytest.raises(
        ValueError, match=r"another experiment \(no run finished yet\) \(differing: settings.epochs: 1 in OUT, 3 here"
    ):
        experiment.prepare(cfg2)  # one OUT, one experiment, also before any run finished
    prep = experiment.prepare(cfg)
    RunStore(out).save(experiment.run_id("none", 1, 0, prep.experiment_id),
                       {"norm": "none", "fold": 1, "seed": 0, "epochs": 1, "accuracy": 0.5})  # fmt: skip
    with pytest.raises(ValueError, match="another experiment.*settings"):
        experiment.prepare(cfg2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--norms", "none", "zscore"], "unknown normalization"),
        (["--folds", "9"], r"fold\(s\) \[9\] not in the data"),
        (["--set", "n_mel=128"], "n_mel"),
    ],
)
def test_bad_input_exits_before_training(esc, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    code = None
    try:
        code = main(["--data", str(esc), "--out", str(tmp_path / "o"), "--epochs", "1", *args])
    except SystemExit as e:  # argparse errors exit with status 2
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_bad_dataset_exits_before_training(esc, tmp_path, monkeypatch, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(esc, broken)
    victim = pd.read_csv(broken / "meta" / "esc50.csv")["filename"].iloc[0]
    (broken / "audio" / victim).write_text("not audio")
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    assert main(["--data", str(broken), "--out", str(tmp_path / "o"), "--norms", "none"]) == 2
    err = capsys.readouterr().err
    assert victim in err and err.startswith("error: ") and "Traceback" not in err
    # the advice names what the command's user can do: it has no skip_bad (issue 32)
    assert "skip_bad" not in err and err.strip().endswith("Fix or remove these files (and their rows in meta/esc50.csv).")
    assert not (tmp_path / "o").exists()


@pytest.mark.process
def test_command_line_script_runs(esc, tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        str(REPO / "experiments" / "esc50_normalization.py"),
        "--data",
        str(esc),
        "--folds",
        "1",
        "--seeds",
        "0",
        "--norms",
        "none",
        "instance",
        "--preset",
        "quick",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--bs",
        "4",
        "--num-workers",
        "0",
        "--set",
        "duration=1.0",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["norm"]) == ["instance", "none"]
    bad = subprocess.run(cmd[:2] + ["--data", str(esc), "--out", str(out), "--norms", "bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "bogus" in bad.stderr


@pytest.mark.parametrize("norm, standardized", [("none", False), ("dbrange", False), ("global", True), ("instance", True)])
def test_waveform_standardization_per_norm(esc, monkeypatch, norm, standardized):
    seen = {}

    class Stop(Exception):
        pass

    def capture(source, valid_fold, settings, **kwargs):
        seen["waveform_norm"] = settings.waveform_norm
        raise Stop

    monkeypatch.setattr(train_module, "source_dataloaders", capture)
    with pytest.raises(Stop):
        experiment.train_one(esc, norm, 1, 0, "quick", epochs=1, **TINY)
    assert seen["waveform_norm"] is standardized


def test_old_format_out_folder_is_refused(esc, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    out = tmp_path / "old"
    out.mkdir()
    (out / "results.csv").write_text("norm,fold,seed,epochs,accuracy\nnone,1,0,1,0.5\n")
    assert main(["--data", str(esc), "--out", str(out), "--norms", "none", "--epochs", "1"]) == 2
    assert "older format" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "norm,fold,seed,epochs,accuracy\nnone,1,0,1,0.5\n"


def _copy(esc, dest):
    import shutil

    shutil.copytree(esc, dest)
    return dest


def test_changed_audio_or_rows_are_refused_by_name(esc, tmp_path, monkeypatch, capsys):
    "A grid resumed on other data is refused, naming what changed, before training."
    from fastspecnorm.experiment import RunStore

    data, out = _copy(esc, tmp_path / "data"), tmp_path / "o"
    prep = experiment.prepare(_cfg(data, out, norms=("none",)))
    RunStore(out).save(
        experiment.run_id("none", 1, 0, prep.experiment_id), {"norm": "none", "fold": 1, "seed": 0, "epochs": 1, "accuracy": 0.5}
    )  # a finished run on the old data
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    table = pd.read_csv(data / "meta" / "esc50.csv")
    clip = data / "audio" / table["filename"].iloc[0]
    original = clip.read_bytes()
    clip.write_bytes(original[:-2] + bytes([original[-2] ^ 1, original[-1]]))  # one sample changed
    args = ["--data", str(data), "--out", str(out), "--norms", "none", "--epochs", "1", "--bs", "4", "--set", "duration=1.0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "data differ" in err and f"changed content: audio/{clip.name}" in err
    clip.write_bytes(original)
    table.iloc[:-1].to_csv(data / "meta" / "esc50.csv", index=False)  # one row less
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "changed content: meta/esc50.csv" in err and f"removed: audio/{table['filename'].iloc[-1]}" in err
    # Restored data: accepted again.
    (data / "meta" / "esc50.csv").write_bytes((esc / "meta" / "esc50.csv").read_bytes())
    experiment.prepare(_cfg(data, out, norms=("none",)))


def test_data_fingerprint_depends_on_content_not_place_or_time(esc, tmp_path):
    from fastspecnorm import SourceSpec
    from fastspecnorm.datasets.sources import read_source
    from fastspecnorm.experiment.grid import data_fingerprint

    def esc50_fingerprint(root):
        return data_fingerprint(read_source(SourceSpec(data=root)))

    ref = esc50_fingerprint(esc)
    copy = _copy(esc, tmp_path / "elsewhere")
    clip = next((copy / "audio").iterdir())
    os.utime(clip, (0, 0))  # another modification time, as after a copy without -p
    assert esc50_fingerprint(copy) == ref
    n_clips = len(pd.read_csv(esc / "meta" / "esc50.csv"))
    assert len(ref["files"]) == n_clips + 1 and ref["files"]["meta/esc50.csv"][0] == (esc / "meta" / "esc50.csv").stat().st_size
    import hashlib

    assert ref["files"][f"audio/{clip.name}"] == [clip.stat().st_size, hashlib.sha256(clip.read_bytes()).hexdigest()]
    clip.write_bytes(clip.read_bytes()[:-1] + b"\x01")
    assert esc50_fingerprint(copy)["digest"] != ref["digest"]


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


GRID_KEYS = {f"{n}-fold1-seed{s}" for n in ("none", "instance") for s in (0, 1, 2)}


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


def test_summarize_rebuilds_outputs_without_training(esc, tmp_path, fake_reference, monkeypatch, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(fake_reference, out)
    reference = (out / "results.csv").read_bytes()
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
