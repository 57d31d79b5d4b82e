"""``safepredict predict``: a folder of images to COCO-format results, resumable, with the monitor's summary.

The work is :func:`safepredict.folder.predict_folder`; this module is its command line. Exit codes
(see :mod:`safepredict.cli`): 0 when every image was predicted, 2 for a usage error or an
unreadable input (the progress so far is kept: rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from safepredict._output import add_json_option, print_json
from safepredict.diagnose.options import add_common_options, set_threads
from safepredict.folder import PROGRESS_SUFFIX

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Register ``predict``."""
    p = subparsers.add_parser(
        "predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  safepredict predict output/model_final.pth images/ -o preds.json\n"
            "  safepredict predict work_dirs/epoch_12.pth images/ -o preds.json --coco-gt val.json --workers 2\n"
            "  safepredict predict model.pth images/ -o preds.json --lock safepredict.lock  # environment first\n"
            "  safepredict predict model.pth images/ -o preds.json --json -q > summary.json  # counts + monitor"
        ),
        help="predict a folder of images to COCO-format results (resumable), with the monitor's summary",
        description=(
            "Run CHECKPOINT with its training contract over IMAGES (files or folders) and write COCO-format "
            "results ([{image_id, category_id, bbox: [x, y, w, h], score}]) to --out. Progress is kept in "
            f"OUT{PROGRESS_SUFFIX} as it goes: rerunning the same command skips the images already done. "
            "image_id is the image's path relative to its folder, or its COCO id with --coco-gt; "
            "category_id is the class index, or the COCO category id with --coco-gt."
        ),
    )
    p.add_argument("checkpoint", type=Path, help="the trained checkpoint")
    p.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument("-o", "--out", type=Path, required=True, help="COCO results JSON to write")
    add_common_options(p)
    p.add_argument(
        "--score-threshold", type=float, default=None, help="keep detections above this score (default: training's)"
    )
    p.add_argument("--lock", type=Path, default=None, help="check the environment against this lock first")
    p.add_argument(
        "--coco-gt", type=Path, default=None, help="COCO json whose image ids and category ids the results use"
    )
    p.add_argument("--restart", action="store_true", help="ignore the progress of an earlier run")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes, each with its own model (default: one per core on the CPU, none on a GPU "
        "or for a few images; 0: this process only, decoding overlapped)",
    )
    add_json_option(p, "the run's summary (counts and the monitor's snapshot)")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from safepredict.diagnose.probes import quiet_construction
    from safepredict.folder import predict_folder

    set_threads(args)
    quiet = bool(args.quiet)
    with contextlib.ExitStack() as stack:
        if quiet:  # -q: SafePredictWarnings, which the warnings module prints too, stay quiet
            stack.enter_context(quiet_construction())
        result = predict_folder(
            args.checkpoint,
            args.images,
            args.out,
            config=args.config,
            training_config=args.training_config,
            score_threshold=args.score_threshold,
            lock=args.lock,
            reference=args.reference,
            class_names=args.class_names,
            device=args.device,
            coco_gt=args.coco_gt,
            recursive=args.recursive,
            restart=args.restart,
            progress=not quiet,
            workers=args.workers,
            threads=args.threads or 1,
            trust=args.trust,
        )
    if args.json:
        print_json(result)
    elif not quiet:
        print(result.describe(), file=sys.stderr)
    return 0
