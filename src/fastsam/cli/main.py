"""The ``fastsam`` command line."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .. import __version__  # noqa: F401
from ..errors import FastSAMError
from . import batch, convert, evaluate, export, segment, serve, train
from . import data as data_cli

COMMANDS = (segment, batch, serve, convert, export, evaluate, train, data_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastsam",
        description="FastSAM: segment anything in real time with a YOLOv8-seg network.",
        epilog="Run 'fastsam COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fastsam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script. Returns the exit code (0 success, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FastSAMError, ValueError, OSError, ImportError) as err:
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
