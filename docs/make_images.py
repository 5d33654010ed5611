"""Regenerate the README pictures in `docs/images/` from the Free Spoken Digit Dataset (FSDD).

    python docs/make_images.py                      # FSDD from $FASTSPECNORM_FSDD, else the download
    python docs/make_images.py --data DIR           # DIR holds FSDD's recordings/ ("download": fastai untar_data)
    python docs/make_images.py --notebook           # also re-execute nbs/fsdd_normalization.ipynb in place
    python docs/make_images.py --no-images --esc50-notebook DIR   # only write nbs/esc50_normalization.ipynb from DIR

Writes five small PNGs (80 dpi):

- `spectrogram_batch.png`: `show_batch` of 6 training clips (fold 1: george held out), titled
  with the spoken digit;
- `per_frequency_stats.png`: mean +- std per mel bin in dB over the training speakers of fold 1
  (`collect_stats` with `red_dims=(0, 1, 3)`; padding never counts), with the global mean and std;
- `results.png`: the committed grid `--results` (default `results/fsdd`) re-plotted from its
  `results.csv` (the same figure as its `summary.png`, at 80 dpi); skipped while no run is finished;
- `esc50_real400.png`: the same figure for the committed grid on 400 real ESC-50 clips
  (`results/esc50-real400`, CC BY-NC 3.0);
- `augment.png`: that grid and the same grid with augmentations (`--augment-results`, default
  `results/fsdd-augment`) side by side (`comparison_figure`), and with waveform augmentations (`--waveform-results`, default
  `results/fsdd-augment-waveform`): does the ranking survive?

Every picture carries its dataset's attribution in its footer (FSDD: CC BY-SA 4.0; ESC-50:
CC BY-NC 3.0). Needs a few seconds of CPU, no training. `--notebook` executes the notebook with
nbclient (figures as PNG outputs, no audio embedded, no execution timestamps) and fails on any error.
`--esc50-notebook DIR` (default `$FASTSPECNORM_ESC50`) writes the notebook's ESC-50 version,
`nbs/esc50_normalization.ipynb`: the same cells with a cell tagged `injected-parameters` after the
parameters cell (papermill's convention) choosing the ESC-50-layout folder DIR, executed on it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDD_ENV = "FASTSPECNORM_FSDD"  # a local FSDD copy (the folder holding recordings/), used when set
ESC50_ENV = "FASTSPECNORM_ESC50"  # a local ESC-50-layout folder (meta/esc50.csv + audio/), used when set
NOTEBOOK = REPO / "nbs" / "fsdd_normalization.ipynb"  # the source; its ESC-50 version is written beside it
ESC50_NOTEBOOK = REPO / "nbs" / "esc50_normalization.ipynb"
ESC50_PARAMETERS = f"""# Parameters injected by docs/make_images.py (papermill's convention): this copy runs on an ESC-50-layout folder
DATASET = "esc50"
DATA = os.environ.get("{ESC50_ENV}")  # the ESC-50-layout folder (meta/esc50.csv + audio/)
RESULTS = None  # the committed grid on the 400 real clips, results/esc50-real400"""
ATTRIBUTION = "Free Spoken Digit Dataset (Zohar Jackson and contributors), CC BY-SA 4.0"
ESC50_ATTRIBUTION = "ESC-50 (K. J. Piczak, ACM MM 2015), clips from freesound.org, CC BY-NC 3.0"
DPI = 80


def credit(fig, attribution: str = ATTRIBUTION) -> None:
    "Put the dataset's attribution in the figure's footer, just below its axes."
    fig.text(0.5, -0.01, f"Recordings: {attribution}", ha="center", va="top", fontsize=8, color="0.35")


