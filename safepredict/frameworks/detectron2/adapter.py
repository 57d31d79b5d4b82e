"""Detectron2 adapter: the test-time path of ``DatasetMapper(cfg, is_train=False)`` + the model.

Everything runs through Detectron2's own code: ``build_model``, ``DetectionCheckpointer``,
``detection_utils.read_image`` (PIL, EXIF-aware) for files, the mapper's test augmentations
(``ResizeShortestEdge`` from ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``) and the model's own
normalisation (``MODEL.PIXEL_MEAN``/``PIXEL_STD``) and padding (backbone size divisibility).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.contract import TrainingContract
from safepredict.detections import Detections
from safepredict.frameworks.base import (
    Adapter,
    KeyProblem,
    attribute_path,
    checkpoint_classes,
    config_value,
    resnet_blocks,
    resnet_depth,
    set_config_value,
)
from safepredict.frameworks.detectron2.keys import head_keys
from safepredict.images import LoadedImage

_STAGES = r"backbone\.bottom_up\.res(\d)\.(\d+)\."


def apply_setting(cfg: Any, contract: TrainingContract, field: str, value: Any) -> None:
    """Set contract ``field`` to ``value`` in a Detectron2 config (the key the contract read it from)."""
    set_config_value(cfg, contract.key(field), value)


def explain_mismatch(cfg: Any, problems: list[KeyProblem], checkpoint_state: dict[str, Any]) -> str:
    """Say in words what a set of key problems means for a Detectron2 config."""
    reasons = []
    # The classifier: an R-CNN's (one per cascade stage; softmax with a background class), or a
    # RetinaNet head's (one output per anchor and class).
    for pattern, key, backgrounds in (
        (r"^roi_heads\.box_predictor(\.\d+)?\.cls_score\.weight$", "MODEL.ROI_HEADS.NUM_CLASSES", (1,)),
        (r"^head\.cls_score\.weight$", "MODEL.RETINANET.NUM_CLASSES", (0,)),
    ):
        configured = int(config_value(cfg, key))
        n = checkpoint_classes(problems, pattern, configured, backgrounds)
        if n is not None and n != configured:
            reasons.append(f"checkpoint has {n} classes, config has {configured}: set {key}={n}")
            break
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


def _threshold_owner(model: Any, path: str) -> tuple[Any, str]:
    """``(module, attribute)`` of the score threshold at ``path`` of ``model`` (module None if absent).

    A cascade keeps one predictor per stage in a ModuleList; the last one thresholds the final
    boxes (CascadeROIHeads._forward_box), so that is the one meant.
    """
    owner_path, _, name = path.rpartition(".")
    owner = attribute_path(model, owner_path) if owner_path else model
    if owner is not None and not hasattr(owner, name) and hasattr(owner, "__getitem__") and len(owner):
        owner = owner[-1]
    return (owner if owner is not None and hasattr(owner, name) else None), name


def _lower(model: Any, path: str | None, floor: float) -> bool:
    """Set the score threshold attribute at ``path`` of ``model`` to ``floor``; False if there is none.

    Both meta-architectures run test ``score > threshold`` before NMS and the per-image cap
    (``fast_rcnn_inference_single_image``, ``RetinaNet._decode_per_level_predictions``), so a
    lower threshold only adds candidates below it (see CANDIDATE_SCORE_FLOOR).
    """
    if path is None:
        return False
    owner, name = _threshold_owner(model, path)
    if owner is None:
        return False
    setattr(owner, name, floor)
    return True


@attrs.frozen(eq=False)
class _Output:
    """One image's output: the model's own instances, and the candidates below the threshold that
    the mask and keypoint heads were not run on (None where the heads ran on everything)."""

    instances: Any
    below: Any = None


def _heads_on_final_only(model: Any, is_final: Any) -> threading.local | None:
    """Make the ROI heads run the mask and keypoint heads on the final detections only.

    At its own threshold Detectron2 runs them (``forward_with_given_boxes``) on the boxes above
    it; with the threshold lowered they would run, and paste masks, on every candidate down to
    the floor: up to TEST.DETECTIONS_PER_IMAGE of them, ten times the work and the memory of the
    final few. The wrapped method hands the heads the boxes above the threshold, in the order
    and the batch the framework would, so masks and keypoints are the framework's own, and keeps
    the others aside (thread-local: predict runs from several threads) for the candidates. The
    model then returns what it returns at its own threshold. Returns the thread-local store, or
    None where the model has no such heads.
    """
    roi_heads = getattr(model, "roi_heads", None)
    heads = getattr(roi_heads, "forward_with_given_boxes", None)
    has_heads = getattr(roi_heads, "mask_on", False) or getattr(roi_heads, "keypoint_on", False)
    if roi_heads is None or heads is None or not has_heads:
        return None
    store = threading.local()

    def forward_with_given_boxes(features: Any, instances: list[Any]) -> Any:
        keep = [is_final(i.scores) for i in instances]
        store.below = [i[~k] for i, k in zip(instances, keep, strict=True)]
        return heads(features, [i[k] for i, k in zip(instances, keep, strict=True)])

    roi_heads.forward_with_given_boxes = forward_with_given_boxes
    return store


def _instances_to_detections(instances: Any, class_names: Any, image_size: tuple[int, int]) -> Detections:
    # pred_masks are already pasted into the image at its own size (detector_postprocess).
    return Detections(
        boxes=instances.pred_boxes.tensor.numpy(),
        scores=instances.scores.numpy(),
        labels=instances.pred_classes.numpy(),
        class_names=class_names,
        image_size=image_size,
        masks=instances.pred_masks.numpy() if instances.has("pred_masks") else None,
        keypoints=instances.pred_keypoints.numpy() if instances.has("pred_keypoints") else None,
    )


class Detectron2Adapter(Adapter):
    framework = "detectron2"
    weights_key = "model"
    _below: threading.local | None = None

    def prepare_config(self, cfg: Any, checkpoint: Path, device: str) -> Any:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = device
        cfg.MODEL.WEIGHTS = str(checkpoint)
        cfg.freeze()
        self.color = cfg.INPUT.FORMAT
        return cfg

    def build_model(self, cfg: Any, device: str) -> Any:
        from detectron2.modeling import build_model

        return build_model(cfg)

    def explain_mismatch(self, problems: list[KeyProblem], weights: Mapping[str, Any]) -> str:
        return explain_mismatch(self.cfg, problems, dict(weights))

    def load_weights(self, weights: dict[str, Any]) -> None:
        # Detectron2's own loader on the state dict already in memory (its ndarray conversion and
        # its log of what it skipped), not DetectionCheckpointer.load(path): the file is read once.
        from detectron2.checkpoint import DetectionCheckpointer

        checkpointer = DetectionCheckpointer(self.model)
        incompatible = checkpointer._load_model({"model": dict(weights)})
        checkpointer._log_incompatible_keys(incompatible)

    def threshold(self) -> tuple[str, float]:
        head = head_keys(self.cfg.MODEL.META_ARCHITECTURE)
        if head.score_threshold is None:
            return "(none: proposals)", 0.0
        return head.score_threshold, float(config_value(self.cfg, head.score_threshold))

    def keep_candidates(self, floor: float) -> bool:
        return _lower(self.model, head_keys(self.cfg.MODEL.META_ARCHITECTURE).score_attribute, floor)

    def setup(self) -> None:
        import torch
        from detectron2.data import DatasetMapper

        self.mapper = DatasetMapper(self.cfg, is_train=False)
        self._torch = torch
        self._heads_on_final_only()

    def _heads_on_final_only(self) -> None:
        if self.keeps_candidates:
            self._below = _heads_on_final_only(self.model, self.is_final)

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

    def forward(self, inputs: dict[str, Any]) -> _Output:
        with self._torch.inference_mode():
            instances = self.model([inputs])[0]["instances"].to("cpu")
            if self._below is None:
                return _Output(instances)
            from detectron2.modeling.postprocessing import detector_postprocess

            # The candidates the heads were not run on, taken to the image's own size by the same
            # function GeneralizedRCNN._postprocess applies to the others.
            below, self._below.below = getattr(self._below, "below", None), None
            if not below:  # the heads were not reached
                return _Output(instances)
            return _Output(instances, detector_postprocess(below[0], inputs["height"], inputs["width"]).to("cpu"))

    def to_detections(self, output: _Output, image: LoadedImage) -> Detections:
        if output.below is None:
            return _instances_to_detections(output.instances, self.class_names, image.shape)
        # The final detections score above every candidate below them: together, best first.
        final, below = output.instances, output.below
        return Detections(
            boxes=np.concatenate([final.pred_boxes.tensor.numpy(), below.pred_boxes.tensor.numpy()]),
            scores=np.concatenate([final.scores.numpy(), below.scores.numpy()]),
            labels=np.concatenate([final.pred_classes.numpy(), below.pred_classes.numpy()]),
            class_names=self.class_names,
            image_size=image.shape,
        )

    def final_detections(self, output: _Output, candidates: Detections) -> Detections:
        if output.below is None:
            return super().final_detections(output, candidates)
        return _instances_to_detections(output.instances, self.class_names, candidates.image_size or (0, 0))

    def native(self, output: _Output) -> Any:
        instances = output.instances
        final = None if output.below is not None else self.is_final(instances.scores)
        return {"instances": instances if final is None else instances[final]}


def _lazy_score_paths(model_cfg: Any) -> tuple[str, str]:
    """``(config key, model attribute path)`` of a LazyConfig model's final score threshold."""
    if "roi_heads" in model_cfg:
        roi = model_cfg.roi_heads
        if "box_predictor" in roi:
            return "model.roi_heads.box_predictor.test_score_thresh", "roi_heads.box_predictor.test_score_thresh"
        last = len(roi.box_predictors) - 1
        return f"model.roi_heads.box_predictors[{last}].test_score_thresh", "roi_heads.box_predictor.test_score_thresh"
    return "model.test_score_thresh", "test_score_thresh"


