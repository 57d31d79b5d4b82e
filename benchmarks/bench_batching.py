"""Batching same-shape images on the CPU: faster, and are the outputs identical?

A video's frames all have one shape, so batching them needs no padding between images. This runs
the trained fixtures' validation images resized to one shape through each framework's own model,
one image per forward (as the evaluation loaders do, and as SafePredictor does) and N per forward,
and reports the time per image and the largest difference between the two outputs (boxes in
pixels, scores) and how many images got another number of detections.

    python benchmarks/bench_batching.py --images 48
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from _page import publish

SHAPE = (128, 96)  # width, height: the fixtures' images are about this size


def _detectron2(images: list[np.ndarray]) -> tuple[Callable[[list[Any]], list[Any]], list[Any]]:
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    from safepredict.demo.fixtures import get_fixture

    fx = get_fixture("detectron2")
    cfg = get_cfg()
    cfg.merge_from_file(str(fx.config))
    cfg.MODEL.WEIGHTS = str(fx.checkpoint)
    cfg.MODEL.DEVICE = "cpu"
    predictor = DefaultPredictor(cfg)  # its model and test-time resize; BGR in, as the fixture trains

    def inputs(image: np.ndarray) -> dict[str, Any]:
        resized = predictor.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        return {"image": tensor, "height": image.shape[0], "width": image.shape[1]}

    def run(batch: list[Any]) -> list[Any]:
        outs = predictor.model(batch)
        return [(o["instances"].pred_boxes.tensor, o["instances"].scores) for o in outs]

    return run, [inputs(image) for image in images]


def _mmdet(images: list[np.ndarray]) -> tuple[Callable[[list[Any]], list[Any]], list[Any]]:
    from mmcv.transforms import Compose
    from mmdet.apis import init_detector
    from mmdet.utils import get_test_pipeline_cfg

    from safepredict.demo.fixtures import get_fixture
    from safepredict.frameworks.checkpoint import safe_globals

    fx = get_fixture("mmdet")
    with torch.serialization.safe_globals(safe_globals()):
        model = init_detector(str(fx.config), str(fx.checkpoint), device="cpu")
    steps = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    steps[0]["type"] = "mmdet.LoadImageFromNDArray"
    pipeline = Compose(steps)

    def run(batch: list[Any]) -> list[Any]:
        data = {"inputs": [b["inputs"] for b in batch], "data_samples": [b["data_samples"] for b in batch]}
        return [(s.pred_instances.bboxes, s.pred_instances.scores) for s in model.test_step(data)]

    return run, [pipeline({"img": image, "img_id": i}) for i, image in enumerate(images)]


def measure(run: Callable[[list[Any]], list[Any]], items: list[Any], size: int) -> tuple[float, float, float, int]:
    """(ms per image one at a time, ms per image batched, max |difference|, images with another count)."""
    n = len(items) // size * size
    single = batched = 0.0
    worst, other_count = 0.0, 0
    with torch.inference_mode():
        run(items[:1])  # warm-up
        for k in range(0, n, size):
            group = items[k : k + size]
            start = time.perf_counter()
            alone = [run([item])[0] for item in group]
            single += time.perf_counter() - start
            start = time.perf_counter()
            together = run(group)
            batched += time.perf_counter() - start
            for (boxes_a, scores_a), (boxes_b, scores_b) in zip(alone, together, strict=True):
                if len(scores_a) != len(scores_b):
                    other_count += 1
                elif len(scores_a):
                    worst = max(worst, float((boxes_a - boxes_b).abs().max()), float((scores_a - scores_b).abs().max()))
    return 1000 * single / n, 1000 * batched / n, worst, other_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--sizes", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--out", type=Path, help="also write the page here")
    args = parser.parse_args()
    from safepredict.demo.fixtures import get_dataset

    paths = get_dataset().val_images[: args.images]
    images = [cv2.resize(cv2.imread(str(p)), SHAPE, interpolation=cv2.INTER_LINEAR) for p in paths]
    lines = [
        "# Batching same-shape images: measured, not used",
        "",
        f"`python benchmarks/bench_batching.py` (in `bash scripts/bench.sh`), {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPU(s) {platform.machine()}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; {len(images)} validation images of the fixtures resized to {SHAPE[0]} x {SHAPE[1]}.",
        "",
        "| framework | batch | one per forward (ms/image) | batched (ms/image) | speed-up | max abs difference "
        "| images with another count |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, build in (("detectron2", _detectron2), ("mmdet", _mmdet)):
        run, items = build(images)
        for size in args.sizes:
            one, many, worst, other = measure(run, items, size)
            lines.append(f"| {name} | {size} | {one:.1f} | {many:.1f} | {one / many:.2f}x | {worst:.1e} | {other} |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
