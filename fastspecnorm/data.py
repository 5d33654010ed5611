"""Loaders over your own audio: `AudioDataLoaders` (`from_folder`, `from_df`, `from_csv` and fastai's
other constructors), `CrossValidationSplitter` and `get_audio_files`."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from inspect import Parameter, signature
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders, FilteredBase, TfmdDL
from fastai.data.transforms import ColReader, ColSplitter, IndexSplitter, RandomSplitter, RegexLabeller, get_files
from fastai.torch_core import default_device
from fastcore.meta import delegates
from fasttransform import Pipeline, Transform

from ._groups import draw_folds, groups_from_names, warn_shared_prefixes
from ._table import column
from .audio.cache import AudioCache
from .audio.check import check_audio_files, check_table
from .audio.io import audio_extensions, is_audio_file, unreadable_files_note
from .audio.spectrogram import AudioToSpec
from .audio.transforms import AudioBlock, LoadAudio, ResizeSignal
from .normalize import WaveformNormalize, warn_level_after_waveform_norm

__all__ = [
    "AudioDataLoaders",
    "AUDIO_FILE_EXTENSIONS",
    "CrossValidationSplitter",
    "get_audio_files",
    "LOADER_KWARGS",
    "MAX_DURATION",
]

MAX_DURATION = 600.0
"""Default bound on a clip's decoded length (seconds at the target rate) in the loaders: 10 minutes."""
AUDIO_FILE_EXTENSIONS = audio_extensions()
"""Extensions `from_folder` collects (`audio.io.audio_extensions`): the formats this machine's soundfile reads."""
#: fastai keywords these loaders take in another form, and what to use instead.
_NOT_SUPPORTED = {
    "batch_size": "use bs=",
    "after_item": "use item_tfms=[...]",
    "after_batch": "use batch_tfms=[...]",
    "label_delim": "multi-label targets are not supported (one label per clip)",
    "y_block": "the targets are always categories (CategoryBlock)",
    "img_cls": "audio is always opened as AudioTensor",
}


def get_audio_files(path: str | os.PathLike) -> list[Path]:
    """Audio files (an extension of `audio_extensions()`, any case) under `path`, found recursively, sorted.

    Args:
        path: the folder to search; hidden files and folders are skipped.

    Returns:
        The paths, `path` joined with each file's place under it.

    Raises:
        FileNotFoundError: `path` is not a folder.

    Warns:
        UserWarning: files in a format soundfile does not decode (`.m4a`, `.aac`, ...) are left out.
    """
    if not Path(path).is_dir():
        raise FileNotFoundError(f"audio folder not found: {path}")
    everything = get_files(path, followlinks=False)
    note = unreadable_files_note(everything)
    if note:
        warnings.warn(f"{path}: left out the files soundfile cannot read{note}", UserWarning, stacklevel=2)
    return sorted(f for f in everything if is_audio_file(f))


class CrossValidationSplitter:
    """A fastai splitter: rows whose `col` is `fold` are validation, the others training (a fold, a speaker).

    Called with the DataFrame, it returns `(train_indices, valid_indices)` (fastai's
    `ColSplitter(col, on=fold)`) after checking that `fold` is a value of `col`; it is picklable.

    Args:
        col: the column holding the folds.
        fold: the value held out for validation.

    Examples:
        >>> import pandas as pd
        >>> CrossValidationSplitter("fold", 1)(pd.DataFrame({"fold": [1, 2, 3, 1]})) == ([1, 2], [0, 3])
        True
    """

    def __init__(self, col: str = "fold", fold=1):
        self.col, self.fold = col, fold

    def __call__(self, df: pd.DataFrame):
        if self.col not in df.columns:
            raise ValueError(f"CrossValidationSplitter: column {self.col!r} not in {list(df.columns)}")
        values = sorted(df[self.col].unique().tolist(), key=str)
        if self.fold not in values:
            raise ValueError(f"valid_fold={self.fold!r} is not a value of column {self.col!r}; its values are {values}")
        return ColSplitter(_readable(df, self.col), on=self.fold)(df)


