"""Every MMDetection family safepredict runs, against mmdet's own ``inference_detector``.

Each model is a config of the installed mmdet (``mmdet/.mim/configs``) with seeded, calibrated
random weights (tests/_zoo_models.py), saved as mmengine saves it (``state_dict``, ``meta.cfg``,
``meta.dataset_meta``). The reference is ``init_detector(config, checkpoint)`` +
``inference_detector(model, file)``. Every image keeps many detections above the saved
threshold; where the adapter lowers the threshold (RetinaNet, RTMDet, YOLOX, the R-CNN heads)
the model has candidates below it, so the floor is exercised; FCOS and ATSS keep their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import pytest
from _zoo_models import KEEP, Parity, ZooModel, assert_parity, mmdet_model, mmdet_reference

from safepredict import SafePredictor
from safepredict.detections import Detections
from safepredict.frameworks.base import CANDIDATE_SCORE_FLOOR

pytest.importorskip("mmdet")
pytestmark = pytest.mark.slow

FAMILIES = ("mask_rcnn", "retinanet", "fcos", "atss", "rtmdet", "yolox")
FLOOR = {"mask_rcnn", "retinanet", "rtmdet", "yolox"}  # families whose threshold the adapter lowers


@attrs.frozen(eq=False)
class Case:
    zoo: ZooModel
    reference: dict[str, Any]  # image name -> pred_instances of inference_detector
    predictor: SafePredictor
    ours: dict[str, Detections]


def _reference(config: Any, checkpoint: Path, images: tuple[Path, ...]) -> dict[str, Any]:
    _, run = mmdet_reference(config, checkpoint)
    return {p.name: run(p).pred_instances for p in images}


@pytest.fixture(scope="module", params=FAMILIES)
def case(request: pytest.FixtureRequest) -> Case:
    zoo = mmdet_model(request.param)
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint, monitor=False)
    reference = _reference(str(zoo.config), zoo.checkpoint, zoo.images)
    return Case(zoo, reference, predictor, {p.name: predictor.predict(p) for p in zoo.images})


def _compare(ours: Detections, ref: Any) -> Parity:
    return assert_parity(
        ours.boxes,
        ours.scores,
        ours.labels,
        ref.bboxes,
        ref.scores,
        ref.labels,
        masks=ours.masks,
        ref_masks=ref.masks if "masks" in ref else None,
    )


def test_detections_match_inference_detector(case: Case) -> None:
    parity = None
    for name, ref in case.reference.items():
        assert len(ref) >= KEEP, f"{name}: the reference keeps only {len(ref)} detections"
        measured = _compare(case.ours[name], ref)
        parity = measured if parity is None else parity.merge(measured)
    assert parity is not None
    print(f"\n[parity] mmdet {case.zoo.family}: {parity.describe()}")


def test_class_names_and_masks_come_from_the_artifact(case: Case) -> None:
    assert case.predictor.class_names == case.zoo.class_names
    for path in case.zoo.images:
        dets = case.ours[path.name]
        assert (dets.masks is not None) == (case.zoo.family == "mask_rcnn")
        if dets.masks is not None:
            height, width = cv2.imread(str(path)).shape[:2]
            assert dets.masks.shape == (len(dets), height, width)
            assert dets.masks.any(axis=(1, 2)).mean() > 0.5


def test_candidate_floor_where_it_keeps_the_detections(case: Case) -> None:
    threshold = case.zoo.score_threshold
    assert case.predictor.score_threshold == pytest.approx(threshold)
    assert threshold > CANDIDATE_SCORE_FLOOR
    lowered = case.zoo.family in FLOOR
    assert case.predictor._adapter.keeps_candidates == lowered
    image = case.zoo.images[0]
    _, candidates = case.predictor.predict_candidates(image)
    final = case.ours[image.name]
    if lowered:
        below = candidates.scores[candidates.scores <= threshold]
        assert below.size > 0 and below.min() >= CANDIDATE_SCORE_FLOOR
        np.testing.assert_array_equal(candidates[candidates.scores > threshold].boxes, final.boxes)
    else:
        # FCOS/ATSS test score_thr on the class score and return class score x centerness: many
        # of their own detections score below the threshold, so nothing can be split off there.
        assert len(candidates) == len(final)
        assert (case.reference[image.name].scores <= threshold).any()


def test_drop_in_call_returns_the_native_data_sample(case: Case) -> None:
    """``p(bgr_array)`` as ``inference_detector`` returns it: pred_instances with every field."""
    for path in case.zoo.images:
        ref = case.reference[path.name]
        sample = case.predictor(cv2.imread(str(path)))
        assert type(sample).__name__ == "DetDataSample"
        pred = sample.pred_instances
        assert set(pred.keys()) == set(ref.keys())
        for field in ref.keys():
            mine, theirs = pred.get(field), ref.get(field)
            if theirs.dtype.is_floating_point:
                np.testing.assert_allclose(mine.numpy(), theirs.numpy(), atol=1e-3, rtol=0, err_msg=field)
            else:
                np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=field)


# ----------------------------------------------------------------------------- one family each


def test_monitor_runs_on_a_mask_model() -> None:
    zoo = mmdet_model("mask_rcnn")
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint)
    assert predictor.monitor is not None
    final = [predictor.predict(p) for p in zoo.images]
    snapshot = predictor.monitor.snapshot()
    assert snapshot["images_total"] == len(zoo.images)
    assert snapshot["detections_total"] == sum(len(d) for d in final)
    assert snapshot["candidates_total"] > snapshot["detections_total"]
    assert snapshot["images_empty_total"] == 0


def test_mask_head_runs_on_the_final_detections_only() -> None:
    """As at mmdet's own threshold: not on every candidate down to the floor."""
    zoo = mmdet_model("mask_rcnn")
    predictor = SafePredictor.from_checkpoint(zoo.checkpoint, monitor=False)
    seen: list[int] = []
    mask_head = predictor.model.roi_head.mask_head
    handle = mask_head.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    try:
        final = predictor.predict(zoo.images[0])
        _, candidates = predictor.predict_candidates(zoo.images[0])
    finally:
        handle.remove()
    assert seen == [len(final)] * 2
    assert len(candidates) > len(final) and final.masks is not None and candidates.masks is None


