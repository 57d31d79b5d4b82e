"""MMDetection's test-time post-processing in numpy, for the ONNX Runtime engine.

Each function follows one mmdet function (named in its docstring): the dense heads'
``_predict_by_feat_single`` + ``_bbox_post_process``, the RPN's, and the RoI head's
``_predict_by_feat_single`` + ``multiclass_nms``, with mmcv's ``batched_nms``.
No torch, no mmdet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from safepredict.engines import ops
from safepredict.engines.onnxruntime import F32, _levels, roi_inputs

# The most (proposal, class) pairs a two-stage head sends into NMS below its threshold: the cap
# the MMDetection adapter installs (frameworks/mmdet/adapter.py, CANDIDATE_PAIRS).
CANDIDATE_PAIRS = 1000


def _flat(x: np.ndarray, k: int) -> np.ndarray:
    """``(1, A*k, H, W)`` -> ``(H*W*A, k)``: mmdet's ``permute(1, 2, 0).reshape(-1, k)``."""
    return x[0].transpose(1, 2, 0).reshape(-1, k)


def _priors(spec: Mapping[str, Any], level: int, h: int, w: int) -> np.ndarray:
    if spec["kind"] == "points":
        return ops.grid_points(spec["strides"][level], h, w, spec["offset"])
    return ops.grid_anchors(np.asarray(spec["base"][level], F32), spec["strides"][level], h, w, 0.0)


def _decode(coder: Mapping[str, Any], priors: np.ndarray, pred: np.ndarray, max_shape: tuple[int, int]) -> np.ndarray:
    shape = max_shape if coder.get("clip_border", True) else None
    if coder["kind"] == "distance":
        return ops.distance2bbox(priors, pred, shape)
    return ops.decode_mmdet(pred, priors, coder["means"], coder["stds"], coder["wh_ratio_clip"], shape)


def _activation(kind: str, logits: np.ndarray) -> np.ndarray:
    return ops.sigmoid(logits) if kind == "sigmoid" else ops.softmax(logits)[:, :-1]


def filter_scores_and_topk(scores: np.ndarray, score_thr: float, topk: int) -> tuple[np.ndarray, ...]:
    """mmdet's ``filter_scores_and_topk``: ``(scores, labels, keep_idxs)``, sorted by score."""
    rows, labels = np.nonzero(scores > F32(score_thr))
    values = scores[rows, labels]
    num_topk = min(topk, len(values))
    order = np.argsort(-values, kind="stable")[:num_topk]  # python slicing, as mmdet's (nms_pre=-1 drops one)
    return values[order], labels[order], rows[order]


