"""`fastspecnorm compare` and `fastspecnorm.compare`: own data as a folder or a CSV, drawn folds,
failing before writing, logs that read well in a file, the command without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import fastspecnorm
from fastspecnorm import AudioDataLoaders
from fastspecnorm.datasets.sources import draw_folds
from fastspecnorm.experiment import ExperimentConfig, prepare, run_experiment
from fastspecnorm.experiment import train as train_module
from fastspecnorm.experiment.log import RunLog

SPEAKERS = ("ann", "bob", "cid", "dee")
TINY = {"bs": 4, "num_workers": 0}


def _clip(rng, label: int, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Clips of 3 labels by 4 speakers at 8 kHz, of different lengths: as a folder per label and
    as a CSV with a speaker column."""
    root = tmp_path_factory.mktemp("own") / "clips"
    rng = np.random.default_rng(0)
    rows = []
    for label in range(3):
        for speaker in SPEAKERS:
            for take in range(2):
                name = f"digit{label}/{speaker}_{take}.wav"
                (root / f"digit{label}").mkdir(parents=True, exist_ok=True)
                sf.write(root / name, _clip(rng, label, 8000, 0.3 + 0.1 * take), 8000, subtype="PCM_16")
                rows.append({"file": name, "label": f"digit{label}", "speaker": speaker})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def _fake_train_one(source, norm, fold, seed, settings, training, *args, **kwargs):
    "Stands in for training: a deterministic accuracy, and the fold's clips for the checks."
    n_valid = int((source.table["fold"] == fold).sum())
    return {"norm": norm, "fold": source.fold_value(fold), "seed": seed, "epochs": training.epochs, "accuracy": (fold + seed) / 20,
            "preset": kwargs.get("preset"), "n_valid": n_valid, "seconds": 0.0}  # fmt: skip


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setattr(train_module, "train_one", _fake_train_one)


def _quiet() -> RunLog:
    return RunLog(progress=False, quiet=True)


def test_draw_folds_stratified_and_grouped():
    labels = np.repeat(["a", "b", "c"], [30, 20, 10])
    folds = draw_folds(labels, k=5, seed=3)
    assert sorted(set(folds)) == [1, 2, 3, 4, 5]
    for label, n in (("a", 30), ("b", 20), ("c", 10)):  # each label spread evenly: n/5 per fold
        counts = np.bincount(folds[labels == label], minlength=6)[1:]
        assert counts.tolist() == [n // 5] * 5
    assert np.array_equal(folds, draw_folds(labels, k=5, seed=3))  # the same draw for the same seed
    assert not np.array_equal(folds, draw_folds(labels, k=5, seed=4))

    groups = np.array([f"g{i % 12}" for i in range(60)])
    grouped = draw_folds(labels, k=4, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(set(grouped[groups == g])) == 1, f"group {g} split across folds"
    assert sorted(set(grouped)) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot draw 5 folds from 3 group"):
        draw_folds(["a"] * 6, k=5, groups=["x", "y", "z"] * 2)


def test_folder_source_draws_folds_once_and_reuses_them(own, tmp_path, fake_training):
    out = tmp_path / "out"
    cfg = ExperimentConfig(data=str(own), out=out, norms=["none", "global"], seeds=[0, 1], k=3, overrides=dict(TINY))
    prep = prepare(cfg, _quiet())
    assert prep.source.dataset == "folder" and prep.folds == [1, 2, 3]
    assert prep.settings.sample_rate == 8000 and prep.settings.duration is None  # the "own" preset keeps rate and length
    folds = pd.read_csv(out / "folds.csv")
    assert list(folds.columns) == ["file", "repeat", "fold"] and len(folds) == 24 and set(folds["repeat"]) == {0}
    assert set(folds["file"]) == {str(p.relative_to(own).as_posix()) for p in own.rglob("*.wav")}

    run_experiment(cfg, _quiet(), prep=prep)
    results = pd.read_csv(out / "results.csv")
    assert sorted(zip(results["norm"], results["fold"], results["seed"], strict=True)) == sorted(
        (n, f, s) for n in ("none", "global") for f in (1, 2, 3) for s in (0, 1))  # fmt: skip

    # A later process reads the saved folds; it draws none.
    import fastspecnorm.experiment.grid as grid

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grid, "draw_folds", lambda *a, **k: pytest.fail("folds drawn again"))
        again = prepare(ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, overrides=dict(TINY)), _quiet())
    table = again.source.table.set_index("file")["fold"]
    assert all(table[f] == k for f, k in zip(folds["file"], folds["fold"], strict=True))
    # Folds edited by hand are refused, not used (issue 32: swapped folds were used silently).
    edited = folds.copy()
    edited["fold"] = 4 - edited["fold"]
    edited.to_csv(out / "folds.csv", index=False)
    with pytest.raises(ValueError, match="folds.csv was changed after this tool wrote it"):
        prepare(ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, overrides=dict(TINY)), _quiet())


