"""MMDetection's training contract, read through mmengine's own config loaders.

The training config is MMDetection's own Faster R-CNN config with non-default training choices
(the data set's mean/std with ``bgr_to_rgb=True``, a small test scale, its own ``test_cfg``, 3
named classes, ResNet-18), written with ``Config.dump`` as the Runner writes it into work_dir;
each seed mistake is a modified copy of that file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safepredict.contract import ResizePolicy, TrainingContract, check_training_config, diff
from safepredict.errors import TrainingArtifactNotFound
from safepredict.frameworks.artifact import discover
from safepredict.frameworks.checkpoint import detect_framework, load_checkpoint
from safepredict.frameworks.mmdet.contract import embedded_config, read_contract

MEAN = [62.5, 58.25, 57.75]  # RGB order, since bgr_to_rgb=True
STD = [38.5, 36.0, 37.25]
CLASSES = ("red", "blue", "yellow")


def mmdet_config(name: str) -> Path:
    import mmdet

    path = Path(mmdet.__file__).parent / ".mim" / "configs" / name
    assert path.is_file(), path
    return path


def training_config() -> Any:
    from mmengine.config import Config

    cfg = Config.fromfile(str(mmdet_config("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py")))
    cfg.model.data_preprocessor.mean = list(MEAN)
    cfg.model.data_preprocessor.std = list(STD)
    cfg.model.data_preprocessor.bgr_to_rgb = True
    cfg.model.backbone.depth = 18
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.roi_head.bbox_head.num_classes = len(CLASSES)
    cfg.model.test_cfg.rcnn.score_thr = 0.25
    cfg.model.test_cfg.rcnn.nms.iou_threshold = 0.6
    cfg.model.test_cfg.rcnn.max_per_img = 50
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.metainfo = {"classes": CLASSES}
    cfg.train_dataloader.dataset.pipeline[2].scale = (192, 144)
    for loader in ("val_dataloader", "test_dataloader"):
        cfg[loader].dataset.pipeline[1].scale = (176, 132)
    cfg.train_cfg.max_epochs = 8
    return cfg


def dump(cfg: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return path


@pytest.fixture(scope="module")
def train_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dump(training_config(), tmp_path_factory.mktemp("work_dir") / "train_config.py")


def modified(path: Path, tmp_path: Path, change: Callable[[Any], None]) -> Path:
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    change(cfg)
    return dump(cfg, tmp_path / "inference_config.py")


def expected_contract(source: str) -> TrainingContract:
    return TrainingContract(
        framework="mmdet",
        source=source,
        input_format="RGB",
        pixel_mean=MEAN,
        pixel_std=STD,
        resize=ResizePolicy(
            kind="scale",
            min_size=(132,),
            max_size=176,
            scale=(176, 132),
            keep_ratio=True,
            interpolation="bilinear",
            backend="cv2",
        ),
        pad_divisor=32,
        pad_value=0.0,
        score_threshold=0.25,
        nms_iou=0.6,
        max_detections=50,
        num_classes=3,
        class_names=CLASSES,
        meta_architecture="FasterRCNN",
        backbone="ResNet",
        depth=18,
        heads=frozenset({"box"}),
    )


def test_contract_equals_the_training_settings(train_config: Path) -> None:
    contract = read_contract(train_config)
    assert contract == expected_contract(str(train_config))
    assert contract.keys["score_threshold"] == "model.test_cfg.rcnn.score_thr"
    assert contract.keys["resize.scale"] == "test_dataloader.dataset.pipeline[1].scale"
    assert contract.keys["input_format"] == "model.data_preprocessor.bgr_to_rgb"
    assert contract.train_resize is not None and contract.train_resize.scale == (192, 144)
    assert check_training_config(contract) == ()
    assert "fit inside scale 176x132" in contract.describe()


def _setter(path: str, value: Any) -> Callable[[Any], None]:
    def change(cfg: Any) -> None:
        node = cfg
        *parts, last = path.split(".")
        for part in parts:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return change


TEST_SCALE = "test_dataloader.dataset.pipeline.1.scale"
IMAGENET_RGB_MEAN = (123.675, 116.28, 103.53)
IMAGENET_RGB_STD = (58.395, 57.12, 57.375)
SEED_MISTAKES = [
    # (what the seed did, contract field, framework key, new value, training value, inference value, severity)
    ("ImageNet mean", "pixel_mean", "model.data_preprocessor.mean", IMAGENET_RGB_MEAN, tuple(MEAN), None, "error"),
    ("ImageNet std", "pixel_std", "model.data_preprocessor.std", IMAGENET_RGB_STD, tuple(STD), None, "error"),
    ("BGR colour order", "input_format", "model.data_preprocessor.bgr_to_rgb", False, "RGB", "BGR", "error"),
    (
        "test scale 1333x800",
        "resize.scale",
        "test_dataloader.dataset.pipeline.1.scale",
        (1333, 800),
        (176, 132),
        None,
        "error",
    ),
    ("NMS 0.7", "nms_iou", "model.test_cfg.rcnn.nms.iou_threshold", 0.7, 0.6, None, "warning"),
    ("score threshold 0.99", "score_threshold", "model.test_cfg.rcnn.score_thr", 0.99, 0.25, None, "warning"),
    ("80 COCO classes", "num_classes", "model.roi_head.bbox_head.num_classes", 80, 3, None, "error"),
    ("ResNet-50 backbone", "depth", "model.backbone.depth", 50, 18, None, "error"),
]


@pytest.mark.parametrize(
    ("field", "key", "value", "training", "inference", "severity"),
    [m[1:] for m in SEED_MISTAKES],
    ids=[m[0] for m in SEED_MISTAKES],
)
def test_each_seed_mistake_is_reported_with_key_values_and_fix(
    train_config: Path, tmp_path: Path, field: str, key: str, value: Any, training: Any, inference: Any, severity: str
) -> None:
    inference = value if inference is None else inference
    inference_path = modified(train_config, tmp_path, _setter(key, value))
    found = diff(read_contract(train_config), read_contract(inference_path))
    assert [d.key for d in found] == [field]
    (d,) = found
    framework_key = key.replace(".1.", "[1].")
    assert d.framework_key == framework_key
    assert d.training == training
    assert d.inference == (tuple(inference) if isinstance(inference, list | tuple) else inference)
    assert d.severity == severity
    assert d.training_source.startswith(f"{train_config}: {framework_key}")
    assert d.inference_source.startswith(f"{inference_path}: {framework_key}")
    assert f"set {framework_key} = " in d.fix and "(training value)" in d.fix


def test_class_names_from_metainfo_differ(train_config: Path, tmp_path: Path) -> None:
    def rename(cfg: Any) -> None:
        cfg.test_dataloader.dataset.metainfo = {"classes": ("cat", "dog", "bird")}

    (d,) = diff(read_contract(train_config), read_contract(modified(train_config, tmp_path, rename)))
    assert (d.key, d.training, d.inference, d.severity) == ("class_names", CLASSES, ("cat", "dog", "bird"), "warning")


def test_bgr_mean_with_bgr_to_rgb_is_a_trap(train_config: Path, tmp_path: Path) -> None:
    path = modified(train_config, tmp_path, _setter("model.data_preprocessor.mean", [103.53, 116.28, 123.675]))
    traps = check_training_config(read_contract(path))
    assert [(d.key, d.severity) for d in traps] == [("pixel_mean", "error")]
    assert "model.data_preprocessor.bgr_to_rgb" in traps[0].fix


def test_random_flip_left_in_the_test_pipeline_is_a_trap(train_config: Path, tmp_path: Path) -> None:
    def add_flip(cfg: Any) -> None:
        cfg.test_dataloader.dataset.pipeline.insert(2, {"type": "RandomFlip", "prob": 0.5})

    (trap,) = check_training_config(read_contract(modified(train_config, tmp_path, add_flip)))
    assert (trap.key, trap.training, trap.severity) == ("test_transforms", "RandomFlip", "error")
    assert trap.framework_key == "test_dataloader.dataset.pipeline"


def test_retinanet_reads_the_single_stage_test_cfg() -> None:
    # Its _base_ retinanet_tta.py builds the TTA pipeline with a list comprehension, which the safe
    # reader reads as Python does: no trust needed.
    contract = read_contract(mmdet_config("retinanet/retinanet_r50_fpn_1x_coco.py"))
    assert contract.keys["score_threshold"] == "model.test_cfg.score_thr"
    assert (contract.score_threshold, contract.nms_iou, contract.max_detections) == (0.05, 0.5, 100)
    assert contract.keys["num_classes"] == "model.bbox_head.num_classes"


def test_mask_rcnn_has_a_mask_head_and_detr_no_nms() -> None:
    assert read_contract(mmdet_config("mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py")).heads == {"box", "mask"}
    detr = read_contract(mmdet_config("detr/detr_r50_8xb2-150e_coco.py"))
    assert detr.nms_iou is None and "no NMS" in detr.describe()


def _runner_checkpoint(path: Path, cfg: Any, *, in_meta: bool = True, in_hub: bool = False) -> Path:
    """A checkpoint in the layout mmengine's Runner.save_checkpoint writes, with a real MessageHub."""
    import torch
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint

    hub = MessageHub(name=f"safepredict-test-{path.name}")
    hub.update_scalar("train/loss", 0.5)  # a HistoryBuffer, as training leaves it
    if in_hub:
        hub.update_info("cfg", cfg.pretty_text)
    meta: dict[str, Any] = {"epoch": 8, "iter": 480, "dataset_meta": {"classes": CLASSES}}
    if in_meta:
        meta["cfg"] = cfg.pretty_text
    checkpoint = {
        "meta": meta,
        "state_dict": {"backbone.conv1.weight": torch.zeros(1), "roi_head.bbox_head.fc_cls.weight": torch.zeros(1)},
        "message_hub": hub.state_dict(),
    }
    save_checkpoint(checkpoint, str(path))
    return path


