"""Detections with masks and keypoints: shapes, slicing, and COCO results pycocotools reads back."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from safepredict.detections import Detections

H, W = 48, 64


def _masks(n: int) -> np.ndarray:
    masks = np.zeros((n, H, W), bool)
    for i in range(n):
        masks[i, 4 + 3 * i : 20 + 4 * i, 6 + 5 * i : 30 + 3 * i] = True
    return masks


def _boxes_of(masks: np.ndarray) -> np.ndarray:
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, np.float32)


def _keypoints(n: int, k: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    points = np.zeros((n, k, 3), np.float32)
    points[..., 0] = rng.uniform(8, 50, (n, k)).round() + 0.5
    points[..., 1] = rng.uniform(8, 40, (n, k)).round() + 0.5
    points[..., 2] = rng.uniform(0.5, 1.0, (n, k))
    return points


def _detections(n: int = 3) -> Detections:
    masks = _masks(n)
    return Detections(
        boxes=_boxes_of(masks),
        scores=np.linspace(0.9, 0.3, n),
        labels=np.arange(n) % 2,
        class_names=("a", "b"),
        image_size=(H, W),
        masks=masks,
        keypoints=_keypoints(n),
    )


def test_masks_and_keypoints_are_typed_and_sliced_with_the_boxes():
    dets = _detections(4)
    assert dets.masks is not None and dets.masks.dtype == bool and dets.masks.shape == (4, H, W)
    assert dets.keypoints is not None and dets.keypoints.dtype == np.float32 and dets.keypoints.shape == (4, 4, 3)
    picked = dets[dets.scores > 0.5]
    assert len(picked) == 2
    assert picked.masks is not None and picked.keypoints is not None
    np.testing.assert_array_equal(picked.masks, dets.masks[:2])
    np.testing.assert_array_equal(picked.keypoints, dets.keypoints[:2])
    one = dets[2]
    assert len(one) == 1 and one.masks is not None and one.masks.shape == (1, H, W)
    assert "masks" in repr(dets) and "keypoints" in repr(dets)
    boxes_only = Detections(dets.boxes, dets.scores, dets.labels)
    assert boxes_only.masks is None and boxes_only[:1].masks is None
    assert "masks" not in repr(boxes_only)


def test_mask_and_keypoint_shapes_are_checked():
    dets = _detections(2)
    with pytest.raises(ValueError, match="masks"):
        Detections(dets.boxes, dets.scores, dets.labels, masks=dets.masks[0])  # (H, W), not (N, H, W)
    with pytest.raises(ValueError, match="one entry per box"):
        Detections(dets.boxes, dets.scores, dets.labels, masks=_masks(3))
    with pytest.raises(ValueError, match="keypoints"):
        Detections(dets.boxes, dets.scores, dets.labels, keypoints=np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="one entry per box"):
        Detections(dets.boxes, dets.scores, dets.labels, keypoints=np.zeros((1, 4, 3)))


def test_empty_detections_with_heads_keep_their_shapes():
    dets = _detections(2)[np.zeros(2, bool)]
    assert dets.is_empty()
    assert dets.masks is not None and dets.masks.shape == (0, H, W)
    assert dets.keypoints is not None and dets.keypoints.shape == (0, 4, 3)
    assert dets.to_coco(1) == []


def test_to_coco_segmentation_is_rle_that_decodes_to_the_mask():
    from pycocotools import mask as mask_utils

    dets = _detections(3)
    results = dets.to_coco(7, category_ids=[11, 12])
    assert [r["category_id"] for r in results] == [11, 12, 11]
    for mask, result in zip(dets.masks, results, strict=True):
        rle = result["segmentation"]
        assert rle["size"] == [H, W] and isinstance(rle["counts"], str)
        compressed = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        np.testing.assert_array_equal(mask_utils.decode(compressed).astype(bool), mask)
        assert mask_utils.area(compressed) == mask.sum()


def test_to_coco_keypoints_are_pixel_indices_as_detectron2_writes_them():
    dets = _detections(2)
    results = dets.to_coco(1)
    for points, result in zip(dets.keypoints, results, strict=True):
        flat = np.asarray(result["keypoints"], np.float32).reshape(-1, 3)
        np.testing.assert_allclose(flat[:, :2], points[:, :2] - 0.5)
        np.testing.assert_allclose(flat[:, 2], points[:, 2])
    # The detections themselves are not changed by writing them.
    np.testing.assert_array_equal(dets.keypoints, _keypoints(2))


def _ground_truth(dets: Detections) -> dict:
    from pycocotools import mask as mask_utils

    annotations = []
    for i, (box, mask, points) in enumerate(zip(dets.boxes, dets.masks, dets.keypoints, strict=True)):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        pixel = points.copy()
        pixel[:, :2] -= 0.5
        pixel[:, 2] = 2  # visible
        x1, y1, x2, y2 = box.tolist()
        annotations.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": int(dets.labels[i]) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(mask.sum()),
                "segmentation": rle,
                "iscrowd": 0,
                "keypoints": pixel.reshape(-1).tolist(),
                "num_keypoints": len(points),
            }
        )
    keypoint_names = [f"k{j}" for j in range(dets.keypoints.shape[1])]
    return {
        "images": [{"id": 1, "height": H, "width": W, "file_name": "x.png"}],
        "annotations": annotations,
        "categories": [
            {"id": c + 1, "name": name, "keypoints": keypoint_names, "skeleton": []}
            for c, name in enumerate(dets.class_names)
        ],
    }


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_cocoeval_reads_results_and_scores_a_perfect_prediction_one(iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets = _detections(3)
    gt = COCO()
    gt.dataset = _ground_truth(dets)
    gt.createIndex()
    results = dets.to_coco(1, category_ids=[1, 2])
    predicted = gt.loadRes(copy.deepcopy(results))
    evaluator = COCOeval(gt, predicted, iou_type)
    if iou_type == "keypoints":
        evaluator.params.kpt_oks_sigmas = np.full(dets.keypoints.shape[1], 0.05)
    evaluator.params.areaRng = [[0, 1e10]]
    evaluator.params.areaRngLbl = ["all"]
    evaluator.params.maxDets = [20]
    evaluator.evaluate()
    evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    np.testing.assert_allclose(precision[precision > -1], 1.0, rtol=0, atol=1e-9)
