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


def _large_images(root: Path, count: int) -> list[Path]:
    """Fixture images scaled to 800 x 1066 px: the default test size of the zoo configs."""
    from safepredict.demo.fixtures import get_dataset

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, path in enumerate(get_dataset().val_images[:count]):
        target = root / f"large_{i}.png"
        cv2.imwrite(str(target), cv2.resize(cv2.imread(str(path)), (1066, 800), interpolation=cv2.INTER_LINEAR))
        out.append(target)
    return out


def bench_detectron2_r50(images: int, repeats: int, root: Path) -> list[tuple[str, float, float]]:
    """Faster R-CNN R-50 FPN from Detectron2's zoo config, random weights (timing only), 800 px."""
    import torch
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor
    from detectron2.modeling import build_model

    from safepredict import SafePredictor

    out = root / "d2-r50"
    out.mkdir(parents=True, exist_ok=True)
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(out)).save("model_final")
    cfg.MODEL.WEIGHTS = str(out / "model_final.pth")
    (out / "config.yaml").write_text(cfg.dump())
    paths = _large_images(root / "large", images)
    default, t_init = _timed(lambda: DefaultPredictor(cfg))
    rows = [("DefaultPredictor", t_init, _time_per_image(lambda p: default(cv2.imread(p)), paths, repeats))]
    safe, t_init = _timed(lambda: SafePredictor(cfg, monitor=True, class_names=[str(i) for i in range(80)]))
    rows.append(("SafePredictor (monitor on)", t_init, _time_per_image(safe.predict, paths, repeats)))
    return rows


def bench_mmdet_r50(images: int, repeats: int, root: Path) -> list[tuple[str, float, float]]:
    """Faster R-CNN R-50 FPN from mmdet's zoo config, random weights (timing only), 1333 x 800."""
    import mmdet
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    from safepredict import SafePredictor

    cfg = Config.fromfile(str(Path(mmdet.__file__).parent / ".mim/configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"))
    torch.manual_seed(0)
    model = init_detector(cfg, None, device="cpu")
    checkpoint = root / "mmdet-r50.pth"
    classes = [str(i) for i in range(80)]
    torch.save(
        {"state_dict": model.state_dict(), "meta": {"cfg": cfg.pretty_text, "dataset_meta": {"classes": classes}}},
        checkpoint,
    )
    paths = _large_images(root / "large", images)

    def make_default() -> Any:
        reference = init_detector(cfg, None, device="cpu")
        reference.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
        return reference

    reference, t_init = _timed(make_default)
    rows = [
        (
            "init_detector + inference_detector",
            t_init,
            _time_per_image(lambda p: inference_detector(reference, p), paths, repeats),
        )
    ]
    safe, t_init = _timed(lambda: SafePredictor.from_mmdet(None, checkpoint, monitor=True))
    rows.append(("SafePredictor (monitor on)", t_init, _time_per_image(safe.predict, paths, repeats)))
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
    parser.add_argument("--large-images", type=int, default=4, help="800 px images for the R-50 rows (0: skip)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import tempfile

    import torch

    text = f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n\n"
    text += table("Detectron2 (fixture: R-18 FPN, ~120 px)", bench_detectron2(args.images, args.repeats)) + "\n"
    text += table("MMDetection (fixture: R-18 FPN, ~176 px)", bench_mmdet(args.images, args.repeats)) + "\n"
    if args.large_images:
        with tempfile.TemporaryDirectory() as tmp:
            rows = bench_detectron2_r50(args.large_images, args.repeats, Path(tmp))
            text += table("Detectron2 Faster R-CNN R-50 FPN, 800 px (zoo config, random weights)", rows) + "\n"
            rows = bench_mmdet_r50(args.large_images, args.repeats, Path(tmp))
            text += table("MMDetection Faster R-CNN R-50 FPN, 1333 x 800 (zoo config, random weights)", rows)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
