"""Tests for `fastspecnorm._io`: crash-safe writes shared by several processes.

Writers are real child processes: one held mid-write (alive), one killed with SIGKILL mid-write
(dead), two writing the same file in a loop. The rule under test: a temporary file is removed only
when its writer is dead (same host) or it is older than `STALE_TEMP_AGE_S` (another host, or a
name without host and pid); a live writer's file is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from fastspecnorm._io import STALE_TEMP_AGE_S, atomic_write, atomic_write_text, pid_alive, read_json, remove_stale_temp_files

REPO = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="liveness of a pid and SIGKILL need POSIX")


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# Children load fastspecnorm/_io.py by its path (standard library only), so that they start in a
# fraction of a second instead of importing torch and fastai through the package.
CHILD_PRELUDE = """\
import importlib.util, os
_spec = importlib.util.spec_from_file_location("fastspecnorm_io", os.environ["FASTSPECNORM_IO"])
_io = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_io)
atomic_write = _io.atomic_write
"""


def run_child(tmp_path: Path, code: str, *args: str) -> subprocess.Popen:
    script = tmp_path / f"child_{abs(hash(code))}.py"
    script.write_text(CHILD_PRELUDE + textwrap.dedent(code))
    env = {**os.environ, "FASTSPECNORM_IO": str(REPO / "fastspecnorm" / "_io.py")}
    return subprocess.Popen(
        [sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


# A writer that stops halfway through its file until `release` exists (or kills itself there).
HELD_WRITER = """
    import os, signal, sys, time
    from pathlib import Path

    target, release, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def write(f):
        f.write(b"child-first-half;")
        f.flush()
        if how == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        while not release.exists():
            time.sleep(0.02)
        f.write(b"child-second-half")

    atomic_write(target, write)
