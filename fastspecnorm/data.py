"""Your own audio: `AudioDataLoaders.from_folder` and `AudioDataLoaders.from_df`.

Clips of any length, sample rate, channel count and format (WAV, FLAC, OGG) in a folder tree
(labelled by their parent folder) or listed in a DataFrame. Every file is checked before training
(`check_audio_files`: every bad file named at once), decoded audio is cached (`AudioCache`), and
`duration=None` keeps each clip's own length: batches are padded to their longest clip and carry
`lengths`, so per-clip standardization, statistics and normalizations never count the padding.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import ColSplitter, RandomSplitter
from fasttransform import Pipeline, Transform

from .audio.cache import AudioCache
from .audio.check import check_audio_files
from .audio.spectrogram import AudioToSpec
from .audio.transforms import AudioBlock, LoadAudio, ResizeSignal
from .normalize import WaveformNormalize

__all__ = ["AudioDataLoaders", "AUDIO_FILE_EXTENSIONS", "get_audio_files"]

#: Extensions `from_folder` collects (soundfile decodes them without FFmpeg).
AUDIO_FILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")


def get_audio_files(path: str | os.PathLike) -> list[Path]:
    "Audio files under `path`, found recursively (hidden files and folders skipped), sorted."
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".") and f.lower().endswith(AUDIO_FILE_EXTENSIONS)]
    return sorted(found)


class _ReadPath(Transform):
    "Row -> the audio file's path: `root / row[col]` (picklable, so `learn.export()` keeps it)."

    def __init__(self, col: str, root: str):
        super().__init__()
        self.col, self.root = col, root

    def encodes(self, row: pd.Series) -> Path:
        return Path(self.root) / str(row[self.col])


class _ValueSplitter:
    "Rows whose `col` equals `value` are validation (a fold, a speaker); picklable."

    def __init__(self, col: str, value):
        self.col, self.value = col, value

    def __call__(self, df: pd.DataFrame):
        is_valid = (df[self.col] == self.value).to_numpy()
        idx = range(len(df))
        return [i for i in idx if not is_valid[i]], [i for i in idx if is_valid[i]]


def _column(df: pd.DataFrame, col, what: str) -> str:
    "Column name from a name or a position; ValueError naming the columns otherwise."
    if isinstance(col, int) and not isinstance(col, bool) and col not in df.columns:
        if not -len(df.columns) <= col < len(df.columns):
            raise ValueError(f"{what}={col} is out of range: the DataFrame has {len(df.columns)} columns {list(df.columns)}")
        return df.columns[col]
    if col not in df.columns:
        raise ValueError(f"{what}={col!r} is not a column of the DataFrame; columns are {list(df.columns)}")
    return col


def _splitter(df: pd.DataFrame, valid_col, fold_col, valid_fold, valid_pct: float, seed):
    if valid_col is not None and fold_col is not None:
        raise ValueError("give either valid_col (a bool column) or fold_col with valid_fold, not both")
    if valid_col is not None:
        col = _column(df, valid_col, "valid_col")
        if df[col].dtype != bool:
            raise ValueError(f"valid_col {col!r} must hold True/False (True = validation), got dtype {df[col].dtype}")
        return ColSplitter(col)
    if fold_col is not None:
        col = _column(df, fold_col, "fold_col")
        values = sorted(df[col].unique().tolist(), key=str)
        if valid_fold is None or valid_fold not in values:
            raise ValueError(f"valid_fold={valid_fold!r} is not a value of column {col!r}; its values are {values}")
        if len(values) < 2:
            raise ValueError(f"column {col!r} holds only {values}: nothing is left for training")
        return _ValueSplitter(col, valid_fold)
    if valid_fold is not None:
        raise ValueError("valid_fold needs fold_col, the column holding the folds (or speakers)")
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct must be in (0, 1), got {valid_pct}")
    return RandomSplitter(valid_pct, seed=seed)


def _file_sample_rate(facts: dict[str, dict]) -> int:
    "The files' common sample rate (for `sample_rate=None`); ValueError naming the rates otherwise."
    rates = Counter(f["samplerate"] for f in facts.values())
    if len(rates) != 1:
        listed = ", ".join(f"{r} Hz ({n} files)" for r, n in sorted(rates.items()))
        raise ValueError(f"sample_rate=None keeps the files' own rate, but they have several: {listed}; pass sample_rate=...")
    return next(iter(rates))


class AudioDataLoaders(DataLoaders):
    """fastai `DataLoaders` of spectrograms of your own audio, with `from_folder` and `from_df`.

    Batches: `AudioSpectrogram` `(batch, 1, freq, time)` (mono) and category indices. With
    `duration=None` a batch is padded to its longest clip and the spectrogram's `lengths` gives
    each item's valid frames. `test_dl` (and so `learn.predict`) accepts paths, `AudioTensor`s of
    any rate and channel count, and NumPy arrays `(samples,)` / `(channels, samples)` at the
    loaders' rate, and always uses each clip's whole length: a `duration` crop applies to training
    and validation only, never silently to a prediction.
    """

    def test_dl(self, test_items, rm_type_tfms=None, with_labels: bool = False, **kwargs):
        "A loader over `test_items` with the validation transforms, minus any `ResizeSignal` crop."
        if isinstance(test_items, pd.DataFrame):  # rows (e.g. from Interpretation): every type transform applies
            items, rm_type_tfms = test_items, 0 if rm_type_tfms is None else rm_type_tfms
        else:
            items = list(test_items)
        if rm_type_tfms is None and not with_labels and len(items) and not isinstance(items[0], (pd.Series, tuple)):
            # A path or in-memory audio, not a row: start at LoadAudio (skip the row reader).
            tfms = self.valid_ds.tls[0].tfms.fs
            starts = [i for i, t in enumerate(tfms) if isinstance(t, LoadAudio)]
            rm_type_tfms = starts[0] if starts else None
        dl = super().test_dl(items, rm_type_tfms=rm_type_tfms, with_labels=with_labels, **kwargs)
        kept = [t for t in dl.after_item.fs if not isinstance(t, ResizeSignal)]
        if len(kept) != len(dl.after_item.fs):
            dl.after_item = Pipeline(kept, split_idx=dl.after_item.split_idx)
        return dl

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        valid_pct: float = 0.2,
        seed: int | None = None,
        sample_rate: int | None = 16000,
        duration: float | None = None,
        bs: int = 64,
        spec: dict | None = None,
        **kwargs,
    ) -> AudioDataLoaders:
        """Loaders over the audio files under `path` (wav, flac, ogg, aiff; found recursively),
        labelled by their parent folder's name, `valid_pct` of them (random, `seed`) for validation.
        Other arguments as `from_df`."""
        root = Path(path)
        files = get_audio_files(root)
        if not files:
            raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_FILE_EXTENSIONS)}) under {root}")
        df = pd.DataFrame({"file": [str(f.relative_to(root)) for f in files], "label": [f.parent.name for f in files]})
        return cls.from_df(df, path=root, fn_col="file", label_col="label", valid_pct=valid_pct, seed=seed,
                           sample_rate=sample_rate, duration=duration, bs=bs, spec=spec, **kwargs)  # fmt: skip

    @classmethod
    def from_df(
        cls,
        df: pd.DataFrame,
        path: str | os.PathLike = ".",
        fn_col=0,
        label_col=1,
        valid_col=None,
        fold_col=None,
        valid_fold=None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        sample_rate: int | None = 16000,
        duration: float | None = None,
        bs: int = 64,
        spec: dict | None = None,
        waveform_norm: bool = True,
        item_tfms=(),
        batch_tfms=(),
        cache=True,
        validate: bool | str = True,
        device=None,
        vocab=None,
        audio_dtype: str | None = None,
        progress: bool = True,
        **kwargs,
    ) -> AudioDataLoaders:
        """Loaders over the files `path / df[fn_col]` labelled by `df[label_col]` (names or positions).

        Validation: rows where the bool column `valid_col` is True; else rows whose `fold_col`
        equals `valid_fold` (a fold, a speaker: group-aware); else a random `valid_pct` (`seed`).
        sample_rate: Hz every clip is resampled to; None keeps the files' own rate when they all
        share one (ValueError naming the rates otherwise). duration: None keeps each clip's length
        (batches padded to their longest clip, with `lengths`); seconds crop (random on training,
        fixed at the start on validation) or zero-pad every clip to that length.
        Batch transforms: `WaveformNormalize` (per clip over its own samples; `waveform_norm=False`
        drops it), `AudioToSpec(**(spec or {}), sample_rate=sample_rate)`, then `batch_tfms`.
        cache: True keeps decoded audio in the default `AudioCache` folder, a path puts it there,
        False decodes every epoch. validate: True checks every file's header before anything else,
        "full" also decodes every sample, False skips it; bad files raise `AudioFilesError` naming
        them all. vocab: the class order (None: sorted labels). audio_dtype: the precision decoded
        audio is kept at ("int16", "float16", "float32", "auto"; None: "auto" in the cache, float32
        without it). progress: show a progress bar while the cache is built. Other keyword arguments go to fastai's `DataBlock.dataloaders` (e.g. `num_workers`;
        by default 0 on a CPU device when the cache is on: cached clips are read in ~0.1 ms and
        workers would only compete with the batch transforms for the cores).
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_df expects a pandas DataFrame, got {type(df).__name__}")
        if df.empty:
            raise ValueError("the DataFrame has no rows")
        if not (isinstance(bs, int) and bs > 0):
            raise ValueError(f"bs must be a positive integer, got {bs!r}")
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be positive seconds or None (each clip's own length), got {duration!r}")
        root = Path(path)
        fn, label = _column(df, fn_col, "fn_col"), _column(df, label_col, "label_col")
        df = df.reset_index(drop=True)
        files = [root / str(f) for f in df[fn]]
        splitter = _splitter(df, valid_col, fold_col, valid_fold, valid_pct, seed)
        if validate not in (True, False, "full", "quick"):
            raise ValueError(f"validate must be True, False, 'quick' or 'full', got {validate!r}")
        facts = check_audio_files(files, full=validate == "full") if validate else None
        if sample_rate is None:
            if facts is None:
                raise ValueError("sample_rate=None reads the files' rate from their headers: it needs validate=True")
            sample_rate = _file_sample_rate(facts)
        train_idx, _ = splitter(df)
        n_train = len(train_idx)
        if n_train < bs:
            raise ValueError(
                f"bs={bs} is larger than the {n_train} training clips; the training loader drops incomplete batches, "
                "so it would yield none: pass a smaller bs"
            )
        audio_cache = _open_cache(files, sample_rate, cache, audio_dtype, progress)
        dblock = DataBlock(
            blocks=(AudioBlock(sample_rate=sample_rate, cache=audio_cache, dtype=audio_dtype),
                    CategoryBlock if vocab is None else CategoryBlock(vocab=list(vocab), sort=False)),
            get_x=_ReadPath(fn, str(root)),
            get_y=_Label(label),
            splitter=splitter,
            item_tfms=([ResizeSignal(duration)] if duration is not None else []) + list(item_tfms),
            batch_tfms=([WaveformNormalize(inplace=True)] if waveform_norm else [])
            + [AudioToSpec(**{**(spec or {}), "sample_rate": sample_rate})]
            + list(batch_tfms),
        )
        if "num_workers" not in kwargs and audio_cache is not None and _device_type(device) == "cpu":
            kwargs["num_workers"] = 0
        dls = dblock.dataloaders(df, bs=bs, device=device, **kwargs)
        res = cls(*dls.loaders, path=root, device=dls.device)
        res.sample_rate = sample_rate
        return res


class _Label:
    "Row -> its label `row[col]` (picklable)."

    def __init__(self, col: str):
        self.col = col

    def __call__(self, row):
        return row[self.col]


def _open_cache(files: list[Path], sample_rate: int, cache, dtype: str | None = None, progress: bool = True) -> AudioCache | None:
    "The `AudioCache` of `files` (their common folder, only these files), or None when off."
    if cache is False or cache is None:
        return None
    folder = Path(os.path.commonpath([os.path.abspath(f.parent) for f in files]))
    return AudioCache.for_settings(folder, sample_rate, cache_dir=None if cache is True else cache, files=files,
                                   dtype=dtype or "auto", progress=progress)  # fmt: skip


def _device_type(device) -> str:
    from fastai.torch_core import default_device

    return torch.device(device).type if device is not None else default_device().type
