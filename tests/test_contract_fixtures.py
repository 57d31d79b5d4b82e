"""The training contract of the real trained fixtures (Detectron2 DefaultTrainer, mmengine Runner).

Each contract must equal the training recipe; each seed mistake, written into a modified copy of
the fixture's own training config, must be found by ``discover`` on the real checkpoint with the
right key, both values and the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from safepredict.contract import ResizePolicy, TrainingContract
from safepredict.demo.fixtures import Fixture
from safepredict.errors import TrainingArtifactNotFound
from safepredict.frameworks.artifact import discover
from safepredict.frameworks.checkpoint import detect_framework, load_checkpoint

pytestmark = pytest.mark.slow

IMAGENET_BGR_MEAN = (103.53, 116.28, 123.675)
IMAGENET_BGR_STD = (57.375, 57.12, 58.395)
IMAGENET_RGB_MEAN = (123.675, 116.28, 103.53)
IMAGENET_RGB_STD = (58.395, 57.12, 57.375)


def _set(cfg: Any, path: str, value: Any) -> None:
    node = cfg
    *parts, last = path.split(".")
    for part in parts:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value


# --------------------------------------------------------------------------- Detectron2


def d2_expected(fixture: Fixture, source: str) -> TrainingContract:
    from safepredict.demo.train_detectron2 import Detectron2Recipe

    recipe = Detectron2Recipe()
    mean, std = fixture.dataset.pixel_stats()
    return TrainingContract(
        framework="detectron2",
        source=source,
        input_format="RGB",
        pixel_mean=mean,
        pixel_std=std,
        resize=ResizePolicy(
            kind="shortest_edge",
            min_size=(recipe.min_size_test,),
            max_size=recipe.max_size_test,
            keep_ratio=True,
            interpolation="bilinear",
            backend="PIL",
            sample_style="choice",
        ),
        pad_divisor=32,
        pad_value=0.0,
        score_threshold=recipe.score_thresh_test,
        nms_iou=recipe.nms_thresh_test,
        max_detections=recipe.detections_per_image,
        num_classes=len(fixture.class_names),
        class_names=fixture.class_names,
        meta_architecture="GeneralizedRCNN",
        backbone="build_resnet_fpn_backbone",
        depth=recipe.depth,
        heads=frozenset({"box"}),
    )


@pytest.fixture(scope="module")
def d2_registered(d2_fixture: Fixture) -> Fixture:
    """The fixture with its data sets registered, as a user's process registers them."""
    from safepredict.demo.train_detectron2 import register

    register(d2_fixture.dataset)
    return d2_fixture


def test_d2_contract_equals_the_training_settings(d2_registered: Fixture) -> None:
    artifact = discover(d2_registered.checkpoint)
    assert artifact.framework == "detectron2"
    assert artifact.training_source == str(d2_registered.output_dir / "config.yaml")
    assert artifact.training_contract == d2_expected(d2_registered, artifact.training_source)
    assert artifact.discrepancies == ()
    progress = artifact.training_contract.progress
    assert progress is not None and progress.finished is True


def d2_copy(fixture: Fixture, tmp_path: Path, key: str, value: Any) -> Path:
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(fixture.config))
    _set(cfg, key, value)
    path = tmp_path / "inference.yaml"
    path.write_text(cfg.dump())
    return path