"""


@posix_only
def test_live_writers_temp_file_survives_another_write(tmp_path):
    target, release = tmp_path / "out" / "results.csv", tmp_path / "release"
    child = run_child(tmp_path, HELD_WRITER, str(target), str(release), "hold")
    try:
        wait_for(lambda: target.parent.is_dir() and temp_files(target.parent))
        (held,) = temp_files(target.parent)
        assert re.fullmatch(rf"\.results\.csv\.[A-Za-z0-9_-]+\.{child.pid}\.[A-Za-z0-9_]+\.tmp", held)
        atomic_write_text(target, "parent")  # cleans up temporary files of results.csv first
        assert held in temp_files(target.parent) and target.read_text() == "parent"
    finally:
        release.touch()
        log = child.communicate(timeout=60)[0]
    assert child.returncode == 0, log
    assert target.read_bytes() == b"child-first-half;child-second-half"  # the later rename wins
    assert temp_files(target.parent) == []


@posix_only
def test_dead_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "stats.npz"
    child = run_child(tmp_path, HELD_WRITER, str(target), str(tmp_path / "never"), "die")
    child.communicate(timeout=60)  # reaped: its pid no longer exists
    assert child.returncode == -signal.SIGKILL
    (left,) = temp_files(tmp_path)
    assert (tmp_path / left).read_bytes() == b"child-first-half;" and not target.exists()
    unrelated = tmp_path / ".other.npz.host.1.abcdefgh.tmp"  # another file's temporary: not ours to judge
    unrelated.write_text("x")
    atomic_write_text(target, "new")
    assert temp_files(tmp_path) == [unrelated.name] and target.read_text() == "new"


@pytest.mark.parametrize("name", [".index.json.some-other-machine.4242.k3j2h1g0.tmp", ".index.json.abc123.tmp"])
def test_unverifiable_writer_removed_only_after_the_stale_age(tmp_path, name):
    "Another host's file (its pid cannot be checked from here), or an old-style name without a pid."
    temp = tmp_path / name
    temp.write_text("partial")
    assert remove_stale_temp_files(tmp_path, "index.json") == []
    almost = time.time() - STALE_TEMP_AGE_S + 600
    os.utime(temp, (almost, almost))
    atomic_write_text(tmp_path / "index.json", "{}")
    assert temp.exists()
    old = time.time() - STALE_TEMP_AGE_S - 600
    os.utime(temp, (old, old))
    atomic_write_text(tmp_path / "index.json", "{}")
    assert not temp.exists() and temp_files(tmp_path) == []


@posix_only
def test_pattern_target_selects_which_temporary_files_are_judged(tmp_path):
    folder, release = tmp_path / "cache", tmp_path / "release"
    folder.mkdir()
    dead = [run_child(tmp_path, HELD_WRITER, str(folder / name), str(release), "die") for name in ("data-aa11.bin", "index.json")]
    live = run_child(tmp_path, HELD_WRITER, str(folder / "data-bb22.bin"), str(release), "hold")
    try:
        for child in dead:
            child.communicate(timeout=60)
        wait_for(lambda: len(temp_files(folder)) == 3)
        by_target = {name.split(".")[1]: name for name in temp_files(folder)}
        removed = remove_stale_temp_files(folder, re.compile(r"data-[0-9a-f]+\.bin"))
        # The dead writer of a data file only: not the live one, not the dead writer of index.json.
        assert [p.name for p in removed] == [by_target["data-aa11"]]
        assert temp_files(folder) == sorted([by_target["data-bb22"], by_target["index"]])
    finally:
        release.touch()
        live.communicate(timeout=60)
    assert live.returncode == 0 and (folder / "data-bb22.bin").exists()


CONCURRENT_WRITER = """
    import sys
    from pathlib import Path

    target, tag = Path(sys.argv[1]), sys.argv[2].encode()
    payload = tag * (200_000 // len(tag))
    for _ in range(150):
        atomic_write(target, lambda f: f.write(payload))
"""


def test_concurrent_writers_of_one_file_never_fail(tmp_path):
    target = tmp_path / "shared" / "results.csv"
    children = [run_child(tmp_path, CONCURRENT_WRITER, str(target), tag) for tag in ("A", "B")]
    logs = [child.communicate(timeout=240)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], logs
    data = target.read_bytes()
    assert data in (b"A" * 200_000, b"B" * 200_000)  # one whole write, never a mix
    assert temp_files(target.parent) == []


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    os.chmod(target, 0o640)

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and temp_files(tmp_path) == []
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640  # mode kept


# ---------------------------------------------------------------------------------------------
# a full disk: the temporary file removed, the error naming the target


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_removes_the_temporary_and_names_the_target(tmp_path, monkeypatch, where):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old")
    full = OSError(errno.ENOSPC, "No space left on device")

    def write(f):
        f.write(b"half")
        if where == "write":
            raise full

    if where == "fsync":  # buffered data reach the disk (and fail) only when flushed

        def fsync(fd):
            raise full

        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        atomic_write(target, write)
    monkeypatch.undo()
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC and str(target) in message and "free disk space" in message
    assert "\n" not in message
    assert target.read_text() == "old" and temp_files(tmp_path) == []


def test_unwritable_folder_error_names_the_target(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=re.escape(str(tmp_path / "a.txt"))):
        atomic_write_text(tmp_path / "a.txt", "x")


# ---------------------------------------------------------------------------------------------
# liveness: a zombie counts as dead


@pytest.mark.skipif(os.name != "posix", reason="zombies (exited, unreaped children) exist on POSIX")
def test_a_zombie_counts_as_dead_and_a_live_process_as_alive(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
    try:
        assert pid_alive(child.pid) is False  # exited, not yet reaped: os.kill(pid, 0) would still succeed
        os.kill(child.pid, 0)
    finally:
        child.wait()
    assert pid_alive(child.pid) is False and pid_alive(os.getpid()) is True


# ---------------------------------------------------------------------------------------------
# read_json: one reader naming the file and what is wrong


@pytest.mark.parametrize(
    "content, fault",
    [
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b'{"run_id": "a", "row": {"nor', "is truncated"),
        (b"{'a': 1}", "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8"),
        (b"[]", "holds a list, expected an object"),
        (b"null", "holds null"),
        (b'{"run_id": "a"}', "lacks the key(s) ['row']"),
    ],
)
def test_read_json_names_the_file_the_fault_and_the_fix(tmp_path, content, fault):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_json(path, "run record", "delete it to train that run again", required=("run_id", "row"))
    message = str(info.value)
    assert (
        message.startswith(f"run record {path} ") and fault in message and message.endswith("delete it to train that run again")
    )
    assert "\n" not in message


def test_read_json_returns_the_value_or_the_default(tmp_path):
    path = tmp_path / "r.json"
    assert read_json(path, default=None) is None
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_json(path, "experiment settings")
    path.write_text(json.dumps({"a": [1, 2]}))
    assert read_json(path) == {"a": [1, 2]}
    path.write_text("[1]")
    assert read_json(path, expected=list) == [1]
    path.write_text("true")
    with pytest.raises(ValueError, match="holds true or false, expected a whole number"):
        read_json(path, expected=int)


def test_audio_dtypes_of_the_settings_are_those_of_the_loaders():
    "presets spells AUDIO_DTYPES so the command line checks settings without torch; it must stay the loaders' list."
    from fastspecnorm import presets
    from fastspecnorm.audio import io

    assert presets.AUDIO_DTYPES == io.AUDIO_DTYPES == ("auto", *io.STORAGE_DTYPES)
