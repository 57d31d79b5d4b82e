"""COCO box AP of a set of detections with pycocotools (the evaluator both frameworks wrap)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from pathlib import Path

from safepredict.detections import Detections


def coco_box_ap(gt_json: Path, detections: Mapping[str, Detections]) -> dict[str, float]:
    """AP and AP50 (percent, as Detectron2 reports them) of ``file_name -> Detections`` on ``gt_json``.

    Labels are contiguous indices into the categories of ``gt_json``, sorted by id.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = json.loads(Path(gt_json).read_text())
    by_name = {im["file_name"]: im["id"] for im in gt["images"]}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    results = []
    for name, dets in detections.items():
        results.extend(dets.to_coco(by_name[Path(name).name], cat_ids))
    if not results:
        return {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_json))
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]) * 100, "AP50": float(ev.stats[1]) * 100}
