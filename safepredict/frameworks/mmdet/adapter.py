"""MMDetection adapter: ``init_detector`` + the config's test pipeline + ``model.test_step``.

This is the path of ``inference_detector`` and of mmengine's test loop (``LoadImageFromFile`` for
files, ``LoadImageFromNDArray`` for arrays, the test pipeline's ``Resize``, then the model's
``data_preprocessor`` for colour order, mean/std and padding), with a strict checkpoint check in
front of the load and the class names taken from the checkpoint's ``meta['dataset_meta']``.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

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

_STAGES = r"backbone\.layer(\d)\.(\d+)\."


def _import() -> None:
    try:
        import mmdet  # noqa: F401
        import mmengine  # noqa: F401
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "this checkpoint needs MMDetection, which is not importable here",
            fix="pip install 'safepredict[mmdet]' (mmdet 3.3, mmengine 0.10, mmcv>=2.0,<2.2 built with ops)",
        ) from exc


def _bbox_head(cfg: Any) -> Any:
    roi_head = cfg.model.get("roi_head")
    if roi_head is None:
        return cfg.model.get("bbox_head")
    head = roi_head.get("bbox_head")
    return head[-1] if isinstance(head, list) else head


def apply_setting(cfg: Any, contract: TrainingContract, field: str, value: Any) -> None:
    """Set contract ``field`` to ``value`` in an mmengine config, in the shape mmdet keeps it.

    The colour order is the ``bgr_to_rgb`` flag (the loader hands BGR, the flag converts); mmcv's
    ``Resize`` keeps one ``scale`` (long, short) for what the contract splits into
    ``resize.min_size``/``resize.max_size`` (with ``keep_ratio``: short edge <= min, long <= max).
    """
    key = contract.key(field)
    if field == "input_format" and isinstance(value, str):
        value = value.upper() == "RGB"
    elif field in ("resize.min_size", "resize.max_size"):
        short = min(contract.resize.scale or (0, 0))
        long_ = max(contract.resize.scale or (0, 0))
        given = int(value[0] if isinstance(value, (tuple, list)) else value)
        short, long_ = (given, max(long_, given)) if field == "resize.min_size" else (min(short, given), given)
        value = (long_, short)
    set_config_value(cfg, key, value)


def explain_mismatch(cfg: Any, problems: list[KeyProblem], state: dict[str, Any]) -> str:
    """Say in words what a set of key problems means for an MMDetection config."""
    reasons = []
    head = _bbox_head(cfg)
    cls = state.get("roi_head.bbox_head.fc_cls.weight")
    if cls is not None and head is not None and cls.shape[0] - 1 != head.get("num_classes"):
        n = int(cls.shape[0]) - 1
        reasons.append(
            f"checkpoint has {n} classes, config has {head.get('num_classes')}: "
            f"set model.roi_head.bbox_head.num_classes={n}"
        )
    blocks = resnet_blocks(state, _STAGES)
    depth = resnet_depth(blocks)
    cfg_depth = cfg.model.get("backbone", {}).get("depth")
    if blocks is not None and depth is not None and depth != cfg_depth:
        reasons.append(
            f"checkpoint backbone is ResNet-{depth} ({blocks[0][2]} blocks in layer3), config builds "
            f"ResNet-{cfg_depth}: set model.backbone.depth={depth}"
        )
    if not reasons:
        reasons.append("the checkpoint was trained with a different architecture than the config builds")
    return "; ".join(reasons)


class MMDetAdapter(Adapter):
    framework = "mmdet"
    color = "BGR"  # LoadImageFromFile/NDArray hand BGR to the data_preprocessor, which converts

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
        from mmcv.transforms import Compose
        from mmdet.apis import init_detector
        from mmdet.utils import get_test_pipeline_cfg
        from mmengine.runner.checkpoint import load_state_dict

        from safepredict.frameworks.checkpoint import load_checkpoint

        cfg = copy.deepcopy(cfg)
        self.cfg = cfg
        self.device = device
        with warnings.catch_warnings(record=True):
            # Without a checkpoint init_detector announces COCO class names (and resets the filters
            # to "once" to do so: record=True keeps it from reaching the user); ours come below.
            self.model = init_detector(cfg, checkpoint=None, device=device)
        state = checkpoint_state if checkpoint_state is not None else load_checkpoint(checkpoint)
        weights = state.get("state_dict", state)
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
        enforce_fit(
            self.model.state_dict(),
            weights,
            checkpoint,
            strict=strict,
            explain=lambda problems: explain_mismatch(cfg, problems, weights),
        )
        load_state_dict(self.model, weights, strict=False)
        self.model.eval()

        meta = state.get("meta", {}) or {}
        dataset_meta = {k.lower(): v for k, v in (meta.get("dataset_meta") or {}).items()}
        if class_names is None and dataset_meta.get("classes"):
            class_names = tuple(dataset_meta["classes"])
        self.class_names = class_names
        self.model.dataset_meta = dataset_meta or ({"classes": class_names} if class_names else {})

        pipeline = get_test_pipeline_cfg(cfg)
        self._load_file = Compose([pipeline[0]])
        array_loader = copy.deepcopy(pipeline[0])
        array_loader["type"] = "mmdet.LoadImageFromNDArray"
        self._load_array = Compose([array_loader])
        self._rest = Compose(pipeline[1:])
        rcnn = self._rcnn_test_cfg()
        self.threshold_key = "model.test_cfg.rcnn.score_thr" if rcnn is not None else "model.test_cfg.score_thr"
        self.score_threshold = float((rcnn or self.model.test_cfg or {}).get("score_thr", 0.0))
        floor = min(CANDIDATE_SCORE_FLOOR, self.score_threshold)
        if rcnn is not None:
            rcnn["score_thr"] = floor
        self._torch = torch

    def _rcnn_test_cfg(self) -> Any:
        roi_head = getattr(self.model, "roi_head", None)
        return getattr(roi_head, "test_cfg", None)

    def read(self, path: Path) -> LoadedImage:
        data = self._load_file({"img_path": str(path), "img_id": 0})
        return LoadedImage(data["img"], "BGR", path)

    def inputs(self, image: LoadedImage) -> dict[str, Any]:
        """What the test pipeline makes of this image, batched as ``test_step`` takes it."""
        data = self._load_array({"img": image.to("BGR"), "img_id": 0})
        if image.path is not None:
            data["img_path"] = str(image.path)
        data = self._rest(data)
        return {"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}

    def run(self, image: LoadedImage) -> RawResult:
        data = self.inputs(image)
        with self._torch.inference_mode():
            sample = self.model.test_step(data)[0]
        pred = sample.pred_instances
        candidates = Detections(
            boxes=pred.bboxes.cpu().numpy(),
            scores=pred.scores.cpu().numpy(),
            labels=pred.labels.cpu().numpy(),
            class_names=self.class_names,
            image_size=image.shape,
        )
        sample.pred_instances = pred[pred.scores > self.score_threshold]
        return RawResult(candidates=candidates, final=split_final(candidates, self.score_threshold), native=sample)
