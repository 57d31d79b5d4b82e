"""Read Detectron2's training contract from a yacs config or a LazyConfig.

yacs: ``config.yaml`` as training writes it into ``OUTPUT_DIR`` (``default_setup``), or any
config file with ``_BASE_``, merged into ``get_cfg()`` as ``merge_from_file`` does, but read
by :mod:`safepredict.frameworks.safe_yaml`'s safe YAML loader (Detectron2's own falls back to
``yaml.unsafe_load``, which runs ``!!python/object/apply`` tags). LazyConfig ``.yaml``: read
the same way, then ``OmegaConf.create`` as ``LazyConfig.load`` does, and its ``_target_``
callables limited to Detectron2/torch/torchvision/fvcore. A LazyConfig ``.py`` is Python: it
loads only with ``trust=True``, through ``detectron2.config.LazyConfig.load`` (which runs it).
With ``trust=True`` the yacs path is Detectron2's own ``merge_from_file`` too.

What is read, key by key, is listed in docs/contract.md.
"""

from __future__ import annotations

import inspect
import logging
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
from safepredict.errors import ConfigError, FrameworkNotInstalled, SafePredictError, TrainingArtifactNotFound
from safepredict.frameworks import config_cache, safe_config, safe_yaml
from safepredict.frameworks.artifact import TrainingArtifact
from safepredict.frameworks.base import config_value
from safepredict.frameworks.detectron2.keys import head_keys

__all__ = ["discover", "load_config", "read_contract"]

FRAMEWORK = "detectron2"
logger = logging.getLogger("safepredict")

# Feature strides of Detectron2's ResNet stages (res5 halves its stride when dilated).
_RES_STRIDES = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}
_FPN_BUILDERS = frozenset({"build_resnet_fpn_backbone", "build_retinanet_resnet_fpn_backbone"})
_PLAIN_BUILDERS = frozenset({"build_resnet_backbone"})  # Backbone.size_divisibility default: 0


def _import_d2() -> Any:
    try:
        import detectron2.config as d2config
    except ImportError as exc:
        raise FrameworkNotInstalled(
            "reading a Detectron2 config needs detectron2, which is not importable here",
            expected="detectron2",
            found=str(exc),
            fix="install Detectron2 (https://detectron2.readthedocs.io/en/latest/tutorials/install.html)",
        ) from exc
    return d2config


def _is_lazy(cfg: Any) -> bool:
    return type(cfg).__module__.startswith("omegaconf") or (
        hasattr(cfg, "get") and "model" in cfg and "MODEL" not in cfg
    )


