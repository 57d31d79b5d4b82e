"""``safepredict lock``, ``safepredict check`` and ``safepredict export-conda``.

Exit codes (see :mod:`safepredict.cli`): 0 the environment matches the lock, 1 it does not,
2 usage error or an unreadable lock.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from safepredict._output import add_json_option, print_json

__all__ = ["CHECK_EXTENSIONS", "CHECK_EXTENSION_MODULES", "register"]

DEFAULT_LOCK = "safepredict.lock"

# Hooks that add to `safepredict check` (golden replay plugs in here): each is a pair
# (add_arguments(parser), run(args, report) -> exit code or None). The check's exit code is the
# highest of the environment check's and theirs. Under --json an extension puts its report in
# ``args.json_sections[name]`` instead of printing it: stdout stays one JSON document.
CHECK_EXTENSIONS: list[
    tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Any], int | None]]
] = []
# Where the known extensions live: (module, attribute holding the pair). The CLI imports only the
# chosen command's module, so `check` fetches these itself before building its parser; each
# imports its heavy parts only when its option is used.
CHECK_EXTENSION_MODULES: tuple[tuple[str, str], ...] = (("safepredict.monitor.commands", "REPLAY_EXTENSION"),)

LOCK_EXAMPLES = """\
examples:
  # where the model was validated: pin the environment, the weights and the training config
  safepredict lock --weights output/model_final.pth --config output/config.yaml
  # beside the model, for a container image
  safepredict lock --weights model/model_final.pth --config model/config.yaml -o model/safepredict.lock
  # also pin a package the lock does not hold by default
  safepredict lock --package albumentations
"""

CHECK_EXAMPLES = """\
examples:
  safepredict check                            # ./safepredict.lock
  safepredict check model/safepredict.lock     # a lock elsewhere (or --lock PATH)
  safepredict check conda-lock.yml             # versions pinned by conda-lock
  safepredict check pixi.lock --environment prod
  safepredict check explicit.txt               # an @EXPLICIT spec (conda list --explicit)
  safepredict check --json > report.json       # the report for programs; the exit code says the same
  safepredict check --deep --strict            # import torch to verify cuDNN; fail on unverified entries

  # container entrypoint: refuse to serve in an environment other than the validated one
  safepredict check /srv/model/safepredict.lock || exit 1

exit status: 0 the environment matches, 1 it does not (or, with --strict, an entry could not be
verified), 2 usage error or an unreadable lock.
"""

EXPORT_EXAMPLES = """\
examples:
  safepredict export-conda safepredict.lock -o environment.yml
  safepredict export-conda safepredict.lock --format explicit -o explicit.txt
  safepredict export-conda safepredict.lock --format conda-lock -o conda-lock.yml
  safepredict export-conda -o environment.yml    # the running environment, without a lock

Wheels built or repacked on this machine (mmcv with ops, a repacked Detectron2) are named in the
export's header, and a recipe beside it (environment.rebuild.sh) makes them again:
  bash environment.rebuild.sh wheels    # the missing wheel files, at the paths the export names
  bash environment.rebuild.sh           # and pip-install the pip packages into $PYTHON
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lock",
        help="write the environment lock (what the model was validated with)",
        description="Capture the running environment and write it as a lock (imports torch and cv2 to ask them).",
        epilog=LOCK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--out", default=DEFAULT_LOCK, help=f"lock file to write (default {DEFAULT_LOCK})")
    p.add_argument("--weights", help="pin the weights file by sha256")
    p.add_argument("--config", help="pin the training config by sha256")
    p.add_argument(
        "--package", action="append", default=[], metavar="NAME", help="also pin this distribution (repeatable)"
    )
    add_json_option(p, "what was written")
    p.set_defaults(func=_lock)

    c = subparsers.add_parser(
        "check",
        help="compare the running environment with a lock (exit 0 match, 1 mismatch, 2 unreadable)",
        description=(
            "Compare the running environment with a lock, without importing torch.\n\n"
            "The lock is a safepredict lock (`safepredict lock`), or a lockfile of the conda ecosystem:\n"
            "a conda-lock.yml, a pixi.lock or an @EXPLICIT spec, told apart by name and content, and read\n"
            "by that ecosystem's own parser (conda-lock, py-rattler). See docs/lock.md."
        ),
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("lock_path", nargs="?", metavar="LOCK", help=f"lock file (default {DEFAULT_LOCK})")
    c.add_argument("--lock", default=None, help="the same as LOCK")
    c.add_argument("--weights", help="weights file in use (default: the path the lock names)")
    c.add_argument("--config", help="training config in use (default: the path the lock names)")
    add_json_option(c)
    c.add_argument("--deep", action="store_true", help="import torch to verify what files cannot tell (cuDNN)")
    c.add_argument("--strict", action="store_true", help="count unverified entries as mismatches")
    c.add_argument(
        "--platform",
        metavar="SUBDIR",
        help="conda lockfiles: compare with this platform's entries (default: this machine's, e.g. linux-64)",
    )
    c.add_argument(
        "--environment", metavar="NAME", help="pixi.lock: the environment to compare with (default: default)"
    )
    for module, attribute in CHECK_EXTENSION_MODULES:
        try:
            extension = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):  # an install without that capability: the check works without it
            continue
        if extension not in CHECK_EXTENSIONS:
            CHECK_EXTENSIONS.append(extension)
    for add_arguments, _run in CHECK_EXTENSIONS:
        add_arguments(c)
    c.set_defaults(func=_check)

    e = subparsers.add_parser(
        "export-conda",
        help="write a lock as environment.yml, an @EXPLICIT spec or a conda-lock v1 file",
        description="Export a lock (or the running environment) for conda. See docs/lock.md.",
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "lock_path", nargs="?", metavar="LOCK", help="lock file to export (default: capture the running environment)"
    )
    e.add_argument("--lock", default=None, help="deprecated: the same as LOCK")
    e.add_argument("--format", choices=("environment", "explicit", "conda-lock"), default="environment")
    e.add_argument("--name", default="safepredict", help="environment name in environment.yml")
    e.add_argument("-o", "--out", required=True, help="file to write")
    add_json_option(e, "what was written")
    e.set_defaults(func=_export)


