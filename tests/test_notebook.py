"""The notebook executes top to bottom on a tiny synthetic dataset and shows what it says.

Pinned on the executed notebook's outputs (what a reader sees): figures as image/png outputs
(the clip, the batch, the statistics plot, the summary plot, which is `summary.png` itself),
the statistics printed with their shapes, and the results table whose means are those of
`results.csv`, recomputed here with pandas. Two paths: training its own grid (`FSN_RUN_GRID=1`,
into `FSN_OUT`) and, by default, reading a finished grid folder (`FSN_RESULTS`) without training.
The committed notebooks (the source executed on real FSDD audio, its ESC-50 version on 400 real\nESC-50 clips) are checked for errors and audio, and the ESC-50 version against its source and grid.
"""

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat", reason="install the test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="install the test extra: pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "nbs" / "fsdd_normalization.ipynb"  # the source, committed executed on FSDD
ESC50_NOTEBOOK = REPO / "nbs" / "esc50_normalization.ipynb"  # its ESC-50 version (docs/make_images.py --esc50-notebook)
NORMS = ["none", "global"]


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def execute(tmp_path, monkeypatch, env: dict) -> list[dict]:
    "Run the notebook in `tmp_path` with the FSN_* parameters in `env`; its code cells' outputs."
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures as image/png outputs, as in Jupyter
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return outputs(nb)


def pngs_of(outs) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in outs if "image/png" in o.get("data", {})]


def results_table(outs, norms) -> str:
    "The first HTML table naming every normalization in `norms` and a mean column."
    html = [o["data"]["text/html"] for o in outs if "text/html" in o.get("data", {})]
    tables = [h for h in html if all(f">{n}<" in h for n in norms) and "mean" in h]
    assert tables, "no table of the normalizations was displayed"
    return tables[0]


# The notebook's parameters cell reads FSN_* (its defaults: FSDD, reading the committed grid); the
# tests run it on a tiny generated ESC-50-layout set.
TINY_DATA = {
    "FSN_DATA": "synthetic",
    "FSN_PRESET": "quick",
    "FSN_SYNTHETIC_CLASSES": "3",
    "FSN_SYNTHETIC_CLIPS": "5",
    "FSN_BS": "4",
}


@pytest.mark.process
def test_notebook_runs_and_shows_figures_statistics_and_results(tmp_path, monkeypatch):
    env = {**TINY_DATA, "FSN_RUN_GRID": "1", "FSN_EPOCHS": "1", "FSN_NORMS": " ".join(NORMS), "FSN_OUT": str(tmp_path / "out")}
    outs = execute(tmp_path, monkeypatch, env)
    assert not [o for o in outs if o.get("output_type") == "error"]

    # figures: the clip, the batch, the statistics, the summary plot (at least four PNG images)
    pngs = pngs_of(outs)
    assert len(pngs) >= 4 and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    out = tmp_path / "out"
    assert (out / "summary.png").read_bytes() in pngs  # the summary figure is shown

    # the statistics cell: global (one value) and per-frequency (64 mel bins of the quick preset)
    text = "".join(o.get("text", "") for o in outs)
    assert "global: mean" in text and "per-frequency statistics of shape (1, 1, 64, 1)" in text

    # the results table: one row per normalization, with the mean accuracy of results.csv
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["norm"]) == sorted(NORMS) and results["accuracy"].between(0, 1).all()
    table = results_table(outs, NORMS)
    for norm, acc in results.groupby("norm")["accuracy"].mean().items():
        assert f"{acc:.4f}" in table, (norm, acc)


