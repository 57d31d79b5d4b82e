"""Bounded memory: the monitor's windows are fixed-size, a predictor keeps nothing per image.

Resident set size read from ``/proc/self/statm`` (Linux), after a warm-up that fills the
monitor's windows and the allocators' pools.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

from safepredict.detections import Detections
from safepredict.monitor import Monitor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")


def _rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _detections(rng: np.random.Generator) -> Detections:
    n = int(rng.integers(0, 40))
    xy = rng.uniform(0, 600, size=(n, 2)).astype(np.float32)
    wh = rng.uniform(4, 200, size=(n, 2)).astype(np.float32)
    return Detections(
        boxes=np.concatenate([xy, xy + wh], axis=1),
        scores=np.sort(rng.uniform(0.01, 1.0, size=n).astype(np.float32))[::-1],
        labels=rng.integers(0, 3, size=n),
        class_names=("red", "blue", "yellow"),
        image_size=(480, 640),
    )


@pytest.mark.slow
def test_100k_monitored_predictions_grow_rss_by_less_than_5mb():
    rng = np.random.default_rng(0)
    pool = [_detections(rng) for _ in range(500)]  # real-shaped outputs, reused: no growth from the test
    image = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    monitor = Monitor(score_threshold=0.3, threshold_key="MODEL.ROI_HEADS.SCORE_THRESH_TEST", class_names=None)
    for i in range(5000):  # warm-up: fills the windows
        monitor.observe(image if i % 10 == 0 else None, pool[i % len(pool)])
    start = _rss_mb()
    for i in range(100_000):
        monitor.observe(image if i % 10 == 0 else None, pool[i % len(pool)])
    growth = _rss_mb() - start
    print(f"monitor: RSS growth over 100,000 observations {growth:.2f} MB")
    assert monitor.snapshot()["images_total"] == 105_000
    assert growth < 5.0


@pytest.mark.slow
def test_2000_predictions_on_a_trained_fixture_stay_flat(d2_fixture):
    from safepredict import SafePredictor

    images = d2_fixture.dataset.val_images[:20]
    p = SafePredictor.from_checkpoint(d2_fixture.checkpoint)
    for i in range(200):  # warm-up
        p.predict(images[i % len(images)])
    start = _rss_mb()
    for i in range(2000):
        p.predict(images[i % len(images)])
    growth = _rss_mb() - start
    print(f"predictor: RSS growth over 2,000 predictions {growth:.2f} MB")
    assert p.monitor.snapshot()["images_total"] == 2200
    assert growth < 20.0