def test_repeated_k_fold_draws_other_partitions_and_resumes_with_more(own, tmp_path, fake_training):
    "--repeats R: R stratified partitions in folds.csv (repeat, fold), a `repeat` column, old folds.csv read as repeat 0."
    from fastspecnorm.experiment import summarize
    from fastspecnorm.experiment.cli import parse_args

    out = tmp_path / "out"
    cfg = ExperimentConfig(data=str(own), out=out, norms=["none", "global"], seeds=[0], k=3, repeats=2, overrides=dict(TINY))
    prep = prepare(cfg, _quiet())
    folds = pd.read_csv(out / "folds.csv")
    assert list(folds.columns) == ["file", "repeat", "fold"] and len(folds) == 48
    by_repeat = {r: t.set_index("file")["fold"] for r, t in folds.groupby("repeat")}
    assert not by_repeat[0].equals(by_repeat[1].loc[by_repeat[0].index])  # another partition
    for fold_of in by_repeat.values():  # each stratified: 8 clips of each label over 3 folds, so 2 or 3 per fold
        counts = pd.crosstab(fold_of.index.str.split("/").str[0], fold_of.to_numpy())
        assert counts.shape == (3, 3) and set(counts.to_numpy().ravel()) <= {2, 3}
    # repeat 0 is the draw a single k-fold makes, so an existing OUT keeps its folds
    single = prepare(
        ExperimentConfig(data=str(own), out=tmp_path / "single", norms=["none"], k=3, overrides=dict(TINY)), _quiet()
    )
    assert single.source.table.set_index("file")["fold"].to_dict() == by_repeat[0].to_dict()

    run_experiment(cfg, _quiet(), prep=prep)
    results = pd.read_csv(out / "results.csv")
    assert sorted(set(zip(results["repeat"], results["fold"], strict=True))) == [(r, f) for r in (0, 1) for f in (1, 2, 3)]
    assert len(results) == 12 and results["run_id"].str.contains("-r1-fold").sum() == 6
    assert summarize(results).paired.loc["global", "n_folds"] == 6
    assert "in 2 repeats" in (out / "summary.md").read_text()

    # Resumed with a third repeat: repeats 0 and 1 kept as they were, repeat 2 drawn and run.
    cfg3 = ExperimentConfig(data=str(own), out=out, norms=["none", "global"], seeds=[0], k=3, repeats=3, overrides=dict(TINY))
    run_experiment(cfg3, _quiet())
    grown = pd.read_csv(out / "folds.csv")
    assert len(grown) == 72 and grown[grown["repeat"] < 2].reset_index(drop=True).equals(folds)
    assert len(pd.read_csv(out / "results.csv")) == 18

    # A folds.csv written before repeated k-fold (file, fold) is read as repeat 0.
    old = tmp_path / "old"
    old.mkdir()
    folds[folds["repeat"] == 0][["file", "fold"]].to_csv(old / "folds.csv", index=False)
    again = prepare(ExperimentConfig(data=str(own), out=old, norms=["none"], k=3, overrides=dict(TINY)), _quiet())
    assert again.source.table.set_index("file")["fold"].to_dict() == by_repeat[0].to_dict()

    # Fixed folds take no repeats, refused before anything is written.
    with pytest.raises(SystemExit):
        parse_args(["--csv", str(own / "labels.csv"), "--fold-col", "speaker", "--repeats", "2", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="fixed"):
        prepare(ExperimentConfig(data=None, csv=str(own / "labels.csv"), fold_col="speaker", repeats=2, out=tmp_path / "y",
                                 overrides=dict(TINY)), _quiet())  # fmt: skip
    assert not (tmp_path / "y").exists()


@pytest.mark.process
def test_folds_are_the_same_in_a_second_process(own, tmp_path):
    out = tmp_path / "out"
    code = (
        "import sys; from fastspecnorm.experiment import ExperimentConfig, prepare; from fastspecnorm.experiment.log import RunLog;"
        f"prepare(ExperimentConfig(data={str(own)!r}, out={str(out)!r}, norms=['none'], k=4, overrides={TINY!r}), RunLog(quiet=True))"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], check=True)
    first = (out / "folds.csv").read_bytes()
    prep = prepare(ExperimentConfig(data=str(own), out=out, norms=["none"], k=4, overrides=dict(TINY)), _quiet())
    assert (out / "folds.csv").read_bytes() == first
    assert prep.source.table["fold"].tolist() == pd.read_csv(out / "folds.csv")["fold"].tolist()


