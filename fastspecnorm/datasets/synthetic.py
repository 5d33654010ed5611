"""A small synthetic dataset in the ESC-50 layout (`make_synthetic_esc50`), for tests, notebooks and
the quickstart."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len

from .._io import atomic_write, atomic_write_text, file_lock, read_json

__all__ = ["ESC50_CATEGORIES", "ESC10_CATEGORIES", "ESC50_COLUMNS", "make_synthetic_esc50"]

#: The 50 ESC-50 category names, indexed by ``target`` (0..49) as in the real ``esc50.csv``.
ESC50_CATEGORIES = tuple(
    "dog rooster pig cow frog cat hen insects sheep crow rain sea_waves crackling_fire crickets "
    "chirping_birds water_drops wind pouring_water toilet_flush thunderstorm crying_baby sneezing "
    "clapping breathing coughing footsteps laughing brushing_teeth snoring drinking_sipping "
    "door_wood_knock mouse_click keyboard_typing door_wood_creaks can_opening washing_machine "
    "vacuum_cleaner clock_alarm clock_tick glass_breaking helicopter chainsaw siren car_horn engine train "
    "church_bells airplane fireworks hand_saw "
    .split()
)  # fmt: skip

#: The ten categories flagged ``esc10=True`` in the real ESC-50 (the ESC-10 subset).
ESC10_CATEGORIES = tuple("dog rooster rain sea_waves crackling_fire crying_baby sneezing clock_tick helicopter chainsaw".split())

#: Columns of ``meta/esc50.csv``, in the order of the real file.
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")

_FORMAT_VERSION = 1  # bump when the files for the same arguments change: folders of older versions are regenerated
_MARKER_NAME = "synthetic.json"

_LOWEST_BASE_HZ = 150.0
_HIGHEST_BASE_HZ = 6000.0
_PEAK_DB_RANGE = (-35.0, 0.0)  # peak level of a clip, dBFS
_SNR_DB_RANGE = (0.0, 25.0)  # class sound vs background noise, dB
_FREQUENCY_JITTER = 0.05  # standard deviation of the per-clip log base frequency
_OTHER_PATTERN_PROBABILITY = 0.25  # share of clips with a temporal pattern not their class's
_PADDED_SOUND_FRACTION_RANGE = (0.3, 0.95)  # part of a padded clip that holds sound
_MAX_TAKES = 3  # fragments per source recording: A, B, C
_PATTERNS = ("steady", "pulsed", "chirp")


def _noise_from_spectrum(
    rng: np.random.Generator, n_samples: int, sample_rate: int, amplitude: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    "Noise of amplitude spectrum ``amplitude(freqs_hz)`` and random phases, float32 (n_samples,), unit RMS."
    # At a fast FFT length (2**a 3**b 5**c), cut to n_samples: padded clips have arbitrary, often prime, lengths.
    fft_length = next_fast_len(max(n_samples, 1), real=True)
    freqs_hz = np.fft.rfftfreq(fft_length, d=1.0 / sample_rate)
    magnitude = amplitude(freqs_hz).astype(np.float32)
    magnitude[0] = 0.0  # no DC offset
    kept = np.flatnonzero(magnitude)
    angle = np.float32(2 * np.pi) * rng.random(kept.size, dtype=np.float32)
    spectrum = np.zeros(freqs_hz.size, dtype=np.complex64)
    spectrum.real[kept] = magnitude[kept] * np.cos(angle)
    spectrum.imag[kept] = magnitude[kept] * np.sin(angle)
    return _unit_rms(np.fft.irfft(spectrum, n=fft_length)[:n_samples])


def _unit_rms(x: np.ndarray) -> np.ndarray:
    "``x`` scaled to a root mean square of 1 (NumPy's own float64 sum, not BLAS: the same on any number of threads)."
    return x / max(math.sqrt(float(np.sum(np.square(x), dtype=np.float64)) / x.size), 1e-12)


def _cycle_position(x: np.ndarray) -> np.ndarray:
    "Fractional part of ``x`` (position within a cycle, in [0, 1)); faster than ``x % 1``."
    return x - np.floor(x)


def _synthesize_clip(
    rng: np.random.Generator, target: int, n_classes: int, n_samples: int, sound_samples: int, sample_rate: int
) -> np.ndarray:
    """One clip of class ``target`` as int16 PCM, shape (n_samples,): the class sound plus background noise in
    the first ``sound_samples`` samples, exact zeros after (as in the padded ESC-50 clips). The phase is
    accumulated in float64; the waveform itself is float32, plenty for 16-bit output and twice as fast."""
    clip = np.zeros(n_samples, dtype=np.int16)
    if sound_samples == 0:
        return clip
    time_s = np.arange(sound_samples, dtype=np.float64) * (1.0 / sample_rate)
    # Base frequencies span the classes; the other traits cycle with other periods, to differ between neighbours.
    top_hz = min(_HIGHEST_BASE_HZ, 0.35 * sample_rate)
    position = target / (n_classes - 1) if n_classes > 1 else 0.5
    base_hz = _LOWEST_BASE_HZ * (top_hz / _LOWEST_BASE_HZ) ** position * math.exp(rng.normal(0.0, _FREQUENCY_JITTER))
    # Some clips of a class use another class's temporal pattern, so patterns alone do not separate the classes.
    pattern = _PATTERNS[target % 3]
    if rng.uniform() < _OTHER_PATTERN_PROBABILITY:
        pattern = str(rng.choice([other for other in _PATTERNS if other != pattern]))

    start_phase = rng.uniform(0, 2 * np.pi)
    if pattern == "chirp":
        period_s = (0.3 + 0.15 * (target % 5)) * rng.uniform(0.8, 1.2)
        sweep_position = _cycle_position(time_s * (1.0 / period_s) + rng.uniform())
        octaves = 0.6 if (target // 3) % 2 == 0 else -0.6  # sweep extent, upwards or downwards
        # The sweep is centred on the base frequency, so the average pitch stays near it.
        inst_hz = base_hz * np.exp2(octaves * (sweep_position - 0.5))
        highest_hz = base_hz * 2.0 ** (abs(octaves) / 2)
        phase = (2 * np.pi / sample_rate) * np.cumsum(inst_hz) + start_phase
        envelope = np.sin(np.pi * sweep_position.astype(np.float32))
        envelope = 0.3 + 0.7 * envelope * envelope
    else:
        highest_hz = base_hz
        phase = (2 * np.pi * base_hz) * time_s + start_phase
        if pattern == "pulsed":
            rate_hz = (1.5 + target % 7) * rng.uniform(0.8, 1.2)
            pulse_position = _cycle_position(time_s * rate_hz + rng.uniform()).astype(np.float32)
            # A 3%-of-period attack avoids clicks; each pulse then decays within its period.
            envelope = np.minimum(pulse_position * np.float32(1 / 0.03), np.float32(1.0))
            envelope *= np.exp(pulse_position * np.float32(-1 / 0.2))
        else:
            swell = (2 * np.pi * rng.uniform(0.1, 0.5)) * time_s + rng.uniform(0, 2 * np.pi)  # a 0.1-0.5 Hz swell
            envelope = 1.0 + 0.3 * np.sin(swell.astype(np.float32))
    # Wrapped to [0, 2 pi) in float64 first: float32 cannot hold a large phase precisely.
    cos_phase = np.cos((2 * np.pi * _cycle_position(phase / (2 * np.pi))).astype(np.float32))

    # cos(h * phase) by the Chebyshev recurrence cos(h x) = 2 cos x cos((h-1) x) - cos((h-2) x): one call
    # to np.cos instead of one per harmonic. Harmonics above 0.45 * sample_rate would alias: left out.
    rolloff = rng.uniform(0.5, 1.5)
    tonal = cos_phase.copy()
    previous, current = np.float32(1.0), cos_phase
    for harmonic in range(2, 2 + target % 4):  # 1 to 4 harmonics
        previous, current = current, 2 * cos_phase * current - previous
        if harmonic * highest_hz < 0.45 * sample_rate:
            tonal += np.float32(harmonic**-rolloff) * current
    tonal = _unit_rms(tonal)
    # Narrow-band noise: low-pass noise shifted up to the instantaneous frequency; the cutoff keeps at
    # least one frequency bin, so very short clips still get noise.
    cutoff_hz = max(0.08 * base_hz, sample_rate / next_fast_len(sound_samples, real=True))
    lowpass = _noise_from_spectrum(rng, sound_samples, sample_rate, lambda hz: (hz <= cutoff_hz).astype(np.float32))
    narrowband = _unit_rms(cos_phase * lowpass)
    noise_share = ((target // 4) % 3) / 2  # 0 = harmonics only, 1 = narrow-band noise only
    sound = np.float32(np.sqrt(1.0 - noise_share)) * tonal
    sound += np.float32(np.sqrt(noise_share)) * narrowband
    sound = _unit_rms(sound * envelope)

    snr_db = rng.uniform(*_SNR_DB_RANGE)
    pink = _noise_from_spectrum(rng, sound_samples, sample_rate, lambda hz: 1.0 / np.sqrt(np.maximum(hz, 20.0)))  # 1/f power
    sound += np.float32(10.0 ** (-snr_db / 20.0)) * pink

    # Raised-cosine fades (5 ms in, 10 ms out) so the sound does not start or stop with a click.
    fade_in = min(sound_samples, int(0.005 * sample_rate))
    fade_out = min(sound_samples, int(0.010 * sample_rate))
    sound[:fade_in] *= np.sin(0.5 * np.pi * np.arange(fade_in) / fade_in) ** 2
    fade_out_position = np.arange(1, fade_out + 1) / fade_out
    sound[sound_samples - fade_out :] *= np.cos(0.5 * np.pi * fade_out_position) ** 2

    peak_db = rng.uniform(*_PEAK_DB_RANGE)
    peak = max(float(np.max(np.abs(sound))), 1e-12)
    sound *= np.float32(32767.0 * 10.0 ** (peak_db / 20.0) / peak)
    clip[:sound_samples] = np.clip(np.round(sound), -32768, 32767)
    return clip


def _plan_clips(
    n_samples: int, *, n_classes: int, clips_per_class: int, n_folds: int, n_silent: int, padded_fraction: float, seed: int, **_
) -> list[dict]:
    "Metadata rows, sorted by filename, each with its clip's ``sound_samples`` and ``clip_index`` within its class."
    rng = np.random.default_rng([seed, 0])

    # Silent clip i is clip (i // n_classes + i) % clips_per_class of class i % n_classes: a diagonal, so
    # consecutive silent clips fall in different classes and folds.
    silent = {(i % n_classes, (i // n_classes + i) % clips_per_class) for i in range(n_silent)}
    audible = [(target, j) for target in range(n_classes) for j in range(clips_per_class) if (target, j) not in silent]
    n_padded = int(round(padded_fraction * len(audible)))
    padded_order = rng.permutation(len(audible))[:n_padded]
    # Stratified sound lengths: the padded clips cover the whole range evenly.
    low, high = _PADDED_SOUND_FRACTION_RANGE
    strata = (np.arange(n_padded) + rng.uniform(size=n_padded)) / max(n_padded, 1)
    sound_samples = {clip: n_samples for clip in audible}
    for order, stratum in zip(padded_order, strata, strict=True):
        sound_samples[audible[order]] = max(1, int((low + (high - low) * stratum) * n_samples))
    sound_samples.update({clip: 0 for clip in silent})

    # Source recordings: consecutive clips of one class in one fold, 1 to _MAX_TAKES takes each.
    sources = []  # (target, fold, [clip_index, ...])
    for target in range(n_classes):
        for fold in range(1, n_folds + 1):
            clip_indices = list(range(fold - 1, clips_per_class, n_folds))
            while clip_indices:
                n_takes = int(rng.integers(1, _MAX_TAKES + 1))
                sources.append((target, fold, clip_indices[:n_takes]))
                clip_indices = clip_indices[n_takes:]
    # Distinct five- or six-digit ids, like the Freesound ids in the real file.
    src_ids = rng.choice(np.arange(10_000, 300_000), size=len(sources), replace=False)

    rows = []
    for (target, fold, clip_indices), src_file in zip(sources, src_ids, strict=True):
        for take_number, clip_index in enumerate(clip_indices):
            take = chr(ord("A") + take_number)
            category = ESC50_CATEGORIES[target]
            rows.append(
                {
                    "filename": f"{fold}-{int(src_file)}-{take}-{target}.wav",
                    "fold": fold,
                    "target": target,
                    "category": category,
                    "esc10": category in ESC10_CATEGORIES,
                    "src_file": int(src_file),
                    "take": take,
                    "clip_index": clip_index,
                    "sound_samples": sound_samples[(target, clip_index)],
                }
            )
    return sorted(rows, key=lambda row: row["filename"])


def _check_number(name: str, value, low, high=None, integer: bool = True, open_low: bool = False):
    "``value`` as int (or float), or ValueError naming the argument and the allowed range."
    if integer:
        allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
    else:
        allowed = f"a number in {'(' if open_low else '['}{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real) or not (integer or math.isfinite(value)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}" + (f" ({type(value).__name__})" if integer else ""))
    if value < low or (open_low and value == low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value) if integer else float(value)


def _read_marker(root: pathlib.Path) -> dict | None:
    "The content of ``meta/synthetic.json``; None when it is missing or unreadable (the folder is then regenerated)."
    try:
        return read_json(root / "meta" / _MARKER_NAME, "synthetic dataset marker", default=None)
    except (OSError, ValueError):
        return None


def _is_complete(root: pathlib.Path, arguments: dict) -> bool:
    "Whether ``root`` holds a finished generation with exactly these arguments."
    marker = _read_marker(root) or {}
    if not marker.get("complete") or marker.get("format_version") != _FORMAT_VERSION or marker.get("arguments") != arguments:
        return False
    try:
        with open(root / "meta" / "esc50.csv", newline="") as file:
            filenames = [row["filename"] for row in csv.DictReader(file)]
    except (OSError, KeyError, csv.Error):
        return False
    expected = arguments["n_classes"] * arguments["clips_per_class"]
    return len(filenames) == expected and all((root / "audio" / f).is_file() for f in filenames)


def _write_marker(root: pathlib.Path, arguments: dict, complete: bool) -> None:
    marker = {
        "generator": "fastspecnorm.synthetic.make_synthetic_esc50",
        "format_version": _FORMAT_VERSION,
        "complete": complete,
        "arguments": arguments,
    }
    atomic_write_text(root / "meta" / _MARKER_NAME, json.dumps(marker, indent=2, sort_keys=True) + "\n")


def make_synthetic_esc50(
    path,
    n_classes=10,
    clips_per_class=8,
    n_folds=5,
    sample_rate=44100,
    duration=5.0,
    seed=0,
    n_silent=1,
    overwrite=False,
    *,
    padded_fraction=0.4,
) -> pathlib.Path:
    """Write a synthetic dataset in the ESC-50 layout to ``path`` and return ``path``.

    A stand-in, with the same layout and audio format, for the real ESC-50 (2000 five-second clips,
    50 classes, 5 folds), which cannot be downloaded everywhere this package is tested:

        ROOT/meta/esc50.csv          filename,fold,target,category,esc10,src_file,take (sorted by filename)
        ROOT/meta/synthetic.json     the arguments that produced the folder (written last)
        ROOT/audio/1-104873-A-0.wav  {fold}-{src_file}-{take}-{target}.wav, one per row

    Every clip is ``sample_rate`` Hz, mono, 16-bit PCM, ``round(duration * sample_rate)`` samples.
    As in the real data, levels differ from clip to clip (peak -35 to 0 dBFS), some clips are padded
    with exact zeros, and the fragments of one source recording (``src_file``) lie in one fold. Each
    class has its own base frequency (150 Hz to 6 kHz), harmonics, share of noise and temporal pattern
    (steady, pulsed, chirps); per-clip jitter and background noise make neighbouring classes overlap.
    Accuracies on these data say nothing about ESC-50.

    Safe to call from several processes on one folder (a lock on ``.NAME.lock`` next to the folder
    ``NAME``); an interrupted generation is marked incomplete and redone.

    Args:
        path: folder to write (str or path-like); created if missing.
        n_classes: number of classes, 1..50; class ``target`` is named ``ESC50_CATEGORIES[target]``,
            and class 0 has the lowest base frequency (at most 0.35 * sample_rate).
        clips_per_class: clips per class, >= 1. Clip ``j`` of a class goes to fold ``j % n_folds + 1``,
            so per-fold counts of a class differ by at most one.
        n_folds: number of folds, >= 1, numbered 1..n_folds.
        sample_rate: sampling rate of the WAV files in Hz, >= 8000.
        duration: length of every clip in seconds, > 0 (at most 60).
        seed: non-negative integer; the same arguments give byte-identical files.
        n_silent: number of all-zero clips, 0..number of clips, in different classes and, as far as
            possible, different folds.
        overwrite: False returns a complete dataset made with the same arguments as it is, and refuses
            an ESC-50 dataset not made here (no ``synthetic.json``); True always regenerates (and removes
            the ``.wav`` files in ``path/audio`` that the new ``esc50.csv`` does not list).
        padded_fraction: share of the non-silent clips whose sound stops early (0..1), after 30%..95%
            of the clip, spread evenly.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        ValueError: an argument is out of range; the message names it and the allowed values.
        FileExistsError: ``path`` holds an ESC-50 dataset not written by this function and
            ``overwrite`` is False, or ``path`` is a file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = make_synthetic_esc50(Path(tmp) / "esc50-synthetic", n_classes=2, clips_per_class=2, n_folds=2,
        ...                                 sample_rate=8000, duration=0.5)
        ...     print(sorted(p.name for p in root.iterdir()), len(list((root / "audio").glob("*.wav"))))
        ['audio', 'meta'] 4
    """
    arguments = {
        "n_classes": _check_number("n_classes", n_classes, 1, len(ESC50_CATEGORIES)),
        "clips_per_class": _check_number("clips_per_class", clips_per_class, 1),
        "n_folds": _check_number("n_folds", n_folds, 1),
        "sample_rate": _check_number("sample_rate", sample_rate, 8000),
        "duration": _check_number("duration", duration, 0.0, 60.0, integer=False, open_low=True),
        "seed": _check_number("seed", seed, 0),
        "n_silent": _check_number("n_silent", n_silent, 0, n_classes * clips_per_class),
        "padded_fraction": _check_number("padded_fraction", padded_fraction, 0.0, 1.0, integer=False),
    }
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    n_samples = int(round(arguments["duration"] * arguments["sample_rate"]))
    if n_samples < 1:
        raise ValueError(f"duration must give at least one sample at sample_rate={sample_rate} Hz, got duration={duration} s")

    root = pathlib.Path(path)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"path must be a folder, but {root} is a file")
    if not overwrite and _is_complete(root, arguments):
        return root
    _refuse_foreign(root, overwrite)
    absolute = root.resolve()  # a name for the lock also when `path` is "." or ends in ".."
    absolute.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(absolute.parent / f".{absolute.name}.lock"):
        if not overwrite and _is_complete(root, arguments):  # another process finished it while we waited
            return root
        _refuse_foreign(root, overwrite)
        _generate(root, arguments, n_samples)
    return root


def _refuse_foreign(root: pathlib.Path, overwrite: bool) -> None:
    "FileExistsError when `root` holds an ESC-50 dataset this function did not write and `overwrite` is False."
    looks_like_esc50 = (root / "meta" / "esc50.csv").exists() or any((root / "audio").glob("*.wav"))
    if not overwrite and looks_like_esc50 and _read_marker(root) is None:
        raise FileExistsError(
            f"{root} holds an ESC-50 dataset that make_synthetic_esc50 did not write "
            f"(no meta/{_MARKER_NAME}); pass overwrite=True to replace it, or choose another path"
        )


def _generate(root: pathlib.Path, arguments: dict, n_samples: int) -> None:
    "Write the dataset of `make_synthetic_esc50` into `root` (the caller holds its lock)."
    audio_dir, sample_rate = root / "audio", arguments["sample_rate"]
    (root / "meta").mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(root, arguments, complete=False)
    rows = _plan_clips(n_samples, **arguments)
    listed = {row["filename"] for row in rows}
    for stale in audio_dir.glob("*.wav"):
        if stale.name not in listed:
            stale.unlink()

    for row in rows:
        # One generator per clip, keyed by class and clip number: a clip depends on no other clip.
        rng = np.random.default_rng([arguments["seed"], 1, row["target"], row["clip_index"]])
        clip = _synthesize_clip(rng, row["target"], arguments["n_classes"], n_samples, row["sound_samples"], sample_rate)
        atomic_write(
            audio_dir / row["filename"], lambda f, clip=clip: sf.write(f, clip, sample_rate, subtype="PCM_16", format="WAV")
        )
    lines = [",".join(ESC50_COLUMNS), *(",".join(str(row[column]) for column in ESC50_COLUMNS) for row in rows)]
    atomic_write_text(root / "meta" / "esc50.csv", "\n".join(lines) + "\n")
    _write_marker(root, arguments, complete=True)
