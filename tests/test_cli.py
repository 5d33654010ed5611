"""Tests for fastspecnorm.experiment.cli, the `fastspecnorm compare` command: its options (built from the
dataclasses' fields), arguments refused before OUT is touched, error lines, exit statuses, logs that read
well in a file, the command without torch, and the command end to end in a subprocess.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import main_status as _main

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


# ---------------------------------------------------------------------------------------------
# the command on your own clips (conftest's own): arguments, error lines, output in a file, no torch for --help


def _cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastspecnorm", "compare", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)  # fmt: skip


@pytest.mark.process
def test_the_command_does_not_start_with_torchs_jit_warning(tmp_path):
    "fastai's import makes torch warn that torch.jit.script is deprecated; the command filters it, and only it."
    done = _cli("--summarize", "--out", tmp_path / "nothing")  # imports fastai, then one error line
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: {tmp_path / 'nothing'} holds no experiment (no experiment.json); pass the --out folder of a grid"
    ]
    # the filter is the command's: the same import in a plain process still shows it (so this test can fail)
    plain = subprocess.run([sys.executable, "-c", "import fastai.layers"], capture_output=True, text=True, timeout=600)
    assert "torch.jit.script" in plain.stderr


@pytest.mark.process
def test_help_and_argument_errors_do_not_import_torch():
    code = ("import sys\nfrom fastspecnorm.experiment.cli import command\n"
            "try:\n    command(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'fastai' in sys.modules)")  # fmt: skip
    for args in (["compare", "--help"], ["compare", "--out", "x", "--bs", "0"], ["compare", "--out", "x", "--norms", "nope"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert done.stdout.strip().splitlines()[-1] == "False False", (args, done.stdout, done.stderr)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bs", "0"], "--bs: expected a positive integer"),
        (["--epochs", "-1"], "--epochs: expected a positive integer"),
        (["--epochs", "99999999999999999999"], "epochs must be an integer from 1 to 100000, got 99999999999999999999"),
        (["--norms", "none", "zscore"], "unknown normalization"),
        (["--norms", "none", "chanel"], "unknown normalization(s) ['chanel'] (did you mean 'channel'?); expected some of"),
        (["--stats-fraction", "1.5"], "fraction in (0, 1]"),
        (["--folds", "9"], "fold(s) [9] not in the data"),
        (["--bs", "100"], "bs=100 is larger than the"),
        (["--set", "n_mel=3"], "unknown setting(s) ['n_mel']"),
        # settings out of range, each named with what it takes (issue: checked after OUT was written)
        (["--set", "duration=-1"], "setting duration=-1 is out of range: expected None or seconds in (0, 600]"),
        (["--set", "duration=NaN"], "setting duration=nan is out of range"),
        (["--set", "duration=Infinity"], "setting duration=inf is out of range"),
        (["--set", "n_mels=0"], "setting n_mels=0 is out of range"),
        (["--set", "n_fft=1"], "setting n_fft=1 is out of range"),
        (["--set", "n_fft=64", "--set", "n_mels=64"], "n_mels=64 is more than the 33 frequency bins of n_fft=64"),
        (["--set", "sample_rate=1e12"], "setting sample_rate=1000000000000.0 is out of range"),
        (["--set", "sample_rate=-16000"], "setting sample_rate=-16000 is out of range"),
        (["--set", "audio_dtype=int8"], "setting audio_dtype='int8' is out of range: expected one of ['auto', 'int16'"),
        (["--set", "lr=1e999"], "setting lr=inf is out of range"),
        (["--set", "to_db=1"], "setting to_db=1 is out of range: expected true or false"),
        (["--lr", "inf"], "--lr: expected a finite positive number, got 'inf'"),
        (["--seeds", "99999999999999999999"], "seeds must be whole numbers from 0 to 2**32 - 1"),
        (["--precision", "fp16"], "--precision: invalid choice: 'fp16'"),
        (["--rope", "-1"], "--rope: expected accuracy points in [0, 100)"),
        (["--repeats", "0"], "--repeats: expected a positive integer"),
        *([(["--devices", "cuda:0", "cuda:1"], "--devices cuda:")] if torch.cuda.device_count() < 2 else []),  # absent GPUs
    ],
)
def test_bad_input_is_refused_before_out_is_touched(own, tmp_path, args, message, capsys):
    out = tmp_path / "out"
    status, stderr = _main(capsys, "--data", own, "--out", out, "--k", "3", *args)
    assert status == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) <= 3  # argparse's usage lines and one error line
    assert not out.exists()


@pytest.mark.process
def test_redirected_output_has_no_redraws_and_few_lines_per_epoch(own, tmp_path):
    out = tmp_path / "out"
    done = _cli(
        "--data", own, "--out", out, "--k", "2", "--folds", "1", "--norms", "none", "global", "--epochs", "2", "--bs", "4"
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout and "\r" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("data: a folder per label: 24 clips, 3 labels")
    epoch_lines = [line for line in lines if line.strip().startswith("epoch ")]
    assert len(epoch_lines) == 4  # one per epoch: 2 runs x 2 epochs
    assert [line for line in lines if line.startswith("run ") and "accuracy" in line][1].startswith("run 2 of 2: global fold 1")
    # header lines (data, folds, plan, audio cache, runs to train), 2 per run, 1 per epoch, results
    assert len(lines) <= 5 + 2 * 2 + 4 * 1 + 2
    quiet = _cli("--data", own, "--out", tmp_path / "q", "--k", "2", "--folds", "1", "--norms", "none", "--epochs", "1", "--bs", "4",
                 "--quiet")  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert [line for line in quiet.stdout.splitlines() if line.startswith("run ")] == quiet.stdout.splitlines()[:1]
    assert len(quiet.stdout.splitlines()) == 3  # the run, then results and summary paths


@pytest.mark.process
def test_alias_script_keeps_fold_one_default(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "experiments" / "esc50_normalization.py"), "--help"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(repo)})  # fmt: skip
    assert done.returncode == 0 and "--csv" in done.stdout and "--fold-col" in done.stdout


def test_an_unforeseen_error_is_one_line_with_exit_1_and_the_traceback_only_with_debug(own, tmp_path, capsys, monkeypatch):
    import fastspecnorm.experiment.cli as cli

    def broken(*args, **kwargs):
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(cli, "prepare", broken)
    status, stderr = _main(capsys, "--data", own, "--k", "3", "--out", tmp_path / "out")
    assert status == 1 and stderr.splitlines() == [
        "error: OverflowError: Python int too large to convert to C long (unexpected: --debug shows the traceback; "
        "please report it)"
    ]
    with pytest.raises(OverflowError):
        _main(capsys, "--data", own, "--k", "3", "--out", tmp_path / "out", "--debug")


def test_an_out_that_is_a_file_is_refused_in_one_line_before_the_checks(own, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    status, stderr = _main(capsys, "--data", own, "--out", out, "--k", "3")
    assert status == 2 and f"--out {out} is a file" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert out.read_text() == "not a folder"


def test_warnings_are_one_line_in_the_command_and_pythons_own_after_it(own, tmp_path, capsys, fake_training):
    "own's names (ann_0.wav, ann_1.wav, ...) look like fragments of recordings: the command warns in one line, no path."
    import warnings

    before = warnings.showwarning
    status, stderr = _main(capsys, "--data", own, "--out", tmp_path / "out", "--k", "2", "--folds", "1", "--norms", "none",
                           "--epochs", "1", "--bs", "4", "--quiet")  # fmt: skip
    assert status == 0, stderr
    lines = [line for line in stderr.splitlines() if "clips share name prefixes" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: clips share name prefixes"), stderr
    assert "grid.py:" not in stderr and "sources.py:" not in stderr and "UserWarning" not in stderr, stderr
    assert warnings.showwarning is before  # library use from Python keeps Python's format
