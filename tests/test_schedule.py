"""What a grid will do, said before it trains (`say_plan`): the runs, preset, resolved rate and
spectrogram shape, a wall-time estimate from one timed batch, and the audio cache's place and size
(issue 31 item 5)."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fastspecnorm.experiment import ExperimentConfig, prepare
from fastspecnorm.experiment.log import RunLog
from fastspecnorm.experiment.schedule import say_plan

RATE = 8000
LENGTHS = (1000, 1700, 2400, 3100)  # samples per take; the same four takes for every label


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    "3 labels x 4 takes at 8 kHz, of known lengths."
    root = tmp_path_factory.mktemp("plan") / "clips"
    rng = np.random.default_rng(0)
    for label in ("lo", "mid", "hi"):
        (root / label).mkdir(parents=True)
        for take, n in enumerate(LENGTHS):
            sf.write(root / label / f"take{take}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), RATE, subtype="PCM_16")
    return root


def _plan(clips, out, **overrides) -> tuple[str, ExperimentConfig]:
    cfg = ExperimentConfig(data=str(clips), out=out, norms=["none", "global"], seeds=[0, 1], k=2, epochs=3,
                           overrides={"bs": 4, "num_workers": 0, **overrides})  # fmt: skip
    stream = io.StringIO()
    log = RunLog(progress=False, stream=stream)
    say_plan(cfg, prepare(cfg, RunLog(quiet=True)), log)
    return stream.getvalue(), cfg


@pytest.mark.parametrize("duration", [None, 0.25])
def test_the_plan_line_says_rate_shape_runs_and_an_estimate(clips, tmp_path, duration):
    text, cfg = _plan(clips, tmp_path / "out", **({} if duration is None else {"duration": duration}))
    plan, cache = text.strip().splitlines()
    # Worked out by hand for the "own" preset: the files' 8 kHz, a window of the power of two nearest
    # 64 ms (512 samples), a quarter of it as hop, 64 mel bins; centred frames: n // hop + 1.
    n_fft = 2 ** round(math.log2(0.064 * RATE))
    hop = n_fft // 4
    assert (n_fft, hop) == (512, 128)
    if duration is None:
        frames = f"{min(LENGTHS) // hop + 1}-{max(LENGTHS) // hop + 1} frames"  # 8-25
    else:
        frames = str(int(duration * RATE) // hop + 1)  # 16
    runs = 2 * 2 * 2  # norms x folds x seeds
    assert plan.startswith(f"plan: {runs} of {runs} runs to train, preset own, 8000 Hz, n_fft 512, hop 128, "
                           f"spectrograms (1, 64, {frames}), bs 4, 3 epoch(s); about ")  # fmt: skip
    # The estimate: every run's batches (training batches of 4, the last partial one dropped, and every
    # validation batch) times the timed batch, over 3 epochs.
    folds = pd.read_csv(cfg.out / "folds.csv")["fold"]
    per_epoch = {f: (folds != f).sum() // 4 + math.ceil((folds == f).sum() / 4) for f in (1, 2)}
    batches = 3 * 2 * 2 * sum(per_epoch.values())  # epochs x norms x seeds x both folds
    found = re.search(r"about (\d+) (s|min|h) \((\d+) batches at ([0-9.e+-]+) s, one timed on cpu\)$", plan)
    assert found is not None, plan
    assert int(found[3]) == batches
    total = batches * float(found[4])
    shown = int(found[1]) * {"s": 1, "min": 60, "h": 3600}[found[2]]
    assert abs(shown - total) <= 0.5 * {"s": 1, "min": 60, "h": 3600}[found[2]] + 0.005 * total
    # The audio cache: its folder (under the test's cache root) and the size of its data file.
    where = re.fullmatch(r"audio cache: (.+), ([0-9.]+) kB for 12 clips \(fastspecnorm cache --info .*\)", cache)
    assert where is not None, cache
    data = list(Path(where[1]).glob("data-*.bin"))
    assert len(data) == 1 and float(where[2]) == pytest.approx(data[0].stat().st_size / 1e3, abs=0.05)


def test_a_finished_grid_times_nothing(clips, tmp_path, monkeypatch):
    from fastspecnorm.experiment import run_experiment
    from fastspecnorm.experiment import train as train_module

    def fake(source, norm, fold, seed, *args, **kwargs):
        return {"norm": norm, "fold": int(fold), "seed": seed, "epochs": 3, "accuracy": 0.5, "seconds": 0.0}

    monkeypatch.setattr(train_module, "train_one", fake)
    cfg = ExperimentConfig(data=str(clips), out=tmp_path / "out", norms=["none"], k=2, epochs=3,
                           overrides={"bs": 2, "num_workers": 0})  # fmt: skip
    run_experiment(cfg, RunLog(quiet=True))
    stream = io.StringIO()
    say_plan(cfg, prepare(cfg, RunLog(quiet=True)), RunLog(progress=False, stream=stream))
    assert stream.getvalue().strip() == (
        "plan: 0 of 2 runs to train, preset own, 8000 Hz, n_fft 512, hop 128, spectrograms (1, 64, 8-25 frames), bs 2, 3 epoch(s)"
    )
