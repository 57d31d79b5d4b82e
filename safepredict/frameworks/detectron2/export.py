"""What of a Detectron2 model goes into the ONNX graph, and the recipe for the steps outside it.

Inside the graph: the normalisation ``(x - MODEL.PIXEL_MEAN) / MODEL.PIXEL_STD``, the backbone
with its FPN, and the heads' convolutions (RetinaNet's class and box towers; the RPN head), and,
for a two-stage model, a second disconnected part: ``ROIAlign`` on each pyramid level (the ONNX
``RoiAlign`` op, ``half_pixel`` for ``aligned=True``) and the box head and predictor.
Outside (``safepredict.engines.ops``, numpy): the resize, the padding, anchors, box decoding,
the per-level top-k, NMS, the RoI level assignment, and the scaling back to the image.
"""

from __future__ import annotations

from typing import Any

from safepredict.errors import UnsupportedModelError


def _unsupported(what: str, detail: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"ONNX export does not support {what} yet: {detail}",
        found=what,
        expected="Detectron2 GeneralizedRCNN (StandardROIHeads, box head only) or RetinaNet, with an FPN backbone",
        fix="export a Faster R-CNN (FPN) or RetinaNet model, or run this model with SafePredictor on PyTorch",
    )


def _anchor_spec(generator: Any) -> dict[str, Any]:
    if type(generator).__name__ != "DefaultAnchorGenerator":
        raise _unsupported(type(generator).__name__, "only DefaultAnchorGenerator's axis-aligned anchors are exported")
    return {
        "base": [a.detach().cpu().numpy().astype(float).tolist() for a in generator.cell_anchors],
        "strides": [float(s) for s in generator.strides],
        "offset": float(generator.offset),
    }


def _coder_spec(transform: Any) -> dict[str, Any]:
    return {
        "kind": "detectron2",
        "weights": [float(w) for w in transform.weights],
        "scale_clamp": transform.scale_clamp,
    }


def _check_backbone(model: Any) -> None:
    backbone = model.backbone
    if type(backbone).__name__ != "FPN":
        raise _unsupported(f"backbone {type(backbone).__name__}", "the export covers FPN backbones")


def preprocess(predictor: Any) -> dict[str, Any]:
    """What the test mapper does before the model, read off the live mapper: decode, colour, resize, pad."""
    adapter = predictor._adapter
    augs = list(getattr(adapter.mapper.augmentations, "augs", adapter.mapper.augmentations))
    resize: dict[str, Any] = {"kind": "none"}
    for aug in augs:
        kind = type(aug).__name__
        if kind != "ResizeShortestEdge" or aug.is_range or len(set(aug.short_edge_length)) != 1:
            raise _unsupported(f"test augmentation {kind}", "supported: one ResizeShortestEdge with one test size")
        from safepredict.frameworks.detectron2.contract import _pil_filter

        resize = {
            "kind": "shortest_edge",
            "min_size": int(aug.short_edge_length[0]),
            "max_size": int(aug.max_size),
            "interpolation": _pil_filter(aug.interp),
            "backend": "PIL",
        }
    divisor = int(predictor.model.backbone.size_divisibility)
    return {
        "decoder": "PIL",
        "exif": True,
        "color": adapter.color,
        "resize": resize,
        "pad_to": None,
        "pad_divisor": max(divisor, 1),
        "pad_fill": "mean",
        "boxes_to": "image",
    }


