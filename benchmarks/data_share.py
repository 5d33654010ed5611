"""Share of data time in training epochs: how long the training loop waits for batches.

Trains xResNet18 (`fastspecnorm.datasets.esc50_learner`) with `fit_one_cycle` on an ESC-50-layout folder
(default: a synthetic one, 44.1 kHz 5 s clips) and times, per batch, the gap between the end of
one step (`after_batch`, after every other callback) and the start of the next (`before_batch`,
before every other callback): the time spent fetching the batch, including the batch transforms
(waveform standardization, spectrogram, normalization) that run in the main process. Epoch 1
includes building the audio cache and worker start-up, so the share is reported per epoch.

    python benchmarks/data_share.py                                  # quick preset, CPU, 2 epochs
    python benchmarks/data_share.py --preset blog --device cuda --clips 2000 --epochs 20

Goal (quick preset, CPU): data under 10% of the epoch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads stall on a shared machine

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_dir, machine, synthetic_esc50  # noqa: E402

from fastspecnorm import SpecNormalize, esc50_dataloaders, esc50_learner  # noqa: E402
from fastspecnorm.callback import install_normalizer  # noqa: E402


class _BatchArrived(Callback):
    "Runs first in `before_batch`: the batch is here."

    order = -1000  # before every other callback

    def __init__(self, clock):
        self.clock = clock

    def before_batch(self):
        self.clock.arrived()


class _StepDone(Callback):
    "Runs last in `after_batch`, and at the start of each phase: from now on the loop waits for data."

    order = 1000  # after every other callback (recorder, progress bar)

    def __init__(self, clock):
        self.clock = clock

    def before_epoch(self):
        self.clock.start_epoch()

    def before_train(self):
        self.clock.waiting("train")

    def before_validate(self):
        self.clock.waiting("valid")

    def after_batch(self):
        self.clock.waiting(self.clock.phase)

    def after_epoch(self):
        self.clock.end_epoch()


class DataClock:
    "Waiting time per phase and epoch, and epoch wall time."

    def __init__(self):
        self.epochs: list[dict] = []
        self.phase = "train"
        self._since = None

    def start_epoch(self):
        self.epochs.append({"train": 0.0, "valid": 0.0, "t0": time.perf_counter()})

    def waiting(self, phase: str):
        self.phase, self._since = phase, time.perf_counter()

    def arrived(self):
        if self._since is not None:
            self.epochs[-1][self.phase] += time.perf_counter() - self._since
            self._since = None

    def end_epoch(self):
        self.epochs[-1]["total"] = time.perf_counter() - self.epochs[-1].pop("t0")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="ESC-50-layout folder (default: synthetic, 44.1 kHz 5 s clips)")
    p.add_argument("--clips", type=int, default=400, help="clips in the synthetic dataset (10 classes; blog size: 2000)")
    p.add_argument("--preset", default="quick", choices=["quick", "blog"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--bs", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=None, help="default: the package's (0 for cached audio on CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", type=Path, default=None, help="audio cache (default: one in the benchmark folder)")
    p.add_argument("--no-cache", action="store_true", help="decode and resample every clip on every epoch, for comparison")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="audio_learner's precision")
    args = p.parse_args(argv)

    print(f"machine: {machine()}")
    root = args.data.expanduser() if args.data else synthetic_esc50(n_classes=10, clips_per_class=max(1, args.clips // 10))
    t = time.perf_counter()
    kwargs = {} if args.bs is None else {"bs": args.bs}
    dls = esc50_dataloaders(
        root,
        preset=args.preset,
        device=args.device,
        num_workers=args.num_workers,
        cache=False if args.no_cache else args.cache_dir or bench_dir() / "audio-cache",
        **kwargs,
    )
    print(
        f"\nDataLoaders ({'no audio cache' if args.no_cache else 'with the audio cache'}) ready in {time.perf_counter() - t:.1f} s; preset {args.preset!r}, "
        f"bs {dls.bs}, {len(dls.train_ds)} training / {len(dls.valid_ds)} validation clips, "
        f"num_workers {dls.train.fake_l.num_workers}, device {dls.device}"
    )
    # Fixed statistics: the statistics pass is benchmarked separately (stats_pass.py).
    # inplace=True: as StatsCallback installs it right after AudioToSpec
    install_normalizer(
        dls, SpecNormalize(torch.tensor(-30.0).reshape(1, 1, 1, 1), torch.tensor(20.0).reshape(1, 1, 1, 1), inplace=True)
    )
    clock = DataClock()
    learn = esc50_learner(dls, cbs=[_BatchArrived(clock), _StepDone(clock)], precision=args.precision)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs)

    print(f"\n{'epoch':>5} {'total s':>9} {'train data s':>13} {'valid data s':>13} {'data share':>11}")
    for i, e in enumerate(clock.epochs, 1):
        share = (e["train"] + e["valid"]) / e["total"]
        print(f"{i:>5} {e['total']:>9.1f} {e['train']:>13.2f} {e['valid']:>13.2f} {share:>10.1%}")
    later = clock.epochs[1:] or clock.epochs
    share = sum(e["train"] + e["valid"] for e in later) / sum(e["total"] for e in later)
    n = len(clock.epochs)
    which = "epoch 1" if n == 1 else "epoch 2" if n == 2 else f"epochs 2-{n}"
    print(f"data share, {which}: {share:.1%} (goal for the quick preset on CPU: < 10%: {'met' if share < 0.10 else 'NOT met'})")
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