class AudioDataLoaders(DataLoaders):
    """fastai `DataLoaders` of spectrograms of your own audio, built like fastai's `ImageDataLoaders`.

    Constructors: `from_folder`, `from_df`, `from_csv`, `from_path_func`, `from_name_func`,
    `from_path_re`, `from_name_re`. Clips of any length, sample rate, channel count and format
    (`audio_extensions()`) in a folder tree (labelled by their parent folder) or listed in a
    DataFrame. Every file is checked before training, and decoded audio is cached (`AudioCache`).

    Batches: `AudioSpectrogram` `(batch, 1, freq, time)` (mono) and category indices. With
    `duration=None` a batch is padded to its longest clip and the spectrogram's `lengths` gives
    each item's valid frames, so statistics and normalizations never count the padding.
    `test_dl` (and so `learn.predict`) accepts a file path, an `AudioTensor` (resampled from its
    `sr`), or a NumPy array `(samples,)`, `(channels, samples)` or `(samples, channels)` at
    `dls.sample_rate`, and always uses each clip's whole length (no `duration` crop).

    Attributes:
        sample_rate: the clips' sample rate, in Hz.
        audio_cache: the `AudioCache` of decoded clips (None when off).
    """

    def test_dl(self, test_items: Iterable, rm_type_tfms: int | None = None, with_labels: bool = False, **kwargs) -> TfmdDL:
        """A loader over `test_items` with the validation transforms, minus any `ResizeSignal` crop.

        Args:
            test_items: file paths, `AudioTensor`s or NumPy arrays (see `AudioDataLoaders`), or rows
                of the loaders' table (a DataFrame).
            rm_type_tfms: how many of the type transforms to skip, as in fastai; None: paths and
                in-memory audio start at `LoadAudio`, a DataFrame's rows go through every one.
            with_labels: also build the targets (the items must then be rows).
            **kwargs: passed on to fastai's `DataLoaders.test_dl` (e.g. `bs`).
        """
        if isinstance(test_items, pd.DataFrame):  # rows (e.g. from Interpretation): every type transform applies
            items, rm_type_tfms = test_items, 0 if rm_type_tfms is None else rm_type_tfms
        else:
            items = list(test_items)
        if rm_type_tfms is None and not with_labels and len(items) and not isinstance(items[0], (pd.Series, tuple)):
            # A path or in-memory audio, not a row: start at LoadAudio (skip the row reader).
            rm_type_tfms = next((i for i, t in enumerate(self.valid_ds.tls[0].tfms.fs) if isinstance(t, LoadAudio)), None)
        dl = super().test_dl(items, rm_type_tfms=rm_type_tfms, with_labels=with_labels, **kwargs)
        kept = [t for t in dl.after_item.fs if not isinstance(t, ResizeSignal)]
        dl.after_item = Pipeline(kept, split_idx=dl.after_item.split_idx)
        return dl

    @classmethod
    @delegates(TfmdDL.__init__, but=list(_NOT_SUPPORTED))
    @delegates(FilteredBase.dataloaders, keep=True)
    def from_df(
        cls,
        df: pd.DataFrame,
        path: str | os.PathLike = ".",
        fn_col: str | int = 0,
        label_col: str | int = 1,
        valid_col: str | int | None = "is_valid",
        fold_col: str | int | None = None,
        valid_fold: Any = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        sample_rate: int | None = 16000,
        duration: float | None = None,
        bs: int = 64,
        spec: dict | None = None,
        waveform_norm: bool = True,
        item_tfms: Sequence[Transform] = (),
        batch_tfms: Sequence[Transform] = (),
        cache: bool | str | os.PathLike = True,
        validate: bool | str = True,
        device: str | torch.device | None = None,
        folder: str | None = None,
        suff: str = "",
        vocab: Sequence | None = None,
        allow_outside: bool = False,
        max_duration: float | None = MAX_DURATION,
        audio_dtype: str | None = None,
        progress: bool = True,
        group_regex: str | None = None,
        **kwargs,
    ) -> AudioDataLoaders:
        """Loaders over the files `path / folder / (df[fn_col] + suff)` labelled by `df[label_col]`.

        As fastai's `ImageDataLoaders.from_df` (a `DataBlock` of `ColReader`s). The table (`check_table`)
        and the files' headers (`check_audio_files`) are checked first, every bad name at once. Batch
        transforms: `WaveformNormalize`, `AudioToSpec(**(spec or {}), sample_rate=sample_rate)`, `batch_tfms`.

        Args:
            df: the table, one row per clip.
            path: the folder the file names are relative to (with `folder`).
            fn_col: the column of file names, by name or position.
            label_col: the column of labels, by name or position.
            valid_col: the bool column marking the validation rows (True = validation); the default
                "is_valid" is used when the DataFrame has it and no `fold_col` is given.
            fold_col: the column whose value `valid_fold` marks the validation rows (a fold, a
                speaker), by name or position; it takes precedence over a default `is_valid` column.
            valid_fold: the value of `fold_col` held out for validation.
            valid_pct: without `valid_col` or `fold_col`, the share of rows drawn at random for
                validation, in (0, 1); with `group_regex`, whole groups stratified by label (one of
                `round(1 / valid_pct)` folds). Names that look like fragments of one recording warn.
            seed: the seed of that draw; None: not seeded.
            sample_rate: Hz every clip is resampled to; None keeps the files' rate when they all share one.
            duration: None keeps each clip's length (batches padded, with `lengths`); seconds crop
                (random on training, at the start on validation) or zero-pad every clip to that length.
            bs: the batch size, in clips; at most the number of training clips.
            spec: keyword arguments of `AudioToSpec` (e.g. `n_mels`, `n_fft`, `hop_length`).
            waveform_norm: start the batch transforms with `WaveformNormalize` (a transform that
                assumes the recording's level, such as `DbRangeNormalize`, then warns).
            item_tfms: more item transforms, after the `duration` crop.
            batch_tfms: more batch transforms, after `AudioToSpec`.
            cache: keep decoded audio in the default `AudioCache` folder (True), a given one, or not (False).
            validate: check every file's header first (True or "quick"), also decode it ("full"), or not.
            device: the device of the batches; None: fastai's `default_device()`.
            folder: a subfolder of `path` that the file names are relative to; None: `path` itself.
            suff: appended to every file name, e.g. ".wav".
            vocab: the classes, kept in the order given (default: the sorted labels).
            allow_outside: accept names outside `path / folder` (absolute, `..`, links to outside).
            max_duration: seconds; a longer clip is refused before any decoding (every clip is
                decoded whole, into memory and the cache); None lifts the bound. Needs `validate`.
            audio_dtype: the precision decoded audio is kept at ("int16", "float16", "float32",
                "auto"; None: "auto" in the cache, float32 without it).
            progress: show a progress bar while the cache is built.
            group_regex: a regular expression whose group named `group` (else its first group),
                searched in each file name of `fn_col`, names the clip's group (a recording, a
                speaker): a random split keeps each group on one side, and a split by `valid_col` or
                `fold_col` that puts a group on both sides is refused. None: every clip is its own.
            **kwargs: fastai's `DataLoader` keywords (`LOADER_KWARGS`), e.g. `num_workers`, `shuffle`,
                `val_bs`. `num_workers` is 0 by default on a CPU device when the cache is on.

        Returns:
            The loaders, with `sample_rate` (Hz) and `audio_cache` (None when the cache is off).

        Raises:
            TypeError: `df` is not a DataFrame, or a keyword is not one of `LOADER_KWARGS`.
            ValueError: a bad argument (`bs`, `duration`, `max_duration`, `validate`, `group_regex`),
                a missing column, a bad file name (empty, spaced, listed twice, outside), a split that
                cannot be made or leaves a class without training clips, `sample_rate=None` without
                `validate` or with files at several rates, or a clip longer than `max_duration`.
            AudioFilesError: (a ValueError) files are missing, unreadable or damaged; it names them all.

        Examples:
            >>> import os, tempfile
            >>> import numpy as np, pandas as pd, soundfile as sf
            >>> with tempfile.TemporaryDirectory() as d:
            ...     for i, n in enumerate([1600, 2400, 3200, 4000]):
            ...         sf.write(os.path.join(d, f"{i}.wav"), np.zeros(n, dtype="float32"), 16000)
            ...     df = pd.DataFrame({"file": ["0.wav", "1.wav", "2.wav", "3.wav"], "label": ["a", "b", "a", "b"]})
            ...     dls = AudioDataLoaders.from_df(df, path=d, bs=2, valid_pct=0.5, seed=0, cache=False, device="cpu")
            ...     x, y = dls.one_batch()
            >>> dls.vocab, dls.sample_rate
            (['a', 'b'], 16000)
            >>> type(x).__name__, x.shape[:3], x.lengths.shape
            ('AudioSpectrogram', torch.Size([2, 1, 201]), torch.Size([2]))
        """
        _check_arguments(df, kwargs, bs, duration, max_duration, validate)
        root = Path(path) / folder if folder else Path(path)
        fn, label = column(df, fn_col, "fn_col"), column(df, label_col, "label_col")
        fold_col = None if fold_col is None else column(df, fold_col, "fold_col")
        df = check_table(df, root, fn, label, fold_col, suff=suff, allow_outside=allow_outside)
        groups = None if group_regex is None else groups_from_names(df[fn].astype(str), group_regex)
        splitter = _splitter(df, valid_col, fold_col, valid_fold, valid_pct, seed, groups, fn, label)
        train_idx, valid_idx = splitter(df)
        if groups is not None:
            _check_groups_apart(df[fn], groups, train_idx, valid_idx, group_regex)
        if df[label].nunique() < 2:
            raise ValueError(f"column {label!r} holds one class ({df[label].iloc[0]!r}): a classifier needs two or more")
        untrained = sorted(set(df[label].iloc[list(valid_idx)]) - set(df[label].iloc[list(train_idx)]), key=str)
        if untrained:
            raise ValueError(
                f"class(es) {untrained[:5]} have no training clip in this split (all their clips are in validation): "
                "the model could never learn them; give each class training clips (another split, fold or seed), "
                "or leave the class out of the table"
            )
        if len(train_idx) < bs:
            raise ValueError(
                f"bs={bs} is larger than the {len(train_idx)} training clips; the training loader drops incomplete batches, "
                "so it would yield none: pass a smaller bs"
            )
        files = [root / f for f in df[fn]]
        pref = root
        if any(os.path.isabs(str(f)) for f in df[fn]):  # fastai's ColReader prefixes by string: joined here instead
            df[fn], pref = [str(f) for f in files], ""
        sample_rate = _checked_files(files, validate, sample_rate, max_duration)
        if waveform_norm:
            warn_level_after_waveform_norm(batch_tfms)
        audio_cache = _open_cache(files, sample_rate, cache, audio_dtype, progress)
        dblock = DataBlock(
            blocks=(
                AudioBlock(sample_rate=sample_rate, cache=audio_cache, dtype=audio_dtype),
                CategoryBlock(vocab=None if vocab is None else list(vocab), sort=vocab is None),
            ),
            get_x=ColReader(_readable(df, fn), pref=pref),
            get_y=ColReader(_readable(df, label)),
            splitter=splitter,
            item_tfms=([ResizeSignal(duration)] if duration is not None else []) + list(item_tfms),
            batch_tfms=([WaveformNormalize(inplace=True)] if waveform_norm else [])
            + [AudioToSpec(**{**(spec or {}), "sample_rate": sample_rate}), *batch_tfms],
        )
        device_type = (torch.device(device) if device is not None else default_device()).type
        if "num_workers" not in kwargs and audio_cache is not None and device_type == "cpu":
            kwargs["num_workers"] = 0
        dls = dblock.dataloaders(df, path=root, bs=bs, device=device, **kwargs)
        res = cls(*dls.loaders, path=root, device=dls.device)
        res.sample_rate, res.audio_cache = sample_rate, audio_cache
        return res

    @classmethod
    @delegates(from_df, but="fn_col,label_col,valid_col")
    def from_folder(
        cls,
        path: str | os.PathLike,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = None,
        sample_rate: int | None = 16000,
        duration: float | None = None,
        bs: int = 64,
        spec: dict | None = None,
        group_regex: str | None = None,
        **kwargs,
    ) -> AudioDataLoaders:
        r"""Loaders over the audio files under `path`, labelled by their parent folder's name.

        As fastai's `ImageDataLoaders.from_folder`; the files are found recursively (`get_audio_files`).

        Args:
            path: the dataset folder.
            train: the name of the training subfolder.
            valid: the name of the validation subfolder.
            valid_pct: None: when `path` holds both the `train` and `valid` subfolders, they decide
                the split (fastai's `GrandparentSplitter`; other folders are left out), otherwise a
                random 0.2 of all files. A fraction: that share of all files, drawn at random.
            seed: the seed of the random split; None: not seeded.
            sample_rate: as `from_df`, in Hz.
            duration: as `from_df`, in seconds.
            bs: as `from_df`.
            spec: as `from_df`.
            group_regex: as `from_df`, searched in each file's path relative to `path` (e.g.
                `dog/1-100032-A-0.wav`); e.g. `r"(\d+-\d+)-[A-Z]-\d+\.wav$"` for ESC-50's recordings.
            **kwargs: the other arguments of `from_df`.

        Raises:
            ValueError: as `from_df`.
            TypeError: `train` or `valid` is not a folder name.
            FileNotFoundError: `path` is not a folder, holds no audio files, or one of the `train` and
                `valid` folders holds none.
        """
        if not isinstance(train, str) or not isinstance(valid, str):
            raise TypeError(
                f"train and valid are folder names, got train={train!r}, valid={valid!r}; "
                "a fraction for validation goes in valid_pct= (by keyword)"
            )
        root = Path(path)
        by_folder = valid_pct is None and (root / train).is_dir() and (root / valid).is_dir()
        files = (get_audio_files(root / train) + get_audio_files(root / valid)) if by_folder else get_audio_files(root)
        if not files:
            note = unreadable_files_note(root.rglob("*"))
            raise FileNotFoundError(f"no audio files ({', '.join(audio_extensions())}) under {root}{note}")
        df = pd.DataFrame({"file": [f.relative_to(root).as_posix() for f in files], "label": [f.parent.name for f in files]})
        if by_folder:
            df["is_valid"] = [f.relative_to(root).parts[0] == valid for f in files]
            if not df["is_valid"].any() or df["is_valid"].all():
                empty = valid if not df["is_valid"].any() else train
                raise FileNotFoundError(
                    f"no audio files under {root / empty}; the split follows the {train}/ and {valid}/ folders"
                )
        return cls.from_df(df, path=root, fn_col="file", label_col="label", valid_col="is_valid" if by_folder else None,
                           valid_pct=0.2 if valid_pct is None else valid_pct, seed=seed, sample_rate=sample_rate,
                           duration=duration, bs=bs, spec=spec, group_regex=group_regex, **kwargs)  # fmt: skip

    @classmethod
    @delegates(from_df)
    def from_csv(
        cls,
        path: str | os.PathLike,
        csv_fname: str | os.PathLike = "labels.csv",
        header: int | str | None = "infer",
        delimiter: str | None = None,
        **kwargs,
    ) -> AudioDataLoaders:
        """`from_df` over the CSV `path / csv_fname`, file names relative to `path`, as fastai's `from_csv`.

        Args:
            path: the folder of the CSV; file names are relative to it.
            csv_fname: the CSV's name, relative to `path`.
            header: `pd.read_csv`'s `header` ("infer": the first row holds the column names).
            delimiter: `pd.read_csv`'s `delimiter`; None: a comma.
            **kwargs: the other arguments of `from_df`.

        Raises:
            FileNotFoundError: the CSV is missing.
        """
        # delimiter=None would make pandas sniff the separator: leave it out instead.
        df = pd.read_csv(Path(path) / csv_fname, header=header, **({} if delimiter is None else {"delimiter": delimiter}))
        return cls.from_df(df, path=path, **kwargs)

    @classmethod
    @delegates(from_df, but="fn_col,label_col,valid_col")
    def from_path_func(
        cls,
        path: str | os.PathLike,
        fnames: Iterable,
        label_func: Callable,
        valid_pct: float = 0.2,
        seed: int | None = None,
        **kwargs,
    ) -> AudioDataLoaders:
        """Loaders over the files `fnames`, labelled by `label_func` (computed once here), as fastai's `from_path_func`.

        Args:
            path: the dataset folder.
            fnames: the files: paths under `path` (e.g. `get_audio_files(path)`) or names relative to it.
            label_func: `label_func(fname)` gives the label of a file (`fname` as given, as a `Path`).
            valid_pct: as `from_df`.
            seed: as `from_df`.
            **kwargs: the other arguments of `from_df`.

        Raises:
            ValueError: `fnames` is empty.
        """
        fnames = list(fnames)
        if not fnames:
            raise ValueError("fnames is empty: pass the audio files, e.g. get_audio_files(path)")
        labels = [label_func(Path(f)) for f in fnames]
        df = pd.DataFrame({"file": _relative_names(Path(path), fnames), "label": labels})
        return cls.from_df(
            df, path=path, fn_col="file", label_col="label", valid_col=None, valid_pct=valid_pct, seed=seed, **kwargs
        )

    @classmethod
    def from_name_func(cls, path: str | os.PathLike, fnames: Iterable, label_func: Callable, **kwargs) -> AudioDataLoaders:
        """`from_path_func` with `label_func` applied to each file's name (`Path(fname).name`), as in fastai.

        Args:
            path: as `from_path_func`.
            fnames: as `from_path_func`.
            label_func: `label_func(name)` gives the label of the file of that name.
            **kwargs: the other arguments of `from_path_func` and `from_df`.
        """
        return cls.from_path_func(path, fnames, lambda f: label_func(f.name), **kwargs)

    @classmethod
    def from_path_re(cls, path: str | os.PathLike, fnames: Iterable, pat: str, **kwargs) -> AudioDataLoaders:
        """`from_path_func` labelling each file by the first group of the regular expression `pat` in its whole path.

        Args:
            path: the dataset folder.
            fnames: the files, as in `from_path_func`.
            pat: the regular expression; its first group is the label.
            **kwargs: the other arguments of `from_path_func` and `from_df`.

        Raises:
            ValueError: (naming the file) `pat` does not match a file, or has no group.
        """
        return cls.from_path_func(path, fnames, _regex_labeller(pat), **kwargs)

    @classmethod
    def from_name_re(cls, path: str | os.PathLike, fnames: Iterable, pat: str, **kwargs) -> AudioDataLoaders:
        r"""`from_path_re` with `pat` searched in each file's name: `pat=r"^(\d)_"` labels FSDD's `7_jackson_0.wav` "7".

        Args:
            path: the dataset folder.
            fnames: the files, as in `from_path_func`.
            pat: the regular expression; its first group is the label.
            **kwargs: the other arguments of `from_path_func` and `from_df`.

        Raises:
            ValueError: (naming the file) `pat` does not match a file, or has no group.
        """
        return cls.from_name_func(path, fnames, _regex_labeller(pat), **kwargs)