def load_config(config: Any, *, trust: bool = False) -> tuple[Any, str]:
    """``(cfg, source)``: a yacs ``CfgNode`` or a LazyConfig ``DictConfig``, from a path or object.

    yacs files are merged into ``get_cfg()`` as Detectron2 does (``_BASE_`` honoured). Keys the
    default config does not know (a project's ``add_*_config`` keys) are kept rather than
    refused, with ``set_new_allowed(True)``, and logged: the contract does not depend on them.
    Nothing in a file runs unless ``trust=True``: a YAML python tag, a ``.py`` LazyConfig or a
    ``_target_`` outside the allowed namespaces raises
    :class:`~safepredict.errors.UntrustedCodeError`.
    """
    d2config = _import_d2()
    if not isinstance(config, str | Path):
        source = getattr(config, "_safepredict_source", None) or f"<{type(config).__name__} object>"
        return config, source
    path = Path(config)
    if not path.is_file():
        raise TrainingArtifactNotFound(
            f"Detectron2 config {path} does not exist",
            source=str(path),
            fix="pass the config.yaml training wrote into OUTPUT_DIR, or the LazyConfig .py/.yaml it was trained with",
        )
    if path.suffix == ".py" or (path.suffix in (".yaml", ".yml") and _looks_lazy_yaml(path)):
        try:
            lazy = safe_yaml.lazy_load(path, trust=trust)
        except SafePredictError:
            raise
        except Exception as exc:
            raise ConfigError(f"LazyConfig {path} could not be loaded: {exc}", source=str(path)) from exc
        # Before anything locates (imports) or instantiates a target of it.
        safe_yaml.check_lazy_targets(lazy, str(path), trust)
        return lazy, str(path)
    # The same bytes were read in this process: their merged config, without reading them again.
    cache_key = config_cache.key_of(path, trust)
    cached = config_cache.get(cache_key)
    if cached is not None:
        return cached, str(path)
    cfg = d2config.get_cfg()
    if trust:
        logger.info("trusted: running Detectron2's own config loader (merge_from_file) on %s", path)
    try:
        _merge_from_file(cfg, path, trust)
    except SafePredictError:
        raise
    except KeyError as exc:
        # A project config (e.g. with MODEL.FCOS.*): take it with its new keys, as the project's
        # add_*_config would, and say so.
        logger.info("Detectron2 config %s has keys get_cfg() does not know (%s); kept as new keys", path, exc)
        cfg = d2config.get_cfg()
        cfg.set_new_allowed(True)
        try:
            _merge_from_file(cfg, path, trust)
        except SafePredictError:
            raise
        except Exception as exc2:
            raise ConfigError(f"Detectron2 config {path} could not be merged: {exc2}", source=str(path)) from exc2
    except Exception as exc:
        raise ConfigError(f"Detectron2 config {path} could not be read: {exc}", source=str(path)) from exc
    config_cache.put(cache_key, cfg, path)
    return cfg, str(path)


def _merge_from_file(cfg: Any, path: Path, trust: bool) -> None:
    if trust:
        cfg.merge_from_file(str(path))
    else:
        safe_yaml.merge_from_file(cfg, path)


def _looks_lazy_yaml(path: Path) -> bool:
    # A regular file, size checked before it is read (a stranger's config.yaml may be /dev/zero).
    text = safe_config.read_config_bytes(path, str(path), safe_yaml.MAX_YAML_CHARS).decode("utf-8", "replace")
    return "_target_" in text and "MODEL:" not in text


# --------------------------------------------------------------------------- yacs


def _fpn_divisor(cfg: Any) -> tuple[int, str]:
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    last = in_features[-1]
    stride = _RES_STRIDES.get(last)
    if stride is None:
        raise KeyError(last)
    if last == "res5" and int(cfg.MODEL.RESNETS.RES5_DILATION) == 2:
        stride //= 2
    return stride, f"MODEL.FPN.IN_FEATURES[-1]={last} (FPN pads to the stride of its last input: {stride})"


def _built_divisor(cfg: Any) -> tuple[int, str]:
    # An unknown backbone builder: build it on the CPU and ask it.
    from detectron2.modeling import build_backbone

    clone = cfg.clone()
    clone.defrost()
    clone.MODEL.DEVICE = "cpu"
    try:
        backbone = build_backbone(clone)
    except Exception as exc:
        name = cfg.MODEL.BACKBONE.NAME
        raise ConfigError(
            f"cannot build backbone {name} to learn its padding (size_divisibility): {exc}",
            found=name,
            fix=f"import the module that registers {name} (a project's code) before reading its config",
        ) from exc
    return int(backbone.size_divisibility), f"MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME} (built: size_divisibility)"


def _pad_divisor(cfg: Any) -> tuple[int, str]:
    name = cfg.MODEL.BACKBONE.NAME
    if name in _FPN_BUILDERS:
        try:
            return _fpn_divisor(cfg)
        except KeyError:
            return _built_divisor(cfg)
    if name in _PLAIN_BUILDERS:
        return 0, f"MODEL.BACKBONE.NAME={name} (a plain ResNet does not pad: size_divisibility 0)"
    return _built_divisor(cfg)


