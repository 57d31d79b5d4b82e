"""MMDetection adapter: ``init_detector`` + the config's test pipeline + ``model.test_step``.

This is the path of ``inference_detector`` and of mmengine's test loop (``LoadImageFromFile`` for
files, ``LoadImageFromNDArray`` for arrays, the test pipeline's ``Resize``, then the model's
``data_preprocessor`` for colour order, mean/std and padding), with a strict checkpoint check in
front of the load and the class names taken from the checkpoint's ``meta['dataset_meta']``.
"""

from __future__ import annotations

import copy
import inspect
import threading
import warnings
from collections.abc import Iterable, Mapping
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
    resnet_blocks,
    resnet_depth,
    set_config_value,
)
from safepredict.frameworks.mmdet import keys as keys_table
from safepredict.frameworks.mmdet.keys import HeadLayout
from safepredict.images import LoadedImage

_STAGES = r"backbone\.layer(\d)\.(\d+)\."


def _mask_array(masks: Any) -> Any:
    """``(N, H, W)`` bool numpy masks from a tensor or mmdet's BitmapMasks."""
    if hasattr(masks, "to_ndarray"):  # BitmapMasks / PolygonMasks
        return masks.to_ndarray().astype(bool)
    return masks.cpu().numpy().astype(bool)


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
    configured = head.get("num_classes") if head is not None else None
    if configured is not None:
        # The classifier: an R-CNN's fc_cls (softmax, with a background class; one per cascade
        # stage), or a dense head's *_cls conv (one output per prior and class, sigmoid mostly).
        two_stage = cfg.model.get("roi_head") is not None
        pattern = (
            r"^roi_head\.bbox_head(\.\d+)?\.fc_cls\.weight$"
            if two_stage
            else r"^bbox_head\..*cls[^.]*(\.\d+)?\.weight$"
        )
        n = checkpoint_classes(problems, pattern, int(configured), (1,) if two_stage else (0, 1))
        if n is not None and n != configured:
            key = keys_table.layout(cfg.model).num_classes_path
            reasons.append(f"checkpoint has {n} classes, config has {configured}: set {key}={n}")
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


@attrs.frozen(eq=False)
class _Output:
    """One image's ``DetDataSample``, and the candidates below the threshold that the mask head was
    not run on (None where it ran on everything)."""

    sample: Any
    below: Any = None


_MASK_SIGNATURE = ["x", "batch_img_metas", "results_list", "rescale"]


def _mask_head_on_final_only(model: Any, is_final: Any) -> threading.local | None:
    """Make the ROI head run its mask head on the final detections only.

    At its own threshold mmdet runs ``roi_head.predict_mask`` (mask head and paste) on the boxes
    above it; with the threshold lowered it would run on every candidate down to the floor, up to
    ``max_per_img`` of them. The wrapped method hands it the boxes above the threshold, in the
    order and the batch mmdet would, so the masks are mmdet's own, and keeps the others aside
    (thread-local) for the candidates, their boxes taken to the original image as the mask head
    takes the final ones (``bboxes /= scale_factor``). Returns the store, or None where the ROI
    head has no mask head of the standard signature.
    """
    roi_head = getattr(model, "roi_head", None)
    predict_mask = getattr(roi_head, "predict_mask", None)
    if roi_head is None or predict_mask is None or not getattr(roi_head, "with_mask", False):
        return None
    if list(inspect.signature(predict_mask).parameters) != _MASK_SIGNATURE:
        return None
    store = threading.local()

    def wrapped(x: Any, batch_img_metas: list[dict[str, Any]], results_list: list[Any], rescale: bool = False) -> Any:
        keep = [is_final(r.scores) for r in results_list]
        below = [r[~k] for r, k in zip(results_list, keep, strict=True)]
        if rescale:
            for r, meta in zip(below, batch_img_metas, strict=True):
                r.bboxes = r.bboxes / r.bboxes.new_tensor(meta["scale_factor"]).repeat((1, 2))
        store.below = below
        return predict_mask(x, batch_img_metas, [r[k] for r, k in zip(results_list, keep, strict=True)], rescale)

    roi_head.predict_mask = wrapped
    return store


# The most (proposal, class) pairs a two-stage head sends into NMS when its threshold is lowered
# to the candidate floor: 10 x the usual max_per_img of 100. An untrained 80-class head scores all
# 80 000 pairs of 1000 proposals at 1/81, above the floor; mmcv's batched_nms runs class by class
# above 10 000 boxes (docs/benchmarks.md measured 7 % per image on an R-50 at 800 px).
CANDIDATE_PAIRS = 1000
_PREDICT_SIGNATURE = ["roi", "cls_score", "bbox_pred", "img_meta", "rescale", "rcnn_test_cfg"]


