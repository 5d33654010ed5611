"""The ESC-50 notebook executes top to bottom on a tiny synthetic dataset and shows what it says.

Pinned on the executed notebook's outputs (what a reader sees): figures as image/png outputs
(the clip, the batch, the statistics plot, the summary plot, which is `OUT/summary.png` itself),
the statistics printed with their shapes, and the results table whose means are those of
`OUT/results.csv`, recomputed here with pandas.
"""

import base64
from pathlib import Path

import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat", reason="install the test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="install the test extra: pip install -e '.[test]'")

NOTEBOOK = Path(__file__).resolve().parents[1] / "nbs" / "esc50_normalization.ipynb"
NORMS = ["none", "global"]


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_notebook_runs_and_shows_figures_statistics_and_results(tmp_path, monkeypatch):
    # the notebook's parameters cell reads these (its defaults are the full CPU comparison)
    env = {
        "FSN_DATA": "synthetic",
        "FSN_PRESET": "quick",
        "FSN_EPOCHS": "1",
        "FSN_NORMS": " ".join(NORMS),
        "FSN_OUT": str(tmp_path / "out"),
        "FSN_SYNTHETIC_CLASSES": "3",
        "FSN_SYNTHETIC_CLIPS": "5",
        "FSN_BS": "4",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # figures as image/png outputs, as in Jupyter
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outs = outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]

    # figures: the clip, the batch, the statistics, the summary plot (at least four PNG images)
    pngs = [base64.b64decode(o["data"]["image/png"]) for o in outs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 4 and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    out = tmp_path / "out"
    assert (out / "summary.png").read_bytes() in pngs  # the summary figure is shown

    # the statistics cell: global (one value) and per-frequency (64 mel bins of the quick preset)
    text = "".join(o.get("text", "") for o in outs)
    assert "global: mean" in text and "per-frequency statistics of shape (1, 1, 64, 1)" in text

    # the results table: one row per normalization, with the mean accuracy of results.csv
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["norm"]) == sorted(NORMS) and results["accuracy"].between(0, 1).all()
    html = [o["data"]["text/html"] for o in outs if "text/html" in o.get("data", {})]
    tables = [h for h in html if all(f">{n}<" in h for n in NORMS) and "mean" in h]
    assert tables, "no table of the normalizations was displayed"
    for norm, acc in results.groupby("norm")["accuracy"].mean().items():
        assert f"{acc:.4f}" in tables[0], (norm, acc)
