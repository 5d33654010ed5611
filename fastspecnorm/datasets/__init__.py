"""The datasets: recipes over one loader factory (`sources`), ESC-50 and its validator, FSDD, your own
audio (a folder per label, a CSV) and a synthetic ESC-50-layout generator for tests and the quick start.

Each dataset module registers its recipe in `sources.RECIPES` when imported here; a new dataset is
one module that calls `sources.register`, and its line below.
"""

from . import esc50, fsdd, own  # noqa: F401  (registers their recipes)