def _yacs_contract(cfg: Any, source: str, checkpoint: dict[str, Any] | None) -> TrainingContract:
    meta = cfg.MODEL.META_ARCHITECTURE
    keys: dict[str, str] = {
        "input_format": "INPUT.FORMAT",
        "pixel_mean": "MODEL.PIXEL_MEAN",
        "pixel_std": "MODEL.PIXEL_STD",
        "resize.kind": "INPUT.MIN_SIZE_TEST",
        "resize.min_size": "INPUT.MIN_SIZE_TEST",
        "resize.max_size": "INPUT.MAX_SIZE_TEST",
        "train_resize.min_size": "INPUT.MIN_SIZE_TRAIN",
        "meta_architecture": "MODEL.META_ARCHITECTURE",
        "backbone": "MODEL.BACKBONE.NAME",
        "depth": "MODEL.RESNETS.DEPTH",
    }
    notes: dict[str, str] = {
        "resize.kind": "DatasetMapper(cfg, is_train=False) and DefaultPredictor: ResizeShortestEdge; 0 = no resize",
        "resize.keep_ratio": "ResizeShortestEdge keeps the aspect ratio",
        "resize.interpolation": "ResizeShortestEdge default interp=Image.BILINEAR, fixed in Detectron2's code",
        "resize.backend": "ResizeTransform.apply_image resizes uint8 images with PIL",
        "resize.sample_style": "build_augmentation(cfg, is_train=False) uses sample_style='choice'",
        "pad_value": "GeneralizedRCNN.preprocess_image pads the normalised batch with 0.0 (ImageList.from_tensors)",
        "heads": "MODEL.MASK_ON / MODEL.KEYPOINT_ON",
        "framework": "yacs CfgNode",
        "test_transforms": "build_augmentation(cfg, is_train=False): ResizeShortestEdge only",
    }
    raw: dict[str, Any] = {
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "resize.min_size": cfg.INPUT.MIN_SIZE_TEST,
        "resize.max_size": cfg.INPUT.MAX_SIZE_TEST,
        "meta_architecture": meta,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "depth": cfg.MODEL.RESNETS.DEPTH,
    }
    pad_divisor, notes["pad_divisor"] = _pad_divisor(cfg)

    min_test = int(cfg.INPUT.MIN_SIZE_TEST)
    resize = ResizePolicy(
        kind="shortest_edge" if min_test > 0 else "none",
        min_size=(min_test,) if min_test > 0 else (),
        max_size=int(cfg.INPUT.MAX_SIZE_TEST) if min_test > 0 else None,
        keep_ratio=True,
        interpolation="bilinear",
        backend="PIL",
        sample_style="choice",
    )
    train_resize = ResizePolicy(
        kind="shortest_edge",
        min_size=tuple(cfg.INPUT.MIN_SIZE_TRAIN),
        max_size=int(cfg.INPUT.MAX_SIZE_TRAIN),
        sample_style=cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
    )

    head = head_keys(meta)
    num_classes = config_value(cfg, head.num_classes) if head.num_classes else 1
    score = config_value(cfg, head.score_threshold) if head.score_threshold else 0.0
    nms: float | None = config_value(cfg, head.nms_iou)
    max_det = config_value(cfg, head.max_detections)
    keys.update(nms_iou=head.nms_iou, max_detections=head.max_detections)
    if head.num_classes:
        keys["num_classes"] = head.num_classes
    else:
        notes["num_classes"] = "proposals: 1 class"
    if head.score_threshold:
        keys["score_threshold"] = head.score_threshold
    else:
        notes["score_threshold"] = "proposals: no score threshold"
    raw.update(num_classes=num_classes, score_threshold=score, nms_iou=nms, max_detections=max_det)

    heads = {"box"}
    if cfg.MODEL.MASK_ON:
        heads.add("mask")
    if cfg.MODEL.KEYPOINT_ON:
        heads.add("keypoint")
    backbone = cfg.MODEL.BACKBONE.NAME
    depth = cfg.MODEL.RESNETS.DEPTH if "resnet" in backbone.lower() else None

    tta = _yacs_tta(cfg, keys, notes, raw)
    class_names, notes["class_names"] = _class_names(cfg)
    progress = None
    if checkpoint is not None and "iteration" in checkpoint:
        progress = TrainingProgress(iteration=int(checkpoint["iteration"]), max_iter=int(cfg.SOLVER.MAX_ITER))
    return TrainingContract(
        framework=FRAMEWORK,
        source=source,
        input_format=cfg.INPUT.FORMAT,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
        resize=resize,
        pad_divisor=pad_divisor,
        pad_value=0.0,
        score_threshold=score,
        nms_iou=nms,
        max_detections=max_det,
        num_classes=num_classes,
        class_names=class_names,
        meta_architecture=meta,
        backbone=backbone,
        depth=depth,
        heads=frozenset(heads),
        tta=tta,
        progress=progress,
        keys=keys,
        raw=raw,
        notes=notes,
        train_resize=train_resize,
        test_transforms=("ResizeShortestEdge",),
    )


