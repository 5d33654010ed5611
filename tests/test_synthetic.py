"""Tests for fastspecnorm.datasets.synthetic: the ESC-50-layout synthetic dataset generator.

Every property is checked on the written files, read back with the csv module, soundfile and
NumPy, not through the generator's own helpers.
"""

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fastspecnorm.datasets import synthetic
from fastspecnorm.datasets.synthetic import make_synthetic_esc50

REPO = Path(__file__).resolve().parents[1]

# The real ESC-50 categories in target order, and its ESC-10 subset (from the ESC-50 README).
REAL_CATEGORIES = (
    "dog rooster pig cow frog cat hen insects sheep crow rain sea_waves crackling_fire crickets "
    "chirping_birds water_drops wind pouring_water toilet_flush thunderstorm crying_baby sneezing "
    "clapping breathing coughing footsteps laughing brushing_teeth snoring drinking_sipping "
    "door_wood_knock mouse_click keyboard_typing door_wood_creaks can_opening washing_machine "
    "vacuum_cleaner clock_alarm clock_tick glass_breaking helicopter chainsaw siren car_horn "
    "engine train church_bells airplane fireworks hand_saw"
).split()
REAL_ESC10 = {
    "dog",
    "rooster",
    "rain",
    "sea_waves",
    "crackling_fire",
    "crying_baby",
    "sneezing",
    "clock_tick",
    "helicopter",
    "chainsaw",
}
HEADER = "filename,fold,target,category,esc10,src_file,take"

SMALL = dict(n_classes=4, clips_per_class=6, n_folds=3, duration=1.0, n_silent=2, seed=0)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """24 clips of 1 s at 44.1 kHz, 2 of them silent; shared by the read-only tests."""
    return make_synthetic_esc50(tmp_path_factory.mktemp("small") / "esc50", **SMALL)


def read_rows(root):
    with open(root / "meta" / "esc50.csv", newline="") as file:
        return list(csv.DictReader(file))


def read_audio(root, rows):
    """int16 arrays in CSV order."""
    return [sf.read(root / "audio" / row["filename"], dtype="int16")[0] for row in rows]


def trailing_zeros(clip):
    """Length of the run of exact zeros at the end of ``clip``."""
    nonzero = np.flatnonzero(clip)
    return clip.size if nonzero.size == 0 else clip.size - 1 - nonzero[-1]