def test_checkpoint_alone_recovers_the_contract_from_meta_cfg(train_config: Path, tmp_path: Path) -> None:
    from mmengine.config import Config

    checkpoint = _runner_checkpoint(tmp_path / "epoch_8.pth", Config.fromfile(str(train_config)))
    data = load_checkpoint(checkpoint)  # HistoryBuffer and numpy in message_hub load with weights_only
    assert detect_framework(data) == "mmdet"
    artifact = discover(checkpoint)
    assert artifact.framework == "mmdet"
    assert artifact.training_source == f"{checkpoint}:meta.cfg"
    assert artifact.training_contract == expected_contract(artifact.training_source)
    assert artifact.training_contract.notes["class_names"] == "checkpoint meta['dataset_meta']['classes']"
    assert artifact.dataset_meta == {"classes": CLASSES}
    progress = artifact.training_contract.progress
    assert progress is not None and (progress.epoch, progress.max_epochs, progress.finished) == (8, 8, True)


def test_config_in_message_hub_is_found_too(train_config: Path, tmp_path: Path) -> None:
    from mmengine.config import Config

    checkpoint = _runner_checkpoint(
        tmp_path / "hub.pth", Config.fromfile(str(train_config)), in_meta=False, in_hub=True
    )
    embedded = embedded_config(load_checkpoint(checkpoint), checkpoint)
    assert embedded is not None and embedded[1] == f"{checkpoint}:message_hub.runtime_info.cfg"
    assert discover(checkpoint).training_contract == expected_contract("x")