def _yacs_tta(cfg: Any, keys: dict[str, str], notes: dict[str, str], raw: dict[str, Any]) -> TestTimeAugmentation:
    """``TEST.AUG``: what ``tools/train_net.py`` evaluates with ``GeneralizedRCNNWithTTA`` when enabled."""
    aug = cfg.TEST.get("AUG") if hasattr(cfg.TEST, "get") else None
    if aug is None:
        notes["tta.enabled"] = "no TEST.AUG in this config: no test-time augmentation"
        return TestTimeAugmentation()
    keys.update(
        {
            "tta.enabled": "TEST.AUG.ENABLED",
            "tta.min_sizes": "TEST.AUG.MIN_SIZES",
            "tta.max_size": "TEST.AUG.MAX_SIZE",
            "tta.flip": "TEST.AUG.FLIP",
        }
    )
    notes["tta.enabled"] = (
        "tools/train_net.py evaluates GeneralizedRCNNWithTTA (results suffixed _TTA) besides the plain model "
        "when set; DefaultTrainer and DefaultPredictor never augment"
    )
    raw.update(
        {
            "tta.enabled": bool(aug.ENABLED),
            "tta.min_sizes": aug.MIN_SIZES,
            "tta.max_size": aug.MAX_SIZE,
            "tta.flip": bool(aug.FLIP),
        }
    )
    return TestTimeAugmentation(
        enabled=aug.ENABLED, min_sizes=tuple(aug.MIN_SIZES), max_size=aug.MAX_SIZE, flip=aug.FLIP
    )


def _class_names(cfg: Any) -> tuple[tuple[str, ...] | None, str]:
    return _catalog_class_names(list(getattr(cfg.DATASETS, "TEST", ())) + list(getattr(cfg.DATASETS, "TRAIN", ())))


def _lazy_dataset_names(cfg: Any) -> list[str]:
    names: list[str] = []
    for split in ("test", "train"):
        node = cfg.dataloader.get(split)
        dataset = node.get("dataset") if node is not None else None
        value = dataset.get("names") if dataset is not None and hasattr(dataset, "get") else None
        if isinstance(value, str):
            names.append(value)
        elif value is not None:
            names.extend(str(v) for v in value)
    return names


def _catalog_class_names(datasets: list[str]) -> tuple[tuple[str, ...] | None, str]:
    """Class names from the metadata of the first data set this process registered.

    A Detectron2 config holds dataset *names* only; the names of the classes live in
    ``MetadataCatalog``, which is filled by whoever registers the data set.
    """
    try:
        from detectron2.data import MetadataCatalog
    except ImportError:
        return None, "MetadataCatalog (not importable)"
    for name in datasets:
        if name not in MetadataCatalog.list():
            continue
        meta = MetadataCatalog.get(name)
        classes = getattr(meta, "thing_classes", None)
        if classes:
            return tuple(classes), f"MetadataCatalog.get({name!r}).thing_classes"
        json_file = getattr(meta, "json_file", None)
        if json_file and Path(json_file).is_file():
            # register_coco_instances fills thing_classes only when the data set is loaded;
            # load_coco_json takes the categories sorted by id, as here.
            import json

            categories = json.loads(Path(json_file).read_text()).get("categories") or []
            if categories:
                names = tuple(c["name"] for c in sorted(categories, key=lambda c: c["id"]))
                return names, f"categories of {json_file} (MetadataCatalog.get({name!r}).json_file)"
    return None, "MetadataCatalog (data set not registered in this process: class names unknown)"