def file_digests(root):
    """{relative path: sha256} of every file under ``root``."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- layout and metadata ----------------------------------------------------------------------


def test_layout_and_columns(small_dataset):
    root = small_dataset
    assert (root / "meta" / "esc50.csv").read_text().splitlines()[0] == HEADER
    rows = read_rows(root)
    assert len(rows) == SMALL["n_classes"] * SMALL["clips_per_class"]
    filenames = [row["filename"] for row in rows]
    assert filenames == sorted(filenames)
    assert len(set(filenames)) == len(filenames)
    for row in rows:
        assert re.fullmatch(r"\d+-\d+-[A-Z]-\d+\.wav", row["filename"])
        assert row["filename"] == f"{row['fold']}-{row['src_file']}-{row['take']}-{row['target']}.wav"
        assert row["category"] == REAL_CATEGORIES[int(row["target"])]
        assert row["esc10"] == str(row["category"] in REAL_ESC10)
    assert {path.name for path in (root / "audio").iterdir()} == set(filenames)
    marker = json.loads((root / "meta" / "synthetic.json").read_text())
    assert marker["complete"] is True
    assert marker["arguments"]["seed"] == SMALL["seed"]


def test_returns_the_path(tmp_path):
    root = make_synthetic_esc50(str(tmp_path / "d"), n_classes=1, clips_per_class=1, n_folds=1, duration=0.05)
    assert root == tmp_path / "d"
    assert root.is_dir()


def test_all_fifty_categories_in_target_order(tmp_path):
    root = make_synthetic_esc50(tmp_path / "d", n_classes=50, clips_per_class=1, n_folds=1, duration=0.02, n_silent=0)
    rows = read_rows(root)
    assert {int(row["target"]): row["category"] for row in rows} == dict(enumerate(REAL_CATEGORIES))
    assert {row["category"] for row in rows if row["esc10"] == "True"} == REAL_ESC10


@pytest.mark.parametrize("sample_rate, duration", [(44100, 5.0), (16000, 0.5), (22050, 1.25)])
def test_every_listed_file_is_mono_int16_of_exact_length(tmp_path, sample_rate, duration):
    root = make_synthetic_esc50(
        tmp_path / "d", n_classes=2, clips_per_class=2, n_folds=2, sample_rate=sample_rate, duration=duration
    )
    for row in read_rows(root):
        info = sf.info(root / "audio" / row["filename"])
        assert (info.format, info.subtype) == ("WAV", "PCM_16")
        assert info.samplerate == sample_rate
        assert info.channels == 1
        assert info.frames == round(duration * sample_rate)


def test_default_format_matches_real_esc50(small_dataset):
    for row in read_rows(small_dataset):
        info = sf.info(small_dataset / "audio" / row["filename"])
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 1, "PCM_16", 44100)


@pytest.mark.parametrize(
    "n_classes, clips_per_class, n_folds", [(4, 6, 3), (3, 7, 5), (2, 10, 5), (5, 5, 5), (3, 2, 5), (2, 8, 1)]
)
def test_classes_spread_evenly_over_folds(tmp_path, n_classes, clips_per_class, n_folds):
    root = make_synthetic_esc50(
        tmp_path / "d", n_classes=n_classes, clips_per_class=clips_per_class, n_folds=n_folds, duration=0.02
    )
    counts = Counter((int(row["fold"]), int(row["target"])) for row in read_rows(root))
    assert {fold for fold, _ in counts} <= set(range(1, n_folds + 1))
    for target in range(n_classes):
        per_fold = [counts[(fold, target)] for fold in range(1, n_folds + 1)]
        assert sum(per_fold) == clips_per_class
        assert max(per_fold) - min(per_fold) <= 1
        if clips_per_class >= n_folds:
            assert min(per_fold) >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_source_recordings_stay_in_one_fold(tmp_path, seed):
    root = make_synthetic_esc50(tmp_path / "d", n_classes=5, clips_per_class=12, n_folds=4, duration=0.02, seed=seed)
    rows = read_rows(root)
    takes = defaultdict(list)
    for row in rows:
        int(row["src_file"])  # integer-like, as in the real file
        takes[row["src_file"]].append(row)
    assert any(len(fragments) > 1 for fragments in takes.values())
    for fragments in takes.values():
        assert len({row["fold"] for row in fragments}) == 1
        assert len({row["target"] for row in fragments}) == 1
        letters = sorted(row["take"] for row in fragments)
        assert letters == [chr(ord("A") + i) for i in range(len(letters))]


# --- audio content ------------------------------------------------------------------------------


def test_silent_and_padded_clips(small_dataset):
    rows = read_rows(small_dataset)
    clips = read_audio(small_dataset, rows)
    silent = [row for row, clip in zip(rows, clips, strict=True) if not clip.any()]
    assert len(silent) == SMALL["n_silent"]
    assert len({row["fold"] for row in silent}) == SMALL["n_silent"]
    assert len({row["target"] for row in silent}) == SMALL["n_silent"]

    # Padded clips end in exact zeros for at least 5% of the clip; the 10 ms fade-out of the
    # other clips can quantize to zeros over at most 1%, so a 2% threshold separates them.
    audible = [clip for clip in clips if clip.any()]
    padded = [clip for clip in audible if trailing_zeros(clip) >= 0.02 * clip.size]
    assert len(padded) == round(0.4 * len(audible))
    assert any(trailing_zeros(clip) > clip.size / 2 for clip in padded)
    for clip in padded:  # the sound itself is not silent
        assert np.count_nonzero(clip[: clip.size - trailing_zeros(clip)]) > 0.9 * (clip.size - trailing_zeros(clip))


@pytest.mark.parametrize("padded_fraction", [0.0, 1.0])
def test_padded_fraction(tmp_path, padded_fraction):
    root = make_synthetic_esc50(
        tmp_path / "d", n_classes=3, clips_per_class=4, n_folds=2, duration=0.5, n_silent=0, padded_fraction=padded_fraction
    )
    clips = read_audio(root, read_rows(root))
    padded = [trailing_zeros(clip) >= 0.02 * clip.size for clip in clips]
    assert padded == [bool(padded_fraction)] * len(clips)


def test_no_silent_clips_when_n_silent_is_zero(tmp_path):
    root = make_synthetic_esc50(tmp_path / "d", n_classes=3, clips_per_class=4, n_folds=2, duration=0.2, n_silent=0)
    assert all(clip.any() for clip in read_audio(root, read_rows(root)))


def test_peak_levels_vary_between_minus_35_and_0_dbfs(small_dataset):
    clips = read_audio(small_dataset, read_rows(small_dataset))
    peaks_db = np.array([20 * np.log10(np.abs(clip).max() / 32767) for clip in clips if clip.any()])
    # Rounding to int16 moves a -35 dBFS peak (583) by at most half a step.
    assert peaks_db.min() >= -35.0 - 0.01
    assert peaks_db.max() <= 0.0
    assert peaks_db.max() - peaks_db.min() > 10.0


def spectral_centroid_hz(clip, sample_rate):
    power = np.abs(np.fft.rfft(clip.astype(np.float64))) ** 2
    freqs_hz = np.fft.rfftfreq(clip.size, d=1.0 / sample_rate)
    return float(np.sum(freqs_hz * power) / np.sum(power))


def test_class_signatures_differ(tmp_path):
    root = make_synthetic_esc50(tmp_path / "d", n_classes=5, clips_per_class=4, n_folds=2, duration=1.0, n_silent=0)
    rows = read_rows(root)
    clips = read_audio(root, rows)
    log_centroids = defaultdict(list)
    peak_hz = defaultdict(list)
    for row, clip in zip(rows, clips, strict=True):
        log_centroids[int(row["target"])].append(np.log(spectral_centroid_hz(clip, 44100)))
        power = np.abs(np.fft.rfft(clip.astype(np.float64))) ** 2
        peak_hz[int(row["target"])].append(np.argmax(power) * 44100 / clip.size)
    # Base frequencies run from 150 Hz (class 0) to 6 kHz (last class); background noise pulls
    # centroids towards the middle, the spectral peak stays on the class's own sound.
    assert np.exp(np.mean(log_centroids[4]) - np.mean(log_centroids[0])) > 3.0
    assert np.median(peak_hz[0]) < 300.0
    assert np.median(peak_hz[4]) > 3000.0


def test_classes_are_separable_by_a_simple_classifier(tmp_path):
    """Leave-one-out nearest class mean on log band energies: far above chance."""
    n_classes = 6
    root = make_synthetic_esc50(tmp_path / "d", n_classes=n_classes, clips_per_class=5, n_folds=5, duration=1.0, n_silent=0)
    rows = read_rows(root)
    targets = np.array([int(row["target"]) for row in rows])
    freqs_hz = np.fft.rfftfreq(44100, d=1.0 / 44100)
    edges_hz = np.geomspace(100.0, 16000.0, 25)
    features = []
    for clip in read_audio(root, rows):
        power = np.abs(np.fft.rfft(clip.astype(np.float64))) ** 2
        bands = [
            power[(freqs_hz >= low) & (freqs_hz < high)].sum() for low, high in zip(edges_hz[:-1], edges_hz[1:], strict=True)
        ]
        log_bands = np.log10(np.array(bands) + 1e-3)
        features.append(log_bands - log_bands.max())  # independent of the clip's level
    features = np.array(features)
    correct = 0
    for i in range(len(rows)):
        others = np.arange(len(rows)) != i
        means = np.stack([features[others & (targets == c)].mean(axis=0) for c in range(n_classes)])
        correct += np.argmin(((means - features[i]) ** 2).sum(axis=1)) == targets[i]
    assert correct / len(rows) > 0.6  # chance is 1/6


# --- determinism and reuse ----------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path):
    arguments = dict(n_classes=3, clips_per_class=4, n_folds=2, duration=0.5, seed=7)
    first = file_digests(make_synthetic_esc50(tmp_path / "a", **arguments))
    second = file_digests(make_synthetic_esc50(tmp_path / "b", **arguments))
    assert first == second
    assert len(first) == 3 * 4 + 2  # the clips, esc50.csv and synthetic.json


def test_different_seeds_give_different_data(tmp_path):
    arguments = dict(n_classes=3, clips_per_class=4, n_folds=2, duration=0.5, n_silent=1)
    seed_0 = file_digests(make_synthetic_esc50(tmp_path / "a", seed=0, **arguments))
    seed_1 = file_digests(make_synthetic_esc50(tmp_path / "b", seed=1, **arguments))
    assert seed_0["meta/esc50.csv"] != seed_1["meta/esc50.csv"]
    audio_0 = {digest for path, digest in seed_0.items() if path.startswith("audio/")}
    audio_1 = {digest for path, digest in seed_1.items() if path.startswith("audio/")}
    assert len(audio_0 & audio_1) == 1  # only the all-zero clip is shared


def test_complete_dataset_is_reused_without_rewriting(tmp_path):
    arguments = dict(n_classes=2, clips_per_class=3, n_folds=3, duration=0.2)
    root = make_synthetic_esc50(tmp_path / "d", **arguments)
    digests = file_digests(root)
    old_ns = 1_000_000_000 * 10**9  # 2001-09-09, long before any generation
    files = [path for path in root.rglob("*") if path.is_file()]
    for path in files:
        os.utime(path, ns=(old_ns, old_ns))

    assert make_synthetic_esc50(tmp_path / "d", **arguments) == root
    assert all(path.stat().st_mtime_ns == old_ns for path in files)

    make_synthetic_esc50(tmp_path / "d", overwrite=True, **arguments)
    assert all(path.stat().st_mtime_ns != old_ns for path in files)
    assert file_digests(root) == digests


def test_changed_arguments_regenerate_and_remove_stale_files(tmp_path):
    root = make_synthetic_esc50(tmp_path / "d", n_classes=2, clips_per_class=4, n_folds=2, duration=0.1)
    make_synthetic_esc50(tmp_path / "d", n_classes=2, clips_per_class=2, n_folds=2, duration=0.1)
    rows = read_rows(root)
    assert len(rows) == 4
    assert {path.name for path in (root / "audio").iterdir()} == {row["filename"] for row in rows}
    marker = json.loads((root / "meta" / "synthetic.json").read_text())
    assert marker["arguments"]["clips_per_class"] == 2


def test_missing_audio_file_triggers_regeneration(tmp_path):
    arguments = dict(n_classes=2, clips_per_class=2, n_folds=2, duration=0.1)
    root = make_synthetic_esc50(tmp_path / "d", **arguments)
    digests = file_digests(root)
    (root / "audio" / read_rows(root)[0]["filename"]).unlink()
    make_synthetic_esc50(tmp_path / "d", **arguments)
    assert file_digests(root) == digests


def test_interrupted_generation_is_not_taken_for_complete(tmp_path, monkeypatch):
    arguments = dict(n_classes=2, clips_per_class=3, n_folds=3, duration=0.1)
    real_write = sf.write
    calls = []

    def write_then_fail(*args, **kwargs):
        calls.append(args[0])
        if len(calls) > 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-generation
        real_write(*args, **kwargs)

    monkeypatch.setattr(synthetic.sf, "write", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_esc50(tmp_path / "d", **arguments)
    monkeypatch.undo()
    marker = json.loads((tmp_path / "d" / "meta" / "synthetic.json").read_text())
    assert marker["complete"] is False
    assert not (tmp_path / "d" / "meta" / "esc50.csv").exists()

    make_synthetic_esc50(tmp_path / "d", **arguments)
    fresh = make_synthetic_esc50(tmp_path / "fresh", **arguments)
    assert file_digests(tmp_path / "d") == file_digests(fresh)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("n_classes", 0),
        ("n_classes", 51),
        ("n_classes", 2.5),
        ("n_classes", True),
        ("clips_per_class", 0),
        ("clips_per_class", "8"),
        ("n_folds", 0),
        ("sample_rate", 4000),
        ("sample_rate", 44100.0),
        ("duration", 0.0),
        ("duration", -1.0),
        ("duration", float("nan")),
        ("duration", 61.0),
        ("duration", 1e-6),  # rounds to zero samples
        ("seed", -1),
        ("seed", 1.5),
        ("n_silent", -1),
        ("n_silent", 5),
        ("padded_fraction", -0.1),
        ("padded_fraction", 1.5),
        ("overwrite", "yes"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(tmp_path, name, value):
    arguments = dict(n_classes=2, clips_per_class=2, n_folds=2, duration=0.1)
    arguments[name] = value
    with pytest.raises(ValueError, match=name):
        make_synthetic_esc50(tmp_path / "d", **arguments)
    assert not (tmp_path / "d").exists()


def test_n_classes_error_gives_the_allowed_range(tmp_path):
    with pytest.raises(ValueError, match=r"n_classes must be an integer in 1\.\.50, got 51"):
        make_synthetic_esc50(tmp_path / "d", n_classes=51)


def test_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FileExistsError, match="is a file"):
        make_synthetic_esc50(tmp_path / "file", n_classes=1, clips_per_class=1, duration=0.1)


def test_foreign_esc50_folder_is_only_replaced_with_overwrite(tmp_path):
    (tmp_path / "real" / "meta").mkdir(parents=True)
    foreign_csv = HEADER + "\n1-100032-A-0.wav,1,0,dog,True,100032,A\n"
    (tmp_path / "real" / "meta" / "esc50.csv").write_text(foreign_csv)
    arguments = dict(n_classes=1, clips_per_class=2, n_folds=2, duration=0.1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic_esc50(tmp_path / "real", **arguments)
    assert (tmp_path / "real" / "meta" / "esc50.csv").read_text() == foreign_csv

    make_synthetic_esc50(tmp_path / "real", overwrite=True, **arguments)
    assert len(read_rows(tmp_path / "real")) == 2


# --- concurrent starts (issue 23: three `--data synthetic` starts on one OUT) -----------------

# Each child imports first, then waits for its own start signal, generates, and checks that the
# folder it got back is whole (validate_esc50, every clip decoded) and never changes under it.
CONCURRENT_START = r"""
import json, sys, time
from pathlib import Path
from fastspecnorm.datasets.synthetic import make_synthetic_esc50
from fastspecnorm.datasets.validate import validate_esc50
root, go = Path(sys.argv[1]), Path(sys.argv[2])
Path(str(go) + ".ready").touch()
while not go.exists():
    time.sleep(0.002)
