"""SafePredictor on a real MMDetection checkpoint: parity with mmengine's test loop
(test dataloader + ``model.test_step``), and each seed mistake either impossible or named."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from safepredict import CheckpointMismatchError, SafePredictor, SafePredictWarning
from safepredict.demo.evaluate import coco_box_ap
from safepredict.detections import Detections


@pytest.fixture(scope="module")
def reference(mmdet_fixture):
    """MMDetection's own evaluation path: the config's test dataloader + model.test_step."""
    import torch
    from mmdet.apis import init_detector
    from mmengine.config import Config
    from mmengine.runner import Runner

    from safepredict.frameworks.checkpoint import safe_globals

    cfg = Config.fromfile(str(mmdet_fixture.config))
    with torch.serialization.safe_globals(safe_globals()):
        model = init_detector(cfg, str(mmdet_fixture.checkpoint), device="cpu")
    loader = Runner.build_dataloader(cfg.test_dataloader)
    out = {}
    with torch.no_grad():
        for batch in loader:
            for sample in model.test_step(batch):
                pred = sample.pred_instances
                out[Path(sample.img_path).name] = Detections(
                    pred.bboxes.numpy(), pred.scores.numpy(), pred.labels.numpy()
                )
    return out


@pytest.fixture(scope="module")
def predictor(mmdet_fixture):
    return SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, monitor=False)


def _assert_same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3, rtol=0)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)


def test_checkpoint_alone_recovers_contract_and_class_names(mmdet_fixture, predictor):
    c = predictor.contract
    assert c.framework == "mmdet"
    assert c.class_names == mmdet_fixture.class_names == predictor.class_names
    assert c.num_classes == 3 and c.depth == 18
    assert predictor.discrepancies == ()


def test_parity_with_mmengine_test_loop_on_files(mmdet_fixture, predictor, reference):
    ours = {p.name: predictor.predict(p) for p in mmdet_fixture.dataset.val_images}
    assert ours.keys() == reference.keys()
    assert sum(len(d) for d in reference.values()) > 0
    for name in reference:
        _assert_same(ours[name], reference[name])
    ap_ours = coco_box_ap(mmdet_fixture.dataset.val_json, ours)
    ap_ref = coco_box_ap(mmdet_fixture.dataset.val_json, reference)
    print(f"mmdet parity: AP50 {ap_ours['AP50']:.2f} (SafePredictor) vs {ap_ref['AP50']:.2f} (mmengine test loop)")
    assert ap_ours == pytest.approx(ap_ref, abs=1e-9)


@pytest.mark.parametrize("color", ["BGR", "RGB"])
def test_parity_on_arrays_of_either_colour_order(mmdet_fixture, predictor, reference, color):
    for path in mmdet_fixture.dataset.val_images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        image = bgr if color == "BGR" else np.ascontiguousarray(bgr[:, :, ::-1])
        _assert_same(predictor.predict(image, color=color), reference[path.name])


def test_drop_in_call_returns_det_data_sample(mmdet_fixture, predictor, reference):
    from mmdet.structures import DetDataSample

    path = mmdet_fixture.dataset.val_images[0]
    sample = predictor(str(path))
    assert isinstance(sample, DetDataSample)
    pred = sample.pred_instances
    _assert_same(Detections(pred.bboxes.numpy(), pred.scores.numpy(), pred.labels.numpy()), reference[path.name])
    # from_mmdet mirrors init_detector(config, checkpoint)
    p = SafePredictor.from_mmdet(str(mmdet_fixture.config), mmdet_fixture.checkpoint, device="cpu", monitor=False)
    assert p.discrepancies == ()


def _write_inference_cfg(fixture, tmp_path, edit) -> Path:
    from mmengine.config import Config

    cfg = Config.fromfile(str(fixture.config))
    edit(cfg)
    path = tmp_path / "inference_cfg.py"
    cfg.dump(str(path))
    return path


def _imagenet(cfg):
    cfg.model.data_preprocessor.mean = [123.675, 116.28, 103.53]
    cfg.model.data_preprocessor.std = [58.395, 57.12, 57.375]


def _bgr(cfg):
    cfg.model.data_preprocessor.bgr_to_rgb = False


def _resize_800(cfg):
    cfg.test_dataloader.dataset.pipeline[1].scale = (800, 800)


def _depth_50(cfg):
    cfg.model.backbone.depth = 50


def _classes_80(cfg):
    cfg.model.roi_head.bbox_head.num_classes = 80


SEEDS = [
    ("ImageNet mean/std (seed 000)", _imagenet, "pixel_mean"),
    ("colour order (seed 001)", _bgr, "input_format"),
    ("fixed 800x800 resize (seed 001)", _resize_800, "resize.scale"),
    ("ResNet-50 config (seed 000)", _depth_50, "depth"),
    ("80 classes (seed 000)", _classes_80, "num_classes"),
]


@pytest.mark.parametrize(("seed", "edit", "key"), SEEDS, ids=[s[0] for s in SEEDS])
def test_seed_mistakes_in_inference_config_are_named_and_cannot_happen(
    mmdet_fixture, reference, tmp_path, caplog, seed, edit, key
):
    config = _write_inference_cfg(mmdet_fixture, tmp_path, edit)
    caplog.set_level(logging.WARNING, logger="safepredict")
    with pytest.warns(SafePredictWarning):
        p = SafePredictor.from_mmdet(str(config), mmdet_fixture.checkpoint, monitor=False)
    assert key in {d.key for d in p.discrepancies}
    ignored = [r.getMessage() for r in caplog.records if getattr(r, "safepredict_code", None) == "contract.ignored"]
    assert any(m.startswith(f"{key}:") for m in ignored), ignored
    for path in mmdet_fixture.dataset.val_images[:8]:
        _assert_same(p.predict(path), reference[path.name])


def test_nms_and_threshold_from_user_config_are_honoured(mmdet_fixture, predictor, tmp_path, caplog):
    """Seeds 002/003's too-high threshold: one above every score these images reach."""
    images = mmdet_fixture.dataset.val_images[:12]
    top = max(float(predictor.predict_candidates(p)[1].scores.max(initial=0.0)) for p in images)
    threshold = top + (1.0 - top) / 2

    def edit(cfg):
        cfg.model.test_cfg.rcnn.score_thr = threshold
        cfg.model.test_cfg.rcnn.nms.iou_threshold = 0.3

    config = _write_inference_cfg(mmdet_fixture, tmp_path, edit)
    caplog.set_level(logging.WARNING, logger="safepredict")
    with pytest.warns(SafePredictWarning):
        p = SafePredictor.from_mmdet(str(config), mmdet_fixture.checkpoint)
    assert p.score_threshold == pytest.approx(threshold)
    codes = {getattr(r, "safepredict_code", None) for r in caplog.records}
    honoured = {
        r.safepredict_key for r in caplog.records if getattr(r, "safepredict_code", None) == "contract.postprocessing"
    }
    assert {"score_threshold", "nms_iou"} <= honoured, codes
    assert all(p.predict(path).is_empty() for path in images)
    advice = [r.getMessage() for r in caplog.records if str(getattr(r, "safepredict_code", "")).startswith("monitor.")]
    assert any("model.test_cfg.rcnn.score_thr" in m and "below the score threshold" in m for m in advice), advice


