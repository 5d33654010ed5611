"""Bad-input matrix for `fastspecnorm.datasets.validate` and its use in `esc50_dataloaders`.

Every broken file is generated here (truncated WAV, text named .wav, empty file, NaN/Inf samples,
zero-length audio, stereo, another sample rate, an implausible one, duplicates, missing files and columns, filenames
that are absolute, leave `audio/` or carry spaces, folds below 1, labels that disagree); each test
asserts that the message names the file. `validate_esc50`, `read_esc50_meta` and
`esc50_dataloaders` are checked to accept and refuse the same tables with the same message.
"""

from __future__ import annotations

import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fastspecnorm import esc50_dataloaders, read_esc50_meta
from fastspecnorm.audio.io import AudioLoadError, load_audio
from fastspecnorm.datasets.validate import (
    DatasetNotFoundError,
    DatasetValidationError,
    ValidationReport,
    read_esc50_table,
    resolve_clip,
    validate_esc50,
)

SR = 16000
N_SAMPLES = 4000  # 0.25 s: enough for a quick-preset spectrogram, small enough to write fast


def _clip(seed: int, n: int = N_SAMPLES) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def make_folder(root: Path, n_per_fold: int = 3, n_folds: int = 2, n_classes: int = 2) -> Path:
    "A tiny, clean ESC-50-layout folder: mono 16-bit WAV at 16 kHz, every class in every fold."
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = []
    for fold in range(1, n_folds + 1):
        for i in range(n_per_fold):
            target = i % n_classes
            name = f"{fold}-{100 + i}-A-{target}.wav"
            sf.write(root / "audio" / name, _clip(fold * 100 + i), SR, subtype="PCM_16")
            rows.append({"filename": name, "fold": fold, "target": target, "category": f"class{target}", "esc10": False})
    pd.DataFrame(rows).to_csv(root / "meta" / "esc50.csv", index=False)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path / "esc")


def _names(root: Path) -> list[str]:
    return pd.read_csv(root / "meta" / "esc50.csv")["filename"].tolist()


# --- breakers: each damages one file and returns its name --------------------------------------


def truncate_wav(root: Path, name: str) -> None:
    path = root / "audio" / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])  # odd cut: a partial frame at the end too


def header_only_wav(root: Path, name: str) -> None:
    path = root / "audio" / name
    path.write_bytes(path.read_bytes()[:44])


def text_as_wav(root: Path, name: str) -> None:
    (root / "audio" / name).write_text("this is a text file, not audio\n" * 20)


def empty_file(root: Path, name: str) -> None:
    (root / "audio" / name).write_bytes(b"")


def zero_length(root: Path, name: str) -> None:
    sf.write(root / "audio" / name, np.zeros(0, np.float32), SR, subtype="PCM_16")


def nan_samples(root: Path, name: str) -> None:
    x = _clip(7)
    x[[10, 500]] = np.nan
    sf.write(root / "audio" / name, x, SR, subtype="FLOAT")


def inf_samples(root: Path, name: str) -> None:
    x = _clip(8)
    x[3] = np.inf
    sf.write(root / "audio" / name, x, SR, subtype="DOUBLE")


def missing_file(root: Path, name: str) -> None:
    (root / "audio" / name).unlink()


def folder_named_wav(root: Path, name: str) -> None:
    (root / "audio" / name).unlink()
    (root / "audio" / name).mkdir()


def _edit_csv(root: Path, fn) -> None:
    csv = root / "meta" / "esc50.csv"
    df = pd.read_csv(csv, dtype=str)
    fn(df).to_csv(csv, index=False)


def duplicate_row(root: Path, name: str) -> None:
    _edit_csv(root, lambda df: pd.concat([df, df[df.filename == name]], ignore_index=True))


def non_integer_fold(root: Path, name: str) -> None:
    def edit(df):
        df.loc[df.filename == name, "fold"] = "two"
        return df

    _edit_csv(root, edit)


def fractional_target(root: Path, name: str) -> None:
    def edit(df):
        df.loc[df.filename == name, "target"] = "1.5"
        return df

    _edit_csv(root, edit)


