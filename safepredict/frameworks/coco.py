"""The files and class names a COCO json lists: how both frameworks' validation sets are found.

A COCO annotation file is framework-neutral; Detectron2's ``register_coco_instances`` and
MMDetection's ``CocoDataset`` both order the class names by category id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["coco_images"]


def coco_images(
    annotations: Path, image_roots: Sequence[Path]
) -> tuple[list[Path], tuple[str, ...] | None, Path] | None:
    """``(images that exist, class names, the image root)`` of a COCO json, or None when it lists none here.

    The first root under which the json's first files exist is taken; the class names are its
    categories ordered by id, as Detectron2's ``register_coco_instances`` and MMDetection's
    ``CocoDataset`` order them.
    """
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
        records = data["images"]
        names = [str(r["file_name"]) for r in records]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not names:
        return None
    for root in image_roots:
        probe = names[: min(len(names), 5)]
        if all((root / name).is_file() for name in probe):
            paths = [root / name for name in names]
            return [p for p in paths if p.is_file()], _categories(data), root
    return None


def _categories(data: dict[str, object]) -> tuple[str, ...] | None:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        return None
    try:
        return tuple(str(c["name"]) for c in sorted(cats, key=lambda c: int(c["id"])))
    except (KeyError, TypeError, ValueError):
        return None
