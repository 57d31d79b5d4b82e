"""Cost of the runtime monitor per image, at a full 1000-image window.

    python benchmarks/bench_monitor.py [--images 3000] [--repeats 5]
    python benchmarks/bench_monitor.py --false-alarms     # findings on healthy streams (should be 0)

Reports, in microseconds per image (median over repeats):
  * the output checks (``observe(None, candidates)``): per-image work plus the window tests,
    which run every ``check_every`` images and are amortised here, with and without a reference;
  * the input statistics alone (``image_statistics``) at a few image sizes;
  * the whole ``observe(image, candidates)``.
The stream is healthy, so nothing is logged: the cost of a warning (logging + warnings) is paid only
when a finding fires, at most once per code per rate-limit period.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from safepredict.detections import Detections
from safepredict.monitor import Monitor, MonitorConfig, ReferenceProfile
from safepredict.monitor.stats import image_statistics

# The synthetic streams are test data (tests/_synthetic.py), not part of the library.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._synthetic import SyntheticStream


def _per_image_us(fn: Callable[[], None], n: int, repeats: int) -> str:
    """CPU time and wall time per image, in µs, each the median over ``repeats`` runs.

    On a shared machine wall time also counts the time other processes held the CPU; the process's
    CPU time does not, so it is the cost figure, and wall time is shown beside it for honesty.
    """
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append((time.process_time() - c0) / n * 1e6)
        wall.append((time.perf_counter() - w0) / n * 1e6)
    return f"{statistics.median(cpu):.1f} µs | {statistics.median(wall):.1f} µs"


def _candidates(n_images: int, per_image: float, seed: int) -> list[Detections]:
    stream = SyntheticStream(seed=seed, background_candidates=per_image)
    return [d for _, d in stream.take(n_images)]


def false_alarms(streams: int = 6, length: int = 1500) -> None:
    """Findings on healthy streams, against references of 80 and 300 images and without one."""
    names = SyntheticStream().class_names
    total: Counter[str] = Counter()
    observations = 0
    for n_ref in (80, 300):
        for seed in range(streams):
            ref = ReferenceProfile.build(
                SyntheticStream(seed=100 + seed).take(n_ref), score_threshold=0.5, class_names=names
            )
            for reference in (ref, None):
                mon = Monitor(reference=reference, score_threshold=0.5, class_names=names, emit=False)
                found = mon.observe_many(SyntheticStream(seed=500 + seed + n_ref).take(length))
                observations += length
                total.update(f.code for f in found)
    print(f"{observations} healthy observations, findings: {dict(total) or 0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--false-alarms", action="store_true", help="count findings on healthy streams instead")
    args = parser.parse_args()
    if args.false_alarms:
        false_alarms()
        return
    n, repeats = args.images, args.repeats
    config = MonitorConfig()  # window 1000, checks every 20 images
    names = SyntheticStream().class_names

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"window {config.window} images, window tests every {config.check_every} images, {n} images per run\n")
    reference = ReferenceProfile.build(SyntheticStream(seed=1).take(300), score_threshold=0.5, class_names=names)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at start\n")
    print("| measured | CPU time per image | wall time per image |")
    print("|---|---|---|")
    for per_image in (20, 100):
        dets = _candidates(n, per_image, seed=2)
        mean_n = np.mean([len(d) for d in dets])
        for label, ref in (("reference", reference), ("no reference", None)):
            mon = Monitor(reference=ref, config=config, score_threshold=0.5, class_names=names, emit=False)
            for d in dets[: config.window]:  # fill the window first: the benchmark is at a full window
                mon.observe(None, d)

            def run(mon: Monitor = mon, dets: list[Detections] = dets) -> None:
                for d in dets:
                    mon.observe(None, d)

            us = _per_image_us(run, n, repeats)
            print(f"| output checks, {label}, {mean_n:.0f} candidates/image | {us} |")

    for h, w in ((96, 128), (480, 640), (1080, 1920)):
        img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        imgs = [img] * 200

        def stats_only(imgs: list[np.ndarray] = imgs) -> None:
            for im in imgs:
                image_statistics(im, config.input_grid)

        us = _per_image_us(stats_only, len(imgs), repeats)
        print(f"| input statistics, {h}×{w} RGB uint8 ({config.input_grid}² grid) | {us} |")

    pairs = SyntheticStream(seed=3).take(n)
    mon = Monitor(reference=reference, config=config, score_threshold=0.5, class_names=names, emit=False)
    mon.observe_many(pairs[: config.window])

    def full(mon: Monitor = mon) -> None:
        for image, d in pairs:
            mon.observe(image, d)

    us = _per_image_us(full, n, repeats)
    print(f"| whole observe(image, candidates), reference, 96×128 images | {us} |")


if __name__ == "__main__":
    main()
