"""The ``safepredict`` command line.

Each capability registers its own subcommands (``register(subparsers)`` in its package's
``commands`` module), so this file only wires them together, maps errors to exit codes and keeps
tracebacks away from users.

Exit codes, the same for every subcommand:
  0  success / everything matches
  1  a finding: mismatch, drift, failed check (the command worked; the answer is "no")
  2  usage error, unreadable input, or an error safepredict raised on purpose
  3  an unexpected internal error (a bug: rerun with --verbose for the traceback)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from safepredict import __version__
from safepredict.errors import SafePredictError

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

# Modules that define ``register(subparsers)``; a missing one is simply not offered.
_COMMAND_MODULES = (
    "safepredict.lock.commands",
    "safepredict.monitor.commands",
    "safepredict.diagnose.commands",
    "safepredict.demo.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safepredict",
        description="Run a trained Detectron2 or MMDetection detector exactly as it was evaluated at training.",
    )
    parser.add_argument("--version", action="version", version=f"safepredict {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except SafePredictError as exc:
        print(f"safepredict {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(
            f"safepredict {args.command}: internal error: {type(exc).__name__}: {exc} (rerun with -v)", file=sys.stderr
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
