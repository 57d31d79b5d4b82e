"""``safepredict lock``, ``safepredict check`` and ``safepredict export-conda``.

Exit codes (see :mod:`safepredict.cli`): 0 the environment matches the lock, 1 it does not,
2 usage error or an unreadable lock.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["CHECK_EXTENSIONS", "register"]

DEFAULT_LOCK = "safepredict.lock"

# Hooks that add to `safepredict check` (golden replay plugs in here): each is a pair
# (add_arguments(parser), run(args, report) -> exit code or None). The check's exit code is the
# highest of the environment check's and theirs.
CHECK_EXTENSIONS: list[
    tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Any], int | None]]
] = []


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lock",
        help="write the environment lock (what the model was validated with)",
        description="Capture the running environment and write it as a lock (imports torch and cv2 to ask them).",
    )
    p.add_argument("--out", default=DEFAULT_LOCK, help=f"lock file to write (default {DEFAULT_LOCK})")
    p.add_argument("--weights", help="pin the weights file by sha256")
    p.add_argument("--config", help="pin the training config by sha256")
    p.add_argument(
        "--package", action="append", default=[], metavar="NAME", help="also pin this distribution (repeatable)"
    )
    p.set_defaults(func=_lock)

    c = subparsers.add_parser(
        "check",
        help="compare the running environment with a lock (exit 0 match, 1 mismatch, 2 unreadable)",
        description="Compare the running environment with a lock without importing torch.",
    )
    c.add_argument("--lock", default=DEFAULT_LOCK, help=f"lock file (default {DEFAULT_LOCK})")
    c.add_argument("--weights", help="weights file in use (default: the path the lock names)")
    c.add_argument("--config", help="training config in use (default: the path the lock names)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--deep", action="store_true", help="import torch to verify what files cannot tell (cuDNN)")
    c.add_argument("--strict", action="store_true", help="count unverified entries as mismatches")
    for add_arguments, _run in CHECK_EXTENSIONS:
        add_arguments(c)
    c.set_defaults(func=_check)

    e = subparsers.add_parser(
        "export-conda",
        help="write a lock as environment.yml, an @EXPLICIT spec or a conda-lock v1 file",
        description="Export a lock (or the running environment) for conda. See docs/lock.md.",
    )
    e.add_argument("--lock", help="lock file to export (default: capture the running environment)")
    e.add_argument("--format", choices=("environment", "explicit", "conda-lock"), default="environment")
    e.add_argument("--name", default="safepredict", help="environment name in environment.yml")
    e.add_argument("--out", required=True, help="file to write")
    e.set_defaults(func=_export)


def _lock(args: argparse.Namespace) -> int:
    from safepredict.lock import write_lock

    lock = write_lock(args.out, weights=args.weights, config=args.config, extra_packages=args.package)
    env = lock.environment
    print(f"wrote {args.out}: {len(env.packages)} packages, {len(env.facts)} facts, {len(env.files)} files")
    return 0


def _check(args: argparse.Namespace) -> int:
    from safepredict.lock.check import check_lock

    report = check_lock(args.lock, weights=args.weights, config=args.config, deep=args.deep)
    code = 0 if report.ok and not (args.strict and report.unverified) else 1
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
    for _add, run in CHECK_EXTENSIONS:
        code = max(code, int(run(args, report) or 0))
    return code


def _export(args: argparse.Namespace) -> int:
    from safepredict.lock import capture_environment, read_lock
    from safepredict.lock.conda import export
    from safepredict.lock.lockfile import new_lock

    lock = read_lock(args.lock) if args.lock else new_lock(capture_environment())
    path = export(lock, args.format, args.out, name=args.name)
    print(f"wrote {path} ({args.format})")
    return 0