make_synthetic_esc50(root, n_classes=4, clips_per_class=10, sample_rate=22050, duration=2.0)

def snapshot():
    return {p.name: [p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size] for p in sorted((root / "audio").iterdir())}

got = snapshot()
for _ in range(2):
    validate_esc50(root, progress=False).raise_if_errors()
    assert snapshot() == got, "clips were rewritten after make_synthetic_esc50 returned"
print(json.dumps(got))
"""


@pytest.mark.process
def test_concurrent_starts_generate_once_and_never_show_a_half_written_clip(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    root = tmp_path / "out" / "synthetic-esc50"
    gos = [tmp_path / f"go{i}" for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_START, str(root), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for go in gos
    ]
    try:
        deadline = time.monotonic() + 240
        while not all(Path(f"{go}.ready").exists() for go in gos):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "children did not start"
            time.sleep(0.01)
        gos[0].touch()
        marker = root / "meta" / "synthetic.json"
        while not marker.exists():  # the first is generating (its marker says incomplete): start the others
            assert time.monotonic() < deadline and procs[0].poll() is None, "the first child stopped"
            time.sleep(0.002)
        assert json.loads(marker.read_text())["complete"] is False  # they start while it is half done
        gos[1].touch()
        gos[2].touch()
        logs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(log[-2000:] for log in logs)
    snapshots = [json.loads(log.strip().splitlines()[-1]) for log in logs]
    assert snapshots[0] == snapshots[1] == snapshots[2]  # the same files: generated once, by the first
    reference = make_synthetic_esc50(tmp_path / "alone", n_classes=4, clips_per_class=10, sample_rate=22050, duration=2.0)
    assert file_digests(root) == file_digests(reference)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
