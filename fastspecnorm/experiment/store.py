"""The results store of an experiment folder (`RunStore`): one record per run and claims, safe for
many writers on one machine or on several sharing a file system."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_write_text, pid_alive, read_json

__all__ = ["REQUIRED_COLUMNS", "RunStore"]

REQUIRED_COLUMNS = ("norm", "fold", "seed", "epochs", "accuracy")
_RECORD_FIX = "records are written whole by rename, so something else wrote it; delete it to train that run again"
_LIVE_JOB_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED"}  # Slurm states in which a job may still write


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def scheduler_job() -> str | None:
    """This process's scheduler job, as its claims record it: Slurm's `<array job>_<task>` in a job
    array, else `SLURM_JOB_ID`; None outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def job_running(job: str) -> bool | None:
    """Whether Slurm still runs `job` (a job id or `<array job>_<task>`; `squeue -h -j JOB -o %T`):
    True while running, completing or suspended, False when no longer (finished, cancelled, requeued,
    unknown), None when that cannot be asked (no `squeue`, or it failed or took over 10 s)."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):  # no squeue here (FileNotFoundError), or it hung
        return None
    if done.returncode != 0:
        return False if "invalid job id" in done.stderr.lower() else None
    return bool(set(done.stdout.upper().split()) & _LIVE_JOB_STATES)


def check_row(row: dict[str, Any]) -> dict[str, Any]:
    """Check a finished run's row; returns it with plain JSON values (NumPy / torch scalars
    unwrapped, whole numbers as int).

    Args:
        row: the run's columns: `norm` a non-empty str, `fold` a whole number or a fold's name (e.g.
            a speaker), `seed` and `epochs` (>= 0) whole numbers, `accuracy` a finite fraction in
            [0, 1], optionally `repeat` (the k-fold partition, a whole number >= 0), and any others.

    Raises:
        ValueError: a missing or bad required column, naming it.
        TypeError: a value that is not plain JSON.
    """
    missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None]
    if missing:
        raise ValueError(f"row lacks required column(s) {missing} (required: {list(REQUIRED_COLUMNS)}); got {list(row)}")
    clean = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}  # NumPy / torch scalars
    if not isinstance(clean["norm"], str) or not clean["norm"]:
        raise ValueError(f"column 'norm' must be a non-empty string such as 'global', got {row['norm']!r}")
    for column in ("fold", "seed", "epochs", "repeat"):
        value = clean.get(column, 0)
        if column == "fold" and isinstance(value, str) and value.strip():
            continue  # a fold's name (a speaker) stays a name
        if not _is_number(value) or not float(value).is_integer():
            raise ValueError(f"column {column!r} must be a whole number, got {value!r}")
        if column in ("epochs", "repeat") and value < 0:
            raise ValueError(f"column {column!r} must be >= 0, got {int(value)}")
        if column in clean:
            clean[column] = int(value)
    accuracy = clean["accuracy"]
    if not (_is_number(accuracy) and math.isfinite(accuracy) and 0 <= accuracy <= 1):
        raise ValueError(f"column 'accuracy' must be a finite number in [0, 1], got {accuracy!r}")
    clean["accuracy"] = float(accuracy)
    json.dumps(clean)  # TypeError naming the value if something is not plain JSON
    return clean


class RunStore:
    """One record per finished run in `out/runs/`, claims in `out/claims/`, `out/results.csv`
    derived from the records; safe for any number of processes on any number of hosts sharing `out`:

        OUT/runs/<run_id>.json     one record per finished run (the source of truth)
        OUT/claims/<run_id>.json   a run being trained: host, pid, heartbeat time (removed when done)
        OUT/results.csv            derived from the records, rebuilt after every run (`rebuild`)

    Every file is written whole to a temporary name and renamed into place (`_io.atomic_write`);
    nothing relies on O_APPEND or O_EXCL, which NFS does not honour. Run ids are deterministic, so a
    run trained twice by accident is still one record. To train a run, a process claims it (`claim`:
    written, then read back after `settle` seconds) and refreshes the claim's heartbeat while it
    trains (`claimed`); a dead or stale claim is taken over (`claim_holder`). Hosts sharing `OUT`
    must agree on the time to well within `stale_after`, which should be well above `heartbeat_every`.
    Two processes both win a claim only if one's read-write-rename takes longer than `settle`: the run
    is then trained twice and recorded once.

    Args:
        out: the experiment folder.
        settle: seconds between writing a claim and reading it back.
        heartbeat_every: seconds between heartbeats while a run is trained.
        stale_after: seconds; a claim whose heartbeat is older, or further ahead of this host's clock, is taken over.

    Attributes:
        out: the experiment folder, as a `Path`.
        runs_dir: `out/runs`, the records.
        claims_dir: `out/claims`, the claims.
        results_path: `out/results.csv`.
        host: this host's name, as written in its claims.

    Raises:
        ValueError: unless `stale_after > heartbeat_every > 0` and `settle >= 0`.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> store = RunStore(folder.name, settle=0.0)
        >>> run_id = "none-fold1-seed0-3f2a9c01b7e4"
        >>> with store.claimed(run_id) as mine:
        ...     if mine and not store.is_done(run_id):
        ...         _ = store.save(run_id, {"norm": "none", "fold": 1, "seed": 0, "epochs": 8, "accuracy": 0.71})
        >>> store.rebuild()["accuracy"].tolist()  # also writes out/results.csv
        [0.71]
        >>> folder.cleanup()
    """

    def __init__(self, out: str | os.PathLike, settle: float = 0.5, heartbeat_every: float = 30.0, stale_after: float = 120.0):
        if not stale_after > heartbeat_every > 0 or settle < 0:
            raise ValueError(
                f"expected stale_after > heartbeat_every > 0 and settle >= 0, got stale_after={stale_after}, "
                f"heartbeat_every={heartbeat_every}, settle={settle}"
            )
        self.out = Path(out)
        self.runs_dir, self.claims_dir = self.out / "runs", self.out / "claims"
        self.results_path = self.out / "results.csv"
        self.settle, self.heartbeat_every, self.stale_after = settle, heartbeat_every, stale_after
        self.host = socket.gethostname()
        self._tokens: dict[str, str] = {}  # run id -> token of the claim this object holds
        self._jobs: dict[str, tuple[float, bool | None]] = {}  # scheduler job -> (when asked, running)

    def __repr__(self) -> str:
        return f"RunStore({str(self.out)!r})"

    # -- finished runs -------------------------------------------------------------------------

    def record_path(self, run_id: str) -> Path:
        """Where the record of a finished run is (or will be) written: `out/runs/<run_id>.json`.

        Args:
            run_id: the run's id (`schedule.run_id`).
        """
        return self.runs_dir / f"{run_id}.json"

    def is_done(self, run_id: str) -> bool:
        """Whether the run has a record (`out/runs/<run_id>.json` exists).

        Args:
            run_id: the run's id.
        """
        return self.record_path(run_id).is_file()

    def save(self, run_id: str, row: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
        """Record a finished run atomically as `runs/<run_id>.json` (replacing an earlier record); returns its path.

        Args:
            run_id: the run's id.
            row: what `results.csv` shows (see `check_row`).
            info: wall time, versions, host: kept out of the table (None: empty).

        Raises:
            ValueError: a missing or bad required column of `row` (see `check_row`).
            TypeError: a value of `row` or `info` that is not plain JSON.
        """
        record = {"run_id": run_id, "row": check_row(row), "info": info or {}}
        return atomic_write_text(self.record_path(run_id), json.dumps(record, indent=1))

    def _record_files(self) -> list[Path]:
        return sorted(self.runs_dir.glob("*.json"))  # temporary files end in .tmp

    def records(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Every finished run's record, `{"run_id", "row", "info"}`, sorted by run id (empty when none).

        Args:
            experiment_id: only the records of this experiment (run ids ending in
                `-<experiment_id>`); None: all.

        Raises:
            ValueError: a record that cannot be read, naming the file and what is wrong.
        """
        records = [self._read_record(path) for path in self._record_files()]
        return [r for r in records if experiment_id is None or r["run_id"].endswith(f"-{experiment_id}")]

    def foreign(self, experiment_id: str) -> list[str]:
        """The names, sorted, of the record files in `runs/` of another experiment than `experiment_id`
        (copied in from another OUT, or left by an older grid): never summarized with this one's.

        Args:
            experiment_id: this OUT's experiment id.
        """
        return [p.name for p in self._record_files() if not p.stem.endswith(f"-{experiment_id}")]

    @staticmethod
    def _read_record(path: Path) -> dict[str, Any]:
        record = read_json(path, "run record", _RECORD_FIX, required=("run_id", "row"))
        if not isinstance(record["run_id"], str) or not record["run_id"]:
            raise ValueError(f"run record {path} has run_id {record['run_id']!r}, expected a non-empty string; {_RECORD_FIX}")
        for key, name in (("row", "a row"), ("info", "info")):
            if not isinstance(record.get(key, {}), dict):
                kind = type(record[key]).__name__
                raise ValueError(f"run record {path} has {name} of type {kind}, expected an object; {_RECORD_FIX}")
        try:
            record["row"] = check_row(record["row"])
        except ValueError as e:
            raise ValueError(f"run record {path}: {e}; {_RECORD_FIX}") from None
        return record

    def rows(self, order: Sequence[str] = ()) -> pd.DataFrame:
        """The finished runs as a table: the same records always give the same table.

        Args:
            order: normalization names in the order their rows come within a fold and seed;
                others follow by name.

        Returns:
            One row per run (the record's row, `repeat` 0 where it has none, and `run_id`), sorted by
                repeat, fold, seed and normalization; empty (the required columns, `repeat`, `run_id`) when none.

        Raises:
            ValueError: a record that cannot be read, naming the file and what is wrong.
        """
        return self._rows(self.records(), order)

    @staticmethod
    def _rows(records: list[dict[str, Any]], order: Sequence[str]) -> pd.DataFrame:
        # Records written before repeated k-fold have no `repeat`: they are repeat 0.
        rows = [{"norm": r["row"]["norm"], "repeat": 0, **r["row"], "run_id": r["run_id"]} for r in records]
        if not rows:
            return pd.DataFrame({c: [] for c in (*REQUIRED_COLUMNS, "repeat", "run_id")})
        rank = {name: i for i, name in enumerate(order)}
        rows.sort(key=lambda r: (r["repeat"], r["fold"], r["seed"], rank.get(r["norm"], len(rank)), r["norm"]))
        return pd.DataFrame(rows)

    def rebuild(self, order: Sequence[str] = (), experiment_id: str | None = None) -> pd.DataFrame:
        """Write `results.csv` from the records (nothing while there is none) and return its rows (as
        `rows`); idempotent. When another process adds a record meanwhile, it rebuilds again, so the
        last writer always leaves every record in. Claims left on finished runs by dead processes are removed.

        Args:
            order: normalization names in row order, as for `rows`.
            experiment_id: only this experiment's records (see `records`); None: all.

        Raises:
            ValueError: a record that cannot be read, naming the file and what is wrong.
        """
        return self.rebuild_with_records(order, experiment_id)[0]

    def rebuild_with_records(
        self, order: Sequence[str] = (), experiment_id: str | None = None, keep: Callable[[str], bool] | None = None
    ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        """`rebuild`, returning `(rows, records)`: also the records the rows come from (for their `info`).

        Args:
            order: normalization names in row order, as for `rows`.
            experiment_id: only this experiment's records (see `records`); None: all.
            keep: `keep(run_id)`, whether a record of the experiment belongs in the table (None: all do).
        """
        for path in self.claims_dir.glob("*.json"):  # on finished runs, left by dead holders: nobody claims them again
            if self.is_done(path.stem) and self.claim_holder(path.stem) is None:
                path.unlink(missing_ok=True)
        while True:
            files = self._record_files()
            records = [r for r in self.records(experiment_id) if keep is None or keep(r["run_id"])]
            rows = self._rows(records, order)
            if len(rows):
                atomic_write_text(self.results_path, rows.to_csv(index=False, lineterminator="\n"))
            if self._record_files() == files:
                return rows, records

    # -- claims --------------------------------------------------------------------------------

    def claim_path(self, run_id: str) -> Path:
        """Where the claim on a run is written while it is trained: `out/claims/<run_id>.json`.

        Args:
            run_id: the run's id.
        """
        return self.claims_dir / f"{run_id}.json"

    def claim_holder(self, run_id: str) -> dict[str, Any] | None:
        """The live claim on a run (host, pid, heartbeat, token), or None when free or expired: no claim,
        not a claim, a heartbeat more than `stale_after` seconds old or ahead of this host's clock, a
        process of this host that is gone or a zombie, or a Slurm job (`job_running`) no longer running.

        Args:
            run_id: the run's id.
        """
        try:
            claim = read_json(self.claim_path(run_id), "claim", required=("heartbeat", "pid", "host", "token"), default=None)
        except (OSError, ValueError):  # not a claim: free
            return None
        if (
            claim is None
            or not (_is_number(claim["heartbeat"]) and math.isfinite(claim["heartbeat"]))
            or type(claim["pid"]) is not int  # nor a bool
            or not isinstance(claim["host"], str)
            or not isinstance(claim["token"], str)
            or abs(time.time() - claim["heartbeat"]) > self.stale_after
            or (claim["host"] == self.host and not pid_alive(claim["pid"]))
        ):
            return None
        job = claim.get("job")
        if isinstance(job, str) and job and self._job_running(job) is False:
            return None  # the scheduler no longer runs the job that claimed it: free at once, on any host
        return claim

    def _job_running(self, job: str) -> bool | None:
        "`job_running(job)`, asked at most every 15 s per job (waiting processes poll claims often)."
        asked, answer = self._jobs.get(job, (-math.inf, None))
        if time.monotonic() - asked > 15.0:
            answer = job_running(job)
            self._jobs[job] = (time.monotonic(), answer)
        return answer

    def _write_claim(self, run_id: str, token: str) -> None:
        claim = {"host": self.host, "pid": os.getpid(), "token": token, "heartbeat": time.time(), "job": scheduler_job()}
        atomic_write_text(self.claim_path(run_id), json.dumps(claim))

    def _is_ours(self, run_id: str, token: str | None) -> bool:
        holder = self.claim_holder(run_id) if token is not None else None
        return holder is not None and holder["token"] == token

    def claim(self, run_id: str) -> bool:
        """Claim a run for this process (a dead or stale claim is taken over): write the claim, wait
        `settle` seconds, read it back. True when the claim is ours (already, or now), False when a
        live claim of another process holds it.

        Args:
            run_id: the run's id.
        """
        holder = self.claim_holder(run_id)
        if holder is not None:
            return holder["token"] == self._tokens.get(run_id)
        token = self._tokens[run_id] = uuid.uuid4().hex  # before writing: an interruption from here on can release it
        self._write_claim(run_id, token)
        time.sleep(self.settle)  # let a concurrent claimer's rename land before reading back
        if not self._is_ours(run_id, token):
            self._tokens.pop(run_id, None)
            return False
        return True

    def heartbeat(self, run_id: str) -> bool:
        """Refresh our claim's heartbeat: True when refreshed, False (nothing written) when it is no longer ours.

        Args:
            run_id: the run's id.
        """
        token = self._tokens.get(run_id)
        if not self._is_ours(run_id, token):
            return False
        self._write_claim(run_id, token)
        return True

    def release(self, run_id: str) -> None:
        """Remove our claim on a run (another process's claim is left alone).

        Args:
            run_id: the run's id.
        """
        if self._is_ours(run_id, self._tokens.pop(run_id, None)):
            self.claim_path(run_id).unlink(missing_ok=True)

    @contextmanager
    def claimed(self, run_id: str) -> Iterator[bool]:
        """Hold the claim on a run while a block runs (`with store.claimed(run_id) as mine:`): claim
        it, refresh the heartbeat from a background thread every `heartbeat_every` seconds, and release
        it at the end, also on an exception (the run is then free for others).

        Args:
            run_id: the run's id.

        Yields:
            `mine`: whether the claim is ours (False: another process holds it, and nothing is
                refreshed or released).
        """
        try:
            mine = self.claim(run_id)
        except BaseException:  # interrupted while claiming (SIGINT, SIGTERM): leave no claim of ours behind
            self.release(run_id)
            raise
        if not mine:
            yield False
            return
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat_every) and self.heartbeat(run_id):
                pass

        thread = threading.Thread(target=beat, name=f"heartbeat {run_id}", daemon=True)
        thread.start()
        try:
            yield True
        finally:
            stop.set()
            thread.join()
            self.release(run_id)
