"""`fastspecnorm cache --info / --clear`: where the decoded-audio cache is, how large, and emptying it,
on a cache folder of the test's own (issue 31 item 5)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from fastspecnorm import AudioDataLoaders
from fastspecnorm.experiment.cli import command


@pytest.fixture
def cached(tmp_path):
    "Loaders over 8 clips built with the cache in `tmp_path/cache`; returns the cache folder."
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for k in range(4):
            (tmp_path / "clips" / label).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "clips" / label / f"{k}.wav", rng.uniform(-0.5, 0.5, 4000 + 100 * k), 8000, subtype="PCM_16")
    AudioDataLoaders.from_folder(tmp_path / "clips", seed=0, sample_rate=8000, bs=2, cache=tmp_path / "cache", device="cpu",
                                 progress=False)  # fmt: skip
    return tmp_path / "cache"


def _disk(root) -> dict[str, int]:
    "Bytes per cache folder (the folders holding an index.json), walked independently of the package."
    sizes = {}
    for folder, _, files in os.walk(root):
        if "index.json" in files:
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            sizes[rel] = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return sizes


def test_info_lists_each_cache_folder_with_its_size(cached, capsys):
    sizes = _disk(cached)
    assert len(sizes) == 1
    ((rel, nbytes),) = sizes.items()
    assert command(["cache", "--info", "--dir", cached]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"audio cache: {cached} ")
    assert out[1].split() == [f"{nbytes / 1e3:.1f}", "kB", rel]  # 8 int16 clips of 0.5 s: tens of kB
    assert out[2] == f"total: {nbytes / 1e3:.1f} kB in 1 folder(s); fastspecnorm cache --clear empties it"
    assert command(["cache", "--dir", cached]) == 0  # --info is the default
    assert capsys.readouterr().out.splitlines() == out


def test_clear_empties_the_cache_and_keeps_other_files(cached, capsys):
    nbytes = sum(_disk(cached).values())
    (cached / "notes.txt").write_text("not the cache's")
    assert command(["cache", "--clear", "--dir", cached]) == 0
    assert capsys.readouterr().out.strip() == f"audio cache: {cached}: cleared 1 folder(s), {nbytes / 1e3:.1f} kB freed"
    assert sorted(p.name for p in cached.rglob("*")) == ["notes.txt"]
    command(["cache", "--info", "--dir", cached])
    assert capsys.readouterr().out.splitlines()[-1] == "total: 0 B in 0 folder(s)"


def test_the_default_folder_comes_from_the_environment(cached, capsys, monkeypatch):
    monkeypatch.setenv("FASTSPECNORM_CACHE", str(cached))
    command(["cache"])
    assert capsys.readouterr().out.startswith(f"audio cache: {cached} ")
    monkeypatch.setenv("FASTSPECNORM_CACHE", "off")
    assert command(["cache", "--clear"]) == 0
    assert capsys.readouterr().out.startswith("audio cache: off")
    assert _disk(cached)  # nothing cleared while the cache is off


def test_info_and_clear_together_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        command(["cache", "--info", "--clear"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.process
def test_the_installed_command_answers(cached):
    env = {**os.environ, "FASTSPECNORM_CACHE": str(cached)}
    done = subprocess.run([sys.executable, "-m", "fastspecnorm", "cache", "--info"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"audio cache: {cached} ") and "1 folder(s)" in done.stdout
