"""Tests for fastspecnorm.experiment.grid: preparing a grid once (`prepare`): every check before OUT is
written, the folds (drawn, saved in folds.csv, read back, repeats), the data fingerprint, and one experiment
per OUT (`experiment.json` under a lock).
"""

import os

import pandas as pd
import pytest

from fastspecnorm.experiment import ExperimentConfig, main
from fastspecnorm.experiment import runner as experiment
from fastspecnorm.experiment import train as train_module

ESC50_TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}


# ---------------------------------------------------------------------------------------------
# a synthetic ESC-50 folder (conftest's esc): one experiment per OUT, the data checked and fingerprinted


def _cfg(esc, out, norms=("none", "global", "instance"), seeds=(0,)):
    return ExperimentConfig(
        data=str(esc),
        out=out,
        folds=[1],
        seeds=list(seeds),
        norms=list(norms),
        preset="quick",
        epochs=1,
        overrides=dict(ESC50_TINY),
    )


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
