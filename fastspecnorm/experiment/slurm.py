"""Sending a grid to other processes or a cluster: pulling tasks submitted to an executor (any object
with `submit(fn, *args)`), and the Slurm job array of `--slurm-array N` through submitit (the extra
`slurm`). Every task runs `schedule.run_experiment` on the same OUT, so any number of tasks give each
run once. Imports neither torch nor submitit: the command line reads `SlurmOptions` before them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .._options import count, option, positive_int
from .grid import ExperimentConfig, Prepared
from .log import RunLog

__all__ = ["SlurmOptions", "PullingTask", "check_slurm", "slurm_executor", "submit_tasks", "gather", "describe_jobs"]

INSTALL_HINT = 'pip install "fastspecnorm[slurm]"'


def _minutes(text: str) -> int:
    "A parser: a Slurm time limit (MINUTES, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in whole minutes, rounded up."
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a time limit such as 240, 04:00:00 or 1-12:00:00, got {text!r}")
    days, first, second, third = (int(g) for g in match.groups(default="0"))
    if match[1] is not None or match[4] is not None:  # D-HH[:MM[:SS]] or HH:MM:SS
        seconds = days * 86400 + first * 3600 + second * 60 + third
    else:  # MINUTES or MM:SS
        seconds = first * 60 + second
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a time limit above zero, got {text!r}")
    return -(-seconds // 60)


def _memory(text: str) -> str:
    "A parser: a Slurm memory size per node (`16G`, `800M`, `16000`: megabytes)."
    if re.fullmatch(r"\d+[KMGT]?", text.strip(), flags=re.IGNORECASE) is None:
        raise argparse.ArgumentTypeError(f"expected a memory size such as 16G or 800M, got {text!r}")
    return text.strip().upper()


@dataclass(kw_only=True)
class SlurmOptions:
    """Where and how the tasks of `--slurm-array N` run (through submitit): each field is an option
    (`--slurm-partition` for `slurm_partition`, its help says what it sets) and a keyword of `compare()`.
    None leaves a setting to the cluster's defaults; `slurm_time` is in minutes (a task at its limit is
    requeued, up to 3 times). No part of the experiment's identity.
    """

    slurm_array: int | None = option(None, help="submit a Slurm job array of N tasks, each pulling runs from --out until none "
                                     "is left; the command returns once they are queued (see --wait)", parse=positive_int,
                                     metavar="N")  # fmt: skip
    slurm_partition: str | None = option(None, help="the partition (default: the cluster's)", metavar="P")
    slurm_time: int = option(240, help="each task's time limit: minutes, HH:MM:SS or D-HH:MM:SS (default: 240); at the "
                             "limit a task releases its run and is requeued", parse=_minutes, metavar="T")  # fmt: skip
    slurm_mem: str | None = option(None, help="memory per task, e.g. 16G (default: the cluster's)", parse=_memory, metavar="M")
    slurm_gpus_per_task: int | None = option(None, help="GPUs per task", parse=count, metavar="G")
    slurm_cpus_per_task: int | None = option(None, help="CPUs per task", parse=positive_int, metavar="C")
    slurm_account: str | None = option(None, help="the account charged", metavar="A")
    slurm_qos: str | None = option(None, help="the quality of service", metavar="Q")
    slurm_constraint: str | None = option(None, help="node features required, e.g. a100", metavar="F")
    slurm_folder: Path | None = option(None, help="submitit's folder: job scripts and one log per task (default: OUT/slurm)",
                                       parse=Path, metavar="DIR")  # fmt: skip


def _check_executor(executor: Any) -> None:
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must have a submit(fn, *args) method, got {type(executor).__name__}")
    if isinstance(executor, ThreadPoolExecutor):
        raise TypeError("a ThreadPoolExecutor runs tasks in this process, whose global random generators every run seeds; "
                        "use a ProcessPoolExecutor (mp_context=multiprocessing.get_context('spawn')) or submitit's executor")  # fmt: skip


def check_slurm(options: SlurmOptions, cfg: ExperimentConfig, executor: Any = None) -> None:
    """Check the Slurm options against the comparison's, before anything is read or written.

    Args:
        options: the Slurm options.
        cfg: the comparison's options.
        executor: the executor given to `compare()` (None: the tasks go to Slurm when `slurm_array` is set).

    Raises:
        TypeError: an `executor` that cannot run the tasks (no `submit`; a `ThreadPoolExecutor`).
        ValueError: `slurm_array` or `slurm_time` not a whole number >= 1; another Slurm option without
            `slurm_array` or with an `executor`; or tasks with `shard` or `summarize`.
    """
    defaults = SlurmOptions()
    given = ", ".join("--" + f.name.replace("_", "-") for f in fields(SlurmOptions)
                      if f.name != "slurm_array" and getattr(options, f.name) != getattr(defaults, f.name))  # fmt: skip
    for name in ("slurm_array", "slurm_time"):
        value = getattr(options, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1{' (minutes)' if name == 'slurm_time' else ''}, got {value!r}")
    if given and executor is not None:
        raise ValueError(f"{given} describe(s) the Slurm tasks made here; an executor given has its own settings: leave them out")
    if given and options.slurm_array is None:
        raise ValueError(f"{given} describe(s) the tasks of --slurm-array N; add --slurm-array N, or leave them out")
    if executor is not None:
        _check_executor(executor)
    elif options.slurm_array is None:
        return
    if cfg.summarize:
        raise ValueError("--summarize rebuilds the outputs here and submits nothing; leave out --slurm-array (or executor)")
    if tuple(cfg.shard) != (1, 1):
        shard = f"{cfg.shard[0]}/{cfg.shard[1]}"
        raise ValueError(
            f"the tasks of --slurm-array (or an executor) each pull runs from the whole grid; leave out --shard {shard}"
        )


class PullingTask:
    """One task of a grid sent elsewhere: called in another process (a `concurrent.futures` worker,
    a Slurm job), it trains the runs of `cfg`'s grid that nobody holds until none is left, waits
    for the runs other tasks train, and returns. Under submitit, a task at its time limit (or
    preempted) releases its run and is requeued (`checkpoint`).

    Args:
        cfg: the comparison, with absolute paths (`submit_tasks` makes them so).
        quiet: one line per run in the task's output.
    """

    def __init__(self, cfg: ExperimentConfig, quiet: bool = False):
        self.cfg = cfg
        self.quiet = quiet

    def __call__(self) -> str:
        "Pull and train runs until every run of the grid is recorded; returns the path of `OUT/results.csv`."
        from .schedule import run_experiment  # here, not above: keeps `fastspecnorm compare --help` free of torch

        return str(run_experiment(self.cfg, RunLog(quiet=self.quiet)))

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook at a time limit or preemption: requeue the same task (a `DelayedSubmission`).

        Args:
            *args: the call's positional arguments, as submitit passes them (none).
            **kwargs: the call's keyword arguments, likewise.
        """
        from submitit.helpers import DelayedSubmission  # only ever called inside a submitit job

        return DelayedSubmission(self, *args, **kwargs)


