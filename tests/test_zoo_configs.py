"""Every model config shipped with both frameworks: routed right, a contract or a typed error.

Configs only (no model is built). The zoos are the frameworks' own files, so they are loaded
trusted here (the framework's own loader: the reading under test is safepredict's contract
reader; the safe readers are compared with the frameworks' loaders in tests/test_security_*.py).
For each contract, the fields a user gets wrong most (mean/std, colour order, classes, score
threshold, NMS IoU, detections per image) equal what the framework's loaded config says.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from safepredict.contract import TrainingContract
from safepredict.errors import SafePredictError
from safepredict.frameworks.checkpoint import framework_of_config


def _zoo(framework: str) -> list[Path]:
    if framework == "detectron2":
        import detectron2

        root = Path(detectron2.__file__).parent / "model_zoo" / "configs"
        return sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "common" not in p.parts)
    import mmdet

    root = Path(mmdet.__file__).parent / ".mim" / "configs"
    return sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return abs(float(a) - float(b)) < 1e-6


def _d2_expected(cfg: Any) -> dict[str, Any]:
    """What Detectron2's loaded yacs config says, read directly."""
    common = {
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
        "resize.min_size": (cfg.INPUT.MIN_SIZE_TEST,),
    }
    if cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork":  # proposals: one class, no score threshold
        return {**common, "num_classes": 1, "nms_iou": cfg.MODEL.RPN.NMS_THRESH}
    head = "MODEL.RETINANET" if cfg.MODEL.META_ARCHITECTURE == "RetinaNet" else "MODEL.ROI_HEADS"
    node = cfg.MODEL.RETINANET if head == "MODEL.RETINANET" else cfg.MODEL.ROI_HEADS
    return {
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
        "num_classes": node.NUM_CLASSES,
        "score_threshold": node.SCORE_THRESH_TEST,
        "nms_iou": node.NMS_THRESH_TEST,
        "max_detections": cfg.TEST.DETECTIONS_PER_IMAGE,
        "resize.min_size": (cfg.INPUT.MIN_SIZE_TEST,),
    }


def _mm_expected(cfg: Any) -> dict[str, Any]:
    """What mmengine's loaded config says, read directly (the head's own test_cfg)."""
    model = cfg.model
    pre = model.get("data_preprocessor") or {}
    test_cfg = model.get("test_cfg") or {}
    post = test_cfg.get("rcnn", test_cfg)
    out: dict[str, Any] = {}
    if "mean" in pre:
        out["pixel_mean"] = tuple(pre["mean"])
        out["pixel_std"] = tuple(pre["std"])
        out["input_format"] = "RGB" if pre.get("bgr_to_rgb", False) else "BGR"
    if "score_thr" in post:
        out["score_threshold"] = post["score_thr"]
    if post.get("nms"):
        out["nms_iou"] = post["nms"].get("iou_threshold")
    if "max_per_img" in post:
        out["max_detections"] = post["max_per_img"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["detectron2", "mmdet"])
def test_every_zoo_config_gives_a_contract_or_a_typed_error(framework):
    reader: Any
    if framework == "detectron2":
        from safepredict.frameworks.detectron2 import contract as reader

        expected_of = _d2_expected
    else:
        from safepredict.frameworks.mmdet import contract as reader

        expected_of = _mm_expected
    started = time.monotonic()
    configs = _zoo(framework)
    contracts = typed = 0
    misrouted, untyped, disagree = [], [], []
    for path in configs:
        routed = framework_of_config(path)
        if routed != framework:
            misrouted.append((path.name, routed))
            continue
        try:
            cfg, _source = reader.load_config(path, trust=True)
            contract = reader.read_contract(cfg, trust=True)
        except SafePredictError:
            typed += 1
            continue
        except Exception as exc:  # noqa: BLE001 - counted: the test fails on any
            untyped.append((str(path), f"{type(exc).__name__}: {exc}"[:200]))
            continue
        assert isinstance(contract, TrainingContract)
        contracts += 1
        if framework == "detectron2" and type(cfg).__module__.startswith("omegaconf"):
            continue  # LazyConfig fields are compared in tests/test_contract_detectron2.py
        for field, value in expected_of(cfg).items():
            ours = contract.resize.min_size if field == "resize.min_size" else getattr(contract, field)
            same = ours == value if isinstance(value, str) else _close(ours, value)
            if not same:
                disagree.append((path.name, field, ours, value))
    print(
        f"{framework}: {len(configs)} configs, {contracts} contracts, {typed} typed errors, "
        f"{len(untyped)} untyped, {len(misrouted)} misrouted, {time.monotonic() - started:.0f} s"
    )
    assert not misrouted, misrouted[:10]
    assert not untyped, untyped[:10]
    assert not disagree, disagree[:10]
    assert contracts >= 0.8 * len(configs)