@pytest.mark.parametrize(
    ("edit", "words"), [(_classes_80, "checkpoint has 3 classes, config has 80"), (_depth_50, "ResNet-18")]
)
def test_checkpoint_into_wrong_architecture_is_refused(mmdet_fixture, tmp_path, edit, words):
    config = _write_inference_cfg(mmdet_fixture, tmp_path, edit)
    with pytest.raises(CheckpointMismatchError) as info:
        SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, training_config=str(config), monitor=False)
    assert words in str(info.value)


def test_overrides_land_in_the_shape_mmdet_keeps_them(mmdet_fixture):
    """resize.min_size edits mmcv's (long, short) scale; input_format is the bgr_to_rgb flag."""
    p = SafePredictor.from_checkpoint(
        mmdet_fixture.checkpoint, overrides={"resize.min_size": 100, "input_format": "BGR"}, monitor=False
    )
    assert tuple(p.cfg.test_dataloader.dataset.pipeline[1].scale) == (176, 100)
    assert p.cfg.model.data_preprocessor.bgr_to_rgb is False
    assert p.predict(mmdet_fixture.dataset.val_images[0]).image_size is not None


@pytest.mark.parametrize("cap", [1, 200])
def test_capped_candidate_pairs_keep_the_finals_and_a_prefix_of_the_candidates(mmdet_fixture, cap, monkeypatch):
    """The two-stage head sends at most ``cap`` pairs into NMS below its threshold (the floor rises per image).

    Against the same predictor with no cap: the detections above the threshold are identical, and
    the candidates are the uncapped ones' best, a prefix by score. With a cap of 1 the floor rises
    to the threshold wherever a detection passes it: the candidates are exactly the detections, so
    every image that had candidates below the threshold loses them (the cap engaged).
    """
    from safepredict.frameworks.mmdet import adapter

    images = mmdet_fixture.dataset.val_images[:8]
    monkeypatch.setattr(adapter, "CANDIDATE_PAIRS", 10**9)
    uncapped = SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, monitor=False)
    monkeypatch.setattr(adapter, "CANDIDATE_PAIRS", cap)
    capped = SafePredictor.from_checkpoint(mmdet_fixture.checkpoint, monitor=False)
    below = 0
    for path in images:
        mine, theirs = capped.predict_candidates(path)[1], uncapped.predict_candidates(path)[1]
        final_mine, final_theirs = capped.predict(path), uncapped.predict(path)
        np.testing.assert_array_equal(final_mine.boxes, final_theirs.boxes)
        np.testing.assert_array_equal(final_mine.scores, final_theirs.scores)
        np.testing.assert_array_equal(final_mine.labels, final_theirs.labels)
        assert len(mine) <= len(theirs)
        np.testing.assert_array_equal(mine.boxes, theirs.boxes[: len(mine)])
        np.testing.assert_array_equal(mine.scores, theirs.scores[: len(mine)])
        np.testing.assert_array_equal(mine.labels, theirs.labels[: len(mine)])
        if cap == 1 and len(final_theirs):
            assert len(mine) == len(final_theirs)
            below += len(theirs) > len(final_theirs)
    assert sum(len(capped.predict(q)) for q in images) > 0  # the fixture detects: the finals were compared
    if cap == 1:
        assert below > 0, "no image had candidates below the threshold: the floor kept nothing to cap"
