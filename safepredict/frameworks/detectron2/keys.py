"""Which Detectron2 yacs key holds each post-processing setting, per meta-architecture.

Data, not branches: a new family is a new row. ``None`` means the family has no such key (a
proposal network has no score threshold and one class); the reader says so in the contract's
notes.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class HeadKeys:
    """The config keys of one meta-architecture's test-time settings."""

    score_threshold: str | None
    nms_iou: str
    num_classes: str | None
    max_detections: str
    # Where the adapter lowers the threshold to keep candidates: attribute path on the model.
    score_attribute: str | None


HEADS: dict[str, HeadKeys] = {
    "GeneralizedRCNN": HeadKeys(
        score_threshold="MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        nms_iou="MODEL.ROI_HEADS.NMS_THRESH_TEST",
        num_classes="MODEL.ROI_HEADS.NUM_CLASSES",
        max_detections="TEST.DETECTIONS_PER_IMAGE",
        score_attribute="roi_heads.box_predictor.test_score_thresh",
    ),
    "RetinaNet": HeadKeys(
        score_threshold="MODEL.RETINANET.SCORE_THRESH_TEST",
        nms_iou="MODEL.RETINANET.NMS_THRESH_TEST",
        num_classes="MODEL.RETINANET.NUM_CLASSES",
        max_detections="TEST.DETECTIONS_PER_IMAGE",
        score_attribute="test_score_thresh",
    ),
    "ProposalNetwork": HeadKeys(
        score_threshold=None,
        nms_iou="MODEL.RPN.NMS_THRESH",
        num_classes=None,
        max_detections="MODEL.RPN.POST_NMS_TOPK_TEST",
        score_attribute=None,
    ),
}

# Meta-architectures not in the table (a project's own R-CNN variant) read the ROI-heads keys.
DEFAULT_HEAD = "GeneralizedRCNN"


def head_keys(meta_architecture: str) -> HeadKeys:
    return HEADS.get(meta_architecture, HEADS[DEFAULT_HEAD])


# Meta-architectures safepredict runs, with what they give, and the families it names but does not
# run (yet). A project's own meta-architecture outside both tables is refused too: its outputs
# may not be ``instances``.
SUPPORTED: dict[str, str] = {
    "GeneralizedRCNN": "Faster/Mask/Keypoint/Cascade R-CNN (boxes, masks, keypoints)",
    "RetinaNet": "RetinaNet (boxes)",
}
NOT_SUPPORTED: dict[str, str] = {
    "PanopticFPN": "panoptic segmentation",
    "SemanticSegmentor": "semantic segmentation",
    "ProposalNetwork": "region proposals only (an RPN without classes)",
    "FCOS": "FCOS (LazyConfig): not parity-tested yet",
}


def family_problem(meta_architecture: str) -> str | None:
    """Why ``meta_architecture`` is not run (None when it is), in words."""
    name = meta_architecture.rsplit(".", 1)[-1]
    if name in SUPPORTED:
        return None
    kind = NOT_SUPPORTED.get(name, "a meta-architecture safepredict does not know")
    return f"{name}: {kind}"


# The category of a yacs key outside the contract, by prefix (first match wins). "other": keys
# that do not change inference (training schedule, data sets, output paths).
CONFIG_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("MODEL.WEIGHTS", "other"),
    ("MODEL.DEVICE", "other"),
    ("MODEL.PIXEL_", "preprocessing"),
    ("MODEL.", "architecture"),
    ("INPUT.", "preprocessing"),
    ("TEST.AUG", "preprocessing"),
    ("TEST.", "postprocessing"),
    # LazyConfig trees
    ("model.", "architecture"),
    ("dataloader.test.mapper", "preprocessing"),
)


def config_category(key: str) -> str:
    """preprocessing / postprocessing / architecture / other, for a Detectron2 config key."""
    if "_TEST" in key.rsplit(".", 1)[-1] and key.startswith("MODEL."):
        return "postprocessing"  # MODEL.RPN.NMS_THRESH_TEST, MODEL.ROI_HEADS.SCORE_THRESH_TEST...
    for prefix, category in CONFIG_CATEGORIES:
        if key.startswith(prefix):
            return category
    return "other"
