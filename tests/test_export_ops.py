"""The numpy steps outside the exported graph (safepredict/engines/ops.py) against the framework
functions they replace, on random inputs, including the branches the model tests seldom reach
(NMS per class above torchvision's 4000-number and mmcv's 10000-box switches)."""

from __future__ import annotations

import numpy as np
import pytest

from safepredict.engines import ops


def _boxes(rng: np.random.Generator, n: int, size: float = 300.0) -> np.ndarray:
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 4, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 50, 900, 1500])  # 1500 boxes = 6000 numbers: torchvision's per-class branch
def test_batched_nms_equals_torchvision(n):
    import torch
    import torchvision

    rng = np.random.default_rng(n)
    boxes, scores, idxs = _boxes(rng, n), rng.random(n).astype(np.float32), rng.integers(0, 7, n)
    ours = ops.batched_nms(boxes, scores, idxs, 0.5, "torchvision")
    theirs = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs), 0.5)
    np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("n", [0, 40, 3000, 10500])  # 10500 boxes: mmcv's per-class branch (split_thr)
def test_batched_nms_equals_mmcv(n):
    import torch
    from mmcv.ops import batched_nms

    rng = np.random.default_rng(n + 1)
    boxes, scores, idxs = _boxes(rng, n, 600.0), rng.random(n).astype(np.float32), rng.integers(0, 5, n)
    ours = ops.batched_nms(boxes, scores, idxs, 0.6, "mmcv")
    if n == 0:
        assert len(ours) == 0
        return
    _, keep = batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs), {"type": "nms", "iou_threshold": 0.6}
    )
    np.testing.assert_array_equal(ours, keep.numpy())


def test_anchors_equal_detectron2_and_mmdet_generators():
    import torch
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from mmdet.models.task_modules.prior_generators import AnchorGenerator

    d2 = DefaultAnchorGenerator(sizes=[[32], [64]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[8, 16], offset=0.0)
    features = [torch.zeros(1, 1, 7, 9), torch.zeros(1, 1, 4, 5)]
    theirs = d2(features)
    for i, f in enumerate(features):
        ours = ops.grid_anchors(list(d2.cell_anchors)[i].numpy(), d2.strides[i], f.shape[2], f.shape[3], d2.offset)
        np.testing.assert_allclose(ours, theirs[i].tensor.numpy(), rtol=0, atol=1e-4)
    mm = AnchorGenerator(strides=[8, 16], ratios=[0.5, 1.0, 2.0], octave_base_scale=4, scales_per_octave=3)
    grids = mm.grid_priors([(7, 9), (4, 5)], device="cpu")
    for i, (h, w) in enumerate([(7, 9), (4, 5)]):
        ours = ops.grid_anchors(mm.base_anchors[i].numpy(), mm.strides[i][0], h, w, 0.0)
        np.testing.assert_allclose(ours, grids[i].numpy(), rtol=0, atol=1e-4)


def test_points_equal_mmdet_point_generator():
    from mmdet.models.task_modules.prior_generators import MlvlPointGenerator

    gen = MlvlPointGenerator([8, 16, 32], offset=0)
    for i, (h, w) in enumerate([(12, 10), (6, 5), (3, 3)]):
        theirs = gen.grid_priors([(12, 10), (6, 5), (3, 3)], device="cpu")[i].numpy()
        np.testing.assert_allclose(ops.grid_points(gen.strides[i][0], h, w, gen.offset), theirs, rtol=0, atol=0)


def test_box_coders_equal_the_frameworks():
    import math

    import torch
    from detectron2.modeling.box_regression import Box2BoxTransform
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder, DistancePointBBoxCoder

    rng = np.random.default_rng(3)
    boxes = _boxes(rng, 200)
    deltas = rng.normal(0, 1.5, (200, 8)).astype(np.float32)
    d2 = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    theirs = d2.apply_deltas(torch.from_numpy(deltas), torch.from_numpy(boxes)).numpy()
    ours = ops.decode_d2(deltas, boxes, (10.0, 10.0, 5.0, 5.0), math.log(1000.0 / 16))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-3)
    coder = DeltaXYWHBBoxCoder(target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2))
    theirs = coder.decode(torch.from_numpy(boxes), torch.from_numpy(deltas[:, :4]), max_shape=(250, 280)).numpy()
    ours = ops.decode_mmdet(deltas[:, :4], boxes, (0, 0, 0, 0), (0.1, 0.1, 0.2, 0.2), 16 / 1000, (250, 280))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-3)
    points = rng.uniform(0, 200, (200, 2)).astype(np.float32)
    distances = rng.uniform(0, 60, (200, 4)).astype(np.float32)
    theirs = DistancePointBBoxCoder().decode(
        torch.from_numpy(points), torch.from_numpy(distances), max_shape=(150, 180)
    )
    np.testing.assert_allclose(ops.distance2bbox(points, distances, (150, 180)), theirs.numpy(), rtol=0, atol=1e-4)


def test_roi_levels_equal_the_frameworks():
    import torch
    from detectron2.modeling.poolers import assign_boxes_to_levels
    from detectron2.structures import Boxes
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    rng = np.random.default_rng(4)
    boxes = _boxes(rng, 500, 900.0)
    theirs = assign_boxes_to_levels([Boxes(torch.from_numpy(boxes))], 2, 5, 224, 4).numpy()
    np.testing.assert_array_equal(ops.roi_levels_d2(boxes, 2, 5, 224, 4), theirs)
    extractor = SingleRoIExtractor(
        roi_layer={"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0},
        out_channels=8,
        featmap_strides=[4, 8, 16, 32],
    )
    rois = torch.cat([torch.zeros(len(boxes), 1), torch.from_numpy(boxes)], dim=1)
    np.testing.assert_array_equal(ops.roi_levels_mmdet(boxes, 4, 56), extractor.map_roi_levels(rois, 4).numpy())


@pytest.mark.parametrize(("h", "w"), [(100, 150), (333, 500), (61, 83), (240, 110)])
def test_resize_equals_detectron2_and_mmcv(h, w):
    import mmcv
    from detectron2.data import transforms as T

    rng = np.random.default_rng(h * w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    aug = T.ResizeShortestEdge(112, 200)
    transform = aug.get_transform(image)
    new_h, new_w = ops.shortest_edge_size(h, w, 112, 200)
    assert (new_h, new_w) == (transform.new_h, transform.new_w)
    np.testing.assert_array_equal(ops.resize(image, new_h, new_w, "bilinear", "PIL"), transform.apply_image(image))
    theirs, _ = mmcv.imrescale(image, (224, 128), return_scale=True, interpolation="bilinear", backend="cv2")
    new_h, new_w = ops.rescale_size(h, w, (224, 128))
    assert (new_h, new_w) == theirs.shape[:2]
    np.testing.assert_array_equal(ops.resize(image, new_h, new_w, "bilinear", "cv2"), theirs)
