"""The monitor's commands.

``safepredict profile`` captures a reference profile, ``profile-show`` prints one, ``golden``
captures the golden set beside a lock, and ``safepredict check --replay`` re-runs it (an extension
of the lock's ``check``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from safepredict._output import add_json_option, jsonable, message_stream, print_json
from safepredict.errors import InputError, SafePredictError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


PROFILE_EXAMPLES = """\
examples:
  # beside the checkpoint (where SafePredictor finds it): safepredict-profile.json
  safepredict profile output/model_final.pth datasets/val/
  safepredict profile work_dirs/epoch_12.pth val/ --limit 500 -o model/safepredict-profile.json
  safepredict profile model.pth val/ --json > profile.json     # the profile itself on stdout
"""

SHOW_EXAMPLES = """\
examples:
  safepredict profile-show output/safepredict-profile.json
  safepredict profile-show output/safepredict-profile.json --json | jq .empty_rate
"""

GOLDEN_EXAMPLES = """\
examples:
  # where the model was validated, after `safepredict lock`
  safepredict golden output/model_final.pth val/0001.png val/0002.png val/0003.png
  safepredict golden model/model.pth golden-images/ --lock model/safepredict.lock --box-px 0.5
  # later, in the serving environment: re-run them
  safepredict check model/safepredict.lock --replay

