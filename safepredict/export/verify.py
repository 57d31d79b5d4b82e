"""verify-export: an ONNX model against the framework's own evaluation path, stage by stage.

Three stages, each measured on every image and each naming what departs from the training
contract:

1. **input**: the tensor the deployment side feeds (its resize, colour order) against the one the
   framework's test pipeline makes; a size fixed at export and a swapped colour order are named here.
2. **raw outputs**: the graph's outputs against the framework's own network on the same pixels,
   probed with raw and normalised pixels, which tells whether the graph normalises: normalisation
   applied twice (in the graph and by the deployment code) or not at all is named here.
3. **detections**: the final detections (the graph's outputs through safepredict's post-processing
   with the declared thresholds) against the framework's ``predict``, with the export parity
   criterion (docs/deploying.md); another score threshold, NMS IoU or detections cap is named here.

A file written by ``safepredict export`` declares its own preprocessing in its metadata; any other
ONNX (Detectron2's export tools, MMDeploy, your own) is read with the preprocessing you say your
deployment code applies (:class:`Declared`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.errors import InputError
from safepredict.export.onnxfile import read_metadata

MARGIN = 0.01  # the parity criterion compares detections above the threshold + MARGIN
MIN_IOU = 0.999
SCORE_TOL = 1e-4
INPUT_TOL = 1e-3  # normalised units
OUTPUT_RTOL = 1e-3  # of each output's largest magnitude


@attrs.frozen
class Declared:
    """What the deployment code does around the graph (for an ONNX without safepredict metadata).

    ``size``: ``None`` for the contract's resize, or ``(height, width)`` the code resizes every image
    to (``keep_ratio`` False stretches it). ``color``: the channel order fed. ``mean``/``std``: the
    normalisation the code applies before the graph (``None``: it feeds 0-255 pixels).
    ``score_threshold``/``nms_iou``/``max_detections``: the code's post-processing (``None``: the
    contract's).
    """

    size: tuple[int, int] | None = None
    keep_ratio: bool = False
    color: str = "RGB"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    score_threshold: float | None = None
    nms_iou: float | None = None
    max_detections: int | None = None

    @classmethod
    def from_json(cls, data: Any, source: str = "--preprocessing") -> Declared:
        if isinstance(data, (str, os.PathLike)):
            text = Path(data).read_text() if Path(data).is_file() else str(data)
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise InputError(f"{source}: not JSON nor a JSON file: {exc}", found=str(text)[:200]) from exc
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: expected a JSON object", found=type(data).__name__)
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown keys {unknown}", expected=sorted(known), found=unknown)
        values = dict(data)
        for key in ("size", "mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: {exc}", found=dict(data)) from exc


@attrs.frozen
class Stage:
    """One stage of the report: what was measured, and what departs from the training contract."""

    name: str
    ok: bool
    measured: Mapping[str, Any]
    departures: tuple[str, ...] = ()
    note: str = ""

    def describe(self) -> str:
        state = "ok" if self.ok else "DEPARTS"
        values = ", ".join(f"{k} {_fmt(v)}" for k, v in self.measured.items())
        lines = [f"[{state}] {self.name}: {values}" + (f" ({self.note})" if self.note else "")]
        lines.extend(f"    - {d}" for d in self.departures)
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


@attrs.frozen
class VerifyReport:
    """The stage-by-stage comparison of an ONNX model with the framework's evaluation path."""

    onnx: str
    checkpoint: str
    images: int
    safepredict_metadata: bool
    stages: tuple[Stage, ...]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stages)

    @property
    def departures(self) -> tuple[str, ...]:
        return tuple(d for s in self.stages for d in s.departures)

    def describe(self) -> str:
        head = (
            f"verify-export {self.onnx} against {self.checkpoint} on {self.images} image(s) "
            f"({'safepredict metadata' if self.safepredict_metadata else 'declared preprocessing'}): "
            + ("matches the training contract" if self.ok else "DEPARTS from the training contract")
        )
        return "\n".join([head, *(s.describe() for s in self.stages)])

    def to_json(self) -> dict[str, Any]:
        return {
            "onnx": self.onnx,
            "checkpoint": self.checkpoint,
            "images": self.images,
            "safepredict_metadata": self.safepredict_metadata,
            "ok": self.ok,
            "stages": [
                {
                    "name": s.name,
                    "ok": s.ok,
                    "measured": dict(s.measured),
                    "departures": list(s.departures),
                    "note": s.note,
                }
                for s in self.stages
            ],
        }


