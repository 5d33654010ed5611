"""Tests for fastspecnorm.experiment.cli, the `fastspecnorm compare` command: its options (built from the
dataclasses' fields), arguments refused before OUT is touched, error lines, exit statuses, logs that read
well in a file, the command without torch, and the command end to end in a subprocess.
"""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastspecnorm.experiment import main
from fastspecnorm.experiment import train as train_module
from fastspecnorm.experiment.runner import parse_args
from fastspecnorm.presets import TRAINING, get_preset


def test_augment_on_the_command_line_and_preset_strong(tmp_path, capsys):
    def augment(*extra):
        cfg = parse_args(["--data", "synthetic", "--out", str(tmp_path), *extra])
        return get_preset("blog", **cfg.overrides)[1].augment

    assert augment() is False
    assert augment("--augment") is True  # SpecAugment + mixup, as before kinds existed
    assert augment("--augment", "spec") is True  # the same experiment: the same settings
    assert augment("--augment", "waveform") == "waveform" and augment("--augment", "all") == "all"
    assert augment("--set", "augment=waveform") == "waveform"
    with pytest.raises(SystemExit):
        augment("--augment", "sometimes")
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        augment("--set", "augment=sometimes")
    assert "setting augment='sometimes' is out of range: expected one of [False, True, 'spec', 'waveform', 'all']" in (
        capsys.readouterr().err
    )
    # strong = blog + augmentations, nothing else changed
    assert get_preset("strong") == get_preset("blog", augment=True) and TRAINING["blog"].augment is False


# ---------------------------------------------------------------------------------------------
# the command on a synthetic ESC-50 folder (conftest's esc)


REPO = Path(__file__).resolve().parents[1]


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
