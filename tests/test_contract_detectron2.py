"""Detectron2's training contract, read with Detectron2's own config loaders.

Configs are built from ``detectron2.config.get_cfg()`` with non-default training choices and
written the way training writes them (``cfg.dump()`` into ``OUTPUT_DIR/config.yaml``); each seed
mistake is a modified copy of that file. Checkpoints are written by Detectron2's own
``DetectionCheckpointer`` from a model it built.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safepredict.contract import ResizePolicy, TrainingContract, check_training_config, diff
from safepredict.errors import ConfigError, InputError, TrainingArtifactNotFound
from safepredict.frameworks.artifact import discover
from safepredict.frameworks.checkpoint import load_checkpoint
from safepredict.frameworks.detectron2.contract import read_contract

MEAN = [62.5, 58.25, 57.75]  # the data set's own, RGB order
STD = [38.5, 36.0, 37.25]


def training_cfg() -> Any:
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN = list(MEAN)
    cfg.MODEL.PIXEL_STD = list(STD)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.3
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 256
    cfg.TEST.DETECTIONS_PER_IMAGE = 50
    cfg.INPUT.MIN_SIZE_TRAIN = (112, 128, 144)
    cfg.INPUT.MAX_SIZE_TRAIN = 240
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.MAX_SIZE_TEST = 240
    cfg.DATASETS.TRAIN = ("safepredict_test_unregistered_train",)
    cfg.DATASETS.TEST = ("safepredict_test_unregistered_val",)
    cfg.SOLVER.MAX_ITER = 500
    return cfg


def write(cfg: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.dump())  # what default_setup writes into OUTPUT_DIR/config.yaml
    return path


def modified(path: Path, tmp_path: Path, change: Callable[[Any], None]) -> Path:
    """A copy of the training config at ``path`` with ``change`` applied, as a user would edit it."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    change(cfg)
    return write(cfg, tmp_path / "inference" / "config.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OUTPUT_DIR with config.yaml and model_final.pth written by Detectron2 itself."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    out = tmp_path_factory.mktemp("d2_output")
    cfg = training_cfg()
    write(cfg, out / "config.yaml")
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(out)).save("model_final", iteration=499)
    return out


def test_contract_equals_the_training_settings(run_dir: Path) -> None:
    contract = read_contract(run_dir / "config.yaml")
    expected = TrainingContract(
        framework="detectron2",
        source=str(run_dir / "config.yaml"),
        input_format="RGB",
        pixel_mean=MEAN,
        pixel_std=STD,
        resize=ResizePolicy(
            kind="shortest_edge",
            min_size=(128,),
            max_size=240,
            keep_ratio=True,
            interpolation="bilinear",
            backend="PIL",
            sample_style="choice",
        ),
        pad_divisor=32,
        pad_value=0.0,
        score_threshold=0.3,
        nms_iou=0.5,
        max_detections=50,
        num_classes=3,
        class_names=None,  # the config names data sets, not classes; these are not registered
        meta_architecture="GeneralizedRCNN",
        backbone="build_resnet_fpn_backbone",
        depth=18,
        heads=frozenset({"box"}),
    )
    assert contract == expected
    assert contract.source == str(run_dir / "config.yaml")
    assert contract.keys["score_threshold"] == "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
    assert contract.keys["resize.min_size"] == "INPUT.MIN_SIZE_TEST"
    assert contract.train_resize is not None and contract.train_resize.min_size == (112, 128, 144)
    assert check_training_config(contract) == ()
    assert "shortest edge to 128 px" in contract.describe()


def _set(key: str, value: Any) -> Callable[[Any], None]:
    def change(cfg: Any) -> None:
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value

    return change