# --------------------------------------------------------------------------- LazyConfig


def _target_name(node: Any) -> str:
    target = node.get("_target_") if hasattr(node, "get") else None
    if target is None:
        return type(node).__name__
    if isinstance(target, str):
        return target.rsplit(".", 1)[-1]
    return str(getattr(target, "__qualname__", getattr(target, "__name__", target)))


def _target(node: Any) -> Any:
    target = node.get("_target_")
    if isinstance(target, str):
        from detectron2.utils.registry import locate

        return locate(target)
    return target


def _arg(node: Any, name: str, path: str, notes: dict[str, str] | None = None, field: str = "") -> tuple[Any, str]:
    """``(value, key)`` of ``node.name`` where the config sets it, else the target's default.

    A default is noted in ``notes[field]``: the key path is still where to set it.
    """
    key = f"{path}.{name}"
    if name in node and node[name] is not None:
        return node[name], key
    target = _target(node)
    func = getattr(target, "__init__", target) if inspect.isclass(target) else target
    param = inspect.signature(func).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        raise ConfigError(f"LazyConfig sets no {key} and {_target_name(node)} has no default for it")
    if notes is not None and field:
        notes[field] = f"not set: default of {_target_name(node)}"
    return param.default, key


# PIL's resampling filters by value (Image.Resampling), as Detectron2's transforms take them.
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _pil_filter(value: Any) -> str:
    return _PIL_FILTERS.get(int(value), str(value)) if value is not None else "bilinear"


def _lazy_resize(augmentations: Any, path: str) -> tuple[ResizePolicy, dict[str, str], tuple[str, ...]]:
    names = tuple(_target_name(a) for a in augmentations)
    keys: dict[str, str] = {}
    for index, aug in enumerate(augmentations):
        name = _target_name(aug)
        where = f"{path}[{index}]"
        if name == "ResizeShortestEdge":
            short, _ = _arg(aug, "short_edge_length", where)
            max_size, _ = _arg(aug, "max_size", where)
            style, _ = _arg(aug, "sample_style", where)
            sizes = (short,) if isinstance(short, int) else tuple(short)
            if style == "range" and len(sizes) == 2 and sizes[0] == sizes[1]:
                sizes = sizes[:1]
            keys["resize.kind"] = f"{where}._target_"
            keys["resize.min_size"] = f"{where}.short_edge_length"
            keys["resize.max_size"] = f"{where}.max_size"
            keys["resize.sample_style"] = f"{where}.sample_style"
            keys["resize.interpolation"] = f"{where}.interp"
            interp, _ = _arg(aug, "interp", where)
            return (
                ResizePolicy(
                    kind="shortest_edge",
                    min_size=sizes,
                    max_size=None if max_size is None or max_size >= 2**31 else int(max_size),
                    keep_ratio=True,
                    interpolation=_pil_filter(interp),
                    backend="PIL",
                    sample_style="choice" if len(sizes) == 1 else style,
                ),
                keys,
                names,
            )
        if name == "Resize":
            shape, _ = _arg(aug, "shape", where)
            h, w = (shape, shape) if isinstance(shape, int) else tuple(shape)
            keys["resize.kind"] = f"{where}._target_"
            keys["resize.scale"] = f"{where}.shape"
            keys["resize.interpolation"] = f"{where}.interp"
            interp, _ = _arg(aug, "interp", where)
            policy = ResizePolicy(
                kind="fixed", scale=(w, h), keep_ratio=False, interpolation=_pil_filter(interp), backend="PIL"
            )
            return policy, keys, names
    keys["resize.kind"] = path
    return ResizePolicy(kind="none"), keys, names


