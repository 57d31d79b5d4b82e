"""Where an mmengine detector config keeps each post-processing setting, per head type.

Data, not branches: a new head layout is a new row. Two-stage detectors keep their final
post-processing under ``test_cfg.rcnn`` and their classes in ``roi_head.bbox_head`` (the last
stage of a cascade); one-stage and anchor-free heads (RetinaNet, FCOS, ATSS, RTMDet, YOLOX...)
keep flat ``test_cfg`` keys and ``bbox_head.num_classes``; an RPN alone has ``test_cfg.rpn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class HeadLayout:
    """One layout of an mmdet model config: how to tell it, and where its settings live."""

    name: str
    post_path: str  # config path of the test-time post-processing dict
    num_classes_path: str | None  # None: proposals of one class
    # Keys inside the post-processing dict, by contract field.
    score_threshold: str = "score_thr"
    nms_iou: str = "nms.iou_threshold"
    max_detections: str = "max_per_img"
    # The model attribute holding the post-processing dict the head reads at test time.
    test_cfg_attribute: str = "test_cfg"
    # Whether the adapter lowers that dict's threshold to keep candidates below it. Only where
    # the threshold tests the final score before NMS, and the final detections were shown to stay
    # the framework's own (tests/test_families_mmdet.py).
    candidate_floor: bool = False
    # The head keeps ``score >= score_thr`` (YOLOX), not ``score > score_thr``.
    threshold_inclusive: bool = False


TWO_STAGE = HeadLayout(
    "two-stage",
    "model.test_cfg.rcnn",
    "model.roi_head.bbox_head.num_classes",
    test_cfg_attribute="roi_head.test_cfg",
    candidate_floor=True,
)
# A one-stage or anchor-free head; the detector hands its test_cfg to the head, which reads it.
ONE_STAGE = HeadLayout(
    "one-stage", "model.test_cfg", "model.bbox_head.num_classes", test_cfg_attribute="bbox_head.test_cfg"
)
RPN_ONLY = HeadLayout("rpn", "model.test_cfg.rpn", None, test_cfg_attribute="test_cfg")

# Dense heads (``model.bbox_head.type``) whose ``score_thr`` is a test on the final score before
# NMS and the caps: ``filter_scores_and_topk(scores, score_thr, nms_pre)`` per level (RetinaNet,
# RTMDet) or ``objectness * class score >= score_thr`` (YOLOX), then NMS and ``max_per_img``.
# Lowering it adds candidates below the threshold and leaves those above it as they were: the
# ones above still rank first in every top-k, and NMS never lets a lower score suppress a higher.
# Not here, and so run at their own threshold: heads that test the class score and multiply it by
# a score factor afterwards (FCOSHead, ATSSHead: centerness), where a candidate below the
# threshold can end with a higher final score than one above it, suppress it in NMS or push it
# out of ``max_per_img``; and heads safepredict has not tested.
DENSE_HEADS: dict[str, HeadLayout] = {
    "RetinaHead": attrs.evolve(ONE_STAGE, name="one-stage (RetinaNet)", candidate_floor=True),
    "RTMDetSepBNHead": attrs.evolve(ONE_STAGE, name="one-stage (RTMDet)", candidate_floor=True),
    "YOLOXHead": attrs.evolve(ONE_STAGE, name="one-stage (YOLOX)", candidate_floor=True, threshold_inclusive=True),
}
# Why a dense head keeps its own threshold, for the docs and describe().
SCORE_FACTOR_HEADS: dict[str, str] = {
    "FCOSHead": "score_thr tests the class score; the final score is class score x centerness",
    "ATSSHead": "score_thr tests the class score; the final score is class score x centerness",
}


def _type_name(value: Any) -> str:
    return str(value).rsplit(".", 1)[-1] if value is not None else ""


def layout(model: Mapping[str, Any]) -> HeadLayout:
    """The head layout of an mmdet ``model`` config dict."""
    test_cfg = model.get("test_cfg") or {}
    if "rcnn" in test_cfg:
        return TWO_STAGE
    if "rpn" in test_cfg and len(test_cfg) == 1:
        return RPN_ONLY
    head = model.get("bbox_head") or {}
    return DENSE_HEADS.get(_type_name(head.get("type")), ONE_STAGE)


# Detector families by base class in mmdet's registry: what safepredict runs, and what it names
# without running. Checked in this order (a panoptic segmentor is also a two-stage detector).
NOT_SUPPORTED_BASES: tuple[tuple[str, str], ...] = (
    ("mmdet.models.detectors.panoptic_two_stage_segmentor.TwoStagePanopticSegmentor", "panoptic segmentation"),
    ("mmdet.models.detectors.maskformer.MaskFormer", "panoptic/instance segmentation with MaskFormer"),
    ("mmdet.models.detectors.base_detr.DetectionTransformer", "DETR-style detectors (no score_thr/NMS test_cfg)"),
    (
        "mmdet.models.detectors.single_stage_instance_seg.SingleStageInstanceSegmentor",
        "SOLO/CondInst/YOLACT-style single-stage instance segmentation",
    ),
    ("mmdet.models.detectors.semi_base.SemiBaseDetector", "semi-supervised teacher/student wrappers"),
    ("mmdet.models.detectors.rpn.RPN", "region proposals only (an RPN without classes)"),
)
SUPPORTED_BASES: tuple[tuple[str, str], ...] = (
    ("mmdet.models.detectors.two_stage.TwoStageDetector", "two-stage R-CNN detectors (boxes, masks)"),
    ("mmdet.models.detectors.single_stage.SingleStageDetector", "one-stage and anchor-free detectors (boxes)"),
)


def _class(path: str) -> type | None:
    import importlib

    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def family_problem(model_type: str) -> str | None:
    """Why an mmdet ``model.type`` is not run (None when it is), read from mmdet's own registry."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    name = model_type.rsplit(".", 1)[-1]
    cls = MODELS.get(name)
    if cls is None:
        return f"{name}: not in mmdet's model registry (a plugin package that is not installed?)"
    for path, kind in NOT_SUPPORTED_BASES:
        base = _class(path)
        if base is not None and issubclass(cls, base):
            return f"{name}: {kind}"
    for path, _kind in SUPPORTED_BASES:
        base = _class(path)
        if base is not None and issubclass(cls, base):
            return None
    return f"{name}: a detector family safepredict does not know"


# The category of an mmengine config key outside the contract, by prefix (first match wins).
CONFIG_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("model.test_cfg", "postprocessing"),
    ("model.data_preprocessor", "preprocessing"),
    ("model.train_cfg", "other"),
    ("model.", "architecture"),
    ("test_dataloader.dataset.pipeline", "preprocessing"),
    ("test_pipeline", "preprocessing"),
    ("tta_", "preprocessing"),
)


def config_category(key: str) -> str:
    """preprocessing / postprocessing / architecture / other, for an mmengine config key."""
    for prefix, category in CONFIG_CATEGORIES:
        if key.startswith(prefix):
            return category
    return "other"
