"""Settings presets by name: the inputs of a run (`AudioSettings`, what the loaders take) and how the
comparison trains it (`Training`). Imports neither torch nor fastai, so the command line lists them quickly.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = [
    "AudioSettings",
    "ESC50Settings",
    "PRESETS",
    "Training",
    "TRAINING",
    "get_training",
    "get_preset",
    "DEFAULT_SAMPLE_RATE",
    "AUGMENTS",
    "PRECISIONS",
    "AUDIO_DTYPES",
    "get_settings",
]

#: The rate (Hz) clips of several rates are resampled to when a preset keeps the files' rate, and
#: the one `AudioToSpec(sample_rate=None)` assumes for a batch that carries none.
DEFAULT_SAMPLE_RATE = 16000

#: The values of `Training.augment` (see `Training`).
AUGMENTS = (False, True, "spec", "waveform", "all")

#: The values of `AudioSettings.precision`: float32 throughout, bf16 autocast, or bf16 where the
#: device computes it natively (`fastspecnorm.precision`).
PRECISIONS = ("fp32", "bf16", "auto")

#: The values of `AudioSettings.audio_dtype`: `fastspecnorm.audio.io.AUDIO_DTYPES`, spelled here to
#: check settings without importing torch (a test keeps the two equal).
AUDIO_DTYPES = ("auto", "int16", "float16", "float32")

MAX_SAMPLE_RATE = 384_000  # Hz: the highest rate a file may claim (`fastspecnorm.audio.io`)
MAX_EPOCHS = 100_000  # epochs per run: more is a typo, not an experiment (it would train until killed)
MAX_DURATION = 600.0  # seconds: the longest clip the loaders take by default (`max_duration`)


def _whole(low: int, high: float = math.inf):
    "A rule: an int (not a bool) in [low, high]."
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _number(low: float, high: float = math.inf):
    "A rule: a finite int or float (not a bool) in (low, high]."
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and low < v <= high


def _optional(rule):
    "A rule that also takes None."
    return lambda v: v is None or rule(v)


def _check(settings: AudioSettings | Training, rules: list) -> None:
    "Raise one ValueError naming the first setting out of its range and what it takes."
    for name, ok, expected in rules:
        value = getattr(settings, name)
        if not ok(value):
            raise ValueError(f"setting {name}={value!r} is out of range: expected {expected}")


_TRAINING_RULES = [
    ("epochs", _whole(1, MAX_EPOCHS), f"a whole number from 1 to {MAX_EPOCHS}"),
    ("lr", _optional(_number(0)), "None (fastai's default) or a finite number > 0"),
    ("augment", lambda v: isinstance(v, bool | str) and v in AUGMENTS, f"one of {list(AUGMENTS)}"),
]

_AUDIO_RULES = [
    ("sample_rate", _optional(_whole(1, MAX_SAMPLE_RATE)), f"None or whole Hz from 1 to {MAX_SAMPLE_RATE}"),
    ("duration", _optional(_number(0, MAX_DURATION)), f"None or seconds in (0, {MAX_DURATION:g}]"),
    ("n_fft", _optional(_whole(2, 65536)), "None or a whole number of samples from 2 to 65536"),
    ("hop_length", _optional(_whole(1)), "None or a whole number of samples >= 1"),
    ("n_mels", _optional(_whole(1)), "None (a linear frequency axis) or a whole number >= 1"),
    ("f_max", _optional(_number(0)), "None (Nyquist) or Hz > 0"),
    ("to_db", lambda v: isinstance(v, bool), "true or false"),
    ("waveform_norm", lambda v: isinstance(v, bool), "true or false"),
    ("bs", _whole(1), "a whole number >= 1"),
    ("num_workers", _optional(_whole(0)), "None or a whole number >= 0"),
    ("audio_dtype", lambda v: v in AUDIO_DTYPES, f"one of {list(AUDIO_DTYPES)}"),
    ("precision", lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"),
]


@dataclass(frozen=True)
class AudioSettings:
    """Everything that defines the inputs of a run: the clips, their spectrogram and their batches
    (`get_settings` takes one of `PRESETS` by name).

    Args:
        sample_rate: Hz every clip is resampled to; None keeps the files' own rate when they share
            one (see `resolved`).
        duration: seconds every clip is cropped (random on training, fixed on validation) or
            zero-padded to; None keeps each clip's own length (batches padded, padding masked).
        n_fft: STFT window in samples; None: the power of two nearest 64 ms at the sample rate.
        hop_length: STFT hop in samples; None: `n_fft // 4`.
        n_mels: mel bins; None gives a linear frequency axis of `n_fft // 2 + 1` bins.
        f_max: highest mel frequency in Hz (None: Nyquist).
        to_db: spectrogram in dB (power, floored at -100 dB).
        waveform_norm: standardize each clip's waveform before the spectrogram.
        bs: batch size.
        num_workers: DataLoader processes (None: fastai's default, but 0 for cached audio on a CPU).
        cache: decoded-audio cache (`AudioCache`): True for the default folder, a path, or False.
        audio_dtype: precision decoded audio is kept at, one of `AUDIO_DTYPES` (see `LoadAudio`).
        precision: "fp32", "bf16" or "auto" (see `audio_learner`).

    Raises:
        ValueError: a setting out of its range (e.g. `duration=-1`, `n_mels=0`), naming it.

    Examples:
        >>> AudioSettings(sample_rate=None, n_fft=None, hop_length=None).resolved(44100).n_fft
        2048
    """

    sample_rate: int | None = 16000
    duration: float | None = 5.0
    n_fft: int | None = 400
    hop_length: int | None = 200
    n_mels: int | None = None
    f_max: float | None = None
    to_db: bool = True
    waveform_norm: bool = True
    bs: int = 64
    num_workers: int | None = None
    cache: Any = field(default=True)
    audio_dtype: str = "int16"
    precision: str = "fp32"

    def __post_init__(self):
        _check(self, _AUDIO_RULES)
        if self.n_mels is not None and self.n_fft is not None and self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(
                f"setting n_mels={self.n_mels} is more than the {self.n_fft // 2 + 1} frequency bins of "
                f"n_fft={self.n_fft}: give fewer mel bins or a larger n_fft"
            )
        if self.f_max is not None and self.sample_rate is not None and self.f_max > self.sample_rate / 2:
            raise ValueError(
                f"setting f_max={self.f_max!r} Hz is above the Nyquist frequency {self.sample_rate / 2:g} Hz "
                f"of sample_rate={self.sample_rate}"
            )

    def resolved(self, sample_rate: int | None = None) -> AudioSettings:
        """These settings with `sample_rate`, `n_fft` and `hop_length` filled where they are open (None).

        Args:
            sample_rate: the files' rate in Hz, used where `self.sample_rate` is None; None (or
                both None): `DEFAULT_SAMPLE_RATE`.

        Returns:
            A new `AudioSettings` with `sample_rate`, `n_fft` and `hop_length` set.

        Examples:
            >>> s = PRESETS["own"].resolved(8000)
            >>> s.sample_rate, s.n_fft, s.hop_length
            (8000, 512, 128)
        """
        rate = self.sample_rate or sample_rate or DEFAULT_SAMPLE_RATE
        n_fft = self.n_fft or 2 ** round(math.log2(0.064 * rate))
        return replace(self, sample_rate=rate, n_fft=n_fft, hop_length=self.hop_length or n_fft // 4)

    def spectrogram(self):
        "The `AudioToSpec` of these (resolved) settings."
        from .audio.spectrogram import AudioToSpec  # here: keeps the command line free of torch

        s = self.resolved()
        return AudioToSpec(sample_rate=s.sample_rate, **s.spec_kwargs())

    def spec_kwargs(self) -> dict[str, Any]:
        "The `AudioToSpec` arguments of these settings, except the sample rate (the loaders give it)."
        return {name: getattr(self, name) for name in ("n_fft", "hop_length", "n_mels", "f_max", "to_db")}

    def as_dict(self) -> dict[str, Any]:
        "The settings as a JSON-ready dict, field by field (a `cache` path as a string)."
        return {**asdict(self), "cache": str(self.cache) if isinstance(self.cache, os.PathLike) else self.cache}


#: The old name, kept for code written against it.
ESC50Settings = AudioSettings


@dataclass(frozen=True)
class Training:
    """How the comparison trains each run (the loaders never read it); `get_training` takes one of `TRAINING` by name.

    Args:
        epochs: epochs of `fit_one_cycle`.
        lr: one-cycle maximum learning rate (None: fastai's default).
        augment: the train-only augmentations the comparison adds to every norm: False (none),
            "spec" or True (SpecAugment and fastai's `MixUp`), "waveform" (`waveform_augmentations`)
            or "all" (both).

    Raises:
        ValueError: a value out of its range (`epochs=0`, `lr=inf`), naming it and what it takes.
    """

    epochs: int = 20
    lr: float | None = None
    augment: bool | str = False

    def __post_init__(self):
        # One value for "spec" and its old spelling True, so records with `augment=True` keep their id.
        if self.augment == "spec":
            object.__setattr__(self, "augment", True)
        _check(self, _TRAINING_RULES)


#: The named settings ("strong": blog's, trained with augmentations).
PRESETS: dict[str, AudioSettings] = {
    # The reference experiment: 16 kHz, linear power spectrogram in dB, [1, 201, 401], bs 64.
    "blog": AudioSettings(),
    # 64 mel bins, [1, 64, 201]: much cheaper per step; bs 16 for more optimizer steps (docs/performance.md).
    "quick": AudioSettings(n_fft=1024, hop_length=400, n_mels=64, bs=16),
    "strong": AudioSettings(),
    # Real speech: 8 kHz, clips at their own length, 40 mel bins from 32 ms windows every 10 ms.
    "fsdd": AudioSettings(sample_rate=8000, duration=None, n_fft=256, hop_length=80, n_mels=40, bs=32, audio_dtype="auto"),
    # The files' own rate (see `resolved`), clips at their own length, 64 mel bins from ~64 ms windows.
    "own": AudioSettings(sample_rate=None, duration=None, n_fft=None, hop_length=None, n_mels=64, bs=32, audio_dtype="auto"),
}

#: How each preset trains: the blog's 20 epochs, fewer for the CPU presets, augmentations for "strong".
TRAINING: dict[str, Training] = {
    "blog": Training(),
    "quick": Training(epochs=8),
    "strong": Training(augment=True),
    "fsdd": Training(epochs=6),
    "own": Training(epochs=8),
}


def _pick(table: dict, preset: str, overrides: dict):
    if preset not in table:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(table)}")
    kind = type(table[preset])
    names = {f.name for f in fields(kind)}
    if unknown := sorted(set(overrides) - names):
        other = Training if kind is AudioSettings else AudioSettings
        theirs = [name for name in unknown if name in {f.name for f in fields(other)}]
        moved = f" ({', '.join(theirs)}: fields of {other.__name__}; get_preset takes both)" if theirs else ""
        raise TypeError(f"unknown {kind.__name__} field(s) {unknown}; expected some of {sorted(names)}{moved}")
    return replace(table[preset], **overrides)


def get_settings(preset: str = "blog", **overrides) -> AudioSettings:
    """The input settings of `preset` with `overrides` applied by name.

    Args:
        preset: a name of `PRESETS`: "blog", "quick", "strong", "fsdd" or "own".
        **overrides: fields of `AudioSettings` to change, e.g. `bs=32, n_mels=40`.

    Returns:
        A new `AudioSettings` (the preset itself is unchanged).

    Raises:
        ValueError: an unknown preset, or a setting out of its range (naming it).
        TypeError: an unknown setting name (`epochs`, `lr` and `augment` are `get_training`'s).

    Examples:
        >>> get_settings("quick", bs=8).bs
        8
    """
    return _pick(PRESETS, preset, overrides)


def get_training(preset: str = "blog", **overrides) -> Training:
    """How `preset` trains, with `overrides` applied by name.

    Args:
        preset: a name of `TRAINING` (the same names as `PRESETS`).
        **overrides: fields of `Training` to change, e.g. `epochs=2`.

    Returns:
        A new `Training`.

    Raises:
        ValueError: an unknown preset, or a value out of its range (naming it).
        TypeError: an unknown field name.

    Examples:
        >>> get_training("quick", epochs=2)
        Training(epochs=2, lr=None, augment=False)
    """
    return _pick(TRAINING, preset, overrides)


def get_preset(preset: str = "blog", **overrides) -> tuple[AudioSettings, Training]:
    """`preset`'s `AudioSettings` and `Training`, each override given to the one that has the field.

    Args:
        preset: a name of `PRESETS`.
        **overrides: fields of either, e.g. `bs=8, epochs=2` (the command's `--set`, `--bs`, `--lr`, ...).

    Returns:
        `(settings, training)`.

    Raises:
        ValueError: an unknown preset, or a value out of its range (naming it).
        TypeError: a name that is a field of neither, naming the fields of both.

    Examples:
        >>> settings, training = get_preset("quick", bs=8, epochs=2)
        >>> settings.bs, training.epochs
        (8, 2)
    """
    names = {f.name for f in fields(Training)}
    known = names | {f.name for f in fields(AudioSettings)}
    if unknown := sorted(set(overrides) - known):
        raise TypeError(f"unknown setting(s) {unknown}; expected some of {sorted(known)}")
    training = get_training(preset, **{k: v for k, v in overrides.items() if k in names})
    return get_settings(preset, **{k: v for k, v in overrides.items() if k not in names}), training