D2_SEEDS = [
    ("ImageNet mean", "pixel_mean", "MODEL.PIXEL_MEAN", list(IMAGENET_BGR_MEAN)),
    ("ImageNet std", "pixel_std", "MODEL.PIXEL_STD", list(IMAGENET_BGR_STD)),
    ("BGR colour order", "input_format", "INPUT.FORMAT", "BGR"),
    ("test size 800", "resize.min_size", "INPUT.MIN_SIZE_TEST", 800),
    ("NMS 0.7", "nms_iou", "MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.7),
    ("score threshold 0.99", "score_threshold", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.99),
    ("80 COCO classes", "num_classes", "MODEL.ROI_HEADS.NUM_CLASSES", 80),
    ("ResNet-50 backbone", "depth", "MODEL.RESNETS.DEPTH", 50),
]


@pytest.mark.parametrize(("field", "key", "value"), [s[1:] for s in D2_SEEDS], ids=[s[0] for s in D2_SEEDS])
def test_d2_seed_mistake_in_an_inference_config_is_reported(
    d2_fixture: Fixture, tmp_path: Path, field: str, key: str, value: Any
) -> None:
    from detectron2.config import get_cfg

    training_cfg = get_cfg()
    training_cfg.merge_from_file(str(d2_fixture.config))
    node = training_cfg
    for part in key.split("."):
        node = node[part]
    training_value = node

    user = d2_copy(d2_fixture, tmp_path, key, value)
    artifact = discover(d2_fixture.checkpoint, config=user)
    found = [d for d in artifact.discrepancies if d.category != "internal"]
    assert [d.key for d in found] == [field]
    (d,) = found
    assert d.framework_key == key
    expected_training = artifact.training_contract.value(field)
    assert d.training == expected_training
    assert d.inference == artifact.inference_contract.value(field)  # type: ignore[union-attr]
    assert d.inference != d.training
    assert d.training_source.startswith(f"{d2_fixture.output_dir / 'config.yaml'}: {key}")
    assert d.inference_source.startswith(f"{user}: {key}")
    assert f"set {key} = {training_value!r} (training value)" in d.fix


def test_d2_checkpoint_without_config_beside_it_says_what_to_pass(d2_fixture: Fixture, tmp_path: Path) -> None:
    lonely = tmp_path / "model_final.pth"
    shutil.copy(d2_fixture.checkpoint, lonely)
    with pytest.raises(TrainingArtifactNotFound) as info:
        discover(lonely)
    text = str(info.value)
    assert str(lonely) in text and "config.yaml" in text and "training_config=" in text
    assert info.value.fix and str(tmp_path / "config.yaml") in info.value.fix
    artifact = discover(lonely, training_config=d2_fixture.config)
    assert artifact.training_contract == discover(d2_fixture.checkpoint).training_contract


# --------------------------------------------------------------------------- MMDetection


def mmdet_expected(fixture: Fixture, source: str) -> TrainingContract:
    from safepredict.demo.train_mmdet import MMDetRecipe

    recipe = MMDetRecipe()
    mean, std = fixture.dataset.pixel_stats()
    return TrainingContract(
        framework="mmdet",
        source=source,
        input_format="RGB",  # bgr_to_rgb=True
        pixel_mean=mean,
        pixel_std=std,
        resize=ResizePolicy(
            kind="scale",
            min_size=(min(recipe.test_scale),),
            max_size=max(recipe.test_scale),
            scale=recipe.test_scale,
            keep_ratio=True,
            interpolation="bilinear",
            backend="cv2",
        ),
        pad_divisor=32,
        pad_value=0.0,
        score_threshold=recipe.score_thr,
        nms_iou=recipe.nms_iou,
        max_detections=recipe.max_per_img,
        num_classes=len(fixture.class_names),
        class_names=fixture.class_names,
        meta_architecture="FasterRCNN",
        backbone="ResNet",
        depth=recipe.depth,
        heads=frozenset({"box"}),
    )


def test_mmdet_checkpoint_alone_recovers_the_contract(mmdet_fixture: Fixture, tmp_path: Path) -> None:
    # Only the checkpoint, away from its work_dir: the config comes from inside it.
    alone = tmp_path / mmdet_fixture.checkpoint.name
    shutil.copy(mmdet_fixture.checkpoint, alone)
    data = load_checkpoint(alone)
    assert detect_framework(data, alone) == "mmdet"
    artifact = discover(alone)
    assert artifact.framework == "mmdet"
    assert artifact.training_source == f"{alone}:meta.cfg"
    assert artifact.training_contract == mmdet_expected(mmdet_fixture, artifact.training_source)
    assert artifact.training_contract.notes["class_names"] == "checkpoint meta['dataset_meta']['classes']"
    assert artifact.dataset_meta is not None and tuple(artifact.dataset_meta["classes"]) == mmdet_fixture.class_names
    assert artifact.discrepancies == ()
    progress = artifact.training_contract.progress
    assert progress is not None and progress.finished is True


def test_mmdet_training_config_file_agrees_with_the_embedded_one(mmdet_fixture: Fixture) -> None:
    artifact = discover(mmdet_fixture.checkpoint, config=mmdet_fixture.config)
    assert artifact.inference_contract is not None
    assert artifact.discrepancies == ()
    assert artifact.inference_contract == artifact.training_contract


MMDET_SEEDS = [
    ("ImageNet mean", "pixel_mean", "model.data_preprocessor.mean", list(IMAGENET_RGB_MEAN)),
    ("ImageNet std", "pixel_std", "model.data_preprocessor.std", list(IMAGENET_RGB_STD)),
    ("BGR colour order", "input_format", "model.data_preprocessor.bgr_to_rgb", False),
    ("test scale 1333x800", "resize.scale", "test_dataloader.dataset.pipeline.1.scale", (1333, 800)),
    ("NMS 0.7", "nms_iou", "model.test_cfg.rcnn.nms.iou_threshold", 0.7),
    ("score threshold 0.99", "score_threshold", "model.test_cfg.rcnn.score_thr", 0.99),
    ("80 COCO classes", "num_classes", "model.roi_head.bbox_head.num_classes", 80),
    ("ResNet-50 backbone", "depth", "model.backbone.depth", 50),
]


@pytest.mark.parametrize(("field", "key", "value"), [s[1:] for s in MMDET_SEEDS], ids=[s[0] for s in MMDET_SEEDS])
def test_mmdet_seed_mistake_in_an_inference_config_is_reported(
    mmdet_fixture: Fixture, tmp_path: Path, field: str, key: str, value: Any
) -> None:
    from mmengine.config import Config

    cfg = Config.fromfile(str(mmdet_fixture.config))
    training_value = cfg
    for part in key.split("."):
        training_value = training_value[int(part)] if part.isdigit() else training_value[part]
    _set(cfg, key, value)
    user = tmp_path / "inference_config.py"
    cfg.dump(str(user))

    artifact = discover(mmdet_fixture.checkpoint, config=user)
    found = [d for d in artifact.discrepancies if d.category != "internal"]
    assert [d.key for d in found] == [field]
    (d,) = found
    framework_key = key.replace(".1.", "[1].")
    assert d.framework_key == framework_key
    assert d.training == artifact.training_contract.value(field)
    assert d.inference == artifact.inference_contract.value(field)  # type: ignore[union-attr]
    assert d.inference != d.training
    assert d.training_source.startswith(f"{mmdet_fixture.checkpoint}:meta.cfg: {framework_key}")
    assert d.inference_source.startswith(f"{user}: {framework_key}")
    assert f"set {framework_key} = {training_value!r} (training value)" in d.fix


def test_wrong_inference_values_are_the_seed_values(mmdet_fixture: Fixture, tmp_path: Path) -> None:
    """Spot-check that the diff carries the values a user wrote, not a re-reading of training."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(mmdet_fixture.config))
    cfg.model.test_cfg.rcnn.score_thr = 0.99
    cfg.model.data_preprocessor.mean = list(IMAGENET_RGB_MEAN)
    user = tmp_path / "two_mistakes.py"
    cfg.dump(str(user))
    found = {d.key: d for d in discover(mmdet_fixture.checkpoint, config=user).discrepancies}
    assert found["score_threshold"].inference == 0.99
    assert found["pixel_mean"].inference == IMAGENET_RGB_MEAN
    assert found["pixel_mean"].training == mmdet_fixture.dataset.pixel_stats()[0]


def test_fixture_configs_have_no_internal_traps(d2_fixture: Fixture, mmdet_fixture: Fixture) -> None:
    for fixture in (d2_fixture, mmdet_fixture):
        artifact = discover(fixture.checkpoint)
        assert [d for d in artifact.discrepancies if d.category == "internal"] == []