def save(fig, path: Path, note: str = "") -> None:
    "Save `fig` as a PNG at `DPI` (tight box, so the footer is inside) and close it; `note` ends the printed line."
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({path.stat().st_size // 1024} KiB){note}")


def save_grid_figure(fig, path: Path, note: str, attribution: str = ATTRIBUTION) -> None:
    "A results figure (`summary_figure`, `comparison_figure`) at README width, with the attribution."
    fig.set_size_inches(10, 4.2)
    credit(fig, attribution)
    save(fig, path, note)


def mel_scale(hz):
    "HTK mel value of frequencies `hz` (a list or array, in Hz)."
    import numpy as np

    return 2595 * np.log10(1 + np.asarray(hz, dtype=float) / 700)


def spectrogram_batch(dls, path: Path) -> None:
    "show_batch of 6 training clips, each titled with its digit."
    import matplotlib.pyplot as plt

    dls.show_batch(max_n=6, nrows=2, ncols=3, figsize=(8, 4.2))
    fig = plt.gcf()
    for ax in fig.axes:
        if ax.get_title():
            ax.set_title(f"digit {ax.get_title()}", fontsize=10)
    label_first_column_only(fig)
    fig.suptitle("FSDD log-mel spectrograms (8 kHz, 40 mel bins, 10 ms hop), each clip at its own length", fontsize=10)
    fig.tight_layout()
    credit(fig)
    save(fig, path)


def label_first_column_only(fig) -> None:
    "Keep a short frequency label on the left column only, so no y label runs into a colorbar or into the next row's label."
    for ax in fig.axes:
        spec = ax.get_subplotspec()  # a colorbar nests the panel in a gridspec: take the figure-level one
        if spec is not None and ax.get_title():
            ax.set_ylabel("Hz (mel-spaced)" if spec.get_topmost_subplotspec().colspan.start == 0 else "")


def per_frequency_stats(dls, path: Path) -> None:
    "Mean +- std per mel bin in dB over the training speakers, with the global mean and std."
    import matplotlib.pyplot as plt
    import numpy as np

    from fastspecnorm import collect_stats, get_settings, stats_loader

    loader = stats_loader(dls.train, shuffle=False)
    glob = collect_stats(loader, red_dims=(0, 2, 3), progress=False)
    chan = collect_stats(loader, red_dims=(0, 1, 3), progress=False)
    s = get_settings("fsdd")
    # bin centres, evenly spaced in HTK mel from 0 Hz to f_max (torchaudio's default mel scale)
    mel = np.linspace(0, mel_scale(s.f_max or s.sample_rate / 2), chan.mean.shape[2] + 2)[1:-1]
    mean, std = chan.mean.flatten().numpy(), chan.std.flatten().numpy()
    g_mean, g_std = glob.mean.item(), glob.std.item()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.fill_between(mel, mean - std, mean + std, alpha=0.3, label="per-frequency mean ± std")
    ax.plot(mel, mean, lw=1.5, marker=".", ms=4)
    ax.axhline(g_mean, color="k", ls="--", lw=1, label=f"global mean {g_mean:.1f} dB")
    for level in (g_mean - g_std, g_mean + g_std):
        ax.axhline(level, color="k", ls=":", lw=1)
    ax.plot([], [], color="k", ls=":", lw=1, label=f"global mean ± std ({g_std:.1f} dB)")
    ticks = [0, 250, 500, 1000, 2000, 4000]
    ax.set_xticks(mel_scale(ticks), labels=[f"{f:g}" for f in ticks])
    ax.set(
        xlabel="mel bin centre (Hz, mel-spaced axis)",
        ylabel="dB",
        title=f"Training statistics per mel bin: {len(dls.train_ds)} clips of 5 speakers (fold 1)",
    )
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    credit(fig)
    save(fig, path)


def results_plot(results: Path, path: Path, dataset: str = "fsdd") -> None:
    "The grid's summary figure (accuracy per run, paired differences against none), re-plotted at DPI."
    import pandas as pd

    from fastspecnorm.experiment import summarize
    from fastspecnorm.experiment.norms import NORMS
    from fastspecnorm.experiment.plots import summary_figure
    from fastspecnorm.experiment.summary import complete_folds

    csv = results / "results.csv"
    if not csv.is_file():
        print(f"skipped {path.name}: no {csv} yet (no finished run of the grid)")
        return
    df = complete_folds(pd.read_csv(csv))  # a grid still running: only the folds every norm and seed has
    summary = summarize(df, baseline="none", order=list(NORMS))
    folds, seeds = sorted(df["fold"].unique()), sorted(df["seed"].unique())
    name, held_out, preset = (
        ("FSDD", "held-out speaker folds", "fsdd") if dataset == "fsdd" else ("ESC-50, 400 real clips", "held-out folds", "quick")
    )
    title = (
        f"{name}, {held_out} {', '.join(map(str, folds))}, seeds {', '.join(map(str, seeds))}: "
        f"{len(df)} run{'s' * (len(df) != 1)} (xResNet18, preset {preset})"
    )
    fig = summary_figure(df, summary, title)
    save_grid_figure(fig, path, f" from {len(df)} runs", ATTRIBUTION if dataset == "fsdd" else ESC50_ATTRIBUTION)


def augment_plot(plain: Path, augmented: Path, path: Path, waveform: Path | None = None) -> None:
    """The grids' means and paired differences against none, side by side: without augmentation,
    with SpecAugment + mixup and (when given) with waveform augmentations; skipped while one has no run."""
    import pandas as pd

    from fastspecnorm.experiment import comparison_figure
    from fastspecnorm.experiment.norms import NORMS

    csvs = {"without augmentation": plain / "results.csv", "with SpecAugment + mixup": augmented / "results.csv"}
    if waveform is not None:
        csvs["with waveform augmentations"] = waveform / "results.csv"
    if missing := [str(c) for c in csvs.values() if not c.is_file()]:
        print(f"skipped {path.name}: no {', '.join(missing)} yet")
        return
    grids = {name: pd.read_csv(csv) for name, csv in csvs.items()}
    order = [n for n in NORMS if any(n in set(df["norm"]) for df in grids.values())]
    title = "FSDD, held-out speakers: the same grid without and with train-time augmentation (xResNet18, preset fsdd)"
    fig = comparison_figure(grids, order=order, title=title)
    save_grid_figure(fig, path, f" from {' and '.join(str(len(d)) for d in grids.values())} runs")


def execute_notebook(notebook: Path, env: dict[str, str], target: Path | None = None, injected: str | None = None) -> None:
    """Execute `notebook` (cwd: its folder) with the environment variables `env` and write it to
    `target` (default: in place), with the cell `injected` after its parameters cell when given;
    raise, writing nothing, on an error output or embedded audio."""
    import nbclient
    import nbformat

    target = target or notebook
    nb = nbformat.read(notebook, as_version=4)
    if injected is not None:
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    saved = {k: os.environ.get(k) for k in (*env, "MPLBACKEND")}
    os.environ.update({**env, "MPLBACKEND": "module://matplotlib_inline.backend_inline"})  # figures as image/png outputs
    try:
        client = nbclient.NotebookClient(
            nb, timeout=1200, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(notebook.parent)}}
        )
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    audio = [o for o in outputs if "<audio" in str(o.get("data", {}).get("text/html", ""))]
    if errors or audio:
        raise RuntimeError(f"{notebook}: {len(errors)} error output(s), {len(audio)} embedded audio output(s); not written")
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, target)
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    print(f"executed {target.relative_to(REPO)}: {pngs} figures, {target.stat().st_size // 1024} KiB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=os.environ.get(FSDD_ENV) or "download",
        help=f"folder holding FSDD's recordings/, or 'download' (fastai untar_data); default: ${FSDD_ENV} when set, else download",
    )
    parser.add_argument("--results", type=Path, default=REPO / "results" / "fsdd", help="the grid folder plotted in results.png")
    parser.add_argument(
        "--augment-results",
        type=Path,
        default=REPO / "results" / "fsdd-augment",
        help="the same grid with augmentations, compared with --results in augment.png",
    )
    parser.add_argument(
        "--waveform-results",
        type=Path,
        default=REPO / "results" / "fsdd-augment-waveform",
        help="the same grid with waveform augmentations, the third panel of augment.png",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--notebook", action="store_true", help="also execute nbs/fsdd_normalization.ipynb in place")
    parser.add_argument(
        "--esc50-notebook",
        nargs="?",
        const=os.environ.get(ESC50_ENV),
        metavar="DIR",
        help=f"also write nbs/esc50_normalization.ipynb, executed on the ESC-50-layout folder DIR (default: ${ESC50_ENV})",
    )
    parser.add_argument("--no-images", action="store_true", help="write no PNG (with the notebook options: only the notebooks)")
    args = parser.parse_args(argv)
    if "--esc50-notebook" in (argv if argv is not None else sys.argv[1:]) and not args.esc50_notebook:
        parser.error(f"--esc50-notebook needs an ESC-50-layout folder: give DIR or set ${ESC50_ENV}")
    if args.esc50_notebook and not (Path(args.esc50_notebook) / "meta" / "esc50.csv").is_file():
        parser.error(
            f"--esc50-notebook {args.esc50_notebook}: no meta/esc50.csv there (an ESC-50-layout folder has meta/ and audio/)"
        )

    import matplotlib

    matplotlib.use("Agg")
    from fastai.torch_core import set_seed

    from fastspecnorm.datasets.fsdd import download_fsdd, fsdd_dataloaders, resolve_fsdd

    if not args.no_images or args.notebook:
        root = download_fsdd() if args.data == "download" else resolve_fsdd(args.data)
    if not args.no_images:
        args.out.mkdir(parents=True, exist_ok=True)
        set_seed(0)  # before the loaders: their shuffling draws from it, so the batch is the same 6 clips every time
        dls = fsdd_dataloaders(root, valid_fold=1)
        spectrogram_batch(dls, args.out / "spectrogram_batch.png")
        per_frequency_stats(dls, args.out / "per_frequency_stats.png")
        results_plot(args.results, args.out / "results.png")
        augment_plot(args.results, args.augment_results, args.out / "augment.png", args.waveform_results)
        results_plot(REPO / "results" / "esc50-real400", args.out / "esc50_real400.png", dataset="esc50")
    if args.notebook:
        execute_notebook(NOTEBOOK, {"FSN_DATA": str(Path(root).resolve())})  # the kernel runs in nbs/
    if args.esc50_notebook:
        execute_notebook(NOTEBOOK, {ESC50_ENV: str(Path(args.esc50_notebook).resolve())}, ESC50_NOTEBOOK, ESC50_PARAMETERS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
