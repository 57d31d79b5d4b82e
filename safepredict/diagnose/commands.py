"""``safepredict diagnose`` (every check, ranked findings, HTML report) and ``safepredict predict``.

Exit codes (see :mod:`safepredict.cli`): ``diagnose`` returns 0 when nothing worse than
information was found and 1 for a warning or an error finding; ``predict`` returns 0 when every
image was predicted. Both return 2 for a usage error or an unreadable input.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from safepredict.errors import InputError

__all__ = ["register"]

PROGRESS_SUFFIX = ".progress.jsonl"
_PROGRESS_VERSION = 1


def _common(parser: argparse.ArgumentParser) -> None:
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
        type=_names,
        default=None,
        metavar="A,B,...",
        help="class names, comma-separated, for a checkpoint whose training artifact records none",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads on the CPU (default: torch's choice; 1 is often fastest on a busy machine)",
    )


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty class name in {text!r}")
    return names


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise InputError("--threads must be at least 1", found=args.threads)
        import torch

        torch.set_num_threads(args.threads)


def register(subparsers: Any) -> None:
    d = subparsers.add_parser(
        "diagnose",
        help="run every check on a checkpoint and some images; ranked findings with evidence and fixes",
        description=(
            "Run every check safepredict has on CHECKPOINT and IMAGES (files or folders): the training contract "
            "against your inference config, the checkpoint against its architecture, the environment against a "
            "lock, and probes on the images (channel order, normalisation, test size, score threshold, inputs "
            "against the reference profile, training progress). Prints the findings worst first. "
            "Exit code: 0 nothing worse than information, 1 a warning or error finding, 2 usage error."
        ),
    )
    d.add_argument("checkpoint", type=Path, help="the trained checkpoint")
    d.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    _common(d)
    d.add_argument("--lock", type=Path, default=None, help="environment lock to check against (safepredict lock)")
    d.add_argument("--report", type=Path, default=None, help="write a self-contained HTML report here")
    d.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    d.add_argument(
        "--max-images", type=int, default=8, help="look at this many images, spread over the inputs (default 8)"
    )
    d.add_argument("--no-probes", action="store_true", help="only the checks that need no prediction")
    d.set_defaults(func=_diagnose)

    p = subparsers.add_parser(
        "predict",
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
    p.add_argument("--out", type=Path, required=True, help="COCO results JSON to write")
    _common(p)
    p.add_argument(
        "--score-threshold", type=float, default=None, help="keep detections above this score (default: training's)"
    )
    p.add_argument("--lock", type=Path, default=None, help="check the environment against this lock first")
    p.add_argument(
        "--coco-gt", type=Path, default=None, help="COCO json whose image ids and category ids the results use"
    )
    p.add_argument("--restart", action="store_true", help="ignore the progress of an earlier run")
    p.set_defaults(func=_predict)


# --------------------------------------------------------------------------- diagnose


def _diagnose(args: argparse.Namespace) -> int:
    from safepredict.diagnose.report import write_report
    from safepredict.diagnose.run import diagnose

    if args.max_images < 1:
        raise InputError("--max-images must be at least 1", found=args.max_images)
    _set_threads(args)
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
    )
    if args.report is not None:
        path = write_report(result, args.report)
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(result.describe())
    return result.exit_code


# --------------------------------------------------------------------------- predict


def _named_images(inputs: Sequence[Path], recursive: bool) -> list[tuple[str, Path]]:
    """``(name, path)`` of every image: the path relative to its folder, or as given for a file."""
    from safepredict.diagnose.run import collect_images

    out: list[tuple[str, Path]] = []
    for item in inputs:
        if item.is_dir():
            out.extend((p.relative_to(item).as_posix(), p) for p in collect_images([item], recursive=recursive))
        else:
            out.extend((p.as_posix(), p) for p in collect_images([item]))
    seen: dict[str, Path] = {}
    for name, path in out:
        if name in seen and seen[name] != path:
            raise InputError(
                f"two images are both called {name!r} ({seen[name]} and {path})",
                found=name,
                fix="predict the folders one at a time, each with its own --out",
            )
        seen[name] = path
    return list(seen.items())


def _coco_ids(gt: Path, names: Sequence[str]) -> tuple[dict[str, int], list[int]]:
    try:
        data = json.loads(gt.read_text(encoding="utf-8"))
        by_file = {Path(im["file_name"]).name: int(im["id"]) for im in data["images"]}
        categories = sorted(int(c["id"]) for c in data["categories"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{gt} is not a readable COCO json ({exc})", found=str(gt)) from exc
    missing = [n for n in names if Path(n).name not in by_file]
    if missing:
        raise InputError(
            f"{len(missing)} image(s) are not in {gt}, e.g. {missing[0]!r}",
            found=missing[:5],
            fix="pass the COCO json of these images, or leave out --coco-gt",
        )
    return {n: by_file[Path(n).name] for n in names}, categories


def _header(args: argparse.Namespace) -> dict[str, Any]:
    ckpt = args.checkpoint.resolve()
    stat = ckpt.stat()
    # Size and modification time identify the weights well enough to refuse a resume with others.
    ident = hashlib.sha256(f"{ckpt}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return {
        "safepredict_predict": _PROGRESS_VERSION,
        "checkpoint": str(ckpt),
        "checkpoint_id": ident,
        "config": None if args.config is None else str(args.config.resolve()),
        "score_threshold": args.score_threshold,
        "coco_gt": None if args.coco_gt is None else str(args.coco_gt.resolve()),
    }


def _read_progress(path: Path, header: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The results already written by an earlier run with the same settings; a torn last line is dropped."""
    done: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if not lines:
        return done
    try:
        first = json.loads(lines[0])
    except ValueError:
        first = None
    if first != header:
        raise InputError(
            f"{path} holds the progress of a run with other settings (checkpoint, config, threshold or ids)",
            expected=header,
            found=first,
            fix="rerun with --restart to start over, or use another --out",
        )
    for line in lines[1:]:
        try:
            record = json.loads(line)
            done[str(record["image"])] = list(record["results"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: that image is predicted again
    return done


@attrs.frozen(eq=False)
class _Job:
    """One ``predict`` run: which images, how they are named in the results, and where progress goes."""

    images: list[tuple[str, Path]]
    ids: dict[str, int] | None
    categories: list[int] | None
    out: Path
    progress: Path
    header: dict[str, Any]


def _predict(args: argparse.Namespace) -> int:
    from safepredict.diagnose.probes import quiet_construction

    if not args.checkpoint.is_file():
        raise InputError(f"checkpoint not found: {args.checkpoint}", found=str(args.checkpoint), fix="check the path")
    images = _named_images(args.images, args.recursive)
    ids: dict[str, int] | None = None
    categories: list[int] | None = None
    if args.coco_gt is not None:
        ids, categories = _coco_ids(args.coco_gt, [n for n, _ in images])
    out: Path = args.out
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", found=str(out.parent))
    progress = out.with_name(out.name + PROGRESS_SUFFIX)
    _set_threads(args)
    job = _Job(images, ids, categories, out, progress, _header(args))
    if args.restart and progress.exists():
        progress.unlink()
    with contextlib.ExitStack() as stack:
        if args.quiet:  # -q: SafePredictWarnings, which the warnings module prints too, stay quiet
            stack.enter_context(quiet_construction())
        return _run_job(args, job, bool(args.quiet))


def _run_job(args: argparse.Namespace, job: _Job, quiet: bool) -> int:
    from tqdm import tqdm

    from safepredict.predictor import SafePredictor

    done = _read_progress(job.progress, job.header) if job.progress.exists() else {}
    overrides = {"score_threshold": args.score_threshold} if args.score_threshold is not None else None
    predictor = SafePredictor.from_checkpoint(
        args.checkpoint,
        config=args.config,
        device=args.device,
        training_config=args.training_config,
        overrides=overrides,
        lock=args.lock,
        reference=args.reference,
        class_names=args.class_names,
    )
    todo = [(n, p) for n, p in job.images if n not in done]
    resumed = len(job.images) - len(todo)
    if resumed and not quiet:
        print(f"resuming: {resumed} of {len(job.images)} image(s) already done in {job.progress}", file=sys.stderr)
    with job.progress.open("a", encoding="utf-8") as handle:
        if handle.tell() == 0:
            handle.write(json.dumps(job.header) + "\n")
        bar = tqdm(total=len(job.images), initial=resumed, unit="img", file=sys.stderr, disable=quiet)
        try:
            for name, path in todo:
                detections = predictor.predict(path)
                image_id: Any = job.ids[name] if job.ids is not None else name
                results = detections.to_coco(image_id, job.categories)
                # One line per image, flushed: a crash or Ctrl-C loses at most the image in flight.
                handle.write(json.dumps({"image": name, "results": results}) + "\n")
                handle.flush()
                done[name] = results
                bar.update(1)
        finally:
            bar.close()
    ordered = [r for name, _ in job.images for r in done[name]]
    tmp = job.out.with_name(job.out.name + ".tmp")
    tmp.write_text(json.dumps(ordered) + "\n", encoding="utf-8")
    tmp.replace(job.out)
    job.progress.unlink()
    if not quiet:
        print(f"wrote {job.out}: {len(ordered)} detection(s) on {len(job.images)} image(s)", file=sys.stderr)
        if predictor.monitor is not None:
            print(_monitor_summary(predictor.monitor.snapshot(), resumed), file=sys.stderr)
    return 0


def _monitor_summary(snap: dict[str, Any], resumed: int) -> str:
    images = snap["images_total"]
    lines = [f"monitor: {images} image(s) watched" + (f" (this run; {resumed} resumed)" if resumed else "")]
    if images:
        rate = snap["images_empty_total"] / images
        lines.append(
            f"  {snap['detections_total']} detection(s) above {snap['score_threshold']:g}; "
            f"{snap['images_empty_total']} image(s) with none ({rate:.1%})"
            + (
                f", reference {snap['reference_empty_rate']:.1%}"
                if snap.get("reference_empty_rate") is not None
                else ""
            )
        )
        by_class = snap.get("detections_by_class_total") or {}
        if by_class:
            lines.append("  by class: " + ", ".join(f"{k} {v}" for k, v in by_class.items()))
        if snap.get("window_median_best_score") is not None:
            lines.append(f"  median best score {snap['window_median_best_score']:.3f}")
    fired = snap.get("findings_total") or {}
    lines.append("  findings: " + (", ".join(f"{k} x{v}" for k, v in fired.items()) if fired else "none"))
    return "\n".join(lines)
