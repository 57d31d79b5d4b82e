"""Read MMDetection's training contract from an mmengine config or from a checkpoint alone.

Configs are read as data by :mod:`safepredict.frameworks.safe_config`, which evaluates
mmengine's config language without running it (a ``.py`` config is Python: mmengine executes
it, and a checkpoint's embedded text would run its author's code); the result is the
``Config`` that ``Config.fromfile`` gives. Only with ``trust=True`` does mmengine's own loader
run: ``Config.fromfile`` for a file, ``Config.fromstring(text, ".py")`` for the config text
every mmengine checkpoint embeds (``meta['cfg']``, or ``message_hub['runtime_info']['cfg']``).
Class names come from ``meta['dataset_meta']``.

What is read, key by key, is listed in docs/contract.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safepredict.contract import (
    ResizePolicy,
    TestTimeAugmentation,
    TrainingContract,
    TrainingProgress,
    check_training_config,
    diff,
)
from safepredict.errors import ConfigError, SafePredictError, TrainingArtifactNotFound
from safepredict.frameworks import safe_config
from safepredict.frameworks.artifact import TrainingArtifact
from safepredict.frameworks.mmdet import keys as keys_table

__all__ = ["discover", "embedded_config", "load_config", "read_contract"]

FRAMEWORK = "mmdet"
_RESIZES = ("Resize", "FixShapeResize", "ResizeShortestEdge", "RandomResize", "RandomChoiceResize")


_config_class = safe_config._config_class  # the one mmengine import guard


def load_config(config: Any, *, trust: bool = False) -> tuple[Any, str]:
    """``(Config, source)`` from a file path, an mmengine ``Config`` or a plain dict.

    A file is read as data (:func:`safe_config.load_file`); one that needs code to load raises
    :class:`~safepredict.errors.UntrustedCodeError`. ``trust=True`` runs ``Config.fromfile``.
    """
    Config = _config_class()
    if isinstance(config, Config):
        return config, str(getattr(config, "filename", None) or "<mmengine Config object>")
    if isinstance(config, Mapping):
        return Config(dict(config)), "<config dict>"
    path = Path(config)
    if not path.is_file():
        raise TrainingArtifactNotFound(
            f"MMDetection config {path} does not exist",
            source=str(path),
            fix="pass the config file the model was trained with (mmengine dumps it into work_dir)",
        )
    try:
        return safe_config.load_file(path, trust=trust), str(path)
    except SafePredictError:
        raise
    except Exception as exc:
        raise ConfigError(f"MMDetection config {path} could not be read: {exc}", source=str(path)) from exc


def embedded_config(
    data: Mapping[str, Any], path: str | Path = "<checkpoint>", *, trust: bool = False
) -> tuple[Any, str] | None:
    """``(Config, source)`` from the config text an mmengine checkpoint carries, or None.

    The text is read as data; text that needs code raises
    :class:`~safepredict.errors.UntrustedCodeError` naming ``checkpoint X: meta.cfg`` and the
    line. ``trust=True`` runs ``Config.fromstring(text, ".py")``.
    """
    meta = data.get("meta")
    candidates: list[tuple[Any, str]] = []
    if isinstance(meta, Mapping) and meta.get("cfg"):
        candidates.append((meta["cfg"], "meta.cfg"))
    hub = data.get("message_hub")
    if isinstance(hub, Mapping):
        info = hub.get("runtime_info")
        if isinstance(info, Mapping) and info.get("cfg"):
            candidates.append((info["cfg"], "message_hub.runtime_info.cfg"))
    if not candidates:
        return None
    Config = _config_class()
    text, key = candidates[0]
    source = f"{path}:{key}"
    if isinstance(text, Config):
        return text, source
    try:
        return safe_config.load_text(str(text), f"checkpoint {path}: {key}", trust=trust), source
    except SafePredictError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"the config text embedded in checkpoint {path} could not be read: {exc}", source=source
        ) from exc


# --------------------------------------------------------------------------- pipeline


def _type_name(step: Any) -> str:
    kind = step.get("type") if isinstance(step, Mapping) else None
    if kind is None:
        return type(step).__name__
    if isinstance(kind, str):
        return kind.rsplit(".", 1)[-1]
    return str(getattr(kind, "__name__", kind))


def _find_pipeline(cfg: Any, loaders: Sequence[str], fallback: str | None) -> tuple[list[Any], str] | None:
    for loader in loaders:
        node = cfg.get(loader)
        if not node or "dataset" not in node:
            continue
        dataset, path = node["dataset"], f"{loader}.dataset"
        # Dataset wrappers (RepeatDataset, ClassBalancedDataset, ...) nest the real data set.
        while isinstance(dataset, Mapping) and "pipeline" not in dataset and "dataset" in dataset:
            dataset, path = dataset["dataset"], f"{path}.dataset"
        if isinstance(dataset, Mapping) and "pipeline" in dataset:
            return list(dataset["pipeline"]), f"{path}.pipeline"
    if fallback and cfg.get(fallback):
        return list(cfg[fallback]), fallback
    return None


def _flatten(pipeline: Sequence[Any], path: str) -> list[tuple[Any, str]]:
    """Steps of a pipeline with their key paths, the first branch of a TestTimeAug spliced in
    (``pipeline[1].transforms[0][0]``: the copy a single pass runs)."""
    steps: list[tuple[Any, str]] = []
    for index, step in enumerate(pipeline):
        steps.append((step, f"{path}[{index}]"))
        if _type_name(step) == "TestTimeAug":
            for number, group in enumerate(step.get("transforms", [])):
                if group:
                    steps.append((group[0], f"{path}[{index}].transforms[{number}][0]"))
    return steps


def _tta_step(pipeline: Sequence[Any]) -> tuple[int, Any] | None:
    for index, step in enumerate(pipeline):
        if _type_name(step) == "TestTimeAug":
            return index, step
    return None


def _tta_copies(step: Any) -> dict[str, Any]:
    """The sizes and flips of a ``TestTimeAug`` step: every combination of one transform per group."""
    sizes: list[int] = []
    longs: list[int] = []
    flip = False
    groups = step.get("transforms") if isinstance(step, Mapping) else None
    for group in groups if isinstance(groups, Sequence) and not isinstance(groups, str) else ():
        for transform in group if isinstance(group, Sequence) and not isinstance(group, str) else ():
            if not isinstance(transform, Mapping):
                continue  # mmengine refuses it when it builds the pipeline; here it sets nothing
            name = _type_name(transform)
            try:
                if name in _RESIZES and transform.get("scale") is not None:
                    pair = _pair(transform["scale"])
                    sizes.append(min(pair))
                    longs.append(max(pair))
                elif name == "RandomFlip" and float(transform.get("prob", 0) or 0) > 0:
                    flip = True
            except (TypeError, ValueError, IndexError):
                continue  # a malformed copy: the contract describes the ones it can read
    return {"min_sizes": tuple(sizes), "max_size": max(longs) if longs else None, "flip": flip}


def _tta(
    cfg: Any, pipeline: Sequence[Any], path: str, keys: dict[str, str], notes: dict[str, str], raw: dict[str, Any]
) -> TestTimeAugmentation:
    """Whether the evaluation pipeline is a ``TestTimeAug``, and the ``tta_model``/``tta_pipeline`` it may hold.

    mmengine's validation and test loops run the test pipeline as written; ``tta_model`` and
    ``tta_pipeline`` are used only by ``tools/test.py --tta``, which swaps them in.
    """
    found = _tta_step(pipeline)
    declared = bool(cfg.get("tta_model") or cfg.get("tta_pipeline"))
    if found is not None:
        index, step = found
        keys["tta.enabled"] = f"{path}[{index}].type"
        for field in ("min_sizes", "max_size", "flip"):
            keys[f"tta.{field}"] = f"{path}[{index}].transforms"
        notes["tta.enabled"] = "the test pipeline is a TestTimeAug: the evaluation merged augmented copies"
        copies = _tta_copies(step)
        raw.update({"tta.enabled": True, **{f"tta.{k}": v for k, v in copies.items()}})
        return TestTimeAugmentation(enabled=True, declared=declared, **copies)
    keys["tta.enabled"] = path
    raw["tta.enabled"] = False
    tta_pipeline = cfg.get("tta_pipeline")
    declared_step = _tta_step(tta_pipeline) if tta_pipeline else None
    if declared:
        notes["tta.enabled"] = (
            "not in the test pipeline; the config's tta_model/tta_pipeline run only with tools/test.py --tta"
        )
    else:
        notes["tta.enabled"] = "the test pipeline has no TestTimeAug"
    copies = _tta_copies(declared_step[1]) if declared_step is not None else {}
    return TestTimeAugmentation(enabled=False, declared=declared, **copies)


def _pair(scale: Any) -> tuple[int, int]:
    if isinstance(scale, int | float):
        return int(scale), int(scale)
    values = [int(v) for v in scale]
    return values[0], values[1]


def _resize_policy(step: Any) -> ResizePolicy:
    name = _type_name(step)
    backend = str(step.get("backend", "cv2"))
    interpolation = str(step.get("interpolation", "bilinear"))
    if name == "ResizeShortestEdge":
        scale = step["scale"]
        short = int(scale) if isinstance(scale, int | float) else min(int(v) for v in scale)
        max_size = step.get("max_size")
        return ResizePolicy(
            kind="shortest_edge",
            min_size=(short,),
            max_size=max_size,
            keep_ratio=True,
            interpolation=interpolation,
            backend=backend,
            sample_style="choice",
        )
    if name == "FixShapeResize":
        w, h = int(step["width"]), int(step["height"])
        keep = bool(step.get("keep_ratio", False))
        return _scale_policy((w, h), keep, interpolation, backend)
    if name == "RandomChoiceResize":
        scales = [_pair(s) for s in step["scales"]]
        keep = bool(step.get("keep_ratio", True))
        return ResizePolicy(
            kind="scale" if keep else "fixed",
            min_size=tuple(min(s) for s in scales),
            max_size=max(max(s) for s in scales),
            scale=scales[-1],
            keep_ratio=keep,
            interpolation=interpolation,
            backend=backend,
            sample_style="choice",
        )
    if name == "RandomResize":
        scale = step["scale"]
        keep = bool(step.get("keep_ratio", False))
        ratio = step.get("ratio_range")
        if ratio is not None:
            base = _pair(scale)
            scales = [
                (int(base[0] * ratio[0]), int(base[1] * ratio[0])),
                (int(base[0] * ratio[1]), int(base[1] * ratio[1])),
            ]
        elif isinstance(scale, Sequence) and scale and not isinstance(scale[0], int | float):
            scales = [_pair(s) for s in scale]
        else:
            scales = [_pair(scale)]
        return ResizePolicy(
            kind="scale" if keep else "fixed",
            min_size=tuple(min(s) for s in scales),
            max_size=max(max(s) for s in scales),
            scale=scales[-1],
            keep_ratio=keep,
            interpolation=interpolation,
            backend=backend,
            sample_style="range" if len(scales) > 1 else None,
        )
    # mmdet's Resize (mmcv's Resize): keep_ratio defaults to False.
    keep = bool(step.get("keep_ratio", False))
    if step.get("scale") is None:
        raise ConfigError(
            f"the test {name} sets scale_factor={step.get('scale_factor')!r} and no scale; "
            "safepredict reads only a fixed test scale",
            found=dict(step),
        )
    return _scale_policy(_pair(step["scale"]), keep, interpolation, backend)


def _scale_policy(scale: tuple[int, int], keep: bool, interpolation: str, backend: str) -> ResizePolicy:
    return ResizePolicy(
        kind="scale" if keep else "fixed",
        # keep_ratio: mmcv.rescale_size fits the long edge into max(scale) and the short edge
        # into min(scale), which is Detectron2's shortest-edge rule with a long-edge cap.
        min_size=(min(scale),) if keep else (),
        max_size=max(scale) if keep else None,
        scale=scale,
        keep_ratio=keep,
        interpolation=interpolation,
        backend=backend,
    )


def _pipeline_resize(
    pipeline: Sequence[Any], path: str
) -> tuple[ResizePolicy, dict[str, str], dict[str, Any], dict[str, str]]:
    """The first resizing step of ``pipeline``: its policy, key paths, raw values and notes."""
    keys: dict[str, str] = {}
    raw: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for step, where in _flatten(pipeline, path):
        name = _type_name(step)
        if name not in _RESIZES:
            continue
        scale_key = f"{where}.scales" if name == "RandomChoiceResize" else f"{where}.scale"
        if name == "FixShapeResize":
            scale_key = f"{where}.width"
        keys.update(
            {
                "resize.kind": f"{where}.type",
                "resize.scale": scale_key,
                "resize.min_size": scale_key,
                "resize.max_size": f"{where}.max_size" if name == "ResizeShortestEdge" else scale_key,
                "resize.keep_ratio": f"{where}.keep_ratio",
                "resize.interpolation": f"{where}.interpolation",
                "resize.backend": f"{where}.backend",
            }
        )
        if name != "ResizeShortestEdge":
            notes["resize.min_size"] = "min(scale) when keep_ratio"
            notes["resize.max_size"] = "max(scale) when keep_ratio"
        if "keep_ratio" not in step:
            notes["resize.keep_ratio"] = f"not set: {name} default"
        if "interpolation" not in step:
            notes["resize.interpolation"] = "not set: default 'bilinear'"
        if "backend" not in step:
            notes["resize.backend"] = "not set: default 'cv2'"
        raw["resize.kind"] = name
        for field in ("scale", "keep_ratio", "interpolation", "backend"):
            if field in step:
                raw[f"resize.{field}"] = step[field]
        if "scale" in step:
            raw["resize.min_size"] = raw["resize.max_size"] = step["scale"]
        return _resize_policy(step), keys, raw, notes
    keys["resize.kind"] = path
    notes["resize.kind"] = "no Resize step in the test pipeline"
    return ResizePolicy(kind="none", backend="cv2"), keys, raw, notes


# --------------------------------------------------------------------------- contract


def _get(node: Any, key: str, default: Any = None) -> Any:
    if node is None:
        return default
    return node.get(key, default) if isinstance(node, Mapping) else getattr(node, key, default)


def _get_path(node: Any, path: str) -> Any:
    """``node`` at a dotted ``path`` (``test_cfg.rcnn``), or None where a step is missing."""
    for part in path.split("."):
        node = _get(node, part)
        if node is None:
            return None
    return node


def _class_names(cfg: Any, data: Mapping[str, Any] | None) -> tuple[tuple[str, ...] | None, str]:
    meta = data.get("meta") if data is not None else None
    if isinstance(meta, Mapping):
        dataset_meta = meta.get("dataset_meta")
        if isinstance(dataset_meta, Mapping) and dataset_meta.get("classes"):
            return tuple(dataset_meta["classes"]), "checkpoint meta['dataset_meta']['classes']"
        if meta.get("CLASSES"):  # MMDetection 2.x checkpoints
            return tuple(meta["CLASSES"]), "checkpoint meta['CLASSES']"
    for loader in ("test_dataloader", "val_dataloader", "train_dataloader"):
        dataset = _get(cfg.get(loader), "dataset")
        while isinstance(dataset, Mapping) and "metainfo" not in dataset and "dataset" in dataset:
            dataset = dataset["dataset"]
        classes = _get(_get(dataset, "metainfo"), "classes")
        if classes:
            return tuple(classes), f"{loader}.dataset.metainfo.classes"
    for loader in ("train_dataloader", "test_dataloader"):
        dataset = _get(cfg.get(loader), "dataset")
        while isinstance(dataset, Mapping) and "dataset" in dataset:
            dataset = dataset["dataset"]
        kind = _get(dataset, "type")
        if isinstance(kind, str):
            classes = _dataset_class_default(kind)
            if classes:
                # No metainfo override: the data set class trained on its own classes.
                return classes, f"{kind}.METAINFO['classes'] ({loader}.dataset.type, no metainfo override)"
    return None, "(no class names in the checkpoint meta or the config's metainfo)"


def _dataset_class_default(kind: str) -> tuple[str, ...] | None:
    try:
        import mmdet.datasets  # noqa: F401 - registers the data set classes
        from mmdet.registry import DATASETS
    except ImportError:
        return None
    cls = DATASETS.get(kind)
    classes = getattr(cls, "METAINFO", {}).get("classes") if cls is not None else None
    return tuple(classes) if classes else None


def _contract(cfg: Any, source: str, data: Mapping[str, Any] | None) -> TrainingContract:
    model = cfg.get("model")
    if not model:
        raise ConfigError(f"MMDetection config {source} has no model", source=source)
    keys: dict[str, str] = {}
    notes: dict[str, str] = {"framework": "mmengine Config"}
    raw: dict[str, Any] = {}

    pre = model.get("data_preprocessor") or cfg.get("data_preprocessor") or {}
    pre_path = "model.data_preprocessor" if model.get("data_preprocessor") else "data_preprocessor"
    swap = bool(pre.get("bgr_to_rgb", False) or pre.get("rgb_to_bgr", False))
    # LoadImageFromFile decodes to BGR (mmcv's channel_order default, cv2 and pillow backends);
    # the preprocessor's swap then decides the order the mean/std and the network see.
    input_format = "RGB" if swap else "BGR"
    keys["input_format"] = f"{pre_path}.bgr_to_rgb"
    raw["input_format"] = bool(pre.get("bgr_to_rgb", False))
    mean, std = pre.get("mean"), pre.get("std")
    keys["pixel_mean"] = f"{pre_path}.mean"
    keys["pixel_std"] = f"{pre_path}.std"
    notes["input_format"] = "LoadImageFromFile decodes BGR; bgr_to_rgb/rgb_to_bgr swap it before normalising"
    if mean is None:
        notes["pixel_mean"] = notes["pixel_std"] = "None: the data preprocessor does not normalise"
    raw["pixel_mean"], raw["pixel_std"] = mean, std
    pad_divisor = int(pre.get("pad_size_divisor", 1))
    pad_value = float(pre.get("pad_value", 0))
    keys["pad_divisor"] = f"{pre_path}.pad_size_divisor"
    keys["pad_value"] = f"{pre_path}.pad_value"

    found = _find_pipeline(cfg, ("test_dataloader", "val_dataloader"), "test_pipeline")
    if found is None:
        raise ConfigError(
            f"MMDetection config {source} has no test pipeline (test_dataloader.dataset.pipeline)",
            source=source,
            fix="pass the full training config (with test_dataloader), as mmengine dumps it into work_dir",
        )
    pipeline, pipeline_path = found
    resize, resize_keys, resize_raw, resize_notes = _pipeline_resize(pipeline, pipeline_path)
    keys.update(resize_keys)
    notes.update(resize_notes)
    raw.update(resize_raw)
    keys["test_transforms"] = pipeline_path
    tta = _tta(cfg, pipeline, pipeline_path, keys, notes, raw)
    train_resize = None
    train_found = _find_pipeline(cfg, ("train_dataloader",), "train_pipeline")
    if train_found is not None:
        try:
            train_resize = _pipeline_resize(train_found[0], train_found[1])[0]
        except (ConfigError, KeyError, TypeError, ValueError):
            train_resize = None
        keys["train_resize.min_size"] = train_found[1]

    head = keys_table.layout(model)
    post = _get_path(model, head.post_path.removeprefix("model.")) or {}
    post_path = head.post_path
    # Dense heads read cfg.get('score_thr', 0): an absent threshold keeps every score.
    score = post.get(head.score_threshold, 0.0)
    keys["score_threshold"] = f"{post_path}.{head.score_threshold}"
    if head.score_threshold not in post:
        notes["score_threshold"] = f"not set: heads read cfg.get('{head.score_threshold}', 0)"
    nms_key, iou_key = head.nms_iou.split(".")
    nms_cfg = post.get(nms_key)
    nms = nms_cfg.get(iou_key) if nms_cfg else None
    keys["nms_iou"] = f"{post_path}.{head.nms_iou}"
    if not nms_cfg:
        notes["nms_iou"] = "not set: the model runs no NMS"
    max_det = post.get(head.max_detections, -1)
    keys["max_detections"] = f"{post_path}.{head.max_detections}"
    if head.max_detections not in post:
        notes["max_detections"] = "not set: -1, no cap"
    raw.update(score_threshold=score, nms_iou=nms, max_detections=max_det)

    roi = model.get("roi_head")
    heads = {"box"}
    num_classes: int | None = None
    if roi:
        bbox_head = roi.get("bbox_head")
        if isinstance(bbox_head, Sequence) and not isinstance(bbox_head, Mapping):
            # Cascade: every stage has the same classes; the last one scores the final boxes.
            keys["num_classes"] = f"model.roi_head.bbox_head[{len(bbox_head) - 1}].num_classes"
            bbox_head = bbox_head[-1]
        else:
            keys["num_classes"] = "model.roi_head.bbox_head.num_classes"
        num_classes = _get(bbox_head, "num_classes")
        if roi.get("mask_head"):
            heads.add("mask")
        notes["heads"] = "model.roi_head.bbox_head / mask_head"
    elif model.get("bbox_head"):
        num_classes = model["bbox_head"].get("num_classes")
        keys["num_classes"] = "model.bbox_head.num_classes"
        notes["heads"] = "model.bbox_head / mask_head"
    else:
        num_classes = 1  # RPN only: proposals of one class
        notes["num_classes"] = "proposals: 1 class"
        notes["heads"] = "model.rpn_head"
    if model.get("mask_head") or "mask" in str(_get(model.get("bbox_head"), "type", "")).lower():
        heads.add("mask")
    if num_classes is None:
        raise ConfigError(f"MMDetection config {source}: {keys.get('num_classes')} is not set", source=source)
    raw["num_classes"] = num_classes

    backbone_node = model.get("backbone") or {}
    backbone = _type_name(backbone_node)
    depth = backbone_node.get("depth")
    keys.update(meta_architecture="model.type", backbone="model.backbone.type", depth="model.backbone.depth")
    raw.update(meta_architecture=_type_name(model), backbone=backbone, depth=depth)

    class_names, notes["class_names"] = _class_names(cfg, data)
    progress = None
    meta = data.get("meta") if data is not None else None
    if isinstance(meta, Mapping) and ("epoch" in meta or "iter" in meta):
        train_cfg = cfg.get("train_cfg") or {}
        by_epoch = "max_epochs" in train_cfg
        progress = TrainingProgress(
            epoch=meta.get("epoch") if by_epoch else None,
            max_epochs=train_cfg.get("max_epochs"),
            iteration=meta.get("iter"),
            max_iter=train_cfg.get("max_iters"),
        )
    return TrainingContract(
        framework=FRAMEWORK,
        source=source,
        input_format=input_format,
        pixel_mean=mean if mean is not None else (0.0, 0.0, 0.0),
        pixel_std=std if std is not None else (1.0, 1.0, 1.0),
        resize=resize,
        pad_divisor=pad_divisor,
        pad_value=pad_value,
        score_threshold=score,
        nms_iou=nms,
        max_detections=max_det,
        num_classes=num_classes,
        class_names=class_names,
        meta_architecture=_type_name(model),
        backbone=backbone,
        depth=depth,
        heads=frozenset(heads),
        tta=tta,
        progress=progress,
        keys=keys,
        raw=raw,
        notes=notes,
        train_resize=train_resize,
        test_transforms=tuple(_type_name(s) for s in pipeline),
    )


def read_contract(
    config: Any, *, checkpoint: Mapping[str, Any] | None = None, trust: bool = False
) -> TrainingContract:
    """The contract of an MMDetection config (path, ``Config`` or dict); ``checkpoint`` adds meta."""
    cfg, source = load_config(config, trust=trust)
    return _contract(cfg, source, checkpoint)


def _dataset_meta(data: Mapping[str, Any]) -> dict[str, Any] | None:
    meta = data.get("meta")
    if not isinstance(meta, Mapping):
        return None
    if isinstance(meta.get("dataset_meta"), Mapping):
        return dict(meta["dataset_meta"])
    if meta.get("CLASSES"):
        return {"classes": tuple(meta["CLASSES"])}
    return None


def discover(
    path: Path,
    data: dict[str, Any],
    *,
    config: Any = None,
    training_config: Any = None,
    trust: bool = False,
) -> TrainingArtifact:
    """The training artifact of mmengine checkpoint ``path`` (content ``data``).

    No config is run unless ``trust=True`` (see :func:`load_config`, :func:`embedded_config`).
    """
    if training_config is not None:
        training_cfg, training_source = load_config(training_config, trust=trust)
    else:
        embedded = embedded_config(data, path, trust=trust)
        if embedded is None:
            if isinstance(config, str | Path):
                hint = (
                    f"if {config} is the config the model was trained with, pass it as training_config={str(config)!r}"
                )
            elif config is not None:
                hint = (
                    "if this cfg is the one the model was trained with, pass it as the training config too: "
                    "SafePredictor.from_mmdet(cfg, checkpoint, training_config=cfg)"
                )
            else:
                hint = "pass training_config='path/to/config.py' (the config the model was trained with)"
            raise TrainingArtifactNotFound(
                f"mmengine checkpoint {path} carries no training config (neither meta['cfg'] nor "
                "message_hub.runtime_info.cfg; published checkpoints are often stripped of it). "
                f"The training pre-processing cannot be known from the weights alone: {hint}.",
                expected="meta['cfg']",
                source=str(path),
                fix=hint,
            )
        training_cfg, training_source = embedded
    training_contract = _contract(training_cfg, training_source, data)
    discrepancies = check_training_config(training_contract)
    inference_cfg = inference_contract = None
    inference_source = None
    if config is not None:
        inference_cfg, inference_source = load_config(config, trust=trust)
        # Class names are the checkpoint's, whatever config is used to infer.
        inference_contract = _contract(inference_cfg, inference_source, None)
        discrepancies = diff(training_contract, inference_contract) + discrepancies
    return TrainingArtifact(
        framework=FRAMEWORK,
        checkpoint=path,
        training_contract=training_contract,
        inference_contract=inference_contract,
        training_cfg=training_cfg,
        inference_cfg=inference_cfg,
        training_source=training_source,
        inference_source=inference_source,
        dataset_meta=_dataset_meta(data),
        discrepancies=discrepancies,
    )
