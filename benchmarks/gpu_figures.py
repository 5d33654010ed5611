"""GPU figures in one run (about 6 minutes on one H200): the blog preset on synthetic data.

1. Seconds per training epoch and the share of it spent waiting for data (fetching a batch plus
   the batch transforms: waveform standardization, spectrogram, normalization), for fp32 and for
   bf16 mixed precision + channels_last (fastai `to_channelslast(amp_mode="bf16")`).
2. Grid throughput: K concurrent runs on the one GPU (`--devices cuda:0` K times, K = 1, 4, 8),
   each one run of the experiment command; wall time including start-up, and training epochs per
   minute over all runs.

    python benchmarks/gpu_figures.py                 # 2000 clips (50 x 40), blog preset, cuda:0
    python benchmarks/gpu_figures.py --tiny          # CPU, tiny data: checks the script in seconds

Prints a markdown table (and the machine line) to paste into the README.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_dir, machine  # noqa: E402

from fastspecnorm import esc50_dataloaders, esc50_learner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class DataClock(Callback):
    """Per training epoch: wall time, and time between the end of a step and the start of the next
    (the loop waiting for data). Synchronizes the GPU at both ends so queued kernels count where
    they run."""

    order = -1000  # first in before_batch; after_batch is timed at the next before_batch

    def __init__(self, device):
        self.device, self.epochs = torch.device(device), []

    def _now(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def before_train(self):
        self.start = self.step_end = self._now()
        self.waiting = 0.0

    def before_batch(self):
        if self.training:
            self.waiting += self._now() - self.step_end

    def after_batch(self):
        if self.training:
            self.step_end = self._now()

    def after_train(self):
        self.epochs.append((self._now() - self.start, self.waiting))


def epoch_figures(root, device, preset, bs, epochs, mixed: bool, num_workers: int, **settings) -> tuple[float, float]:
    "Seconds per training epoch and data share of the last `epochs - 1` epochs (epoch 1 builds the cache)."
    dls = esc50_dataloaders(root, valid_fold=1, preset=preset, bs=bs, device=device, num_workers=num_workers, **settings)
    clock = DataClock(device)
    learn = esc50_learner(dls, cbs=[clock])
    if mixed:
        learn.to_channelslast(amp_mode="bf16")
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs)
    steady = clock.epochs[1:] or clock.epochs
    seconds = sum(s for s, _ in steady) / len(steady)
    return seconds, sum(w for _, w in steady) / sum(s for s, _ in steady)


def grid_throughput(root, device, k: int, preset: str, epochs: int, bs: int, num_workers: int, extra: list[str]) -> float:
    "Wall seconds for k runs of `epochs` epochs, k worker processes on one device."
    out = Path(tempfile.mkdtemp(prefix=f"grid{k}-", dir=bench_dir()))
    cmd = [
        sys.executable,
        str(REPO / "experiments" / "esc50_normalization.py"),
        "--data",
        str(root),
        "--out",
        str(out),
        "--norms",
        "none",
        "--folds",
        "1",
        "--seeds",
        *map(str, range(k)),
        "--preset",
        preset,
        "--epochs",
        str(epochs),
        "--bs",
        str(bs),
        "--num-workers",
        str(num_workers),
        "--devices",
        *([device] * k),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // k))}
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"grid with {k} concurrent runs failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return wall


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU, tiny synthetic data: checks that the script runs")
    p.add_argument("--device", default=None, help="default: cuda:0 (cpu with --tiny)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is discarded)")
    p.add_argument("--grid-epochs", type=int, default=2, help="epochs of each run in the throughput measurement")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8], help="concurrent runs on the one device")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers per run (default: CPU cores / 2, at most 8)")
    a = p.parse_args(argv)
    from fastspecnorm.datasets.synthetic import make_synthetic_esc50

    if a.tiny:
        device, preset, bs, settings, extra = a.device or "cpu", "quick", 4, {"duration": 1.0}, ["--set", "duration=1.0"]
        root = make_synthetic_esc50(
            bench_dir() / "gpu-figures-tiny", n_classes=3, clips_per_class=5, duration=1.0, sample_rate=16000
        )
        concurrency, epochs, grid_epochs = [1, 2], 2, 1
    else:
        device, preset, bs, settings, extra = a.device or "cuda:0", "blog", 64, {}, []
        start = time.perf_counter()
        root = make_synthetic_esc50(bench_dir() / "gpu-figures-50x40", n_classes=50, clips_per_class=40)  # 44.1 kHz, 5 s
        print(f"data: 2000 clips in {time.perf_counter() - start:.0f} s", flush=True)
        concurrency, epochs, grid_epochs = a.concurrency, a.epochs, a.grid_epochs
    num_workers = a.num_workers if a.num_workers is not None else (0 if a.tiny else min(8, (os.cpu_count() or 2) // 2))
    print(machine(), flush=True)
    rows = []
    for name, mixed in (("fp32", False), ("bf16 + channels_last", True)):
        if mixed and torch.device(device).type == "cpu":
            continue  # bf16 autocast on CPU measures nothing useful about a GPU
        seconds, share = epoch_figures(root, device, preset, bs, epochs, mixed, num_workers, **settings)
        rows.append(f"| one run, {name} | {seconds:.2f} s per epoch | data {100 * share:.1f}% |")
        print(rows[-1], flush=True)
    for k in concurrency:
        wall = grid_throughput(root, device, k, preset, grid_epochs, bs, max(1, num_workers // k) if num_workers else 0, extra)
        rows.append(
            f"| {k} concurrent run(s) x {grid_epochs} epochs | {wall:.0f} s wall (start-up included) "
            f"| {60 * k * grid_epochs / wall:.1f} epochs/min |"
        )
        print(rows[-1], flush=True)
    print(f"\n{machine()}\npreset {preset}, batch size {bs}, {num_workers} loader workers\n")
    print("| measurement | time | rate |\n|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
