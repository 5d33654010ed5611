"""Data pipeline throughput: clips/s of model-ready, normalized spectrogram batches, epoch 2 onwards.

fastspecnorm (decoded-audio cache -> crop -> batch waveform standardization -> AudioToSpec ->
SpecNormalize, all batch work in `after_batch` on the batch's device) against a faithful
re-implementation of fastaudio 1.0's path as the reference article used it (read the 44.1 kHz WAV
per item, polyphase-resample it per item with scipy `resample_poly`, crop, standardize it per
item, then a batch `Spectrogram` + `AmplitudeToDB` + `Normalize`). Both run through the same
fastai DataLoader machinery, batch size, worker count and ESC-50-layout folder.

    python benchmarks/pipeline_throughput.py                       # synthetic 400 clips, blog preset, CPU
    python benchmarks/pipeline_throughput.py --data ~/ESC-50-master --device cuda

Goal on 2 CPU cores: fastspecnorm at least 5x fastaudio's path (same torch threads, no worker processes).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads stall on a shared machine

import argparse
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio
from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
from fastai.data.transforms import ColReader
from fasttransform import Transform
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_dir, machine, sync, synthetic_esc50  # noqa: E402

from fastspecnorm import AudioSpectrogram, AudioTensor, SpecNormalize, esc50_dataloaders, get_settings, read_esc50_meta  # noqa: E402
from fastspecnorm.callback import install_normalizer  # noqa: E402
from fastspecnorm.data import CrossValidationSplitter  # noqa: E402

# Fixed statistics for the final normalization of both paths (their values do not affect speed).
MEAN_DB, STD_DB = -30.0, 20.0


# ---------------------------------------------------------------------------------------------
# fastaudio 1.0.2's path, re-implemented on the current stack (fastaudio itself no longer imports:
# see ANCHORS.md section 3). Audio is read with soundfile instead of torchaudio.load, which needs
# FFmpeg from torchaudio 2.9 on; both decode a WAV file to float32 in about a millisecond.


def fa_open(path) -> AudioTensor:
    "fastaudio `AudioTensor.create`: the file as float32 `(channels, samples)` at its own rate."
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return AudioTensor(torch.from_numpy(np.ascontiguousarray(data.T)), sr=sr)


class FaResample(Transform):
    "fastaudio `Resample`: scipy polyphase resampling of each item (float64 inside), back to float32."

    order = 1

    def __init__(self, sr_new: int):
        super().__init__()
        self.sr_new = sr_new

    def encodes(self, ai: AudioTensor) -> AudioTensor:
        from scipy.signal import resample_poly

        if ai.sr == self.sr_new:
            return ai
        g = math.gcd(ai.sr, self.sr_new)
        out = resample_poly(ai.numpy(), self.sr_new // g, ai.sr // g, axis=-1)
        return AudioTensor(torch.from_numpy(out.astype(np.float32)), sr=self.sr_new)


class FaDownmixMono(Transform):
    "fastaudio `DownmixMono`."

    order = 2

    def encodes(self, ai: AudioTensor) -> AudioTensor:
        return ai if ai.shape[0] == 1 else AudioTensor(ai.as_subclass(Tensor).mean(0, keepdim=True), sr=ai.sr)


class FaResizeSignal(Transform):
    "fastaudio `ResizeSignal`: random crop (or zero pad) to `duration_ms`."

    order = 3

    def __init__(self, duration_ms: int):
        super().__init__()
        self.duration_ms = duration_ms

    def encodes(self, ai: AudioTensor) -> AudioTensor:
        n = int(self.duration_ms / 1000 * ai.sr)
        length = ai.shape[-1]
        if length > n:
            start = random.randint(0, length - n)
            return AudioTensor(ai.as_subclass(Tensor)[:, start : start + n], sr=ai.sr)
        if length < n:
            return AudioTensor(torch.nn.functional.pad(ai.as_subclass(Tensor), (0, n - length)), sr=ai.sr)
        return ai


class FaClipNormalize(Transform):
    "The article's per-clip waveform standardization, as an item transform: `(x - mean) / std`."

    order = 4

    def encodes(self, ai: AudioTensor) -> AudioTensor:
        x = ai.as_subclass(Tensor)
        return AudioTensor((x - x.mean()) / x.std(), sr=ai.sr)


class FaAudioToSpec(Transform):
    "fastaudio `AudioToSpec.from_cfg(AudioConfig.BasicSpectrogram())`: torchaudio Spectrogram + AmplitudeToDB on the batch."

    order = 60

    def __init__(self, n_fft: int = 400, hop_length: int = 200, n_mels: int | None = None, sample_rate: int = 16000):
        super().__init__()
        if n_mels:
            spec = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
            )
        else:
            spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop_length)
        self.pipe = torch.nn.Sequential(spec, torchaudio.transforms.AmplitudeToDB())

    def encodes(self, ai: AudioTensor) -> AudioSpectrogram:
        x = ai.as_subclass(Tensor)
        if next(iter(self.pipe.buffers())).device != x.device:
            self.pipe = self.pipe.to(x.device)
        return AudioSpectrogram(self.pipe(x).detach())


class FaNormalize(Transform):
    "The article's dataset-statistics normalization on the batch."

    order = 99

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def encodes(self, x: AudioSpectrogram) -> AudioSpectrogram:
        return (x - self.mean) / self.std


def fastaudio_dls(root: Path, preset: str, bs: int, num_workers: int | None, device):
    s = get_settings(preset)
    df = read_esc50_meta(root)
    vocab = df.sort_values("target").drop_duplicates("category")["category"].tolist()
    dblock = DataBlock(
        blocks=(TransformBlock(type_tfms=fa_open), CategoryBlock(vocab=vocab, sort=False)),
        get_x=ColReader("filename", pref=root / "audio"),
        get_y=ColReader("category"),
        splitter=CrossValidationSplitter("fold", 1),
        item_tfms=[FaResample(s.sample_rate), FaDownmixMono(), FaResizeSignal(int(s.duration * 1000)), FaClipNormalize()],
        batch_tfms=[FaAudioToSpec(s.n_fft, s.hop_length, s.n_mels, s.sample_rate), FaNormalize(MEAN_DB, STD_DB)],
    )
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    return dblock.dataloaders(df, bs=bs, device=device, **kwargs)


def fastspecnorm_dls(root: Path, preset: str, bs: int, num_workers: int | None, device, cache_dir: Path):
    t = time.perf_counter()
    dls = esc50_dataloaders(root, valid_fold=1, bs=bs, preset=preset, device=device, num_workers=num_workers, cache=cache_dir)
    build_s = time.perf_counter() - t
    # inplace=True: as StatsCallback installs it right after AudioToSpec (the values do not change)
    install_normalizer(
        dls, SpecNormalize(torch.tensor(MEAN_DB).reshape(1, 1, 1, 1), torch.tensor(STD_DB).reshape(1, 1, 1, 1), inplace=True)
    )
    return dls, build_s


def cpu_seconds() -> float:
    "User + system CPU time of this process and of its reaped children (DataLoader workers end with each epoch)."
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def alternating_epochs(loaders: dict, epochs: int, device) -> dict[str, dict]:
    """Run `epochs` epochs of every loader, alternating loaders epoch by epoch, so both pipelines
    see the same machine load (whole epochs, because worker processes prefetch in the background).
    The first epoch of each warms up (page cache, allocator, worker start) and is not counted.
    Returns per loader: clips, seconds, CPU seconds (this process and its workers), per-epoch
    clips/s and the batch shape."""
    res = {k: {"n": 0, "wall": 0.0, "cpu": 0.0, "rates": [], "shape": ()} for k in loaders}
    for epoch in range(epochs):
        for k, dl in loaders.items():
            n, shape = 0, ()
            sync(device)
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            for xb, _ in dl:
                n, shape = n + xb.shape[0], tuple(xb.shape)
            sync(device)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            r = res[k]
            r["rates"].append(n / wall)
            if epoch > 0:
                r["n"], r["wall"], r["cpu"], r["shape"] = r["n"] + n, r["wall"] + wall, r["cpu"] + cpu, shape
    return res


def stage_times(dl, epochs: int, device) -> dict[str, float]:
    """Median over `epochs` epochs of the ms per clip of each of `dl`'s batch transforms, and of
    everything before them ("per-item pipeline": the item transforms, collation, device transfer),
    timed by running the batch transforms one by one on the loader's raw batches."""
    from fasttransform import Pipeline

    fs, after_batch = list(dl.after_batch.fs), dl.after_batch
    per_epoch = []
    try:
        dl.after_batch = Pipeline([])
        for _ in range(epochs):
            t, n = dict.fromkeys(["per-item pipeline", *(type(f).__name__ for f in fs)], 0.0), 0
            it = iter(dl)
            while True:
                t0 = time.perf_counter()
                b = next(it, None)
                sync(device)
                t["per-item pipeline"] += time.perf_counter() - t0
                if b is None:
                    break
                n += b[0].shape[0]
                for f in fs:
                    t0 = time.perf_counter()
                    b = f(b, split_idx=0)
                    sync(device)
                    t[type(f).__name__] += time.perf_counter() - t0
            per_epoch.append({k: v / n * 1e3 for k, v in t.items()})
    finally:
        dl.after_batch = after_batch
    return {k: float(np.median([e[k] for e in per_epoch])) for k in per_epoch[0]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="ESC-50-layout folder (default: a synthetic one, 44.1 kHz 5 s clips)")
    p.add_argument("--clips", type=int, default=400, help="clips in the synthetic dataset (10 classes)")
    p.add_argument("--preset", default="blog", choices=["blog", "quick"])
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5, help="epochs per pipeline; the first is not timed")
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers for both paths (default 0: on 2 cores, workers compete with the batch transforms' threads)",
    )
    p.add_argument(
        "--fastaudio-workers",
        type=int,
        default=None,
        help="DataLoader workers for the fastaudio path only (default: --num-workers); its per-item decoding is what workers parallelize",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared 2-core machine, 2 threads stall on each other's "
        "cores, which punishes the many small per-item operations of the fastaudio path)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--stages", action="store_true", help="then time fastspecnorm's loader stage by stage (4 epochs, median)")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="audio cache folder (default: a fresh one in the benchmark folder)"
    )
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    root = args.data.expanduser() if args.data else synthetic_esc50(n_classes=10, clips_per_class=max(1, args.clips // 10))
    cache_dir = args.cache_dir or bench_dir() / "audio-cache"
    if args.cache_dir is None:
        shutil.rmtree(cache_dir, ignore_errors=True)  # time a cold build once
    n_train = int((read_esc50_meta(root)["fold"] != 1).sum())
    print(
        f"data: {root} ({n_train} training clips), preset {args.preset!r}, bs {args.bs}, device {args.device}, "
        f"num_workers {args.num_workers} (fastaudio path: {args.num_workers if args.fastaudio_workers is None else args.fastaudio_workers}), "
        f"torch threads {args.threads}, {args.epochs} epochs (first untimed)"
    )

    dls, build_s = fastspecnorm_dls(root, args.preset, args.bs, args.num_workers, args.device, cache_dir)
    fa_workers = args.num_workers if args.fastaudio_workers is None else args.fastaudio_workers
    fa = fastaudio_dls(root, args.preset, args.bs, fa_workers, args.device)
    loaders = {"fastaudio path (decode+resample per item)": fa.train, "fastspecnorm (cached audio, batch work)": dls.train}
    res = alternating_epochs(loaders, args.epochs, args.device)

    print(f"\none-off cache build (DataLoaders creation included): {build_s:.1f} s")
    print(f"{'pipeline':<44}{'clips/s':>9}{'CPU ms/clip':>13}   per-epoch clips/s (first untimed)   batch shape")
    rates = {}
    for k, r in res.items():
        rates[k] = (r["n"] / r["wall"], r["cpu"] / r["n"] * 1e3)
        print(f"{k:<44}{rates[k][0]:>9.0f}{rates[k][1]:>13.2f}   {' '.join(f'{x:.0f}' for x in r['rates']):<34}  {r['shape']}")
    (fa_rate, fa_cpu), (fsn_rate, fsn_cpu) = rates.values()
    ratio = fsn_rate / fa_rate
    print(
        f"ratio fastspecnorm / fastaudio: {ratio:.1f}x in clips/s, {fa_cpu / fsn_cpu:.1f}x in CPU time per clip "
        f"(goal on 2 CPU cores: >= 5x clips/s: {'met' if ratio >= 5 else 'NOT met'})"
    )
    if args.stages:
        stages = stage_times(dls.train, 4, args.device)
        print(
            "fastspecnorm stage by stage, ms per clip (median of 4 epochs): "
            + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            + f"; sum {sum(stages.values()):.2f}"
        )
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
