"""Where a Detectron2 training config's validation images are, on this machine, if anywhere.

``DATASETS.TEST`` holds data set *names*, and a name means something only in a process where it was
registered (``register_coco_instances`` in the training script). So, in order:

1. the name is registered in this process (the user's code registered it, or it is one of
   Detectron2's builtin data sets whose files are present): ``DatasetCatalog`` lists the files
   and ``MetadataCatalog`` the class names;
2. otherwise the training run's ``log.txt`` beside the checkpoint (``DefaultTrainer`` writes it):
   Detectron2 logs "Loaded N images in COCO format from PATH" for every json it reads, and the
   json read after "Starting training" is the evaluation's; its images are looked for beside it.

A data set registered from something other than a COCO json (a custom loader function) cannot be
found in a fresh process: that is the limit, and the training hook
(:mod:`safepredict.frameworks.detectron2.hook`) is the way around it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from safepredict.frameworks.coco import coco_images

__all__ = ["validation_images"]

_LOADED = re.compile(r"Loaded \d+ images in COCO format from (\S+\.json)")
_TRAINING_STARTS = "Starting training from iteration"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def validation_images(cfg: Any, checkpoint: Path) -> tuple[list[Path], tuple[str, ...] | None, str] | None:
    """``(image files, class names or None, where they came from)`` of the config's first test set, or None."""
    names = tuple(getattr(getattr(cfg, "DATASETS", None), "TEST", ()) or ())
    if not names:
        return None
    name = str(names[0])
    found = _registered(name)
    if found is not None:
        return found
    for log in _logs(cfg, checkpoint):
        json_file = _evaluation_json(log)
        if json_file is None:
            continue
        listed = coco_images(json_file, _image_roots(json_file))
        if listed is not None and listed[0]:
            paths, classes, root = listed
            return paths, classes, f"data set {name!r}: {json_file} (read in {log}), images in {root}"
    return None


def _registered(name: str) -> tuple[list[Path], tuple[str, ...] | None, str] | None:
    try:
        from detectron2.data import DatasetCatalog, MetadataCatalog
    except ImportError:
        return None
    if name not in DatasetCatalog.list():
        return None
    try:
        records = DatasetCatalog.get(name)
    except Exception:  # noqa: BLE001 - a builtin name whose files are not on this machine, a broken loader
        return None
    paths = [Path(r["file_name"]) for r in records if isinstance(r, dict) and "file_name" in r]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return None
    classes = MetadataCatalog.get(name).get("thing_classes")
    return paths, tuple(classes) if classes else None, f"data set {name!r} (registered in DatasetCatalog)"


def _logs(cfg: Any, checkpoint: Path) -> list[Path]:
    folders = [checkpoint.resolve().parent]
    output = getattr(cfg, "OUTPUT_DIR", None)
    if output and Path(output).is_dir() and Path(output).resolve() not in folders:
        folders.append(Path(output).resolve())
    return [folder / "log.txt" for folder in folders if (folder / "log.txt").is_file()]


def _evaluation_json(log: Path) -> Path | None:
    """The last COCO json the run read after its training loop started (the evaluation's), or None."""
    try:
        text = _ANSI.sub("", log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    training: list[str] = []
    evaluation: list[str] = []
    started = False
    for line in text.splitlines():
        if _TRAINING_STARTS in line:
            started = True
            continue
        match = _LOADED.search(line)
        if match:
            (evaluation if started else training).append(match.group(1))
    for path in reversed(evaluation):
        if path not in training and Path(path).is_file():
            return Path(path)
    return None


def _image_roots(json_file: Path) -> list[Path]:
    """Where a COCO json's images usually are: beside it, in a folder named after it, or COCO's layout."""
    stem = json_file.stem
    folder = json_file.parent
    roots = [folder / stem, folder, folder / "images", folder / "images" / stem]
    if stem.startswith("instances_"):  # annotations/instances_val2017.json -> val2017/
        roots += [folder.parent / stem[len("instances_") :], folder / stem[len("instances_") :]]
    return roots
