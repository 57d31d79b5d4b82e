"""safepredict's outputs in the tools people already use: supervision and COCO results with masks."""

from __future__ import annotations

import numpy as np
import pytest

from safepredict.detections import Detections

sv = pytest.importorskip("supervision", reason="supervision is installed by scripts/requirements-test.txt")


def _detections(with_masks: bool = True) -> Detections:
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 5:20, 10:30] = True
    masks[1, 30:50, 40:70] = True
    return Detections(
        boxes=[[10, 5, 30, 20], [40, 30, 70, 50]],
        scores=[0.9, 0.6],
        labels=[2, 0],
        class_names=("red", "blue", "yellow"),
        image_size=(60, 80),
        masks=masks if with_masks else None,
    )


def test_to_supervision_carries_boxes_scores_ids_masks_and_names():
    dets = _detections()
    out = dets.to_supervision()
    assert isinstance(out, sv.Detections) and len(out) == 2
    np.testing.assert_array_equal(out.xyxy, dets.boxes)
    np.testing.assert_array_equal(out.confidence, dets.scores)
    np.testing.assert_array_equal(out.class_id, [2, 0])
    np.testing.assert_array_equal(out.mask, dets.masks)
    assert list(out.data["class_name"]) == ["yellow", "red"]
    # supervision's own operations work on it: filtering keeps the pairs together.
    kept = out[out.confidence > 0.7]
    assert len(kept) == 1 and kept.class_id.tolist() == [2] and kept.mask.shape == (1, 60, 80)


def test_supervision_annotators_draw_safepredict_detections():
    dets = _detections()
    image = np.zeros((60, 80, 3), np.uint8)
    sv_dets = dets.to_supervision()
    scene = sv.BoxAnnotator().annotate(image.copy(), sv_dets)
    scene = sv.MaskAnnotator().annotate(scene, sv_dets)
    scene = sv.LabelAnnotator().annotate(scene, sv_dets, labels=list(sv_dets.data["class_name"]))
    assert scene.shape == image.shape and scene.any()
    assert not scene[55:, :5].any()  # nothing drawn outside the detections


def test_empty_and_maskless_detections_convert():
    empty = Detections.empty(class_names=("a",)).to_supervision()
    assert len(empty) == 0 and empty.mask is None
    assert _detections(with_masks=False).to_supervision().mask is None
