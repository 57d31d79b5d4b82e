"""The ONNX Runtime engine: an exported graph and safepredict's numpy steps, no torch, no framework.

:class:`OnnxEngine` reads a file written by :func:`safepredict.export.export` (the metadata says
how the image is prepared and how the graph's outputs become detections), checks its sha256s,
and runs: decode -> resize -> pad -> graph -> post-processing recipe -> :class:`Detections`.
It gives what a framework adapter gives (``run``, ``read``, the threshold and the candidates below
it), so :class:`~safepredict.SafePredictor` and its monitor work on it unchanged.

Imports onnxruntime, numpy, OpenCV and Pillow (for Detectron2's PIL resize and decoder) only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.detections import Detections
from safepredict.engines import ops
from safepredict.errors import FrameworkNotInstalled, InputError
from safepredict.export.onnxfile import read_metadata
from safepredict.images import LoadedImage

logger = logging.getLogger("safepredict")

CANDIDATE_SCORE_FLOOR = 0.01  # as the framework adapters keep candidates (frameworks/base.py)
F32 = np.float32


@attrs.frozen(eq=False)
class OnnxResult:
    """What the engine returns for one image (the shape of an adapter's RawResult)."""

    candidates: Detections
    final: Detections
    native: Detections
    stages: Mapping[str, Any] = attrs.field(factory=dict)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise FrameworkNotInstalled(
            f"running an ONNX model needs onnxruntime, which is not importable here ({exc})",
            expected="onnxruntime",
            found=str(exc),
            fix="pip install 'safepredict[onnx]'",
        ) from exc
    return onnxruntime


def _exif_transpose(image: Any) -> Any:
    """Detectron2's ``_apply_exif_orientation``: the EXIF orientation applied, as its ``read_image`` does."""
    from PIL import Image

    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - Detectron2 ignores unreadable EXIF the same way
        return image
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(int(exif.get(0x0112) or 0) if exif is not None else 0)
    return image.transpose(method) if method is not None else image


def decode_file(path: Path, decoder: str, color: str, exif: bool = True) -> LoadedImage:
    """An image file decoded as the framework's evaluation decodes it (PIL for Detectron2, cv2 for mmcv)."""
    if decoder == "PIL":
        from PIL import Image

        with Image.open(path) as im:
            im = _exif_transpose(im) if exif else im
            rgb = np.asarray(im.convert("RGB"))
        return LoadedImage(np.ascontiguousarray(rgb if color == "RGB" else rgb[:, :, ::-1]), color, path)
    import cv2

    data = np.fromfile(str(path), np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot decode image {path}", found=str(path), fix="check that it is an image file")
    return LoadedImage(bgr, "BGR", path)


@attrs.frozen
class Prepared:
    """The graph's input for one image and what the post-processing needs to map boxes back."""

    tensor: np.ndarray  # (1, 3, H, W) float32, 0-255, contract colour order, padded
    resized: tuple[int, int]  # (h, w) after the resize, before padding (the frameworks' image_size)
    original: tuple[int, int]
    scale: tuple[float, float]  # (w_scale, h_scale) the resize applied (mmcv's scale_factor)


def prepare(
    image: LoadedImage, spec: Mapping[str, Any], mean: Sequence[float], std: Sequence[float], pad_value: float = 0.0
) -> Prepared:
    """Resize and pad ``image`` as the exported model's test pipeline did (``spec``: the metadata's preprocess)."""
    array = image.to(spec["color"])
    h, w = array.shape[:2]
    resize = spec["resize"]
    kind = resize["kind"]
    if kind == "shortest_edge":
        new_h, new_w = ops.shortest_edge_size(h, w, int(resize["min_size"]), int(resize["max_size"]))
    elif kind == "scale":
        new_h, new_w = ops.rescale_size(h, w, resize["scale"])
    elif kind == "fixed":
        new_w, new_h = (int(v) for v in resize["scale"])
    else:
        new_h, new_w = h, w
    resized = ops.resize(array, new_h, new_w, resize.get("interpolation", "bilinear"), resize.get("backend", "cv2"))
    fixed = spec.get("pad_to")
    if fixed:
        resized_padded = ops.pad_to(resized, max(int(fixed[0]), new_h), max(int(fixed[1]), new_w), spec["pad_to_value"])
    else:
        resized_padded = resized
    ph, pw = ops.padded_size(resized_padded.shape[0], resized_padded.shape[1], int(spec.get("pad_divisor", 1)))
    tensor = resized_padded.astype(F32)
    fill = [float(m + pad_value * s) for m, s in zip(mean, std, strict=True)]
    tensor = ops.pad_to(tensor, ph, pw, fill)
    return Prepared(
        tensor=np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]),
        resized=(new_h, new_w),
        original=(h, w),
        scale=(new_w / w, new_h / h),
    )