def test_csv_with_fold_column_of_speakers(own, tmp_path, fake_training):
    out = tmp_path / "out"
    cfg = ExperimentConfig(data=None, csv=str(own / "labels.csv"), fold_col="speaker", out=out, norms=["none"], folds=["bob", "dee"],
                           overrides=dict(TINY))  # fmt: skip
    prep = prepare(cfg, _quiet())
    assert prep.source.dataset == "csv" and prep.folds == [2, 4]  # speakers in sorted order: ann 1, bob 2, cid 3, dee 4
    assert prep.source.fold_name(2) == "bob" and not (out / "folds.csv").exists()
    run_experiment(cfg, _quiet(), prep=prep)
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["fold"]) == ["bob", "dee"] and (results["n_valid"] == 6).all()  # 3 labels x 2 takes of one speaker


def test_a_named_fold_stays_named_in_results_summary_and_plot(own, tmp_path):
    "--folds bob on a CSV of speakers: trained for real, recorded as 'bob', not as its number 2."
    out = tmp_path / "out"
    fastspecnorm.compare(own / "labels.csv", out, norms=["none", "global"], folds=["bob"], fold_col="speaker", epochs=1,
                         quiet=True, **TINY)  # fmt: skip
    results = pd.read_csv(out / "results.csv")
    assert results["fold"].tolist() == ["bob", "bob"] and (results["n_valid"] == 6).all()
    assert "over 1 fold(s) (bob)" in (out / "summary.md").read_text()
    assert sorted(p.name.split("-")[1] for p in (out / "runs").glob("*.json")) == ["fold2", "fold2"]  # ids keep the number


def test_csv_k_folds_grouped_by_speaker(own, tmp_path):
    out = tmp_path / "out"
    cfg = ExperimentConfig(data=None, csv=str(own / "labels.csv"), group_col="speaker", k=2, out=out, norms=["none"],
                           overrides=dict(TINY))  # fmt: skip
    prepare(cfg, _quiet())
    folds = pd.read_csv(out / "folds.csv").merge(pd.read_csv(own / "labels.csv"), on="file")
    assert folds.groupby("speaker")["fold"].nunique().max() == 1  # no speaker in two folds
    assert sorted(folds["fold"].unique()) == [1, 2]


def _main(capsys, *args) -> tuple[int, str]:
    """The command's status and stderr, run in this process through its own entry (a subprocess per
    case costs a torch import; test_help_and_argument_errors_do_not_import_torch runs the installed
    command)."""
    from fastspecnorm.experiment.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as e:  # argparse's errors
        status = e.code
    return status, capsys.readouterr().err


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


@pytest.mark.parametrize("option, wrong, right", [("--label-col", "lable", "label"), ("--fold-col", "speakr", "speaker")])
def test_a_misspelt_column_gets_the_closest_name(own, tmp_path, capsys, option, wrong, right):
    status, stderr = _main(capsys, "--csv", own / "labels.csv", option, wrong, "--out", tmp_path / "out")
    assert status == 2 and stderr.splitlines() == [
        f"error: {option} {wrong!r} is not a column of {own / 'labels.csv'} (did you mean {right!r}?); "
        "its columns are ['file', 'label', 'speaker']"
    ]


