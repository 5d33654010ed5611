"""Settings presets by name: the inputs of a run (`AudioSettings`, what the loaders take) and how the
comparison trains it (`Training`: epochs, learning rate, augmentations).

Imports neither torch nor fastai, so the command line can list presets quickly.
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

#: The rate (Hz) clips are resampled to when a preset keeps the files' rate but they have several.
DEFAULT_SAMPLE_RATE = 16000

#: The values of `Training.augment`: none, SpecAugment + mixup (True or "spec"), the waveform
#: augmentations, or both.
AUGMENTS = (False, True, "spec", "waveform", "all")

#: The values of `AudioSettings.precision`: float32 throughout, bf16 autocast, or bf16 where the
#: device computes it natively (`fastspecnorm.precision`; here, so the command line lists them without torch).
PRECISIONS = ("fp32", "bf16", "auto")

#: The values of `AudioSettings.audio_dtype`: `fastspecnorm.audio.io.AUDIO_DTYPES`, spelled here so
#: that settings are checked without importing torch (and without an import circle); a test keeps
#: the two equal.
AUDIO_DTYPES = ("auto", "int16", "float16", "float32")

MAX_SAMPLE_RATE = 384_000  # Hz: the highest rate a file may claim (`fastspecnorm.audio.io`)
MAX_EPOCHS = 100_000  # epochs per run: more is a typo, not an experiment (it would train until killed)
MAX_DURATION = 600.0  # seconds: the longest clip the loaders take by default (`max_duration`)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_TRAINING_RULES = [
    ("epochs", lambda v: _is_int(v) and 1 <= v <= MAX_EPOCHS, f"a whole number from 1 to {MAX_EPOCHS}"),
    ("lr", lambda v: v is None or (_is_number(v) and v > 0), "None (fastai's default) or a finite number > 0"),
    ("augment", lambda v: isinstance(v, bool | str) and v in AUGMENTS, f"one of {list(AUGMENTS)}"),
]


_AUDIO_RULES = [
    (
        "sample_rate",
        lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_SAMPLE_RATE),
        f"None or whole Hz from 1 to {MAX_SAMPLE_RATE}",
    ),
    (
        "duration",
        lambda v: v is None or (_is_number(v) and 0 < v <= MAX_DURATION),
        f"None or seconds in (0, {MAX_DURATION:g}]",
    ),
    ("n_fft", lambda v: v is None or (_is_int(v) and 2 <= v <= 65536), "None or a whole number of samples from 2 to 65536"),
    ("hop_length", lambda v: v is None or (_is_int(v) and v >= 1), "None or a whole number of samples >= 1"),
    ("n_mels", lambda v: v is None or (_is_int(v) and v >= 1), "None (a linear frequency axis) or a whole number >= 1"),
    ("f_max", lambda v: v is None or (_is_number(v) and v > 0), "None (Nyquist) or Hz > 0"),
    ("to_db", lambda v: isinstance(v, bool), "true or false"),
    ("waveform_norm", lambda v: isinstance(v, bool), "true or false"),
    ("bs", lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    ("num_workers", lambda v: v is None or (_is_int(v) and v >= 0), "None or a whole number >= 0"),
    ("audio_dtype", lambda v: v in AUDIO_DTYPES, f"one of {list(AUDIO_DTYPES)}"),
    ("precision", lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"),
]


def _check(settings: AudioSettings | Training, rules: list) -> None:
    "Raise one ValueError naming the first setting out of its range and what it takes."
    for name, ok, expected in rules:
        value = getattr(settings, name)
        if not ok(value):
            raise ValueError(f"setting {name}={value!r} is out of range: expected {expected}")
    if not isinstance(settings, AudioSettings):
        return
    if settings.n_mels is not None and settings.n_fft is not None and settings.n_mels > settings.n_fft // 2 + 1:
        raise ValueError(f"setting n_mels={settings.n_mels} is more than the {settings.n_fft // 2 + 1} frequency bins of "
                         f"n_fft={settings.n_fft}: give fewer mel bins or a larger n_fft")  # fmt: skip
    if settings.f_max is not None and settings.sample_rate is not None and settings.f_max > settings.sample_rate / 2:
        raise ValueError(f"setting f_max={settings.f_max!r} Hz is above the Nyquist frequency {settings.sample_rate / 2:g} Hz "
                         f"of sample_rate={settings.sample_rate}")  # fmt: skip


@dataclass(frozen=True)
class AudioSettings:
    """Everything that defines the inputs of a run: the clips, their spectrogram and their batches.

    `PRESETS` names the settings the package uses; `get_settings(preset, **overrides)` takes one by
    name and changes some fields. A preset may leave the sample rate and the STFT sizes open (None):
    `resolved(sample_rate)` fills them from the files' rate, which is how the "own" preset follows
    the data it is given. Frozen: change a field with `dataclasses.replace` or `get_settings`.

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
        num_workers: DataLoader processes (None: fastai's default, except 0 for cached audio on a
            CPU, where workers only compete with the batch transforms for the cores).
        cache: decoded-audio cache (`AudioCache`): True for the default folder, a path, or False.
        audio_dtype: precision decoded audio is kept at: "int16", "float16", "float32" or "auto"
            (per file, the type that keeps its source); applied with and without the cache.
        precision: "fp32", "bf16" (autocast with channels_last, on CPU or CUDA) or "auto" (bf16
            where the device computes it natively); see `audio_learner`.

    Raises:
        ValueError: a setting out of its range (e.g. `duration=-1`, `n_mels=0`,
            `sample_rate=1e12`), naming it and what it takes.

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

    def resolved(self, sample_rate: int | None = None) -> AudioSettings:
        """These settings with every open field filled.

        `sample_rate` where the preset leaves it open, then `n_fft` (the power of two nearest
        64 ms) and `hop_length` (`n_fft // 4`) from the rate. Settings already set are kept.

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
        from .audio.spectrogram import (
            AudioToSpec,  # here, not above: keeps `fastspecnorm compare --help` free of torch (which reads PRESETS)
        )

        s = self.resolved()
        return AudioToSpec(n_fft=s.n_fft, hop_length=s.hop_length, n_mels=s.n_mels, to_db=s.to_db, sample_rate=s.sample_rate,
                           f_max=s.f_max)  # fmt: skip

    def spec_kwargs(self) -> dict[str, Any]:
        "The `AudioToSpec` arguments of these settings, except the sample rate (the loaders give it)."
        return {
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "f_max": self.f_max,
            "to_db": self.to_db,
        }

    def as_dict(self) -> dict[str, Any]:
        "The settings as a JSON-ready dict, field by field (a `cache` path as a string)."
        d = asdict(self)
        d["cache"] = str(d["cache"]) if isinstance(d["cache"], os.PathLike) else d["cache"]
        return d


#: The old name, kept for code written against it.
ESC50Settings = AudioSettings


@dataclass(frozen=True)
class Training:
    """How the comparison trains each run: the experiment's knobs, which the loaders never read.

    `TRAINING` names one per preset; `get_training(preset, **overrides)` takes one by name.

    Args:
        epochs: epochs of `fit_one_cycle`.
        lr: one-cycle maximum learning rate (None: fastai's default).
        augment: the train-only augmentations the comparison adds to every norm: False (none),
            "spec" (SpecAugment masks after the normalization, then fastai's `MixUp`; True means
            the same), "waveform" (gain, noise at an SNR and a time shift before it,
            `waveform_augmentations`) or "all" (both). One of `AUGMENTS`.

    Raises:
        ValueError: a value out of its range (`epochs=0`, `lr=inf`), naming it and what it takes.
    """

    epochs: int = 20
    lr: float | None = None
    augment: bool | str = False

    def __post_init__(self):
        # "spec" is the first augmentation's name and True its old spelling: one value, so that
        # records written with `augment=True` keep their experiment id.
        if self.augment == "spec":
            object.__setattr__(self, "augment", True)
        _check(self, _TRAINING_RULES)


#: The named settings: "blog" (the reference experiment), "quick" (a CPU preset), "strong" (blog
#: plus train-only augmentations), "fsdd" (real speech) and "own" (your own audio); see the comments.
PRESETS: dict[str, AudioSettings] = {
    # The reference experiment: 16 kHz, linear power spectrogram in dB, [1, 201, 401], bs 64.
    "blog": AudioSettings(),
    # A CPU preset: 64 mel bins, n_fft 1024, hop 400 -> [1, 64, 201], much cheaper per step than
    # the blog preset's [1, 201, 401] (docs/performance.md).
    # Batch size 16: from scratch, the number of optimizer steps decides what is learned on a few
    # hundred clips (see the docs' performance page).
    "quick": AudioSettings(n_fft=1024, hop_length=400, n_mels=64, bs=16),
    # The blog preset's inputs; its training adds the train-only augmentations (`TRAINING`).
    "strong": AudioSettings(),
    # Real speech (FSDD): the files' own 8 kHz, each clip at its own length, 40 mel bins from 32 ms
    # windows every 10 ms -> (1, 40, 15-230 frames), bs 32.
    "fsdd": AudioSettings(sample_rate=8000, duration=None, n_fft=256, hop_length=80, n_mels=40, bs=32, audio_dtype="auto"),
    # Your own audio: the files' own rate when they share one (else 16 kHz), each clip at its own
    # length, 64 mel bins from windows of about 64 ms (a power of two) every quarter window, bs 32.
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
    unknown = sorted(set(overrides) - names)
    if unknown:
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
    unknown = sorted(set(overrides) - names - {f.name for f in fields(AudioSettings)})
    if unknown:
        known = sorted(names | {f.name for f in fields(AudioSettings)})
        raise TypeError(f"unknown setting(s) {unknown}; expected some of {known}")
    training = get_training(preset, **{k: v for k, v in overrides.items() if k in names})
    return get_settings(preset, **{k: v for k, v in overrides.items() if k not in names}), training
