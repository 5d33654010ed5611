"""The ESC-50 notebook executes top to bottom on a tiny synthetic dataset."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="install the test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="install the test extra: pip install -e '.[test]'")

NOTEBOOK = Path(__file__).resolve().parents[1] / "nbs" / "esc50_normalization.ipynb"


def test_notebook_runs(tmp_path, monkeypatch):
    env = {
        "FSN_DATA": "synthetic",
        "FSN_PRESET": "quick",
        "FSN_EPOCHS": "1",
        "FSN_NORMS": "none global",
        "FSN_OUT": str(tmp_path / "out"),
        "FSN_SYNTHETIC_CLASSES": "3",
        "FSN_SYNTHETIC_CLIPS": "5",
        "FSN_BS": "4",
        "MPLBACKEND": "Agg",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    out = tmp_path / "out"
    assert (out / "results.csv").is_file() and (out / "summary.png").is_file()
    # the statistics cell printed both global and per-frequency statistics
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "global: mean" in text and "per-frequency statistics of shape (1, 1, 64, 1)" in text
    assert os.environ["FSN_DATA"] == "synthetic"
