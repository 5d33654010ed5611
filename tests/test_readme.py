"""Every ```python block of README.md and of the documentation pages (docs/**/*.md) runs, in order,
one namespace per file, on tiny generated data.

The blocks are read from the files at test time, so an example added later is run too. A block
whose first line is `# not run: <reason>` (it needs a GPU, a cluster, real data, the network or
hours) is exempt; the reason must be given. The examples run in a temporary folder where the paths
they use exist: a tiny synthetic ESC-50 at `path/to/ESC-50` and a folder of clips at `path/to/clips`.

To keep the default suite short, two sizes are shrunk before a block runs (each is listed in
SHRINK, and a test fails if one no longer matches the examples, so none goes stale silently):
training runs one epoch instead of the examples' count, and the batch size of the `preset="blog"`
loaders is 2 instead of 64 (the tiny dataset has 16 training clips, 8 batches of 2; at 64 the
`fraction=0.2` of the statistics example needs at least 320 clips). Nothing else is changed: every name a block uses
is defined by that block or an earlier one, as a reader running them in order would have it.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from fastspecnorm.datasets.synthetic import make_synthetic_esc50

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# the README, then the documentation pages in a fixed order
FILES = [README, *sorted((REPO / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"#\s*not run:\s*(\S.*)")

# (pattern, replacement, why): applied to every block; the required ones must match somewhere in the examples
SHRINK = [
    (r"\.fit_one_cycle\(\s*\d+\s*\)", ".fit_one_cycle(1)", "one epoch, not the protocol's 20"),
    (r"\.fit\(\s*\d+\s*\)", ".fit(1)", "one epoch"),
    (r'preset="blog"\)', 'preset="blog", bs=2)', "batch size 2 on 16 training clips, not 64"),
]
# SHRINK entries that must match (the others apply when an example uses them)
REQUIRED_SHRINK = {r"\.fit_one_cycle\(\s*\d+\s*\)", r'preset="blog"\)'}


def python_blocks(text: str) -> list[tuple[int, str]]:
    "`(line number, code)` of each ```python block, in order."
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append((start + 1, "\n".join(body) + "\n"))
        i += 1
    return blocks


def shrink(code: str) -> str:
    for pattern, repl, _ in SHRINK:
        code = re.sub(pattern, repl, code)
    return code


BLOCKS = {f.relative_to(REPO).as_posix(): python_blocks(f.read_text()) for f in FILES}
ALL_BLOCKS = [(name, line, code) for name, blocks in BLOCKS.items() for line, code in blocks]


@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    "A working folder holding the paths the examples use."
    make_synthetic_esc50(
        tmp_path / "path" / "to" / "ESC-50", n_classes=4, clips_per_class=5, n_folds=5, sample_rate=16000, duration=1.0
    )
    # a folder of clips labelled by their parent folder (2 classes x 5 clips, 16 kHz, 0.5-1.2 s)
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for label, f0 in (("low", 300.0), ("high", 3000.0)):
        for k in range(5):
            n = int(16000 * (0.5 + 0.15 * k))
            t = np.arange(n) / 16000
            wav = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(n)
            (tmp_path / "path" / "to" / "clips" / label).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "path" / "to" / "clips" / label / f"{label}{k}.wav", wav, 16000, subtype="PCM_16")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_python_examples_and_exemptions_give_a_reason():
    assert len(BLOCKS["README.md"]) >= 2
    assert sum(len(b) for name, b in BLOCKS.items() if name.startswith("docs/")) >= 8  # the docs pages have examples too
    for name, line, code in ALL_BLOCKS:
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        if first.startswith("# not run"):
            assert NOT_RUN.fullmatch(first.strip()), f"{name} line {line}: '# not run:' needs a reason"


def test_every_shrink_rule_still_matches_the_examples():
    text = "".join(code for _, _, code in ALL_BLOCKS)
    stale = [p for p, _, _ in SHRINK if p in REQUIRED_SHRINK and not re.search(p, text)]
    assert not stale, f"SHRINK patterns that no longer match README.md or docs/: {stale}"


def run_blocks(name: str) -> dict:
    "Run the python blocks of file `name` in order in one namespace; the namespace."
    ns: dict = {"__name__": "__readme__"}
    ran, exempt = [], []
    for line, code in BLOCKS[name]:
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        if NOT_RUN.fullmatch(first.strip()):
            exempt.append(line)
            continue
        try:
            exec(compile(shrink(code), f"{name}:{line}", "exec"), ns)
        except Exception as e:
            raise AssertionError(f"{name} python block at line {line} failed: {type(e).__name__}: {e}") from e
        ran.append(line)
        plt.close("all")
    ns["__ran__"], ns["__exempt__"] = ran, exempt
    return ns


def check_datablock(ns: dict) -> None:
    "The DataBlock example is built, not just defined: (B, 1, 201, 401) dB spectrograms, as its comment says."
    from fastspecnorm import AudioSpectrogram, read_esc50_meta

    dls = ns["dblock"].dataloaders(read_esc50_meta(ns["path"]), bs=4, num_workers=0)
    xb, yb = dls.train.one_batch()
    assert isinstance(xb, AudioSpectrogram) and tuple(xb.shape) == (4, 1, 201, 401) and xb.shape[0] == len(yb)
    assert len(dls.valid.items) == 4 and sorted(dls.valid.items["fold"].unique()) == [1]


@pytest.mark.parametrize("name", [n for n, blocks in BLOCKS.items() if blocks])
def test_python_examples_run(name, readme_folder, capsys):
    ns = run_blocks(name)
    with capsys.disabled():
        print(
            f"\n{name}: {len(ns['__ran__'])} python block(s) run, {len(ns['__exempt__'])} exempt (# not run) at lines {ns['__exempt__']}"
        )
    assert ns["__ran__"] or ns["__exempt__"]
    if "dblock" in ns:
        check_datablock(ns)


def test_every_name_the_migration_page_offers_exists():
    """The second column of docs/guide/migration.md's table names what replaces each fastaudio or blog
    name: a fastspecnorm name (attributes with dots), or a torchaudio or librosa one; each resolves."""
    import importlib

    import fastspecnorm

    rows = [line.strip().strip("|").split("|") for line in (REPO / "docs/guide/migration.md").read_text().splitlines()]
    offered = [cells[1].strip() for cells in rows if len(cells) == 3 and cells[1].strip().startswith("`")]
    assert len(offered) >= 25
    for cell in offered:
        name = cell.strip("`")
        assert re.fullmatch(r"[A-Za-z_][\w.]*", name), f"{cell}: one name per cell"
        first, *rest = name.split(".")
        obj = importlib.import_module(first) if first in ("torchaudio", "librosa") else getattr(fastspecnorm, first)
        for part in rest:
            obj = getattr(obj, part)  # AttributeError names what the page claims and does not exist
