"""The command line: `fastspecnorm compare ...` (also `python -m fastspecnorm compare`, and
`experiments/esc50_normalization.py`, its alias). Arguments are parsed and checked without importing
torch or fastai, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from .. import __version__
from ..datasets.sources import SourceSpec
from .grid import ExperimentConfig, SettingOptions, check_config, prepare
from .log import RunLog
from .slurm import SlurmOptions, check_slurm, describe_jobs, gather, slurm_executor, submit_tasks

__all__ = ["build_parser", "parse_args", "main"]

COMMAND = "fastspecnorm compare"


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name.strip(), parsed


def _add_options(group, cls, skip=()) -> None:
    "One `--name` per field of the dataclass `cls` declared with `_options.option` (not those in `skip`)."
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("flag") or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
        if f.type in (bool, "bool"):
            group.add_argument(flag, action="store_true", help=meta["help"])
            continue
        kwargs = {"help": meta["help"], "metavar": meta["metavar"], "nargs": meta["nargs"], "type": meta["parse"]}
        kwargs.update({"required": True} if default is MISSING else {"default": default})
        if meta["choices"] is not None:
            kwargs["choices"] = meta["choices"]()
            if meta["nargs"] == "?":  # a bare `--augment` means its first choice
                kwargs["const"] = kwargs["choices"][0]
        group.add_argument(flag, **{k: v for k, v in kwargs.items() if v is not None})


def build_parser(prog: str = COMMAND) -> argparse.ArgumentParser:
    """The `compare` command's argument parser (also the alias script's).

    Args:
        prog: the program name shown in the usage line and in error messages.

    Returns:
        The `argparse.ArgumentParser`; `--help` lists its options.
    """
    p = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s (--data DIR | --csv FILE) --out OUT [options]   (--help lists them)",
        description="Compare spectrogram normalizations on your data: xResNet18 from scratch for each normalization, "
        "fold and seed, and a verdict per normalization from tests over folds. Resumable; any number of processes may share --out.",
    )
    _add_options(p.add_argument_group("data (one of --data or --csv)"), SourceSpec)
    _add_options(p, ExperimentConfig, skip={f.name for f in fields(SourceSpec)})
    _add_options(p.add_argument_group("settings (any other: --set NAME=VALUE)"), SettingOptions)
    p.add_argument("--set", dest="overrides", type=_parse_override, action="append", default=[], metavar="NAME=VALUE",
                   help="override one setting of the preset, e.g. --set n_mels=128 (repeatable)")  # fmt: skip
    slurm = p.add_argument_group('Slurm, through submitit (pip install "fastspecnorm[slurm]"); not part of the experiment')
    _add_options(slurm, SlurmOptions)
    slurm.add_argument("--wait", action="store_true", help="with --slurm-array: return when the tasks end, the outputs complete")
    p.add_argument("--quiet", action="store_true", help="one line per run")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def parse_args(argv=None, prog: str = COMMAND, default_folds: list | None = None) -> ExperimentConfig:
    """Parse and check the command line into an `ExperimentConfig`.

    The arguments are checked alone (`check_config`): no file is read or written.

    Args:
        argv: the arguments after the command's name (None: `sys.argv[1:]`).
        prog: the program name shown in the usage line and in error messages.
        default_folds: the folds when `--folds` is not given (None: all).

    Returns:
        The `ExperimentConfig`, with `quiet` and `debug` set from `--quiet` and `--debug`, `slurm`
            (the `SlurmOptions`) and `wait` from `--wait`.

    Raises:
        SystemExit: bad input; argparse exits with status 2 and one message on stderr.
    """
    p = build_parser(prog)
    a = p.parse_args(argv)
    values = {f.name: getattr(a, f.name) for f in fields(ExperimentConfig) if f.metadata.get("flag")}
    settings = {f.name: getattr(a, f.name) for f in fields(SettingOptions)}
    overrides = dict(a.overrides) | {name: value for name, value in settings.items() if value is not None}
    if values["folds"] is None:
        values["folds"] = default_folds
    cfg = ExperimentConfig(**values, overrides=overrides)
    cfg.quiet, cfg.debug = a.quiet, a.debug
    cfg.slurm, cfg.wait = SlurmOptions(**{f.name: getattr(a, f.name) for f in fields(SlurmOptions)}), a.wait
    if a.wait and cfg.slurm.slurm_array is None:
        p.error("--wait waits for the tasks of --slurm-array N; add --slurm-array N, or leave it out")
    try:
        check_config(cfg)
        check_slurm(cfg.slurm, cfg)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    return cfg


def _show_warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)


@contextmanager
def _command_warnings():
    """While the command runs, a warning is one `warning: <message>` line on stderr (no file and line
    in the package), and torch's FutureWarning that `torch.jit.script` is deprecated is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        warnings.showwarning = _show_warning_line  # catch_warnings restores the previous one on exit
        yield