def _rescale(boxes: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """mmdet's ``scale_boxes(bboxes, [1 / s for s in scale_factor])``: a multiplication by the inverse."""
    factor = np.asarray([1 / scale[0], 1 / scale[1], 1 / scale[0], 1 / scale[1]], F32)
    return (boxes.reshape(len(boxes), -1, 4) * factor).reshape(boxes.shape).astype(F32)


def _post_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, cfg: Mapping[str, Any], scale: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``BaseDenseHead._bbox_post_process``: rescale, min_bbox_size, batched NMS, max_per_img."""
    if scale is not None:
        boxes = _rescale(boxes, scale)
    min_size = cfg.get("min_bbox_size", -1)
    if min_size is not None and min_size >= 0:
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (w > F32(min_size)) & (h > F32(min_size))
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    if len(boxes):
        keep = ops.batched_nms(boxes, scores, labels, float(cfg["nms"]["iou_threshold"]), "mmcv")
        keep = keep[: int(cfg.get("max_per_img", len(keep)))]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return boxes, scores, labels


def dense(
    outputs: Mapping[str, np.ndarray],
    recipe: Mapping[str, Any],
    img_shape: tuple[int, int],
    scale: tuple[float, float],
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A one-stage head's ``_predict_by_feat_single`` for one image (RetinaNet, RTMDet)."""
    k = int(recipe["num_classes"])
    cfg = dict(recipe["test_cfg"])
    nms_pre = int(cfg.get("nms_pre", -1))
    boxes_l, scores_l, labels_l = [], [], []
    for i, (cls, box) in enumerate(zip(_levels(outputs, "cls"), _levels(outputs, "box"), strict=True)):
        h, w = cls.shape[-2:]
        channels = k if recipe["activation"] == "sigmoid" else k + 1
        scores = _activation(recipe["activation"], _flat(cls, channels))
        pred = _flat(box, 4)
        priors = _priors(recipe["priors"], i, h, w)
        values, labels, rows = filter_scores_and_topk(scores, threshold, nms_pre)
        boxes_l.append(_decode(recipe["coder"], priors[rows], pred[rows], img_shape))
        scores_l.append(values)
        labels_l.append(labels)
    boxes, scores, labels = np.concatenate(boxes_l), np.concatenate(scores_l), np.concatenate(labels_l)
    return _post_nms(boxes, scores, labels, cfg, scale)


def proposals(outputs: Mapping[str, np.ndarray], rpn: Mapping[str, Any], img_shape: tuple[int, int]) -> np.ndarray:
    """``RPNHead._predict_by_feat_single`` + its ``_bbox_post_process`` for one image."""
    cfg = dict(rpn["test_cfg"])
    nms_pre = int(cfg.get("nms_pre", -1))
    boxes_l, scores_l, level_l = [], [], []
    for i, (logits, deltas) in enumerate(
        zip(_levels(outputs, "rpn.logits"), _levels(outputs, "rpn.deltas"), strict=True)
    ):
        h, w = logits.shape[-2:]
        channels = 1 if rpn["activation"] == "sigmoid" else 2
        scores = _activation(rpn["activation"], _flat(logits, channels)).reshape(-1)
        pred = _flat(deltas, 4)
        priors = _priors(rpn["priors"], i, h, w)
        if 0 < nms_pre < len(scores):
            idx = np.argsort(-scores, kind="stable")[:nms_pre]
            scores, pred, priors = scores[idx], pred[idx], priors[idx]
        boxes_l.append(_decode(rpn["coder"], priors, pred, img_shape))
        scores_l.append(scores)
        level_l.append(np.full(len(scores), i, np.int64))
    boxes, scores, levels = np.concatenate(boxes_l), np.concatenate(scores_l), np.concatenate(level_l)
    boxes, _, _ = _post_nms(boxes, scores, levels, cfg, None)
    return boxes


def _cap_floor(probs: np.ndarray, floor: float, threshold: float, cap: int = CANDIDATE_PAIRS) -> float:
    """The MMDetection adapter's candidate cap: the floor rises to the ``cap``-th highest class score."""
    foreground = probs[:, :-1].reshape(-1)
    if floor >= threshold or foreground.size <= cap:
        return floor
    kth = float(np.partition(foreground, foreground.size - cap)[foreground.size - cap])
    return min(max(kth, floor), threshold)


def two_stage(
    outputs: Mapping[str, np.ndarray],
    recipe: Mapping[str, Any],
    img_shape: tuple[int, int],
    scale: tuple[float, float],
    floor: float,
    threshold: float,
    roi_forward: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faster R-CNN's ``predict`` for one image: RPN proposals, the bbox head, ``multiclass_nms``."""
    props = proposals(outputs, recipe["rpn"], img_shape)
    roi, box = recipe["roi"], recipe["box"]
    if not len(props):
        return np.zeros((0, 4), F32), np.zeros((0,), F32), np.zeros((0,), np.int64)
    features = _levels(outputs, "feature")
    levels = ops.roi_levels_mmdet(props, int(roi["levels"]), float(roi["finest_scale"]))
    per_level, inverse = roi_inputs(props, levels, len(features))
    cls, deltas = roi_forward(features, per_level)
    cls, deltas = cls[inverse], deltas[inverse]
    probs = ops.softmax(cls)
    k = int(recipe["num_classes"])
    boxes = _decode(box["coder"], props, deltas, img_shape)  # (N, 4) or (N, 4k)
    boxes = _rescale(boxes, scale)
    cfg = dict(box["test_cfg"])
    score_thr = _cap_floor(probs, floor, threshold)
    per_class = boxes.reshape(len(boxes), -1, 4)
    if per_class.shape[1] == 1:
        per_class = np.broadcast_to(per_class, (len(boxes), k, 4))
    scores = probs[:, :-1]
    flat_boxes = per_class.reshape(-1, 4)
    flat_scores = scores.reshape(-1)
    labels = np.broadcast_to(np.arange(k), scores.shape).reshape(-1)
    valid = np.nonzero(flat_scores > F32(score_thr))[0]
    b, s, lab = flat_boxes[valid], flat_scores[valid], labels[valid]
    if not len(b):
        return np.zeros((0, 4), F32), np.zeros((0,), F32), np.zeros((0,), np.int64)
    keep = ops.batched_nms(b, s, lab, float(cfg["nms"]["iou_threshold"]), "mmcv")
    max_num = int(cfg.get("max_per_img", -1))
    if max_num > 0:
        keep = keep[:max_num]
    return b[keep], s[keep], lab[keep].astype(np.int64)


def postprocess(engine: Any, outputs: Mapping[str, np.ndarray], prepared: Any) -> tuple[np.ndarray, ...]:
    """Detections of one image in original-image pixels, down to the engine's candidate floor."""
    spec = engine.spec
    img_shape = tuple(spec["pad_to"]) if spec.get("img_shape_is_padded") and spec.get("pad_to") else prepared.resized
    img_shape = (max(img_shape[0], prepared.resized[0]), max(img_shape[1], prepared.resized[1]))
    recipe = engine.recipe
    if recipe["kind"] == "dense":
        boxes, scores, labels = dense(outputs, recipe, img_shape, prepared.scale, engine._floor)
    else:
        boxes, scores, labels = two_stage(
            outputs, recipe, img_shape, prepared.scale, engine._floor, engine.score_threshold, engine.roi_forward
        )
    return boxes.astype(F32), scores.astype(F32), labels.astype(np.int64)
