"""How the comparison reports progress (`RunLog`): fastai's bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["RunLog"]


@dataclass
class RunLog:
    """Where and how much the comparison prints.

    On a terminal, training shows fastai's progress bars. Redirected to a file (nohup, SLURM, CI),
    nothing is redrawn: one line per epoch and one per run. `quiet` keeps one line per run. Results
    go to stdout; warnings go to stderr (Python's `warnings`).

    Args:
        progress: fastai's progress bars (None: when stdout is a terminal).
        quiet: one line per run, nothing else.
        prefix: put before every line (e.g. a `--devices` worker's device).
        stream: where lines go (default: stdout at the time of printing).
    """

    progress: bool | None = None
    quiet: bool = False
    prefix: str = ""
    stream: TextIO | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.progress is None:
            self.progress = bool(getattr(self.stream or sys.stdout, "isatty", lambda: False)()) and not self.quiet

    def _print(self, message: str) -> None:
        print(f"{self.prefix}{message}", file=self.stream or sys.stdout, flush=True)

    def info(self, message: str) -> None:
        """Print a line about what is being done (not with `quiet`).

        Args:
            message: the line, without the prefix.
        """
        if not self.quiet:
            self._print(message)

    def result(self, message: str) -> None:
        """Print a line with a result: always printed, also with `quiet`.

        Args:
            message: the line, without the prefix.
        """
        self._print(message)

    def __call__(self, message: str) -> None:  # the runner's old `log=print` callables
        self.info(message)

    def epoch_logger(self, recorder, n_epochs: int):
        """A fastai `learn.logger` printing one line per epoch (nothing with `quiet`).

        Args:
            recorder: the Learner's `Recorder`, whose `metric_names` name the logged values
                (`[epoch, train_loss, valid_loss, metrics..., time]`).
            n_epochs: the epochs of the fit, shown as "epoch 3/8".

        Returns:
            A callable taking one row of the Recorder's values; it ignores the header row.
        """

        def log(values) -> None:
            values, names = list(values), list(recorder.metric_names)
            if len(values) != len(names) or values == names or self.quiet:
                return
            named = dict(zip(names, values, strict=True))
            parts = [
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in named.items() if k not in ("epoch", "time")
            ]
            self._print(f"    epoch {int(named.get('epoch', 0)) + 1}/{n_epochs}: {', '.join(parts)} ({named.get('time', '')})")

        return log