IMAGENET_BGR_MEAN = (103.53, 116.28, 123.675)
IMAGENET_BGR_STD = (57.375, 57.12, 58.395)
SEED_MISTAKES = [
    # (what the seed did, contract field, framework key, change, training value, inference value, severity)
    (
        "ImageNet mean",
        "pixel_mean",
        "MODEL.PIXEL_MEAN",
        [103.53, 116.28, 123.675],
        tuple(MEAN),
        (103.53, 116.28, 123.675),
        "error",
    ),
    (
        "ImageNet std",
        "pixel_std",
        "MODEL.PIXEL_STD",
        [57.375, 57.12, 58.395],
        tuple(STD),
        (57.375, 57.12, 58.395),
        "error",
    ),
    ("BGR colour order", "input_format", "INPUT.FORMAT", "BGR", "RGB", "BGR", "error"),
    ("test size 800", "resize.min_size", "INPUT.MIN_SIZE_TEST", 800, (128,), (800,), "error"),
    ("NMS 0.7", "nms_iou", "MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.7, 0.5, 0.7, "warning"),
    ("score threshold 0.99", "score_threshold", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.99, 0.3, 0.99, "warning"),
    ("80 COCO classes", "num_classes", "MODEL.ROI_HEADS.NUM_CLASSES", 80, 3, 80, "error"),
    ("ResNet-50 backbone", "depth", "MODEL.RESNETS.DEPTH", 50, 18, 50, "error"),
]


@pytest.mark.parametrize(
    ("field", "key", "value", "training", "inference", "severity"),
    [m[1:] for m in SEED_MISTAKES],
    ids=[m[0] for m in SEED_MISTAKES],
)
def test_each_seed_mistake_is_reported_with_key_values_and_fix(
    run_dir: Path, tmp_path: Path, field: str, key: str, value: Any, training: Any, inference: Any, severity: str
) -> None:
    inference_path = modified(run_dir / "config.yaml", tmp_path, _set(key, value))
    found = diff(read_contract(run_dir / "config.yaml"), read_contract(inference_path))
    assert [d.key for d in found] == [field]
    (d,) = found
    assert d.framework_key == key
    assert d.training == pytest.approx(training) if isinstance(training, tuple | float) else d.training == training
    assert d.inference == pytest.approx(inference) if isinstance(inference, tuple | float) else d.inference == inference
    assert d.severity == severity
    assert d.training_source.startswith(str(run_dir / "config.yaml"))
    assert d.inference_source.startswith(str(inference_path))
    assert key in d.fix and "training value" in d.fix
    # The fix spells the training value as the config file does.
    written = {"pixel_mean": MEAN, "pixel_std": STD, "resize.min_size": 128}.get(field, training)
    assert f"set {key} = {written!r} (training value)" in d.fix


def test_read_contract_tells_the_framework_from_the_file(run_dir: Path) -> None:
    from safepredict.frameworks.artifact import read_contract as read_any

    assert read_any(run_dir / "config.yaml") == read_contract(run_dir / "config.yaml")


def test_base_configs_are_honoured(tmp_path: Path) -> None:
    base = tmp_path / "Base.yaml"
    base.write_text(
        "MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 5\n    SCORE_THRESH_TEST: 0.4\nINPUT:\n  MIN_SIZE_TEST: 256\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: Base.yaml\nINPUT:\n  MIN_SIZE_TEST: 320\n")
    contract = read_contract(child)
    assert (contract.num_classes, contract.score_threshold, contract.resize.min_size) == (5, 0.4, (320,))


def test_project_keys_unknown_to_get_cfg_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "project.yaml"
    path.write_text("MODEL:\n  MY_HEAD:\n    LAYERS: 3\n  ROI_HEADS:\n    NUM_CLASSES: 7\n")
    assert read_contract(path).num_classes == 7


def test_broken_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("MODEL: [unclosed\n")
    with pytest.raises(ConfigError, match="could not be read"):
        read_contract(path)


def test_retinanet_reads_its_own_keys() -> None:
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    # Detectron2's own Base-RetinaNet.yaml computes its anchor sizes with !!python/object/apply:eval
    # of a list comprehension of numbers: evaluated as config data, the same contract as trusted.
    contract = read_contract(path)
    assert contract == read_contract(path, trust=True)
    assert contract.meta_architecture == "RetinaNet"
    assert contract.keys["score_threshold"] == "MODEL.RETINANET.SCORE_THRESH_TEST"
    assert (contract.score_threshold, contract.nms_iou, contract.num_classes) == (0.05, 0.5, 80)
    assert contract.input_format == "BGR" and contract.pixel_mean == (103.53, 116.28, 123.675)


def test_mask_and_keypoint_heads_and_c4_padding() -> None:
    from detectron2 import model_zoo

    mask_c4 = read_contract(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml"))
    assert mask_c4.heads == {"box", "mask"}
    assert mask_c4.pad_divisor == 0  # a plain ResNet backbone does not pad
    keypoints = read_contract(model_zoo.get_config_file("COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml"))
    assert keypoints.heads == {"box", "keypoint"}


def test_rgb_format_with_bgr_imagenet_mean_is_a_trap(run_dir: Path, tmp_path: Path) -> None:
    path = modified(run_dir / "config.yaml", tmp_path, _set("MODEL.PIXEL_MEAN", [103.53, 116.28, 123.675]))
    traps = check_training_config(read_contract(path))
    assert [(d.key, d.severity) for d in traps] == [("pixel_mean", "error")]
    assert "INPUT.FORMAT" in traps[0].fix


def test_test_size_far_from_training_sizes_is_a_trap(run_dir: Path, tmp_path: Path) -> None:
    path = modified(run_dir / "config.yaml", tmp_path, _set("INPUT.MIN_SIZE_TEST", 800))
    (trap,) = check_training_config(read_contract(path))
    assert trap.key == "resize.min_size" and trap.framework_key == "INPUT.MIN_SIZE_TEST"
    assert trap.training == (800,) and trap.inference == (112, 128, 144)


def test_lazyconfig_is_read_through_lazyconfig_load() -> None:
    from detectron2 import model_zoo

    contract = read_contract(model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.py"), trust=True)
    assert contract.meta_architecture == "RetinaNet"
    assert contract.input_format == "BGR"
    assert contract.resize.min_size == (800,) and contract.resize.max_size == 1333
    assert contract.pad_divisor == 32
    assert (contract.score_threshold, contract.nms_iou, contract.max_detections) == (0.05, 0.5, 100)
    assert contract.depth == 50 and contract.num_classes == 80
    assert contract.keys["score_threshold"] == "model.test_score_thresh"
    assert contract.class_names is not None and contract.class_names[0] == "person"  # coco_2017_val's metadata
    assert "default of RetinaNet" in contract.notes["nms_iou"]


def test_lazyconfig_difference_is_found(tmp_path: Path) -> None:
    from detectron2 import model_zoo
    from detectron2.config import LazyConfig

    source = model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
    cfg = LazyConfig.load(source)
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.9
    cfg.dataloader.test.mapper.augmentations[0].short_edge_length = 640
    cfg.dataloader.test.mapper.augmentations[0].interp = 3  # PIL's BICUBIC
    saved = tmp_path / "lazy.yaml"
    LazyConfig.save(cfg, str(saved))
    # The zoo's .py is Python (trusted: the framework's own); the saved .yaml is read safely.
    found = {d.key: d for d in diff(read_contract(source, trust=True), read_contract(saved))}
    assert set(found) == {"score_threshold", "resize.min_size", "resize.interpolation"}
    assert (found["resize.interpolation"].training, found["resize.interpolation"].inference) == ("bilinear", "bicubic")
    assert found["score_threshold"].framework_key == "model.roi_heads.box_predictor.test_score_thresh"
    assert (found["resize.min_size"].training, found["resize.min_size"].inference) == ((800,), (640,))


# --------------------------------------------------------------------------- discovery


def test_discover_reads_config_yaml_beside_the_checkpoint(run_dir: Path) -> None:
    artifact = discover(run_dir / "model_final.pth")
    assert artifact.framework == "detectron2"
    assert artifact.training_source == str(run_dir / "config.yaml")
    assert artifact.training_contract == read_contract(run_dir / "config.yaml")
    assert artifact.inference_contract is None and artifact.discrepancies == ()
    assert artifact.training_cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
    progress = artifact.training_contract.progress
    assert progress is not None and (progress.iteration, progress.max_iter, progress.finished) == (499, 500, True)


def test_discover_diffs_the_users_inference_config(run_dir: Path, tmp_path: Path) -> None:
    user = modified(run_dir / "config.yaml", tmp_path, _set("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.99))
    artifact = discover(run_dir / "model_final.pth", config=user)
    assert artifact.inference_source == str(user)
    assert [(d.key, d.training, d.inference) for d in artifact.discrepancies] == [("score_threshold", 0.3, 0.99)]


def test_checkpoint_without_config_gives_a_typed_error_saying_what_to_pass(run_dir: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "elsewhere" / "model_final.pth"
    lonely.parent.mkdir()
    shutil.copy(run_dir / "model_final.pth", lonely)
    with pytest.raises(TrainingArtifactNotFound) as info:
        discover(lonely)
    error = info.value
    assert isinstance(error, ConfigError) and isinstance(error, FileNotFoundError)
    assert "config.yaml" in str(error) and "training_config=" in str(error)
    assert error.expected == str(lonely.parent / "config.yaml")
    user = tmp_path / "my.yaml"
    shutil.copy(run_dir / "config.yaml", user)
    with pytest.raises(TrainingArtifactNotFound, match=f"training_config='{user}'"):
        discover(lonely, config=user)
    # Saying which file is the training config is enough.
    artifact = discover(lonely, training_config=user)
    assert artifact.training_contract == read_contract(run_dir / "config.yaml")


def test_overrides_show_up_as_differences(run_dir: Path) -> None:
    artifact = discover(run_dir / "model_final.pth", overrides={"score_threshold": 0.6})
    (d,) = artifact.discrepancies
    assert (d.key, d.training, d.inference) == ("score_threshold", 0.3, 0.6)


def test_load_checkpoint_reads_detectron2_checkpoints(run_dir: Path) -> None:
    data = load_checkpoint(run_dir / "model_final.pth")
    assert data["iteration"] == 499
    assert any(k.startswith("backbone.bottom_up.") for k in data["model"])


def test_truncated_checkpoint_is_a_typed_error(run_dir: Path, tmp_path: Path) -> None:
    whole = (run_dir / "model_final.pth").read_bytes()
    truncated = tmp_path / "model_final.pth"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="corrupt, truncated") as info:
        load_checkpoint(truncated)
    assert info.value.source == str(truncated)


def test_unreadable_checkpoints_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    with pytest.raises(InputError, match="could not be read"):
        load_checkpoint(corrupt)
    with pytest.raises(InputError):
        discover(corrupt)


def test_unregistered_backbone_is_a_config_error_naming_it(run_dir: Path, tmp_path: Path) -> None:
    path = modified(run_dir / "config.yaml", tmp_path, _set("MODEL.BACKBONE.NAME", "build_my_project_backbone"))
    with pytest.raises(ConfigError, match="build_my_project_backbone") as info:
        read_contract(path)
    assert "registers build_my_project_backbone" in str(info.value.fix)


def test_without_detectron2_the_error_names_what_to_install(run_dir: Path) -> None:
    code = f"""
import sys
sys.modules["detectron2"] = None  # a process where Detectron2 is not installed
from safepredict.frameworks.artifact import discover
from safepredict.errors import FrameworkNotInstalled
try:
    discover({str(run_dir / "model_final.pth")!r})
except FrameworkNotInstalled as error:
    assert "detectron2" in str(error) and "install Detectron2" in error.fix, error
    print("named")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["named"]
