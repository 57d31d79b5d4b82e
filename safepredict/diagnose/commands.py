"""``safepredict diagnose``: every check, ranked findings, an HTML report.

Exit codes (see :mod:`safepredict.cli`): 0 when nothing worse than information was found, 1 for a
warning or an error finding, 2 for a usage error or an unreadable input. ``safepredict predict``
is :mod:`safepredict.folder_commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safepredict._output import add_json_option, print_json
from safepredict.diagnose.options import add_common_options, set_threads
from safepredict.errors import InputError

__all__ = ["register"]

EXAMPLES = """\
examples:
  safepredict diagnose output/model_final.pth val/ --config my_inference.yaml
  safepredict diagnose work_dirs/epoch_12.pth val/ --lock safepredict.lock --report report.html
  safepredict diagnose model.pth frames/ --reference model/safepredict-profile.json --max-images 32
  safepredict diagnose model.pth val/ --json > findings.json     # the findings for programs

exit status: 0 nothing worse than information, 1 a warning or error finding, 2 usage error.
"""


def register(subparsers: Any) -> None:
    """Register ``diagnose``."""
    d = subparsers.add_parser(
        "diagnose",
        help="run every check on a checkpoint and some images; ranked findings with evidence and fixes",
        description=(
            "Run every check safepredict has on CHECKPOINT and IMAGES (files or folders): the training contract "
            "against your inference config, the checkpoint against its architecture, the environment against a "
            "lock, and probes on the images (channel order, normalisation, test size, score threshold, inputs "
            "against the reference profile, training progress). Prints the findings worst first."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("checkpoint", type=Path, help="the trained checkpoint")
    d.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    add_common_options(d)
    d.add_argument("--lock", type=Path, default=None, help="environment lock to check against (safepredict lock)")
    d.add_argument("--report", type=Path, default=None, help="write a self-contained HTML report here")
    add_json_option(d, "the findings")
    d.add_argument(
        "--max-images", type=int, default=8, help="look at this many images, spread over the inputs (default 8)"
    )
    d.add_argument("--no-probes", action="store_true", help="only the checks that need no prediction")
    d.set_defaults(func=_diagnose)


def _diagnose(args: argparse.Namespace) -> int:
    from safepredict.diagnose.report import write_report
    from safepredict.diagnose.run import diagnose

    if args.max_images < 1:
        raise InputError("--max-images must be at least 1", found=args.max_images)
    set_threads(args)
    result = diagnose(
        args.checkpoint,
        args.images,
        config=args.config,
        training_config=args.training_config,
        lock=args.lock,
        reference=args.reference,
        device=args.device,
        max_images=args.max_images,
        recursive=args.recursive,
        probes=not args.no_probes,
        class_names=args.class_names,
        trust=args.trust,
    )
    if args.report is not None:
        path = write_report(result, args.report)
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    elif not args.quiet:
        print(result.describe())
    return result.exit_code
