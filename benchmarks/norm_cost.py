"""Cost of PCEN, per-utterance MVN and the train-only augmentations against a training step.

On one quick-preset batch (`(16, 1, 64, 201)` mel spectrograms, bs 16) times, in the same run and
interleaved round by round (so all see the same machine load), the median of:

- a training step of xResNet18 (forward, cross-entropy, backward, Adam step), as `esc50_learner`
  builds it for 50 classes;
- `PCEN` on the batch's mel energies (scaling by 2**62 included), and for comparison the dB
  conversion it replaces (`power_to_db`);
- `UtteranceNormalize` on the dB batch;
- `SpecAugment` (2 frequency and 2 time masks, PANNs' widths) on the normalized batch;
- fastai's `MixUp` callback's `before_batch` (Beta sample, shuffle, blend of inputs).

    python benchmarks/norm_cost.py [--rounds 30] [--bs 16] [--device cpu]

Goal: PCEN and the augmentations each cost < 10% of a quick-preset training step on CPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads stall on a shared machine

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, sync  # noqa: E402

from fastspecnorm import PCEN, AudioSpectrogram, AudioTensor, AudioToSpec, SpecAugment, UtteranceNormalize  # noqa: E402
from fastspecnorm.audio.spectrogram import power_to_db  # noqa: E402
from fastspecnorm.augment import augment_callbacks  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=30, help="timed rounds (each times every operation once)")
    p.add_argument("--bs", type=int, default=16, help="batch size (quick preset: 16)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    print(machine())

    from fastai.vision.models.xresnet import xresnet18

    torch.manual_seed(0)
    # quick preset: 5 s at 16 kHz, n_fft 1024, hop 400, 64 mel bins -> (bs, 1, 64, 201)
    wav = AudioTensor((torch.randn(a.bs, 1, 80000) * 0.1).to(dev), sr=16000)
    to_power = AudioToSpec(n_fft=1024, hop_length=400, n_mels=64, to_db=False).to(dev)
    power = to_power(wav)
    db = AudioSpectrogram(power_to_db(power.as_subclass(torch.Tensor)), sr=16000, hop_length=400, unit="dB")
    print(f"batch {tuple(power.shape)} on {dev}")

    model = xresnet18(c_in=1, n_out=50).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = torch.randint(0, 50, (a.bs,), device=dev)
    x_train = db.as_subclass(torch.Tensor)

    def train_step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train), y).backward()
        opt.step()

    pcen, utt, aug = PCEN(), UtteranceNormalize(), SpecAugment(fill=0.0)
    (mixup,) = augment_callbacks()
    # MixUp reads the batch from its learner; a stand-in holding one batch is enough to time it
    mixup.learn = SimpleNamespace(xb=(db,), yb=(y,), x=db, y=y)
    mixup.stack_y = True

    def run_mixup():
        mixup.learn.xb = (db,)
        mixup.before_batch()

    ops = {
        "training step": train_step,
        "PCEN": lambda: pcen(power),
        "dB (what PCEN replaces)": lambda: power_to_db(power.as_subclass(torch.Tensor)),
        "UtteranceNormalize": lambda: utt(db),
        "SpecAugment": lambda: aug(db, split_idx=0),
        "MixUp (before_batch)": run_mixup,
    }
    for fn in ops.values():  # warm-up
        fn()
    times = {k: [] for k in ops}
    for _ in range(a.rounds):
        for name, fn in ops.items():
            sync(dev)
            t = time.perf_counter()
            fn()
            sync(dev)
            times[name].append(time.perf_counter() - t)
    step = statistics.median(times["training step"])
    print(f"\n{'operation':<26} {'median ms':>10} {'share of a step':>16}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<26} {med * 1e3:>10.2f} {med / step:>15.1%}")
    worst = max(statistics.median(times[k]) for k in ("PCEN", "SpecAugment", "MixUp (before_batch)")) / step
    total = sum(statistics.median(times[k]) for k in ("PCEN", "SpecAugment", "MixUp (before_batch)")) / step
    print(f"\nPCEN + SpecAugment + MixUp together: {total:.1%} of a training step; largest single: {worst:.1%} (goal < 10%)")


if __name__ == "__main__":
    main()