def test_a_csv_read_against_the_wrong_folder_says_which_path_to_pass(own, tmp_path, capsys):
    "The CSV moved into meta/ (its names relative to the folder above): one line, naming the --path that holds them."
    import shutil

    clips = tmp_path / "clips"
    shutil.copytree(own, clips)
    (clips / "meta").mkdir()
    (clips / "labels.csv").rename(clips / "meta" / "labels.csv")
    csv = clips / "meta" / "labels.csv"
    status, stderr = _main(capsys, "--csv", csv, "--out", tmp_path / "out")
    assert status == 2 and stderr.splitlines() == [
        f"error: none of the 24 files listed in {csv} is under {clips / 'meta'} (the CSV's folder, the default), "
        f"e.g. {clips / 'meta' / 'digit0/ann_0.wav'}: pass --path {clips} (path= in compare())"
    ]
    nowhere = tmp_path / "a" / "b"  # no folder near it holds the clips
    nowhere.mkdir(parents=True)
    status, stderr = _main(capsys, "--csv", csv, "--path", nowhere, "--out", tmp_path / "out")
    assert status == 2 and stderr.splitlines() == [
        f"error: none of the 24 files listed in {csv} is under {nowhere}, e.g. {nowhere / 'digit0/ann_0.wav'}: "
        "pass --path DIR, the folder its file names are relative to (path= in compare())"
    ]
    assert not (tmp_path / "out").exists()


def test_another_experiment_is_refused_on_an_out_even_before_any_run_finished(own, tmp_path, fake_training):
    out = tmp_path / "out"
    base = dict(data=str(own), out=out, norms=["none"], k=3)
    prepare(ExperimentConfig(**base, overrides={**TINY, "bs": 8}), _quiet())  # nothing trained
    with pytest.raises(
        ValueError, match=r"another experiment \(no run finished yet\) \(differing: settings.bs: 8 in OUT, 4 here"
    ):
        prepare(ExperimentConfig(**base, overrides=dict(TINY)), _quiet())
    (out / "experiment.json").unlink()  # as the message says: this one may start there now
    run_experiment(ExperimentConfig(**base, folds=[1], overrides=dict(TINY)), _quiet())
    with pytest.raises(ValueError, match="holds finished runs of another experiment .*settings.bs: 4 in OUT, 8 here"):
        prepare(ExperimentConfig(**base, overrides={**TINY, "bs": 8}), _quiet())