def slurm_executor(options: SlurmOptions, out: str | os.PathLike):
    """submitit's Slurm executor for `options` (its job array's tasks are `slurm_array`).

    Args:
        options: the Slurm options.
        out: the grid's OUT folder (submitit's folder defaults to `OUT/slurm`).

    Returns:
        A `submitit.SlurmExecutor`; nothing is written until a task is submitted.

    Raises:
        ImportError: submitit is not installed (the extra `slurm`).
        RuntimeError: Slurm's `sbatch` is not on PATH.
    """
    try:
        import submitit  # the optional extra; imported only to submit
    except ImportError:
        raise ImportError(f"--slurm-array needs submitit, the extra 'slurm': {INSTALL_HINT}") from None
    if shutil.which("sbatch") is None:
        raise RuntimeError("--slurm-array needs Slurm: no sbatch on PATH here; run the command on the cluster's login node")
    folder = Path(options.slurm_folder or Path(out) / "slurm").absolute()
    executor = submitit.SlurmExecutor(folder=folder)
    names = ("partition", "mem", "gpus_per_task", "cpus_per_task", "account", "qos", "constraint")
    given = {name: getattr(options, f"slurm_{name}") for name in names} | {"array_parallelism": options.slurm_array}
    executor.update_parameters(
        time=options.slurm_time,
        job_name="fastspecnorm",
        stderr_to_stdout=True,
        **{name: value for name, value in given.items() if value is not None},
    )
    return executor


def _absolute(cfg: ExperimentConfig) -> ExperimentConfig:
    "`cfg` with its paths absolute, for a task whose working folder may differ."
    paths = {"out": Path(cfg.out).absolute()}
    if cfg.data is not None and cfg.data not in ("synthetic", "download"):
        paths["data"] = str(Path(cfg.data).absolute())
    for name in ("csv", "path"):
        if getattr(cfg, name) is not None:
            paths[name] = str(Path(getattr(cfg, name)).absolute())
    return replace(cfg, **paths)