# (breaker, expected words in the message, found by quick mode?)
FILE_ERRORS = [
    (truncate_wav, "truncated", True),
    (header_only_wav, "truncated", True),
    (text_as_wav, "not a readable audio file", True),
    (empty_file, "empty (0 bytes)", True),
    (zero_length, "zero-length", True),
    (nan_samples, "NaN or Inf", False),
    (inf_samples, "NaN or Inf", False),
    (missing_file, "missing", True),
    (folder_named_wav, "not a regular file", True),
    (duplicate_row, "listed 2 times", True),
    (non_integer_fold, "fold 'two' is not an integer", True),
    (fractional_target, "target '1.5' is not an integer", True),
]


def test_clean_folder_is_ok(folder):
    for mode in ("quick", "full"):
        report = validate_esc50(folder, mode=mode, progress=False, folds=[1, 2])
        assert isinstance(report, ValidationReport)
        assert report.ok and not report.errors and not report.warnings and not report.bad_files
        assert report.n_rows == report.n_files_checked == 6
        assert report.raise_if_errors() is report
        assert "0 error(s)" in str(report) and mode in str(report)
        assert report.sample_rates == {SR: 6} and report.channels == {1: 6}
        good = report.good_rows()
        assert len(good) == 6 and good["fold"].dtype.kind == "i" and good["target"].dtype.kind == "i"


@pytest.mark.parametrize("mode", ["quick", "full"])
@pytest.mark.parametrize("breaker,words,in_quick", FILE_ERRORS, ids=[b.__name__ for b, _, _ in FILE_ERRORS])
def test_each_bad_file_is_named(folder, breaker, words, in_quick, mode):
    name = _names(folder)[1]
    breaker(folder, name)
    report = validate_esc50(folder, mode=mode, progress=False)
    if mode == "quick" and not in_quick:
        # Quick mode reads headers only: the samples of a well-formed float WAV are not decoded.
        assert report.ok, str(report)
        return
    assert not report.ok
    assert report.bad_files == [name]
    assert any(n == name and words in msg for n, msg in report.errors), str(report)
    assert all(n == name for n, _ in report.errors), "a problem of one file must not be blamed on others"
    with pytest.raises(DatasetValidationError) as err:
        report.raise_if_errors()
    assert isinstance(err.value, ValueError) and err.value.report is report
    assert name in str(err.value) and words in str(err.value)
    assert name in str(report)


def test_every_problem_is_reported_at_once(folder):
    names = _names(folder)
    breakers = [truncate_wav, text_as_wav, empty_file, nan_samples, missing_file, duplicate_row]
    for breaker, name in zip(breakers, names, strict=False):
        breaker(folder, name)
    report = validate_esc50(folder, progress=False, folds=[1, 2, 9])
    assert report.bad_files == names[: len(breakers)]
    assert len(report.errors) == len(breakers) + 1  # + the absent fold 9
    message = None
    try:
        report.raise_if_errors()
    except ValueError as e:
        message = str(e)
    assert message is not None
    for name in names[: len(breakers)]:
        assert name in message
    assert "fold 9 does not exist" in message and "skip_bad=True" in message


def test_truncated_wav_claims_more_frames_than_it_holds(folder):
    name = _names(folder)[0]
    path = folder / "audio" / name
    full = path.stat().st_size
    truncate_wav(folder, name)
    # libsndfile does not complain about it: the header parse is what finds it.
    assert 0 < sf.info(str(path)).frames < N_SAMPLES
    (msg,) = [m for _, m in validate_esc50(folder, mode="quick", progress=False).errors]
    assert f"claims {N_SAMPLES} frames" in msg and f"holds {(full // 2 + 1 - 44) // 2}" in msg


def test_truncation_found_after_extra_chunks(tmp_path):
    "A LIST chunk (odd size, with its pad byte) before the data chunk does not hide truncation."
    folder = make_folder(tmp_path / "esc")
    name = _names(folder)[0]
    path = folder / "audio" / name
    data = path.read_bytes()
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\0"
    fixed = data[:12] + data[12:36] + extra + data[36:]  # RIFF header, fmt chunk, LIST, data
    fixed = fixed[:4] + struct.pack("<I", len(fixed) - 8) + fixed[8:]
    path.write_bytes(fixed)
    assert sf.info(str(path)).frames == N_SAMPLES
    assert validate_esc50(folder, mode="quick", progress=False).errors == []  # the extra chunk alone is fine
    path.write_bytes(fixed[:-100])  # 50 frames missing
    errors = validate_esc50(folder, mode="quick", progress=False).errors
    assert [n for n, _ in errors] == [name]
    assert f"claims {N_SAMPLES} frames" in errors[0][1] and f"holds {N_SAMPLES - 50}" in errors[0][1]


