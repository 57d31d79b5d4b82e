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

from safepredict.errors import SafePredictError

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

# Every subcommand: the module whose ``register(subparsers)`` defines it, and its one-line help.
# Only the chosen command's module is imported (``safepredict check`` loads the lock code and
# nothing else); the others appear in ``--help`` from this table.
COMMANDS: dict[str, tuple[str, str]] = {
    "lock": ("safepredict.lock.commands", "write the environment lock (what the model was validated with)"),
    "check": (
        "safepredict.lock.commands",
        "compare the running environment with a lock (exit 0 match, 1 mismatch, 2 unreadable)",
    ),
    "export-conda": (
        "safepredict.lock.commands",
        "write a lock as environment.yml, an @EXPLICIT spec or a conda-lock v1 file",
    ),
    "profile": ("safepredict.monitor.commands", "capture the reference profile the runtime monitor compares against"),
    "profile-show": ("safepredict.monitor.commands", "print a reference profile in words"),
    "golden": (
        "safepredict.monitor.commands",
        "store a few images and their detections beside the lock, for `safepredict check --replay`",
    ),
    "contract": (
        "safepredict.contract_commands",
        "print what a model saw at training (its training contract), from a config or checkpoint",
    ),
    "diagnose": (
        "safepredict.diagnose.commands",
        "run every check on a checkpoint and some images; ranked findings with evidence and fixes",
    ),
    "predict": (
        "safepredict.folder_commands",
        "predict a folder of images to COCO-format results (resumable), with the monitor's summary",
    ),
    "export": (
        "safepredict.export.commands",
        "write a checkpoint as ONNX with its training contract in the file (for onnxruntime)",
    ),
    "verify-export": (
        "safepredict.export.commands",
        "compare an ONNX model with the framework's evaluation, stage by stage (exit 1 beyond tolerance)",
    ),
    "demo": ("safepredict.demo.commands", "offline demo: a naive inference mistake fails, SafePredictor catches it"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not a top-level option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the real parser of the chosen command and a listing entry for the others.

    ``argv=None`` reads ``sys.argv``. With no command named, no command module is imported.
    """
    from safepredict import __version__

    words = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(words)
    parser = argparse.ArgumentParser(
        prog="safepredict",
        description="Run a trained Detectron2 or MMDetection detector exactly as it was evaluated at training.",
        epilog="Run 'safepredict COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"safepredict {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    loaded = COMMANDS[chosen][0] if chosen else None
    for name, (module_name, help_text) in COMMANDS.items():
        if name in sub.choices:
            continue  # registered with the chosen command's module
        if module_name == loaded:
            importlib.import_module(module_name).register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
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