def submit_tasks(cfg: ExperimentConfig, executor, tasks: int = 1, quiet: bool = False) -> list:
    """Submit `tasks` pulling tasks of `cfg`'s grid to `executor` (prepare the grid first: `grid.prepare`).

    An executor with submitit's `batch()` gets them as one job array.

    Args:
        cfg: the comparison's options.
        executor: an object with `submit(fn, *args)` returning a future or job with `result()`:
            `concurrent.futures.ProcessPoolExecutor` (threads are refused), `submitit.SlurmExecutor`.
        tasks: how many tasks to submit (>= 1).
        quiet: one line per run in each task's output.

    Returns:
        The futures or submitit jobs, in submission order.

    Raises:
        TypeError: an executor without `submit`, or a `ThreadPoolExecutor`.
        ValueError: `tasks` is not a whole number >= 1.
    """
    _check_executor(executor)
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks must be a whole number >= 1, got {tasks!r}")
    task = PullingTask(_absolute(cfg), quiet=quiet)
    with executor.batch() if callable(getattr(executor, "batch", None)) else nullcontext():  # submitit: one job array
        return [executor.submit(task) for _ in range(tasks)]


def describe_jobs(jobs: list, out: str | os.PathLike) -> str:
    """What was submitted and how to follow it, for the log.

    Args:
        jobs: what `submit_tasks` returned.
        out: the grid's OUT folder.

    Returns:
        For submitit jobs, a few lines: the job array's id, `squeue`, the logs, `scancel` and how to
            gather the results later; otherwise one line.
    """
    job_ids = [str(getattr(job, "job_id", "")) for job in jobs]
    if not all(job_ids):
        return f"submitted {len(jobs)} task(s) pulling runs from {out}"
    array = job_ids[0].split("_")[0]
    logs = getattr(getattr(jobs[0], "paths", None), "stdout", None)
    logs = str(logs).replace(job_ids[0], f"{array}_*") if logs is not None else "submitit's folder"
    return (f"submitted Slurm job {array} ({len(jobs)} task(s) pulling runs from {out})\n"
            f"follow it: squeue -j {array}   logs: {logs}   stop it: scancel {array}\n"
            f"when it ends: fastspecnorm compare --summarize --out {out}")  # fmt: skip


def gather(cfg: ExperimentConfig, prep: Prepared, jobs: list, log: RunLog | None = None) -> Path:
    """Wait for the submitted tasks, then rebuild `results.csv`, `summary.md` and `summary.png`.

    A failed or cancelled task is named; an error only when runs are left unrecorded.

    Args:
        cfg: the comparison's options.
        prep: the grid as `grid.prepare` returned it.
        jobs: what `submit_tasks` returned (each with `result()`).
        log: how progress is shown (None: `RunLog()`).

    Returns:
        The path of `results.csv`.

    Raises:
        RuntimeError: runs of the grid are not recorded after every task ended (naming the
            failed tasks); run the same command again to resume.
    """
    from .schedule import grid_runs, rebuild_outputs, run_id  # here, not above: keeps `--help` free of torch
    from .store import RunStore

    log = log if isinstance(log, RunLog) else RunLog()
    failed = []
    for number, job in enumerate(jobs, 1):
        try:
            job.result()
        except Exception as e:  # a task's failure, reported with the grid's state below
            # submitit's message holds the task's traceback: its last "...Error: ..." line says what happened
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line)]
            what = errors[-1] if errors else lines[0] if lines else type(e).__name__
            where = getattr(getattr(job, "paths", None), "stdout", None)
            failed.append(f"task {getattr(job, 'job_id', number)}: {what}{f' (log: {where})' if where else ''}")
    for line in failed:
        log.result(line)
    store = RunStore(cfg.out)
    runs = grid_runs(replace(cfg, shard=(1, 1)), prep.folds, prep.repeats)
    missing = [r for r in runs if not store.is_done(run_id(r.norm, r.fold, r.seed, prep.experiment_id, r.repeat))]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(runs)} run(s) are not recorded after every task ended"
                           f"{f' ({len(failed)} failed, named above)' if failed else ''}; run the same command again to resume")  # fmt: skip
    rebuild_outputs(cfg.out, prep.experiment, cfg.rope, log)
    log.result(f"results: {store.results_path}\nsummary: {cfg.out / 'summary.md'}, {cfg.out / 'summary.png'}")
    return store.results_path
