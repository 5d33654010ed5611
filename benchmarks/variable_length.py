"""Variable-length batches against one fixed duration: training time per second of real audio.

Generates clips of 0.15-2.3 s at 8 kHz (the spoken-digit range), then times training epochs of
xResNet18 (`audio_learner`, plain fit) on the same clips three ways, in the same run (after one
warm-up epoch each, `--repeats` epochs per pipeline taken in turn; the median counts):

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


def make_learner(root: Path, duration, bs: int, spec: dict):
    "A learner on the clips with `duration` (None: own lengths), warmed up by one epoch (allocations, first-call costs)."
    dls = AudioDataLoaders.from_folder(
        root, valid_pct=0.1, seed=0, sample_rate=SR, duration=duration, bs=bs, spec=spec, cache=False
    )
    torch.manual_seed(0)
    learn = audio_learner(dls)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    return learn


def padding_share(learn) -> float:
    "Share of padded frames in the training batches that carry `lengths` (0 for fixed-duration batches)."
    valid = total = 0
    for xb, _ in learn.dls.train:
        total += xb.shape[0] * xb.shape[-1]
        valid += int(xb.lengths.sum()) if xb.lengths is not None else xb.shape[0] * xb.shape[-1]
    return 1 - valid / total


def time_epoch(learn) -> float:
    "Seconds for one training epoch."
    with learn.no_bar(), learn.no_logging():
        start = time.perf_counter()
        learn.fit(1)
        return time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per pipeline, taken in turn")
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
        configs = (None, longest, 1.0)
        learners = {d: make_learner(root, d, args.bs, spec) for d in configs}
        times = {d: [] for d in configs}
        for _ in range(args.repeats):  # configurations in turn, so all see the same machine load
            for d in configs:
                times[d].append(time_epoch(learners[d]))
        rows = {}
        for duration in configs:
            seconds = float(np.median(times[duration]))
            padding = padding_share(learners[duration])
            if duration is not None:  # ResizeSignal's zero padding (not recorded as lengths)
                padding = 1 - float(np.minimum(durations, duration).mean()) / duration
            rows[duration] = seconds / real[duration]
            name = "variable (duration=None)" if duration is None else f"fixed duration={duration:.2f} s"
            print(
                f"{name:28s} epoch {seconds:6.1f} s (median of {' '.join(f'{t:.1f}' for t in times[duration])}), "
                f"{rows[duration] * 1000:6.1f} ms per second of real audio, padding {padding:.0%}"
            )
    for d in (longest, 1.0):
        print(f"variable / fixed {d:.2f} s: {rows[None] / rows[d]:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
