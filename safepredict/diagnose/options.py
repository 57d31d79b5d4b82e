"""The command-line options ``safepredict diagnose`` and ``safepredict predict`` share.

Both commands run a checkpoint on images, so they take the same inputs the same way: your
inference config, the training config where the artifact lacks it, a reference profile, the
device, class names and torch's thread count. Command-line code only: no library module imports
this.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safepredict.errors import InputError

__all__ = ["add_common_options", "class_names", "set_threads"]


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add the shared options to a subcommand's parser."""
    # SUPPRESS: given after the subcommand they set the global flags; absent, they leave them alone.
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    parser.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (repeat for debug)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="your inference config (diffed against the training config)"
    )
    parser.add_argument(
        "--training-config",
        type=Path,
        default=None,
        help="the config the model was trained with, where it is not beside the checkpoint (Detectron2's "
        "config.yaml) or embedded in it (mmengine)",
    )
    parser.add_argument("--reference", type=Path, default=None, help="reference profile (safepredict profile)")
    parser.add_argument("--recursive", action="store_true", help="also take images from subfolders")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1")
    parser.add_argument(
        "--class-names",
        type=class_names,
        default=None,
        metavar="A,B,...",
        help="class names, comma-separated, for a checkpoint whose training artifact records none",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="run the framework's own config loaders on the model's configs (they execute Python and unsafe "
        "YAML); without it anything that would run code is refused (docs/security.md)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads on the CPU (default: torch's choice; 1 is often fastest on a busy machine)",
    )


def class_names(text: str) -> tuple[str, ...]:
    """``--class-names A,B,C`` as a tuple; an empty name is a usage error."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty class name in {text!r}")
    return names


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (imports torch only when it is given)."""
    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads must be at least 1", found=args.threads)
        import torch

        torch.set_num_threads(args.threads)
