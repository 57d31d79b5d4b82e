"""The exported model on onnxruntime against the PyTorch SafePredictor, same images, same run.

For each model (the trained fixtures; ``--zoo`` adds Detectron2 and MMDetection R-50 FPN models
from their zoo configs at 800 px), the checkpoint is exported once (the export time is reported),
then both predictors run every image in turn (the order alternating per image, so drift hits both
alike), file path in, detections out, with the same number of intra-op threads. Prints a Markdown
table of medians and ratios; ``--out`` writes it as well. On a machine with CUDA (torch and
onnxruntime-gpu), ``--device cuda`` measures the GPU row.

    python benchmarks/bench_onnx.py --repeats 3 --out docs/benchmarks-onnx.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _page import publish


def _zoo(framework: str) -> Any:
    """An R-50 FPN Faster R-CNN from the framework's zoo config at 800 px (random weights)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import _zoo_models as zoo

    images = zoo.zoo_images()
    if framework == "detectron2":
        name = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
        saved = zoo.D2_TEST_SIZE
        zoo.D2_TEST_SIZE = (800, 1333)
        try:
            out = zoo._cached(
                "detectron2",
                "faster_rcnn-800",
                name,
                {"test_size": zoo.D2_TEST_SIZE},
                lambda d: zoo._d2_build("faster_rcnn", name, images, d),
            )
        finally:
            zoo.D2_TEST_SIZE = saved
    else:
        name = "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"
        saved_scale = zoo.MMDET_TEST_SCALE
        zoo.MMDET_TEST_SCALE = (1333, 800)
        try:
            out = zoo._cached(
                "mmdet",
                "faster_rcnn-800",
                name,
                {"scale": zoo.MMDET_TEST_SCALE},
                lambda d: zoo._mmdet_build("faster_rcnn", name, images, d),
            )
        finally:
            zoo.MMDET_TEST_SCALE = saved_scale
    return zoo._load(out, images)


def measure(
    label: str, checkpoint: Path, images: list[Path], repeats: int, threads: int, device: str, folder: Path
) -> list[str]:
    import torch

    from safepredict import SafePredictor

    torch.set_num_threads(threads)
    torch_predictor = SafePredictor.from_checkpoint(checkpoint, monitor=False, device=device)
    start = time.perf_counter()
    path = torch_predictor.export(folder / f"{checkpoint.parent.name}.onnx")
    export_s = time.perf_counter() - start
    providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    onnx_predictor = SafePredictor.from_onnx(path, monitor=False, providers=providers, threads=threads)
    both = [torch_predictor, onnx_predictor]
    for p in both:
        p.predict(images[0])  # warm-up
    times: list[list[float]] = [[], []]
    for r in range(repeats):
        for i, image in enumerate(images):
            order = (0, 1) if (i + r) % 2 == 0 else (1, 0)
            for k in order:
                t = time.perf_counter()
                both[k].predict(image)
                times[k].append(time.perf_counter() - t)
    torch_ms, onnx_ms = (1000 * statistics.median(t) for t in times)
    return [
        f"| {label} | {device}, {threads} thread(s) | {torch_ms:.1f} ms | {onnx_ms:.1f} ms | "
        f"{onnx_ms / torch_ms:.2f} | {export_s:.1f} s |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=12, help="validation images per fixture")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--zoo", action="store_true", help="also the R-50 FPN zoo models at 800 px")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import onnxruntime

    from safepredict.demo.fixtures import get_fixture

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for framework, what in (
            ("detectron2", "Detectron2 Faster R-CNN R-18 fixture"),
            ("mmdet", "MMDetection Faster R-CNN R-18 fixture"),
        ):
            fixture = get_fixture(framework)
            images = list(fixture.dataset.val_images[: args.images])
            rows += measure(what, fixture.checkpoint, images, args.repeats, args.threads, args.device, Path(tmp))
        if args.zoo:
            for framework, what in (
                ("detectron2", "Detectron2 R-50 FPN, 800 px (zoo config)"),
                ("mmdet", "MMDetection R-50 FPN, 1333 x 800 (zoo config)"),
            ):
                model = _zoo(framework)
                rows += measure(
                    what, model.checkpoint, list(model.images), args.repeats, args.threads, args.device, Path(tmp)
                )
    import torch

    lines = [
        "# Exported models: onnxruntime against PyTorch",
        "",
        f"`python benchmarks/bench_onnx.py --repeats {args.repeats} --images {args.images} --threads "
        f"{args.threads} --device {args.device}{' --zoo' if args.zoo else ''}`",
        "",
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}. Per image: file path in, final detections out (decode, resize, network, "
        "post-processing), median over every image and repeat, the two predictors alternating per image. "
        "The ratio is onnxruntime / PyTorch (below 1: the exported model is faster).",
        "",
        "| model | device | PyTorch SafePredictor | onnxruntime SafePredictor | ratio | export |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
