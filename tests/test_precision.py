"""Training precision (`audio_learner(precision=...)`, `BF16Autocast`, `resolve_precision`, `--precision`).

The bf16 path is checked by what it does, on any CPU (bf16 autocast runs everywhere, natively
or emulated): the model's convolutions compute in bfloat16 during training while the weights,
the predictions, the dataset statistics and the normalized batches stay float32, equal to an
fp32 run's; `auto` follows the processor's own feature flags, read here independently.
"""

import warnings
from pathlib import Path

import pytest
import torch
from fastai.learner import load_learner

from fastspecnorm import BF16Autocast, StatsCallback, audio_learner, bf16_native, esc50_dataloaders, resolve_precision
from fastspecnorm.experiment.cli import parse_args

TINY = {"preset": "quick", "bs": 4, "num_workers": 0, "n_mels": 32}


def _dls(root):
    return esc50_dataloaders(root, valid_fold=1, **TINY)


def _cpu_flags() -> set[str]:
    "The CPU's feature flags as Linux lists them (empty elsewhere)."
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return set()
    return {
        f for line in path.read_text().splitlines() if line.startswith(("flags", "Features")) for f in line.split(":")[1].split()
    }


def test_resolve_precision_values_and_auto_follows_the_cpu_flags():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    if Path("/proc/cpuinfo").is_file():
        assert bf16_native("cpu") is native
        assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    with pytest.raises(ValueError, match="fp32.*bf16.*auto"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="precision"):
        audio_learner(object(), precision="half")


def test_bf16_trains_with_bf16_convolutions_and_float32_everything_else(tiny_esc50):
    dls = _dls(tiny_esc50)
    learn = audio_learner(dls, cbs=StatsCallback(), precision="bf16")
    assert any(isinstance(cb, BF16Autocast) for cb in learn.cbs)
    seen = {}

    def record(module, inputs, output):
        seen.setdefault("conv", output.dtype)

    first_conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = first_conv.register_forward_hook(record)
    learn.fit(1)
    handle.remove()
    assert seen["conv"] == torch.bfloat16  # the forward pass ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # weights stay float32
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(torch.tensor(learn.recorder.values[-1][:2])).all()  # train and valid loss
    preds, targets = learn.get_preds()
    assert preds.dtype == torch.float32 and preds.shape == (len(dls.valid_ds), dls.c)

    # The statistics pass ran outside autocast: the same float32 statistics as an fp32 run's.
    stats = next(cb for cb in learn.cbs if isinstance(cb, StatsCallback)).stats_recorder
    fp32 = audio_learner(_dls(tiny_esc50), cbs=StatsCallback(), precision="fp32")
    fp32.fit(1)
    reference = next(cb for cb in fp32.cbs if isinstance(cb, StatsCallback)).stats_recorder
    assert stats.mean.dtype == torch.float32
    assert torch.equal(stats.mean, reference.mean) and torch.equal(stats.std, reference.std)
    assert not any(isinstance(cb, BF16Autocast) for cb in fp32.cbs)
    assert first_conv.weight.dtype == torch.float32


def test_bf16_learner_exports_loads_and_predicts(tiny_esc50, tmp_path):
    dls = _dls(tiny_esc50)
    learn = audio_learner(dls, precision="bf16")
    learn.fit(1)
    learn.export(tmp_path / "model.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fastai's notice that load_learner unpickles
        loaded = load_learner(tmp_path / "model.pkl")
    label, index, probs = loaded.predict(sorted((tiny_esc50 / "audio").iterdir())[0])
    assert probs.dtype == torch.float32 and probs.shape == (dls.c,) and abs(float(probs.sum()) - 1.0) < 1e-4
    assert label in dls.vocab


def test_precision_option_of_the_command(tmp_path):
    cfg = parse_args(["--data", "synthetic", "--out", str(tmp_path / "o"), "--precision", "bf16"])
    assert cfg.overrides["precision"] == "bf16"
    assert "precision" not in parse_args(["--data", "synthetic", "--out", str(tmp_path / "o")]).overrides
    with pytest.raises(SystemExit):
        parse_args(["--data", "synthetic", "--out", str(tmp_path / "o"), "--precision", "fp16"])


def test_precision_is_part_of_the_experiment_identity_and_fp32_keeps_old_ids(tiny_esc50, tmp_path):
    "bf16 is another experiment; fp32 (the default) writes no `precision`, so grids recorded before it keep their ids."
    from fastspecnorm.experiment import ExperimentConfig, prepare
    from fastspecnorm.experiment.log import RunLog

    def prep(out, **overrides):
        cfg = ExperimentConfig(data=str(tiny_esc50), out=tmp_path / out, norms=["none"], overrides={"bs": 4, **overrides})
        return prepare(cfg, RunLog(quiet=True))

    plain, fp32, bf16, auto = prep("a"), prep("b", precision="fp32"), prep("c", precision="bf16"), prep("d", precision="auto")
    assert "precision" not in plain.experiment["settings"] and plain.experiment_id == fp32.experiment_id
    assert bf16.experiment["settings"]["precision"] == "bf16" and bf16.experiment_id != plain.experiment_id
    expected = resolve_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")
    assert auto.settings.precision == expected  # the identity records what is computed, never "auto"
    assert auto.experiment_id == (bf16 if expected == "bf16" else plain).experiment_id
