"""Variable-length batches against one fixed duration: training time per second of real audio.

Generates clips of 0.15-2.3 s at 8 kHz (the spoken-digit range), then times one training epoch
of xResNet18 (`audio_learner`, plain fit) on the same clips three ways, in the same run:

- `duration=None`: each batch padded to its longest clip, padding masked (`lengths`);
- `duration=D_max`: every clip zero-padded to the longest clip of the dataset (nothing lost);
- `duration=1.0`: every clip cropped or padded to 1 s (what a fixed-length pipeline usually does;
  it drops the audio beyond 1 s, so it processes less real audio).

Reports seconds per second of real (unpadded, uncropped) audio and the ratio variable / fixed
(goal: <= 1.2), and the share of frames that are padding.

    python benchmarks/variable_length.py --clips 192 --bs 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from fastspecnorm import AudioDataLoaders, audio_learner

SR = 8000


def make_clips(root: Path, n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    durations = []
    for i in range(n):
        d = float(rng.uniform(0.15, 2.3))
        k = int(d * SR)
        label = f"c{i % 4}"
        (root / label).mkdir(parents=True, exist_ok=True)
        x = 0.3 * np.sin(2 * np.pi * (200 + 300 * (i % 4)) * np.arange(k) / SR) + 0.05 * rng.standard_normal(k)
        sf.write(root / label / f"{i}.wav", x, SR, subtype="PCM_16")
        durations.append(k / SR)
    return durations


def time_epoch(root: Path, duration, bs: int, spec: dict) -> tuple[float, float]:
    "Seconds for one training epoch (after a warm-up epoch) and the share of padded frames in batches with `lengths`."
    dls = AudioDataLoaders.from_folder(root, valid_pct=0.1, seed=0, sample_rate=SR, duration=duration, bs=bs, spec=spec, cache=False)
    torch.manual_seed(0)
    learn = audio_learner(dls)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)  # warm-up (allocations, first-call costs)
        start = time.perf_counter()
        learn.fit(1)
        seconds = time.perf_counter() - start
    valid = total = 0
    for xb, _ in dls.train:
        total += xb.shape[0] * xb.shape[-1]
        valid += int(xb.lengths.sum()) if xb.lengths is not None else xb.shape[0] * xb.shape[-1]
    return seconds, 1 - valid / total


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--bs", type=int, default=16)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    spec = {"n_fft": 256, "hop_length": 80, "n_mels": 40}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        durations = np.array(make_clips(root, args.clips))
        n_train = int(len(durations) - round(0.1 * len(durations)))
        frac = n_train / len(durations)  # the training split's share (its exact clips do not matter for the average)
        longest = float(durations.max())
        real = {None: durations.sum() * frac, longest: durations.sum() * frac, 1.0: np.minimum(durations, 1.0).sum() * frac}
        rows = {}
        for duration in (None, longest, 1.0):
            seconds, padding = time_epoch(root, duration, args.bs, spec)
            if duration is not None:  # ResizeSignal's zero padding (not recorded as lengths)
                padding = 1 - float(np.minimum(durations, duration).mean()) / duration
            rows[duration] = seconds / real[duration]
            name = "variable (duration=None)" if duration is None else f"fixed duration={duration:.2f} s"
            print(f"{name:28s} epoch {seconds:6.1f} s, {rows[duration] * 1000:6.1f} ms per second of real audio, padding {padding:.0%}")
    for d in (longest, 1.0):
        print(f"variable / fixed {d:.2f} s: {rows[None] / rows[d]:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
