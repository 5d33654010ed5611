"""How much data the dataset statistics need, on real speech (FSDD).

The reference blog says 10-20% of a large training set gives stable statistics. This measures it on
the Free Spoken Digit Dataset with the preset-"fsdd" loaders (8 kHz, each clip at its own length, 40
mel bins, dB): for global (`red_dims=(0, 2, 3)`) and per-frequency (`red_dims=(0, 1, 3)`) statistics
over valid frames only (padding never counts), the statistics of random subsets of 5%, 10% and 20%
of the training CLIPS (several seeds) against those of all training clips.

One pass over the training split stores each clip's float64 moments (count, mean, M2 per frequency
bin and over the whole clip, `functional.masked_moments` with the batch's `valid_mask`); a subset's
statistics are then the exact merge (`functional.merge_moments`) of its clips' moments, equal to
`collect_stats` over those clips alone. The full-set statistics come from `collect_stats` over the
same batches, once, and the merge of every clip is checked against them.

    python experiments/fsdd_stats_fraction.py --data path/to/fsdd --fold 1

Prints a markdown table: per statistic and fraction, the largest absolute error of the mean over
bins (dB), the largest relative error of the std over bins, and the largest mean error in units of
that bin's full-set std (what the shift does to standardized inputs); the median and the maximum
over seeds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from fastspecnorm import collect_stats, stats_loader, valid_mask
from fastspecnorm.datasets.fsdd import FSDD_SPEAKERS, fsdd_dataloaders
from fastspecnorm.functional import Moments, masked_moments, merge_moments, moments_std

STATS = {"global": (0, 2, 3), "per-frequency": (0, 1, 3)}


def clip_moments(batches: Iterable, red_dims: Sequence[int]) -> Moments:
    """Float64 moments of each clip, over its valid frames only, in loader order.

    batches: iterable of `(x, ...)` with x an `AudioSpectrogram` `(batch, channels, freq, time)`,
    optionally carrying `lengths` (valid frames per item; without it every frame counts).
    red_dims: the statistic's reduction dimensions, which include 0 (the batch); each clip is reduced
    over the others, e.g. `(0, 2, 3)` -> `(clips, channels, 1, 1)`, `(0, 1, 3)` -> `(clips, 1, freq, 1)`.
    """
    if 0 not in red_dims:
        raise ValueError(f"red_dims must reduce the batch dimension 0 (statistics over clips), got {tuple(red_dims)}")
    per_clip = tuple(d for d in red_dims if d != 0)
    parts = []
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        parts.append(masked_moments(x, per_clip, valid_mask(x)))
    if not parts:
        raise ValueError("clip_moments got no batches")
    return Moments(*(torch.cat([getattr(p, f) for p in parts]) for f in Moments._fields))


def merge_clips(moments: Moments, clips: Sequence[int]) -> Moments:
    """The exact moments of the clips `clips` (indices into `moments`' first dimension) together,
    keepdim shape `(1, ...)` as `StatsRecorder` gives. Chan's merge (`merge_moments`) applied
    pairwise, all pairs at once: log2(len(clips)) vectorized steps instead of one per clip."""
    if len(clips) == 0:
        raise ValueError("merge_clips needs at least one clip index")
    idx = torch.as_tensor(np.asarray(clips, dtype=np.int64))
    m = Moments(*(t[idx] for t in moments))
    while m.count.shape[0] > 1:
        n = m.count.shape[0]
        pairs = merge_moments(Moments(*(t[0 : n - 1 : 2] for t in m)), Moments(*(t[1:n:2] for t in m)))
        # an odd clip out waits for the next round
        m = pairs if n % 2 == 0 else Moments(*(torch.cat([p, t[n - 1 :]]) for p, t in zip(pairs, m, strict=True)))
    return m


def subset_errors(sub: Moments, full_mean: torch.Tensor, full_std: torch.Tensor) -> dict[str, float]:
    """Largest errors over bins of a subset's statistics against the full set's: `mean_db` the
    absolute mean error (dB), `std_rel` the relative std error, `mean_sd` the mean error divided by
    the bin's full-set std (the shift of the standardized inputs, in std units)."""
    d_mean = (sub.mean - full_mean).abs()
    return {
        "mean_db": float(d_mean.max()),
        "std_rel": float((moments_std(sub) / full_std - 1).abs().max()),
        "mean_sd": float((d_mean / full_std).max()),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="FSDD folder holding recordings/")
    ap.add_argument("--fold", type=int, default=1, help=f"held-out speaker, 1-6 = {list(FSDD_SPEAKERS)} (default 1)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(100)), help="subset seeds (default 0-99)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: leaves the other cores free)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)  # a script's own choice, never the library's
    t0 = time.perf_counter()

    dls = fsdd_dataloaders(args.data, valid_fold=args.fold, num_workers=0, device="cpu")
    # One pass: spectrogram batches in item order, every clip once, no dropped last batch.
    batches = [b[0] for b in stats_loader(dls.train, shuffle=False)]
    n_clips = sum(int(x.shape[0]) for x in batches)
    print(f"FSDD, fold {args.fold} ({FSDD_SPEAKERS[args.fold - 1]} held out): {n_clips} training clips, "
          f"{sum(int(x.lengths.sum()) if x.lengths is not None else x.shape[0] * x.shape[-1] for x in batches)} "
          f"valid frames, spectrograms {tuple(batches[0].shape[1:3])} (channels, mel bins), dB\n")  # fmt: skip

    rows = []
    for name, red_dims in STATS.items():
        full = collect_stats(batches, red_dims, progress=False)  # the reference: all training clips
        per_clip = clip_moments(batches, red_dims)
        merged = merge_clips(per_clip, range(n_clips))
        full_mean, full_std = full.moments.mean, moments_std(full.moments)  # float64
        gap = max(float((merged.mean - full_mean).abs().max()), float((moments_std(merged) / full_std - 1).abs().max()))
        if gap > 1e-9:  # both are float64 sums of the same values in another order: ~1e-13 apart
            raise RuntimeError(f"merged per-clip moments differ from collect_stats by {gap:.3g} ({name})")
        print(f"{name}: full-set mean {float(full_mean.min()):.2f} to {float(full_mean.max()):.2f} dB, "
              f"std {float(full_std.min()):.2f} to {float(full_std.max()):.2f} dB over {full_mean.numel()} value(s)")  # fmt: skip
        for frac in args.fractions:
            k = max(1, round(frac * n_clips))
            errs = []
            for seed in args.seeds:
                clips = np.sort(np.random.default_rng(seed).choice(n_clips, size=k, replace=False))
                errs.append(subset_errors(merge_clips(per_clip, clips), full_mean, full_std))
            rows.append((name, frac, k, errs))

    print(f"\n{len(args.seeds)} seeds; each cell: median / max over seeds of the largest error over bins\n")
    print("| statistics | fraction (clips) | mean error, dB | std relative error | mean error / std |")
    print("|---|---|---|---|---|")
    for name, frac, k, errs in rows:
        cells = []
        for key, fmt in (("mean_db", "{:.3f}"), ("std_rel", "{:.2%}"), ("mean_sd", "{:.3f}")):
            vals = np.array([e[key] for e in errs])
            cells.append(f"{fmt.format(np.median(vals))} / {fmt.format(vals.max())}")
        print(f"| {name} | {frac:.0%} ({k}) | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - t0:.1f} s in all")


if __name__ == "__main__":
    main()