def build(model: Any, contract: Any, predictor: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """``(dense module, RoI module or None, post-processing recipe)`` for a loaded model in eval mode."""
    name = type(model).__name__
    _check_backbone(model)
    mean = model.pixel_mean.detach().clone().reshape(1, -1, 1, 1)
    std = model.pixel_std.detach().clone().reshape(1, -1, 1, 1)
    if name == "RetinaNet":
        recipe = _retina_recipe(model)
        n = len(model.head_in_features)
        recipe["outputs"] = [f"cls.{i}" for i in range(n)] + [f"box.{i}" for i in range(n)]
        return _Dense(model.backbone, mean, std, model.head_in_features, retina=model.head), None, recipe
    if name != "GeneralizedRCNN":
        raise _unsupported(f"meta-architecture {name}", "supported: GeneralizedRCNN (Faster R-CNN) and RetinaNet")
    roi_heads = model.roi_heads
    if type(roi_heads).__name__ != "StandardROIHeads":
        raise _unsupported(type(roi_heads).__name__, "supported: StandardROIHeads (a cascade is not)")
    if getattr(roi_heads, "mask_on", False) or getattr(roi_heads, "keypoint_on", False):
        raise _unsupported("mask and keypoint heads", "the export covers boxes (Faster R-CNN, RetinaNet)")
    rpn = model.proposal_generator
    if type(rpn).__name__ != "RPN":
        raise _unsupported(type(rpn).__name__, "supported: the standard RPN")
    predictor = roi_heads.box_predictor
    if getattr(predictor, "use_sigmoid_ce", False):
        raise _unsupported("sigmoid box classification", "supported: the softmax FastRCNNOutputLayers")
    pooler = roi_heads.box_pooler
    dense = _Dense(model.backbone, mean, std, rpn.in_features, rpn=rpn.rpn_head, features=roi_heads.box_in_features)
    roi = _RoI(pooler, roi_heads.box_head, predictor)
    if any(type(p).__name__ != "ROIAlign" for p in pooler.level_poolers):
        raise _unsupported("pooler " + type(pooler.level_poolers[0]).__name__, "supported: ROIAlign / ROIAlignV2")
    first = pooler.level_poolers[0]
    recipe = {
        "kind": "two_stage",
        "style": "detectron2",
        "rpn": {
            "anchors": _anchor_spec(rpn.anchor_generator),
            "coder": _coder_spec(rpn.box2box_transform),
            "pre_nms_topk": int(rpn.pre_nms_topk[False]),
            "post_nms_topk": int(rpn.post_nms_topk[False]),
            "nms_iou": float(rpn.nms_thresh),
            "min_box_size": float(rpn.min_box_size),
            "activation": "logit",
        },
        "roi": {
            "levels": len(pooler.level_poolers),
            "min_level": int(pooler.min_level),
            "max_level": int(pooler.max_level),
            "canonical_box_size": int(pooler.canonical_box_size),
            "canonical_level": int(pooler.canonical_level),
            "output_size": list(first.output_size) if isinstance(first.output_size, tuple) else first.output_size,
            "sampling_ratio": int(first.sampling_ratio),
            "aligned": bool(first.aligned),
            "spatial_scales": [float(p.spatial_scale) for p in pooler.level_poolers],
            "channels": _channels(model, roi_heads),
        },
        "box": {
            "coder": _coder_spec(predictor.box2box_transform),
            "class_agnostic": bool(predictor.bbox_pred.out_features == 4),
            "score_threshold": float(predictor.test_score_thresh),
            "nms_iou": float(predictor.test_nms_thresh),
            "max_detections": int(predictor.test_topk_per_image),
            "activation": "softmax",
        },
        "num_classes": int(predictor.num_classes),
    }
    levels = len(pooler.level_poolers)
    anchors = len(rpn.in_features)
    recipe["outputs"] = (
        [f"feature.{i}" for i in range(levels)]
        + [f"rpn.logits.{i}" for i in range(anchors)]
        + [f"rpn.deltas.{i}" for i in range(anchors)]
    )
    recipe["roi_inputs"] = [f"roi.feature.{i}" for i in range(levels)] + [f"roi.boxes.{i}" for i in range(levels)]
    recipe["roi_outputs"] = ["roi.scores", "roi.deltas"]
    return dense, roi, recipe


def _channels(model: Any, roi_heads: Any) -> int:
    shapes = model.backbone.output_shape()
    return int(shapes[roi_heads.box_in_features[0]].channels)


def _retina_recipe(model: Any) -> dict[str, Any]:
    return {
        "kind": "dense",
        "style": "detectron2",
        "anchors": _anchor_spec(model.anchor_generator),
        "coder": _coder_spec(model.box2box_transform),
        "activation": "sigmoid",
        "score_threshold": float(model.test_score_thresh),
        "topk": int(model.test_topk_candidates),
        "nms_iou": float(model.test_nms_thresh),
        "max_detections": int(model.max_detections_per_image),
        "num_classes": int(model.num_classes),
        "clip_before_nms": False,
    }


def _modules() -> tuple[Any, Any]:
    import torch
    import torchvision

    return torch, torchvision


def _dense_class() -> Any:
    torch, _ = _modules()

    class Dense(torch.nn.Module):  # type: ignore[name-defined]
        """Normalisation, backbone + FPN, and the dense heads' convolutions; padded pixels in."""

        def __init__(
            self,
            backbone: Any,
            mean: Any,
            std: Any,
            head_features: list[str],
            *,
            retina: Any = None,
            rpn: Any = None,
            features: list[str] | None = None,
        ) -> None:
            super().__init__()
            self.backbone = backbone
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.head_features = list(head_features)
            self.retina = retina
            self.rpn = rpn
            self.features = list(features or [])

        def forward(self, image: Any) -> tuple[Any, ...]:
            x = (image - self.mean) / self.std
            feats = self.backbone(x)
            head_in = [feats[f] for f in self.head_features]
            if self.retina is not None:
                cls, box = self.retina(head_in)
                return (*cls, *box)
            logits, deltas = self.rpn(head_in)
            return (*[feats[f] for f in self.features], *logits, *deltas)

    return Dense


def _roi_class() -> Any:
    torch, torchvision = _modules()

    class RoI(torch.nn.Module):  # type: ignore[name-defined]
        """ROIAlign per level on given boxes, then the box head and predictor."""

        def __init__(self, pooler: Any, box_head: Any, predictor: Any) -> None:
            super().__init__()
            self.specs = [
                (float(p.spatial_scale), int(p.sampling_ratio), bool(p.aligned)) for p in pooler.level_poolers
            ]
            size = pooler.level_poolers[0].output_size
            self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
            self.box_head = box_head
            self.predictor = predictor

        def forward(self, *args: Any) -> tuple[Any, Any]:
            n = len(self.specs)
            feats, boxes = args[:n], args[n:]
            pooled = []
            for feat, b, (scale, ratio, aligned) in zip(feats, boxes, self.specs, strict=True):
                rois = torch.cat([torch.zeros_like(b[:, :1]), b], dim=1)
                pooled.append(torchvision.ops.roi_align(feat, rois, self.size, scale, ratio, aligned))
            x = self.box_head(torch.cat(pooled, dim=0))
            scores, deltas = self.predictor(x)
            return scores, deltas

    return RoI


def _Dense(*args: Any, **kwargs: Any) -> Any:
    return _dense_class()(*args, **kwargs)


def _RoI(*args: Any, **kwargs: Any) -> Any:
    return _roi_class()(*args, **kwargs)


def sample_roi_inputs(roi: Any, dense_outputs: tuple[Any, ...], levels: int) -> tuple[Any, ...]:
    """Example inputs of the RoI module: the pyramid features and a few boxes per level."""
    import torch

    feats = dense_outputs[:levels]
    boxes = []
    for i, f in enumerate(feats):
        scale = 1.0 / roi.specs[i][0]
        h, w = f.shape[-2:]
        base = torch.tensor([[2.0, 3.0, 30.0, 40.0], [5.0, 1.0, 19.0, 25.0], [0.0, 0.0, 11.0, 9.0]]) * (scale / 8)
        boxes.append(base.clamp(max=float(min(h, w) * scale)))
    return (*feats, *boxes)


def describe_inside(recipe: dict[str, Any]) -> tuple[str, str]:
    """``(inside the graph, outside it)`` in words."""
    if recipe["kind"] == "dense":
        return (
            "normalisation (x - mean) / std, backbone + FPN, RetinaNet head (class logits and box deltas per level)",
            "resize (PIL), padding with the mean, anchors, sigmoid, score threshold and per-level top-k, "
            "box decoding, per-class NMS, detections cap, scaling to the image (numpy)",
        )
    return (
        "normalisation (x - mean) / std, backbone + FPN, RPN head (objectness and deltas per level); "
        "second part: ROIAlign per level (RoiAlign op), box head, class scores and box deltas",
        "resize (PIL), padding with the mean, anchors, RPN top-k, decoding, NMS per level, RoI level "
        "assignment, softmax, per-class decoding, score threshold, per-class NMS, detections cap, "
        "scaling to the image (numpy)",
    )


def framework_input(predictor: Any, image: Any) -> Any:
    """The normalised, padded batch tensor Detectron2's model makes of ``image`` (numpy, 1x3xHxW)."""
    import torch

    adapter = predictor._adapter
    inputs = adapter.inputs(image)
    with torch.no_grad():
        tensor = predictor.model.preprocess_image([inputs]).tensor
    return tensor.cpu().numpy(), tuple(int(v) for v in inputs["image"].shape[1:])