def test_two_experiments_started_together_on_one_out_one_is_refused(own, tmp_path, fake_training):
    import threading

    out, errors = tmp_path / "out", []

    def start(epochs):
        try:
            prepare(ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, epochs=epochs, overrides=dict(TINY)), _quiet())
        except ValueError as e:
            errors.append(str(e))

    for _ in range(3):
        (out / "experiment.json").unlink(missing_ok=True)
        errors.clear()
        threads = [threading.Thread(target=start, args=(epochs,)) for epochs in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 1 and "settings.epochs" in errors[0], errors
    identity = json.loads((out / "experiment.json").read_text())
    assert identity["settings"]["epochs"] in (1, 2)


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


def test_a_relabelled_csv_or_edited_folds_csv_between_resumes_is_refused_naming_the_rows(own, tmp_path, fake_training):
    csv, out = tmp_path / "labels.csv", tmp_path / "out"
    table = pd.read_csv(own / "labels.csv")
    table.to_csv(csv, index=False)
    cfg = dict(csv=str(csv), path=str(own), out=out, norms=["none"], folds=[1], k=3, group_col="speaker", overrides=dict(TINY))
    run_experiment(ExperimentConfig(**cfg), _quiet())
    relabelled = table.assign(label=["digit2" if i == 0 else v for i, v in enumerate(table["label"])])
    relabelled.to_csv(csv, index=False)
    first = table["file"].iloc[0]
    with pytest.raises(
        ValueError, match=rf"the table .* differs .*1 row\(s\): {first}: \['digit0', None, 'ann'\] in OUT, \['digit2'"
    ):
        prepare(ExperimentConfig(**cfg), _quiet())
    table.to_csv(csv, index=False)  # restored: resumes
    prepare(ExperimentConfig(**cfg), _quiet())
    folds = pd.read_csv(out / "folds.csv")
    folds.loc[0, "fold"] = 99 if folds.loc[0, "fold"] != 99 else 1  # a clip moved to another fold by hand
    folds.to_csv(out / "folds.csv", index=False)
    with pytest.raises(ValueError, match="folds.csv was changed after this tool wrote it"):
        prepare(ExperimentConfig(**cfg), _quiet())


def test_a_class_left_without_training_clips_is_refused_in_one_line_or_dropped(own, tmp_path, capsys):
    # digit2 recorded by one speaker only: grouped by speaker, its clips all land in one fold.
    csv = tmp_path / "labels.csv"
    table = pd.read_csv(own / "labels.csv")
    table.loc[table["label"] == "digit2", "speaker"] = "ann"
    table.to_csv(csv, index=False)
    args = ["--csv", csv, "--path", own, "--group-col", "speaker", "--k", "2", "--norms", "none", "--bs", "2"]
    status, stderr = _main(capsys, *args, "--out", tmp_path / "out")
    assert status == 2 and "Traceback" not in stderr, stderr
    assert "class(es) ['digit2'] have no training clip when fold" in stderr and "groups ['ann']" in stderr
    assert "--drop-rare-classes" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    prep = prepare(ExperimentConfig(csv=str(csv), path=str(own), group_col="speaker", k=2, norms=["none"], out=tmp_path / "out",
                                    drop_rare_classes=True, overrides=dict(TINY)), _quiet())  # fmt: skip
    assert prep.experiment["dropped_classes"] == ["digit2"] and "digit2" not in set(prep.source.table["label"])


def test_from_df_refuses_a_class_that_only_validation_holds(own):
    table = pd.read_csv(own / "labels.csv")
    table["is_valid"] = table["label"] == "digit2"  # digit2 only in validation
    with pytest.raises(ValueError, match=r"class\(es\) \['digit2'\] have no training clip in this split"):
        AudioDataLoaders.from_df(table, path=own, fn_col="file", label_col="label", valid_col="is_valid", bs=2, cache=False)


def test_compare_from_python_returns_the_summary(own, tmp_path, fake_training):
    table = fastspecnorm.compare(own / "labels.csv", tmp_path / "out", norms=["none", "global"], seeds=(0, 1), k=2,
                                 group_col="speaker", quiet=True, **TINY)  # fmt: skip
    assert list(table["norm"]) == ["none", "global"] and (table["n"] == 4).all()
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    none = results[results["norm"] == "none"]["accuracy"]
    assert table.loc[0, "mean"] == pytest.approx(none.mean())
    assert table.loc[1, "diff_vs_none"] == pytest.approx(0.0)  # the fake accuracy depends on fold and seed only
    # the verdict against none, with the fold as the unit (2 folds of 2 seeds each here)
    for column in ("n_folds", "n_folds_vs_none", "p_adjusted", "p_better", "p_equivalent", "p_worse", "verdict", "folds_needed"):
        assert column in table.columns, column
    assert table.loc[1, "n_folds_vs_none"] == 2 and table.loc[1, "n_pairs_vs_none"] == 4
    assert table.loc[1, "verdict"] == "equivalent"  # identical accuracies: a zero-width interval inside ±1 point
    assert pd.isna(table.loc[0, "verdict"])
    df = pd.read_csv(own / "labels.csv")
    from_df = fastspecnorm.compare(df, tmp_path / "out2", norms=["none"], path=own, fold_col="speaker", quiet=True, **TINY)
    assert from_df.loc[0, "n"] == 4
    assert pd.read_csv(tmp_path / "out2" / "source.csv").equals(df)  # the table kept with the results
    missing = pd.concat([df, pd.DataFrame({"file": ["digit0/nobody.wav"], "label": ["digit0"], "speaker": ["ann"]})])
    with pytest.raises(ValueError, match="nobody.wav: file is missing"):  # checked before OUT is written
        fastspecnorm.compare(missing, tmp_path / "out4", norms=["none"], path=own, fold_col="speaker", quiet=True, **TINY)
    assert not (tmp_path / "out4").exists()
    with pytest.raises(TypeError, match="unknown option"):
        fastspecnorm.compare(own, tmp_path / "out3", kk=3)


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
    assert len(lines) <= 4 + 2 * 2 + 4 * 1 + 2  # header lines, 2 per run, 1 per epoch, results
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


def test_fsdd_folder_with_a_nan_clip_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from fastspecnorm.datasets.fsdd import FSDD_SPEAKERS
    from fastspecnorm.experiment.cli import main

    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for digit in range(2):
        for speaker in FSDD_SPEAKERS[:3]:
            for take in range(3):
                sf.write(rec / f"{digit}_{speaker}_{take}.wav", _clip(rng, digit, 8000, 0.3), 8000, subtype="FLOAT")
    bad = [rec / "1_jackson_2.wav", rec / "0_lucas_0.wav"]
    for path in bad:
        samples = _clip(rng, 0, 8000, 0.3)
        samples[100] = np.nan
        sf.write(path, samples, 8000, subtype="FLOAT")
    monkeypatch.setattr(train_module, "train_one", lambda *a, **k: pytest.fail("should not train"))
    status = main(["--data", tmp_path / "fsdd", "--out", tmp_path / "out", "--norms", "none", "--bs", "4"])
    err = capsys.readouterr().err
    assert status == 2 and "2 of 18 audio file(s) cannot be used" in err
    assert all(str(path) in err for path in bad) and "NaN" in err
    assert not (tmp_path / "out").exists()


def test_claim_left_on_a_recorded_run_is_cleared_by_the_next_start(own, tmp_path, fake_training):

    out = tmp_path / "out"
    cfg = ExperimentConfig(data=str(own), out=out, norms=["none"], k=2, folds=[1], overrides=dict(TINY))
    run_experiment(cfg, _quiet())
    (record,) = (out / "runs").glob("*.json")
    claim = out / "claims" / record.name  # as left by a process killed after recording, while rebuilding
    claim.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "x", "heartbeat": __import__("time").time()}))
    run_experiment(cfg, _quiet())
    assert not claim.exists()


