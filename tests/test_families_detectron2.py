"""Every Detectron2 family safepredict runs, against Detectron2's own evaluation path.

Each model is a zoo config with seeded, calibrated random weights (tests/_zoo_models.py), saved
as training saves it (``model_final.pth`` + ``config.yaml``). The reference is Detectron2's own
evaluation of that artifact: ``DatasetMapper(cfg, False)`` + ``build_model`` for yacs configs,
``instantiate(cfg.dataloader.test.mapper)`` + ``instantiate(cfg.model)`` for a LazyConfig, each
loaded with ``DetectionCheckpointer``. Every image keeps many detections above the saved
threshold, and the model has candidates below it, so the candidate floor is exercised.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import pytest
from _zoo_models import (
    KEEP,
    Parity,
    ZooModel,
    assert_parity,
    d2_reference_lazy,
    d2_reference_yacs,
    detectron2_model,
)

from safepredict import CheckpointMismatchError, SafePredictor
from safepredict.detections import Detections
from safepredict.frameworks.base import CANDIDATE_SCORE_FLOOR

pytest.importorskip("detectron2")
pytestmark = pytest.mark.slow

FAMILIES = ("mask_rcnn", "cascade_mask_rcnn", "keypoint_rcnn", "retinanet", "lazy_mask_rcnn")
HEADS = {
    "mask_rcnn": {"mask"},
    "cascade_mask_rcnn": {"mask"},
    "keypoint_rcnn": {"keypoint"},
    "retinanet": set(),
    "lazy_mask_rcnn": {"mask"},
}


@attrs.frozen(eq=False)
class Case:
    zoo: ZooModel
    reference: dict[str, Any]  # image name -> Instances from Detectron2's evaluation
    predictor: SafePredictor
    ours: dict[str, Detections]


def _reference(zoo: ZooModel) -> dict[str, Any]:
    build = d2_reference_lazy if zoo.lazy else d2_reference_yacs
    _, run = build(zoo.config, zoo.checkpoint)
    return {p.name: run(p) for p in zoo.images}


@pytest.fixture(scope="module", params=FAMILIES)
def case(request: pytest.FixtureRequest) -> Case:
    zoo = detectron2_model(request.param)
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint, monitor=False, class_names=zoo.class_names)
    return Case(zoo, _reference(zoo), predictor, {p.name: predictor.predict(p) for p in zoo.images})


def _compare(ours: Detections, ref: Any) -> Parity:
    return assert_parity(
        ours.boxes,
        ours.scores,
        ours.labels,
        ref.pred_boxes.tensor,
        ref.scores,
        ref.pred_classes,
        masks=ours.masks,
        ref_masks=ref.pred_masks if ref.has("pred_masks") else None,
        keypoints=ours.keypoints,
        ref_keypoints=ref.pred_keypoints if ref.has("pred_keypoints") else None,
    )


def test_detections_match_detectron2_evaluation(case: Case) -> None:
    parity = None
    for name, ref in case.reference.items():
        assert len(ref) >= KEEP, f"{name}: the reference keeps only {len(ref)} detections"
        measured = _compare(case.ours[name], ref)
        parity = measured if parity is None else parity.merge(measured)
    assert parity is not None
    print(f"\n[parity] detectron2 {case.zoo.family}: {parity.describe()}")


def test_masks_and_keypoints_exactly_where_the_model_has_the_head(case: Case) -> None:
    heads = HEADS[case.zoo.family]
    assert case.predictor.contract.heads == frozenset({"box", *heads})
    for path in case.zoo.images:
        name, dets = path.name, case.ours[path.name]
        assert (dets.masks is not None) == ("mask" in heads)
        assert (dets.keypoints is not None) == ("keypoint" in heads)
        height, width = cv2.imread(str(path)).shape[:2]
        assert dets.image_size == (height, width)
        if dets.masks is not None:
            # Pasted into the image as given, not the resized one the model saw.
            assert dets.masks.shape == (len(dets), height, width)
            assert dets.masks.any(axis=(1, 2)).mean() > 0.5, f"{name}: most masks are empty"
        if dets.keypoints is not None:
            assert dets.keypoints.shape == (len(dets), 17, 3)


def test_candidates_below_the_threshold_are_kept(case: Case) -> None:
    threshold = case.zoo.score_threshold
    assert case.predictor.score_threshold == pytest.approx(threshold)
    assert threshold > CANDIDATE_SCORE_FLOOR
    image = case.zoo.images[0]
    _, candidates = case.predictor.predict_candidates(image)
    below = candidates.scores[candidates.scores <= threshold]
    assert below.size > 0 and below.min() > CANDIDATE_SCORE_FLOOR
    # The final detections are exactly the candidates above the threshold.
    final = case.ours[image.name]
    np.testing.assert_array_equal(candidates[candidates.scores > threshold].boxes, final.boxes)


def test_mask_and_keypoint_heads_run_on_the_final_detections_only(case: Case) -> None:
    """As at the framework's own threshold: not on every candidate down to the floor."""
    heads = [getattr(case.predictor.model.roi_heads, f"{h}_head") for h in sorted(HEADS[case.zoo.family])]
    if not heads:  # RetinaNet: no such head, and so no masks or keypoints in its detections
        final = case.ours[case.zoo.images[0].name]
        assert final.masks is None and final.keypoints is None
        return
    seen: list[int] = []
    handles = [h.register_forward_pre_hook(lambda module, args: seen.append(len(args[0]))) for h in heads]
    try:
        image = case.zoo.images[0]
        _, candidates = case.predictor.predict_candidates(image)
    finally:
        for handle in handles:
            handle.remove()
    final = case.ours[image.name]
    assert seen == [len(final)] * len(heads)
    assert len(candidates) > len(final)


