"""The ground everything stands on: the package imports light, the fixtures are real and good,
and the seeds' colour-order mistake is measurable on them with the frameworks' own predictors."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from safepredict.demo.evaluate import coco_box_ap
from safepredict.demo.fixtures import Fixture
from safepredict.detections import Detections


def test_import_needs_no_framework():
    code = (
        "import sys, safepredict, safepredict.errors, safepredict.cli;"
        "heavy = {'torch', 'detectron2', 'mmdet', 'mmengine', 'mmcv', 'cv2'} & set(sys.modules);"
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["d2_fixture", "mmdet_fixture"])
def test_fixture_is_trained_well(name, request):
    fixture: Fixture = request.getfixturevalue(name)
    print(f"{fixture.framework} fixture: AP50={fixture.ap50:.1f} AP={fixture.metrics['AP']:.1f}")
    assert fixture.checkpoint.is_file() and fixture.config.is_file()
    assert fixture.ap50 >= 80.0


def _d2_default_predictor(fixture: Fixture):
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    cfg = get_cfg()
    cfg.merge_from_file(str(fixture.config))
    cfg.MODEL.WEIGHTS = str(fixture.checkpoint)
    cfg.MODEL.DEVICE = "cpu"
    predictor = DefaultPredictor(cfg)

    def run(bgr: np.ndarray) -> Detections:
        inst = predictor(bgr)["instances"].to("cpu")
        return Detections(inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy())

    return run


def _mmdet_inference_detector(fixture: Fixture):
    import torch
    from mmdet.apis import inference_detector, init_detector

    from safepredict.frameworks.checkpoint import safe_globals

    # torch >= 2.6 loads weights_only by default; mmengine checkpoints need these globals.
    with torch.serialization.safe_globals(safe_globals()):
        model = init_detector(str(fixture.config), str(fixture.checkpoint), device="cpu")

    def run(bgr: np.ndarray) -> Detections:
        pred = inference_detector(model, bgr).pred_instances
        return Detections(pred.bboxes.numpy(), pred.scores.numpy(), pred.labels.numpy())

    return run


@pytest.mark.parametrize(
    ("name", "make"), [("d2_fixture", _d2_default_predictor), ("mmdet_fixture", _mmdet_inference_detector)]
)
def test_swapped_channel_order_loses_most_ap(name, make, request):
    """Seeds 001/003: feeding the other channel order to the framework's own predictor."""
    fixture: Fixture = request.getfixturevalue(name)
    run = make(fixture)
    right, wrong = {}, {}
    for path in fixture.dataset.val_images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # what both predictors expect
        right[path.name] = run(bgr)
        wrong[path.name] = run(np.ascontiguousarray(bgr[:, :, ::-1]))
    ap_right = coco_box_ap(fixture.dataset.val_json, right)["AP50"]
    ap_wrong = coco_box_ap(fixture.dataset.val_json, wrong)["AP50"]
    print(f"{fixture.framework}: AP50 right order {ap_right:.1f}, swapped {ap_wrong:.1f}")
    assert ap_right >= 80.0
    assert ap_wrong < 0.5 * ap_right