exit status: 0 the set replays within tolerance here, 1 it does not, 2 usage error.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "profile",
        help="capture the reference profile the runtime monitor compares against",
        epilog=PROFILE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run the model over a folder of validation images and store what healthy outputs and inputs look "
            "like (empty rate, pre-threshold scores, best score per image, class shares, input statistics) as a "
            "JSON profile beside the lock. Use images the model was validated on, not training images."
        ),
    )
    p.add_argument("checkpoint", type=Path, help="the trained checkpoint")
    p.add_argument("images", type=Path, help="folder of validation images")
    p.add_argument(
        "--config", type=Path, default=None, help="training config (found next to the checkpoint if omitted)"
    )
    p.add_argument(
        "-o",
        "--out",
        "--output",
        dest="out",
        type=Path,
        default=None,
        help="where to write the profile (default: safepredict-profile.json next to the checkpoint)",
    )
    p.add_argument("--limit", type=int, default=None, help="use at most this many images (sorted by name)")
    p.add_argument("--recursive", action="store_true", help="also take images from subfolders")
    p.add_argument(
        "--swapped",
        type=int,
        default=50,
        help="run this many of the images with red and blue swapped too: how a channel-order mistake relabels "
        "this model's outputs (default 50; 0: none)",
    )
    add_json_option(p, "the profile")
    p.set_defaults(func=_profile)

    s = subparsers.add_parser(
        "profile-show",
        help="print a reference profile in words",
        description="Print what a reference profile says healthy outputs and inputs look like.",
        epilog=SHOW_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("profile", type=Path, help="a profile (safepredict profile, or a training hook)")
    add_json_option(s, "the profile")
    s.set_defaults(func=_show)

    g = subparsers.add_parser(
        "golden",
        help="store a few images and their detections beside the lock, for `safepredict check --replay`",
        description=(
            "Copy IMAGES into safepredict-golden/ beside the lock with the detections the model gives them "
            "here. `safepredict check --replay` (or SafePredictor(..., replay=True)) re-runs them and reports "
            "boxes or scores that moved beyond tolerance: how environment or export differences are caught."
        ),
        epilog=GOLDEN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("checkpoint", type=Path, help="the trained checkpoint")
    g.add_argument("images", type=Path, nargs="+", help="the images to store (files or folders)")
    g.add_argument(
        "--config", type=Path, default=None, help="training config (found next to the checkpoint if omitted)"
    )
    g.add_argument("--lock", type=Path, default=Path("safepredict.lock"), help="the lock the set belongs to")
    g.add_argument("--box-px", type=float, default=1.0, help="box tolerance in pixels (default 1)")
    g.add_argument("--score-tol", type=float, default=0.02, help="score tolerance (default 0.02)")
    add_json_option(g, "the replay report")
    g.set_defaults(func=_golden)

    _extend_check(subparsers)


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replay",
        action="store_true",
        help="also re-run the golden set beside the lock (loads the model: imports the framework)",
    )


def _replay_run(args: argparse.Namespace, report: Any) -> int | None:
    if not getattr(args, "replay", False):
        return None
    from safepredict.monitor.replay import locked_weights, replay_golden

    lock = Path(args.lock)
    weights = Path(args.weights) if getattr(args, "weights", None) else locked_weights(lock)
    predictor = _load_predictor(weights, getattr(args, "config", None), monitor=False)
    result = replay_golden(predictor, lock, emit=False)
    if getattr(args, "json", False):
        args.json_sections["replay"] = replay_json(result)
    else:
        print(result.describe())
    return 0 if result.ok else 1


def replay_json(result: Any) -> dict[str, Any]:
    """A replay report for ``--json``: its fields, with ``ok``."""
    return {"ok": result.ok, **jsonable(result)}


REPLAY_EXTENSION = (_replay_arguments, _replay_run)


def _extend_check(subparsers: Any) -> None:
    """Plug ``--replay`` into the lock's ``check``, whichever of the two registers first."""
    try:
        from safepredict.lock.commands import CHECK_EXTENSIONS
    except ImportError:
        return
    if REPLAY_EXTENSION in CHECK_EXTENSIONS:
        return
    CHECK_EXTENSIONS.append(REPLAY_EXTENSION)
    check = getattr(subparsers, "choices", {}).get("check")
    if check is not None:  # `check` already built its parser: add the option to it now
        _replay_arguments(check)


def _load_predictor(checkpoint: Path, config: Any, **kwargs: Any) -> Any:
    try:
        from safepredict.predictor import SafePredictor
    except ModuleNotFoundError as exc:
        if exc.name != "safepredict.predictor":
            raise
        raise SafePredictError("this safepredict has no predictor yet: cannot run a model") from exc
    return SafePredictor.from_checkpoint(checkpoint, config=config, **kwargs)


def _golden(args: argparse.Namespace) -> int:
    from safepredict.monitor.replay import ReplayTolerance, capture_and_replay

    predictor = _load_predictor(args.checkpoint, args.config, monitor=False)
    tol = ReplayTolerance(box_px=args.box_px, score=args.score_tol)
    images = [q for path in args.images for q in (find_images(path) if path.is_dir() else [path])]
    result = capture_and_replay(predictor, images, args.lock, tolerance=tol)
    print(f"wrote {result.golden} ({result.images} images)", file=message_stream(args))
    if args.json:
        print_json(replay_json(result))
    else:
        print(result.describe())
    return 0 if result.ok else 1


def find_images(folder: Path, *, recursive: bool = False, limit: int | None = None) -> list[Path]:
    """The image files of ``folder``, sorted by path so that a profile is reproducible."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of images", found=str(folder))
    pattern = "**/*" if recursive else "*"
    found = sorted(q for q in folder.glob(pattern) if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}", found=str(folder), fix="--recursive?"
        )
    return found[:limit] if limit is not None else found


def _profile(args: argparse.Namespace) -> int:
    from safepredict.monitor.profile import PROFILE_FILENAME

    paths = find_images(args.images, recursive=args.recursive, limit=args.limit)
    try:
        from safepredict.autoref import build_reference
        from safepredict.predictor import SafePredictor
    except ModuleNotFoundError as exc:
        if exc.name != "safepredict.predictor":
            raise
        raise SafePredictError(
            "this safepredict has no predictor yet: `safepredict profile` cannot run a model"
        ) from exc
    # No monitor: profiling is what gives one a reference.
    predictor = SafePredictor.from_checkpoint(args.checkpoint, config=args.config, monitor=False)
    missing = [a for a in ("predict_candidates", "score_threshold", "class_names") if not hasattr(predictor, a)]
    if missing:
        raise SafePredictError(f"the predictor lacks {', '.join(missing)}, which profiling needs")
    # A few of the images also go through with red and blue swapped: the label-aware channel-order evidence.
    profile = build_reference(predictor, paths, swapped=args.swapped, source=f"{len(paths)} images of {args.images}")
    output = args.out if args.out is not None else args.checkpoint.parent / PROFILE_FILENAME
    profile.save(output)
    if args.json:
        print_json(profile.to_json())
    else:
        print(profile.describe())
    print(f"wrote {output}", file=message_stream(args))
    return 0


def _show(args: argparse.Namespace) -> int:
    from safepredict.monitor.profile import ReferenceProfile

    if not args.profile.is_file():
        raise InputError(f"{args.profile}: no such profile", found=str(args.profile))
    profile = ReferenceProfile.load(args.profile)
    if args.json:
        print_json(profile.to_json())
    else:
        print(profile.describe())
    return 0
