"""``safepredict demo``: a seed mistake made with the framework's own predictor, caught by SafePredictor.

Offline: it trains a small Detectron2 detector on generated data the first time (a few minutes on
2 cores, cached under the user cache directory), then runs the same images through

1. the inference code people write from a tutorial: ``DefaultPredictor`` on a fresh
   ``get_cfg()`` with the number of classes set — forgetting the training config's colour order,
   mean/std, test size, score threshold and backbone depth (seeds 000-003);
2. ``SafePredictor`` given that very same config.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
import warnings
from typing import Any

from safepredict._output import add_json_option, jsonable, message_stream, print_json

EXAMPLES = """\
examples:
  safepredict demo                  # trains the fixture the first time (minutes), then ~1 minute
  safepredict demo --images 32      # more validation images: a steadier AP50
  safepredict demo --json > demo.json   # the two AP50s and every difference named, for programs
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="offline demo: a naive inference mistake fails, SafePredictor catches it",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=8, help="validation images to run (default 8)")
    add_json_option(parser, "the outcome")
    parser.set_defaults(func=run)


def _naive_config(fixture: Any) -> Any:
    from detectron2.config import get_cfg

    cfg = get_cfg()  # Detectron2's defaults: BGR, ImageNet mean/std, MIN_SIZE_TEST 800, ResNet-50
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(fixture.class_names)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.5
    cfg.MODEL.WEIGHTS = str(fixture.checkpoint)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def run(args: argparse.Namespace) -> int:
    import cv2

    from safepredict.demo.fixtures import get_fixture
    from safepredict.detections import Detections
    from safepredict.predictor import SafePredictor

    say = functools.partial(print, file=message_stream(args))
    started = time.monotonic()
    # The frameworks' own deprecation chatter (torch.jit, meshgrid) would bury the demo's point.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
    say("1/3 the model: Faster R-CNN R-18 FPN trained with Detectron2's DefaultTrainer on generated data")
    fixture = get_fixture("detectron2")
    say(f"    {fixture.checkpoint} (val AP50 {fixture.ap50:.1f} with Detectron2's COCOEvaluator)")
    images = fixture.dataset.val_images[: args.images]
    gt = fixture.dataset.val_json

    say("\n2/3 the inference code from a tutorial: DefaultPredictor(get_cfg() + NUM_CLASSES + WEIGHTS)")
    from detectron2.engine import DefaultPredictor

    naive_cfg = _naive_config(fixture)
    d2_logger = logging.getLogger("fvcore.common.checkpoint")
    d2_logger.setLevel(logging.ERROR)  # its "Skip loading parameter" lines would scroll for pages
    predictor = DefaultPredictor(naive_cfg)
    naive = {}
    for path in images:
        inst = predictor(cv2.imread(str(path)))["instances"].to("cpu")
        naive[path.name] = Detections(inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy())
    found = sum(len(d) for d in naive.values())
    ap_naive = _ap(gt, naive, images)
    say(
        "    Detectron2 loaded the checkpoint into a ResNet-50 with warnings only: "
        f"{found} detections, AP50 {ap_naive:.1f}"
    )

    say("\n3/3 SafePredictor(cfg) with the same config")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same messages are logged; print them once, below
        safe = SafePredictor(naive_cfg, monitor=False)
    say("    it read the training config beside the checkpoint and named every difference:")
    for d in safe.discrepancies:
        say("    - " + d.describe().replace("\n", "\n      "))
    results = {path.name: safe.predict(str(path)) for path in images}
    ap_safe = _ap(gt, results, images)
    say(f"    SafePredictor: {sum(len(d) for d in results.values())} detections, AP50 {ap_safe:.1f}")
    say(f"\nnaive AP50 {ap_naive:.1f} -> SafePredictor AP50 {ap_safe:.1f} ({time.monotonic() - started:.0f} s)")
    if args.json:
        print_json(
            {
                "checkpoint": str(fixture.checkpoint),
                "images": len(images),
                "naive": {"detections": found, "ap50": ap_naive},
                "safepredict": {"detections": sum(len(d) for d in results.values()), "ap50": ap_safe},
                "discrepancies": [{**jsonable(d), "message": d.describe()} for d in safe.discrepancies],
            }
        )
    return 0


def _ap(gt: Any, results: dict[str, Any], images: list[Any]) -> float:
    import json
    import tempfile
    from pathlib import Path

    from safepredict.demo.evaluate import coco_box_ap

    # Restrict the ground truth to the images run, so AP is over the same set.
    data = json.loads(Path(gt).read_text())
    names = {p.name for p in images}
    keep = {im["id"] for im in data["images"] if im["file_name"] in names}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(data, handle)
    try:
        return coco_box_ap(Path(handle.name), results)["AP50"]
    finally:
        Path(handle.name).unlink()
