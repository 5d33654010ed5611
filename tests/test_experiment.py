"""The experiment runner: grid, resume after interruption, bad input before training, outputs."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastspecnorm.datasets.synthetic import make_synthetic_esc50
from fastspecnorm.experiment import ExperimentConfig, main, run_experiment
from fastspecnorm.experiment import runner as experiment

REPO = Path(__file__).resolve().parents[1]
TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def esc(tmp_path_factory):
    return make_synthetic_esc50(tmp_path_factory.mktemp("exp") / "data", n_classes=3, clips_per_class=5, duration=1.0)


def _cfg(esc, out, norms=("none", "global", "instance"), seeds=(0,)):
    return ExperimentConfig(data=str(esc), out=out, folds=[1], seeds=list(seeds), norms=list(norms), preset="quick",
                            epochs=1, overrides=dict(TINY))


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

    # crash after two finished runs (inside the third), then resume with the same command
    crashed = tmp_path / "crashed"
    real_train_one = experiment.train_one
    calls = []

    def dying_train_one(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_train_one(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_one", dying_train_one)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_cfg(esc, crashed, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    assert len(pd.read_csv(crashed / "results.csv")) == 2
    monkeypatch.setattr(experiment, "train_one", real_train_one)
    run_experiment(_cfg(esc, crashed, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    # same seeds -> identical file, byte for byte: nothing lost, nothing duplicated
    assert (crashed / "results.csv").read_bytes() == (full / "results.csv").read_bytes()

    # a third invocation has nothing to do and trains nothing
    monkeypatch.setattr(experiment, "train_one", lambda *a, **k: pytest.fail("finished run trained again"))
    run_experiment(_cfg(esc, crashed, norms=("none", "global", "channel", "dbrange")), log=lambda *a: None)
    assert (crashed / "results.csv").read_bytes() == (full / "results.csv").read_bytes()


def test_other_settings_in_same_out_refused(esc, tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "train_one", lambda *a, **k: pytest.fail("should not train"))
    out = tmp_path / "o"
    cfg = _cfg(esc, out, norms=("none",))
    experiment.prepare(cfg)
    cfg2 = _cfg(esc, out, norms=("none",))
    cfg2.epochs = 3
    with pytest.raises(ValueError, match="another experiment.*settings"):
        experiment.prepare(cfg2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--norms", "none", "zscore"], "unknown normalization"),
        (["--folds", "9"], "fold 9 does not exist"),
        (["--set", "n_mel=128"], "n_mel"),
    ],
)
def test_bad_input_exits_before_training(esc, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(experiment, "train_one", lambda *a, **k: pytest.fail("should not train"))
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
    monkeypatch.setattr(experiment, "train_one", lambda *a, **k: pytest.fail("should not train"))
    assert main(["--data", str(broken), "--out", str(tmp_path / "o"), "--norms", "none"]) == 2
    assert victim in capsys.readouterr().err


def test_command_line_script_runs(esc, tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, str(REPO / "experiments" / "esc50_normalization.py"), "--data", str(esc), "--folds", "1",
           "--seeds", "0", "--norms", "none", "instance", "--preset", "quick", "--epochs", "1", "--out", str(out),
           "--bs", "4", "--num-workers", "0", "--set", "duration=1.0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["norm"]) == ["instance", "none"]
    bad = subprocess.run(cmd[:2] + ["--data", str(esc), "--out", str(out), "--norms", "bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "bogus" in bad.stderr


@pytest.mark.parametrize("norm, standardized", [("none", False), ("dbrange", False), ("global", True), ("instance", True)])
def test_waveform_standardization_per_norm(esc, monkeypatch, norm, standardized):
    import fastspecnorm.datasets.esc50

    seen = {}

    class Stop(Exception):
        pass

    def capture(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(fastspecnorm.datasets.esc50, "esc50_dataloaders", capture)
    with pytest.raises(Stop):
        experiment.train_one(esc, norm, 1, 0, "quick", 1, **TINY)
    assert seen.get("waveform_norm", True) is standardized
