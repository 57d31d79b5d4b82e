"""The framework-neutral training contract: values, describe(), diff, overrides, internal traps."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from safepredict.contract import (
    Discrepancy,
    ResizePolicy,
    TrainingContract,
    TrainingProgress,
    check_training_config,
    diff,
)
from safepredict.errors import ConfigError

KEYS = {
    "input_format": "INPUT.FORMAT",
    "pixel_mean": "MODEL.PIXEL_MEAN",
    "pixel_std": "MODEL.PIXEL_STD",
    "resize.kind": "INPUT.MIN_SIZE_TEST",
    "resize.min_size": "INPUT.MIN_SIZE_TEST",
    "resize.max_size": "INPUT.MAX_SIZE_TEST",
    "train_resize.min_size": "INPUT.MIN_SIZE_TRAIN",
    "score_threshold": "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "nms_iou": "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "max_detections": "TEST.DETECTIONS_PER_IMAGE",
    "num_classes": "MODEL.ROI_HEADS.NUM_CLASSES",
    "depth": "MODEL.RESNETS.DEPTH",
}


def make(**changes: object) -> TrainingContract:
    base = TrainingContract(
        framework="fw",
        source="/run/config.yaml",
        input_format="RGB",
        pixel_mean=(60.0, 70.0, 80.0),
        pixel_std=(30.0, 31.0, 32.0),
        resize=ResizePolicy(kind="shortest_edge", min_size=(128,), max_size=240, sample_style="choice"),
        pad_divisor=32,
        pad_value=0.0,
        score_threshold=0.3,
        nms_iou=0.5,
        max_detections=50,
        num_classes=3,
        class_names=("red", "blue", "yellow"),
        meta_architecture="GeneralizedRCNN",
        backbone="build_resnet_fpn_backbone",
        depth=18,
        heads=frozenset({"box"}),
        keys=KEYS,
        raw={"resize.min_size": 128},
        train_resize=ResizePolicy(kind="shortest_edge", min_size=(112, 128, 144), max_size=240, sample_style="choice"),
        test_transforms=("ResizeShortestEdge",),
    )
    return attrs.evolve(base, **changes)


def test_contract_is_a_frozen_hashable_value() -> None:
    a, b = make(), make(source="/elsewhere/config.yaml")
    assert a == b  # where a setting was read from is not part of the value
    assert hash(a) == hash(b)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.score_threshold = 0.5  # type: ignore[misc]
    assert a != make(score_threshold=0.5)
    assert a.keys["score_threshold"] == "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
    with pytest.raises(TypeError):
        a.keys["score_threshold"] = "x"  # type: ignore[index]


def test_values_are_normalised_and_validated() -> None:
    c = make(pixel_mean=[1, 2, 3], heads=["box", "mask"])
    assert c.pixel_mean == (1.0, 2.0, 3.0)
    assert c.heads == frozenset({"box", "mask"})
    with pytest.raises(ValueError, match="RGB"):
        make(input_format="rgb")
    with pytest.raises(ValueError, match="unknown heads"):
        make(heads={"box", "segm"})
    with pytest.raises(ValueError):
        ResizePolicy(kind="letterbox")


def test_describe_says_every_setting_in_words() -> None:
    text = make(progress=TrainingProgress(iteration=499, max_iter=500)).describe()
    for piece in (
        "/run/config.yaml",
        "colour order: RGB",
        "mean (60, 70, 80)",
        "std (30, 31, 32)",
        "shortest edge to 128 px, long edge at most 240",
        "bilinear interpolation via PIL",
        "multiple of 32",
        "score >= 0.3",
        "NMS IoU 0.5",
        "at most 50",
        "GeneralizedRCNN",
        "build_resnet_fpn_backbone-18",
        "3 (red, blue, yellow)",
        "iteration 499 of 500 (finished)",
    ):
        assert piece in text, piece
    assert "fit inside scale 1333x800" in ResizePolicy(kind="scale", scale=(1333, 800)).describe()
    assert "exactly 640x480" in ResizePolicy(kind="fixed", scale=(640, 480), keep_ratio=False).describe()
    assert make(class_names=None).describe().count("names not recorded") == 1


def test_diff_of_equal_contracts_is_empty() -> None:
    assert diff(make(), make(source="/other.yaml")) == ()


@pytest.mark.parametrize(
    ("field", "change", "training", "inference", "severity", "category"),
    [
        (
            "pixel_mean",
            {"pixel_mean": (80.0, 70.0, 60.0)},
            (60.0, 70.0, 80.0),
            (80.0, 70.0, 60.0),
            "error",
            "preprocessing",
        ),
        ("input_format", {"input_format": "BGR"}, "RGB", "BGR", "error", "preprocessing"),
        ("score_threshold", {"score_threshold": 0.99}, 0.3, 0.99, "warning", "postprocessing"),
        ("num_classes", {"num_classes": 80}, 3, 80, "error", "architecture"),
        ("depth", {"depth": 50}, 18, 50, "error", "architecture"),
    ],
)
def test_diff_names_key_values_sources_and_fix(
    field: str, change: dict, training: object, inference: object, severity: str, category: str
) -> None:
    (d,) = diff(make(), make(source="/infer/config.yaml", **change))
    assert isinstance(d, Discrepancy)
    assert (d.key, d.training, d.inference, d.severity, d.category) == (field, training, inference, severity, category)
    assert d.framework_key == KEYS[field]
    assert d.training_source == f"/run/config.yaml: {KEYS[field]}"
    assert d.inference_source == f"/infer/config.yaml: {KEYS[field]}"
    assert KEYS[field] in d.fix
    text = d.describe()
    assert "/run/config.yaml" in text and "/infer/config.yaml" in text and "fix:" in text


def test_reversed_mean_is_called_a_channel_swap() -> None:
    (d,) = diff(make(), make(pixel_mean=(80.0, 70.0, 60.0)))
    assert "reversed channel order" in d.message


def test_resize_difference_uses_the_framework_value_in_the_fix() -> None:
    changed = make(resize=ResizePolicy(kind="shortest_edge", min_size=(800,), max_size=240, sample_style="choice"))
    (d,) = diff(make(), changed)
    assert d.key == "resize.min_size"
    assert (d.training, d.inference) == ((128,), (800,))
    assert "set INPUT.MIN_SIZE_TEST = 128 (training value)" in d.fix
    assert "overrides={'resize.min_size': (800,)}" in d.fix


def test_missing_class_names_on_one_side_is_not_a_difference() -> None:
    assert diff(make(), make(class_names=None)) == ()
    (d,) = diff(make(), make(class_names=("a", "b", "c")))
    assert (d.key, d.severity) == ("class_names", "warning")


def test_float_noise_is_not_a_difference() -> None:
    assert diff(make(), make(pixel_std=(30.0 + 1e-9, 31.0, 32.0))) == ()


def test_overrides_build_the_inference_contract_and_show_in_the_diff() -> None:
    training = make()
    inference = training.with_overrides({"resize.min_size": 160, "score_threshold": 0.5})
    assert inference.resize.min_size == (160,)
    assert inference.score_threshold == 0.5
    assert inference.source == training.source  # untouched fields keep where they were read from
    assert inference.where("pixel_mean") == "/run/config.yaml: MODEL.PIXEL_MEAN"
    found = {d.key: d for d in diff(training, inference)}
    assert set(found) == {"resize.min_size", "score_threshold"}
    assert found["score_threshold"].inference_source == "overrides: overrides['score_threshold']"
    assert "drop overrides['score_threshold']" in found["score_threshold"].fix
    whole = training.with_overrides({"resize": {"max_size": 300}})
    assert whole.resize.max_size == 300 and whole.resize.min_size == (128,)


def test_unknown_override_is_a_config_error_listing_the_fields() -> None:
    with pytest.raises(ConfigError, match="unknown contract field") as info:
        make().with_overrides({"score_thresh": 0.5})
    assert "score_threshold" in str(info.value.fix)


def test_trap_test_size_far_outside_training_range() -> None:
    far = make(resize=ResizePolicy(kind="shortest_edge", min_size=(800,), max_size=1333, sample_style="choice"))
    (d,) = check_training_config(far)
    assert (d.key, d.category, d.severity) == ("resize.min_size", "internal", "warning")
    assert d.training == (800,) and d.inference == (112, 128, 144)
    assert "112-144" in d.message and "INPUT.MIN_SIZE_TEST" in d.fix
    assert check_training_config(make()) == ()


def test_trap_training_only_transform_in_test_pipeline() -> None:
    c = make(test_transforms=("LoadImageFromFile", "Resize", "RandomFlip", "PackDetInputs"))
    (d,) = check_training_config(c)
    assert (d.key, d.training, d.severity) == ("test_transforms", "RandomFlip", "error")
    # Test-time augmentation flips on purpose.
    assert check_training_config(make(test_transforms=("LoadImageFromFile", "TestTimeAug", "RandomFlip"))) == ()


def test_trap_imagenet_mean_in_the_other_channel_order() -> None:
    bgr_mean_rgb_model = make(pixel_mean=(103.53, 116.28, 123.675), pixel_std=(1.0, 1.0, 1.0))
    (d,) = check_training_config(bgr_mean_rgb_model)
    assert (d.key, d.severity, d.category) == ("pixel_mean", "error", "internal")
    assert "BGR order" in d.message and "123.675" in d.fix
    consistent = make(input_format="BGR", pixel_mean=(103.53, 116.28, 123.675), pixel_std=(1.0, 1.0, 1.0))
    assert check_training_config(consistent) == ()


def test_trap_zero_one_scale_mean() -> None:
    c = make(pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225))
    assert [d.key for d in check_training_config(c)] == ["pixel_mean"]


def test_unfinished_checkpoint_is_reported_as_info() -> None:
    (d,) = check_training_config(make(progress=TrainingProgress(epoch=3, max_epochs=12)))
    assert (d.key, d.severity) == ("progress", "info")
    assert "epoch 3 of 12" in d.message
    assert TrainingProgress(iteration=499, max_iter=500).finished is True
    assert TrainingProgress(iteration=100, max_iter=500).finished is False
    assert TrainingProgress().finished is None


def test_import_stays_free_of_torch_and_frameworks() -> None:
    code = (
        "import sys, safepredict, safepredict.contract\n"
        "safepredict.TrainingContract, safepredict.Discrepancy\n"
        "heavy = [m for m in ('torch', 'detectron2', 'mmdet', 'mmengine') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
