"""Datasets on the library: ESC-50 (reading and validating its table, presets, DataLoaders) and a
synthetic ESC-50-layout generator for tests and the quick start."""
