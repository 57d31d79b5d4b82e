"""ONNX export of MMDetection models: parity with mmdet's own evaluation path (``inference_detector``),
on the trained Faster R-CNN fixture and on zoo-config RetinaNet, RTMDet and Faster R-CNN (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest
from _export_parity import (
    SHAPES,
    assert_candidates_parity,
    assert_export_parity,
    predict_without_frameworks,
    sized_images,
)
from _zoo_models import (
    MMDET_SQUARE,
    MMDET_TEST_SCALE,
    _cached,
    _load,
    _mmdet_build,
    mmdet_model,
    mmdet_reference,
    zoo_images,
)

from safepredict import SafePredictor, UnsupportedModelError
from safepredict.detections import Detections

FASTER_RCNN = "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"


def _zoo_faster_rcnn():
    images = zoo_images()
    extra = {"scale": MMDET_TEST_SCALE, "square": MMDET_SQUARE, "images": [p.name for p in images]}
    out = _cached(
        "mmdet", "faster_rcnn", FASTER_RCNN, extra, lambda d: _mmdet_build("faster_rcnn", FASTER_RCNN, images, d)
    )
    return _load(out, images)


def _fixture_reference(fixture):
    """mmdet's ``init_detector`` + ``inference_detector`` on the trained checkpoint (its training
    state loads with safepredict's allow-list of globals, as tests/test_predictor_mmdet.py does)."""
    import torch

    from safepredict.frameworks.checkpoint import safe_globals

    with torch.serialization.safe_globals(safe_globals()):
        return mmdet_reference(str(fixture.config), fixture.checkpoint)


def _as_detections(sample) -> Detections:
    pred = sample.pred_instances
    return Detections(pred.bboxes.numpy(), pred.scores.numpy(), pred.labels.numpy())


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mmdet_fixture):
    predictor = SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, monitor=False)
    path = predictor.export(tmp_path_factory.mktemp("mmdet-export") / "model.onnx")
    return predictor, path


@pytest.fixture(scope="module")
def images(tmp_path_factory, mmdet_fixture):
    folder = tmp_path_factory.mktemp("mmdet-images")
    return [*mmdet_fixture.dataset.val_images[:4], *sized_images(mmdet_fixture.dataset.val_images, folder, SHAPES)]


def test_fixture_parity_with_mmdet_evaluation(mmdet_fixture, exported, images):
    predictor, path = exported
    _, run = _fixture_reference(mmdet_fixture)
    onnx = SafePredictor.from_onnx(path, monitor=False)
    total = 0
    for image in images:
        matched = assert_export_parity(
            _as_detections(run(image)), onnx.predict(image), predictor.score_threshold, where=image.name
        )
        total += matched.n
        assert_candidates_parity(predictor.predict_candidates(image)[1], onnx.predict_candidates(image)[1], image.name)
    assert total > 0, "the fixture detected nothing above the threshold: parity would be vacuous"


def test_fixture_runs_without_torch_or_mmdet(mmdet_fixture, exported, images):
    predictor, path = exported
    result = predict_without_frameworks(path, images)
    assert result["loaded"] == []
    _, run = _fixture_reference(mmdet_fixture)
    for image in images:
        ref = _as_detections(run(image))
        assert_export_parity(ref, result["detections"][str(image)], predictor.score_threshold, where=image.name)


@pytest.mark.parametrize("family", ["retinanet", "rtmdet", "faster_rcnn"])
def test_zoo_parity_with_mmdet_evaluation(family, tmp_path):
    zoo = _zoo_faster_rcnn() if family == "faster_rcnn" else mmdet_model(family)
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint, monitor=False)
    path = predictor.export(tmp_path / f"{family}.onnx")
    onnx = SafePredictor.from_onnx(path, monitor=False)
    _, run = mmdet_reference(str(zoo.config), zoo.checkpoint)
    images = [*zoo.images, *sized_images(zoo.images, tmp_path / "sized", SHAPES[:3])]
    counts, below = [], []
    for image in images:
        ref = _as_detections(run(image))
        # The random zoo weights give some sub-pixel boxes, where an IoU of 0.999 asks for corners
        # within 1e-6 px: those are matched by corner distance (1e-3 px) instead.
        matched = assert_export_parity(
            ref, onnx.predict(image), zoo.score_threshold, where=f"{family} {image.name}", box_atol=1e-3
        )
        counts.append(matched.n)
        # A zoo threshold sits between two scores near the top (it keeps 25 detections an image):
        # the candidates down to the floor (the framework's own code with its threshold lowered)
        # are compared too, so that most of the model's outputs are.
        candidates = assert_candidates_parity(
            predictor.predict_candidates(image)[1], onnx.predict_candidates(image)[1], where=image.name
        )
        below.append(candidates.n)
    print(f"{family}: above the threshold + 0.01 per image: {counts}; candidates compared: {below}")
    assert sum(below) > 0, "nothing to compare above the candidate floor"


def test_decoded_pixels_match_mmcv_loader(mmdet_fixture, exported):
    import mmcv

    _, path = exported
    onnx = SafePredictor.from_onnx(path, monitor=False)
    for image in mmdet_fixture.dataset.val_images[:2]:
        ours = onnx.load(image)
        np.testing.assert_array_equal(ours.to("BGR"), mmcv.imread(str(image), channel_order="bgr"))


def test_an_unsupported_family_is_named():
    zoo = mmdet_model("fcos")
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint, monitor=False)
    with pytest.raises(UnsupportedModelError, match="does not support mmdet FCOS"):
        predictor.export("never-written.onnx")
