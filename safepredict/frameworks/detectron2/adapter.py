"""Detectron2 adapter: the test-time path of ``DatasetMapper(cfg, is_train=False)`` + the model.

Everything runs through Detectron2's own code: ``build_model``, ``DetectionCheckpointer``,
``detection_utils.read_image`` (PIL, EXIF-aware) for files, the mapper's test augmentations
(``ResizeShortestEdge`` from ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``) and the model's own
normalisation (``MODEL.PIXEL_MEAN``/``PIXEL_STD``) and padding (backbone size divisibility).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from safepredict.contract import TrainingContract
from safepredict.detections import Detections
from safepredict.errors import FrameworkNotInstalled
from safepredict.frameworks.base import (
    CANDIDATE_SCORE_FLOOR,
    Adapter,
    KeyProblem,
    RawResult,
    enforce_fit,
    resnet_blocks,
    resnet_depth,
    set_config_value,
    split_final,
)
from safepredict.images import LoadedImage

_STAGES = r"backbone\.bottom_up\.res(\d)\.(\d+)\."


def _import() -> None:
    try:
        import detectron2  # noqa: F401
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "this checkpoint needs Detectron2, which is not importable here",
            fix="install Detectron2 from its source (https://detectron2.readthedocs.io), "
            "or run scripts/setup-frameworks.sh",
        ) from exc


def apply_setting(cfg: Any, contract: TrainingContract, field: str, value: Any) -> None:
    """Set contract ``field`` to ``value`` in a Detectron2 config (the key the contract read it from)."""
    set_config_value(cfg, contract.key(field), value)


def explain_mismatch(cfg: Any, problems: list[KeyProblem], checkpoint_state: dict[str, Any]) -> str:
    """Say in words what a set of key problems means for a Detectron2 config."""
    reasons = []
    cls = checkpoint_state.get("roi_heads.box_predictor.cls_score.weight")
    if cls is not None and cls.shape[0] - 1 != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        n = int(cls.shape[0]) - 1
        reasons.append(
            f"checkpoint has {n} classes, config has {cfg.MODEL.ROI_HEADS.NUM_CLASSES}: "
            f"set MODEL.ROI_HEADS.NUM_CLASSES={n}"
        )
    ck_blocks = resnet_blocks(checkpoint_state, _STAGES)
    if ck_blocks is not None:
        ck_depth = resnet_depth(ck_blocks)
        if ck_depth is not None and ck_depth != cfg.MODEL.RESNETS.DEPTH:
            reasons.append(
                f"checkpoint backbone is ResNet-{ck_depth} ({ck_blocks[0][2]} blocks in res4), config builds "
                f"ResNet-{cfg.MODEL.RESNETS.DEPTH}: set MODEL.RESNETS.DEPTH={ck_depth}"
            )
    missing_heads = {p.key.split(".")[1] for p in problems if p.kind == "missing" and p.key.startswith("roi_heads.")}
    for head in sorted(missing_heads - {"box_predictor", "box_head"}):
        reasons.append(
            f"config builds roi_heads.{head}, which the checkpoint was not trained with (MASK_ON/KEYPOINT_ON?)"
        )
    if not reasons:
        reasons.append("the checkpoint was trained with a different architecture than the config builds")
    return "; ".join(reasons)


class Detectron2Adapter(Adapter):
    framework = "detectron2"

    def __init__(
        self,
        cfg: Any,
        checkpoint: Path,
        *,
        device: str = "cpu",
        strict: bool = True,
        class_names: tuple[str, ...] | None = None,
        checkpoint_state: dict[str, Any] | None = None,
    ) -> None:
        _import()
        import torch
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.data import DatasetMapper
        from detectron2.modeling import build_model

        from safepredict.frameworks.checkpoint import load_checkpoint

        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = device
        cfg.MODEL.WEIGHTS = str(checkpoint)
        cfg.freeze()
        self.cfg = cfg
        self.device = device
        self.color = cfg.INPUT.FORMAT
        self.class_names = class_names
        self.model = build_model(cfg)
        self.model.eval()

        state = checkpoint_state if checkpoint_state is not None else load_checkpoint(checkpoint)
        weights = state.get("model", state)
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
        enforce_fit(
            self.model.state_dict(),
            weights,
            checkpoint,
            strict=strict,
            explain=lambda problems: explain_mismatch(cfg, problems, weights),
        )
        # Detectron2's own loader (prefix handling, ndarray conversion); its warnings are now ours.
        DetectionCheckpointer(self.model).load(str(checkpoint))

        self.mapper = DatasetMapper(cfg, is_train=False)
        self.threshold_key, self.score_threshold = self._threshold()
        self._lower_threshold()
        self._torch = torch

    def _threshold(self) -> tuple[str, float]:
        if self.cfg.MODEL.META_ARCHITECTURE == "RetinaNet":
            return "MODEL.RETINANET.SCORE_THRESH_TEST", float(self.cfg.MODEL.RETINANET.SCORE_THRESH_TEST)
        return "MODEL.ROI_HEADS.SCORE_THRESH_TEST", float(self.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)

    def _lower_threshold(self) -> None:
        """Keep candidates below the threshold (see CANDIDATE_SCORE_FLOOR); final = score > threshold."""
        floor = min(CANDIDATE_SCORE_FLOOR, self.score_threshold)
        predictor = getattr(getattr(self.model, "roi_heads", None), "box_predictor", None)
        if predictor is not None and hasattr(predictor, "test_score_thresh"):
            predictor.test_score_thresh = floor
        elif hasattr(self.model, "test_score_thresh"):  # RetinaNet
            self.model.test_score_thresh = floor

    def read(self, path: Path) -> LoadedImage:
        from detectron2.data import detection_utils

        return LoadedImage(detection_utils.read_image(str(path), format=self.color), self.color, path)

    def inputs(self, image: LoadedImage) -> dict[str, Any]:
        """The dict ``DatasetMapper(cfg, False)`` makes of this image."""
        from detectron2.data import transforms as T

        array = image.to(self.color)
        height, width = array.shape[:2]
        aug_input = T.AugInput(array)
        self.mapper.augmentations(aug_input)
        resized = aug_input.image
        tensor = self._torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    def run(self, image: LoadedImage) -> RawResult:
        inputs = self.inputs(image)
        with self._torch.inference_mode():
            instances = self.model([inputs])[0]["instances"].to("cpu")
        candidates = Detections(
            boxes=instances.pred_boxes.tensor.numpy(),
            scores=instances.scores.numpy(),
            labels=instances.pred_classes.numpy(),
            class_names=self.class_names,
            image_size=image.shape,
        )
        keep = instances.scores > self.score_threshold
        final = split_final(candidates, self.score_threshold)
        return RawResult(candidates=candidates, final=final, native={"instances": instances[keep]})