def _lazy_contract(cfg: Any, source: str, checkpoint: dict[str, Any] | None) -> TrainingContract:
    model = cfg.model
    meta = _target_name(model)
    keys: dict[str, str] = {"meta_architecture": "model._target_"}
    notes: dict[str, str] = {"framework": "LazyConfig"}
    test_mapper = cfg.dataloader.test.mapper
    input_format, keys["input_format"] = _arg(
        test_mapper, "image_format", "dataloader.test.mapper", notes, "input_format"
    )
    pixel_mean, keys["pixel_mean"] = _arg(model, "pixel_mean", "model", notes, "pixel_mean")
    pixel_std, keys["pixel_std"] = _arg(model, "pixel_std", "model", notes, "pixel_std")
    resize, resize_keys, names = _lazy_resize(test_mapper.augmentations, "dataloader.test.mapper.augmentations")
    keys.update(resize_keys)
    keys["test_transforms"] = "dataloader.test.mapper.augmentations"
    train_resize = None
    train = cfg.dataloader.get("train")
    if train is not None and "mapper" in train:
        train_resize, _, _ = _lazy_resize(train.mapper.augmentations, "dataloader.train.mapper.augmentations")
        keys["train_resize.min_size"] = "dataloader.train.mapper.augmentations"

    backbone_node = model.backbone
    backbone = _target_name(backbone_node)
    depth = None
    bottom_up = backbone_node.get("bottom_up") if hasattr(backbone_node, "get") else None
    if bottom_up is not None:
        backbone = f"{backbone}({_target_name(bottom_up)})"
        stages = bottom_up.get("stages")
        if stages is not None and hasattr(stages, "get") and stages.get("depth") is not None:
            depth = int(stages.depth)
            keys["depth"] = "model.backbone.bottom_up.stages.depth"
    keys["backbone"] = "model.backbone._target_"
    pad_divisor = _lazy_pad_divisor(model)
    notes["pad_divisor"] = "model.backbone, built on the CPU: its size_divisibility"
    notes["pad_value"] = "GeneralizedRCNN.preprocess_image pads the normalised batch with 0.0"

    heads = {"box"}
    if "roi_heads" in model:
        roi = model.roi_heads
        num_classes, keys["num_classes"] = _arg(roi, "num_classes", "model.roi_heads", notes, "num_classes")
        if "box_predictor" in roi:
            predictor, ppath = roi.box_predictor, "model.roi_heads.box_predictor"
        else:  # CascadeROIHeads: the last stage's predictor scores the final boxes
            predictor = roi.box_predictors[-1]
            ppath = f"model.roi_heads.box_predictors[{len(roi.box_predictors) - 1}]"
        score, keys["score_threshold"] = _arg(predictor, "test_score_thresh", ppath, notes, "score_threshold")
        nms, keys["nms_iou"] = _arg(predictor, "test_nms_thresh", ppath, notes, "nms_iou")
        max_det, keys["max_detections"] = _arg(predictor, "test_topk_per_image", ppath, notes, "max_detections")
        if roi.get("mask_head") is not None:
            heads.add("mask")
        if roi.get("keypoint_head") is not None:
            heads.add("keypoint")
    else:  # dense detectors (RetinaNet, FCOS)
        num_classes, keys["num_classes"] = _arg(model, "num_classes", "model", notes, "num_classes")
        score, keys["score_threshold"] = _arg(model, "test_score_thresh", "model", notes, "score_threshold")
        nms, keys["nms_iou"] = _arg(model, "test_nms_thresh", "model", notes, "nms_iou")
        max_det, keys["max_detections"] = _arg(model, "max_detections_per_image", "model", notes, "max_detections")
    notes["heads"] = "model.roi_heads.mask_head / keypoint_head"

    class_names, notes["class_names"] = _catalog_class_names(_lazy_dataset_names(cfg))
    progress = None
    max_iter = cfg.get("train", {}).get("max_iter") if hasattr(cfg, "get") else None
    if checkpoint is not None and "iteration" in checkpoint:
        progress = TrainingProgress(iteration=int(checkpoint["iteration"]), max_iter=max_iter)
    return TrainingContract(
        framework=FRAMEWORK,
        source=source,
        input_format=input_format,
        pixel_mean=list(pixel_mean),
        pixel_std=list(pixel_std),
        resize=resize,
        pad_divisor=pad_divisor,
        pad_value=0.0,
        score_threshold=score,
        nms_iou=nms,
        max_detections=max_det,
        num_classes=num_classes,
        class_names=class_names,
        meta_architecture=meta,
        backbone=backbone,
        depth=depth,
        heads=frozenset(heads),
        progress=progress,
        keys=keys,
        notes=notes,
        train_resize=train_resize,
        test_transforms=names,
    )