def test_drop_in_call_returns_the_native_instances(case: Case) -> None:
    """``p(bgr_array)`` as ``DefaultPredictor`` returns it: every field Detectron2 fills, unchanged."""
    for path in case.zoo.images:
        ref = case.reference[path.name]
        out = case.predictor(cv2.imread(str(path)))
        assert set(out) == {"instances"}
        inst = out["instances"]
        assert inst.image_size == ref.image_size
        assert set(inst.get_fields()) == set(ref.get_fields())
        for field, value in ref.get_fields().items():
            mine = inst.get(field)
            mine = getattr(mine, "tensor", mine)
            value = getattr(value, "tensor", value)
            if value.dtype.is_floating_point:
                np.testing.assert_allclose(mine.numpy(), value.numpy(), atol=1e-3, rtol=0, err_msg=field)
            else:
                np.testing.assert_array_equal(mine.numpy(), value.numpy(), err_msg=field)


def test_coco_results_carry_masks_and_keypoints(case: Case) -> None:
    from pycocotools import mask as mask_utils

    dets = case.ours[case.zoo.images[0].name]
    results = dets.to_coco(1)
    assert len(results) == len(dets)
    for i, result in enumerate(results):
        if dets.masks is not None:
            rle = result["segmentation"]
            decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
            np.testing.assert_array_equal(decoded.astype(bool), dets.masks[i])
        else:
            assert "segmentation" not in result
        if dets.keypoints is not None:
            points = np.asarray(result["keypoints"], np.float32).reshape(-1, 3)
            np.testing.assert_allclose(points[:, :2], dets.keypoints[i, :, :2] - 0.5, atol=1e-4)
        else:
            assert "keypoints" not in result


# ----------------------------------------------------------------------------- one family each


def test_monitor_runs_on_a_mask_model(caplog: pytest.LogCaptureFixture) -> None:
    zoo = detectron2_model("mask_rcnn")
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint, class_names=zoo.class_names)
    assert predictor.monitor is not None
    with caplog.at_level(logging.WARNING, logger="safepredict"):
        final = [predictor.predict(p) for p in zoo.images]
    snapshot = predictor.monitor.snapshot()
    assert snapshot["images_total"] == len(zoo.images)
    assert snapshot["detections_total"] == sum(len(d) for d in final)
    assert snapshot["candidates_total"] > snapshot["detections_total"]
    assert snapshot["images_empty_total"] == 0
    assert all(d.masks is not None for d in final)


