"""What of an MMDetection model goes into the ONNX graph, and the recipe for the steps outside it.

Inside the graph: the data preprocessor's normalisation ``(x - mean) / std`` (after its colour
conversion, which the ONNX-side predictor does on the array), the backbone, the neck, and the
dense head's forward (RetinaNet's towers, RTMDet's shared-BN head with its ``* stride``, the RPN
head); for Faster R-CNN a second disconnected part: RoIAlign per level (the ONNX ``RoiAlign``
op, ``half_pixel`` for mmcv's ``aligned=True``) and the bbox head. Outside (numpy,
``safepredict.engines.mmdet_recipes``): the test pipeline's resize and pad, the priors, box
decoding, ``filter_scores_and_topk``, the RoI level mapping, ``multiclass_nms``/``batched_nms``
and the rescale to the image.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from safepredict.errors import UnsupportedModelError


def _unsupported(what: str, detail: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"ONNX export does not support {what} yet: {detail}",
        found=what,
        expected="MMDetection FasterRCNN (StandardRoIHead), RetinaNet (RetinaHead) or RTMDet (RTMDetSepBNHead)",
        fix="export a supported family, or run this model with SafePredictor on PyTorch",
    )


def _cfg(value: Any) -> dict[str, Any]:
    """A test_cfg (ConfigDict) as plain JSON values."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return copy.deepcopy(dict(value))


def preprocess(predictor: Any) -> dict[str, Any]:
    """The test pipeline and data preprocessor as the ONNX-side predictor applies them."""
    from mmdet.utils import get_test_pipeline_cfg

    adapter = predictor._adapter
    pipeline = [dict(s) for s in get_test_pipeline_cfg(adapter.cfg)]
    kinds = [str(s.get("type", "")).rsplit(".", 1)[-1] for s in pipeline]
    if not kinds or kinds[0] != "LoadImageFromFile":
        raise _unsupported(f"loader {kinds[:1]}", "supported: LoadImageFromFile")
    load = pipeline[0]
    if load.get("color_type", "color") != "color" or load.get("imdecode_backend", "cv2") != "cv2":
        raise _unsupported("this LoadImageFromFile", "supported: color_type='color' with the cv2 backend")
    pre = predictor.model.data_preprocessor
    rgb = bool(getattr(pre, "_channel_conversion", False))
    color = "RGB" if rgb else "BGR"
    resize: dict[str, Any] = {"kind": "none"}
    pad_to = pad_value = None
    for step, kind in zip(pipeline[1:], kinds[1:], strict=True):
        if kind in ("LoadAnnotations", "PackDetInputs"):
            continue
        if kind == "Resize":
            if not step.get("keep_ratio", False):
                w, h = step["scale"]
                resize = {"kind": "fixed", "scale": [int(w), int(h)]}
            else:
                resize = {"kind": "scale", "scale": [int(v) for v in step["scale"]]}
            resize["interpolation"] = step.get("interpolation", "bilinear")
            resize["backend"] = step.get("backend", "cv2")
        elif kind == "Pad" and step.get("size") is not None and not step.get("pad_to_square", False):
            w, h = step["size"]
            pad_to = [int(h), int(w)]
            value = step.get("pad_val", {"img": 0})
            value = value.get("img", 0) if isinstance(value, dict) else value
            values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * 3
            pad_value = values[::-1] if rgb else values  # given in the loader's BGR order
        else:
            raise _unsupported(f"test transform {kind}", "supported: Resize, a fixed-size Pad, PackDetInputs")
    pad_shape_boxes = False
    if pad_to is not None:
        # Whether the transform reports the padded size as img_shape (mmcv's Pad does): the box
        # decoders clip to img_shape.
        probe = adapter.inputs(_probe_image())
        meta = probe["data_samples"][0].metainfo
        pad_shape_boxes = tuple(meta["img_shape"]) == tuple(pad_to)
    return {
        "decoder": "cv2",
        "exif": True,
        "color": color,
        "resize": resize,
        "pad_to": pad_to,
        "pad_to_value": pad_value,
        "pad_divisor": max(int(getattr(pre, "pad_size_divisor", 1)), 1),
        "pad_fill": "mean",
        "img_shape_is_padded": pad_shape_boxes,
    }


def _probe_image() -> Any:
    from safepredict.images import LoadedImage

    return LoadedImage(np.full((37, 53, 3), 128, np.uint8), "BGR")


