"""Where an MMDetection training config's validation images are, on this machine, if anywhere.

The config embedded in every mmengine checkpoint names them: ``val_dataloader.dataset`` (else
``test_dataloader.dataset``) has ``ann_file`` and ``data_prefix.img`` under ``data_root``. A COCO
json lists the files (and the class names, unless ``metainfo.classes`` does); another annotation
format falls back to the image files in the image folder. Wrappers (``RepeatDataset``,
``ConcatDataset``...) are looked through.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safepredict.frameworks.coco import coco_images

__all__ = ["validation_images"]

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def validation_images(cfg: Any, checkpoint: Path) -> tuple[list[Path], tuple[str, ...] | None, str] | None:
    """``(image files, class names or None, where they came from)`` of the config's validation set, or None."""
    for key in ("val_dataloader", "test_dataloader"):
        dataset = _dataset(_get(_get(cfg, key), "dataset"))
        if dataset is None:
            continue
        found = _files(dataset, key)
        if found is not None:
            return found
    return None


def _get(node: Any, key: str) -> Any:
    if node is None:
        return None
    if isinstance(node, Mapping):
        return node.get(key)
    return getattr(node, key, None)


def _dataset(node: Any) -> Any:
    """The innermost data set config under wrappers."""
    for _ in range(8):
        if node is None:
            return None
        if _get(node, "ann_file") is not None or _get(node, "data_prefix") is not None:
            return node
        inner = _get(node, "dataset")
        if inner is None:
            datasets = _get(node, "datasets")
            inner = datasets[0] if isinstance(datasets, (list, tuple)) and datasets else None
        node = inner
    return None


def _join(root: str | None, path: Any) -> Path | None:
    if path is None or not isinstance(path, str) or not path:
        return None
    p = Path(path)
    return p if p.is_absolute() or not root else Path(root) / p


def _files(dataset: Any, key: str) -> tuple[list[Path], tuple[str, ...] | None, str] | None:
    root = _get(dataset, "data_root")
    root = str(root) if isinstance(root, str) else None
    prefix = _get(dataset, "data_prefix")
    image_dir = _join(root, _get(prefix, "img") or _get(prefix, "img_path")) if prefix is not None else None
    if image_dir is None and root:
        image_dir = Path(root)
    ann = _join(root, _get(dataset, "ann_file"))
    meta_classes = _get(_get(dataset, "metainfo"), "classes")
    classes = tuple(str(c) for c in meta_classes) if isinstance(meta_classes, (list, tuple)) and meta_classes else None
    if ann is not None and ann.suffix == ".json" and ann.is_file() and image_dir is not None:
        listed = coco_images(ann, [image_dir])
        if listed is not None and listed[0]:
            paths, json_classes, found_root = listed
            return paths, classes or json_classes, f"{key}.dataset: {ann}, images in {found_root}"
    if image_dir is not None and image_dir.is_dir():
        paths = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        if paths:
            return paths, classes, f"{key}.dataset: the images in {image_dir}"
    return None
