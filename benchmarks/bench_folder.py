"""A folder of images, whole process against whole process: safepredict vs the loop people write.

For each framework, in one run, each side a fresh Python process timed from start to exit:
  * the naive loop: ``cv2.imread`` + ``DefaultPredictor`` (Detectron2) / ``init_detector`` +
    ``inference_detector`` (MMDetection) over every file, torch at its default thread count;
  * for MMDetection also its high-level ``DetInferencer`` given the folder (batch size 1, its default);
  * ``safepredict predict CHECKPOINT FOLDER --out results.json`` (worker processes by default),
    and the same command with ``--workers 0`` (this process only, decoding overlapped).
Outputs are compared: the number of detections above the threshold must be equal.

    python benchmarks/bench_folder.py --images 200 --repeats 1 --out docs/benchmarks-folder.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _page import publish

LOOP_D2 = """
import sys, json, cv2
from pathlib import Path
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor
cfg = get_cfg(); cfg.merge_from_file(sys.argv[1]); cfg.MODEL.WEIGHTS = sys.argv[2]; cfg.MODEL.DEVICE = "cpu"
predictor = DefaultPredictor(cfg)
n = 0
for path in sorted(Path(sys.argv[3]).glob("*.png")):
    n += len(predictor(cv2.imread(str(path)))["instances"])
print(json.dumps({"detections": n}))
"""

LOOP_MMDET = """
import sys, json
from pathlib import Path
from mmdet.apis import init_detector, inference_detector
from safepredict.frameworks.checkpoint import load_checkpoint
from mmengine.config import Config
# mmdet's own init_detector cannot load the checkpoint under torch >= 2.6 (weights_only): load the
# weights with safepredict's weights-only loader, everything else is mmdet's.
data = load_checkpoint(sys.argv[2])
cfg = Config.fromstring(data["meta"]["cfg"], ".py")
model = init_detector(cfg, None, device="cpu")
model.load_state_dict(data["state_dict"])
model.dataset_meta = data["meta"].get("dataset_meta", {})
n = 0
for path in sorted(Path(sys.argv[3]).glob("*.png")):
    pred = inference_detector(model, str(path)).pred_instances
    n += int((pred.scores > model.test_cfg.rcnn.score_thr).sum())
print(json.dumps({"detections": n}))
"""

LOOP_DETINFERENCER = """
import sys, json
import torch
from mmdet.apis import DetInferencer
from safepredict.frameworks.checkpoint import safe_globals
# As above: mmengine's loader needs mmengine's globals allowed under torch >= 2.6.
with torch.serialization.safe_globals(safe_globals()):
    inferencer = DetInferencer(model=sys.argv[1], weights=sys.argv[2], device="cpu", show_progress=False)
threshold = inferencer.model.test_cfg.rcnn.score_thr
out = inferencer(sys.argv[3], return_datasamples=True, no_save_vis=True)
n = sum(int((s.pred_instances.scores > threshold).sum()) for s in out["predictions"])
print(json.dumps({"detections": n}))
"""


def _run(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # predict exits 1 when the monitor has findings
        raise RuntimeError(f"{argv[:4]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def _folder(images: int, root: Path) -> Path:
    from safepredict.demo.fixtures import get_dataset

    dataset = get_dataset()
    sources = list(dataset.val_images) + sorted(Path(dataset.train_dir).glob("*.png"))
    folder = root / "images"
    folder.mkdir(parents=True)
    for i in range(images):
        shutil.copy(sources[i % len(sources)], folder / f"{i:05d}.png")
    return folder


def _safepredict(checkpoint: Path, folder: Path, out: Path, workers: str | None) -> tuple[float, int]:
    argv = [sys.executable, "-m", "safepredict", "-q", "predict", str(checkpoint), str(folder), "--out", str(out)]
    if workers is not None:
        argv += ["--workers", workers]
    wall, _ = _run(argv)
    return wall, len(json.loads(out.read_text()))


def bench(framework: str, images: int, repeats: int, root: Path) -> list[tuple[str, float, int]]:
    from safepredict.demo.fixtures import get_fixture

    fx = get_fixture(framework)
    folder = _folder(images, root / framework)
    rows: dict[str, list[tuple[float, int]]] = {}
    loops = (
        {"cv2.imread + DefaultPredictor loop": LOOP_D2}
        if framework == "detectron2"
        else {"inference_detector loop": LOOP_MMDET, "DetInferencer(folder)": LOOP_DETINFERENCER}
    )
    for _ in range(repeats):
        for label, loop in loops.items():
            wall, out = _run([sys.executable, "-c", loop, str(fx.config), str(fx.checkpoint), str(folder)])
            rows.setdefault(label, []).append((wall, json.loads(out.strip().splitlines()[-1])["detections"]))
        for name, workers in (
            ("safepredict predict (default workers)", None),
            ("safepredict predict --workers 0", "0"),
        ):
            out_file = root / framework / "results.json"
            rows.setdefault(name, []).append(_safepredict(fx.checkpoint, folder, out_file, workers))
    return [(name, statistics.median(w for w, _ in runs), runs[0][1]) for name, runs in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--frameworks", nargs="*", default=["detectron2", "mmdet"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        f"# Folder prediction, whole process: {args.images} PNGs, median of {args.repeats}",
        "",
        f"Machine: {os.cpu_count()} CPU(s), {platform.machine()}, Python {platform.python_version()}; "
        f"run {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| framework | command | wall (s) | images/s | ratio to the loop | detections |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for framework in args.frameworks:
            rows = bench(framework, args.images, args.repeats, Path(tmp))
            base = rows[0][1]
            for name, wall, detections in rows:
                rate = args.images / wall
                lines.append(f"| {framework} | {name} | {wall:.1f} | {rate:.2f} | {base / wall:.2f}x | {detections} |")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