def build(model: Any, contract: Any, predictor: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """``(dense module, RoI module or None, post-processing recipe)`` for a loaded model in eval mode."""
    name = type(model).__name__
    pre = model.data_preprocessor
    mean = pre.mean.detach().clone().reshape(1, -1, 1, 1)
    std = pre.std.detach().clone().reshape(1, -1, 1, 1)
    if name == "FasterRCNN":
        return _two_stage(model, mean, std)
    head = model.bbox_head
    head_name = type(head).__name__
    if (name, head_name) not in (("RetinaNet", "RetinaHead"), ("RTMDet", "RTMDetSepBNHead")):
        raise _unsupported(f"{name} with {head_name}", "supported: RetinaNet (RetinaHead), RTMDet (RTMDetSepBNHead)")
    if getattr(head, "with_objectness", False):
        raise _unsupported(f"{head_name} with objectness", "supported: heads without objectness")
    levels = len(head.prior_generator.strides)
    test_cfg = _cfg(head.test_cfg)
    recipe: dict[str, Any] = {
        "kind": "dense",
        "style": "mmdet",
        "num_classes": int(head.num_classes),
        "activation": "sigmoid" if head.use_sigmoid_cls else "softmax",
        "test_cfg": test_cfg,
        "outputs": [f"cls.{i}" for i in range(levels)] + [f"box.{i}" for i in range(levels)],
    }
    if head_name == "RetinaHead":
        recipe["priors"] = _anchors(head.prior_generator)
        recipe["coder"] = _delta_coder(head.bbox_coder)
    else:
        gen = head.prior_generator
        recipe["priors"] = {
            "kind": "points",
            "strides": [float(s[0]) for s in gen.strides],
            "offset": float(gen.offset),
        }
        recipe["coder"] = {"kind": "distance", "clip_border": bool(getattr(head.bbox_coder, "clip_border", True))}
    return _Dense(model, mean, std), None, recipe


def _anchors(gen: Any) -> dict[str, Any]:
    if type(gen).__name__ != "AnchorGenerator":
        raise _unsupported(type(gen).__name__, "supported: AnchorGenerator")
    return {
        "kind": "anchors",
        "base": [a.detach().cpu().numpy().astype(float).tolist() for a in gen.base_anchors],
        "strides": [float(s[0]) for s in gen.strides],
        "offset": 0.0,
    }


def _delta_coder(coder: Any) -> dict[str, Any]:
    if type(coder).__name__ != "DeltaXYWHBBoxCoder" or getattr(coder, "add_ctr_clamp", False):
        raise _unsupported(type(coder).__name__, "supported: DeltaXYWHBBoxCoder without centre clamping")
    return {
        "kind": "deltas",
        "means": [float(v) for v in coder.means],
        "stds": [float(v) for v in coder.stds],
        "clip_border": bool(coder.clip_border),
        "wh_ratio_clip": 16 / 1000,
    }


def _two_stage(model: Any, mean: Any, std: Any) -> tuple[Any, Any, dict[str, Any]]:
    rpn = model.rpn_head
    roi_head = model.roi_head
    if type(rpn).__name__ != "RPNHead" or type(roi_head).__name__ != "StandardRoIHead":
        raise _unsupported(f"{type(rpn).__name__} + {type(roi_head).__name__}", "supported: RPNHead + StandardRoIHead")
    if roi_head.with_mask:
        raise _unsupported("mask heads", "the export covers boxes (Faster R-CNN, RetinaNet, RTMDet)")
    extractor = roi_head.bbox_roi_extractor
    bbox_head = roi_head.bbox_head
    if type(extractor).__name__ != "SingleRoIExtractor" or type(extractor.roi_layers[0]).__name__ != "RoIAlign":
        raise _unsupported(type(extractor).__name__, "supported: SingleRoIExtractor with RoIAlign")
    if bbox_head.custom_cls_channels or type(bbox_head.bbox_coder).__name__ != "DeltaXYWHBBoxCoder":
        raise _unsupported(type(bbox_head).__name__, "supported: a softmax bbox head with DeltaXYWHBBoxCoder")
    layer = extractor.roi_layers[0]
    levels = len(extractor.featmap_strides)
    rpn_levels = len(rpn.prior_generator.strides)
    size = layer.output_size
    recipe: dict[str, Any] = {
        "kind": "two_stage",
        "style": "mmdet",
        "num_classes": int(bbox_head.num_classes),
        "rpn": {
            "priors": _anchors(rpn.prior_generator),
            "coder": _delta_coder(rpn.bbox_coder),
            "test_cfg": _cfg(model.test_cfg.rpn),
            "activation": "sigmoid" if rpn.use_sigmoid_cls else "softmax",
        },
        "roi": {
            "levels": levels,
            "finest_scale": float(extractor.finest_scale),
            "output_size": list(size) if isinstance(size, tuple) else [size, size],
            "sampling_ratio": int(layer.sampling_ratio),
            "aligned": bool(layer.aligned),
            "spatial_scales": [float(v.spatial_scale) for v in extractor.roi_layers],
            "channels": int(extractor.out_channels),
        },
        "box": {
            "coder": _delta_coder(bbox_head.bbox_coder),
            "class_agnostic": bool(bbox_head.reg_class_agnostic),
            "test_cfg": _cfg(roi_head.test_cfg),
        },
        "outputs": [f"feature.{i}" for i in range(levels)]
        + [f"rpn.logits.{i}" for i in range(rpn_levels)]
        + [f"rpn.deltas.{i}" for i in range(rpn_levels)],
        "roi_inputs": [f"roi.feature.{i}" for i in range(levels)] + [f"roi.boxes.{i}" for i in range(levels)],
        "roi_outputs": ["roi.scores", "roi.deltas"],
    }
    return _Dense(model, mean, std, rpn=True, levels=levels), _RoI(extractor, bbox_head), recipe


def _Dense(model: Any, mean: Any, std: Any, *, rpn: bool = False, levels: int = 0) -> Any:
    import torch

    class Dense(torch.nn.Module):
        """Normalisation, backbone, neck and the dense head's forward; padded pixels in."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = model.backbone
            self.neck = model.neck
            self.head = model.rpn_head if rpn else model.bbox_head
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, image: Any) -> tuple[Any, ...]:
            x = self.neck(self.backbone((image - self.mean) / self.std))
            cls, box = self.head(x)[:2]
            feats = list(x[:levels]) if rpn else []
            return (*feats, *cls, *box)

    return Dense()


def _RoI(extractor: Any, bbox_head: Any) -> Any:
    import torch
    import torchvision

    class RoI(torch.nn.Module):
        """RoIAlign per level on given boxes (mmcv's RoIAlign, aligned), then the bbox head."""

        def __init__(self) -> None:
            super().__init__()
            layer = extractor.roi_layers[0]
            size = layer.output_size
            self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
            self.specs = [
                (float(v.spatial_scale), int(v.sampling_ratio), bool(v.aligned)) for v in extractor.roi_layers
            ]
            self.bbox_head = bbox_head

        def forward(self, *args: Any) -> tuple[Any, Any]:
            n = len(self.specs)
            pooled = []
            for feat, b, (scale, ratio, aligned) in zip(args[:n], args[n:], self.specs, strict=True):
                rois = torch.cat([torch.zeros_like(b[:, :1]), b], dim=1)
                pooled.append(torchvision.ops.roi_align(feat, rois, self.size, scale, ratio, aligned))
            cls, box = self.bbox_head(torch.cat(pooled, dim=0))
            return cls, box

    return RoI()


def sample_roi_inputs(roi: Any, dense_outputs: tuple[Any, ...], levels: int) -> tuple[Any, ...]:
    from safepredict.frameworks.detectron2.export import sample_roi_inputs as d2_sample

    return d2_sample(roi, dense_outputs, levels)


def describe_inside(recipe: dict[str, Any]) -> tuple[str, str]:
    """``(inside the graph, outside it)`` in words."""
    if recipe["kind"] == "dense":
        return (
            "normalisation (x - mean) / std, backbone, neck, the dense head's forward (class scores and box "
            "regressions per level)",
            "decode (cv2), colour conversion, Resize (cv2) and Pad of the test pipeline, padding to the "
            "divisor, priors, sigmoid, filter_scores_and_topk, box decoding, rescale, batched NMS, "
            "max_per_img (numpy)",
        )
    return (
        "normalisation (x - mean) / std, backbone, FPN, RPN head; second part: RoIAlign per level "
        "(RoiAlign op), bbox head (class scores and box deltas)",
        "decode (cv2), colour conversion, Resize (cv2), padding, anchors, RPN top-k per level, decoding, "
        "NMS per level, RoI level mapping, softmax, per-class decoding, rescale, multiclass NMS (numpy)",
    )


def framework_input(predictor: Any, image: Any) -> Any:
    """The normalised, padded batch tensor mmdet's data preprocessor makes of ``image`` (numpy, 1x3xHxW)."""
    import torch

    adapter = predictor._adapter
    inputs = adapter.inputs(image)
    with torch.no_grad():
        data = predictor.model.data_preprocessor(inputs, False)
    meta = data["data_samples"][0].metainfo
    return data["inputs"].cpu().numpy(), tuple(int(v) for v in meta["img_shape"])
