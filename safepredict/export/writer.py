"""Write a loaded SafePredictor's model as one ONNX file carrying its training contract.

The graph holds the dense network (normalisation, backbone, FPN, the heads' convolutions) and,
for a two-stage model, a second disconnected part (RoIAlign per level and the box head) that the
ONNX-side predictor feeds with the proposals it computed. Everything data-dependent (top-k, NMS,
level assignment, box decoding) runs in safepredict's own numpy code (``safepredict.engines.ops``),
from the recipe the export reads off the live model. The exporter is torch's dynamo exporter
(``torch.onnx.export(dynamo=True)``, onnxscript); where it fails on a module the TorchScript
exporter is used, and the metadata says which.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from safepredict.errors import InputError, UnsupportedModelError
from safepredict.export.onnxfile import FORMAT, FORMAT_VERSION, METADATA_KEY, METADATA_SHA_KEY, dumps, scan, sha256_text

logger = logging.getLogger("safepredict")

OPSET = 18  # RoiAlign's half_pixel mode (Detectron2/mmcv aligned=True) needs opset >= 16
EXPORT_FAMILIES = {
    ("detectron2", "GeneralizedRCNN"): "faster_rcnn",
    ("detectron2", "RetinaNet"): "retinanet",
    ("mmdet", "FasterRCNN"): "faster_rcnn",
    ("mmdet", "RetinaNet"): "retinanet",
    ("mmdet", "RTMDet"): "rtmdet",
}
# Graph input and output names (the engine reads them from the recipe).
IMAGE = "image"


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def file_sha256(path: str | os.PathLike[str] | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _export_module(
    module: Any, args: tuple[Any, ...], names: list[str], outputs: list[str], dynamic: dict[str, Any], exporter: str
) -> tuple[Any, str]:
    """``(onnx.ModelProto, exporter used)`` of ``module`` on ``args``."""
    import onnx
    import torch

    errors = []
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    for kind in order:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "m.onnx"
                if kind == "dynamo":
                    shapes = {name: dynamic.get(name) for name in names}
                    dims: dict[str, Any] = {}
                    for name, axes in list(shapes.items()):
                        if axes is None:
                            continue
                        spec = {}
                        for axis, (label, multiple) in axes.items():
                            dim = dims.setdefault(label, torch.export.Dim(label, min=1, max=8192))
                            spec[axis] = dim * multiple if multiple > 1 else dim
                        shapes[name] = spec
                    program = torch.onnx.export(
                        module,
                        args,
                        input_names=names,
                        output_names=outputs,
                        opset_version=OPSET,
                        dynamo=True,
                        verbose=False,
                        dynamic_shapes=_shapes_for(module, [shapes[n] for n in names]),
                        external_data=False,
                        optimize=True,
                    )
                    assert program is not None
                    program.save(str(out), external_data=False)
                else:
                    axes = {name: {axis: label for axis, (label, _) in spec.items()} for name, spec in dynamic.items()}
                    torch.onnx.export(
                        module,
                        args,
                        str(out),
                        input_names=names,
                        output_names=outputs,
                        opset_version=OPSET,
                        dynamo=False,
                        dynamic_axes=axes,
                        do_constant_folding=True,
                    )
                return onnx.load(str(out)), kind
        except Exception as exc:  # noqa: BLE001 - every exporter failure is reported together below
            logger.info("the %s exporter failed on %s: %s", kind, type(module).__name__, exc)
            errors.append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise UnsupportedModelError(
        f"torch could not export {type(module).__name__} to ONNX: " + "; ".join(errors),
        found=errors,
        fix="report the model's config; run it with SafePredictor on PyTorch meanwhile",
    )


def _record_threshold(recipe: dict[str, Any], threshold: float) -> None:
    """The effective score threshold in the recipe: the live model's was lowered to the candidate
    floor (the engine, like the adapters, keeps candidates below the threshold for the monitor)."""
    for part in (recipe, recipe.get("box")):
        if not isinstance(part, dict):
            continue
        if "score_threshold" in part:
            part["score_threshold"] = threshold
        cfg = part.get("test_cfg")
        if isinstance(cfg, dict) and "score_thr" in cfg:
            cfg["score_thr"] = threshold


def _shapes_for(module: Any, shapes: list[Any]) -> tuple[Any, ...]:
    """``dynamic_shapes`` in the structure of ``module.forward``'s signature (``*args`` nests them)."""
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return (tuple(shapes),)
    return tuple(shapes)


