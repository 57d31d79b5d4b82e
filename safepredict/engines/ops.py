"""The steps outside an exported graph, in numpy: resize, pad, priors, box decoding, NMS, RoI levels.

Each function is written after one framework function and says which; the export tests compare
the whole chain against the framework's own evaluation path. Arithmetic is float32 where the
framework's is, so discrete steps (thresholds, top-k, NMS) decide as the framework does.
Nothing here imports torch or a framework.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

F32 = np.float32


# --------------------------------------------------------------------------- resize and pad


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of Detectron2's ``ResizeShortestEdge.get_output_shape``."""
    size = short * 1.0
    scale = size / min(height, width)
    if height < width:
        newh, neww = size, scale * width
    else:
        newh, neww = scale * height, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def rescale_size(height: int, width: int, scale: Sequence[int]) -> tuple[int, int]:
    """``(new_h, new_w)`` of mmcv's ``rescale_size`` (keep the ratio, fit inside ``scale``)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)


_PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}
_CV2_FILTERS = {"nearest": 0, "bilinear": 1, "bicubic": 2, "area": 3, "lanczos": 4}


def resize(image: np.ndarray, new_h: int, new_w: int, interpolation: str, backend: str) -> np.ndarray:
    """``image`` (uint8 HxWx3) at ``new_h x new_w`` with the library and filter the contract names.

    PIL as Detectron2's ``ResizeTransform.apply_image`` calls it for uint8 images; cv2 as mmcv's
    ``imresize`` does.
    """
    if image.shape[:2] == (new_h, new_w):
        return image
    if backend.lower() in ("pil", "pillow"):
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((new_w, new_h), _PIL_FILTERS[interpolation]))
    import cv2

    return cv2.resize(image, (new_w, new_h), interpolation=_CV2_FILTERS[interpolation])


def pad_to(image: np.ndarray, height: int, width: int, value: Sequence[float] | float) -> np.ndarray:
    """``image`` (HxWxC) padded at the bottom and right to ``height x width`` with ``value`` per channel."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    out = np.empty((height, width, image.shape[2]), image.dtype)
    out[...] = np.asarray(value, image.dtype)
    out[:h, :w] = image
    return out


def padded_size(height: int, width: int, divisor: int) -> tuple[int, int]:
    if divisor <= 1:
        return height, width
    return int(math.ceil(height / divisor) * divisor), int(math.ceil(width / divisor) * divisor)


# --------------------------------------------------------------------------- priors


def grid_anchors(base: np.ndarray, stride: float, height: int, width: int, offset: float = 0.0) -> np.ndarray:
    """Anchors of one level, location-major and anchor-minor (``(H*W*A, 4)``).

    Detectron2's ``DefaultAnchorGenerator._grid_anchors`` and mmdet's
    ``AnchorGenerator.single_level_grid_priors`` (whose base anchors carry the centre offset)
    both add ``(x, y, x, y)`` shifts of ``offset*stride + i*stride`` to the base anchors.
    """
    shift_x = (np.arange(width, dtype=F32) * F32(stride) + F32(offset * stride)).astype(F32)
    shift_y = (np.arange(height, dtype=F32) * F32(stride) + F32(offset * stride)).astype(F32)
    yy, xx = np.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=1)
    return (shifts[:, None, :] + base.astype(F32)[None, :, :]).reshape(-1, 4)


