"""Framework-neutral detections: boxes in original-image pixels, scores, labels, class names,
and, where the model has those heads, instance masks and keypoints."""

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


def _as_masks(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {arr.shape}")
    return arr.astype(bool, copy=False)


def _as_keypoints(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"keypoints must have shape (N, K, 3) (x, y, score), got {arr.shape}")
    return arr


def _rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of one mask, as pycocotools writes it (``counts`` as text)."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:
        from safepredict.errors import FrameworkNotInstalled

        raise FrameworkNotInstalled(
            "writing masks as COCO RLE needs pycocotools, which is not importable here",
            expected="pycocotools",
            found=str(exc),
            fix="pip install pycocotools",
        ) from exc
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


@attrs.frozen(eq=False)
class Detections:
    """Detections of one image.

    ``boxes`` is ``(N, 4)`` float32 ``x1, y1, x2, y2`` in the pixels of the image as given;
    ``scores`` ``(N,)`` float32; ``labels`` ``(N,)`` int64 indices into ``class_names``.
    ``masks`` ``(N, H, W)`` bool in the pixels of the image as given, pasted as the framework's
    evaluation pastes them, and ``keypoints`` ``(N, K, 3)`` float32 ``x, y, score``, are filled
    whenever the model has a mask or keypoint head (None otherwise).
    An image with nothing detected is ``Detections.empty(...)``: a normal value with the right
    dtypes and shapes, not ``None``.
    """

    boxes: np.ndarray = attrs.field(converter=_as_boxes)
    scores: np.ndarray = attrs.field(converter=_as_scores)
    labels: np.ndarray = attrs.field(converter=_as_labels)
    class_names: tuple[str, ...] | None = attrs.field(default=None, converter=_as_names)
    image_size: tuple[int, int] | None = None  # (height, width) of the input image
    masks: np.ndarray | None = attrs.field(default=None, converter=_as_masks)
    keypoints: np.ndarray | None = attrs.field(default=None, converter=_as_keypoints)

    def __attrs_post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.scores) != n or len(self.labels) != n:
            raise ValueError(
                f"boxes, scores and labels must have the same length, got {n}, {len(self.scores)}, {len(self.labels)}"
            )
        for name in ("masks", "keypoints"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} must have one entry per box ({n}), got {len(value)}")

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
            keypoints=None if self.keypoints is None else self.keypoints[idx],
        )

    def above(self, score: float) -> Detections:
        """Only the detections scoring at least ``score``."""
        return self[self.scores >= score]

    def to_coco(self, image_id: int | str, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO result dicts; ``category_ids`` maps label -> COCO id.

        ``bbox`` is ``x, y, w, h``; with masks, ``segmentation`` is the mask's RLE (pycocotools);
        with keypoints, ``keypoints`` is ``[x, y, score, ...]`` with 0.5 subtracted from x and y,
        as Detectron2's COCO evaluator writes them (COCO annotations count pixel indices).
        """
        out = []
        for i, (box, score, label) in enumerate(
            zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(), strict=True)
        ):
            x1, y1, x2, y2 = box
            cat = category_ids[label] if category_ids is not None else label
            result: dict[str, Any] = {
                "image_id": image_id,
                "category_id": int(cat),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            }
            if self.masks is not None:
                result["segmentation"] = _rle(self.masks[i])
            if self.keypoints is not None:
                points = self.keypoints[i].copy()
                points[:, :2] -= 0.5
                result["keypoints"] = points.reshape(-1).tolist()
            out.append(result)
        return out

    def to_supervision(self) -> Any:
        """These detections as supervision's ``sv.Detections`` (boxes, scores, class ids, masks, names).

        Drawing them with supervision's annotators (``image`` in the colour order you predicted)::

            import supervision as sv
            sv_dets = dets.to_supervision()
            scene = sv.BoxAnnotator().annotate(image.copy(), sv_dets)
            scene = sv.LabelAnnotator().annotate(scene, sv_dets, labels=sv_dets.data["class_name"])
        """
        try:
            import supervision as sv
        except ImportError as exc:
            from safepredict.errors import FrameworkNotInstalled

            raise FrameworkNotInstalled(
                "Detections.to_supervision needs supervision, which is not importable here",
                expected="supervision",
                found=str(exc),
                fix="pip install supervision (or pip install 'safepredict[supervision]')",
            ) from exc
        data: dict[str, Any] = {"class_name": np.array(self.names, dtype=object)} if len(self) else {}
        return sv.Detections(
            xyxy=self.boxes.astype(np.float32),
            confidence=self.scores.astype(np.float32),
            class_id=self.labels.astype(int),
            mask=None if self.masks is None else self.masks.astype(bool),
            data=data,
        )

    def __repr__(self) -> str:
        extra = "".join(f", {name}" for name in ("masks", "keypoints") if getattr(self, name) is not None)
        return f"Detections(n={len(self)}, classes={self.class_names}, image_size={self.image_size}{extra})"
