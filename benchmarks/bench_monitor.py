"""Cost of the runtime monitor per image, at a full 1000-image window, and how soon it names each fault.

    python benchmarks/bench_monitor.py [--images 3000] [--repeats 5]
    python benchmarks/bench_monitor.py --options        # the ways of paying for the input statistics, measured
    python benchmarks/bench_monitor.py --latency        # images until each fault is named
    python benchmarks/bench_monitor.py --false-alarms   # findings on healthy streams (should be 0)

Reports, in microseconds per image (median over repeats):
  * the output checks (``observe(None, candidates)``): per-image work plus the window tests,
    which run every ``check_every`` images and are amortised here, with and without a reference;
  * the input statistics alone, per image: the grid copied (``GridBatch.add``) and the batch's
    statistics (``GridBatch.compute``, every ``check_every`` images) at a few image sizes;
  * the whole ``observe(image, candidates)`` at the defaults (statistics on every image), and side by
    side in the same run, interleaved, with the statistics sampled (1 image in 32 past the start-up,
    the previous default), at 96×128 and 1080×1920.
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
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from safepredict.detections import Detections
from safepredict.monitor import Monitor, MonitorConfig, ReferenceProfile
from safepredict.monitor.stats import INPUT_RECIPE, GridBatch

# The synthetic streams are test data (tests/_synthetic.py), not part of the library.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._synthetic import SyntheticStream

NAMES = SyntheticStream().class_names


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


def _reference(n: int = 300, seed: int = 1) -> ReferenceProfile:
    return ReferenceProfile.build(SyntheticStream(seed=seed).take(n), score_threshold=0.5, class_names=NAMES)


def _upscaled(pairs: list, size: tuple[int, int]) -> list:
    """The synthetic images resized to ``size`` (h, w): natural-looking frames of a large camera."""
    return [(cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR), d) for image, d in pairs]


def _whole_rows(n: int, repeats: int) -> list[str]:
    """The whole ``observe(image, candidates)`` past the start-up, every image against sampled, interleaved.

    Each contender is a monitor with a full window (1000 images seen); the repeats alternate between
    them, so a machine that slows down during the run slows both alike.
    """
    rows = []
    sizes = (("96×128", None, n), ("1080×1920", (1080, 1920), 50))
    for label, size, distinct in sizes:
        stream = SyntheticStream(seed=3).take(distinct)
        warm = SyntheticStream(seed=4).take(1000)
        ref_pairs: Iterable[tuple[np.ndarray, Detections]] = SyntheticStream(seed=1).take(300)
        if size is not None:  # 50 distinct large frames, in turn; the reference's 300 made one at a time
            stream, warm = _upscaled(stream, size), _upscaled(warm[:50], size) * 20
            ref_pairs = (_upscaled([pair], size)[0] for pair in ref_pairs)
        pairs = (stream * (n // len(stream) + 1))[:n]
        reference = ReferenceProfile.build(ref_pairs, score_threshold=0.5, class_names=NAMES)
        for ref_label, ref in (("reference", reference), ("no reference", None)):
            contenders = {
                "every image": MonitorConfig(),
                "sampled, 1 in 32": MonitorConfig(input_every=32, input_startup=1000),
            }
            monitors = {}
            for key, config in contenders.items():
                mon = Monitor(reference=ref, config=config, score_threshold=0.5, class_names=NAMES, emit=False)
                mon.observe_many(warm)
                monitors[key] = mon
            cpu: dict[str, list[float]] = {k: [] for k in contenders}
            wall: dict[str, list[float]] = {k: [] for k in contenders}
            for r in range(repeats):
                order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
                for key in order:
                    mon = monitors[key]
                    c0, w0 = time.process_time(), time.perf_counter()
                    for image, d in pairs:
                        mon.observe(image, d)
                    cpu[key].append((time.process_time() - c0) / n * 1e6)
                    wall[key].append((time.perf_counter() - w0) / n * 1e6)
            for key in contenders:
                images = monitors[key].snapshot()["input_images_total"]
                rows.append(
                    f"| whole observe(image, candidates), {ref_label}, {label}, statistics on {key} "
                    f"({images} of {1000 + n * repeats} images) | {statistics.median(cpu[key]):.1f} µs "
                    f"| {statistics.median(wall[key]):.1f} µs |"
                )
    return rows


def cost(n: int, repeats: int) -> None:
    config = MonitorConfig()
    print(f"window {config.window} images, window tests every {config.check_every} images, {n} images per run")
    print(
        f"input statistics: recipe {INPUT_RECIPE}, {config.input_grid}² grid, on every image, computed "
        f"{config.check_every} images at a time\n"
    )
    reference = _reference()
    print("| measured | CPU time per image | wall time per image |")
    print("|---|---|---|")
    for per_image in (20, 100):
        dets = _candidates(n, per_image, seed=2)
        mean_n = np.mean([len(d) for d in dets])
        for label, ref in (("reference", reference), ("no reference (self-baseline)", None)):
            mon = Monitor(reference=ref, config=config, score_threshold=0.5, class_names=NAMES, emit=False)
            for d in dets[: config.window]:  # fill the window first: the benchmark is at a full window
                mon.observe(None, d)

            def run(mon: Monitor = mon, dets: list[Detections] = dets) -> None:
                for d in dets:
                    mon.observe(None, d)

            print(f"| output checks, {label}, {mean_n:.0f} candidates/image | {_per_image_us(run, n, repeats)} |")

    small = SyntheticStream(seed=3).take(50)
    for h, w in ((96, 128), (480, 640), (1080, 1920)):
        imgs = [im for im, _ in (small if (h, w) == (96, 128) else _upscaled(small, (h, w)))] * 4
        batch = GridBatch(config.check_every, config.input_grid)

        def stats_only(imgs: list[np.ndarray] = imgs, batch: GridBatch = batch) -> None:
            for im in imgs:
                batch.add(im)
                if batch.full:
                    batch.compute()

        us = _per_image_us(stats_only, len(imgs), repeats)
        print(f"| input statistics of one image, {h}×{w} RGB uint8 ({config.input_grid}² grid, batched) | {us} |")
    for row in _whole_rows(n, repeats):
        print(row)


def options(n: int, repeats: int) -> None:
    """The ways of keeping the input statistics within the budget, each measured."""
    reference = _reference()
    print("| option | CPU time per image | wall time per image |")
    print("|---|---|---|")
    pairs = SyntheticStream(seed=3).take(n)
    for every in (1, 4, 32):
        config = MonitorConfig(input_every=every)
        mon = Monitor(reference=reference, config=config, score_threshold=0.5, class_names=NAMES, emit=False)
        mon.observe_many(SyntheticStream(seed=4).take(1000))

        def whole(mon: Monitor = mon) -> None:
            for image, d in pairs:
                mon.observe(image, d)

        print(f"| statistics on 1 image in {every}, whole observe | {_per_image_us(whole, n, repeats)} |")
    img = SyntheticStream(seed=3).take(1)[0][0]
    big = cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    for grid in (32, 24, 16):
        for label, im in (("96×128", img), ("1080×1920", big)):
            imgs = [im] * 200
            for capacity in (1, 50):
                batch = GridBatch(capacity, grid)

                def stats_only(imgs: list[np.ndarray] = imgs, batch: GridBatch = batch) -> None:
                    for x in imgs:
                        batch.add(x)
                        if batch.full:
                            batch.compute()

                us = _per_image_us(stats_only, len(imgs), repeats)
                print(f"| statistics alone, {grid}² grid, {label}, batches of {capacity} | {us} |")


def _first(monitor: Monitor, pairs: list, code: str, offset: int) -> str:
    for i, (image, d) in enumerate(pairs):
        if any(f.code == code for f in monitor.observe(image, d)):
            return str(i + 1 - offset)
    return "—"


def latency() -> None:
    """Images until the first finding of each fault: from the start, after the start-up, and by self-baseline."""
    reference = _reference()
    faults = (
        ("scores collapse (×0.1)", "collapse", "monitor.score_drift"),
        ("one class takes over", "takeover", "monitor.class_takeover"),
        ("noise (σ = 30)", "noise", "monitor.input_noise"),
        ("grayscale", "grayscale", "monitor.input_grayscale"),
        ("dark (×0.35)", "dark", "monitor.input_brightness"),
        ("low contrast (×0.3)", "low_contrast", "monitor.input_contrast"),
        ("BGR instead of RGB", "swap_channels", "monitor.input_channel_order"),
    )
    print(
        "| fault | code | from the start (reference) | after 1000 healthy (reference) | after 300 healthy (none) "
        "| after 1000 healthy, sampled 1 in 32 (reference) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    sampled = MonitorConfig(input_every=32, input_startup=1000)
    for words, fault, code in faults:
        bad = SyntheticStream(seed=21, faults=(fault,)).take(3000)
        cells = []
        for healthy_n, ref, config in (
            (0, reference, None),
            (1000, reference, None),
            (300, None, None),
            (1000, reference, sampled),
        ):
            mon = Monitor(reference=ref, config=config, score_threshold=0.5, class_names=NAMES, emit=False)
            pairs = SyntheticStream(seed=22).take(healthy_n) + bad
            cells.append(_first(mon, pairs, code, healthy_n))
        print(f"| {words} | `{code.split('.')[1]}` | " + " | ".join(cells) + " |")


def false_alarms(streams: int = 6, length: int = 1500) -> None:
    """Findings on healthy streams, against references of 80 and 300 images and without one (self-baseline).

    Both kinds of synthetic images: natural-looking colours, and red, blue and yellow objects on
    gray (where only the telling colours show a swap).
    """
    total: Counter[str] = Counter()
    observations = 0
    for n_ref in (80, 300):
        for seed in range(streams):
            for balanced in (False, True):
                ref = ReferenceProfile.build(
                    SyntheticStream(seed=100 + seed, balanced_colours=balanced).take(n_ref),
                    score_threshold=0.5,
                    class_names=NAMES,
                )
                for reference in (ref, None):
                    mon = Monitor(reference=reference, score_threshold=0.5, class_names=NAMES, emit=False)
                    stream = SyntheticStream(seed=500 + seed + n_ref, balanced_colours=balanced)
                    total.update(f.code for f in mon.observe_many(stream.take(length)))
                    observations += length
    print(f"{observations} healthy observations, findings: {dict(total) or 0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--options", action="store_true", help="measure the ways of paying for input statistics")
    parser.add_argument("--latency", action="store_true", help="images until each fault is named")
    parser.add_argument("--false-alarms", action="store_true", help="count findings on healthy streams instead")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at start\n")
    if args.false_alarms:
        false_alarms()
    elif args.latency:
        latency()
    elif args.options:
        options(args.images, args.repeats)
    else:
        cost(args.images, args.repeats)


if __name__ == "__main__":
    main()