# ---------------------------------------------------------------------- helpers


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.abs(b).max(initial=0.0)) or 1.0
    return float(np.abs(a.astype(np.float64) - b).max(initial=0.0) / scale)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def parity(ref: Any, got: Any, threshold: float) -> tuple[int, int, int, float]:
    """``(compared, missing, extra, worst score difference)`` under the export parity criterion."""
    cut = threshold + MARGIN
    strong = np.nonzero(ref.scores > cut)[0]
    used = np.zeros(len(got), bool)
    overlaps = _iou(ref.boxes, got.boxes) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
    missing, worst = 0, 0.0
    for i in strong[np.argsort(-ref.scores[strong])]:
        ok = (~used) & (got.labels == ref.labels[i]) & (overlaps[i] >= MIN_IOU)
        ok &= np.abs(got.scores - ref.scores[i]) <= SCORE_TOL
        if not ok.any():
            missing += 1
            continue
        j = int(np.nonzero(ok)[0][np.argmax(overlaps[i][ok])])
        used[j] = True
        worst = max(worst, float(abs(got.scores[j] - ref.scores[i])))
    extra = 0
    for k in np.nonzero((got.scores > cut) & ~used)[0]:
        j = int(k)
        near = (ref.labels == got.labels[j]) & (overlaps[:, j] >= MIN_IOU)
        if not (near & (np.abs(ref.scores - got.scores[j]) <= SCORE_TOL)).any():
            extra += 1
    return len(strong), missing, extra, worst


def _declared_spec(base: Mapping[str, Any], declared: Declared) -> dict[str, Any]:
    """The engine's preprocess spec with the declared resize and colour order."""
    spec = dict(base)
    spec["color"] = declared.color
    if declared.size is not None:
        h, w = (int(v) for v in declared.size)
        backend = base["resize"].get("backend", "cv2")
        if declared.keep_ratio:
            spec["resize"] = {"kind": "scale", "scale": [w, h], "interpolation": "bilinear", "backend": backend}
        else:
            spec["resize"] = {"kind": "fixed", "scale": [w, h], "interpolation": "bilinear", "backend": backend}
        spec["pad_to"] = [h, w] if declared.keep_ratio else None
        spec["pad_to_value"] = [0.0, 0.0, 0.0]
        spec["pad_divisor"] = 1  # the code feeds exactly height x width
    return spec


def _image_input(session: Any) -> Any:
    """The graph's image input: its first required input (a graph may give its other inputs defaults)."""
    inputs = session.get_inputs()
    if not inputs:
        raise InputError("the ONNX graph has no required input to feed an image to", found="no inputs")
    return inputs[0]


def _static_size(session: Any) -> tuple[int, int] | None:
    """``(height, width)`` an NCHW or CHW image input is fixed to, or None where it is dynamic."""
    shape = _image_input(session).shape
    if len(shape) in (3, 4) and all(isinstance(v, int) for v in shape[-2:]):
        return int(shape[-2]), int(shape[-1])
    return None


def _fed(session: Any, tensor: np.ndarray) -> np.ndarray:
    """``tensor`` (1x3xHxW float32) as the graph's image input takes it: CHW for a 3-d input
    (Detectron2's tracing export), uint8 where it is typed so."""
    image = _image_input(session)
    out = tensor[0] if len(image.shape) == 3 else tensor
    if image.type == "tensor(uint8)":
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(np.float32)


def _graph_outputs(session: Any, tensor: np.ndarray, count: int | None) -> list[np.ndarray] | None:
    feed = {_image_input(session).name: _fed(session, tensor)}
    try:
        names = [o.name for o in session.get_outputs()][:count]
        return list(session.run(names, feed))
    except Exception:  # noqa: BLE001 - a graph that cannot take this input is reported, not raised
        return None


