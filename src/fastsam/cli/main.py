"""The ``fastsam`` command line."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .. import __version__  # noqa: F401
from ..errors import FastSAMError
from . import batch, convert, evaluate, export, segment, serve, track, train
from .common import UsageError
from . import data as data_cli
from . import annotate, label_studio

COMMANDS = (segment, track, batch, serve, convert, export, evaluate, train, data_cli, annotate, label_studio)


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
    """Entry point of the console script. Returns the exit code: 0 all done, 1 some inputs failed or the command
    could not run, 2 usage error. Errors are one line on stderr; ``--debug`` prints the traceback instead."""
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
    except UsageError as err:
        print(f"fastsam {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # one line for the user; the traceback is one flag away
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"error: {one_line(err)}", file=sys.stderr)
        return 1


def one_line(err: BaseException) -> str:
    """An exception as one line: its message (the first line of it; the type's name for a bug with no message),
    and where to look next when it is not one of ours."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (FastSAMError, ValueError, OSError, ImportError)):
        return text
    return f"{type(err).__name__}: {text} (run again with --debug for the traceback)"

if __name__ == "__main__":
    sys.exit(main())