def _cap_candidate_pairs(model: Any, threshold: float, cap: int | None = None) -> bool:
    """Bound the pairs a two-stage bbox head sends into NMS below its threshold; True when installed.

    Per image, the floor rises to the ``cap``-th highest class score (never above ``threshold``).
    NMS over a set that holds every pair above some score is exact for its members (a pair is
    suppressed only by higher-scoring pairs, all in the set), so the detections above the
    threshold are the framework's own, bit for bit, and the candidates are the uncapped run's
    best ones: a prefix of them by score. Wraps ``_predict_by_feat_single`` on the head instances
    only (no module-level patch), where it has the standard signature.
    """
    cap = CANDIDATE_PAIRS if cap is None else cap
    roi_head = getattr(model, "roi_head", None)
    heads = getattr(roi_head, "bbox_head", None)
    if heads is None:
        return False
    heads = list(heads) if isinstance(heads, Iterable) else [heads]
    installed = False
    for head in heads:
        predict = getattr(head, "_predict_by_feat_single", None)
        if predict is None or list(inspect.signature(predict).parameters) != _PREDICT_SIGNATURE:
            continue
        head._predict_by_feat_single = _capped(head, predict, threshold, cap)
        installed = True
    return installed


def _capped(head: Any, predict: Any, threshold: float, cap: int) -> Any:
    import torch
    import torch.nn.functional as F

    def wrapped(
        roi: Any, cls_score: Any, bbox_pred: Any, img_meta: Any, rescale: bool = False, rcnn_test_cfg: Any = None
    ) -> Any:
        floor = None if rcnn_test_cfg is None else rcnn_test_cfg.get("score_thr")
        if floor is None or cls_score is None or roi.shape[0] == 0 or floor >= threshold:
            return predict(roi, cls_score, bbox_pred, img_meta, rescale, rcnn_test_cfg)
        # The head's own activation, as _predict_by_feat_single computes it; the last column is background.
        scores = head.loss_cls.get_activation(cls_score) if head.custom_cls_channels else F.softmax(cls_score, dim=-1)
        foreground = scores[:, :-1].reshape(-1)
        if foreground.numel() <= cap:
            return predict(roi, cls_score, bbox_pred, img_meta, rescale, rcnn_test_cfg)
        kth = float(torch.topk(foreground, cap, sorted=False).values.min())
        raised = min(max(kth, float(floor)), threshold)  # multiclass_nms keeps scores > score_thr
        cfg = copy.copy(rcnn_test_cfg)
        cfg.score_thr = raised
        return predict(roi, cls_score, bbox_pred, img_meta, rescale, cfg)

    return wrapped


def _instances_to_detections(pred: Any, class_names: Any, image_size: tuple[int, int]) -> Detections:
    # With rescale (test_step's default) masks are pasted at the original image size.
    masks = pred.masks if "masks" in pred else None
    return Detections(
        boxes=pred.bboxes.cpu().numpy(),
        scores=pred.scores.cpu().numpy(),
        labels=pred.labels.cpu().numpy(),
        class_names=class_names,
        image_size=image_size,
        masks=None if masks is None else _mask_array(masks),
    )


def _step_type(step: Any) -> str:
    return str(step.get("type", "")).rsplit(".", 1)[-1] if isinstance(step, Mapping) else ""


def _flips(step: Any) -> bool:
    return _step_type(step) == "RandomFlip" and float(step.get("prob", 0) or 0) > 0


def single_pass(pipeline: Iterable[Any]) -> list[Any]:
    """A test pipeline with each ``TestTimeAug`` replaced by one unflipped copy: its first transform of
    every group (a flip group gives its no-flip member, or nothing).

    A plain detector's ``test_step`` takes one view per image; the contract's resize is the first
    resize of the augmentation, the same one, and the predictor warns that training evaluated
    with TTA (``contract.tta``).
    """
    steps: list[Any] = []
    for step in pipeline:
        if _step_type(step) != "TestTimeAug":
            steps.append(step)
            continue
        for group in step.get("transforms", []) or []:
            chosen = next((t for t in group or [] if not _flips(t)), None)
            if chosen is not None:
                steps.append(copy.deepcopy(chosen))
    return steps