def _merge(dense: Any, roi: Any | None, roi_defaults: dict[str, Any]) -> Any:
    """One model of both parts; the RoI part's inputs get small defaults, so the dense part runs
    alone: onnxruntime needs every input, and computes the other part on its defaults. The RoI
    part is run with a small image fed (``recipe["roi_image"]``)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    if roi is None:
        return dense
    roi = onnx.compose.add_prefix(roi, "roi/", rename_inputs=False, rename_outputs=False)
    graph = helper.make_graph(
        list(dense.graph.node) + list(roi.graph.node),
        "safepredict",
        list(dense.graph.input) + list(roi.graph.input),
        list(dense.graph.output) + list(roi.graph.output),
        initializer=list(dense.graph.initializer)
        + list(roi.graph.initializer)
        + [numpy_helper.from_array(np.asarray(v), k) for k, v in roi_defaults.items()],
        value_info=list(dense.graph.value_info) + list(roi.graph.value_info),
    )
    opsets: dict[str, int] = {}
    for model in (dense, roi):
        for o in model.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name=dense.producer_name,
        producer_version=dense.producer_version,
    )
    merged.ir_version = max(dense.ir_version, roi.ir_version)
    merged.functions.extend(
        list(dense.functions) + [f for f in roi.functions if f.name not in {g.name for g in dense.functions}]
    )
    return merged


def _lock_text() -> str | None:
    try:
        from safepredict.lock import capture_environment
        from safepredict.lock.lockfile import dumps as lock_dumps
        from safepredict.lock.lockfile import new_lock

        return lock_dumps(new_lock(capture_environment(("onnx", "onnxruntime", "onnxscript"))))
    except Exception as exc:  # noqa: BLE001 - an export without the lock says why, it does not fail
        logger.warning("the exporting environment's lock could not be captured: %s", exc)
        return None


def _runtime() -> dict[str, Any]:
    from safepredict.engines.onnx_predictor import runtime_entries

    return runtime_entries()


def contract_json(contract: Any) -> dict[str, Any]:
    """The training contract as JSON values (what ``describe()`` prints, field by field)."""
    import attrs

    resize = attrs.asdict(contract.resize)
    return {
        "framework": contract.framework,
        "source": contract.source,
        "input_format": contract.input_format,
        "pixel_mean": list(contract.pixel_mean),
        "pixel_std": list(contract.pixel_std),
        "resize": {k: (list(v) if isinstance(v, tuple) else v) for k, v in resize.items()},
        "pad_divisor": contract.pad_divisor,
        "pad_value": contract.pad_value,
        "score_threshold": contract.score_threshold,
        "nms_iou": contract.nms_iou,
        "max_detections": contract.max_detections,
        "num_classes": contract.num_classes,
        "class_names": list(contract.class_names) if contract.class_names else None,
        "meta_architecture": contract.meta_architecture,
        "backbone": contract.backbone,
        "depth": contract.depth,
        "heads": sorted(contract.heads),
        "keys": {k: str(v) for k, v in contract.keys.items()},
    }


def export(
    predictor: Any,
    path: str | os.PathLike[str],
    *,
    reference: Any = None,
    exporter: str = "auto",
    example_size: tuple[int, int] | None = None,
) -> Path:
    """Write ``predictor``'s model to ``path`` as ONNX with the contract in its metadata; return the path.

    ``reference``: a ReferenceProfile (or its path) to carry for the monitor; default the
    predictor's own monitor reference, if it has one. ``exporter``: ``"auto"`` (dynamo, else
    TorchScript), ``"dynamo"`` or ``"torchscript"``.
    """
    import onnx
    import torch

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise InputError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}", found=exporter)
    framework = predictor.framework
    name = type(predictor.model).__name__
    family = EXPORT_FAMILIES.get((framework, name))
    if family is None:
        raise UnsupportedModelError(
            f"ONNX export does not support {framework} {name} yet",
            found=f"{framework} {name}",
            expected=sorted(f"{f} {n}" for f, n in EXPORT_FAMILIES),
            fix="export a supported family, or run this model with SafePredictor on PyTorch",
        )
    module = importlib.import_module(f"safepredict.frameworks.{framework}.export")
    contract = predictor.applied_contract
    dense, roi, recipe = module.build(predictor.model, contract, predictor)
    _record_threshold(recipe, float(predictor.score_threshold))
    preprocess = module.preprocess(predictor)
    divisor = max(int(preprocess["pad_divisor"]), 1)
    h, w = example_size or (4 * max(divisor, 32), 5 * max(divisor, 32))
    h, w = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    image = torch.rand(1, 3, h, w) * 255
    dense.eval()
    n_out = recipe["outputs"]
    with torch.no_grad():
        dense_proto, used = _export_module(
            dense, (image,), [IMAGE], n_out, {IMAGE: {2: ("height", divisor), 3: ("width", divisor)}}, exporter
        )
        roi_proto = None
        defaults: dict[str, Any] = {}
        if roi is not None:
            roi.eval()
            outs = dense(image)
            levels = recipe["roi"]["levels"]
            args = module.sample_roi_inputs(roi, outs, levels)
            names = recipe["roi_inputs"]
            dynamic = {}
            for i, n in enumerate(names):
                if i < levels:
                    dynamic[n] = {2: (f"fh{i}", 1), 3: (f"fw{i}", 1)}
                else:
                    dynamic[n] = {0: (f"n{i - levels}", 1)}
            roi_proto, used_roi = _export_module(roi, args, names, recipe["roi_outputs"], dynamic, exporter)
            if used_roi != used:
                used = f"{used} (dense), {used_roi} (RoI)"
            import numpy as np

            channels = recipe["roi"]["channels"]
            defaults = {n: np.zeros((1, channels, 1, 1), np.float32) for n in names[:levels]}
            defaults.update({n: np.asarray([[0.0, 0.0, 1.0, 1.0]], np.float32) for n in names[levels:]})
            # The RoI part runs with a small image fed to the dense part (onnxruntime runs the whole graph).
            side = max(divisor, 32)
            recipe["roi_image"] = [1, 3, side, side]
    model = _merge(dense_proto, roi_proto, defaults)
    del model.metadata_props[:]
    data = model.SerializeToString()
    graph_sha, _ = scan(data, Path(path))
    inside, outside = module.describe_inside(recipe)
    checkpoint = Path(predictor.artifact.checkpoint)
    if reference is None and getattr(predictor, "monitor", None) is not None:
        reference = getattr(predictor.monitor, "reference", None)
    if reference is not None and not hasattr(reference, "to_json"):
        from safepredict.monitor import ReferenceProfile

        reference = ReferenceProfile.load(reference)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "framework": framework,
        "family": family,
        "meta_architecture": name,
        "contract": contract_json(contract),
        "training_contract": contract_json(predictor.contract),
        "class_names": list(predictor.class_names) if predictor.class_names else None,
        "score_threshold": float(predictor.score_threshold),
        "threshold_key": predictor.threshold_key,
        "source": {
            "checkpoint": {"name": checkpoint.name, "sha256": file_sha256(checkpoint)},
            "config": _config_source(predictor),
        },
        "exporter": {
            "name": "torch.onnx.export",
            "mode": used,
            "opset": OPSET,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": _installed("onnxscript"),
            "safepredict": _installed("safepredict"),
            "python": platform.python_version(),
        },
        "input": {
            "name": IMAGE,
            "layout": "NCHW",
            "dtype": "float32",
            "batch": 1,
            "size": "dynamic",
            "multiple_of": divisor,
            "color": contract.input_format,
            "scale": "0-255",
            "normalised_inside": True,
            "mean": list(contract.pixel_mean),
            "std": list(contract.pixel_std),
            "padding": "bottom/right to a multiple of `multiple_of`, filled with the mean (0 after normalisation)",
        },
        "graph": {"inside": inside, "outside": outside},
        "preprocess": preprocess,
        "postprocess": recipe,
        "reference": reference.to_json() if reference is not None else None,
        "lock": _lock_text(),
        "runtime": _runtime(),
        "graph_sha256": graph_sha,
    }
    text = dumps(document)
    model.metadata_props.add(key=METADATA_KEY, value=text)
    model.metadata_props.add(key=METADATA_SHA_KEY, value=sha256_text(text))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(out)
    logger.info("exported %s %s to %s (%s, opset %d)", framework, name, out, used, OPSET)
    return out


def _config_source(predictor: Any) -> dict[str, Any]:
    """Where the training config came from and its sha256 (a file's, or the text embedded in the checkpoint)."""
    artifact = predictor.artifact
    source = str(artifact.training_source)
    if Path(source).is_file():
        return {"name": source, "sha256": file_sha256(source), "embedded": False}
    cfg = artifact.training_cfg
    text = getattr(cfg, "pretty_text", None) if cfg is not None else None
    if text is None and cfg is not None and hasattr(cfg, "dump"):
        text = cfg.dump()
    return {"name": source, "sha256": sha256_text(text) if isinstance(text, str) else None, "embedded": True}
