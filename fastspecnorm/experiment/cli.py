"""The command line: `fastspecnorm compare ...` (also `python -m fastspecnorm compare`, and
`experiments/esc50_normalization.py`, its alias).

Arguments are parsed and checked here without importing torch or fastai, so `--help` and argument
errors answer at once. Errors end in one `error:` line on stderr: status 2 for bad input, 1 for a
failure while running, 130 when interrupted; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..presets import AUGMENTS, PRECISIONS, PRESETS
from .grid import DATASET_NAMES, ExperimentConfig, check_config
from .norms import NORMS

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


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects I/N such as 2/4, got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return index, count


def _integer(minimum: int, expected: str):
    "An argparse type: an integer >= `minimum`, else one message saying what was `expected`."

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _integer(1, "a positive integer")
_count = _integer(0, "an integer >= 0")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"expected accuracy points in [0, 100), such as 1.0, got {text!r}")
    return value


def _fold(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


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
    src = p.add_argument_group("data (one of --data or --csv)")
    src.add_argument("--data", help='a dataset folder: ESC-50 layout (meta/esc50.csv + audio/), FSDD (recordings/) or one '
                     'subfolder per label (detected); "synthetic" (generated ESC-50 layout) or "download"')  # fmt: skip
    src.add_argument("--dataset", default=None, choices=DATASET_NAMES, help="force the layout instead of detecting it")
    src.add_argument("--csv", help="a CSV listing the clips (file and label columns, and a fold or group column)")
    src.add_argument("--path", help="the folder the CSV's file names are relative to (default: the CSV's folder)")
    src.add_argument("--fn-col", default="0", help="the CSV's file column, a name or 0-based position (default: the first)")
    src.add_argument("--label-col", default="1", help="the CSV's label column (default: the second)")
    src.add_argument("--fold-col", help="the CSV column whose values are the folds (a fold number, a speaker, a session)")
    src.add_argument("--group-col", help="without --fold-col: folds are drawn so that no value of this column is in two")
    src.add_argument("--k", type=_positive_int, default=5, help="folds to draw when the data have none (default: 5)")
    src.add_argument("--fold-seed", type=int, default=0, help="the seed of the fold draw (default: 0)")
    src.add_argument("--repeats", type=_positive_int, default=1, metavar="R",
                     help="draw R different k-fold partitions (repeated k-fold; sources without folds only; default: 1)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="output folder: runs/, results.csv, summary.md, summary.png, stats/")
    p.add_argument("--folds", type=_fold, nargs="+", default=None, help="fold values to validate on (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--norms", nargs="+", default=list(NORMS), help=f"normalizations, some of {' '.join(NORMS)} (default: all)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="settings preset (default: quick for ESC-50, fsdd for FSDD, own for your data)")  # fmt: skip
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs per run (default: the preset's)")
    p.add_argument("--lr", type=_positive_float, default=None, help="one-cycle max learning rate (default: fastai's)")
    p.add_argument("--bs", type=_positive_int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--num-workers", type=_count, default=None, help="DataLoader worker processes")
    p.add_argument(
        "--stats-fraction", type=_fraction, default=1.0, help="share of training batches for global/channel statistics"
    )
    p.add_argument("--set", dest="overrides", type=_parse_override, action="append", default=[], metavar="NAME=VALUE",
                   help="override one setting of the preset, e.g. --set n_mels=128 (repeatable)")  # fmt: skip
    p.add_argument(
        "--synthetic-classes", type=_positive_int, default=10, help="classes in the generated dataset (--data synthetic)"
    )
    p.add_argument("--synthetic-clips", type=_positive_int, default=20, help="clips per class in the generated dataset")
    p.add_argument("--shard", type=_parse_shard, default=(1, 1), metavar="I/N",
                   help="run the I-th of N disjoint slices of the grid (job arrays), e.g. 3/8")  # fmt: skip
    p.add_argument("--devices", nargs="+", default=[], metavar="DEVICE",
                   help="one worker process per listed device on this machine, e.g. cuda:0 cuda:1 (or cpu cpu)")  # fmt: skip
    p.add_argument("--augment", nargs="?", const="spec", choices=[a for a in AUGMENTS if isinstance(a, str)], metavar="KIND",
                   help="add train-only augmentations to the preset: spec (SpecAugment masks and mixup, the default), "
                        "waveform (gain, noise, time shift) or all")  # fmt: skip
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="fp32, bf16 (autocast with channels_last, CPU or CUDA) or auto (bf16 where the device computes it "
                        "natively); part of the experiment's identity (default: the preset's, fp32)")  # fmt: skip
    p.add_argument("--rope", type=_points, default=1.0, metavar="POINTS",
                   help="the verdicts' region of practical equivalence, in accuracy points (default: 1.0)")  # fmt: skip
    p.add_argument("--summarize", action="store_true", help="only rebuild results.csv, summary.md and summary.png in --out")
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
        The `ExperimentConfig`, with `quiet` and `debug` set from `--quiet` and `--debug`.

    Raises:
        SystemExit: bad input; argparse exits with status 2 and one message on stderr.
    """
    p = build_parser(prog)
    a = p.parse_args(argv)
    overrides = dict(a.overrides)
    for name, value in (("lr", a.lr), ("bs", a.bs), ("num_workers", a.num_workers), ("precision", a.precision)):
        if value is not None:
            overrides[name] = value
    if a.augment is not None:
        overrides["augment"] = a.augment
    cfg = ExperimentConfig(
        data=a.data, out=a.out, folds=a.folds if a.folds is not None else default_folds, seeds=a.seeds, norms=a.norms,
        preset=a.preset, epochs=a.epochs, stats_fraction=a.stats_fraction, overrides=overrides,
        synthetic_classes=a.synthetic_classes, synthetic_clips=a.synthetic_clips, shard=a.shard, devices=a.devices,
        summarize=a.summarize, dataset=a.dataset, csv=a.csv, path=a.path, fn_col=a.fn_col, label_col=a.label_col,
        fold_col=a.fold_col, group_col=a.group_col, k=a.k, fold_seed=a.fold_seed, repeats=a.repeats, rope=a.rope,
    )  # fmt: skip
    cfg.quiet, cfg.debug = a.quiet, a.debug
    try:
        check_config(cfg)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    return cfg