class MMDetAdapter(Adapter):
    framework = "mmdet"
    weights_key = "state_dict"
    color = "BGR"  # LoadImageFromFile/NDArray hand BGR to the data_preprocessor, which converts
    _below: threading.local | None = None

    def prepare_config(self, cfg: Any, checkpoint: Path, device: str) -> Any:
        return copy.deepcopy(cfg)

    def build_model(self, cfg: Any, device: str) -> Any:
        from mmdet.apis import init_detector

        with warnings.catch_warnings(record=True):
            # Without a checkpoint init_detector announces COCO class names (and resets the filters
            # to "once" to do so: record=True keeps it from reaching the user); ours come later.
            return init_detector(cfg, checkpoint=None, device=device)

    def explain_mismatch(self, problems: list[KeyProblem], weights: Mapping[str, Any]) -> str:
        return explain_mismatch(self.cfg, problems, dict(weights))

    def load_weights(self, weights: dict[str, Any]) -> None:
        from mmengine.runner.checkpoint import load_state_dict

        load_state_dict(self.model, weights, strict=False)

    def read_class_names(self, state: Mapping[str, Any], given: tuple[str, ...] | None) -> tuple[str, ...] | None:
        meta = state.get("meta", {}) or {}
        dataset_meta = {k.lower(): v for k, v in (meta.get("dataset_meta") or {}).items()}
        if given is None and dataset_meta.get("classes"):
            given = tuple(dataset_meta["classes"])
        self.model.dataset_meta = dataset_meta or ({"classes": given} if given else {})
        return given

    def _post_cfg(self) -> tuple[HeadLayout, Any]:
        head = keys_table.layout(self.cfg.model)
        return head, attribute_path(self.model, head.test_cfg_attribute)

    def threshold(self) -> tuple[str, float]:
        head, post = self._post_cfg()
        return f"{head.post_path}.{head.score_threshold}", float((post or {}).get(head.score_threshold, 0.0))

    def keep_candidates(self, floor: float) -> bool:
        head, post = self._post_cfg()
        self.threshold_inclusive = head.threshold_inclusive
        if not head.candidate_floor or post is None or head.score_threshold not in post:
            return False
        post[head.score_threshold] = floor
        return True

    def setup(self) -> None:
        import torch
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg

        pipeline = single_pass(get_test_pipeline_cfg(self.cfg))
        self._load_file = Compose([pipeline[0]])
        array_loader = copy.deepcopy(pipeline[0])
        array_loader["type"] = "mmdet.LoadImageFromNDArray"
        self._load_array = Compose([array_loader])
        self._rest = Compose(pipeline[1:])
        self._torch = torch
        if self.keeps_candidates:
            self._below = _mask_head_on_final_only(self.model, self.is_final)
            _cap_candidate_pairs(self.model, self.score_threshold)

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

    def forward(self, inputs: dict[str, Any]) -> _Output:
        with self._torch.inference_mode():
            sample = self.model.test_step(inputs)[0]
        if self._below is None:
            return _Output(sample)
        below, self._below.below = getattr(self._below, "below", None), None
        return _Output(sample, below[0] if below else None)

    def to_detections(self, output: _Output, image: LoadedImage) -> Detections:
        if output.below is None:
            return _instances_to_detections(output.sample.pred_instances, self.class_names, image.shape)
        # The final detections score above every candidate below them: together, best first.
        final, below = output.sample.pred_instances, output.below
        return Detections(
            boxes=np.concatenate([final.bboxes.cpu().numpy(), below.bboxes.cpu().numpy()]),
            scores=np.concatenate([final.scores.cpu().numpy(), below.scores.cpu().numpy()]),
            labels=np.concatenate([final.labels.cpu().numpy(), below.labels.cpu().numpy()]),
            class_names=self.class_names,
            image_size=image.shape,
        )

    def final_detections(self, output: _Output, candidates: Detections) -> Detections:
        if output.below is None:
            return super().final_detections(output, candidates)
        return _instances_to_detections(output.sample.pred_instances, self.class_names, candidates.image_size or (0, 0))

    def native(self, output: _Output) -> Any:
        sample = output.sample
        final = None if output.below is not None else self.is_final(sample.pred_instances.scores)
        if final is not None:
            sample.pred_instances = sample.pred_instances[final]
        return sample


def adapter_class(cfg: Any) -> type[Adapter]:
    """The adapter for an mmengine config (one kind for every supported detector family)."""
    return MMDetAdapter
