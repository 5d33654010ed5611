"""The dataset registry (`RECIPES`, `register`): a dataset added in one file is detected, read,
checked, refused where its folds are fixed and named in the summary, with nothing else edited."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fastspecnorm import RECIPES, Recipe, SourceSpec
from fastspecnorm.datasets.sources import DataSource, describe_table, detect_dataset, read_source, register
from fastspecnorm.experiment import ExperimentConfig, prepare
from fastspecnorm.experiment.grid import check_config, experiment_title
from fastspecnorm.experiment.log import RunLog


def _read_us8k(spec: SourceSpec) -> DataSource:
    "UrbanSound8K's layout: metadata/UrbanSound8K.csv (slice_file_name, fold, class) and audio/fold<k>/."
    root = Path(spec.data)
    meta = pd.read_csv(root / "metadata" / "UrbanSound8K.csv")
    table = pd.DataFrame({"file": [f"audio/fold{k}/{n}" for n, k in zip(meta["slice_file_name"], meta["fold"], strict=True)],
                          "label": meta["class"].astype(str), "fold": meta["fold"].astype(int)})  # fmt: skip
    return DataSource("us8k-test", root, table, "own", fingerprint_names=["metadata/UrbanSound8K.csv"],
                      description=describe_table("UrbanSound8K layout", table))  # fmt: skip


US8K = Recipe("us8k-test", "own", _read_us8k, "UrbanSound8K layout: metadata/UrbanSound8K.csv and audio/fold<k>/",
              "UrbanSound8K (test)", detect=lambda p: (p / "metadata" / "UrbanSound8K.csv").is_file())  # fmt: skip


@pytest.fixture
def us8k(tmp_path):
    "A tiny UrbanSound8K-layout folder (2 classes x 3 folds x 2 clips) and its recipe, registered for the test."
    root = tmp_path / "us8k"
    rows, rng = [], np.random.default_rng(0)
    for fold in (1, 2, 3):
        for label in ("dog_bark", "siren"):
            for take in range(2):
                name = f"{fold}{take}-{label}.wav"
                (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
                sf.write(root / "audio" / f"fold{fold}" / name, 0.1 * rng.standard_normal(4000), 8000)
                rows.append({"slice_file_name": name, "fold": fold, "class": label})
    (root / "metadata").mkdir()
    pd.DataFrame(rows).to_csv(root / "metadata" / "UrbanSound8K.csv", index=False)
    register(US8K)
    yield root
    RECIPES.pop(US8K.name)


def test_the_package_registers_its_four_datasets_in_order():
    assert list(RECIPES)[:4] == ["esc50", "fsdd", "folder", "csv"]
    assert [r.name for r in RECIPES.values() if r.fallback] == ["folder"]


def test_a_registered_dataset_is_detected_before_the_folder_fallback(us8k):
    # audio/fold1/... also looks like "one subfolder per label": the specific layout wins.
    assert RECIPES["folder"].detect(us8k)
    assert detect_dataset(us8k) == "us8k-test"
    source = read_source(SourceSpec(data=us8k))
    assert source.dataset == "us8k-test" and source.folds == [1, 2, 3] and len(source.table) == 12


def test_a_registered_dataset_runs_through_prepare_and_names_the_summary(us8k, tmp_path):
    cfg = ExperimentConfig(data=str(us8k), out=tmp_path / "out", norms=["none"], overrides={"bs": 2, "sample_rate": 8000})
    prep = prepare(cfg, RunLog(quiet=True))
    assert prep.experiment["dataset"] == "us8k-test" and prep.folds == [1, 2, 3]
    assert set(prep.data["files"]) == {"metadata/UrbanSound8K.csv", *prep.source.table["file"]}
    assert experiment_title(prep.experiment).startswith("UrbanSound8K (test), preset own")


def test_fixed_folds_of_a_registered_dataset_take_no_repeats(us8k, tmp_path):
    with pytest.raises(ValueError, match="folds are fixed"):
        check_config(ExperimentConfig(data=str(us8k), dataset="us8k-test", out=tmp_path, repeats=2))


def test_a_name_is_registered_once(us8k):
    with pytest.raises(ValueError, match="registered already"):
        register(US8K)


def test_synthetic_and_download_name_the_datasets_that_can(tmp_path):
    with pytest.raises(ValueError, match=r"--data synthetic generates data for the datasets \['esc50'\]"):
        check_config(ExperimentConfig(data="synthetic", dataset="fsdd", out=tmp_path))
    with pytest.raises(ValueError, match=r"--data download downloads for the datasets \['esc50', 'fsdd'\]"):
        check_config(ExperimentConfig(data="download", dataset="folder", out=tmp_path))