def test_stereo_and_other_rate_are_warnings(folder):
    names = _names(folder)
    x = _clip(3)
    sf.write(folder / "audio" / names[0], np.stack([x, -x], axis=1), SR, subtype="PCM_16")
    sf.write(folder / "audio" / names[1], x, 22050, subtype="PCM_16")
    report = validate_esc50(folder, progress=False)
    assert report.ok and not report.bad_files
    (w0,) = [m for n, m in report.warnings if n == names[0]]
    (w1,) = [m for n, m in report.warnings if n == names[1]]
    assert "2 channels" in w0 and "downmixed" in w0
    assert "22050 Hz" in w1 and "resampled to 16000 Hz" in w1
    assert report.channels == {1: 5, 2: 1} and report.sample_rates == {SR: 5, 22050: 1}
    assert names[0] in str(report) and names[1] in str(report)
    # An explicit expected rate turns every other rate into a warning.
    report = validate_esc50(folder, progress=False, expected_sample_rate=22050)
    assert sum("resampled" in m for _, m in report.warnings) == 5


def test_implausible_sample_rate_is_an_error_by_name_and_rate(folder):
    "A header claiming 999 Hz is refused as load_audio would refuse it, not warned about as resampled."
    names = _names(folder)
    sf.write(folder / "audio" / names[2], _clip(4, 100), 999, subtype="PCM_16")
    sf.write(folder / "audio" / names[3], _clip(5), 1000, subtype="PCM_16")  # the lowest plausible rate
    report = validate_esc50(folder, mode="quick", progress=False)
    assert report.bad_files == [names[2]]
    ((name, msg),) = report.errors
    assert name == names[2] and "999 Hz" in msg and "1000-384000 Hz" in msg
    assert [n for n, _ in report.warnings] == [names[3]]  # 1000 Hz: accepted, resampled
    with pytest.raises(AudioLoadError, match="999 Hz"):
        load_audio(folder / "audio" / names[2])


@pytest.mark.parametrize(
    "write,words",
    [
        (None, "metadata not found"),
        ("filename,fold,target\na.wav,1,0\n", "lacks required column(s) ['category']"),
        ("filename,fold\na.wav,1\n", "['target', 'category']"),
        ("filename,fold,target,category\na.wav,1,0,dog\nb.wav,1,0,dog,extra,more\n", "cannot parse"),
        ("filename,fold,target,category\n", "lists no clips"),
        ("", "cannot parse"),
    ],
    ids=["missing", "no-category", "two-missing", "unparsable", "no-rows", "empty-csv"],
)
def test_csv_problems(tmp_path, write, words):
    root = tmp_path / "esc"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    if write is not None:
        (root / "meta" / "esc50.csv").write_text(write)
    report = validate_esc50(root, progress=False)
    assert not report.ok
    (name, msg), *_ = report.errors
    assert name == "meta/esc50.csv" and words in msg
    with pytest.raises(ValueError, match="meta/esc50.csv"):
        report.raise_if_errors()


def test_table_level_problems(folder):
    names = _names(folder)

    def edit(df):
        df.loc[df.filename == names[0], "target"] = "1"  # class0 now has targets 0 and 1
        df.loc[df.filename == names[1], "filename"] = None
        return df

    _edit_csv(folder, edit)
    report = validate_esc50(folder, progress=False)
    msgs = [m for n, m in report.errors if n == "meta/esc50.csv"]
    assert any("category 'class0' has several targets [0, 1]" in m for m in msgs)
    assert any("line 3 has no filename" in m for m in msgs)


def test_missing_audio_folder(folder):
    for p in (folder / "audio").iterdir():
        p.unlink()
    (folder / "audio").rmdir()
    report = validate_esc50(folder, progress=False)
    assert [n for n, _ in report.errors] == ["audio/"] and "audio folder not found" in report.errors[0][1]
    assert len(report.bad_files) == 6


