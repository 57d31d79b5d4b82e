"""``safepredict profile`` (capture a reference profile) and ``safepredict profile-show`` (print one)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safepredict.errors import InputError, SafePredictError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "profile",
        help="capture the reference profile the runtime monitor compares against",
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
        "--output",
        type=Path,
        default=None,
        help="where to write the profile (default: safepredict-profile.json next to the checkpoint)",
    )
    p.add_argument("--limit", type=int, default=None, help="use at most this many images (sorted by name)")
    p.add_argument("--recursive", action="store_true", help="also take images from subfolders")
    p.set_defaults(func=_profile)

    s = subparsers.add_parser("profile-show", help="print a reference profile in words")
    s.add_argument("profile", type=Path)
    s.set_defaults(func=_show)


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


def _pairs(predictor: Any, paths: list[Path]) -> Iterator[tuple[Any, Any]]:
    for path in paths:
        yield predictor.predict_candidates(path)


def _profile(args: argparse.Namespace) -> int:
    from safepredict.monitor.profile import PROFILE_FILENAME, ReferenceProfile

    paths = find_images(args.images, recursive=args.recursive, limit=args.limit)
    try:
        from safepredict.predictor import SafePredictor
    except ModuleNotFoundError as exc:
        if exc.name != "safepredict.predictor":
            raise
        raise SafePredictError(
            "this safepredict has no predictor yet: `safepredict profile` cannot run a model"
        ) from exc
    predictor = SafePredictor.from_checkpoint(args.checkpoint, config=args.config)
    missing = [a for a in ("predict_candidates", "score_threshold", "class_names") if not hasattr(predictor, a)]
    if missing:
        raise SafePredictError(f"the predictor lacks {', '.join(missing)}, which profiling needs")
    profile = ReferenceProfile.build(
        _pairs(predictor, paths),
        score_threshold=predictor.score_threshold,
        class_names=predictor.class_names,
        threshold_key=getattr(predictor, "threshold_key", None),
    )
    output = args.output if args.output is not None else args.checkpoint.parent / PROFILE_FILENAME
    profile.save(output)
    print(profile.describe())
    print(f"wrote {output}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from safepredict.monitor.profile import ReferenceProfile

    if not args.profile.is_file():
        raise InputError(f"{args.profile}: no such profile", found=str(args.profile))
    print(ReferenceProfile.load(args.profile).describe())
    return 0