def _lazy_pad_divisor(model: Any) -> int:
    # LazyConfig backbones are arbitrary callables: the only reliable answer is the built one.
    from detectron2.config import instantiate

    backbone = instantiate(model.backbone)
    return int(backbone.size_divisibility)


# --------------------------------------------------------------------------- entry points


def read_contract(
    config: Any, *, checkpoint: dict[str, Any] | None = None, trust: bool = False
) -> TrainingContract:
    """The contract of a Detectron2 config (path, ``CfgNode`` or LazyConfig ``DictConfig``)."""
    cfg, source = load_config(config, trust=trust)
    return _contract(cfg, source, checkpoint)


def _contract(cfg: Any, source: str, checkpoint: dict[str, Any] | None) -> TrainingContract:
    try:
        if _is_lazy(cfg):
            return _lazy_contract(cfg, source, checkpoint)
        return _yacs_contract(cfg, source, checkpoint)
    except (AttributeError, KeyError) as exc:
        raise ConfigError(
            f"Detectron2 config {source} lacks a key the contract needs: {exc}",
            source=source,
            fix="pass the full config training wrote (OUTPUT_DIR/config.yaml), not a fragment",
        ) from exc


def discover(
    path: Path,
    data: dict[str, Any],
    *,
    config: Any = None,
    training_config: Any = None,
    trust: bool = False,
) -> TrainingArtifact:
    """The training artifact of Detectron2 checkpoint ``path`` (content ``data``).

    No config is run unless ``trust=True`` (see :func:`load_config`).
    """
    beside = path.parent / "config.yaml"
    if training_config is not None:
        training = training_config
    elif beside.is_file():
        training = beside
    else:
        if isinstance(config, str | Path):
            hint = f"if {config} is the config the model was trained with, pass it as training_config={str(config)!r}"
        elif config is not None:
            # Detectron2's tutorial: DefaultTrainer(cfg) without default_setup, then a predictor on the same cfg.
            hint = (
                "if this cfg is the one the model was trained with (DefaultTrainer(cfg) without default_setup, "
                "as in Detectron2's tutorial), pass it as the training config too: "
                "SafePredictor(cfg, training_config=cfg); next time register "
                "safepredict.frameworks.detectron2.hook.SafePredictHook(), which writes config.yaml at training"
            )
        else:
            hint = "pass training_config='path/to/config.yaml' (the config the model was trained with)"
        raise TrainingArtifactNotFound(
            f"Detectron2 checkpoint {path} has no config.yaml beside it. Detectron2 writes the training "
            "config to OUTPUT_DIR/config.yaml next to model_final.pth (default_setup does, as tools/train_net.py "
            "calls it); without it the training pre-processing (INPUT.FORMAT, PIXEL_MEAN/STD, MIN_SIZE_TEST) "
            f"cannot be known. Copy that file next to the checkpoint, or {hint}.",
            expected=str(beside),
            found=None,
            source=str(path),
            fix=f"put the training config.yaml at {beside}, or {hint}",
        )
    training_cfg, training_source = load_config(training, trust=trust)
    training_contract = _contract(training_cfg, training_source, data)
    inference_cfg = inference_contract = None
    inference_source = None
    discrepancies = check_training_config(training_contract)
    if config is not None:
        inference_cfg, inference_source = load_config(config, trust=trust)
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
        dataset_meta={"classes": list(training_contract.class_names)} if training_contract.class_names else None,
        discrepancies=discrepancies,
    )
