"""The comparison's experiment tooling on top of the library and datasets; names are imported when
first used, so the command line starts without torch or fastai.

Submodules: `cli` (the command line), `grid` (preparing a grid), `schedule` (scheduling its runs),
`train` (one run), `api` (`compare`), `store` (the results store), `fingerprint` (of the data),
`summary` (the statistics), `plots` and `report` (summary.md and summary.png).
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
    "write_summary": ".report",
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