def detection_outputs(outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(boxes, scores, labels)`` of a graph that outputs detections, or None.

    Layouts: boxes ``(N, 4)`` with scores ``(N,)`` float and labels ``(N,)`` integer (Detectron2's
    tracing export); ``dets (N, 5)`` (boxes and score) with labels (MMDeploy). A batch of 1 is
    dropped: boxes ``(1, N, 4|5)`` say the graph is batched, and then its labels and scores are
    ``(1, N)`` (MMDeploy's ``dets (1, N, 5)``, ``labels (1, N)``).
    """
    batched = any(np.ndim(o) == 3 and np.shape(o)[0] == 1 for o in outputs)
    arrays = [
        np.asarray(o)[0] if batched and np.ndim(o) >= 2 and np.shape(o)[0] == 1 else np.asarray(o) for o in outputs
    ]
    boxes = next((a for a in arrays if a.ndim == 2 and a.shape[1] in (4, 5) and a.dtype.kind == "f"), None)
    if boxes is None:
        return None
    n = len(boxes)
    flat = [a for a in arrays if a.ndim == 1 and len(a) == n]
    labels = next((a for a in flat if a.dtype.kind in "iu"), None)
    scores = boxes[:, 4] if boxes.shape[1] == 5 else next((a for a in flat if a.dtype.kind == "f"), None)
    if labels is None or scores is None:
        return None
    return boxes[:, :4].astype(np.float32), scores.astype(np.float32), labels.astype(np.int64)


# ---------------------------------------------------------------------- the verification


def verify_export(
    onnx_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    *,
    preprocessing: Declared | Mapping[str, Any] | str | None = None,
    predictor: Any = None,
) -> VerifyReport:
    """Compare ``onnx_path`` with ``checkpoint``'s evaluation path on ``images``, stage by stage.

    ``preprocessing``: what the deployment code applies (:class:`Declared`, its JSON, or a JSON
    file); required for an ONNX without safepredict metadata. ``predictor``: a PyTorch
    SafePredictor of ``checkpoint`` already built (else one is built).
    """
    import onnxruntime as ort

    from safepredict.engines import onnxruntime as engine_mod
    from safepredict.images import as_path

    onnx_path = Path(onnx_path)
    if not images:
        raise InputError("verify-export needs at least one image", fix="pass a few images of the deployment")
    document, _, data = read_metadata(onnx_path)
    if predictor is None:
        from safepredict.predictor import SafePredictor

        predictor = SafePredictor.from_checkpoint(checkpoint, monitor=False)
    module = importlib.import_module(f"safepredict.frameworks.{predictor.framework}.export")
    base_spec = module.preprocess(predictor)
    dense, roi, recipe = module.build(predictor.model, predictor.applied_contract, predictor)
    contract = predictor.applied_contract
    mean = np.asarray(contract.pixel_mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(contract.pixel_std, np.float32).reshape(1, -1, 1, 1)
    if document is not None:
        declared = Declared(color=document["preprocess"]["color"])
        if preprocessing is not None:
            declared = preprocessing if isinstance(preprocessing, Declared) else Declared.from_json(preprocessing)
        graph_normalises_by_metadata = bool(document["input"].get("normalised_inside"))
    elif preprocessing is None:
        raise InputError(
            f"{onnx_path} carries no safepredict metadata: say what your deployment code applies around it",
            expected='--preprocessing \'{"size": [H, W] or null, "color": "RGB", "mean": [...] or null, ...}\'',
            found="an ONNX graph without safepredict metadata",
            source=str(onnx_path),
            fix="pass --preprocessing (docs/deploying.md lists the keys), or export with `safepredict export`",
        )
    else:
        declared = preprocessing if isinstance(preprocessing, Declared) else Declared.from_json(preprocessing)
        graph_normalises_by_metadata = False
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    static = _static_size(session)
    n_dense = len(recipe["outputs"])
    spec = _declared_spec(base_spec, declared)
    if static is not None and declared.size is None:
        # The graph takes one size only: what the deployment code must resize to.
        spec = _declared_spec(base_spec, attrs.evolve(declared, size=static))

    input_deps: list[str] = []
    output_deps: list[str] = []
    det_deps: list[str] = []
    input_diff = 0.0
    output_rel: dict[str, float] = {"raw": 0.0, "normalised": 0.0}
    compared = missing = extra = 0
    worst_score = 0.0
    comparable = True
    e2e = False  # the graph outputs detections itself (stage 2 has no raw outputs to compare)
    inside_votes = outside_votes = 0
    for image_ref in images:
        path = as_path(image_ref)
        loaded = predictor.load(path if path is not None else image_ref)
        # 1. the input tensor
        framework_tensor, _ = module.framework_input(predictor, loaded)
        ours = engine_mod.prepare(loaded, base_spec, contract.pixel_mean, contract.pixel_std, contract.pad_value)
        ours_norm = (ours.tensor - mean) / std
        input_diff = max(input_diff, _rel(ours_norm, framework_tensor) * float(np.abs(framework_tensor).max() or 1))
        fed = engine_mod.prepare(loaded, spec, contract.pixel_mean, contract.pixel_std, contract.pad_value)
        if fed.resized != ours.resized and not any("size" in d for d in input_deps):
            how = (
                f"fixed at export to {static[0]}x{static[1]}"
                if static is not None
                else f"resized to {spec['resize'].get('scale')} (w, h)"
            )
            input_deps.append(
                f"input size: the graph is fed {fed.resized[0]}x{fed.resized[1]} ({how}) where the contract's "
                f"resize ({contract.resize.describe()}; {contract.where('resize.min_size')}) gives "
                f"{ours.resized[0]}x{ours.resized[1]} for a {loaded.shape[0]}x{loaded.shape[1]} image"
            )
        if declared.color != contract.input_format and not any("colour" in d for d in input_deps):
            input_deps.append(
                f"colour order: the deployment feeds {declared.color}, the model was trained on "
                f"{contract.input_format} ({contract.where('input_format')})"
            )
        # 2. raw outputs, at the fed geometry in the contract's colour order (normalisation isolated)
        geometry = engine_mod.prepare(
            loaded, {**spec, "color": base_spec["color"]}, contract.pixel_mean, contract.pixel_std, contract.pad_value
        )
        raw = geometry.tensor
        if static is not None and raw.shape[2:] != static:
            comparable = False
        import torch

        # The framework's network needs its size divisibility: padded (with the mean, 0 once
        # normalised) for it; a graph fed another size cannot give the same outputs (stage 3 then).
        divisor = int(base_spec.get("pad_divisor", 1))
        padded = engine_mod.ops.padded_size(raw.shape[2], raw.shape[3], divisor)
        network_in = raw
        if padded != raw.shape[2:]:
            network_in = engine_mod.ops.pad_to(raw[0].transpose(1, 2, 0), *padded, mean.ravel().tolist())
            network_in = np.ascontiguousarray(network_in.transpose(2, 0, 1)[None])
        with torch.no_grad():
            reference = [t.numpy() for t in dense(torch.from_numpy(network_in))][:n_dense]
        g_raw = _graph_outputs(session, raw, n_dense)
        g_norm = _graph_outputs(session, (raw - mean) / std, n_dense)
        shapes_ok = (
            g_raw is not None
            and len(g_raw) == len(reference)
            and all(a.shape == b.shape for a, b in zip(g_raw, reference, strict=True))
        )
        if not shapes_ok or g_raw is None or g_norm is None:
            # Not the dense layout: a graph that outputs detections itself is compared at stage 3.
            end_to_end = _end_to_end(session, raw, (raw - mean) / std, fed, declared, loaded, mean, std, predictor)
            if end_to_end is None:
                comparable = False
                continue
            e2e = True
            (c, m, e, w), votes = end_to_end
            compared, missing, extra, worst_score = compared + c, missing + m, extra + e, max(worst_score, w)
            inside_votes += votes[0]
            outside_votes += votes[1]
            continue
        r_raw = max(_rel(a, b) for a, b in zip(g_raw, reference, strict=True))
        r_norm = max(_rel(a, b) for a, b in zip(g_norm, reference, strict=True))
        output_rel["raw"] = max(output_rel["raw"], r_raw)
        output_rel["normalised"] = max(output_rel["normalised"], r_norm)
        inside = r_raw <= OUTPUT_RTOL
        outside = r_norm <= OUTPUT_RTOL
        inside_votes += inside
        outside_votes += outside
        # 3. detections: the fed tensor (declared resize, colour, normalisation) through the graph and
        # safepredict's post-processing with the declared thresholds, against the framework's predict.
        tensor = fed.tensor
        if declared.mean is not None:
            tensor = (tensor - np.asarray(declared.mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(
                declared.std if declared.std is not None else (1.0, 1.0, 1.0), np.float32
            ).reshape(1, -1, 1, 1)
        outs = _graph_outputs(session, tensor, n_dense)
        if outs is None:
            comparable = False
            continue
        threshold = float(declared.score_threshold) if declared.score_threshold is not None else None
        got = _detections(
            predictor,
            recipe,
            roi,
            dict(zip(recipe["outputs"], outs, strict=True)),
            fed,
            declared,
            threshold,
            loaded,
            spec,
        )
        ref = predictor.predict(loaded.array, color=loaded.color)
        c, m, e, w = parity(ref, got, predictor.score_threshold)
        compared, missing, extra, worst_score = compared + c, missing + m, extra + e, max(worst_score, w)

    # normalisation, judged over all images
    user_normalises = declared.mean is not None
    if comparable and inside_votes + outside_votes:
        graph_normalises = inside_votes >= outside_votes
        if graph_normalises and user_normalises:
            output_deps.append(
                "normalisation applied twice: the graph normalises its input ((x - mean) / std inside) and the "
                f"deployment code normalises too (mean {list(declared.mean or ())}); feed 0-255 pixels"
            )
        elif not graph_normalises and not user_normalises:
            output_deps.append(
                "normalisation missing: the graph expects normalised input and the deployment code feeds 0-255 "
                f"pixels; apply (x - {list(contract.pixel_mean)}) / {list(contract.pixel_std)} "
                f"({contract.where('pixel_mean')})"
            )
        elif user_normalises and not graph_normalises:
            if not np.allclose(declared.mean or (), contract.pixel_mean) or not np.allclose(
                declared.std or (), contract.pixel_std
            ):
                output_deps.append(
                    f"mean/std: the deployment code uses mean {list(declared.mean or ())}, std "
                    f"{list(declared.std or ())}; the model was trained with {list(contract.pixel_mean)}, "
                    f"{list(contract.pixel_std)} ({contract.where('pixel_mean')})"
                )
    elif comparable and not e2e:
        output_deps.append(
            f"the graph's outputs differ from the framework's network on the same pixels (max relative "
            f"difference {min(output_rel.values()):.3g}): another model, or steps inside the graph the contract "
            "does not have"
        )
    for field, value, training in (
        ("score_threshold", declared.score_threshold, contract.score_threshold),
        ("nms_iou", declared.nms_iou, contract.nms_iou),
        ("max_detections", declared.max_detections, contract.max_detections),
    ):
        if value is not None and training is not None and not np.isclose(float(value), float(training)):
            det_deps.append(
                f"{field}: the deployment uses {value}, the training evaluation {training} ({contract.where(field)})"
            )
    if comparable and (missing or extra):
        det_deps.append(
            f"{missing} of {compared} detections of the framework's evaluation above the threshold + {MARGIN} have "
            f"no match (same label, IoU >= {MIN_IOU}, score within {SCORE_TOL}), {extra} extra"
        )
    stages = (
        Stage(
            "input tensor",
            ok=not input_deps and input_diff <= INPUT_TOL,
            measured={"max |safepredict - framework| (normalised)": input_diff},
            departures=tuple(input_deps),
            note="the deployment's resize and colour order against the framework's test pipeline",
        ),
        Stage(
            "raw outputs",
            ok=comparable and not output_deps,
            measured=(
                {"normalisation": _verdict(inside_votes, outside_votes)}
                if e2e
                else {f"max relative difference ({k} pixels in)": v for k, v in output_rel.items()}
            ),
            departures=tuple(output_deps),
            note=(
                "the graph outputs detections: normalisation judged from its detections on raw and normalised pixels"
                if e2e and comparable
                else "graph outputs compared with the framework's network"
                if comparable
                else "not comparable: the graph's outputs are not the framework's dense outputs at this size"
            )
            + ("; metadata says normalisation is inside" if graph_normalises_by_metadata else ""),
        ),
        Stage(
            "final detections",
            ok=comparable and not det_deps,
            measured={"compared": compared, "missing": missing, "extra": extra, "max score difference": worst_score},
            departures=tuple(det_deps),
            note=f"parity above the threshold + {MARGIN} ({predictor.threshold_key} = {predictor.score_threshold:g})",
        ),
    )
    return VerifyReport(
        onnx=str(onnx_path),
        checkpoint=str(checkpoint),
        images=len(images),
        safepredict_metadata=document is not None,
        stages=stages,
    )


def _verdict(inside: int, outside: int) -> str:
    if inside > outside:
        return "inside the graph"
    if outside > inside:
        return "expected before the graph"
    return "not judged (no image gave the framework's detections either way)"


def _end_to_end(
    session: Any,
    raw: np.ndarray,
    normalised: np.ndarray,
    fed: Any,
    declared: Declared,
    loaded: Any,
    mean: np.ndarray,
    std: np.ndarray,
    predictor: Any,
) -> tuple[tuple[int, int, int, float], tuple[int, int]] | None:
    """Stage 3 for a graph that outputs detections: ``(parity of the fed tensor, (inside, outside) votes)``.

    The boxes are in the fed image's pixels: taken back to the image by the resize's scale, as the
    deployment code would. Normalisation is judged by which of raw and normalised pixels (at the
    fed geometry, the contract's colour order) gives the framework's detections.
    """
    from safepredict.detections import Detections

    def detections(tensor: np.ndarray) -> Any:
        outs = _graph_outputs(session, tensor, None)
        found = detection_outputs(outs) if outs is not None else None
        if found is None:
            return None
        boxes, scores, labels = found
        boxes = boxes.copy()
        boxes[:, 0::2] /= np.float32(fed.scale[0])
        boxes[:, 1::2] /= np.float32(fed.scale[1])
        h, w = loaded.shape
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        keep = scores > declared.score_threshold if declared.score_threshold is not None else np.ones(len(scores), bool)
        return Detections(boxes[keep], scores[keep], labels[keep], image_size=loaded.shape)

    ref = predictor.predict(loaded.array, color=loaded.color)
    tensor = fed.tensor
    if declared.mean is not None:
        std_d = np.asarray(declared.std if declared.std is not None else (1.0, 1.0, 1.0), np.float32)
        tensor = (tensor - np.asarray(declared.mean, np.float32).reshape(1, -1, 1, 1)) / std_d.reshape(1, -1, 1, 1)
    got = detections(tensor)
    if got is None:
        return None
    votes = [0, 0]
    if raw.shape == fed.tensor.shape:
        for k, probe in enumerate((raw, normalised)):
            dets = detections(probe)
            if dets is not None and len(ref) and parity(ref, dets, predictor.score_threshold)[1] == 0:
                votes[k] = 1
    return parity(ref, got, predictor.score_threshold), (votes[0], votes[1])


def _detections(
    predictor: Any,
    recipe: Mapping[str, Any],
    roi: Any,
    outputs: Mapping[str, np.ndarray],
    fed: Any,
    declared: Declared,
    threshold: float | None,
    loaded: Any,
    spec: Mapping[str, Any],
) -> Any:
    """The graph's outputs through safepredict's post-processing, with the declared post-processing values."""
    import copy

    from safepredict.detections import Detections
    from safepredict.engines import mmdet_recipes
    from safepredict.engines import onnxruntime as engine_mod

    plan: dict[str, Any] = copy.deepcopy(dict(recipe))
    thr = predictor.score_threshold if threshold is None else threshold
    _apply_postprocessing(plan, declared)
    roi_forward = _torch_roi(roi)
    floor = thr
    if plan["style"] == "detectron2":
        if plan["kind"] == "dense":
            boxes, scores, labels = engine_mod.d2_dense(outputs, plan, fed.resized, floor)
        else:
            boxes, scores, labels = engine_mod.d2_two_stage(outputs, plan, fed.resized, floor, roi_forward)
        boxes, scores, labels = engine_mod.d2_to_image(boxes, scores, labels, fed.resized, fed.original)
    else:

        class _Engine:
            _floor = floor
            score_threshold = thr

        shim = _Engine()
        shim.spec = spec  # type: ignore[attr-defined]
        shim.recipe = plan  # type: ignore[attr-defined]
        shim.roi_forward = roi_forward  # type: ignore[attr-defined]
        boxes, scores, labels = mmdet_recipes.postprocess(shim, outputs, fed)
    keep = scores > thr
    return Detections(boxes[keep], scores[keep], labels[keep], image_size=loaded.shape)


def _apply_postprocessing(recipe: dict[str, Any], declared: Declared) -> None:
    """The declared NMS IoU and detections cap written into a recipe (the score threshold is passed)."""
    targets = []
    if recipe["kind"] == "dense":
        targets.append(recipe)
    else:
        targets.append(recipe["box"])
    for target in targets:
        cfg = target.get("test_cfg")
        if declared.nms_iou is not None:
            if cfg is not None:
                cfg.setdefault("nms", {})["iou_threshold"] = float(declared.nms_iou)
            else:
                target["nms_iou"] = float(declared.nms_iou)
        if declared.max_detections is not None:
            if cfg is not None:
                cfg["max_per_img"] = int(declared.max_detections)
            else:
                target["max_detections"] = int(declared.max_detections)


def _torch_roi(roi: Any) -> Any:
    if roi is None:
        return None

    def forward(features: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            args = [torch.from_numpy(np.ascontiguousarray(f)) for f in features]
            args += [torch.from_numpy(np.ascontiguousarray(b)) for b in boxes]
            scores, deltas = roi(*args)
        return scores.numpy(), deltas.numpy()

    return forward
