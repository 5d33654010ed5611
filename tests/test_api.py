"""Tests for fastspecnorm.experiment.api: `compare(...)` from Python, on a folder, a CSV or a DataFrame
(the same names as the command's options), returning the summary table.
"""

from __future__ import annotations

import pandas as pd
import pytest

import fastspecnorm
from fastspecnorm.experiment import train as train_module

TINY = {"bs": 4, "num_workers": 0}


def _fake_train_one(source, norm, fold, seed, settings, training, *args, **kwargs):
    "Stands in for training: a deterministic accuracy, and the fold's clips for the checks."
    n_valid = int((source.table["fold"] == fold).sum())
    return {"norm": norm, "fold": source.fold_value(fold), "seed": seed, "epochs": training.epochs, "accuracy": (fold + seed) / 20,
            "preset": kwargs.get("preset"), "n_valid": n_valid, "seconds": 0.0}  # fmt: skip


def test_a_named_fold_stays_named_in_results_summary_and_plot(own, tmp_path):
    "--folds bob on a CSV of speakers: trained for real, recorded as 'bob', not as its number 2."
    out = tmp_path / "out"
    fastspecnorm.compare(own / "labels.csv", out, norms=["none", "global"], folds=["bob"], fold_col="speaker", epochs=1,
                         quiet=True, **TINY)  # fmt: skip
    results = pd.read_csv(out / "results.csv")
    assert results["fold"].tolist() == ["bob", "bob"] and (results["n_valid"] == 6).all()
    assert "over 1 fold(s) (bob)" in (out / "summary.md").read_text()
    assert sorted(p.name.split("-")[1] for p in (out / "runs").glob("*.json")) == ["fold2", "fold2"]  # ids keep the number


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


def test_an_esc50_folder_compared_with_the_own_preset(esc, tmp_path, fake_training):
    "The own preset's sample rate is resolved from the ESC-50 clips' headers (it failed on headers the ESC-50 check kept)."
    table = fastspecnorm.compare(esc, tmp_path / "out", norms=["none"], folds=[1], preset="own", quiet=True, **TINY)
    assert table.loc[0, "n"] == 1
    assert pd.read_csv(tmp_path / "out" / "results.csv")["preset"].tolist() == ["own"]
