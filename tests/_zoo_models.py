"""Model-zoo detectors with seeded random weights, saved as each framework's training saves them.

Parity with a framework's own evaluation does not need accurate weights, only a real model of
the family: each model is built from its zoo config with the framework's own builder
(``detectron2.modeling.build_model`` / ``instantiate``; mmdet's ``init_detector`` and
``init_weights``), seeded, at a small test size, and saved in the framework's checkpoint format
with its training config (Detectron2: ``model_final.pth`` + ``config.yaml`` from ``cfg.dump()``
or ``LazyConfig.save``; mmengine: ``state_dict`` + ``meta.cfg`` + ``meta.dataset_meta``).

The saved score threshold is chosen from the model's own output on the test images: between the
``KEEP``-th and the next best score of the image that scores lowest, so every image keeps at least
``KEEP`` detections and there are candidates between safepredict's candidate floor and the
threshold (the floor is exercised, not skipped).

Models are cached under ``fixtures_root()/zoo-<family>-<key>``, the key covering the config name,
the test size, the framework versions, the thread count (the threshold comes from a forward
pass) and ``BUILD_REVISION``. Test-only: imported as ``from _zoo_models import ...``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.demo.fixtures import fixtures_root

# Bump when what a builder produces changes.
BUILD_REVISION = 2
SEED = 0
KEEP = 25  # detections every test image keeps above the saved threshold
# (height, width): landscape, portrait, and one the resize keeps as it is.
IMAGE_SHAPES = ((150, 200), (180, 120), (128, 160))

D2_CONFIGS: dict[str, str] = {
    "mask_rcnn": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    "cascade_mask_rcnn": "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
    "keypoint_rcnn": "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
    "retinanet": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
    "lazy_mask_rcnn": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
}
D2_TEST_SIZE = (128, 224)  # INPUT.MIN_SIZE_TEST, MAX_SIZE_TEST

MMDET_CONFIGS: dict[str, str] = {
    "mask_rcnn": "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "fcos": "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "atss": "atss/atss_r50_fpn_1x_coco.py",
    "rtmdet": "rtmdet/rtmdet_tiny_8xb32-300e_coco.py",
    "yolox": "yolox/yolox_tiny_8xb8-300e_coco.py",
}
MMDET_TEST_SCALE = (224, 128)  # Resize scale (long, short) with keep_ratio
MMDET_SQUARE = 192  # RTMDet/YOLOX test size (Resize to fit, Pad to the square)

_VERSIONS = {
    "detectron2": ("torch", "torchvision", "sal-detectron2", "detectron2", "numpy", "pillow"),
    "mmdet": ("torch", "torchvision", "mmcv", "mmengine", "mmdet", "numpy", "opencv-python"),
}


@attrs.frozen
class ZooModel:
    """One saved zoo model with the images it is tested on."""

    framework: str
    family: str
    config_name: str
    directory: Path
    checkpoint: Path
    config: Path  # the training config as training writes it (config.yaml / the mmengine .py)
    class_names: tuple[str, ...]
    score_threshold: float  # the training threshold saved in the config
    threshold_key: str
    images: tuple[Path, ...]
    lazy: bool = False


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------ images


def _canvas(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR picture of coloured shapes on a noisy, lit background."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 0.85 + 0.15 * (xx / width + yy / height) / 2
    img = rng.uniform(100, 150, 3)[None, None, :] * light[..., None]
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    for _ in range(10):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        w, h = int(rng.integers(15, width // 3)), int(rng.integers(15, height // 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, color, -1)
    return img


def zoo_images() -> tuple[Path, ...]:
    """A few PNG images of ``IMAGE_SHAPES``, written once."""
    import cv2

    root = fixtures_root() / f"zoo-images-{_key({'shapes': IMAGE_SHAPES, 'revision': BUILD_REVISION})}"
    paths = tuple(root / f"shapes-{i}-{h}x{w}.png" for i, (h, w) in enumerate(IMAGE_SHAPES))
    with _locked(root.parent / f".{root.name}.lock"):
        if not all(p.is_file() for p in paths):
            # Crops of one picture: images of like statistics, which a random network calibrated on
            # the batch (calibrate) scores in the same range.
            root.mkdir(parents=True, exist_ok=True)
            canvas = _canvas(256, 256, seed=100)
            for i, ((h, w), path) in enumerate(zip(IMAGE_SHAPES, paths, strict=True)):
                y, x = (37 * i) % (256 - h), (53 * i) % (256 - w)
                cv2.imwrite(str(path), canvas[y : y + h, x : x + w])
    return paths


# ------------------------------------------------------------------------------------ calibration

# The layers whose outputs are score or mask logits, and those that regress boxes (left as the
# framework initialises them: near-zero deltas, boxes near their anchors), across both frameworks.
_LOGIT_LAYER = re.compile(
    r"(^|\.)(cls_score|fc_cls|retina_cls|conv_cls|atss_cls|rtm_cls|multi_level_conv_cls|multi_level_conv_obj|"
    r"conv_centerness|atss_centerness|conv_logits|predictor|objectness_logits|rpn_cls)(\.\d+)?$"
)
_BOX_LAYER = re.compile(
    r"(^|\.)(bbox_pred|fc_reg|retina_reg|conv_reg|atss_reg|rtm_reg|multi_level_conv_reg|anchor_deltas|rpn_reg)"
    r"(\.\d+)?$"
)
LOGIT_STD = 1.5


def calibrate(model: Any, forward: Callable[[], Any]) -> None:
    """Make a randomly initialised model behave like a trained one, from one forward pass.

    ``forward`` runs the model on a batch of all test images.

    A ResNet with random weights and identity batch norms multiplies its activations layer after
    layer, until every score is 0 or 1 and every box degenerate. Data-dependent initialisation
    (LSUV): on the batch, each convolution and linear layer is scaled so its output has unit
    standard deviation (a score or mask logit layer: ``LOGIT_STD``, around its bias, which keeps
    the prior), and each batch norm takes the mean and variance of its own input. Box regression
    layers keep the framework's initialisation. A layer shared by several levels is calibrated on
    the first.
    """
    import torch
    import torch.nn.functional as F

    pending: set[int] = set()

    def set_stats(module: Any, args: tuple[Any, ...]) -> None:
        if id(module) in pending:
            pending.discard(id(module))
            x = args[0].detach()
            module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False).clamp(min=1e-4))

    def scaler(target: float) -> Callable[[Any, tuple[Any, ...]], None]:
        def scale(module: Any, args: tuple[Any, ...]) -> None:
            if id(module) not in pending:
                return
            pending.discard(id(module))
            x = args[0].detach()
            if isinstance(module, torch.nn.Linear):
                y = F.linear(x, module.weight)
            else:
                y = F.conv2d(x, module.weight, None, module.stride, module.padding, module.dilation, module.groups)
            if y.numel() > 1:
                module.weight.data.mul_(target / float(y.std().clamp(min=1e-6)))

        return scale

    norms: tuple[type, ...] = (torch.nn.BatchNorm2d,)
    try:
        from detectron2.layers import FrozenBatchNorm2d

        norms = (*norms, FrozenBatchNorm2d)
    except ImportError:
        pass
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, norms):
            handles.append(module.register_forward_pre_hook(set_stats))
        elif isinstance(module, torch.nn.Linear | torch.nn.Conv2d) and not _BOX_LAYER.search(name):
            target = LOGIT_STD if _LOGIT_LAYER.search(name) else 1.0
            handles.append(module.register_forward_pre_hook(scaler(target)))
        else:
            continue
        pending.add(id(module))
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------------------------ threshold


def choose_threshold(scores_per_image: list[np.ndarray], keep: int = KEEP) -> float:
    """Halfway between the ``keep``-th and the next best score of the image that scores lowest."""
    cuts = []
    for scores in scores_per_image:
        ranked = np.sort(np.asarray(scores, np.float64))[::-1]
        if len(ranked) <= keep:
            raise ValueError(f"a test image has only {len(ranked)} detections at threshold 0; need > {keep}")
        cuts.append((ranked[keep - 1] + ranked[keep]) / 2)
    return float(min(cuts))


def _cached(
    framework: str, family: str, config_name: str, extra: dict[str, Any], build: Callable[[Path], None]
) -> Path:
    payload = {
        "framework": framework,
        "config": config_name,
        "versions": {d: _installed(d) for d in _VERSIONS[framework]},
        "threads": int(os.environ.get("SAFEPREDICT_TORCH_THREADS", "1")),
        "seed": SEED,
        "keep": KEEP,
        "revision": BUILD_REVISION,
        **extra,
    }
    out = fixtures_root() / f"zoo-{framework}-{family}-{_key(payload)}"
    with _locked(out.parent / f".{out.name}.lock"):
        if not (out / "zoo.json").is_file():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            build(tmp)
            (tmp / "payload.json").write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
    return out


def _load(directory: Path, images: tuple[Path, ...]) -> ZooModel:
    info = json.loads((directory / "zoo.json").read_text())
    return ZooModel(
        framework=info["framework"],
        family=info["family"],
        config_name=info["config_name"],
        directory=directory,
        checkpoint=directory / info["checkpoint"],
        config=directory / info["config"],
        class_names=tuple(info["class_names"]),
        score_threshold=float(info["score_threshold"]),
        threshold_key=info["threshold_key"],
        images=images,
        lazy=bool(info.get("lazy", False)),
    )


def _write_info(out: Path, **info: Any) -> None:
    (out / "zoo.json").write_text(json.dumps(info, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------ Detectron2


def d2_reference_yacs(config: Path, checkpoint: Path) -> tuple[Any, Callable[[Path], Any]]:
    """``(model, run)``: Detectron2's own evaluation path, ``DatasetMapper(cfg, False)`` + model."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.data import DatasetMapper
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(checkpoint))
    model.eval()
    return model, _d2_runner(model, DatasetMapper(cfg, is_train=False))


