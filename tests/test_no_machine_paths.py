"""No tracked file names a path of a development machine.

A user's clone has no `/work/shared/...`, `/root/...` or somebody's home folder: data are found
through an argument, an environment variable (`FASTSPECNORM_FSDD`, `FASTSPECNORM_ESC50`) or the
download, and records, summaries and notebook outputs are committed without the paths they ran on.
Every file `git ls-files` lists is read as text (files that are not UTF-8, e.g. PNGs, are skipped).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# An absolute path starts at the beginning of a line or after a character that cannot be part of a
# path component (space, quote, backtick, `=`, `(`...), so `path/to/work/x` or `network/root/` never match.
START = r"(?<![\w.~-])"
PATTERNS = {
    "a /work/ folder (the development machines' shared and worktree folders)": START + r"/work/",
    "root's home folder": START + r"/root/",
    "a home folder": START + r"/home/[a-z_][\w.-]*/",
    "a macOS home folder": START + r"/Users/[A-Za-z_][\w.-]*/",
    "a temporary folder of project data or of a tool run": START
    + r"/tmp/[\w.-]*(?:fsdd|esc50|esc-50|fastspecnorm|wt-?\d|pytest-of|bash_jobs|runs?\b)",
}
MACHINE_PATH = re.compile("|".join(f"(?:{p})" for p in PATTERNS.values()), flags=re.IGNORECASE)

# Files allowed to keep a match, each with the reason; the test fails when an allowance is no longer needed.
ALLOWED = {
    "tests/test_no_machine_paths.py": "this file: the examples below",
}


def machine_paths(text: str) -> list[str]:
    "The machine paths named in `text` (each match with a few characters after it)."
    return [text[m.start() : m.end() + 20].split()[0] for m in MACHINE_PATH.finditer(text)]


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f]


def test_no_tracked_file_names_a_machine_path():
    found = {}
    for name in tracked_files():
        path = REPO / name
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (images)
        if hits := machine_paths(text):
            found[name] = hits[:3]
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not unexpected, (
        f"machine paths in tracked files: {unexpected}; use an argument, an environment variable "
        "(FASTSPECNORM_FSDD, FASTSPECNORM_ESC50) or a placeholder such as path/to/fsdd"
    )
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"allowed files that no longer name a machine path (remove them from ALLOWED): {stale}"


@pytest.mark.parametrize(
    "text",
    [
        "python experiments/fsdd_own_audio.py --data /work/shared/data/fsdd --epochs 4",
        'LOCAL_FSDD = Path("/work/main/data")',
        '"command": "python x.py --data /root/data/esc50"',
        "cache in /home/alice/.cache/fastspecnorm",
        "open /Users/bob/Downloads/ESC-50-master",
        "written to /tmp/fsdd-copy/recordings",
        "`/tmp/pytest-of-root/pytest-3/test_x0`",
    ],
)
def test_a_planted_machine_path_is_found(text):
    assert machine_paths(text), text


@pytest.mark.parametrize(
    "text",
    [
        "python experiments/fsdd_own_audio.py --data path/to/fsdd",
        "the neural network/work/ folder",
        "see path/to/root/of/data and ~/.cache/fastspecnorm",
        "$FASTSPECNORM_CACHE, else ~/.cache/fastspecnorm",
        "/tmp is the default temp folder; /home is not named with a user",
        "https://github.com/astral-sh/ruff-pre-commit",
    ],
)
def test_ordinary_text_is_not_flagged(text):
    assert not machine_paths(text), text
