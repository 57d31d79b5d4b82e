"""Framework-neutral detections: boxes in original-image pixels, scores, labels, class names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np


def _as_boxes(value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    return arr


def _as_scores(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32).reshape(-1)


def _as_names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _as_labels(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.int64).reshape(-1)


@attrs.frozen(eq=False)
class Detections:
    """Detections of one image.

    ``boxes`` is ``(N, 4)`` float32 ``x1, y1, x2, y2`` in the pixels of the image as given;
    ``scores`` ``(N,)`` float32; ``labels`` ``(N,)`` int64 indices into ``class_names``.
    An image with nothing detected is ``Detections.empty(...)``: a normal value with the right
    dtypes and shapes, not ``None``.
    """

    boxes: np.ndarray = attrs.field(converter=_as_boxes)
    scores: np.ndarray = attrs.field(converter=_as_scores)
    labels: np.ndarray = attrs.field(converter=_as_labels)
    class_names: tuple[str, ...] | None = attrs.field(default=None, converter=_as_names)
    image_size: tuple[int, int] | None = None  # (height, width) of the input image
    masks: np.ndarray | None = None  # (N, H, W) bool where the model predicts masks

    def __attrs_post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.scores) != n or len(self.labels) != n:
            raise ValueError(
                f"boxes, scores and labels must have the same length, got {n}, {len(self.scores)}, {len(self.labels)}"
            )

    @classmethod
    def empty(cls, class_names: Sequence[str] | None = None, image_size: tuple[int, int] | None = None) -> Detections:
        """Detections with nothing in them."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=np.zeros((0,), np.int64),
            class_names=class_names,
            image_size=image_size,
        )

    def __len__(self) -> int:
        return len(self.boxes)

    def is_empty(self) -> bool:
        return len(self) == 0

    @property
    def names(self) -> list[str]:
        """The class name of each detection (``str(label)`` where no names are known)."""
        if self.class_names is None:
            return [str(int(i)) for i in self.labels]
        return [self.class_names[int(i)] for i in self.labels]

    def __getitem__(self, index: Any) -> Detections:
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return attrs.evolve(
            self,
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            labels=self.labels[idx],
            masks=None if self.masks is None else self.masks[idx],
        )

    def above(self, score: float) -> Detections:
        """Only the detections scoring at least ``score``."""
        return self[self.scores >= score]

    def to_coco(self, image_id: int | str, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO result dicts (``bbox`` as ``x, y, w, h``); ``category_ids`` maps label -> COCO id."""
        out = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(), strict=True):
            x1, y1, x2, y2 = box
            cat = category_ids[label] if category_ids is not None else label
            out.append(
                {"image_id": image_id, "category_id": int(cat), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
        return out

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, classes={self.class_names}, image_size={self.image_size})"
