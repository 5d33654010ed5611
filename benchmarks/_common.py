"""Helpers shared by the benchmark scripts: machine description, synthetic data, timing."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def machine() -> str:
    "One line describing where the numbers come from."
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{platform.node()}: {cores} CPU cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {allocator()}, load average {load}"
    )


def allocator() -> str:
    """The memory allocator settings in this process's environment (they change CPU timings: with
    glibc's defaults, buffers over 32 MB are mapped anew at each allocation and zero-filled by the
    kernel page by page; see benchmarks/README.md)."""
    names = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_CONF")
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_") or k in names]
    return "allocator " + (" ".join(settings) if settings else "defaults")


def bench_dir() -> Path:
    "Where benchmarks keep generated data and caches: $FASTSPECNORM_BENCH_DIR or a folder in the temp dir."
    d = Path(os.environ.get("FASTSPECNORM_BENCH_DIR") or Path(tempfile.gettempdir()) / "fastspecnorm-bench")
    d.mkdir(parents=True, exist_ok=True)
    return d


def synthetic_esc50(n_classes: int = 10, clips_per_class: int = 40, sample_rate: int = 44100) -> Path:
    "An ESC-50-layout folder of 5 s, 44.1 kHz, 16-bit clips (generated once, then reused)."
    from fastspecnorm.datasets.synthetic import make_synthetic_esc50

    root = bench_dir() / f"esc50-synthetic-{n_classes}x{clips_per_class}-{sample_rate}"
    t = time.perf_counter()
    make_synthetic_esc50(root, n_classes=n_classes, clips_per_class=clips_per_class, sample_rate=sample_rate)
    dt = time.perf_counter() - t
    if dt > 1:
        print(f"generated {n_classes * clips_per_class} synthetic clips in {root} ({dt:.0f} s)")
    return root


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mb() -> float:
    "Peak resident set size of this process so far, in MB (Linux: ru_maxrss is in KiB)."
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
