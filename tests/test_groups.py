"""Tests for fastspecnorm._groups: groups of clips taken from file names (`--group-regex`, `group_regex=`):
no recording in two folds, one warning when a folder's names look like fragments of recordings and no
group was given, one error naming a file the regex does not match (issue 31 item 2); and `draw_folds`
(stratified, grouped, the same draw for the same seed)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fastspecnorm import AudioDataLoaders
from fastspecnorm.datasets.sources import draw_folds
from fastspecnorm.experiment import ExperimentConfig, prepare
from fastspecnorm.experiment.cli import main
from fastspecnorm.experiment.log import RunLog

# A recording is cut into fragments named <label><recording>_<fragment>.wav, as users' clip folders often are.
REGEX = r"/([a-z]+\d+)_\d+\.wav$"
TINY = {"bs": 2, "num_workers": 0}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """A folder per label (3 labels), each with 6 recordings cut into 2-4 fragments; returns the folder
    and, worked out while writing (not from the regex), each file's recording."""
    root = tmp_path_factory.mktemp("recordings") / "clips"
    rng = np.random.default_rng(0)
    recording_of = {}
    for label in ("bird", "frog", "wind"):
        for rec in range(6):
            for frag in range(2 + rec % 3):
                name = f"{label}/{label}{rec}_{frag}.wav"
                (root / label).mkdir(parents=True, exist_ok=True)
                sf.write(root / name, (0.1 * rng.standard_normal(1200)).astype(np.float32), 8000, subtype="PCM_16")
                recording_of[name] = (label, rec)
    return root, recording_of


def _quiet() -> RunLog:
    return RunLog(progress=False, quiet=True)


def _config(root, out, **options) -> ExperimentConfig:
    return ExperimentConfig(data=str(root), out=out, norms=["none"], k=3, overrides=dict(TINY), **options)


def test_group_regex_keeps_each_recording_in_one_drawn_fold(recordings, tmp_path):
    root, recording_of = recordings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # groups given: no warning about leaking folds
        prepare(_config(root, tmp_path / "out", group_regex=REGEX), _quiet())
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    folds["recording"] = folds["file"].map(recording_of)
    assert folds["recording"].notna().all() and len(folds) == len(recording_of)
    assert folds.groupby("recording")["fold"].nunique().max() == 1  # no recording in two folds
    assert sorted(folds["fold"].unique()) == [1, 2, 3]
    identity = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert identity["source"]["group_regex"] == REGEX


def test_a_folder_without_groups_warns_once_how_folds_leak_and_draws_by_clip(recordings, tmp_path):
    root, recording_of = recordings
    with pytest.warns(UserWarning) as caught:
        prepare(_config(root, tmp_path / "out"), _quiet())
    leaks = [w for w in caught if "--group-regex" in str(w.message)]
    assert len(leaks) == 1, [str(w.message) for w in caught]
    message = str(leaks[0].message)
    assert "training and validation" in message and "bird/bird0_0.wav" in message
    # The regex it suggests fits the names and groups them as they were written.
    suggested = message.split("--group-regex '")[-1].split("'")[0]
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    folds["recording"] = folds["file"].map(recording_of)
    assert folds.groupby("recording")["fold"].nunique().max() > 1  # drawn by clip: what the warning is about
    identity = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert "group_regex" not in identity["source"]  # part of the identity only when given
    prepare(_config(root, tmp_path / "suggested", group_regex=suggested), _quiet())
    grouped = pd.read_csv(tmp_path / "suggested" / "folds.csv")
    grouped["recording"] = grouped["file"].map(recording_of)
    assert grouped.groupby("recording")["fold"].nunique().max() == 1


def test_names_that_only_repeat_the_label_do_not_warn(tmp_path):
    for label in ("a", "b"):
        for k in range(6):
            (tmp_path / "clips" / label).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "clips" / label / f"{label}_{k}.wav", np.zeros(1200, dtype=np.float32), 8000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AudioDataLoaders.from_folder(tmp_path / "clips", seed=0, cache=False, device="cpu", **TINY)


def test_a_name_the_regex_does_not_match_is_one_error_before_out_is_written(recordings, tmp_path, capsys):
    root, _ = recordings
    odd = shutil.copytree(root, tmp_path / "clips")
    sf.write(odd / "wind" / "gust.wav", np.zeros(1200, dtype=np.float32), 8000)  # no recording in its name
    out = tmp_path / "out"
    status = main(["--data", odd, "--out", out, "--group-regex", REGEX, "--norms", "none", "--k", "3", "--bs", "2"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: ")
    assert "'wind/gust.wav'" in err and REGEX in err
    assert not out.exists()
    with pytest.raises(ValueError, match="does not match 'wind/gust.wav'"):
        AudioDataLoaders.from_folder(odd, seed=0, cache=False, group_regex=REGEX, **TINY)


@pytest.mark.parametrize(
    "regex, message",
    [("(", "--group-regex '(' is not a regular expression"), (r"\d+\.wav", "has no group: put the part")],
)
def test_a_bad_regex_is_refused_as_an_argument(recordings, tmp_path, capsys, regex, message):
    root, _ = recordings
    with pytest.raises(SystemExit) as exit_:
        main(["--data", root, "--out", tmp_path / "out", "--group-regex", regex])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_from_folder_draws_whole_recordings_for_validation(recordings):
    root, recording_of = recordings
    dls = AudioDataLoaders.from_folder(root, seed=0, valid_pct=0.25, cache=False, device="cpu", group_regex=REGEX, **TINY)
    train = {recording_of[f] for f in dls.train.items["file"]}
    valid = {recording_of[f] for f in dls.valid.items["file"]}
    assert train and valid and not train & valid
    assert len(dls.train.items) + len(dls.valid.items) == len(recording_of)


def test_a_fixed_split_that_shares_a_recording_is_refused_naming_it(recordings):
    root, recording_of = recordings
    df = pd.DataFrame({"file": list(recording_of), "label": [r[0] for r in recording_of.values()]})
    df["is_valid"] = df["file"].str.endswith("_1.wav")  # second fragments validate: every such recording is on both sides
    with pytest.raises(ValueError, match=r"puts group 'bird0' in training \(bird/bird0_0.wav\) and validation"):
        AudioDataLoaders.from_df(df, path=root, valid_col="is_valid", cache=False, group_regex=REGEX, **TINY)


def test_fixed_folds_are_checked_to_keep_groups_whole(tiny_esc50, tmp_path):
    "ESC-50's official folds keep each source recording in one fold; a regex grouping across them is refused."
    cfg = ExperimentConfig(data=str(tiny_esc50), out=tmp_path / "ok", norms=["none"], group_regex=r"(\d+-\d+)-[A-Z]-\d+\.wav$",
                           overrides=dict(TINY))  # fmt: skip
    assert prepare(cfg, _quiet()).experiment["source"] == {"group_regex": r"(\d+-\d+)-[A-Z]-\d+\.wav$"}
    by_class = ExperimentConfig(data=str(tiny_esc50), out=tmp_path / "no", norms=["none"], group_regex=r"-(\d+)\.wav$",
                                overrides=dict(TINY))  # fmt: skip
    with pytest.raises(ValueError, match=r"puts group '0' in fold 1 and fold 2"):
        prepare(by_class, _quiet())
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------------------------------------
# draw_folds: stratified, grouped, reproducible


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
