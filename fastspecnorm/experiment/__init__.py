"""The experiment tooling on top of the library and datasets: the grid runner and command line,
the results store, summary statistics and plots."""

from .runner import ExperimentConfig, main, run_experiment

__all__ = ["ExperimentConfig", "main", "run_experiment"]
