"""Statistics pass: `collect_stats` vs the reference article's StatsRecorder vs a bare float64 reduction.

The same pre-generated batches of spectrogram-shaped tensors ([64, 1, 201, 401] by default) go
through three accumulators, timed in turn (best and median of several repeats):

- fastspecnorm `collect_stats` (float64 count / mean / M2, Chan's merge, exact);
- the reference article's `StatsRecorder`: float32 torch, per-batch mean and unbiased std, merged
  with item-count weights (re-implemented below as published);
- a bare float64 reduction: `x.double()`, then `sum` and `sum of squares` per batch.

Each result is compared with NumPy float64 on the concatenated data, for dB-like values
(N(-30, 20)) and for 10000 + N(0, 1), where float32 sums and sum-of-squares formulas lose digits.
Then peak RSS of a statistics pass over N and 4N batches streamed from a generator, each in a fresh
process, shows that its memory does not grow with the dataset.

    python benchmarks/stats_pass.py                 # CPU
    python benchmarks/stats_pass.py --device cuda

Goals: no slower than the article's recorder, within 1.2x of the bare reduction, exact (1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_mb, sync  # noqa: E402

from fastspecnorm import collect_stats  # noqa: E402


class ArticleStatsRecorder:
    """The reference article's recorder, as published (float32, item-count weighted merge of
    per-batch means and unbiased stds; tests/article_merge.py documents its error)."""

    def __init__(self, red_dims=(0, 2, 3)):
        self.red_dims = red_dims
        self.nobservations = 0

    def update(self, data):
        if self.nobservations == 0:
            self.mean = data.mean(dim=self.red_dims, keepdim=True)
            self.std = data.std(dim=self.red_dims, keepdim=True)
            self.nobservations = data.shape[0]
            self.ndimensions = data.shape[1]
        else:
            if data.shape[1] != self.ndimensions:
                raise ValueError("Data dims do not match previous observations.")
            newmean = data.mean(dim=self.red_dims, keepdim=True)
            newstd = data.std(dim=self.red_dims, keepdim=True)
            m = self.nobservations * 1.0
            n = data.shape[0]
            tmp = self.mean
            self.mean = m / (m + n) * tmp + n / (m + n) * newmean
            self.std = m / (m + n) * self.std**2 + n / (m + n) * newstd**2 + m * n / (m + n) ** 2 * (tmp - newmean) ** 2
            self.std = torch.sqrt(self.std)
            self.nobservations += n


def article(batches, red_dims):
    rec = ArticleStatsRecorder(red_dims)
    for x in batches:
        rec.update(x)
    return rec.mean, rec.std


def fastspecnorm_stats(batches, red_dims):
    rec = collect_stats(batches, red_dims=red_dims, progress=False)
    return rec.mean, rec.std


def bare_float64(batches, red_dims):
    "The floor: float64 sum and sum of squares per batch, nothing else (no checks, no merge formula)."
    total = squares = None
    n = 0
    for x in batches:
        x64 = x.double()
        s, ss = x64.sum(dim=red_dims, keepdim=True), (x64 * x64).sum(dim=red_dims, keepdim=True)
        total, squares = (s, ss) if total is None else (total + s, squares + ss)
        n += x64.numel() // s.numel()
    mean = total / n
    return mean, torch.sqrt((squares / n - mean * mean).clamp_min(0))


METHODS = {
    "article StatsRecorder (float32)": article,
    "fastspecnorm collect_stats": fastspecnorm_stats,
    "bare float64 sum/sumsq": bare_float64,
}


def make_batches(kind: str, n_batches: int, shape, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(*shape, generator=g)
        x = x * 20 - 30 if kind == "dB" else x + 10000
        out.append(x.to(device))
    return out


def numpy_reference(batches, red_dims):
    a = np.concatenate([b.cpu().double().numpy() for b in batches])
    return a.mean(axis=red_dims, keepdims=True), a.std(axis=red_dims, keepdims=True)


def rel_err(got, ref) -> float:
    got = got.detach().double().cpu().numpy()
    return float(np.max(np.abs(got - ref) / np.abs(ref)))


def time_methods(batches, red_dims, repeats, device):
    times = {k: [] for k in METHODS}
    for _ in range(repeats):
        for k, f in METHODS.items():  # interleaved, so every method sees the same machine load
            sync(device)
            t = time.perf_counter()
            f(batches, red_dims)
            sync(device)
            times[k].append(time.perf_counter() - t)
    return times


def current_rss_mb() -> float:
    "Resident set size now, in MB (Linux /proc; psutil elsewhere)."
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def memory_child(n_batches: int, shape, device) -> None:
    "Stream `n_batches` generated batches through collect_stats; print the RSS before and the most during."
    torch.set_num_threads(1)
    seen = []

    def stream():
        g = torch.Generator().manual_seed(0)
        for _ in range(n_batches):
            seen.append(current_rss_mb())  # after the previous batch was reduced and dropped
            yield torch.randn(*shape, generator=g).mul_(20).sub_(30).to(device), None
        seen.append(current_rss_mb())

    torch.randn(*shape).sum()  # warm up torch's kernels before the baseline
    before = current_rss_mb()
    rec = collect_stats(stream(), red_dims=(0, 1, 3), progress=False)
    print(
        json.dumps(
            {
                "batches": n_batches,
                "rss_before_mb": before,
                "rss_max_mb": max(seen),
                "peak_rss_mb": peak_rss_mb(),
                "values": rec.n_values,
            }
        )
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=8, help="batches per pass")
    p.add_argument("--shape", type=int, nargs="+", default=[64, 1, 201, 401])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-batches", type=int, default=16, help="N for the memory check (N and 4N batches)")
    p.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shape = tuple(args.shape)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(args.memory_child, shape, args.device)
        return

    print(f"machine: {machine()}")
    print(
        f"{args.batches} batches of {list(shape)} float32 ({args.batches * np.prod(shape) * 4 / 1e6:.0f} MB), device {args.device}, "
        f"{args.repeats} repeats (best / median)"
    )
    for red_dims, label in [((0, 2, 3), "global, red_dims (0, 2, 3)"), ((0, 1, 3), "per frequency bin, red_dims (0, 1, 3)")]:
        batches = make_batches("dB", args.batches, shape, args.device)
        times = time_methods(batches, red_dims, args.repeats, args.device)
        print(f"\n{label}")
        print(
            f"  {'method':<34}{'best ms/batch':>14}{'median':>9}  max rel. error vs NumPy float64 (mean, std):  dB-like    |  10000 + N(0,1)"
        )
        errors = {}
        for kind in ("dB", "offset"):
            data = batches if kind == "dB" else make_batches("offset", min(args.batches, 4), shape, args.device, seed=1)
            ref_mean, ref_std = numpy_reference(data, red_dims)
            for k, f in METHODS.items():
                mean, std = f(data, red_dims)
                errors.setdefault(k, []).append((rel_err(mean, ref_mean), rel_err(std, ref_std)))
            del data
        best = {}
        for k, t in times.items():
            best[k] = min(t) / args.batches * 1e3
            med = sorted(t)[len(t) // 2] / args.batches * 1e3
            (m1, s1), (m2, s2) = errors[k]
            print(f"  {k:<34}{best[k]:>14.1f}{med:>9.1f}  {'':<44}{m1:.0e}, {s1:.0e}  |  {m2:.0e}, {s2:.0e}")
        fsn, art, bare = (
            best["fastspecnorm collect_stats"],
            best["article StatsRecorder (float32)"],
            best["bare float64 sum/sumsq"],
        )
        exact = max(max(e) for e in errors["fastspecnorm collect_stats"]) <= 1e-6
        print(
            f"  collect_stats / article's float32 recorder: {fsn / art:.2f}x; "
            f"collect_stats / bare float64: {fsn / bare:.2f}x (goal <= 1.2: {'met' if fsn <= 1.2 * bare else 'NOT met'}); "
            f"exact to 1e-6: {'yes' if exact else 'NO'}"
        )
        del batches

    print("\nmemory: RSS of a statistics pass streaming batches from a generator (fresh process each, red_dims (0, 1, 3))")
    for n in (args.memory_batches, 4 * args.memory_batches):
        cmd = [sys.executable, __file__, "--memory-child", str(n), "--device", args.device, "--shape", *map(str, shape)]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(
            f"  {n:>4} batches ({n * np.prod(shape) * 4 / 1e9:.1f} GB streamed): RSS before the pass {out['rss_before_mb']:.0f} MB, "
            f"most during it {out['rss_max_mb']:.0f} MB (+{out['rss_max_mb'] - out['rss_before_mb']:.0f} MB); process peak {out['peak_rss_mb']:.0f} MB"
        )
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