def test_skip_bad_drops_and_lists(folder):
    names = _names(folder)
    truncate_wav(folder, names[0])
    missing_file(folder, names[3])
    report, good = validate_esc50(folder, progress=False, skip_bad=True, folds=[1, 2])
    assert report.ok, str(report)
    assert [n for n, _ in report.skipped] == [names[0], names[3]]
    assert all(any(n == name and msg.startswith("skipped:") for n, msg in report.warnings) for name in (names[0], names[3]))
    assert sorted(good["filename"]) == sorted(set(names) - {names[0], names[3]})
    assert good["fold"].dtype.kind == "i"
    # Skipping every clip of a requested fold is an error, named as such.
    for name in names[3:]:
        missing_file(folder, name) if (folder / "audio" / name).exists() else None
    report, good = validate_esc50(folder, progress=False, skip_bad=True, folds=[2])
    assert not report.ok and "fold 2 does not exist after skipping bad rows" in report.errors[0][1]


def test_quick_mode_is_fast(tmp_path):
    "Quick validation reads headers only: a few hundred files in well under a second."
    root = tmp_path / "many"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    sf.write(root / "audio" / "0.wav", _clip(0, 16000), SR, subtype="PCM_16")
    data = (root / "audio" / "0.wav").read_bytes()
    n = 400
    for i in range(1, n):
        (root / "audio" / f"{i}.wav").write_bytes(data)
    pd.DataFrame({"filename": [f"{i}.wav" for i in range(n)], "fold": 1, "target": 0, "category": "a"}).to_csv(
        root / "meta" / "esc50.csv", index=False
    )
    start = time.perf_counter()
    report = validate_esc50(root, mode="quick", progress=False)
    seconds = time.perf_counter() - start
    assert report.ok and report.n_files_checked == n
    assert seconds < 4.0, f"quick validation of {n} files took {seconds:.2f} s"  # measured ~0.1 s


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        validate_esc50("nowhere", mode="thorough")


# --- esc50_dataloaders ------------------------------------------------------------------------

DL_KW = dict(preset="quick", bs=2, duration=N_SAMPLES / SR, num_workers=0, sample_rate=SR)


def test_dataloaders_raise_before_training_naming_every_file(folder):
    names = _names(folder)
    text_as_wav(folder, names[1])
    missing_file(folder, names[4])
    with pytest.raises(DatasetValidationError) as err:
        esc50_dataloaders(folder, valid_fold=1, **DL_KW)
    assert names[1] in str(err.value) and names[4] in str(err.value)
    with pytest.raises(ValueError, match="fold 3 does not exist"):
        esc50_dataloaders(folder, valid_fold=3, **DL_KW)


def test_dataloaders_full_validation_finds_nan(folder):
    name = _names(folder)[2]
    nan_samples(folder, name)
    esc50_dataloaders(folder, valid_fold=1, **DL_KW)  # quick: header only, NaN not seen
    with pytest.raises(ValueError, match=name):
        esc50_dataloaders(folder, valid_fold=1, validate="full", **DL_KW)


def test_dataloaders_skip_bad(folder):
    names = _names(folder)
    truncate_wav(folder, names[1])
    empty_file(folder, names[5])
    with pytest.warns(UserWarning, match=names[1]):
        dls = esc50_dataloaders(folder, valid_fold=1, skip_bad=True, **DL_KW)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 4
    assert {n for n, _ in dls.validation_report.skipped} == {names[1], names[5]}
    x, _ = dls.one_batch()
    assert x.shape[0] == 2
    with pytest.raises(ValueError, match="skip_bad=True needs validation"):
        esc50_dataloaders(folder, valid_fold=1, skip_bad=True, validate=False, **DL_KW)


def test_dataloaders_warn_on_stereo_and_validate_false(folder):
    names = _names(folder)
    x = _clip(5)
    sf.write(folder / "audio" / names[2], np.stack([x, x], axis=1), SR, subtype="PCM_16")
    with pytest.warns(UserWarning, match=f"{names[2]}: has 2 channels"):
        dls = esc50_dataloaders(folder, valid_fold=1, **DL_KW)
    assert dls.validation_report.ok
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dls = esc50_dataloaders(folder, valid_fold=1, validate=False, **DL_KW)
    assert dls.validation_report is None
    with pytest.raises(ValueError, match="validate must be"):
        esc50_dataloaders(folder, valid_fold=1, validate="sometimes", **DL_KW)