def grid_points(stride: float, height: int, width: int, offset: float = 0.0) -> np.ndarray:
    """Points of one level ``(H*W, 2)``, as mmdet's ``MlvlPointGenerator.single_level_grid_priors``."""
    shift_x = ((np.arange(width, dtype=F32) + F32(offset)) * F32(stride)).astype(F32)
    shift_y = ((np.arange(height, dtype=F32) + F32(offset)) * F32(stride)).astype(F32)
    yy, xx = np.meshgrid(shift_y, shift_x, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


# --------------------------------------------------------------------------- box coders


def decode_d2(deltas: np.ndarray, boxes: np.ndarray, weights: Sequence[float], scale_clamp: float) -> np.ndarray:
    """Detectron2's ``Box2BoxTransform.apply_deltas``: ``deltas`` ``(N, 4k)`` on ``boxes`` ``(N, 4)``."""
    deltas = deltas.astype(F32)
    boxes = boxes.astype(F32)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + F32(0.5) * widths
    ctr_y = boxes[:, 1] + F32(0.5) * heights
    wx, wy, ww, wh = (F32(w) for w in weights)
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = np.minimum(deltas[:, 2::4] / ww, F32(scale_clamp))
    dh = np.minimum(deltas[:, 3::4] / wh, F32(scale_clamp))
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = np.exp(dw) * widths[:, None]
    pred_h = np.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - F32(0.5) * pred_w
    y1 = pred_ctr_y - F32(0.5) * pred_h
    x2 = pred_ctr_x + F32(0.5) * pred_w
    y2 = pred_ctr_y + F32(0.5) * pred_h
    return np.stack((x1, y1, x2, y2), axis=-1).reshape(deltas.shape).astype(F32)


def decode_mmdet(
    deltas: np.ndarray,
    boxes: np.ndarray,
    means: Sequence[float],
    stds: Sequence[float],
    wh_ratio_clip: float,
    max_shape: tuple[int, int] | None,
) -> np.ndarray:
    """mmdet's ``DeltaXYWHBBoxCoder.decode`` (``delta2bbox``, ``clip_border``): ``(N, 4k)`` on ``(N, 4)``."""
    n = deltas.shape[0]
    k = deltas.shape[1] // 4
    d = deltas.astype(F32).reshape(n, k, 4)
    d = d * np.asarray(stds, F32) + np.asarray(means, F32)
    dxy, dwh = d[..., :2], d[..., 2:]
    rois = boxes.astype(F32)[:, None, :]
    pxy = (rois[..., :2] + rois[..., 2:]) * F32(0.5)
    pwh = rois[..., 2:] - rois[..., :2]
    dxy_wh = pwh * dxy
    max_ratio = F32(abs(math.log(wh_ratio_clip)))
    dwh = np.clip(dwh, -max_ratio, max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * np.exp(dwh)
    x1y1 = gxy - gwh * F32(0.5)
    x2y2 = gxy + gwh * F32(0.5)
    out = np.concatenate([x1y1, x2y2], axis=-1)
    if max_shape is not None:
        h, w = max_shape
        out[..., 0::2] = np.clip(out[..., 0::2], 0, w)
        out[..., 1::2] = np.clip(out[..., 1::2], 0, h)
    return out.reshape(n, 4 * k).astype(F32)


def distance2bbox(points: np.ndarray, distance: np.ndarray, max_shape: tuple[int, int] | None) -> np.ndarray:
    """mmdet's ``distance2bbox`` (``DistancePointBBoxCoder.decode``, ``clip_border``)."""
    x1 = points[:, 0] - distance[:, 0]
    y1 = points[:, 1] - distance[:, 1]
    x2 = points[:, 0] + distance[:, 2]
    y2 = points[:, 1] + distance[:, 3]
    out = np.stack([x1, y1, x2, y2], -1).astype(F32)
    if max_shape is not None:
        h, w = max_shape
        out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Detectron2's ``Boxes.clip``: x to ``[0, width]``, y to ``[0, height]`` (any ``(..., 4)``)."""
    out = boxes.copy()
    out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    return out


# --------------------------------------------------------------------------- selection


def topk_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, highest first (``torch.topk``, sorted)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros((0,), np.int64)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Kept indices, highest score first: torchvision's ``nms`` CPU kernel (mmcv's with offset 0 is the same).

    A box is suppressed by a kept, higher-scoring box when their IoU is above ``iou_threshold``,
    computed in float32 as the kernels do.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros((0,), np.int64)
    boxes = boxes.astype(F32)
    order = np.argsort(-scores.astype(F32), kind="stable")
    x1, y1, x2, y2 = (boxes[order, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(n, bool)
    keep = []
    thr = F32(iou_threshold)
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.arange(i + 1, n)
        rest = rest[~suppressed[rest]]
        if not len(rest):
            break
        w = np.maximum(F32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(F32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is NaN, never above the threshold, as in C
            iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > thr]] = True
    return order[np.asarray(keep, np.int64)]


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float, style: str
) -> np.ndarray:
    """NMS within each value of ``idxs``; kept indices by score, highest first.

    ``style="torchvision"``: ``torchvision.ops.batched_nms`` (the coordinate trick up to 4000
    numbers on the CPU, else one NMS per class); ``style="mmcv"``: ``mmcv.ops.batched_nms``
    (the coordinate trick below ``split_thr`` = 10000 boxes, else per class).
    """
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    boxes = boxes.astype(F32)
    trick = boxes.size <= 4000 if style == "torchvision" else len(boxes) < 10000
    if trick:
        offsets = idxs.astype(F32) * (boxes.max() + F32(1))
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep_mask = np.zeros(len(boxes), bool)
    if style == "mmcv":
        boxes = boxes + (idxs.astype(F32) * (boxes.max() + F32(1)))[:, None]
    for value in np.unique(idxs):
        where = np.nonzero(idxs == value)[0]
        keep_mask[where[nms(boxes[where], scores[where], iou_threshold)]] = True
    kept = np.nonzero(keep_mask)[0]
    return kept[np.argsort(-scores[kept], kind="stable")]


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(F32)
    with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative logits: the score is 0, as in torch
        return (F32(1) / (F32(1) + np.exp(-x))).astype(F32)


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(F32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(F32)


def roi_levels_d2(boxes: np.ndarray, min_level: int, max_level: int, canonical_size: int, canonical_level: int) -> Any:
    """Detectron2's ``assign_boxes_to_levels``: the pyramid level index (from 0) of each box."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    sizes = np.sqrt(area.astype(F32))
    levels = np.floor(canonical_level + np.log2(sizes / F32(canonical_size) + F32(1e-8)))
    return (np.clip(levels, min_level, max_level) - min_level).astype(np.int64)


def roi_levels_mmdet(boxes: np.ndarray, num_levels: int, finest_scale: float) -> np.ndarray:
    """mmdet's ``SingleRoIExtractor.map_roi_levels``: the level index of each box."""
    scale = np.sqrt(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(F32))
    levels = np.floor(np.log2(scale / F32(finest_scale) + F32(1e-6)))
    return np.clip(levels, 0, num_levels - 1).astype(np.int64)