LOADER_KWARGS = frozenset(
    name for name, p in signature(AudioDataLoaders.from_df).parameters.items() if p.kind is Parameter.KEYWORD_ONLY
)
"""Keyword arguments the loaders pass on to fastai (`Datasets.dataloaders`, `TfmdDL` and `DataLoader`): those
`@delegates` adds to `from_df`'s signature; any other keyword raises TypeError naming it."""


def _check_arguments(df, kwargs: dict, bs, duration, max_duration, validate) -> None:
    "The errors of `from_df` that its arguments alone decide (see its Raises)."
    unknown = sorted(set(kwargs) - LOADER_KWARGS)
    if unknown:
        hints = "; ".join(f"{k}: {_NOT_SUPPORTED[k]}" for k in unknown if k in _NOT_SUPPORTED)
        raise TypeError(
            f"AudioDataLoaders.from_df got unexpected keyword argument(s) {unknown}"
            + (f" ({hints})" if hints else "")
            + f"; besides its own arguments it passes on only fastai's DataLoader keywords {sorted(LOADER_KWARGS)}"
        )
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_df expects a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError("the DataFrame has no rows")
    if not (isinstance(bs, int) and bs > 0):
        raise ValueError(f"bs must be a positive integer, got {bs!r}")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be positive seconds or None (each clip's own length), got {duration!r}")
    if max_duration is not None and not max_duration > 0:
        raise ValueError(f"max_duration must be positive seconds or None (no bound), got {max_duration!r}")
    if validate not in (True, False, "full", "quick"):
        raise ValueError(f"validate must be True, False, 'quick' or 'full', got {validate!r}")


def _readable(df: pd.DataFrame, col):
    "`col` as fastai's `ColReader` and `ColSplitter` read it: they take an int for a position, not a name."
    return df.columns.get_loc(col) if isinstance(col, int) else col


def _splitter(df: pd.DataFrame, valid_col, fold_col, valid_fold, valid_pct: float, seed, groups=None, fn=None, label=None):
    "fastai's `ColSplitter`, a `CrossValidationSplitter`, `RandomSplitter`, or with `groups` one fold of `draw_folds`."
    if valid_col == "is_valid" and (fold_col is not None or valid_col not in df.columns):
        valid_col = None  # the default: used only when the column exists and no folds are asked for
    if valid_col is not None and fold_col is not None:
        raise ValueError("give either valid_col (a bool column) or fold_col with valid_fold, not both")
    if valid_col is not None:
        col = column(df, valid_col, "valid_col")
        if df[col].dtype != bool:
            raise ValueError(f"valid_col {col!r} must hold True/False (True = validation), got dtype {df[col].dtype}")
        if df[col].all() or not df[col].any():
            raise ValueError(
                f"valid_col {col!r} is {bool(df[col].iloc[0])} on every row: nothing is left for "
                + ("training" if df[col].all() else "validation")
            )
        return ColSplitter(_readable(df, col))
    if fold_col is not None:
        splitter = CrossValidationSplitter(fold_col, valid_fold)
        splitter(df)  # a ValueError naming the values when valid_fold is not one
        if len(df[fold_col].unique()) < 2:
            raise ValueError(f"column {fold_col!r} holds only {[valid_fold]}: nothing is left for training")
        return splitter
    if valid_fold is not None:
        raise ValueError("valid_fold needs fold_col, the column holding the folds (or speakers)")
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct must be in (0, 1), got {valid_pct}")
    if groups is None:
        warn_shared_prefixes(list(df[fn].astype(str)), list(df[label].astype(str)), stacklevel=4)
        return RandomSplitter(valid_pct, seed=seed)
    k, n_groups = max(2, round(1 / valid_pct)), len(set(groups))
    if n_groups < k:
        raise ValueError(f"group_regex finds {n_groups} group(s), too few for valid_pct={valid_pct} of whole groups "
                         f"(one of {k} folds of groups): pass a larger valid_pct, or a regex that finds more groups")  # fmt: skip
    folds = draw_folds(df[label].astype(str).to_numpy(), k, seed=seed, groups=groups)
    return IndexSplitter(np.flatnonzero(folds == 1).tolist())


def _check_groups_apart(names, groups: list[str], train_idx, valid_idx, regex: str) -> None:
    "ValueError naming a group of `regex` that has clips on both sides of the split, with a file of each side."
    train = {}
    for i in train_idx:
        train.setdefault(groups[i], names.iloc[i])
    both = {groups[i]: names.iloc[i] for i in valid_idx if groups[i] in train}
    if both:
        group, valid_name = next(iter(both.items()))
        raise ValueError(f"group_regex '{regex}' puts group {group!r} in training ({train[group]}) and validation "
                         f"({valid_name}), {len(both)} group(s) in all: that split trains on the recordings it validates on; "
                         "split by whole groups (a fold column of groups, or a random split with group_regex)")  # fmt: skip


def _regex_labeller(pat: str) -> Callable[[Path], str]:
    "fastai's `RegexLabeller(pat)`, with a ValueError naming the file (or the pattern) where it would assert."
    if re.compile(pat).groups == 0:
        raise ValueError(f"the pattern {pat!r} has no group: put the label's part in parentheses")
    labeller = RegexLabeller(pat)

    def label(fname: str | Path) -> str:
        fname = Path(fname)
        if re.search(pat, fname.as_posix()) is None:
            raise ValueError(
                f"the pattern {pat!r} does not match {fname.as_posix()!r}; it must match every file (its first group is the label)"
            )
        return labeller(fname)

    return label


def _checked_files(files: list[Path], validate: bool | str, sample_rate: int | None, max_duration: float | None) -> int:
    "Check the files (`validate`) and their length (`max_duration`); the sample rate, the files' own for None."
    facts = check_audio_files(files, full=validate == "full") if validate else None
    if sample_rate is None:
        if facts is None:
            raise ValueError("sample_rate=None reads the files' rate from their headers: it needs validate=True")
        rates = Counter(f["samplerate"] for f in facts.values())
        if len(rates) != 1:
            listed = ", ".join(f"{r} Hz ({n} files)" for r, n in sorted(rates.items()))
            raise ValueError(f"sample_rate=None keeps the files' own rate, but they have several: {listed}; pass sample_rate=...")
        sample_rate = next(iter(rates))
    if facts is None or max_duration is None:
        return sample_rate
    long = []
    for path, f in facts.items():
        seconds = f["frames"] / f["samplerate"]
        if seconds > max_duration:
            size = math.ceil(f["frames"] * sample_rate / f["samplerate"]) * 4  # float32 mono, the most it takes
            long.append(f"{path}: {seconds / 60:.1f} min, up to {size / 1e6:,.0f} MB decoded at {sample_rate} Hz")
    if long:
        shown = "\n  ".join(long[:20]) + (f"\n  ... and {len(long) - 20} more" if len(long) > 20 else "")
        raise ValueError(
            f"{len(long)} clip(s) are longer than max_duration={max_duration:g} s; every clip is decoded whole into memory "
            f"and the audio cache. Cut them into shorter files, leave them out, or pass max_duration=None (or a larger "
            f"number of seconds):\n  {shown}"
        )
    return sample_rate


def _relative_names(path: Path, fnames: Iterable) -> list[str]:
    "`fnames` inside `path` (absolute, or prefixed by `path` as from `get_audio_files`) made relative; others as given."
    root, parts = os.path.abspath(path), Path(path).parts
    res = []
    for f in fnames:
        p = Path(f)
        if p.is_absolute():
            if os.path.commonpath([root, os.path.abspath(p)]) == root:
                p = Path(os.path.relpath(p, root))
        elif parts and p.parts[: len(parts)] == parts:
            p = Path(*p.parts[len(parts) :])
        res.append(p.as_posix())
    return res


def _open_cache(files: list[Path], sample_rate: int, cache, dtype: str | None = None, progress: bool = True) -> AudioCache | None:
    "The `AudioCache` of `files` (their common folder, only these files), or None when off."
    if cache is False or cache is None:
        return None
    folder = Path(os.path.commonpath([os.path.abspath(f.parent) for f in files]))
    return AudioCache.for_settings(folder, sample_rate, cache_dir=None if cache is True else cache, files=files,
                                   dtype=dtype or "auto", progress=progress)  # fmt: skip
