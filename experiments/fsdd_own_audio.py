"""Your own audio on real recordings: the Free Spoken Digit Dataset through `AudioDataLoaders.from_df`.

Takes the table from `fastspecnorm.datasets.fsdd.fsdd_table` (columns filename, label = digit,
speaker, take, fold), holds out one speaker (`fold_col="speaker"`), keeps each clip's own length
(`duration=None`) at the files' own rate (`sample_rate=None`: 8 kHz), and reports

1. training-set spectrogram statistics (dB) over the clips' valid frames (what `StatsCallback`
   uses) against the same batches with their padding counted, global and per frequency bin;
2. the validation accuracy after a few epochs of xResNet18 with per-frequency statistics
   (`StatsCallback(red_dims=(0, 1, 3))`).

    python experiments/fsdd_own_audio.py --data path/to/fsdd --epochs 4
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from fastspecnorm import AudioDataLoaders, StatsCallback, audio_learner, collect_stats, stats_loader
from fastspecnorm.datasets.fsdd import FSDD_SPEAKERS, fsdd_table, resolve_fsdd


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder holding recordings/ (or its parent)")
    ap.add_argument("--valid-speaker", default="theo", choices=FSDD_SPEAKERS)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    warnings.filterwarnings("ignore", category=UserWarning)

    root = resolve_fsdd(args.data)  # fsdd_table's filenames are relative to this folder
    df = fsdd_table(root)
    spec = {"n_fft": 256, "hop_length": 80, "n_mels": 40}  # 32 ms windows, 10 ms hop at 8 kHz
    dls = AudioDataLoaders.from_df(df, path=root, fn_col="filename", label_col="label", fold_col="speaker",
                                   valid_fold=args.valid_speaker, sample_rate=None, bs=args.bs, spec=spec)  # fmt: skip
    print(
        f"{len(dls.train.items)} training / {len(dls.valid.items)} validation clips ({args.valid_speaker} held out), {dls.sample_rate} Hz"
    )

    def stats(red_dims, count_padding: bool):
        mask_fn = (lambda x: torch.ones_like(x, dtype=torch.bool)) if count_padding else None
        return collect_stats(stats_loader(dls.train, shuffle=False), red_dims=red_dims, progress=False, mask_fn=mask_fn)

    valid_g, padded_g = stats((0, 2, 3), False), stats((0, 2, 3), True)
    valid_b, padded_b = stats((0, 1, 3), False), stats((0, 1, 3), True)
    share = 1 - valid_g.count.item() / padded_g.count.item()
    diff = (padded_b.mean - valid_b.mean).abs().flatten()
    print(f"padding: {share:.1%} of the training frames (batches of {args.bs} padded to their longest clip)")
    print(f"global, valid frames only:  mean {valid_g.mean.item():.1f} dB, std {valid_g.std.item():.1f} dB")
    print(f"global, padding counted:    mean {padded_g.mean.item():.1f} dB, std {padded_g.std.item():.1f} dB")
    print(f"per bin: mean off by {diff.mean():.1f} dB on average (max {diff.max():.1f} dB) when padding counts")

    learn = audio_learner(dls, cbs=StatsCallback(red_dims=(0, 1, 3)))
    start = time.perf_counter()
    with learn.no_bar():
        learn.fit_one_cycle(args.epochs)
    acc = float(learn.recorder.values[-1][2])
    print(
        f"accuracy after {args.epochs} epochs (per-frequency statistics, seed {args.seed}): {acc:.1%} ({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