@contextmanager
def _sigterm_interrupts():
    """While the command runs, SIGTERM (a scheduler cancelling, preempting or requeueing the job;
    `kill`) stops it as Ctrl-C does: the run in progress releases its claim, finished runs are kept
    and the resume line is printed. The command's own handler, in its main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from .schedule import Interrupted

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
    from .log import RunLog

    log = RunLog(quiet=cfg.quiet)
    try:
        with _sigterm_interrupts():
            from .grid import prepare
            from .schedule import run_experiment, summarize_out

            if cfg.summarize:
                summarize_out(cfg.out, log=log, rope=cfg.rope)
                return 0
            try:
                prep = prepare(cfg, log)
            except (ValueError, TypeError, FileNotFoundError) as e:
                if cfg.debug:
                    raise
                print(f"error: {e}", file=sys.stderr)
                return 2
            run_experiment(cfg, log, prep=prep)
    except KeyboardInterrupt as e:
        if cfg.debug:
            raise
        print(f"error: interrupted{f' ({e})' if str(e) else ''}; finished runs are kept: run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 128 + getattr(e, "signum", signal.SIGINT)
    except (ValueError, TypeError, FileNotFoundError) as e:
        if cfg.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as e:
        if cfg.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def command(argv=None) -> int:
    """`fastspecnorm SUBCOMMAND ...`: the installed command (`[project.scripts]`) and `python -m fastspecnorm`.

    Args:
        argv: the arguments after `fastspecnorm` (None: `sys.argv[1:]`).

    Returns:
        The exit status: `main`'s for `compare`; 0 for `--help` and `--version`; 2 for no command
            or an unknown one.
    """
    # Spinning OpenMP threads stall training steps on a CPU shared with other work
    # (docs/performance.md); waiting passively avoids it. The program's own setting, before torch
    # is imported; a value already in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = sys.argv[1:] if argv is None else list(argv)
    usage = "usage: fastspecnorm compare [options]   (fastspecnorm compare --help for the options)"
    if not args or args[0] in ("-h", "--help"):
        print(
            usage + "\n\ncommands:\n  compare   compare spectrogram normalizations on your data (folds x seeds, paired intervals)"
        )
        return 0 if args else 2
    if args[0] in ("--version", "-V"):
        from importlib.metadata import version

        print(f"fastspecnorm {version('fastspecnorm')}")
        return 0
    if args[0] != "compare":
        print(f"{usage}\nerror: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    return main(args[1:])