@pytest.mark.process
def test_notebook_reads_a_finished_grid_without_training(tmp_path, monkeypatch):
    # a finished grid folder as the runner leaves it: results.csv and summary.png (any PNG); no runs/
    grid = tmp_path / "grid"
    grid.mkdir()
    keys = [(norm, fold, seed) for fold in (1, 2) for seed in (0, 1) for norm in ("none", "global", "channel")]
    accuracies = [0.61, 0.70, 0.64, 0.55, 0.66, 0.52, 0.80, 0.83, 0.79, 0.77, 0.88, 0.81]
    rows = [(*key, acc) for key, acc in zip(keys, accuracies, strict=True)]
    results = pd.DataFrame(rows, columns=["norm", "fold", "seed", "accuracy"]).assign(epochs=6)
    results.to_csv(grid / "results.csv", index=False)
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    (grid / "summary.png").write_bytes(png)
    # the same grid with augmentations (section 4), one seed finished so far
    augmented = pd.DataFrame(
        [("none", 1, 0, 0.50), ("global", 1, 0, 0.58), ("none", 2, 0, 0.62), ("global", 2, 0, 0.66)],
        columns=["norm", "fold", "seed", "accuracy"],
    ).assign(epochs=6)
    (tmp_path / "augmented").mkdir()
    augmented.to_csv(tmp_path / "augmented" / "results.csv", index=False)
    env = {
        **TINY_DATA,
        "FSN_RESULTS": str(grid),
        "FSN_RESULTS_AUGMENT": str(tmp_path / "augmented"),
        "FSN_OUT": str(tmp_path / "out"),
    }
    outs = execute(tmp_path, monkeypatch, env)
    assert not [o for o in outs if o.get("output_type") == "error"]
    assert not (tmp_path / "out" / "results.csv").exists() and not (grid / "runs").exists()  # nothing trained

    assert png in pngs_of(outs)  # the grid's own summary.png is shown
    text = "".join(o.get("text", "") for o in outs)
    assert "12 finished runs" in text
    table = results_table(outs, ["none", "global", "channel"])
    for norm, acc in results.groupby("norm")["accuracy"].mean().items():
        assert f"{acc:.4f}" in table, (norm, acc)
    # paired differences against none, recomputed with NumPy: same fold and seed
    wide = results.pivot_table(index=["fold", "seed"], columns="norm", values="accuracy")
    html = "".join(o["data"].get("text/html", "") for o in outs if "data" in o)
    for norm in ("global", "channel"):
        assert f"{np.mean(wide[norm] - wide['none']):.4f}" in html
    # section 4: the augmented grid's paired difference (+0.08, +0.04 -> +0.06) beside the plain one, and its figure
    assert "with augmentation" in html and f"{0.06:.4f}" in html
    assert len(pngs_of(outs)) >= 5


@pytest.mark.parametrize("notebook", [NOTEBOOK, ESC50_NOTEBOOK], ids=lambda p: p.name)
def test_committed_notebook_has_figures_and_no_error_or_audio(notebook):
    outs = outputs(nbformat.read(notebook, as_version=4))
    assert outs, f"{notebook} is committed without outputs: execute it with `python docs/make_images.py --notebook`"
    assert not [o for o in outs if o.get("output_type") == "error"]
    assert not [o for o in outs if "<audio" in "".join(o.get("data", {}).get("text/html", ""))], "audio embedded"
    pngs = pngs_of(outs)
    assert len(pngs) >= 4
    assert all(len(p) < 150_000 for p in pngs), [len(p) for p in pngs]  # small images


def test_esc50_notebook_is_the_source_run_on_the_real_esc50_clips():
    "The ESC-50 version: the source's cells plus one injected-parameters cell, with outputs of the committed grid."
    source, twin = nbformat.read(NOTEBOOK, as_version=4), nbformat.read(ESC50_NOTEBOOK, as_version=4)
    injected = [c for c in twin.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'DATASET = "esc50"' in injected[0].source
    rest = [c.source for c in twin.cells if c not in injected]
    assert rest == [c.source for c in source.cells], "regenerate it: python docs/make_images.py --no-images --esc50-notebook DIR"
    outs = outputs(twin)
    text = "".join(o.get("text", "") for o in outs)
    assert "ESC-50 layout: 400 clips, 50 classes, folds [1, 2, 3, 4]" in text  # the 400 real clips, not synthetic data
    results = pd.read_csv(REPO / "results" / "esc50-real400" / "results.csv")
    assert f"{len(results)} finished runs" in text, "re-execute it after the grid's last commit"
    table = results_table(outs, sorted(set(results["norm"])))
    for norm, acc in results.groupby("norm")["accuracy"].mean().items():
        assert f"{acc:.4f}" in table, (norm, acc)
    html = "".join(o["data"].get("text/html", "") for o in outs if "data" in o)
    assert "CC BY-NC" in "".join(c.source for c in twin.cells if c.cell_type == "markdown")
    assert len(pngs_of(outs)) >= 4 and html