def test_a_deleted_folds_csv_is_written_back(own, tmp_path, fake_training):
    "The log says the folds are saved: after folds.csv is deleted from an OUT with finished runs, it is there again."
    out = tmp_path / "out"
    cfg = ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, overrides=dict(TINY))
    run_experiment(cfg, _quiet())
    first = (out / "folds.csv").read_bytes()
    (out / "folds.csv").unlink()
    prepare(ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, overrides=dict(TINY)), _quiet())
    assert (out / "folds.csv").read_bytes() == first  # the same draw (same seed), written back


def test_an_emptied_experiment_json_is_named_as_damaged_not_as_an_older_format(own, tmp_path, fake_training):
    out = tmp_path / "out"
    run_experiment(ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, overrides=dict(TINY)), _quiet())
    (out / "experiment.json").write_text("{}")
    with pytest.raises(ValueError, match=r"experiment.json holds no experiment identity \(\{\}\).*restore it") as info:
        prepare(ExperimentConfig(data=str(own), out=out, norms=["none"], k=3, overrides=dict(TINY)), _quiet())
    assert "older format" not in str(info.value)


@pytest.mark.parametrize(
    "edit, option, message",
    [
        (lambda df: df.assign(speaker=[""] + list(df["speaker"][1:])), "--fold-col", "line(s) [2] have an empty 'speaker'"),
        (
            lambda df: df.assign(speaker=["01" if i == 0 else "1" if i % 2 else "2" for i in range(len(df))]),
            "--fold-col",
            "spells one fold number several ways (['01', '1'])",
        ),
        (lambda df: df.assign(speaker=[""] + list(df["speaker"][1:])), "--group-col", "line(s) [2] have an empty 'speaker'"),
        (lambda df: df.assign(label=["NaN"] + list(df["label"][1:])), "--group-col", "line(s) [2] have the label 'NaN'"),
        (  # an OverflowError traceback before (issue 32)
            lambda df: df.assign(speaker=["99999999999999999999" if i == 0 else str(1 + i % 2) for i in range(len(df))]),
            "--fold-col",
            "line(s) [2] have the fold '99999999999999999999', beyond 64-bit integers",
        ),
    ],
)
def test_csv_cells_that_would_change_folds_silently_are_refused(own, tmp_path, edit, option, message, capsys):
    "An empty fold or group cell, or one fold number spelled two ways (01 and 1), is refused before OUT is touched."
    csv = tmp_path / "labels.csv"
    edit(pd.read_csv(own / "labels.csv", dtype=str)).to_csv(csv, index=False)
    out = tmp_path / "out"
    status, stderr = _main(capsys, "--csv", csv, "--path", own, option, "speaker", "--out", out)
    assert status == 2 and message in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()