def d2_reference_lazy(config: Path, checkpoint: Path) -> tuple[Any, Callable[[Path], Any]]:
    """``(model, run)``: the LazyConfig evaluation path, the test mapper + ``instantiate(cfg.model)``."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(config))
    model = instantiate(cfg.model)
    DetectionCheckpointer(model).load(str(checkpoint))
    model.eval()
    return model, _d2_runner(model, instantiate(cfg.dataloader.test.mapper))


def _d2_runner(model: Any, mapper: Any) -> Callable[[Path], Any]:
    import torch

    def run(path: Path) -> Any:
        inputs = mapper({"file_name": str(path), "image_id": 0})
        with torch.no_grad():
            return model([inputs])[0]["instances"].to("cpu")

    return run


def _d2_build(family: str, config_name: str, images: tuple[Path, ...], out: Path) -> None:
    import torch
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, get_cfg, instantiate
    from detectron2.data import DatasetMapper
    from detectron2.modeling import build_model

    torch.manual_seed(SEED)
    lazy = config_name.endswith(".py")
    if lazy:
        cfg = model_zoo.get_config(config_name)
        resize = cfg.dataloader.test.mapper.augmentations[0]
        resize.short_edge_length, resize.max_size = D2_TEST_SIZE
        # Trained at the test size too: no "test size outside the training range" trap.
        train_resize = cfg.dataloader.train.mapper.augmentations[0]
        train_resize.short_edge_length, train_resize.max_size = (D2_TEST_SIZE[0],), D2_TEST_SIZE[1]
        model = instantiate(cfg.model)
        mapper = instantiate(cfg.dataloader.test.mapper)
        threshold_key = "model.roi_heads.box_predictor.test_score_thresh"
        classes = int(cfg.model.roi_heads.num_classes)
    else:
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(config_name))
        cfg.MODEL.DEVICE = "cpu"
        cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = D2_TEST_SIZE
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (D2_TEST_SIZE[0],), D2_TEST_SIZE[1]
        model = build_model(cfg)
        mapper = DatasetMapper(cfg, is_train=False)
        retina = cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        threshold_key = "MODEL.RETINANET.SCORE_THRESH_TEST" if retina else "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
        classes = cfg.MODEL.RETINANET.NUM_CLASSES if retina else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    model.eval()
    run = _d2_runner(model, mapper)
    calibrate(model, lambda: model([mapper({"file_name": str(p), "image_id": i}) for i, p in enumerate(images)]))
    # The model's own evaluation at threshold 0 decides the threshold it is saved with.
    predictors = model.roi_heads.box_predictor if hasattr(model, "roi_heads") else model
    for stage in predictors if isinstance(predictors, torch.nn.ModuleList) else [predictors]:
        stage.test_score_thresh = 0.0
    # The scores do not depend on the mask and keypoint heads: skip them (up to 100 boxes each).
    roi_heads = getattr(model, "roi_heads", None)
    heads_on = {h: getattr(roi_heads, h) for h in ("mask_on", "keypoint_on") if hasattr(roi_heads, h)}
    for flag in heads_on:
        setattr(roi_heads, flag, False)
    threshold = choose_threshold([run(p).scores.numpy() for p in images])
    for flag, value in heads_on.items():
        setattr(roi_heads, flag, value)
    DetectionCheckpointer(model, save_dir=str(out)).save("model_final")
    if lazy:
        cfg.model.roi_heads.box_predictor.test_score_thresh = threshold
        LazyConfig.save(cfg, str(out / "config.yaml"))
    else:
        if retina:
            cfg.MODEL.RETINANET.SCORE_THRESH_TEST = threshold
        else:
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = threshold
        (out / "config.yaml").write_text(cfg.dump())
    _write_info(
        out,
        framework="detectron2",
        family=family,
        config_name=config_name,
        checkpoint="model_final.pth",
        config="config.yaml",
        class_names=[f"class{i}" for i in range(classes)],
        score_threshold=threshold,
        threshold_key=threshold_key,
        lazy=lazy,
    )


def detectron2_model(family: str) -> ZooModel:
    """The Detectron2 zoo model of ``family`` (a key of ``D2_CONFIGS``), built once and cached."""
    config_name = D2_CONFIGS[family]
    images = zoo_images()
    extra = {"test_size": D2_TEST_SIZE, "images": [p.name for p in images]}
    out = _cached("detectron2", family, config_name, extra, lambda d: _d2_build(family, config_name, images, d))
    return _load(out, images)


# ------------------------------------------------------------------------------------ MMDetection


def mmdet_config_path(config_name: str) -> Path:
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / config_name


def _drop_pretrained(node: Any) -> None:
    """Remove every ``init_cfg`` that would download weights (``Pretrained``): random init instead."""
    if isinstance(node, dict):
        init = node.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            node["init_cfg"] = None
        for value in node.values():
            _drop_pretrained(value)
    elif isinstance(node, list | tuple):
        for value in node:
            _drop_pretrained(value)


def _small_pipeline(pipeline: list[Any], square: bool) -> None:
    """Resize (and pad) to the small test size; a training pipeline's random resizes too."""
    scale = (MMDET_SQUARE, MMDET_SQUARE) if square else MMDET_TEST_SCALE
    for step in pipeline:
        kind = str(step.get("type", "")).rsplit(".", 1)[-1]
        if kind in ("Resize", "RandomResize", "RandomChoiceResize"):
            step.clear()
            step.update(type="Resize", scale=scale, keep_ratio=True)
        elif kind == "Pad" and step.get("size") is not None:
            step["size"] = scale


