"""Tests for fastspecnorm.experiment.grid: preparing a grid once (`prepare`): every check before OUT is
written, the folds (drawn, saved in folds.csv, read back, repeats), the data fingerprint, and one experiment
per OUT (`experiment.json` under a lock).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import esc50_config as _cfg
from helpers import main_status as _main

from fastspecnorm.experiment import ExperimentConfig, main, prepare, run_experiment
from fastspecnorm.experiment import runner as experiment
from fastspecnorm.experiment import train as train_module
from fastspecnorm.experiment.log import RunLog

ESC50_TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}

TINY = {"bs": 4, "num_workers": 0}


# ---------------------------------------------------------------------------------------------
# a synthetic ESC-50 folder (conftest's esc): one experiment per OUT, the data checked and fingerprinted


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


# ---------------------------------------------------------------------------------------------
# your own clips as a folder or a CSV (conftest's own): folds drawn once and reused, every check before OUT is written


def _clip(rng, label: int, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _quiet() -> RunLog:
    return RunLog(progress=False, quiet=True)


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


def test_csv_k_folds_grouped_by_speaker(own, tmp_path):
    out = tmp_path / "out"
    cfg = ExperimentConfig(data=None, csv=str(own / "labels.csv"), group_col="speaker", k=2, out=out, norms=["none"],
                           overrides=dict(TINY))  # fmt: skip
    prepare(cfg, _quiet())
    folds = pd.read_csv(out / "folds.csv").merge(pd.read_csv(own / "labels.csv"), on="file")
    assert folds.groupby("speaker")["fold"].nunique().max() == 1  # no speaker in two folds
    assert sorted(folds["fold"].unique()) == [1, 2]


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


def test_drop_rare_classes_leaves_out_a_fold_it_empties_and_one_class_is_refused(own, tmp_path, capsys):
    # digit2 recorded only by a fifth speaker, who recorded nothing else: with one speaker per fold,
    # dropping digit2 empties that speaker's fold, which then leaves the grid instead of failing mid-grid.
    csv = tmp_path / "labels.csv"
    table = pd.read_csv(own / "labels.csv")
    table.loc[table["label"] == "digit2", "speaker"] = "eve"
    table.to_csv(csv, index=False)
    cfg = dict(csv=str(csv), path=str(own), group_col="speaker", k=5, norms=["none"], drop_rare_classes=True,
               overrides=dict(TINY))  # fmt: skip
    prep = prepare(ExperimentConfig(**cfg, out=tmp_path / "out"), _quiet())
    drawn = pd.read_csv(tmp_path / "out" / "folds.csv")
    eve = int(drawn.set_index("file").loc[table.loc[table["speaker"] == "eve", "file"].iloc[0], "fold"])
    assert prep.folds == [f for f in range(1, 6) if f != eve] and prep.experiment["dropped_classes"] == ["digit2"]
    with pytest.raises(ValueError, match=rf"leaves fold\(s\) \[{eve}\] without clips"):
        prepare(ExperimentConfig(**cfg, out=tmp_path / "out", folds=[eve]), _quiet())
    table["label"] = "digit0"  # one class
    table.to_csv(csv, index=False)
    status, stderr = _main(capsys, "--csv", csv, "--path", own, "--group-col", "speaker", "--k", "2", "--out", tmp_path / "one")
    assert status == 2 and "the data hold one class ('digit0'): comparing classifiers needs two or more" in stderr, stderr
    assert not (tmp_path / "one").exists()


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
