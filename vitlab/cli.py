"""The ``vitlab`` command line: parses the arguments and dispatches to the command's module in vitlab/commands/."""

from __future__ import annotations

import argparse
import os
import sys

from vitlab.commands import COMMANDS
from vitlab.errors import Interrupted, VitlabError

# The flag that sets each field a library error may name (``VitlabError.field``: a config field, or the library
# function's parameter): the one place where the command line's words replace the library's.
FLAGS = {
    # Config fields (vitlab.commands.common.run_flag_values, and train's/finetune's own flags).
    "data.source": "--data",
    "model.preset": "--model",
    "train.init_weights": "--weights",
    "train.epochs": "--epochs",
    "train.time_budget": "--time-budget",
    "train.batch_size": "--batch-size",
    "train.lr": "--lr",
    "train.seed": "--seed",
    "train.device": "--device",
    # Library functions' parameters, and the config file and overrides.
    "config": "--config",
    "set": "--set",
    "out": "--out",
    "resume": "--resume",
    "data": "--data",
    "fmt": "--format",
    "top_k": "--top-k",
    "class_name": "--class",
    "discard": "--discard",
    "extra_tests": "--extra-test",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlab", description="Vision Transformers for image classification.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _version() -> str:
    from vitlab import __version__

    return __version__


def error_text(e: VitlabError) -> str:
    """The error in the command line's words: its field as the flag that sets it (``--data /x: folder not
    found``), where ``FLAGS`` has one; else the library's own text."""
    flag = FLAGS.get(e.field) if e.field is not None else None
    if flag is None:
        return str(e)
    return f"{flag} {e.value}: {e.reason}" if e.value is not None else f"{flag}: {e.reason}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = {command.NAME: command.run for command in COMMANDS}[args.command]
    from vitlab.train.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports progress; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    try:
        return run(args)
    except Interrupted as e:
        print(f"vitlab: {e}", file=sys.stderr)
        return 130
    except VitlabError as e:
        print(f"vitlab: error: {error_text(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied ... while writing outputs
        where = f"{e.filename}: " if e.filename else ""
        print(f"vitlab: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vitlab: interrupted", file=sys.stderr)
        return 130