def test_read_esc50_meta_still_works(folder):
    df = read_esc50_meta(folder)
    assert len(df) == 6 and df["fold"].dtype.kind == "i"


# --- one name rule, one table reader ----------------------------------------------------------


def test_resolve_clip_by_hand(tmp_path):
    root = tmp_path / "esc"
    assert resolve_clip(root, "1-100-A-0.wav") == root / "audio" / "1-100-A-0.wav"
    assert resolve_clip(str(root), "sub/x.wav") == root / "audio" / "sub" / "x.wav"  # subfolders inside audio/
    assert resolve_clip(root, "a..b.wav") == root / "audio" / "a..b.wav"  # dots inside a name are not `..`
    assert resolve_clip(root, "sub/../x.wav") == root / "audio" / "x.wav"  # normalized, as the loaders do: inside audio/
    refused = {
        "/abs/x.wav": "is an absolute path",
        "../x.wav": "leaves the audio folder",
        "sub/../../x.wav": "leaves the audio folder",
        " x.wav": "leading or trailing whitespace",
        "x.wav\t": "leading or trailing whitespace",
        "": "names no file",
        ".": "names no file",
    }
    for name, words in refused.items():
        with pytest.raises(ValueError, match=words) as err:
            resolve_clip(root, name)
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match="names no file"):
        resolve_clip(root, float("nan"))


def second_spelling(root: Path, name: str) -> str:
    "The clip `name` listed again as `./name`, in the other fold: one clip on both sides of the split."

    def edit(df):
        twin = df[df.filename == name].assign(filename=f"./{name}", fold=lambda d: 3 - d.fold.astype(int))
        return pd.concat([df, twin], ignore_index=True)

    _edit_csv(root, edit)
    return f"./{name}"


def test_one_clip_under_two_spellings_is_refused(folder):
    "The loaders' rule: `x.wav` and `./x.wav` are one clip, listed twice (here in two folds)."
    name = _names(folder)[1]
    twin = second_spelling(folder, name)
    report = validate_esc50(folder, mode="quick", progress=False)
    assert report.bad_files == [twin] and report.n_files_checked == 6  # the twin is never opened
    ((blamed, message),) = report.errors
    assert blamed == twin and message == f"{twin!r} is the same clip as line 3 ({name!r}): list each clip once"
    for call in (lambda: read_esc50_meta(folder), lambda: esc50_dataloaders(folder, valid_fold=1, **DL_KW)):
        with pytest.raises(DatasetValidationError, match=r"is the same clip as line 3"):
            call()
    report, good = validate_esc50(folder, mode="quick", progress=False, skip_bad=True)
    assert [n for n, _ in report.skipped] == [twin] and sorted(good["filename"]) == sorted(_names(folder)[:6])


def _set(root: Path, name: str, column: str, value: str) -> None:
    def edit(df):
        df.loc[df.filename == name, column] = value
        return df

    _edit_csv(root, edit)


# Each breaker edits the CSV row of `name` and returns the name the report must blame.
def absolute_name(root, name):
    new = str(root / "audio" / name)  # the file exists: only the name rule refuses it
    _set(root, name, "filename", new)
    return new


def escaping_name(root, name):
    (root / name).write_bytes((root / "audio" / name).read_bytes())  # a real clip outside audio/
    _set(root, name, "filename", f"../{name}")
    return f"../{name}"


def leading_space(root, name):
    _set(root, name, "filename", f" {name}")
    return f" {name}"


def trailing_space(root, name):
    _set(root, name, "filename", f"{name} ")
    return f"{name} "


def fold_zero(root, name):
    _set(root, name, "fold", "0")
    return name


def fold_negative(root, name):
    _set(root, name, "fold", "-1")
    return name


def target_negative(root, name):
    _set(root, name, "target", "-1")
    return name


NAME_RULES = [
    (absolute_name, "is an absolute path"),
    (escaping_name, "leaves the audio folder with '..'"),
    (leading_space, "leading or trailing whitespace"),
    (trailing_space, "leading or trailing whitespace"),
    (fold_zero, "fold '0' is below 1"),
    (fold_negative, "fold '-1' is below 1"),
    (target_negative, "target '-1' is below 0"),
]


