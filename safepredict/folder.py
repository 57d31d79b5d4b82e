"""Folder and stream prediction: many images through one SafePredictor, resumable, COCO results out.

::

    from safepredict.folder import predict_folder

    result = predict_folder("output/model_final.pth", ["val/"], "preds.json", coco_gt="val.json")
    print(result.describe())   # where the results went, and the monitor's summary of the run

Each image's results are appended to ``OUT.progress.jsonl`` (:data:`PROGRESS_SUFFIX`) as soon as
the image is done, one flushed line each, so a run stopped by Ctrl-C, a crash or an unreadable
image resumes where it stopped when called again with the same settings; the first line records
those settings, and a progress file of a run with others is refused. The results file is written
once, at the end, in input order. ``safepredict predict`` is this function on the command line
(:mod:`safepredict.folder_commands`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from safepredict.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "PROGRESS_SUFFIX", "FolderResult", "collect_images", "predict_folder"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
PROGRESS_SUFFIX = ".progress.jsonl"
_PROGRESS_VERSION = 1


# --------------------------------------------------------------------------- which images


def collect_images(inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = False) -> list[Path]:
    """Image files named directly or found in folders (sorted per folder); InputError if none."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(q for q in path.glob(pattern) if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"no such image or folder: {path}", found=str(path), fix="check the path")
    if not found:
        raise InputError(
            "no images to look at", found=[str(i) for i in inputs], fix="pass image files or folders of images"
        )
    return found


def _named_images(inputs: Iterable[str | os.PathLike[str]], recursive: bool) -> list[tuple[str, Path]]:
    """``(name, path)`` of every image: the path relative to its folder, or as given for a file."""
    out: list[tuple[str, Path]] = []
    for item in map(Path, inputs):
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
    """Each image's COCO id (matched by file name) and the COCO category ids in label order."""
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


# --------------------------------------------------------------------------- progress


def _config_id(config: Any) -> str | None:
    if config is None:
        return None
    if isinstance(config, (str, os.PathLike)):
        return str(Path(config).resolve())
    # A config object has no path: its text (a yacs dump, mmengine's pretty text) identifies it.
    return "object:" + hashlib.sha256(str(config).encode()).hexdigest()[:16]


def _header(checkpoint: Path, config: Any, score_threshold: float | None, coco_gt: Path | None) -> dict[str, Any]:
    """The settings a progress file belongs to: a resume with other settings would mix two runs' results."""
    ckpt = checkpoint.resolve()
    stat = ckpt.stat()
    # Size and modification time identify the weights well enough to refuse a resume with others.
    ident = hashlib.sha256(f"{ckpt}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return {
        "safepredict_predict": _PROGRESS_VERSION,
        "checkpoint": str(ckpt),
        "checkpoint_id": ident,
        "config": _config_id(config),
        "score_threshold": score_threshold,
        "coco_gt": None if coco_gt is None else str(coco_gt.resolve()),
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


# --------------------------------------------------------------------------- the run


@attrs.frozen
class FolderResult:
    """What :func:`predict_folder` did: where the results went, how many, and what the monitor saw."""

    out: Path
    images: int
    detections: int
    resumed: int  # images whose results came from an earlier run's progress file
    monitor: dict[str, Any] | None = attrs.field(default=None, eq=False)  # the monitor's snapshot at the end

    def describe(self) -> str:
        """The results file in a line, then the monitor's summary of this run."""
        text = f"wrote {self.out}: {self.detections} detection(s) on {self.images} image(s)"
        if self.monitor is not None:
            text += "\n" + _monitor_summary(self.monitor, self.resumed)
        return text


def predict_folder(
    checkpoint: str | os.PathLike[str],
    images: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    config: Any = None,
    training_config: Any = None,
    score_threshold: float | None = None,
    lock: str | os.PathLike[str] | None = None,
    reference: Any = None,
    class_names: Sequence[str] | None = None,
    device: str = "cpu",
    coco_gt: str | os.PathLike[str] | None = None,
    recursive: bool = False,
    restart: bool = False,
    progress: bool = True,
    workers: int | None = None,
    threads: int = 1,
    trust: bool = False,
) -> FolderResult:
    """Predict every image of ``images`` (files or folders) with the training contract; COCO results to ``out``.

    The results are ``[{image_id, category_id, bbox: [x, y, w, h], score}]``: ``image_id`` is the
    image's path relative to its folder and ``category_id`` its class index, or, with ``coco_gt``
    (a COCO json), the ids that file gives them. ``score_threshold`` replaces the training one.
    ``config``, ``training_config``, ``lock``, ``reference``, ``class_names`` and ``device`` are
    SafePredictor's. An earlier run's progress with the same settings is resumed unless
    ``restart``. ``progress`` shows a progress bar on stderr (and says what was resumed).
    ``workers``/``threads``: as :meth:`SafePredictor.predict_many` (default: one single-threaded
    worker process per core on the CPU); the results are those of the serial path, in order.
    ``trust`` is SafePredictor's (run the framework's own config loaders).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}", found=str(checkpoint), fix="check the path")
    named = _named_images(images, recursive)
    ids: dict[str, int] | None = None
    categories: list[int] | None = None
    gt = None if coco_gt is None else Path(coco_gt)
    if gt is not None:
        ids, categories = _coco_ids(gt, [n for n, _ in named])
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", found=str(out.parent))
    progress_file = out.with_name(out.name + PROGRESS_SUFFIX)
    header = _header(checkpoint, config, score_threshold, gt)
    if restart and progress_file.exists():
        progress_file.unlink()
    done = _read_progress(progress_file, header) if progress_file.exists() else {}

    from safepredict.predictor import SafePredictor

    predictor = SafePredictor.from_checkpoint(
        checkpoint,
        config=config,
        device=device,
        training_config=training_config,
        overrides={"score_threshold": score_threshold} if score_threshold is not None else None,
        lock=lock,
        reference=reference,
        class_names=class_names,
        trust=trust,
    )
    todo = [(n, p) for n, p in named if n not in done]
    resumed = len(named) - len(todo)
    if resumed and progress:
        print(f"resuming: {resumed} of {len(named)} image(s) already done in {progress_file}", file=sys.stderr)
    with progress_file.open("a", encoding="utf-8") as handle:
        if handle.tell() == 0:
            handle.write(json.dumps(header) + "\n")
        bar = _bar(len(named), resumed, progress)
        try:
            stream = predictor.predict_many([p for _, p in todo], workers=workers, threads=threads)
            for (name, _), detections in zip(todo, stream, strict=True):
                image_id: Any = ids[name] if ids is not None else name
                results = detections.to_coco(image_id, categories)
                # One line per image, flushed: a crash or Ctrl-C loses at most the image in flight.
                handle.write(json.dumps({"image": name, "results": results}) + "\n")
                handle.flush()
                done[name] = results
                bar.update(1)
        finally:
            bar.close()
    ordered = [r for name, _ in named for r in done[name]]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(ordered) + "\n", encoding="utf-8")
    tmp.replace(out)
    progress_file.unlink()
    snapshot = predictor.monitor.snapshot() if predictor.monitor is not None else None
    return FolderResult(out, len(named), len(ordered), resumed, snapshot)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, initial: int, show: bool) -> Any:
    """tqdm's bar on stderr; nothing when not shown or when tqdm (which the frameworks bring) is absent."""
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="img", file=sys.stderr)


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
