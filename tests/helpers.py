"""Helpers shared by several test files (functions, not fixtures: those are in conftest.py)."""

import numpy as np
import soundfile as sf
import torch

from fastspecnorm import AudioTensor
from fastspecnorm.experiment import ExperimentConfig

ESC50_TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}


def write_tone(path, sr=8000, n=1600, f0=400.0, seed=0, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * np.random.default_rng(seed).standard_normal(n)
    sf.write(path, x, sr, subtype=subtype)
    return path


def energies(shape, seed=0, low=-3, high=8):
    "Random non-negative energies, each (item, bin) row at its own level 10**low .. 10**high."
    rng = np.random.default_rng(seed)
    level = 10.0 ** rng.uniform(low, high, size=(*shape[:-1], 1))
    return rng.exponential(size=shape) * level


def librosa_pcen(S, **kwargs):
    "librosa.pcen on each (freq, time) slice of S (..., freq, time), float64."
    import librosa  # here: only the PCEN tests need it

    flat = S.reshape(-1, *S.shape[-2:])
    return np.stack([librosa.pcen(s, **kwargs) for s in flat]).reshape(S.shape)


def padded_batch(clips: list[np.ndarray], sr: int = 16000) -> AudioTensor:
    "Mono clips (samples,) zero-padded to the longest, as AudioDataLoader makes them."
    n = max(len(c) for c in clips)
    x = torch.zeros(len(clips), 1, n)
    for i, c in enumerate(clips):
        x[i, 0, : len(c)] = torch.from_numpy(c.astype(np.float32))
    res = AudioTensor(x, sr=sr)
    res.lengths = torch.tensor([len(c) for c in clips])
    return res


def main_status(capsys, *args) -> tuple[int, str]:
    """The command's status and stderr, run in this process through its own entry (a subprocess per
    case costs a torch import; test_help_and_argument_errors_do_not_import_torch runs the installed
    command)."""
    from fastspecnorm.experiment.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as e:  # argparse's errors
        status = e.code
    return status, capsys.readouterr().err


def esc50_config(esc, out, norms=("none", "global", "instance"), seeds=(0,)):
    return ExperimentConfig(
        data=str(esc),
        out=out,
        folds=[1],
        seeds=list(seeds),
        norms=list(norms),
        preset="quick",
        epochs=1,
        overrides=dict(ESC50_TINY),
    )


def numpy_utterance_mvn(x, lengths=None, eps=1e-5):
    "Per item, channel and bin over its first lengths[i] frames; padding -> 0. The simplest float64 loops."
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        n = x.shape[-1] if lengths is None else lengths[i]
        for c in range(x.shape[1]):
            for f in range(x.shape[2]):
                v = x[i, c, f, :n].astype(np.float64)
                if n:
                    out[i, c, f, :n] = (v - v.mean()) / max(v.std(), eps)
    return out