@pytest.mark.parametrize("breaker,words", NAME_RULES, ids=[b.__name__ for b, _ in NAME_RULES])
def test_each_row_rule_refuses_by_name(folder, breaker, words):
    name = _names(folder)[1]
    bad = breaker(folder, name)
    report = validate_esc50(folder, mode="quick", progress=False)
    assert report.bad_files == [bad]
    assert [n for n, _ in report.errors] == [bad] and words in report.errors[0][1], str(report)
    assert report.n_files_checked == (
        6 if breaker.__name__.startswith(("fold", "target")) else 5
    )  # refused names are never opened
    for read in (lambda: read_esc50_meta(folder), lambda: read_esc50_meta(folder, check_files=False)):
        with pytest.raises(DatasetValidationError, match=words) as err:
            read()
        assert repr(bad) in str(err.value) or f"  {bad}: " in str(err.value)
    with pytest.raises(DatasetValidationError, match=words):
        esc50_dataloaders(folder, valid_fold=1, **DL_KW)
    with pytest.raises(DatasetValidationError, match=words):
        esc50_dataloaders(folder, valid_fold=1, validate=False, **DL_KW)  # the table rules hold without validation
    # skip_bad drops the row (never loads it) instead.
    report, good = validate_esc50(folder, mode="quick", progress=False, skip_bad=True)
    assert report.ok and [n for n, _ in report.skipped] == [bad] and bad not in set(good["filename"])
    assert len(good) == 5


def test_every_bad_row_is_listed_at_once(folder):
    names = _names(folder)
    bad = [breaker(folder, name) for (breaker, _), name in zip(NAME_RULES[:6], names, strict=False)]
    report = validate_esc50(folder, mode="quick", progress=False)
    assert report.bad_files == bad
    with pytest.raises(DatasetValidationError) as err:
        esc50_dataloaders(folder, valid_fold=1, **DL_KW)
    for (_, words), name in zip(NAME_RULES[:6], bad, strict=True):
        assert f"  {name}: " in str(err.value) and words in str(err.value)


def _relabel(root: Path, categories: dict[str, str] | None = None, targets: dict[str, str] | None = None) -> None:
    def edit(df):
        for name, category in (categories or {}).items():
            df.loc[df.filename == name, "category"] = category
        for name, target in (targets or {}).items():
            df.loc[df.filename == name, "target"] = target
        return df

    _edit_csv(root, edit)


def test_two_categories_sharing_a_target_are_refused(folder):
    names = _names(folder)  # targets 0, 1, 0 in each fold: class0 is names 0, 2, 3, 5
    _relabel(folder, categories={names[0]: "Dog", names[2]: "dog", names[3]: "dog", names[5]: "dog"})
    df, report = read_esc50_table(folder)
    assert [m for _, m in report.errors] == [
        "target 0 has several categories ['Dog', 'dog']: give each target one category (spelled the same, "
        "case included) or each category its own target"
    ]
    for call in (lambda: esc50_dataloaders(folder, valid_fold=1, **DL_KW), lambda: read_esc50_meta(folder)):
        with pytest.raises(ValueError, match=r"target 0 has several categories \['Dog', 'dog'\]"):
            call()
    # The same names with their own targets are two classes, as the CSV says.
    _relabel(folder, targets={names[0]: "2"})
    dls = esc50_dataloaders(folder, valid_fold=2, **DL_KW)  # fold 2: "Dog" (one clip, in fold 1) has a training clip
    assert list(dls.vocab) == ["dog", "class1", "Dog"]


def test_one_category_with_two_targets_is_refused(folder):
    names = _names(folder)
    _relabel(folder, targets={names[3]: "1"})  # class0 now has targets 0 and 1 (and target 1 two categories)
    messages = [m for _, m in validate_esc50(folder, mode="quick", progress=False).errors]
    assert messages[0] == "category 'class0' has several targets [0, 1]: give each category one target"
    assert messages[1].startswith("target 1 has several categories ['class0', 'class1']")
    with pytest.raises(ValueError, match=r"category 'class0' has several targets \[0, 1\]"):
        esc50_dataloaders(folder, valid_fold=1, validate=False, **DL_KW)


