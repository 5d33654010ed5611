"""The comparison's runner under its old name, kept for code that imports it from here; its names now
live in `cli`, `grid`, `schedule` and `train`."""

from .cli import main, parse_args
from .grid import ExperimentConfig, Prepared, check_config, prepare
from .schedule import grid_runs, rebuild_outputs, run_experiment, run_id, summarize_out
from .train import train_one

__all__ = [
    "ExperimentConfig",
    "Prepared",
    "check_config",
    "prepare",
    "run_experiment",
    "grid_runs",
    "run_id",
    "train_one",
    "rebuild_outputs",
    "summarize_out",
    "main",
    "parse_args",
]
