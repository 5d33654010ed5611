"""The datasets: recipes over one loader factory (`sources`), ESC-50 and its validator, FSDD, and a
synthetic ESC-50-layout generator for tests and the quick start."""
