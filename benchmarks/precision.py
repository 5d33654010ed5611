"""Training steps per second in fp32 and bf16 (with and without channels_last), side by side.

xResNet18 from scratch (`fastai.vision.models.xresnet.xresnet18`, c_in 1, 50 classes), one SGD
step per batch of the preset's spectrogram shape, the four variants alternating in every round
(so a busy machine slows them alike), medians over rounds; ratios against fp32 in the same run.
bf16 is `torch.autocast(device_type, torch.bfloat16)` around the forward pass and the loss, as
`BF16Autocast` (what `audio_learner(precision="bf16")` adds) does. Then, with `--data-share`, the
share of a quick-preset epoch spent waiting for data with the chosen precision
(`benchmarks/data_share.py --precision ...`): the pipeline must not become the bottleneck.

    python benchmarks/precision.py                                 # quick and blog presets, CPU
    python benchmarks/precision.py --presets quick --data-share    # and the data share of a quick epoch
    python benchmarks/precision.py --device cuda --rounds 10

Goal (issue: bf16 on a CPU with AVX512-BF16 or AMX): bf16 + channels_last at most 0.6x of fp32 per
step for the quick preset. `auto` chooses bf16 only where `bf16_native` says the device computes it
in hardware; the first line says what it found here.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads stall on a shared machine

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastai.vision.models.xresnet import xresnet18  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, sync  # noqa: E402

from fastspecnorm import get_settings  # noqa: E402
from fastspecnorm.precision import bf16_native, resolve_precision  # noqa: E402

VARIANTS = {  # name: (bf16 autocast, channels_last)
    "fp32": (False, False),
    "fp32 + channels_last": (False, True),
    "bf16": (True, False),
    "bf16 + channels_last": (True, True),
}


def spectrogram_shape(preset: str, seconds: float = 5.0) -> tuple[int, int, int]:
    "(channels, freq, time) of a `seconds` clip with the preset's settings (centered frames)."
    s = get_settings(preset).resolved()
    freq = s.n_mels or s.n_fft // 2 + 1
    return 1, freq, int(seconds * s.sample_rate) // s.hop_length + 1


def make_step(model, bf16: bool, channels_last: bool, device):
    "One SGD step on a batch, in the variant's precision and memory format."
    model = copy.deepcopy(model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_func = torch.nn.CrossEntropyLoss()

    def step(x, y):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_func(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def time_preset(preset: str, bs: int, rounds: int, steps: int, device, variants) -> dict[str, float]:
    "Median seconds per step of each variant, alternating variants within every round."
    torch.manual_seed(0)
    shape = spectrogram_shape(preset)
    x = torch.randn(bs, *shape, device=device)
    y = torch.randint(0, 50, (bs,), device=device)
    base = xresnet18(c_in=1, n_out=50)
    runners = {name: make_step(base, *VARIANTS[name], device) for name in variants}
    for step in runners.values():  # warm-up: allocator, kernel selection
        step(x, y)
    sync(device)
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, step in runners.items():
            t = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            sync(device)
            times[name].append((time.perf_counter() - t) / steps)
    print(f"\n{preset} preset, input {shape}, batch {bs}, {rounds} rounds x {steps} steps per variant")
    print(f"{'variant':<22} {'ms/step':>9} {'steps/s':>8} {'vs fp32':>8}")
    medians = {name: float(np.median(t)) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"{name:<22} {1e3 * seconds:>9.1f} {1 / seconds:>8.2f} {seconds / medians['fp32']:>7.2f}x")
    return medians


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["quick", "blog"], choices=["quick", "blog"])
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="rounds; each times every variant once")
    p.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--data-share", action="store_true", help="then the data share of a quick epoch (data_share.py)")
    p.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"], help="of the data-share epoch")
    args = p.parse_args(argv)
    if "fp32" not in args.variants:
        p.error("--variants must include fp32, the baseline of the ratios")

    print(f"machine: {machine()}")
    native = bf16_native(args.device)
    print(
        f"bf16 native on {args.device}: {native} (precision='auto' resolves to {resolve_precision('auto', args.device)!r}); "
        + ("" if native else "bf16 is emulated here, so expect it to be slower than fp32")
    )
    for preset in args.presets:
        time_preset(preset, args.bs, args.rounds, args.steps, args.device, args.variants)
    if args.data_share:
        import data_share

        print(f"\ndata share of quick-preset epochs with precision={args.precision!r} (benchmarks/data_share.py):")
        data_share.main(["--preset", "quick", "--device", args.device, "--precision", args.precision])
    print(f"\nmachine at the end: {machine()}")


if __name__ == "__main__":
    main()