def test_stripped_checkpoint_gives_a_typed_error_saying_what_to_pass(train_config: Path, tmp_path: Path) -> None:
    from mmengine.config import Config

    checkpoint = _runner_checkpoint(tmp_path / "stripped.pth", Config.fromfile(str(train_config)), in_meta=False)
    with pytest.raises(TrainingArtifactNotFound, match="training_config="):
        discover(checkpoint)
    assert discover(checkpoint, training_config=train_config).training_contract == expected_contract("x")


def test_discover_diffs_the_users_inference_config(train_config: Path, tmp_path: Path) -> None:
    from mmengine.config import Config

    checkpoint = _runner_checkpoint(tmp_path / "epoch_8.pth", Config.fromfile(str(train_config)))
    user = modified(train_config, tmp_path, _setter("model.data_preprocessor.bgr_to_rgb", False))
    artifact = discover(checkpoint, config=user)
    assert [(d.key, d.training, d.inference) for d in artifact.discrepancies] == [("input_format", "RGB", "BGR")]
    assert artifact.inference_source == str(user)


def test_without_mmengine_the_error_names_what_to_install(train_config: Path, tmp_path: Path) -> None:
    from mmengine.config import Config

    checkpoint = _runner_checkpoint(tmp_path / "epoch_8.pth", Config.fromfile(str(train_config)))
    code = f"""
import sys
sys.modules["mmengine"] = None  # a process where mmengine is not installed
from safepredict.errors import FrameworkNotInstalled
from safepredict.frameworks.checkpoint import load_checkpoint
from safepredict.frameworks.mmdet.contract import read_contract
for call in (lambda: load_checkpoint({str(checkpoint)!r}), lambda: read_contract({str(train_config)!r})):
    try:
        call()
    except FrameworkNotInstalled as error:
        assert "mmengine" in str(error) and "pip install mmengine" in error.fix, error
        print("named")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["named", "named"]


def test_class_names_of_a_dataset_class_without_metainfo_override() -> None:
    contract = read_contract(mmdet_config("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"))
    assert contract.class_names is not None and len(contract.class_names) == 80
    assert contract.class_names[:3] == ("person", "bicycle", "car")
    assert contract.notes["class_names"].startswith("CocoDataset.METAINFO['classes']")