def _outcome(call) -> str | None:
    "The DatasetValidationError message of `call`, or None when it accepts the table."
    try:
        call()
    except DatasetValidationError as e:
        return str(e)
    return None


AGREEMENT = [
    ("clean", lambda root, names: None, False),
    ("absolute", lambda root, names: absolute_name(root, names[0]), True),
    ("escaping", lambda root, names: escaping_name(root, names[1]), True),
    ("space", lambda root, names: leading_space(root, names[2]), True),
    ("fold0", lambda root, names: fold_zero(root, names[3]), True),
    ("Dog-dog", lambda root, names: _relabel(root, categories={names[0]: "Dog"}), True),
    ("two-targets", lambda root, names: _relabel(root, targets={names[0]: "1"}), True),
    ("missing", lambda root, names: missing_file(root, names[4]), True),
    ("truncated", lambda root, names: truncate_wav(root, names[5]), True),
    ("two-spellings", lambda root, names: second_spelling(root, names[2]), True),
    ("stereo-warning", lambda root, names: sf.write(root / "audio" / names[0], np.zeros((N_SAMPLES, 2)), SR), False),
]


@pytest.mark.parametrize("edit,refused", [a[1:] for a in AGREEMENT], ids=[a[0] for a in AGREEMENT])
def test_validation_and_loading_agree(folder, edit, refused):
    "One table, three entry points: each accepts it or each refuses it with the same message."
    edit(folder, _names(folder))
    validated = _outcome(
        lambda: validate_esc50(folder, mode="quick", progress=False, folds=[1], sample_rate=SR).raise_if_errors()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the stereo clip's warning
        loaded = _outcome(lambda: esc50_dataloaders(folder, valid_fold=1, **DL_KW))
    read = _outcome(lambda: read_esc50_meta(folder))
    assert (validated is not None) == refused, validated
    assert loaded == validated and read == validated


def test_missing_things_are_also_file_not_found(folder, tmp_path):
    missing_file(folder, _names(folder)[0])
    with pytest.raises(FileNotFoundError) as err:
        read_esc50_meta(folder)
    assert isinstance(err.value, DatasetNotFoundError) and isinstance(err.value, ValueError)
    with pytest.raises(FileNotFoundError, match="metadata not found"):
        esc50_dataloaders(tmp_path / "nowhere", **DL_KW)
    # A missing file next to another kind of problem is a plain DatasetValidationError.
    fold_zero(folder, _names(folder)[1])
    with pytest.raises(DatasetValidationError) as err:
        read_esc50_meta(folder)
    assert not isinstance(err.value, FileNotFoundError)


def test_huge_target_is_refused_not_wrapped(tmp_path):
    import shutil

    from fastspecnorm.datasets.synthetic import make_synthetic_esc50
    from fastspecnorm.datasets.validate import read_esc50_table

    root = make_synthetic_esc50(tmp_path / "esc", n_classes=2, clips_per_class=5, duration=0.5)
    meta = root / "meta" / "esc50.csv"
    lines = meta.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("target")] = "99999999999999999999"
    meta.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    _, report = read_esc50_table(root)
    assert any("99999999999999999999" in msg and "too large" in msg for _, msg in report.errors)
    shutil.rmtree(root)


def test_integer_just_past_float64_is_too_large_not_below(folder):
    "2**53 + 1 parses as an exact int64 but would not survive float64: refused as too large, not as below 1."
    name = _names(folder)[1]
    _set(folder, name, "fold", str(2**53 + 1))
    ((blamed, message),) = validate_esc50(folder, mode="quick", progress=False).errors
    assert blamed == name and message == f"fold '{2**53 + 1}' is too large (folds are integers below 2**53) in meta/esc50.csv"


def test_table_check_lists_problems_in_csv_order(folder):
    "read_esc50_table orders as validate_esc50 does: problems of the table first, then rows in CSV order."
    names = _names(folder)
    _set(folder, names[4], "fold", "two")
    _set(folder, names[1], "target", "1.5")
    _relabel(folder, categories={names[0]: "Dog"})  # target 0: 'Dog' and 'class0'
    _, report = read_esc50_table(folder)
    assert [n for n, _ in report.errors] == ["meta/esc50.csv", names[1], names[4]] and report.bad_files == [names[1], names[4]]
    assert report.errors == validate_esc50(folder, mode="quick", progress=False).errors