@contextmanager
def _sigterm_interrupts():
    """While the command runs (in its main thread), SIGTERM (a scheduler cancelling or preempting the
    job) stops it as Ctrl-C does: the run in progress releases its claim and the resume line is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from .schedule import Interrupted  # here, not above: keeps `fastspecnorm compare --help` free of torch

    def interrupt(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None, prog: str = COMMAND, default_folds: list | None = None) -> int:
    """Command-line entry point: parse, prepare the grid once, run it.

    Errors end in one `error:` line on stderr; `--debug` shows the traceback instead.

    Args:
        argv: the arguments after the command's name (None: `sys.argv[1:]`).
        prog: the program name, shown in messages and recorded in each run's command line.
        default_folds: the folds when `--folds` is not given (None: all).

    Returns:
        The exit status: 0 done, 2 bad input (before anything is written or trained), 1 a
            failure while running, 128 + the signal's number when interrupted (130 for Ctrl-C,
            143 for SIGTERM; run the same command again to resume).

    Raises:
        SystemExit: status 2 on an argument error found by argparse (`parse_args`).
    """
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    cfg = parse_args(args, prog=prog, default_folds=default_folds)
    cfg.command = shlex.join([*prog.split(), *args])
    log = RunLog(quiet=cfg.quiet)
    try:
        with _command_warnings(), _sigterm_interrupts():
            from .schedule import run_experiment, summarize_out  # here: keeps `compare --help` free of torch

            if cfg.summarize:
                summarize_out(cfg.out, log=log, rope=cfg.rope)
                return 0
            executor = None
            if cfg.slurm.slurm_array is not None:
                try:  # before anything is written: submitit missing, no sbatch here
                    executor = slurm_executor(cfg.slurm, cfg.out)
                except (ImportError, RuntimeError) as e:
                    if cfg.debug:
                        raise
                    print(f"error: {e}", file=sys.stderr)
                    return 2
            prep = prepare(cfg, log)
            if executor is not None:
                jobs = submit_tasks(cfg, executor, cfg.slurm.slurm_array, quiet=cfg.quiet)
                log.result(describe_jobs(jobs, cfg.out))
                if cfg.wait:
                    gather(cfg, prep, jobs, log)
                return 0
            run_experiment(cfg, log, prep=prep)
    except KeyboardInterrupt as e:
        if cfg.debug:
            raise
        print(f"error: interrupted{f' ({e})' if str(e) else ''}; finished runs are kept: run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 128 + getattr(e, "signum", signal.SIGINT)
    except Exception as e:  # one `error:` line; the traceback with --debug
        if cfg.debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, ValueError | TypeError | FileNotFoundError) else 1
    return 0


def _one_line(e: Exception) -> str:
    """The error's message in one line: fastai's line above a callback's error ("Exception occured in
    `StatsCallback` when calling event `before_fit`:") named at its end; an unforeseen type named first."""
    if not isinstance(e, ValueError | TypeError | RuntimeError | OSError):
        return f"{type(e).__name__}: {e} (unexpected: --debug shows the traceback; please report it)"
    found = re.fullmatch(r"Exception occured in `(\w+)` when calling event `(\w+)`:\n\t(.*)", str(e), flags=re.DOTALL)
    return f"{found[3]} (in {found[1]}.{found[2]})" if found else str(e)


def command(argv=None) -> int:
    """`fastspecnorm COMMAND ...`: the installed command (`[project.scripts]`) and `python -m fastspecnorm`.

    Args:
        argv: the arguments after `fastspecnorm` (None: `sys.argv[1:]`).

    Returns:
        The exit status: `main`'s for `compare`; for `cache`, 0, or 1 when a cache folder cannot be
            cleared (read-only); 2 for no command.

    Raises:
        SystemExit: `--help` and `--version` (status 0); an unknown command (status 2, argparse's
            one error line).
    """
    # Spinning OpenMP threads stall training on a shared CPU (docs/performance.md): the program's own
    # setting, before torch is imported. And `_command_warnings`' filter for the `--devices` workers.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PYTHONWARNINGS", "ignore:`torch.jit.script` is deprecated:FutureWarning")
    parser = argparse.ArgumentParser(prog="fastspecnorm", description="Spectrogram normalization for fastai audio models.")
    parser.add_argument("-V", "--version", action="version", version=f"fastspecnorm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("compare", add_help=False, help="compare spectrogram normalizations on your data "
                                  "(folds x seeds, verdicts from tests over folds); fastspecnorm compare --help")  # fmt: skip
    cache = commands.add_parser("cache", help="the decoded-audio cache: where it is and its size (--info), or empty it (--clear)")
    what = cache.add_mutually_exclusive_group()
    what.add_argument("--info", action="store_true", help="list its folders and their size on disk (the default)")
    what.add_argument("--clear", action="store_true", help="delete the decoded clips; the next run decodes them again")
    cache.add_argument("--dir", metavar="DIR", help="the cache folder (default: $FASTSPECNORM_CACHE, else the user cache folder)")
    # The command's own arguments are left to `main`, whose parser has the options.
    chosen, rest = parser.parse_known_args(sys.argv[1:] if argv is None else [str(a) for a in argv])
    if chosen.command is None:
        parser.print_help(sys.stderr)
        return 2
    if chosen.command == "cache":
        if rest:
            cache.error(f"unrecognized arguments: {' '.join(rest)}")
        return _cache(chosen.clear, chosen.dir)
    return main(rest)


def _cache(clear: bool, cache_dir: str | None) -> int:
    "`fastspecnorm cache`: the cache's folders and sizes, or `--clear` them."
    from ..audio.cache import CACHE_ENV, default_cache_dir  # here, not above: keeps `compare --help` free of torch
    from ..audio.cache_folders import cache_folders, clear_cache, format_bytes

    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    if root is None:
        print(f"audio cache: off (${CACHE_ENV}={os.environ.get(CACHE_ENV)}); loaders decode every file every epoch")
        return 0
    if clear:
        try:
            n, nbytes = clear_cache(root)
        except PermissionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"audio cache: {root}: cleared {n} folder(s), {format_bytes(nbytes)} freed")
        return 0
    folders = cache_folders(root)
    print(f"audio cache: {root} (${CACHE_ENV} moves it, {CACHE_ENV}=off turns it off)")
    for f in folders:
        print(f"  {format_bytes(f.nbytes):>9}  {f.path.relative_to(root).as_posix()}")
    hint = "; fastspecnorm cache --clear empties it" if folders else ""
    print(f"total: {format_bytes(sum(f.nbytes for f in folders))} in {len(folders)} folder(s){hint}")
    return 0
