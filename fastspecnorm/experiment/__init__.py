"""The experiment tooling on top of the library and datasets: the grid runner and command line
(runner), the results store safe for many writers (store), the data fingerprint (fingerprint),
summary statistics (summary) and plots (plots)."""

from .plots import comparison_figure
from .runner import ExperimentConfig, main, run_experiment, summarize_out
from .store import RunStore
from .summary import Summary, summarize, write_summary

__all__ = ["ExperimentConfig", "RunStore", "Summary", "comparison_figure", "main", "run_experiment", "summarize", "summarize_out", "write_summary"]
