"""ESC-50 on the official folds: metadata validation, presets, the DataBlock and the learner.

ESC-50 layout: `ROOT/meta/esc50.csv` (columns filename, fold, target, category, ...) and the clips in
`ROOT/audio/`. Training uses every fold except `valid_fold`, as in the reference article's
`CrossValidationSplitter(col="fold", fold=k)`. Fragments of one source recording share a fold,
so the official folds are the only honest split.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.transforms import ColReader

from ..audio.spectrogram import AudioToSpec
from ..audio.transforms import AudioBlock, LoadAudio, ResizeSignal
from ..data import AudioDataLoaders, _device_type
from ..learner import audio_learner
from ..normalize import WaveformNormalize
from .validate import REQUIRED_COLUMNS, read_esc50_table, resolve_clip, validate_esc50

__all__ = [
    "ESC50_URL",
    "REQUIRED_COLUMNS",
    "ESC50Settings",
    "PRESETS",
    "get_settings",
    "read_esc50_meta",
    "CrossValidationSplitter",
    "esc50_datablock",
    "esc50_dataloaders",
    "esc50_learner",
    "download_esc50",
]

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"


@dataclass(frozen=True)
class ESC50Settings:
    """Everything that defines the inputs of an ESC-50 run.

    sample_rate (Hz), duration (s), n_fft / hop_length (samples), n_mels (None: linear frequency
    axis), to_db (spectrogram in dB), waveform_norm (per-clip standardization before the
    spectrogram), bs (batch size), epochs (the protocol's default for fit_one_cycle), lr (None:
    fastai's default), num_workers (DataLoader processes; None: fastai's default, except 0 for
    cached audio on a CPU device, where workers only compete for the cores), cache (decoded-
    audio cache, see `fastspecnorm.cache`: True for the default folder, a path, or False),
    audio_dtype (precision decoded audio is kept at, "int16" (16-bit PCM, like the source files),
    "float16" or "float32"; applied with and without the cache, so `cache` never changes the data),
    augment (the experiment adds the train-only augmentations of `fastspecnorm.augment`, SpecAugment
    masks and mixup, to every norm; `esc50_dataloaders` itself adds none).
    """

    sample_rate: int = 16000
    duration: float = 5.0
    n_fft: int = 400
    hop_length: int = 200
    n_mels: int | None = None
    f_max: float | None = None
    to_db: bool = True
    waveform_norm: bool = True
    bs: int = 64
    epochs: int = 20
    lr: float | None = None
    num_workers: int | None = None
    cache: Any = field(default=True)
    audio_dtype: str = "int16"
    augment: bool = False

    def spectrogram(self) -> AudioToSpec:
        return AudioToSpec(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            to_db=self.to_db,
            sample_rate=self.sample_rate,
            f_max=self.f_max,
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cache"] = str(d["cache"]) if isinstance(d["cache"], os.PathLike) else d["cache"]
        return d


PRESETS: dict[str, ESC50Settings] = {
    # The reference experiment: 16 kHz, linear power spectrogram in dB, [1, 201, 401], bs 64, 20 epochs.
    "blog": ESC50Settings(),
    # A CPU preset: 64 mel bins, n_fft 1024, hop 400 -> [1, 64, 201], about 11x cheaper per step.
    # Batch size 16: a CPU run is short (8 epochs, often a few hundred clips), and from scratch the
    # number of optimizer steps decides what is learned: on a 400-clip, 50-class set, 8 epochs reach
    # 50% accuracy at bs 16 but 9% at bs 64 (4 steps per epoch).
    "quick": ESC50Settings(n_fft=1024, hop_length=400, n_mels=64, bs=16, epochs=8),
    # The blog preset plus the train-only augmentations (`augment`): per training batch 2 frequency
    # masks of up to 12.5% of the bins and 2 time masks of up to 6.4% of the frames (PANNs' setting),
    # then fastai's MixUp(0.4); statistics are still gathered from unaugmented batches.
    "strong": ESC50Settings(augment=True),
    # Real speech (FSDD, `datasets/fsdd.py`): the files' own 8 kHz, each clip at its own length
    # (batches padded to their longest clip, padding masked), 40 mel bins from 32 ms windows every
    # 10 ms -> (1, 40, 15-230 frames), bs 32, 6 epochs: one run is about a minute on 2 CPU cores.
    "fsdd": ESC50Settings(sample_rate=8000, duration=None, n_fft=256, hop_length=80, n_mels=40, bs=32, epochs=6,
                          audio_dtype="auto"),
}


def get_settings(preset: str = "blog", **overrides) -> ESC50Settings:
    "The settings of `preset` with `overrides` applied one by one (unknown names raise TypeError)."
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    names = {f.name for f in fields(ESC50Settings)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown ESC-50 setting(s) {unknown}; expected some of {sorted(names)}")
    return replace(PRESETS[preset], **overrides)


def download_esc50() -> Path:
    "Download and extract ESC-50 with fastai's `untar_data`; returns the folder holding `meta/` and `audio/`."
    from fastai.data.external import untar_data

    root = Path(untar_data(ESC50_URL))
    if (root / "meta" / "esc50.csv").is_file():
        return root
    found = sorted(root.glob("*/meta/esc50.csv"))
    if not found:
        raise FileNotFoundError(f"downloaded ESC-50 to {root} but found no meta/esc50.csv inside")
    return found[0].parent.parent


def read_esc50_meta(path: str | os.PathLike, check_files: bool = True) -> pd.DataFrame:
    """Read and check `path/meta/esc50.csv` by the rules of `validate_esc50`; returns the table
    (every column of the CSV) with `fold` and `target` as ints.

    check_files: also check every listed file as `validate_esc50(mode="quick")` does (it exists,
    its header reads); False checks the table alone (`read_esc50_table`). Raises
    `DatasetValidationError` (a ValueError) listing every problem with its file or CSV line, the
    same messages as `validate_esc50`; when every problem is something absent (the CSV, `audio/`,
    listed files) the error is a `DatasetNotFoundError`, also a FileNotFoundError.
    """
    if check_files:
        report = validate_esc50(path, mode="quick", progress=False)
        return report.raise_if_errors().good_rows()
    df, report = read_esc50_table(path)
    report.raise_if_errors()
    return df


class _ClipPath:
    "get_x of the ESC-50 DataBlock: a table row's clip, by the same `resolve_clip` rule as validation."

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __call__(self, row) -> Path:
        return resolve_clip(self.root, row["filename"])


class CrossValidationSplitter:
    "Split a DataFrame by column `col`: rows whose value is `fold` are validation, the others training."

    def __init__(self, col: str = "fold", fold: int = 1):
        self.col, self.fold = col, fold

    def __call__(self, df: pd.DataFrame):
        if self.col not in df.columns:
            raise ValueError(f"CrossValidationSplitter: column {self.col!r} not in {list(df.columns)}")
        folds = sorted(df[self.col].unique().tolist())
        if self.fold not in folds:
            raise ValueError(f"valid_fold={self.fold!r} is not a fold of this dataset; folds are {folds}")
        is_valid = (df[self.col] == self.fold).to_numpy()
        idx = range(len(df))
        return [i for i in idx if not is_valid[i]], [i for i in idx if is_valid[i]]


def esc50_datablock(root: str | os.PathLike, vocab, valid_fold: int = 1, settings: ESC50Settings | None = None, batch_tfms=()) -> DataBlock:
    """The ESC-50 DataBlock: audio at `settings.sample_rate` Hz cropped/padded to `settings.duration` s
    (random crop for training, deterministic for validation), optional per-clip waveform
    standardization and `AudioToSpec` as batch transforms, categories in `vocab` order."""
    s = settings or PRESETS["blog"]
    root = Path(root)
    cache = None
    if s.cache:
        from ..audio.cache import AudioCache

        cache = AudioCache.for_settings(root / "audio", s.sample_rate, cache_dir=None if s.cache is True else s.cache, dtype=s.audio_dtype)
    # WaveformNormalize is the first batch transform: the batch it gets is the loader's fresh one,
    # so it standardizes in place instead of allocating another batch-sized tensor.
    tfms = ([WaveformNormalize(inplace=True)] if s.waveform_norm else []) + [s.spectrogram()] + list(batch_tfms)
    return DataBlock(
        blocks=(AudioBlock(sample_rate=s.sample_rate, cache=cache, dtype=s.audio_dtype), CategoryBlock(vocab=list(vocab), sort=False)),
        get_x=_ClipPath(root),
        get_y=ColReader("category"),
        splitter=CrossValidationSplitter("fold", valid_fold),
        item_tfms=[ResizeSignal(s.duration)],
        batch_tfms=tfms,
    )


def _checked_meta(root: Path, valid_fold: int, validate: bool | str, skip_bad: bool, sample_rate: int):
    "The metadata table after `validate_esc50` (see `esc50_dataloaders`), and the report (None if not validated)."
    if validate is False:
        if skip_bad:
            raise ValueError("skip_bad=True needs validation; pass validate=True (quick) or validate='full'")
        return read_esc50_meta(root, check_files=False), None
    mode = "quick" if validate is True else validate
    if mode not in ("quick", "full"):
        raise ValueError(f"validate must be True, False, 'quick' or 'full', got {validate!r}")
    result = validate_esc50(root, sample_rate=sample_rate, skip_bad=skip_bad, progress=mode == "full", folds=[valid_fold], mode=mode)
    report, df = result if skip_bad else (result, None)
    report.raise_if_errors()
    if report.warnings:
        shown = "; ".join(f"{name}: {msg}" for name, msg in report.warnings[:5])
        more = f"; ... and {len(report.warnings) - 5} more (dls.validation_report has all)" if len(report.warnings) > 5 else ""
        warnings.warn(f"ESC-50 data in {root}: {len(report.warnings)} warning(s): {shown}{more}", stacklevel=3)
    return (df if skip_bad else report.good_rows()), report


def esc50_dataloaders(
    path=None,
    valid_fold: int = 1,
    bs: int | None = None,
    preset: str = "blog",
    batch_tfms=(),
    device=None,
    validate: bool | str = True,
    skip_bad: bool = False,
    **settings,
):
    """fastai DataLoaders over an ESC-50-layout folder (downloaded with `untar_data` when `path` is None).

    Training = every fold except `valid_fold`; classes are the CSV's categories, ordered by target,
    so a subset of classes works. `preset` "blog" is the reference experiment (16 kHz, n_fft 400,
    hop 200, linear dB spectrogram `(1, 201, 401)`, per-clip waveform standardization, bs 64);
    "quick" the CPU preset (64 mel bins, n_fft 1024, hop 400, `(1, 64, 201)`). Any setting of
    `ESC50Settings` can be overridden by keyword; `bs` defaults to the preset's (64 for "blog", 16 for
    "quick").
    Batches: `AudioSpectrogram` `(bs, 1, freq, time)` and category indices.

    validate: True or "quick" checks the CSV, that every listed file exists and its header (fast:
    about 0.3 ms per file); "full" also decodes every file (NaN/Inf samples, damaged data); False
    only parses the CSV. Problems raise `DatasetValidationError` (a ValueError) listing every bad
    file at once; unusual channel counts or sample rates are warnings. skip_bad: drop the rows with
    a bad file (listed in a warning and in `dls.validation_report.skipped`) instead of raising.
    """
    if bs is not None:
        settings["bs"] = bs
    s = get_settings(preset, **settings)
    if not (isinstance(s.bs, int) and s.bs > 0):
        raise ValueError(f"bs must be a positive integer, got {s.bs!r}")
    root = download_esc50() if path is None else Path(path)
    df, report = _checked_meta(root, valid_fold, validate, skip_bad, s.sample_rate)
    folds = sorted(df["fold"].unique().tolist())
    if valid_fold not in folds:
        raise ValueError(f"valid_fold={valid_fold!r} is not a fold of {root / 'meta' / 'esc50.csv'}; folds are {folds}")
    if len(folds) < 2:
        raise ValueError(f"{root / 'meta' / 'esc50.csv'} has only fold {folds}; training needs at least one other fold")
    n_train = int((df["fold"] != valid_fold).sum())
    if n_train < s.bs:
        raise ValueError(
            f"bs={s.bs} is larger than the {n_train} training clips (folds other than {valid_fold}); the training "
            "loader drops incomplete batches, so it would yield none: pass a smaller bs"
        )
    vocab = df.sort_values("target").drop_duplicates("category")["category"].tolist()
    dblock = esc50_datablock(root, vocab, valid_fold, s, batch_tfms)
    kwargs = {} if s.num_workers is None else {"num_workers": s.num_workers}
    if s.num_workers is None and _uses_audio_cache(dblock) and _device_type(device) == "cpu":
        # Cached clips are batched in the main process in ~0.1 ms each; on a CPU, worker processes
        # would only compete with the batch transforms for the same cores (measured 2-3x slower).
        kwargs["num_workers"] = 0
    dls = dblock.dataloaders(df, bs=s.bs, device=device, **kwargs)
    dls = AudioDataLoaders(*dls.loaders, path=dls.path, device=dls.device)  # test_dl / predict on any file
    dls.esc50_settings = s
    dls.validation_report = report
    return dls


def _uses_audio_cache(dblock: DataBlock) -> bool:
    return any(isinstance(t, LoadAudio) and t.cache is not None for tfms in dblock.type_tfms for t in tfms)


#: The ESC-50 learner is the generic one (`fastspecnorm.learner.audio_learner`): xResNet18 from
#: scratch, one input channel, accuracy; `input_bn=True` adds a BatchNorm over frequency bins.
esc50_learner = audio_learner