def _train_pipelines(cfg: Any) -> list[Any]:
    pipelines = [cfg.get("train_pipeline"), cfg.get("train_pipeline_stage2")]
    dataset = cfg.train_dataloader.dataset
    while "pipeline" not in dataset and "dataset" in dataset:
        dataset = dataset.dataset
    pipelines.append(dataset.get("pipeline"))
    return [p for p in pipelines if p is not None]


def _mmdet_post(cfg: Any) -> tuple[Any, str]:
    """The post-processing dict of the config and its key."""
    if "rcnn" in cfg.model.test_cfg:
        return cfg.model.test_cfg.rcnn, "model.test_cfg.rcnn.score_thr"
    return cfg.model.test_cfg, "model.test_cfg.score_thr"


def mmdet_training_config(config_name: str) -> Any:
    """The zoo config at the test size, without pretrained weights to download."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(mmdet_config_path(config_name)))
    _drop_pretrained(cfg.model)
    square = any(
        str(s.get("type", "")).rsplit(".", 1)[-1] == "Pad" and s.get("size") is not None
        for s in cfg.test_dataloader.dataset.pipeline
    ) or config_name.startswith("yolox")
    tests = [cfg.get("test_pipeline"), cfg.test_dataloader.dataset.pipeline, cfg.val_dataloader.dataset.pipeline]
    for pipeline in [*tests, *_train_pipelines(cfg)]:
        if pipeline is not None:
            _small_pipeline(pipeline, square)
    return cfg


def mmdet_reference(config: Any, checkpoint: Path) -> tuple[Any, Callable[[Path], Any]]:
    """``(model, run)``: mmdet's ``init_detector`` + ``inference_detector`` on a file."""
    import warnings

    from mmdet.apis import inference_detector, init_detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = init_detector(config, str(checkpoint), device="cpu")

    def run(path: Path) -> Any:
        return inference_detector(model, str(path))

    return model, run