class Detectron2LazyAdapter(Detectron2Adapter):
    """A LazyConfig-trained model: ``instantiate(cfg.model)`` and ``instantiate(cfg.dataloader.test.mapper)``.

    The same test-time path as ``tools/lazyconfig_train_net.py``'s evaluation: the test mapper's
    augmentations and image format, then the model. Only the building differs from yacs models.
    """

    def prepare_config(self, cfg: Any, checkpoint: Path, device: str) -> Any:
        import copy

        cfg = copy.deepcopy(cfg)
        self.color = str(cfg.dataloader.test.mapper.image_format)
        return cfg

    def build_model(self, cfg: Any, device: str) -> Any:
        from detectron2.config import instantiate

        return instantiate(cfg.model).to(device)

    def explain_mismatch(self, problems: list[KeyProblem], weights: Mapping[str, Any]) -> str:
        heads = {p.key.split(".")[1] for p in problems if p.kind == "missing" and p.key.startswith("roi_heads.")}
        reasons = [f"config builds roi_heads.{h}, which the checkpoint was not trained with" for h in sorted(heads)]
        model = self.cfg.model
        if "roi_heads" in model:
            pattern, key, backgrounds = r"^roi_heads\.box_predictor(\.\d+)?\.cls_score\.weight$", "roi_heads", (1,)
            configured = model.roi_heads.get("num_classes")
        else:  # a dense head: one output per anchor and class
            pattern, key, backgrounds = r"^head\.cls_score\.weight$", "", (0,)
            configured = model.get("num_classes")
        if configured is not None:
            n = checkpoint_classes(problems, pattern, int(configured), backgrounds)
            if n is not None and n != configured:
                where = f"model.{key}.num_classes" if key else "model.num_classes"
                reasons.insert(0, f"checkpoint has {n} classes, config has {configured}: set {where}={n}")
        return "; ".join(reasons) or "the checkpoint was trained with a different architecture than the config builds"

    def threshold(self) -> tuple[str, float]:
        # Read from the built model: a LazyConfig that leaves it unset gets the class's default.
        key, attribute = _lazy_score_paths(self.cfg.model)
        owner, name = _threshold_owner(self.model, attribute)
        if owner is None:
            return "(none)", 0.0
        return key, float(getattr(owner, name))

    def keep_candidates(self, floor: float) -> bool:
        return _lower(self.model, _lazy_score_paths(self.cfg.model)[1], floor)

    def setup(self) -> None:
        import torch
        from detectron2.config import instantiate

        self.mapper = instantiate(self.cfg.dataloader.test.mapper)
        self._torch = torch
        self._heads_on_final_only()


def adapter_class(cfg: Any) -> type[Adapter]:
    """The adapter for a Detectron2 config: yacs ``CfgNode`` or LazyConfig ``DictConfig``."""
    return Detectron2LazyAdapter if is_lazy(cfg) else Detectron2Adapter


def is_lazy(cfg: Any) -> bool:
    """A LazyConfig (omegaconf ``DictConfig`` with ``model``), not a yacs ``CfgNode``."""
    return type(cfg).__module__.startswith("omegaconf")