def _first_file(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df.assign(file=[name] + list(df["file"][1:]))


@pytest.mark.parametrize(
    "edit, message, outside",
    [
        (lambda df: pd.concat([df, df.iloc[[3]]]), "row 24: 'digit0/bob_1.wav' is listed 2 times (row 3, row 24)", False),
        (
            lambda df: pd.concat([_first_file(df, "./digit0/ann_0.wav"), df.iloc[[0]]]),
            "row 24: 'digit0/ann_0.wav' is the same clip as row 0 ('./digit0/ann_0.wav')",
            False,
        ),
        (lambda df: _first_file(df, "../digit0/ann_0.wav"), "row 0: '../digit0/ann_0.wav' leaves the audio folder", True),
        (lambda df: _first_file(df, "/tmp/x.wav"), "row 0: '/tmp/x.wav' is an absolute path", True),
    ],
    ids=["repeated", "two-spellings", "dotdot", "absolute"],
)
def test_csv_file_names_are_checked_before_out_is_written(own, tmp_path, edit, message, outside, capsys):
    "Repeated rows, two spellings of a clip, names leaving --path: one error line, OUT never created (issue 32)."
    csv = tmp_path / "labels.csv"
    edit(pd.read_csv(own / "labels.csv", dtype=str)).to_csv(csv, index=False)
    out = tmp_path / "out"
    status, stderr = _main(capsys, "--csv", csv, "--path", own, "--group-col", "speaker", "--out", out)
    assert status == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert ("--allow-outside" in stderr) == outside, stderr  # offered only where it helps, as the command spells it
    assert not out.exists()


def test_folder_links_are_checked_before_out_is_written(own, tmp_path, capsys, fake_training):
    "A link making one clip two clips of two labels, or leading outside: refused before OUT; a link loop is not followed."
    import shutil

    data = tmp_path / "clips"
    shutil.copytree(own, data, ignore=shutil.ignore_patterns("*.csv"))
    (data / "digit1" / "cross.wav").symlink_to(data / "digit0" / "ann_0.wav")  # one clip under two labels
    out = tmp_path / "out"
    status, stderr = _main(capsys, "--data", data, "--k", "2", "--out", out)
    assert status == 2 and "'digit1/cross.wav' is the same clip as row 0 ('digit0/ann_0.wav')" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists()
    (data / "digit1" / "cross.wav").unlink()
    (data / "digit1" / "outside.wav").symlink_to(own / "digit0" / "ann_0.wav")  # a clip outside --data
    status, stderr = _main(capsys, "--data", data, "--k", "2", "--out", out)
    assert status == 2 and f"'digit1/outside.wav' is a link to {own / 'digit0' / 'ann_0.wav'}, outside {data}" in stderr
    assert "copying the linked files into it" in stderr and "allow" not in stderr  # the command has no option for that
    assert not out.exists()
    (data / "digit1" / "outside.wav").unlink()
    (data / "digit1" / "loop").symlink_to(data)  # a loop: digit1/loop/digit1/loop/...
    prep = prepare(ExperimentConfig(data=str(data), out=out, norms=["none"], k=2, overrides=dict(TINY)), _quiet())
    assert sorted(prep.source.table["file"]) == sorted(p.relative_to(own).as_posix() for p in own.rglob("*.wav"))


def test_a_clip_whose_wav_header_disagrees_with_its_frames_is_refused_before_out_is_written(own, tmp_path, capsys):
    "7 channels claimed over mono 16-bit data decoded as noise and was trained on (issue 32): one line, OUT absent."
    import shutil
    import struct

    data = tmp_path / "clips"
    shutil.copytree(own, data)
    clip = data / "digit2" / "cid_1.wav"
    raw = bytearray(clip.read_bytes())
    assert raw[12:16] == b"fmt "  # soundfile's canonical header: the channel count at byte 22
    raw[22:24] = struct.pack("<H", 7)
    clip.write_bytes(bytes(raw))
    out = tmp_path / "out"
    status, stderr = _main(capsys, "--csv", data / "labels.csv", "--group-col", "speaker", "--k", "2", "--out", out)
    assert status == 2 and stderr.splitlines() == [
        f"error: 1 of 24 audio file(s) cannot be used; fix or remove it: {clip}: the header claims 7 channel(s) of PCM_16 "
        "samples, 7 x 2 = 14 bytes a frame, but a block align of 2 bytes: its header is damaged (its samples would decode "
        "as noise); re-encode the file or leave it out"
    ]
    assert not out.exists()


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


def test_compare_from_two_threads_at_once_is_refused_before_anything_is_written(own, tmp_path, monkeypatch):
    # Runs seed the process's global generators: a second thread would not reproduce the command.
    import threading

    started, finish = threading.Event(), threading.Event()

    def slow_train_one(*args, **kwargs):
        started.set()
        finish.wait(60)
        return _fake_train_one(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one", slow_train_one)
    first = threading.Thread(target=fastspecnorm.compare, args=(own, tmp_path / "a"),
                             kwargs=dict(norms=["none"], folds=[1], k=2, quiet=True, **TINY))  # fmt: skip
    first.start()
    try:
        assert started.wait(60)
        with pytest.raises(RuntimeError, match="already running in this process"):
            fastspecnorm.compare(own, tmp_path / "b", norms=["none"], folds=[1], k=2, quiet=True, **TINY)
        assert not (tmp_path / "b").exists()
    finally:
        finish.set()
        first.join(60)
    assert (tmp_path / "a" / "results.csv").is_file()
    fastspecnorm.compare(own, tmp_path / "b", norms=["none"], folds=[1], k=2, quiet=True, **TINY)  # one after the other: fine


def test_an_out_that_is_a_file_is_refused_in_one_line_before_the_checks(own, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    status, stderr = _main(capsys, "--data", own, "--out", out, "--k", "3")
    assert status == 2 and f"--out {out} is a file" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert out.read_text() == "not a folder"


def test_a_csv_of_absolute_paths_is_compared_and_a_mixed_one_refused_naming_its_column(own, tmp_path, capsys, fake_training):
    table = pd.read_csv(own / "labels.csv").rename(columns={"file": "path"})
    table["path"] = [str(own / f) for f in table["path"]]  # as users export them
    csv = tmp_path / "abs.csv"
    table.to_csv(csv, index=False)
    prep = prepare(ExperimentConfig(csv=str(csv), out=tmp_path / "out", norms=["none"], k=2, group_col="speaker",
                                    overrides=dict(TINY)), _quiet())  # fmt: skip
    assert prep.source.allow_outside and prep.experiment["source"]["allow_outside"] is True
    run_experiment(ExperimentConfig(csv=str(csv), out=tmp_path / "out", norms=["none"], folds=[1], k=2, group_col="speaker",
                                    overrides=dict(TINY)), _quiet())  # fmt: skip
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 1
    mixed = table.copy()
    mixed.loc[1:, "path"] = [str(Path(p).relative_to(own)) for p in mixed["path"][1:]]
    mixed.to_csv(csv, index=False)
    status, stderr = _main(capsys, "--csv", csv, "--path", own, "--group-col", "speaker", "--k", "2", "--out", tmp_path / "o2")
    assert status == 2 and "file names in column 'path'" in stderr and "--allow-outside" in stderr, stderr
    assert not (tmp_path / "o2").exists()
    status, stderr = _main(capsys, "--csv", csv, "--path", own, "--group-col", "speaker", "--k", "2", "--out", tmp_path / "o2",
                           "--allow-outside", "--norms", "none", "--folds", "1", "--bs", "4", "--quiet")  # fmt: skip
    assert status == 0, stderr