def _mmdet_batch(cfg: Any, images: tuple[Path, ...]) -> dict[str, list[Any]]:
    """All images through the config's test pipeline, batched as ``test_step`` takes them."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    pipeline = Compose(get_test_pipeline_cfg(cfg))
    data = [pipeline({"img_path": str(p), "img_id": i}) for i, p in enumerate(images)]
    return {"inputs": [d["inputs"] for d in data], "data_samples": [d["data_samples"] for d in data]}


def _mmdet_build(family: str, config_name: str, images: tuple[Path, ...], out: Path) -> None:
    import torch
    from mmdet.apis import init_detector

    cfg = mmdet_training_config(config_name)
    post, threshold_key = _mmdet_post(cfg)
    post["score_thr"] = 0.0
    torch.manual_seed(SEED)
    model = init_detector(cfg, checkpoint=None, device="cpu")
    model.init_weights()
    model.eval()
    calibrate(model, lambda: model.test_step(_mmdet_batch(cfg, images)))
    classes = int(cfg.model.get("roi_head", cfg.model).get("bbox_head").get("num_classes"))
    names = [f"class{i}" for i in range(classes)]

    def save(path: Path) -> None:
        meta = {"cfg": cfg.pretty_text, "dataset_meta": {"classes": names}, "mmdet_version": _installed("mmdet")}
        torch.save({"state_dict": model.state_dict(), "meta": meta}, path)

    save(out / "model.pth")
    _, run = mmdet_reference(cfg, out / "model.pth")
    threshold = choose_threshold([run(p).pred_instances.scores.numpy() for p in images])
    post["score_thr"] = threshold
    save(out / "model.pth")
    cfg.dump(str(out / "config.py"))
    _write_info(
        out,
        framework="mmdet",
        family=family,
        config_name=config_name,
        checkpoint="model.pth",
        config="config.py",
        class_names=names,
        score_threshold=threshold,
        threshold_key=threshold_key,
    )


def mmdet_model(family: str) -> ZooModel:
    """The MMDetection zoo model of ``family`` (a key of ``MMDET_CONFIGS``), built once and cached."""
    config_name = MMDET_CONFIGS[family]
    images = zoo_images()
    extra = {"scale": MMDET_TEST_SCALE, "square": MMDET_SQUARE, "images": [p.name for p in images]}
    out = _cached("mmdet", family, config_name, extra, lambda d: _mmdet_build(family, config_name, images, d))
    return _load(out, images)


# ------------------------------------------------------------------------------------ parity

BOX_ATOL = 1e-3  # px
SCORE_ATOL = 1e-5
MASK_AGREEMENT = 0.999  # share of mask pixels that agree
KEYPOINT_ATOL = 1e-2  # px


@attrs.frozen
class Parity:
    """What one comparison measured (the worst over the detections of one image)."""

    n: int
    box_diff: float
    score_diff: float
    mask_agreement: float | None = None
    keypoint_diff: float | None = None

    def merge(self, other: Parity) -> Parity:
        def worst(a: float | None, b: float | None, low: bool = False) -> float | None:
            if a is None or b is None:
                return a if b is None else b
            return min(a, b) if low else max(a, b)

        return Parity(
            n=min(self.n, other.n),
            box_diff=max(self.box_diff, other.box_diff),
            score_diff=max(self.score_diff, other.score_diff),
            mask_agreement=worst(self.mask_agreement, other.mask_agreement, low=True),
            keypoint_diff=worst(self.keypoint_diff, other.keypoint_diff),
        )

    def describe(self) -> str:
        parts = [
            f"min {self.n} detections/image",
            f"max box diff {self.box_diff:.3g} px",
            f"score {self.score_diff:.3g}",
        ]
        if self.mask_agreement is not None:
            parts.append(f"mask agreement {100 * self.mask_agreement:.4f} %")
        if self.keypoint_diff is not None:
            parts.append(f"keypoint diff {self.keypoint_diff:.3g} px")
        return ", ".join(parts)


def _numpy(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def assert_parity(
    boxes: Any,
    scores: Any,
    labels: Any,
    ref_boxes: Any,
    ref_scores: Any,
    ref_labels: Any,
    *,
    masks: Any = None,
    ref_masks: Any = None,
    keypoints: Any = None,
    ref_keypoints: Any = None,
) -> Parity:
    """Assert two detection sets agree within the tolerances above; return what was measured."""
    b, s, lab = _numpy(boxes), _numpy(scores), _numpy(labels)
    rb, rs, rl = _numpy(ref_boxes), _numpy(ref_scores), _numpy(ref_labels)
    assert b is not None and s is not None and lab is not None
    assert rb is not None and rs is not None and rl is not None
    assert len(b) == len(rb), f"{len(b)} detections, the framework's evaluation has {len(rb)}"
    np.testing.assert_array_equal(lab, rl)
    np.testing.assert_allclose(b, rb, atol=BOX_ATOL, rtol=0)
    np.testing.assert_allclose(s, rs, atol=SCORE_ATOL, rtol=0)
    parity = Parity(
        n=len(b),
        box_diff=float(np.abs(b - rb).max(initial=0.0)),
        score_diff=float(np.abs(s - rs).max(initial=0.0)),
    )
    m, rm = _numpy(masks), _numpy(ref_masks)
    assert (m is None) == (rm is None), "masks on one side only"
    if m is not None and rm is not None:
        assert m.shape == rm.shape, f"masks {m.shape}, the framework's evaluation {rm.shape}"
        agreement = float((m.astype(bool) == rm.astype(bool)).mean()) if m.size else 1.0
        assert agreement >= MASK_AGREEMENT, f"masks agree on {agreement:.5f} of pixels"
        parity = attrs.evolve(parity, mask_agreement=agreement)
    k, rk = _numpy(keypoints), _numpy(ref_keypoints)
    assert (k is None) == (rk is None), "keypoints on one side only"
    if k is not None and rk is not None:
        assert k.shape == rk.shape
        np.testing.assert_allclose(k[..., :2], rk[..., :2], atol=KEYPOINT_ATOL, rtol=0)
        np.testing.assert_allclose(k[..., 2], rk[..., 2], atol=SCORE_ATOL, rtol=0)
        parity = attrs.evolve(parity, keypoint_diff=float(np.abs(k[..., :2] - rk[..., :2]).max(initial=0.0)))
    return parity
