"""Train a small, real MMDetection Faster R-CNN on the synthetic data set with mmengine's ``Runner``.

Used for the test fixtures and the demo. The checkpoint carries ``meta['cfg']`` (the full config
text) and ``meta['dataset_meta']`` (class names), as every mmengine checkpoint does. Training
choices are not MMDetection's defaults: the data set's own mean/std with ``bgr_to_rgb=True``, a
test ``Resize`` scale of its own, ``test_cfg`` score/NMS values of its own, 3 named classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from safepredict.demo.data import SyntheticDataset
from safepredict.demo.seeding import seed_everything


@attrs.frozen
class MMDetRecipe:
    """Every training choice of the fixture (part of its cache key)."""

    max_epochs: int = 8
    batch_size: int = 4
    lr: float = 0.01
    depth: int = 18
    train_scale: tuple[int, int] = (192, 144)
    test_scale: tuple[int, int] = (176, 132)
    score_thr: float = 0.25
    nms_iou: float = 0.6
    max_per_img: int = 50
    seed: int = 0


def build_config(dataset: SyntheticDataset, work_dir: Path, recipe: MMDetRecipe) -> dict[str, Any]:
    """A complete, self-contained MMDetection 3.x config (no ``_base_``), as a plain dict."""
    mean, std = dataset.pixel_stats()
    root = str(dataset.root) + "/"
    metainfo = {"classes": dataset.class_names, "palette": [(220, 20, 60), (0, 0, 230), (250, 170, 30)]}
    depth_channels = {18: [64, 128, 256, 512], 34: [64, 128, 256, 512], 50: [256, 512, 1024, 2048]}
    test_pipeline = [
        {"type": "LoadImageFromFile", "backend_args": None},
        {"type": "Resize", "scale": recipe.test_scale, "keep_ratio": True},
        {"type": "LoadAnnotations", "with_bbox": True},
        {
            "type": "PackDetInputs",
            "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
        },
    ]
    train_pipeline = [
        {"type": "LoadImageFromFile", "backend_args": None},
        {"type": "LoadAnnotations", "with_bbox": True},
        {"type": "Resize", "scale": recipe.train_scale, "keep_ratio": True},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PackDetInputs"},
    ]
    val_dataloader = {
        "batch_size": 1,
        "num_workers": 0,
        "persistent_workers": False,
        "drop_last": False,
        "sampler": {"type": "DefaultSampler", "shuffle": False},
        "dataset": {
            "type": "CocoDataset",
            "data_root": root,
            "metainfo": metainfo,
            "ann_file": "val.json",
            "data_prefix": {"img": "val/"},
            "test_mode": True,
            "pipeline": test_pipeline,
            "backend_args": None,
        },
    }
    evaluator = {"type": "CocoMetric", "ann_file": str(dataset.val_json), "metric": "bbox", "format_only": False}
    return {
        "default_scope": "mmdet",
        "work_dir": str(work_dir),
        "randomness": {"seed": recipe.seed, "deterministic": True},
        "model": {
            "type": "FasterRCNN",
            "data_preprocessor": {
                "type": "DetDataPreprocessor",
                "mean": list(mean),  # RGB order, since bgr_to_rgb=True
                "std": list(std),
                "bgr_to_rgb": True,
                "pad_size_divisor": 32,
            },
            "backbone": {
                "type": "ResNet",
                "depth": recipe.depth,
                "num_stages": 4,
                "out_indices": (0, 1, 2, 3),
                "frozen_stages": -1,
                "norm_cfg": {"type": "BN", "requires_grad": True},
                "norm_eval": False,
                "style": "pytorch",
                "init_cfg": None,
            },
            "neck": {"type": "FPN", "in_channels": depth_channels[recipe.depth], "out_channels": 64, "num_outs": 5},
            "rpn_head": {
                "type": "RPNHead",
                "in_channels": 64,
                "feat_channels": 64,
                "anchor_generator": {
                    "type": "AnchorGenerator",
                    "scales": [4],
                    "ratios": [0.5, 1.0, 2.0],
                    "strides": [4, 8, 16, 32, 64],
                },
                "bbox_coder": {
                    "type": "DeltaXYWHBBoxCoder",
                    "target_means": [0.0, 0.0, 0.0, 0.0],
                    "target_stds": [1.0, 1.0, 1.0, 1.0],
                },
                "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0},
                "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
            },
            "roi_head": {
                "type": "StandardRoIHead",
                "bbox_roi_extractor": {
                    "type": "SingleRoIExtractor",
                    "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0},
                    "out_channels": 64,
                    "featmap_strides": [4, 8, 16, 32],
                },
                "bbox_head": {
                    "type": "Shared2FCBBoxHead",
                    "in_channels": 64,
                    "fc_out_channels": 256,
                    "roi_feat_size": 7,
                    "num_classes": len(dataset.class_names),
                    "bbox_coder": {
                        "type": "DeltaXYWHBBoxCoder",
                        "target_means": [0.0, 0.0, 0.0, 0.0],
                        "target_stds": [0.1, 0.1, 0.2, 0.2],
                    },
                    "reg_class_agnostic": False,
                    "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
                    "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
                },
            },
            "train_cfg": {
                "rpn": {
                    "assigner": {
                        "type": "MaxIoUAssigner",
                        "pos_iou_thr": 0.7,
                        "neg_iou_thr": 0.3,
                        "min_pos_iou": 0.3,
                        "match_low_quality": True,
                        "ignore_iof_thr": -1,
                    },
                    "sampler": {
                        "type": "RandomSampler",
                        "num": 128,
                        "pos_fraction": 0.5,
                        "neg_pos_ub": -1,
                        "add_gt_as_proposals": False,
                    },
                    "allowed_border": -1,
                    "pos_weight": -1,
                    "debug": False,
                },
                "rpn_proposal": {
                    "nms_pre": 1000,
                    "max_per_img": 500,
                    "nms": {"type": "nms", "iou_threshold": 0.7},
                    "min_bbox_size": 0,
                },
                "rcnn": {
                    "assigner": {
                        "type": "MaxIoUAssigner",
                        "pos_iou_thr": 0.5,
                        "neg_iou_thr": 0.5,
                        "min_pos_iou": 0.5,
                        "match_low_quality": False,
                        "ignore_iof_thr": -1,
                    },
                    "sampler": {
                        "type": "RandomSampler",
                        "num": 128,
                        "pos_fraction": 0.25,
                        "neg_pos_ub": -1,
                        "add_gt_as_proposals": True,
                    },
                    "pos_weight": -1,
                    "debug": False,
                },
            },
            "test_cfg": {
                "rpn": {
                    "nms_pre": 500,
                    "max_per_img": 300,
                    "nms": {"type": "nms", "iou_threshold": 0.7},
                    "min_bbox_size": 0,
                },
                "rcnn": {
                    "score_thr": recipe.score_thr,
                    "nms": {"type": "nms", "iou_threshold": recipe.nms_iou},
                    "max_per_img": recipe.max_per_img,
                },
            },
        },
        "train_dataloader": {
            "batch_size": recipe.batch_size,
            "num_workers": 0,
            "persistent_workers": False,
            "sampler": {"type": "DefaultSampler", "shuffle": True},
            "batch_sampler": {"type": "AspectRatioBatchSampler"},
            "dataset": {
                "type": "CocoDataset",
                "data_root": root,
                "metainfo": metainfo,
                "ann_file": "train.json",
                "data_prefix": {"img": "train/"},
                "filter_cfg": {"filter_empty_gt": True, "min_size": 4},
                "pipeline": train_pipeline,
                "backend_args": None,
            },
        },
        "val_dataloader": val_dataloader,
        "test_dataloader": val_dataloader,
        "val_evaluator": evaluator,
        "test_evaluator": evaluator,
        "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": recipe.max_epochs, "val_interval": 10_000},
        "val_cfg": {"type": "ValLoop"},
        "test_cfg": {"type": "TestLoop"},
        "param_scheduler": [
            {"type": "LinearLR", "start_factor": 0.001, "by_epoch": False, "begin": 0, "end": 100},
            {
                "type": "MultiStepLR",
                "begin": 0,
                "end": recipe.max_epochs,
                "by_epoch": True,
                "milestones": [int(recipe.max_epochs * 0.75)],
                "gamma": 0.1,
            },
        ],
        "optim_wrapper": {
            "type": "OptimWrapper",
            "optimizer": {"type": "SGD", "lr": recipe.lr, "momentum": 0.9, "weight_decay": 0.0001},
            "clip_grad": {"max_norm": 10, "norm_type": 2},
        },
        "default_hooks": {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "LoggerHook", "interval": 20},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {"type": "CheckpointHook", "interval": recipe.max_epochs, "max_keep_ckpts": 1},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
            "visualization": {"type": "DetVisualizationHook"},
        },
        "env_cfg": {
            "cudnn_benchmark": False,
            "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
            "dist_cfg": {"backend": "nccl"},
        },
        "vis_backends": [{"type": "LocalVisBackend"}],
        "visualizer": {
            "type": "DetLocalVisualizer",
            "vis_backends": [{"type": "LocalVisBackend"}],
            "name": "visualizer",
        },
        "log_processor": {"type": "LogProcessor", "window_size": 20, "by_epoch": True},
        "log_level": "INFO",
        "load_from": None,
        "resume": False,
    }


def train(
    dataset: SyntheticDataset,
    work_dir: Path,
    recipe: MMDetRecipe = MMDetRecipe(),
    *,
    custom_hooks: list[dict[str, Any]] | None = None,
    custom_imports: list[str] | None = None,
) -> dict[str, float]:
    """Train with ``Runner``, write the config and ``epoch_N.pth`` into ``work_dir``, return val box AP.

    ``custom_hooks``/``custom_imports`` go into the config as a user would write them (the
    safepredict training hook: ``[dict(type="SafePredictHook")]``, ``["safepredict.frameworks.mmdet.hook"]``).
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    seed_everything(recipe.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "train_config.py"
    config = build_config(dataset, work_dir, recipe)
    if custom_hooks:
        config["custom_hooks"] = custom_hooks
    if custom_imports:
        config["custom_imports"] = {"imports": custom_imports, "allow_failed_imports": False}
    Config(config).dump(str(config_path))
    cfg = Config.fromfile(str(config_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    raw = runner.test()
    metrics = {
        "AP": float(raw["coco/bbox_mAP"]) * 100,
        "AP50": float(raw["coco/bbox_mAP_50"]) * 100,
        "AP75": float(raw["coco/bbox_mAP_75"]) * 100,
    }
    (work_dir / "box_ap.json").write_text(json.dumps(metrics, indent=2))
    return metrics
