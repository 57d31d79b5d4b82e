"""SafePredictor against each framework's own predictor, side by side, in one run.

Per-image latency over the fixtures' validation images (file paths in, detections out), and
construction time, for: Detectron2 ``DefaultPredictor`` vs ``SafePredictor`` (monitor off / on);
MMDetection ``init_detector`` + ``inference_detector`` vs ``SafePredictor`` (monitor off / on).
Prints a Markdown table of medians and ratios; ``--out`` writes it to a file as well.

    python benchmarks/bench_predictor.py --repeats 3 --out docs/benchmarks-predictor.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2


def _time_per_image(run: Callable[[Any], Any], images: list[Path], repeats: int) -> float:
    run(str(images[0]))  # warm-up
    samples = []
    for _ in range(repeats):
        for path in images:
            start = time.perf_counter()
            run(str(path))
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    obj = make()
    return obj, time.perf_counter() - start


def bench_detectron2(images: int, repeats: int) -> list[tuple[str, float, float]]:
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    from safepredict import SafePredictor
    from safepredict.demo.fixtures import get_fixture

    fx = get_fixture("detectron2")
    cfg = get_cfg()
    cfg.merge_from_file(str(fx.config))
    cfg.MODEL.WEIGHTS = str(fx.checkpoint)
    cfg.MODEL.DEVICE = "cpu"
    paths = fx.dataset.val_images[:images]
    rows = []
    default, t_init = _timed(lambda: DefaultPredictor(cfg))
    rows.append(
        ("Detectron2 DefaultPredictor", t_init, _time_per_image(lambda p: default(cv2.imread(p)), paths, repeats))
    )
    for monitor in (False, True):
        safe, t_init = _timed(lambda m=monitor: SafePredictor(cfg, monitor=m, class_names=fx.class_names))
        label = f"SafePredictor (monitor {'on' if monitor else 'off'})"
        rows.append((label, t_init, _time_per_image(safe.predict, paths, repeats)))
    return rows


def bench_mmdet(images: int, repeats: int) -> list[tuple[str, float, float]]:
    import torch
    from mmdet.apis import inference_detector, init_detector

    from safepredict import SafePredictor
    from safepredict.demo.fixtures import get_fixture
    from safepredict.frameworks.checkpoint import safe_globals

    fx = get_fixture("mmdet")
    paths = fx.dataset.val_images[:images]
    rows = []

    def make_default() -> Any:
        with torch.serialization.safe_globals(safe_globals()):
            return init_detector(str(fx.config), str(fx.checkpoint), device="cpu")

    model, t_init = _timed(make_default)
    rows.append(
        (
            "MMDetection inference_detector",
            t_init,
            _time_per_image(lambda p: inference_detector(model, p), paths, repeats),
        )
    )
    for monitor in (False, True):
        safe, t_init = _timed(lambda m=monitor: SafePredictor.from_mmdet(None, fx.checkpoint, monitor=m))
        label = f"SafePredictor (monitor {'on' if monitor else 'off'})"
        rows.append((label, t_init, _time_per_image(safe.predict, paths, repeats)))
    return rows


def table(name: str, rows: list[tuple[str, float, float]]) -> str:
    base_init, base_img = rows[0][1], rows[0][2]
    lines = [
        f"### {name}",
        "",
        "| predictor | construction (s) | ratio | per image, median (ms) | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, t_init, t_img in rows:
        lines.append(
            f"| {label} | {t_init:.2f} | {t_init / base_init:.2f} | {t_img * 1000:.1f} | {t_img / base_img:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    text = f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n\n"
    text += table("Detectron2", bench_detectron2(args.images, args.repeats)) + "\n"
    text += table("MMDetection", bench_mmdet(args.images, args.repeats))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
