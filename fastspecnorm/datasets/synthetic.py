"""A small synthetic dataset in the ESC-50 layout (`make_synthetic_esc50`), for tests, notebooks and
the quickstart."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len

from .._io import atomic_write, atomic_write_text, file_lock, read_json

__all__ = [
    "ESC50_CATEGORIES",
    "ESC10_CATEGORIES",
    "ESC50_COLUMNS",
    "make_synthetic_esc50",
]

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

# Bump when the generated audio or metadata change for the same arguments, so that folders
# written by an older version are regenerated instead of reused.
_FORMAT_VERSION = 1
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


@dataclass(frozen=True)
class _ClassSignature:
    """What every clip of one class has in common (before per-clip jitter)."""

    base_hz: float  # fundamental frequency
    pattern: str  # one of _PATTERNS
    n_harmonics: int  # 1 = pure tone
    noise_share: float  # 0 = harmonics only, 1 = narrow-band noise only
    pulse_rate_hz: float  # pulses per second, for "pulsed"
    chirp_period_s: float  # length of one sweep, for "chirp"
    chirp_octaves: float  # sweep extent, positive = upwards, for "chirp"


def _class_signature(target: int, n_classes: int, sample_rate: int) -> _ClassSignature:
    """Fixed recipe of class ``target`` among ``n_classes`` (base frequencies span the classes)."""
    highest_hz = min(_HIGHEST_BASE_HZ, 0.35 * sample_rate)
    position = target / (n_classes - 1) if n_classes > 1 else 0.5
    base_hz = _LOWEST_BASE_HZ * (highest_hz / _LOWEST_BASE_HZ) ** position
    # The traits below cycle with different periods, so that classes next to each other in
    # frequency differ in temporal pattern and timbre as well.
    return _ClassSignature(
        base_hz=base_hz,
        pattern=_PATTERNS[target % 3],
        n_harmonics=1 + target % 4,
        noise_share=((target // 4) % 3) / 2,
        pulse_rate_hz=1.5 + target % 7,
        chirp_period_s=0.3 + 0.15 * (target % 5),
        chirp_octaves=0.6 if (target // 3) % 2 == 0 else -0.6,
    )


def _noise_from_spectrum(
    rng: np.random.Generator, n_samples: int, sample_rate: int, amplitude: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Random-phase noise whose amplitude spectrum is ``amplitude(freqs_hz)``.

    Returns float32 of shape (n_samples,), unit RMS. Every frequency bin gets its amplitude
    and a uniformly random phase, which sums to Gaussian-like noise with the chosen spectrum.
    The inverse FFT runs at a fast length and is cut to ``n_samples``, since padded clips have
    arbitrary (often prime) lengths.
    """
    fft_length = next_fast_len(max(n_samples, 1), real=True)  # 2**a 3**b 5**c: fast, where prime lengths are slow
    freqs_hz = np.fft.rfftfreq(fft_length, d=1.0 / sample_rate)
    magnitude = amplitude(freqs_hz).astype(np.float32)
    magnitude[0] = 0.0  # no DC offset
    kept = np.flatnonzero(magnitude)
    angle = np.float32(2 * np.pi) * rng.random(kept.size, dtype=np.float32)
    spectrum = np.zeros(freqs_hz.size, dtype=np.complex64)
    spectrum.real[kept] = magnitude[kept] * np.cos(angle)
    spectrum.imag[kept] = magnitude[kept] * np.sin(angle)
    noise = np.fft.irfft(spectrum, n=fft_length)[:n_samples]
    return noise / max(_rms(noise), 1e-12)