def _with_config(zoo: ZooModel, directory: Path, change: Any, classes: int | None = None) -> tuple[Path, Any]:
    """The checkpoint with ``change(cfg)`` made to its embedded config (and ``classes`` names)."""
    import torch
    from mmengine.config import Config

    cfg = Config.fromfile(str(zoo.config))
    change(cfg)
    data = torch.load(zoo.checkpoint, map_location="cpu", weights_only=False)
    data["meta"]["cfg"] = cfg.pretty_text
    if classes is not None:
        data["meta"]["dataset_meta"]["classes"] = [f"c{i}" for i in range(classes)]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / zoo.checkpoint.name
    torch.save(data, path)
    return path, cfg


def _with_test_cfg(zoo: ZooModel, directory: Path, **changes: Any) -> tuple[Path, Any]:
    """The checkpoint with ``changes`` made to ``model.test_cfg`` in its embedded config."""
    return _with_config(zoo, directory, lambda cfg: cfg.model.test_cfg.update(changes))


@pytest.mark.parametrize(
    ("family", "key"),
    [
        ("mask_rcnn", "model.roi_head.bbox_head.num_classes"),
        ("retinanet", "model.bbox_head.num_classes"),
        ("yolox", "model.bbox_head.num_classes"),
    ],
)
def test_checkpoint_of_other_classes_is_refused_naming_the_key(family: str, key: str, tmp_path: Path) -> None:
    from safepredict import CheckpointMismatchError
    from safepredict.frameworks.base import set_config_value

    zoo = mmdet_model(family)

    def three(cfg: Any) -> None:
        set_config_value(cfg, key, 3)
        if family == "mask_rcnn":
            cfg.model.roi_head.mask_head.num_classes = 3

    checkpoint, _ = _with_config(zoo, tmp_path, three, classes=3)
    with pytest.raises(CheckpointMismatchError, match=rf"checkpoint has 80 classes, config has 3: set {key}=80"):
        SafePredictor.from_checkpoint(checkpoint, monitor=False)


@pytest.mark.parametrize("family", ["retinanet", "rtmdet"])
def test_floor_holds_when_nms_pre_binds(family: str, tmp_path: Path) -> None:
    """With ``nms_pre`` small enough that more candidates than it score above the threshold at a
    level, the top-k of the lowered threshold still holds every candidate above it."""
    zoo = mmdet_model(family)
    checkpoint, cfg = _with_test_cfg(zoo, tmp_path, nms_pre=6)
    reference = _reference(cfg, checkpoint, zoo.images)
    full = _reference(str(zoo.config), zoo.checkpoint, zoo.images)
    predictor = SafePredictor.from_checkpoint(checkpoint, monitor=False)
    assert predictor._adapter.keeps_candidates
    capped = False
    for path in zoo.images:
        capped |= len(reference[path.name]) < len(full[path.name])
        _compare(predictor.predict(path), reference[path.name])
    assert capped, "nms_pre never bound: the test shows nothing"
