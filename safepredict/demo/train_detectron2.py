"""Train a small, real Detectron2 Faster R-CNN on the synthetic data set with ``DefaultTrainer``.

Used for the test fixtures and the demo. The training choices are deliberately not Detectron2's
defaults (RGB input, the data set's own pixel mean/std, a small test size, a score threshold of
0.3, 3 classes, ResNet-18), so every seed mistake is measurable against it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from safepredict.demo.data import SyntheticDataset
from safepredict.demo.seeding import seed_everything


@attrs.frozen
class Detectron2Recipe:
    """Every training choice of the fixture (part of its cache key)."""

    max_iter: int = 300
    ims_per_batch: int = 4
    base_lr: float = 0.01
    depth: int = 18
    min_size_train: tuple[int, ...] = (96, 112, 128)
    max_size_train: int = 200
    min_size_test: int = 112
    max_size_test: int = 200
    score_thresh_test: float = 0.3
    nms_thresh_test: float = 0.5
    detections_per_image: int = 50
    seed: int = 0


def build_config(dataset: SyntheticDataset, output_dir: Path, recipe: Detectron2Recipe, names: tuple[str, str]) -> Any:
    from detectron2.config import get_cfg

    mean, std = dataset.pixel_stats()
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN = list(mean)  # in INPUT.FORMAT order
    cfg.MODEL.PIXEL_STD = list(std)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = recipe.depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 128
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 1000
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 500
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 500
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 300
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(dataset.class_names)
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 128
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = recipe.score_thresh_test
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = recipe.nms_thresh_test
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 256
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.TEST.DETECTIONS_PER_IMAGE = recipe.detections_per_image
    cfg.INPUT.MIN_SIZE_TRAIN = recipe.min_size_train
    cfg.INPUT.MAX_SIZE_TRAIN = recipe.max_size_train
    cfg.INPUT.MIN_SIZE_TEST = recipe.min_size_test
    cfg.INPUT.MAX_SIZE_TEST = recipe.max_size_test
    cfg.DATASETS.TRAIN = (names[0],)
    cfg.DATASETS.TEST = (names[1],)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = recipe.ims_per_batch
    cfg.SOLVER.BASE_LR = recipe.base_lr
    cfg.SOLVER.MAX_ITER = recipe.max_iter
    cfg.SOLVER.STEPS = (int(recipe.max_iter * 0.8),)
    cfg.SOLVER.WARMUP_ITERS = min(100, recipe.max_iter // 5)
    cfg.SOLVER.CHECKPOINT_PERIOD = recipe.max_iter * 10
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 5.0
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = recipe.seed
    cfg.freeze()
    return cfg


def register(dataset: SyntheticDataset, prefix: str = "safepredict_synth") -> tuple[str, str]:
    """Register the train/val splits with Detectron2's catalogs (idempotent); return their names."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    names = (f"{prefix}_train", f"{prefix}_val")
    for name, json_file, image_dir in (
        (names[0], dataset.train_json, dataset.train_dir),
        (names[1], dataset.val_json, dataset.val_dir),
    ):
        if name not in DatasetCatalog.list():
            register_coco_instances(name, {}, str(json_file), str(image_dir))
    return names


def evaluate(cfg: Any, model: Any, dataset_name: str, output_dir: Path) -> dict[str, float]:
    """Box AP with Detectron2's own evaluation path (``COCOEvaluator`` + ``inference_on_dataset``)."""
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset

    evaluator = COCOEvaluator(dataset_name, output_dir=str(output_dir))
    loader = build_detection_test_loader(cfg, dataset_name)
    results = inference_on_dataset(model, loader, evaluator)
    return {k: float(v) for k, v in results["bbox"].items()}


def train(
    dataset: SyntheticDataset,
    output_dir: Path,
    recipe: Detectron2Recipe = Detectron2Recipe(),
    *,
    hooks: Sequence[Any] = (),
) -> dict[str, float]:
    """Train; write ``config.yaml``, ``model_final.pth``, ``box_ap.json`` into ``output_dir``; return val box AP.

    ``hooks`` are registered after the trainer's own (the safepredict training hook, say).
    """
    from detectron2.engine import DefaultTrainer, default_setup

    seed_everything(recipe.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = register(dataset)
    cfg = build_config(dataset, output_dir, recipe, names)
    # default_setup writes OUTPUT_DIR/config.yaml exactly as Detectron2's tools/train_net.py does.
    default_setup(cfg, argparse.Namespace(config_file="", eval_only=False, resume=False))
    trainer = DefaultTrainer(cfg)
    trainer.register_hooks(list(hooks))
    trainer.resume_or_load(resume=False)
    trainer.train()
    metrics = evaluate(cfg, trainer.model, names[1], output_dir / "eval")
    (output_dir / "box_ap.json").write_text(json.dumps(metrics, indent=2))
    return metrics