def _lowpass_noise(rng: np.random.Generator, n_samples: int, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Noise band-limited to (0, cutoff_hz], float32 of shape (n_samples,), unit RMS."""
    # At least one frequency bin is kept, so very short clips still get noise.
    cutoff_hz = max(cutoff_hz, sample_rate / next_fast_len(max(n_samples, 1), real=True))
    return _noise_from_spectrum(rng, n_samples, sample_rate, lambda freqs_hz: (freqs_hz <= cutoff_hz).astype(np.float32))


def _pink_noise(rng: np.random.Generator, n_samples: int, sample_rate: int) -> np.ndarray:
    """Noise with a 1/f power spectrum (flat below 20 Hz), float32, shape (n_samples,), unit RMS."""
    return _noise_from_spectrum(rng, n_samples, sample_rate, lambda freqs_hz: 1.0 / np.sqrt(np.maximum(freqs_hz, 20.0)))


def _rms(x: np.ndarray) -> float:
    """Root mean square of all values of ``x``, as a Python float."""
    # NumPy's own float64 sum, not BLAS: its result does not depend on the number of threads.
    return math.sqrt(float(np.sum(np.square(x), dtype=np.float64)) / x.size)


def _cycle_position(x: np.ndarray) -> np.ndarray:
    """Fractional part of ``x`` (position within a cycle, in [0, 1)); faster than ``x % 1``."""
    return x - np.floor(x)


def _synthesize_clip(
    rng: np.random.Generator, signature: _ClassSignature, n_samples: int, sound_samples: int, sample_rate: int
) -> np.ndarray:
    """One clip as int16 PCM, shape (n_samples,).

    The first ``sound_samples`` samples hold the class sound plus background noise; the rest is
    digital silence (exact zeros), as in the padded ESC-50 clips. ``sound_samples == 0`` gives
    an all-zero clip. The phase is accumulated in float64; the waveform itself is float32,
    plenty for 16-bit output and twice as fast.
    """
    clip = np.zeros(n_samples, dtype=np.int16)
    if sound_samples == 0:
        return clip
    time_s = np.arange(sound_samples, dtype=np.float64) * (1.0 / sample_rate)
    base_hz = signature.base_hz * math.exp(rng.normal(0.0, _FREQUENCY_JITTER))
    # Some clips of a class use another class's temporal pattern, so patterns alone do not
    # separate the classes.
    pattern = signature.pattern
    if rng.uniform() < _OTHER_PATTERN_PROBABILITY:
        pattern = str(rng.choice([other for other in _PATTERNS if other != pattern]))

    # Phase (radians) and amplitude envelope of the pattern.
    start_phase = rng.uniform(0, 2 * np.pi)
    if pattern == "chirp":
        period_s = signature.chirp_period_s * rng.uniform(0.8, 1.2)
        sweep_position = _cycle_position(time_s * (1.0 / period_s) + rng.uniform())
        # The sweep is centred on the base frequency, so the average pitch stays near it.
        inst_hz = base_hz * np.exp2(signature.chirp_octaves * (sweep_position - 0.5))
        highest_hz = base_hz * 2.0 ** (abs(signature.chirp_octaves) / 2)
        phase = (2 * np.pi / sample_rate) * np.cumsum(inst_hz) + start_phase
        envelope = np.sin(np.pi * sweep_position.astype(np.float32))
        envelope = 0.3 + 0.7 * envelope * envelope
    else:
        highest_hz = base_hz
        phase = (2 * np.pi * base_hz) * time_s + start_phase
        if pattern == "pulsed":
            rate_hz = signature.pulse_rate_hz * rng.uniform(0.8, 1.2)
            pulse_position = _cycle_position(time_s * rate_hz + rng.uniform()).astype(np.float32)
            # A 3%-of-period attack avoids clicks; each pulse then decays within its period.
            envelope = np.minimum(pulse_position * np.float32(1 / 0.03), np.float32(1.0))
            envelope *= np.exp(pulse_position * np.float32(-1 / 0.2))
        else:
            swell_hz = rng.uniform(0.1, 0.5)
            swell = (2 * np.pi * swell_hz) * time_s + rng.uniform(0, 2 * np.pi)
            envelope = 1.0 + 0.3 * np.sin(swell.astype(np.float32))
    # Wrapped to [0, 2 pi) in float64 first: float32 cannot hold a large phase precisely.
    cos_phase = np.cos((2 * np.pi * _cycle_position(phase / (2 * np.pi))).astype(np.float32))

    # cos(h * phase) by the Chebyshev recurrence cos(h x) = 2 cos x cos((h-1) x) - cos((h-2) x):
    # one call to np.cos instead of one per harmonic. Harmonics above 0.45 * sample_rate would
    # alias, so they are left out.
    rolloff = rng.uniform(0.5, 1.5)
    tonal = cos_phase.copy()
    previous, current = np.float32(1.0), cos_phase
    for harmonic in range(2, signature.n_harmonics + 1):
        previous, current = current, 2 * cos_phase * current - previous
        if harmonic * highest_hz < 0.45 * sample_rate:
            tonal += np.float32(harmonic**-rolloff) * current
    tonal /= max(_rms(tonal), 1e-12)
    # Narrow-band noise: low-pass noise shifted up to the instantaneous frequency.
    narrowband = _lowpass_noise(rng, sound_samples, sample_rate, 0.08 * base_hz)
    narrowband *= cos_phase
    narrowband /= max(_rms(narrowband), 1e-12)
    sound = np.float32(np.sqrt(1.0 - signature.noise_share)) * tonal
    sound += np.float32(np.sqrt(signature.noise_share)) * narrowband
    sound *= envelope
    sound /= max(_rms(sound), 1e-12)

    snr_db = rng.uniform(*_SNR_DB_RANGE)
    sound += np.float32(10.0 ** (-snr_db / 20.0)) * _pink_noise(rng, sound_samples, sample_rate)

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
    n_classes: int, clips_per_class: int, n_folds: int, n_silent: int, padded_fraction: float, n_samples: int, seed: int
) -> list[dict]:
    """Metadata rows (sorted by filename) plus ``sound_samples`` and ``clip_index`` per clip.

    ``clip_index`` numbers the clips of one class (0..clips_per_class-1); clip ``j`` goes to
    fold ``j % n_folds + 1``, which spreads each class evenly over the folds.
    """
    rng = np.random.default_rng([seed, 0])
    n_clips = n_classes * clips_per_class

    # Silent clip i is clip (i // n_classes + i) % clips_per_class of class i % n_classes: a
    # diagonal, so consecutive silent clips fall in different classes and folds.
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
    if len(rows) != n_clips:  # an internal invariant, not an input check
        raise RuntimeError(f"planned {len(rows)} clips instead of {n_clips}")
    return sorted(rows, key=lambda row: row["filename"])


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    """Return ``value`` as int, or raise ValueError naming the argument and the allowed range."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def _check_float(name: str, value, low: float, high: float, low_inclusive: bool) -> float:
    """Return ``value`` as float, or raise ValueError naming the argument and the allowed range."""
    allowed = f"a number in {'[' if low_inclusive else '('}{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if value < low or (value == low and not low_inclusive) or value > high:
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return float(value)


def _read_marker(marker_path: pathlib.Path) -> dict | None:
    """The marker's content, or None when it is missing or unreadable."""
    try:
        return read_json(marker_path, "synthetic dataset marker", default=None)
    except (OSError, ValueError):  # regenerated
        return None


def _is_complete(root: pathlib.Path, marker: dict | None, arguments: dict) -> bool:
    """Whether ``root`` holds a finished generation with exactly these arguments."""
    if (
        marker is None
        or not marker.get("complete")
        or marker.get("format_version") != _FORMAT_VERSION
        or marker.get("arguments") != arguments
    ):
        return False
    try:
        with open(root / "meta" / "esc50.csv", newline="") as file:
            filenames = [row["filename"] for row in csv.DictReader(file)]
    except (OSError, KeyError, csv.Error):
        return False
    expected = arguments["n_classes"] * arguments["clips_per_class"]
    return len(filenames) == expected and all((root / "audio" / f).is_file() for f in filenames)


def _write_marker(marker_path: pathlib.Path, arguments: dict, complete: bool) -> None:
    marker = {
        "generator": "fastspecnorm.synthetic.make_synthetic_esc50",
        "format_version": _FORMAT_VERSION,
        "complete": complete,
        "arguments": arguments,
    }
    atomic_write_text(marker_path, json.dumps(marker, indent=2, sort_keys=True) + "\n")


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

    The real ESC-50 (2000 five-second clips, 50 classes, 5 folds) cannot be downloaded everywhere
    this package is tested, so this writes a stand-in with the same layout and the same audio
    format (``ROOT`` is ``path``):

        ROOT/meta/esc50.csv        filename,fold,target,category,esc10,src_file,take
        ROOT/meta/synthetic.json   the arguments that produced the folder (written last)
        .ROOT.lock                 next to ROOT, held while generating (fcntl advisory lock)
        ROOT/audio/1-104873-A-0.wav  {fold}-{src_file}-{take}-{target}.wav

    ``esc50.csv`` has the columns ``filename, fold, target, category, esc10, src_file, take``,
    sorted by filename; one WAV file per row in ``path/audio/`` is named
    ``{fold}-{src_file}-{take}-{target}.wav``. Every clip is ``sample_rate`` Hz (44.1 kHz by
    default), mono, 16-bit PCM (2 bytes of disk per sample), exactly
    ``round(duration * sample_rate)`` samples long, like the real recordings; generation is
    quick enough for tests on one core (timings: docs/performance.md). The properties that
    matter for normalization experiments are copied from the real data:

    - levels differ from clip to clip (peak between -35 dBFS and 0 dBFS);
    - a share of the clips (``padded_fraction``, 40% by default) stop early and are padded with
      digital silence (exact zeros), some of them for more than half the clip, and ``n_silent``
      clips are entirely digital silence;
    - fragments of one source recording (``src_file``, takes A, B, ...) all lie in one fold.

    Each class has its own spectral and temporal signature: a base frequency spread log-uniformly
    from 150 Hz to 6 kHz over the classes, a class-specific number of harmonics and share of
    narrow-band noise, and a temporal pattern (steady, pulsed at a class-specific rate, or
    repeated chirps). Per-clip jitter of frequency, rate and level, plus background noise, makes
    neighbouring classes overlap, so a small CNN on log-mel spectrograms can learn the task
    without finding it trivial. The data carry no meaning beyond that: accuracies on them say
    nothing about ESC-50.

    An interrupted generation leaves ``synthetic.json`` marked incomplete, so the next call
    regenerates. Any number of processes may call this on one folder at once (the same command
    started several times on one output folder): generation runs under an exclusive lock on
    ``.NAME.lock`` next to the folder ``NAME`` (where ``fcntl`` exists; outside the folder, which
    holds only the dataset), a process that waited for it returns the folder another one
    finished, and every clip is written to a temporary file renamed into place, so no process
    ever reads a half-written clip. A complete folder is returned without taking the lock (it
    may be read-only).

    Args:
        path: folder to write (str or path-like); created if missing.
        n_classes: number of classes, 1..50; class ``target`` gets the ESC-50 name
            ``ESC50_CATEGORIES[target]``. Base frequencies span 150 Hz..6 kHz over the classes
            (up to 0.35 * sample_rate when that is lower), so class 0 is the lowest.
        clips_per_class: clips per class, >= 1. Clip ``j`` of a class goes to fold
            ``j % n_folds + 1``: every fold has every class when ``clips_per_class >= n_folds``,
            and per-fold counts of a class differ by at most one.
        n_folds: number of folds, >= 1, numbered 1..n_folds (a fold may hold no clip of a
            class, or none at all, when there are fewer clips than folds).
        sample_rate: sampling rate of the WAV files in Hz, >= 8000.
        duration: length of every clip in seconds, > 0 (at most 60).
        seed: non-negative integer; the same arguments give byte-identical files.
        n_silent: number of clips that are entirely digital silence (all zeros), 0..number of
            clips; they lie in different classes and, as far as possible, different folds.
        overwrite: when False and ``path`` already holds a complete dataset made with the same
            arguments, return at once without writing. When True, always regenerate. A folder
            holding an ESC-50 dataset not made by this function (no ``synthetic.json``) is
            only replaced when True. Regenerating removes ``.wav`` files in ``path/audio`` that
            the new ``esc50.csv`` does not list.
        padded_fraction: share of the non-silent clips whose sound stops early (0..1); the rest
            of such a clip is exact zeros. The sound covers 30%..95% of the clip, spread evenly,
            so about 30% of these clips are more than half silence.

    Returns:
        ``pathlib.Path(path)``.

    Raises:
        ValueError: an argument is out of range; the message names it and the allowed values.
        FileExistsError: ``path`` holds an ESC-50 dataset not written by this function and
            ``overwrite`` is False, or ``path`` is a file.

    Examples:
        Small sizes keep this quick:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from fastspecnorm.datasets.synthetic import make_synthetic_esc50
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = make_synthetic_esc50(Path(tmp) / "esc50-synthetic", n_classes=2, clips_per_class=2, n_folds=2,
        ...                                 sample_rate=8000, duration=0.5)
        ...     print(sorted(p.name for p in root.iterdir()), len(list((root / "audio").glob("*.wav"))))
        ['audio', 'meta'] 4
    """
    arguments = {
        "n_classes": _check_int("n_classes", n_classes, 1, len(ESC50_CATEGORIES)),
        "clips_per_class": _check_int("clips_per_class", clips_per_class, 1),
        "n_folds": _check_int("n_folds", n_folds, 1),
        "sample_rate": _check_int("sample_rate", sample_rate, 8000),
        "duration": _check_float("duration", duration, 0.0, 60.0, low_inclusive=False),
        "seed": _check_int("seed", seed, 0),
        "n_silent": _check_int("n_silent", n_silent, 0, n_classes * clips_per_class),
        "padded_fraction": _check_float("padded_fraction", padded_fraction, 0.0, 1.0, low_inclusive=True),
    }
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    n_samples = int(round(arguments["duration"] * arguments["sample_rate"]))
    if n_samples < 1:
        raise ValueError(f"duration must give at least one sample at sample_rate={sample_rate} Hz, got duration={duration} s")

    root = pathlib.Path(path)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"path must be a folder, but {root} is a file")
    meta_dir = root / "meta"
    marker_path = meta_dir / _MARKER_NAME
    marker = _read_marker(marker_path)
    if not overwrite and _is_complete(root, marker, arguments):
        return root
    _refuse_foreign(root, marker, overwrite)
    absolute = root.resolve()  # a name for the lock also when `path` is "." or ends in ".."
    absolute.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(absolute.parent / f".{absolute.name}.lock"):
        marker = _read_marker(marker_path)  # another process may have finished it while we waited
        if not overwrite and _is_complete(root, marker, arguments):
            return root
        _generate(root, arguments, marker, overwrite, n_samples)
    return root


def _refuse_foreign(root: pathlib.Path, marker: dict | None, overwrite: bool) -> None:
    "FileExistsError when `root` holds an ESC-50 dataset this function did not write and `overwrite` is False."
    looks_like_esc50 = (root / "meta" / "esc50.csv").exists() or any((root / "audio").glob("*.wav"))
    if marker is None and looks_like_esc50 and not overwrite:
        raise FileExistsError(
            f"{root} holds an ESC-50 dataset that make_synthetic_esc50 did not write "
            f"(no meta/{_MARKER_NAME}); pass overwrite=True to replace it, or choose another path"
        )


def _generate(root: pathlib.Path, arguments: dict, marker: dict | None, overwrite: bool, n_samples: int) -> None:
    "Write the dataset of `make_synthetic_esc50` into `root` (the caller holds its lock)."
    meta_dir, audio_dir = root / "meta", root / "audio"
    marker_path = meta_dir / _MARKER_NAME
    _refuse_foreign(root, marker, overwrite)

    meta_dir.mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(marker_path, arguments, complete=False)

    rows = _plan_clips(
        arguments["n_classes"],
        arguments["clips_per_class"],
        arguments["n_folds"],
        arguments["n_silent"],
        arguments["padded_fraction"],
        n_samples,
        arguments["seed"],
    )
    listed = {row["filename"] for row in rows}
    for stale in audio_dir.glob("*.wav"):
        if stale.name not in listed:
            stale.unlink()

    signatures = [
        _class_signature(target, arguments["n_classes"], arguments["sample_rate"]) for target in range(arguments["n_classes"])
    ]
    for row in rows:
        # One generator per clip, keyed by class and clip number, so a clip does not depend on
        # the order of generation or on the other clips.
        rng = np.random.default_rng([arguments["seed"], 1, row["target"], row["clip_index"]])
        clip = _synthesize_clip(rng, signatures[row["target"]], n_samples, row["sound_samples"], arguments["sample_rate"])
        atomic_write(
            audio_dir / row["filename"],
            lambda f, clip=clip: sf.write(f, clip, arguments["sample_rate"], subtype="PCM_16", format="WAV"),
        )

    lines = [",".join(ESC50_COLUMNS)]
    for row in rows:
        lines.append(",".join(str(row[column]) for column in ESC50_COLUMNS))
    atomic_write_text(meta_dir / "esc50.csv", "\n".join(lines) + "\n")
    _write_marker(marker_path, arguments, complete=True)