def _link_with_config(zoo: ZooModel, directory: Path, config_text: str) -> Path:
    """The checkpoint (hard-linked, not copied) with another training config beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / zoo.checkpoint.name
    os.link(zoo.checkpoint, checkpoint)
    (directory / "config.yaml").write_text(config_text)
    return checkpoint


def test_lazy_config_is_read_without_trust_and_diffed(tmp_path: Path) -> None:
    """A LazyConfig ``config.yaml`` (LazyConfig.save) runs without trust=True; an inference config is
    diffed against it: its score threshold is used, its resize ignored with a warning."""
    from detectron2.config import LazyConfig

    zoo = detectron2_model("lazy_mask_rcnn")
    inference = LazyConfig.load(str(zoo.config))
    inference.model.roi_heads.box_predictor.test_score_thresh = 0.6
    inference.dataloader.test.mapper.augmentations[0].short_edge_length = 160
    LazyConfig.save(inference, str(tmp_path / "inference.yaml"))
    with pytest.warns(Warning) as warned:
        predictor = SafePredictor.from_checkpoint(
            zoo.checkpoint, config=str(tmp_path / "inference.yaml"), monitor=False, class_names=zoo.class_names
        )
    fields = {d.key for d in predictor.discrepancies}
    assert {"score_threshold", "resize.min_size"} <= fields
    assert predictor.score_threshold == pytest.approx(0.6)
    assert predictor.threshold_key == "model.roi_heads.box_predictor.test_score_thresh"
    assert any("resize.min_size" in str(w.message) for w in warned)
    ref = _reference(zoo)
    dets = predictor.predict(zoo.images[0])
    # Training's resize, the inference config's threshold.
    keep = ref[zoo.images[0].name].scores > 0.6
    _compare(dets, ref[zoo.images[0].name][keep])


def test_lazy_checkpoint_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    zoo = detectron2_model("lazy_mask_rcnn")
    text = zoo.config.read_text()
    assert "num_classes: 80" in text
    checkpoint = _link_with_config(zoo, tmp_path / "three", text.replace("num_classes: 80", "num_classes: 3"))
    with pytest.raises(CheckpointMismatchError, match=r"checkpoint has 80 classes, config has 3"):
        SafePredictor.from_checkpoint(checkpoint, monitor=False, class_names=("a", "b", "c"))


@pytest.mark.parametrize(
    ("family", "key"),
    [("retinanet", "MODEL.RETINANET.NUM_CLASSES"), ("cascade_mask_rcnn", "MODEL.ROI_HEADS.NUM_CLASSES")],
)
def test_checkpoint_of_other_classes_is_refused_naming_the_key(family: str, key: str, tmp_path: Path) -> None:
    from detectron2.config import get_cfg

    from safepredict.frameworks.base import set_config_value

    zoo = detectron2_model(family)
    cfg = get_cfg()
    cfg.merge_from_file(str(zoo.config))
    set_config_value(cfg, key, 3)
    checkpoint = _link_with_config(zoo, tmp_path / "three", cfg.dump())
    with pytest.raises(CheckpointMismatchError, match=rf"checkpoint has 80 classes, config has 3: set {key}=80"):
        SafePredictor.from_checkpoint(checkpoint, monitor=False, class_names=("a", "b", "c"))


def test_retinanet_floor_holds_when_the_topk_cap_binds(tmp_path: Path) -> None:
    """With ``TOPK_CANDIDATES_TEST`` small enough that more candidates than it score above the
    threshold at a level, lowering the threshold still changes nothing above it."""
    zoo = detectron2_model("retinanet")
    text = zoo.config.read_text()
    assert "TOPK_CANDIDATES_TEST: 1000" in text
    checkpoint = _link_with_config(
        zoo, tmp_path / "topk", text.replace("TOPK_CANDIDATES_TEST: 1000", "TOPK_CANDIDATES_TEST: 8")
    )
    _, run = d2_reference_yacs(checkpoint.parent / "config.yaml", checkpoint)
    full = _reference(zoo)
    predictor = SafePredictor.from_checkpoint(checkpoint, monitor=False, class_names=zoo.class_names)
    assert predictor._adapter.keeps_candidates
    capped = False
    for path in zoo.images:
        ref = run(path)
        capped |= len(ref) < len(full[path.name])
        _compare(predictor.predict(path), ref)
    assert capped, "the cap never bound: the test shows nothing"