def _lock(args: argparse.Namespace) -> int:
    from safepredict.lock import write_lock

    lock = write_lock(args.out, weights=args.weights, config=args.config, extra_packages=args.package)
    env = lock.environment
    if args.json:
        print_json(
            {
                "wrote": str(args.out),
                "packages": len(env.packages),
                "facts": len(env.facts),
                "files": [{"role": f.role, "path": f.path, "sha256": f.sha256} for f in env.files],
            }
        )
    else:
        print(f"wrote {args.out}: {len(env.packages)} packages, {len(env.facts)} facts, {len(env.files)} files")
    return 0


def _lock_argument(args: argparse.Namespace) -> str:
    from safepredict.errors import InputError

    if args.lock_path and args.lock and args.lock_path != args.lock:
        raise InputError(
            f"two locks given: {args.lock_path!r} and --lock {args.lock!r}",
            found=(args.lock_path, args.lock),
            fix="give the lock once, as LOCK or as --lock",
        )
    return str(args.lock_path or args.lock or DEFAULT_LOCK)


def _check(args: argparse.Namespace) -> int:
    from safepredict.errors import InputError
    from safepredict.lock.external import check_external, detect_format

    args.lock = _lock_argument(args)  # the extensions (golden replay) find their files beside it
    fmt = detect_format(args.lock)
    if fmt == "safepredict":
        from safepredict.lock.check import check_lock

        if args.platform or args.environment:
            raise InputError(
                f"--platform and --environment choose entries of a conda lockfile; {args.lock} is a safepredict lock",
                fix="drop them, or pass a conda-lock.yml, pixi.lock or @EXPLICIT file",
            )
        report = check_lock(args.lock, weights=args.weights, config=args.config, deep=args.deep)
    else:
        if args.weights or args.config:
            raise InputError(
                f"{args.lock} is a {fmt} lockfile, which pins no model files: --weights and --config apply to "
                "a safepredict lock",
                fix="pin the model files with `safepredict lock --weights ... --config ...`",
            )
        report = check_external(args.lock, platform=args.platform, environment=args.environment, deep=args.deep)
    code = 0 if report.ok and not (args.strict and report.unverified) else 1
    if not args.json:
        print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
    args.json_sections = {}
    for _add, run in CHECK_EXTENSIONS:
        code = max(code, int(run(args, report) or 0))
    if args.json:
        print_json({**report.to_dict(), "format": fmt, **args.json_sections, "exit_code": code})
    return code


def _export(args: argparse.Namespace) -> int:
    from safepredict.lock import capture_environment, read_lock
    from safepredict.lock.conda import export_files
    from safepredict.lock.lockfile import new_lock

    if args.lock and not args.lock_path:
        from safepredict._logging import warn

        warn(
            "export-conda --lock LOCK is deprecated: give the lock as the first argument, as `check` takes it",
            code="cli.deprecated_option",
        )
    given = _lock_argument(args) if (args.lock_path or args.lock) else None
    lock = read_lock(given) if given else new_lock(capture_environment())
    path, recipe = export_files(lock, args.format, args.out, name=args.name)
    builds = [b.name for b in lock.environment.builds]
    if args.json:
        print_json(
            {
                "wrote": str(path),
                "format": args.format,
                "recipe": None if recipe is None else str(recipe),
                "local_builds": builds,
            }
        )
    else:
        print(f"wrote {path} ({args.format})")
        if recipe is not None:
            local = f" ({len(builds)} built or repacked locally: {', '.join(builds)})" if builds else ""
            print(f"wrote {recipe}: the recipe for its pip packages{local}")
    return 0