class OnnxEngine:
    """One exported model in an onnxruntime session, run with the recipe its metadata carries."""

    framework = "onnx"
    threshold_inclusive = False
    keeps_candidates = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        document, self.graph_sha256, data = read_metadata(self.path)
        if document is None:
            raise InputError(
                f"{self.path} carries no safepredict metadata: how its input is prepared and its outputs "
                "decoded is not recorded in it",
                expected="an ONNX file written by `safepredict export`",
                found="an ONNX graph without safepredict metadata",
                source=str(self.path),
                fix="export the model with `safepredict export CHECKPOINT -o model.onnx`, or check it with "
                "`safepredict verify-export model.onnx CHECKPOINT IMAGES --preprocessing ...` declaring what your "
                "deployment code applies",
            )
        self.document = document
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the RoI part's default inputs would warn on every load
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        chosen = list(providers) if providers else [p for p in ("CPUExecutionProvider",) if p in available]
        missing = [p for p in chosen if p not in available]
        if missing:
            raise InputError(
                f"onnxruntime here has no {', '.join(missing)} (it has {', '.join(available)})",
                expected=missing,
                found=available,
                fix="pass providers=['CPUExecutionProvider'], or install onnxruntime-gpu for CUDA",
            )
        try:
            self.session = ort.InferenceSession(data, options, providers=chosen)
        except Exception as exc:
            raise InputError(
                f"onnxruntime cannot load {self.path}: {exc}", source=str(self.path), fix="re-export the model"
            ) from exc
        del data
        self.providers = tuple(self.session.get_providers())
        self.device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        self.model = self.session
        self.recipe: dict[str, Any] = document["postprocess"]
        self.spec: dict[str, Any] = document["preprocess"]
        contract = document["contract"]
        self.mean = tuple(float(v) for v in contract["pixel_mean"])
        self.std = tuple(float(v) for v in contract["pixel_std"])
        self.pad_value = float(contract.get("pad_value", 0.0))
        names = class_names if class_names is not None else document.get("class_names")
        self.class_names = tuple(names) if names else None
        self.score_threshold = float(document["score_threshold"])
        self.threshold_key = str(document["threshold_key"])
        self.color = self.spec["color"]
        self._floor = min(CANDIDATE_SCORE_FLOOR, self.score_threshold)
        self._roi_image = np.zeros(self.recipe.get("roi_image", [1, 3, 32, 32]), F32)

    # ------------------------------------------------------------------ what an adapter offers
    def read(self, path: Path) -> LoadedImage:
        return decode_file(path, self.spec["decoder"], self.color, bool(self.spec.get("exif", True)))

    def describe(self) -> str:
        exporter = self.document.get("exporter", {})
        return (
            f"onnxruntime {self.document['framework']} {self.document['meta_architecture']} on "
            f"{', '.join(self.providers)} ({self.path.name}, {exporter.get('mode')} exporter, opset "
            f"{exporter.get('opset')}), threshold {self.score_threshold} ({self.threshold_key}), "
            f"candidates kept down to {self._floor:g}"
        )

    def is_final(self, scores: np.ndarray) -> np.ndarray:
        return scores > self.score_threshold

    def run(self, image: LoadedImage, *, stages: bool = False) -> OnnxResult:
        prepared = prepare(image, self.spec, self.mean, self.std, self.pad_value)
        outputs = self.forward(prepared.tensor)
        boxes, scores, labels = self.postprocess(outputs, prepared)
        candidates = Detections(boxes, scores, labels, class_names=self.class_names, image_size=image.shape)
        final = candidates[self.is_final(candidates.scores)]
        kept = {"input": prepared.tensor, "outputs": outputs} if stages else {}
        return OnnxResult(candidates=candidates, final=final, native=final, stages=kept)

    def run_many(
        self,
        predictor: Any,
        images: Iterable[Any],
        color: str,
        *,
        workers: int | None = None,
        threads: int = 1,
        chunk_size: int = 4,
    ) -> Iterator[tuple[Any, Detections, Detections]]:
        """``(image_rgb or None, candidates, final)`` of each image, in order, here: onnxruntime runs
        its own intra-op threads (``threads=`` of ``from_onnx``), so ``workers``, ``threads`` and
        ``chunk_size`` of ``predict_many`` do not apply."""
        want_image = predictor.monitor is not None
        for image in images:
            loaded = predictor.load(image, color)
            result = self.run(loaded)
            yield (loaded.to("RGB") if want_image else None), result.candidates, result.final

    # ------------------------------------------------------------------ the graph
    def forward(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        names = list(self.recipe["outputs"])
        values = self.session.run(names, {"image": tensor})
        return dict(zip(names, values, strict=True))

    def roi_forward(self, features: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        names = self.recipe["roi_inputs"]
        feed = dict(zip(names, [*features, *boxes], strict=True))
        feed["image"] = self._roi_image
        scores, deltas = self.session.run(self.recipe["roi_outputs"], feed)
        return scores, deltas

    # ------------------------------------------------------------------ post-processing
    def postprocess(self, outputs: Mapping[str, np.ndarray], prepared: Prepared) -> tuple[np.ndarray, ...]:
        kind = self.recipe["kind"]
        style = self.recipe["style"]
        if kind == "dense" and style == "detectron2":
            boxes, scores, labels = d2_dense(outputs, self.recipe, prepared.resized, self._floor)
        elif kind == "two_stage" and style == "detectron2":
            boxes, scores, labels = d2_two_stage(outputs, self.recipe, prepared.resized, self._floor, self.roi_forward)
        else:
            from safepredict.engines import mmdet_recipes

            return mmdet_recipes.postprocess(self, outputs, prepared)
        return d2_to_image(boxes, scores, labels, prepared.resized, prepared.original)


# ---------------------------------------------------------------------- Detectron2 recipes


def _levels(outputs: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    out = []
    i = 0
    while f"{prefix}.{i}" in outputs:
        out.append(outputs[f"{prefix}.{i}"])
        i += 1
    return out


def _hwa(x: np.ndarray, k: int) -> np.ndarray:
    """``(1, A*k, H, W)`` -> ``(H*W*A, k)``: Detectron2's ``permute_to_N_HWA_K`` for one image."""
    _, ak, h, w = x.shape
    return x[0].reshape(ak // k, k, h, w).transpose(2, 3, 0, 1).reshape(-1, k)


def d2_dense(
    outputs: Mapping[str, np.ndarray], recipe: Mapping[str, Any], image_hw: tuple[int, int], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RetinaNet's ``inference_single_image`` (``_decode_per_level_predictions``, batched NMS, cap)."""
    k = int(recipe["num_classes"])
    anchors_spec, coder = recipe["anchors"], recipe["coder"]
    all_boxes, all_scores, all_labels = [], [], []
    for i, (cls, box) in enumerate(zip(_levels(outputs, "cls"), _levels(outputs, "box"), strict=True)):
        h, w = cls.shape[-2:]
        scores = ops.sigmoid(_hwa(cls, k)).ravel()
        deltas = _hwa(box, 4)
        anchors = ops.grid_anchors(
            np.asarray(anchors_spec["base"][i], F32), anchors_spec["strides"][i], h, w, anchors_spec["offset"]
        )
        idx = np.nonzero(scores > F32(threshold))[0]
        top = ops.topk_desc(scores[idx], int(recipe["topk"]))
        idx = idx[top]
        anchor, label = idx // k, idx % k
        all_boxes.append(ops.decode_d2(deltas[anchor], anchors[anchor], coder["weights"], coder["scale_clamp"]))
        all_scores.append(scores[idx])
        all_labels.append(label)
    boxes, scores, labels = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_labels)
    keep = ops.batched_nms(boxes, scores, labels, float(recipe["nms_iou"]), "torchvision")
    keep = keep[: int(recipe["max_detections"])]
    return boxes[keep], scores[keep], labels[keep]


def d2_proposals(outputs: Mapping[str, np.ndarray], rpn: Mapping[str, Any], image_hw: tuple[int, int]) -> np.ndarray:
    """The RPN's ``find_top_rpn_proposals`` for one image: proposal boxes, best first."""
    anchors_spec, coder = rpn["anchors"], rpn["coder"]
    boxes_l, scores_l, level_l = [], [], []
    for i, (logits, deltas) in enumerate(
        zip(_levels(outputs, "rpn.logits"), _levels(outputs, "rpn.deltas"), strict=True)
    ):
        h, w = logits.shape[-2:]
        scores = logits[0].transpose(1, 2, 0).reshape(-1)
        d = _hwa(deltas, 4)
        anchors = ops.grid_anchors(
            np.asarray(anchors_spec["base"][i], F32), anchors_spec["strides"][i], h, w, anchors_spec["offset"]
        )
        idx = ops.topk_desc(scores, int(rpn["pre_nms_topk"]))
        boxes_l.append(ops.decode_d2(d[idx], anchors[idx], coder["weights"], coder["scale_clamp"]))
        scores_l.append(scores[idx])
        level_l.append(np.full(len(idx), i, np.int64))
    boxes, scores, levels = np.concatenate(boxes_l), np.concatenate(scores_l), np.concatenate(level_l)
    valid = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
    boxes = ops.clip_boxes(boxes, *image_hw)
    size = F32(rpn["min_box_size"])
    keep = ((boxes[:, 2] - boxes[:, 0]) > size) & ((boxes[:, 3] - boxes[:, 1]) > size)
    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
    keep = ops.batched_nms(boxes, scores, levels, float(rpn["nms_iou"]), "torchvision")[: int(rpn["post_nms_topk"])]
    return boxes[keep]


def roi_inputs(proposals: np.ndarray, levels: np.ndarray, n_levels: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The boxes of each level, and the order that takes the graph's level-concatenated rows back to proposal order."""
    per_level = [np.ascontiguousarray(proposals[levels == i], F32).reshape(-1, 4) for i in range(n_levels)]
    order = np.concatenate([np.nonzero(levels == i)[0] for i in range(n_levels)])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return per_level, inverse


def d2_two_stage(
    outputs: Mapping[str, np.ndarray],
    recipe: Mapping[str, Any],
    image_hw: tuple[int, int],
    threshold: float,
    roi_forward: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GeneralizedRCNN's inference for one image: RPN proposals, the box head on them, ``fast_rcnn_inference``."""
    proposals = d2_proposals(outputs, recipe["rpn"], image_hw)
    roi, box = recipe["roi"], recipe["box"]
    features = _levels(outputs, "feature")
    levels = ops.roi_levels_d2(
        proposals, roi["min_level"], roi["max_level"], roi["canonical_box_size"], roi["canonical_level"]
    )
    per_level, inverse = roi_inputs(proposals, levels, len(features))
    cls, deltas = roi_forward(features, per_level)
    cls, deltas = cls[inverse], deltas[inverse]
    coder = box["coder"]
    boxes = ops.decode_d2(deltas, proposals, coder["weights"], coder["scale_clamp"])
    probs = ops.softmax(cls)
    valid = np.isfinite(boxes).all(axis=1) & np.isfinite(probs).all(axis=1)
    boxes, probs = boxes[valid], probs[valid]
    scores = probs[:, :-1]
    per_class = boxes.shape[1] // 4
    boxes = ops.clip_boxes(boxes.reshape(-1, per_class, 4), *image_hw)
    mask = scores > F32(threshold)
    rows, labels = np.nonzero(mask)
    chosen = boxes[rows, 0] if per_class == 1 else boxes[rows, labels]
    kept_scores = scores[rows, labels]
    keep = ops.batched_nms(chosen, kept_scores, labels, float(box["nms_iou"]), "torchvision")
    if int(box["max_detections"]) >= 0:
        keep = keep[: int(box["max_detections"])]
    return chosen[keep], kept_scores[keep], labels[keep].astype(np.int64)


def d2_to_image(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, resized: tuple[int, int], original: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detectron2's ``detector_postprocess``: boxes scaled to the image, clipped, empty ones dropped."""
    out_h, out_w = original
    scale_x, scale_y = out_w / resized[1], out_h / resized[0]
    boxes = boxes.astype(F32).copy()
    boxes[:, 0::2] *= F32(scale_x)
    boxes[:, 1::2] *= F32(scale_y)
    boxes = ops.clip_boxes(boxes, out_h, out_w)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    return boxes[keep], scores[keep].astype(F32), labels[keep].astype(np.int64)
