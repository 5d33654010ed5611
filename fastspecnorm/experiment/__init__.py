"""The experiment tooling on top of the library and datasets: the command line (cli), preparing a
grid (grid), scheduling its runs (schedule), training one run (train), `compare` from Python (api),
the results store safe for many writers (store), the data fingerprint (fingerprint), summary
statistics (summary) and plots (plots).

Names are imported when first used, so the command line starts without torch or fastai.
"""

from importlib import import_module

_NAMES = {
    "ExperimentConfig": ".grid",
    "prepare": ".grid",
    "main": ".cli",
    "run_experiment": ".schedule",
    "summarize_out": ".schedule",
    "compare": ".api",
    "RunStore": ".store",
    "Summary": ".summary",
    "summarize": ".summary",
    "write_summary": ".summary",
    "comparison_figure": ".plots",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(import_module(_NAMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
