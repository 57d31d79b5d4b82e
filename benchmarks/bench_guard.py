"""What guarding an untrusted read costs: the read in a forked child under rlimits, against it in-process.

    python benchmarks/bench_guard.py [--repeats 21]

Measured in a process that has imported torch, Detectron2 and mmengine (what a predictor's process
holds when it reads its config, so the fork copies the page tables of all of it). Each row is the
median over ``--repeats`` reads after one warm-up:
  * the floor: ``guard.run`` of a function that returns a small dict (fork, rlimits, pipe, wait);
  * a Detectron2 training ``config.yaml`` (``get_cfg()`` merged with a zoo config and dumped, as
    training writes it), ``safe_yaml.read_yacs`` guarded and its in-process body;
  * a zoo yacs config with ``_BASE_`` (RetinaNet: two files, the eval of the anchor sizes);
  * an mmengine config as mmengine dumps it into a checkpoint (Faster R-CNN, ~10 kB of text);
  * a LazyConfig ``.yaml`` saved by ``LazyConfig.save`` (Mask R-CNN).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _median(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()

    import detectron2
    import mmdet
    import torch  # noqa: F401 - the process a predictor reads its config in
    from detectron2 import model_zoo
    from detectron2.config import LazyConfig, get_cfg
    from mmengine.config import Config

    from safepredict.frameworks import guard, safe_config, safe_yaml

    d2_zoo = Path(detectron2.__file__).parent / "model_zoo" / "configs"
    tmp = Path(tempfile.mkdtemp())
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_zoo / "COCO-Detection" / "faster_rcnn_R_50_FPN_1x.yaml"))
    dumped = tmp / "config.yaml"
    dumped.write_text(cfg.dump())
    retina = str(d2_zoo / "COCO-Detection" / "retinanet_R_50_FPN_1x.yaml")
    mm_zoo = Path(mmdet.__file__).parent / ".mim" / "configs" / "faster_rcnn" / "faster-rcnn_r50_fpn_1x_coco.py"
    mm_text = Config.fromfile(str(mm_zoo)).pretty_text
    lazy = tmp / "lazy.yaml"
    LazyConfig.save(model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py"), str(lazy))

    rows: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
        ("the floor: a dict back from the child", lambda: guard.run(dict, source="x"), None)
    ]
    rows.append(
        (
            f"Detectron2 config.yaml ({dumped.stat().st_size / 1024:.0f} kB)",
            lambda: safe_yaml.read_yacs(dumped),
            lambda: safe_yaml._read_yacs_here(str(dumped)),
        )
    )
    rows.append(
        ("zoo retinanet_R_50_FPN_1x.yaml (+ its _BASE_)", lambda: safe_yaml.read_yacs(retina),
         lambda: safe_yaml._read_yacs_here(retina))
    )
    rows.append(
        (
            f"mmengine config text of a checkpoint ({len(mm_text) / 1024:.0f} kB)",
            lambda: safe_config._read("ckpt: meta.cfg", mm_text),
            lambda: safe_config._read_here("ckpt: meta.cfg", mm_text),
        )
    )
    rows.append(
        (
            f"LazyConfig .yaml saved by LazyConfig.save ({lazy.stat().st_size / 1024:.0f} kB)",
            lambda: guard.run(safe_yaml._read_lazy_here, str(lazy), source=str(lazy)),
            lambda: safe_yaml._read_lazy_here(str(lazy)),
        )
    )
    print(f"process RSS {_rss_mb():.0f} MB (torch, detectron2, mmengine imported); median of {args.repeats}\n")
    print("| read | guarded (ms) | in-process (ms) | guard overhead (ms) |")
    print("| --- | --- | --- | --- |")
    for name, guarded, here in rows:
        g = _median(guarded, args.repeats)
        h = _median(here, args.repeats) if here is not None else 0.0
        print(f"| {name} | {g:.1f} | {h:.1f} | {g - h:.1f} |")


if __name__ == "__main__":
    main()
