"""One SafePredictor shared by 8 threads x 100 predictions, monitor on, on both frameworks.

Every output equals the serial run's for that image, and the monitor's counters count every
image exactly once (its state is behind a lock). The model forwards themselves run concurrently:
both frameworks' test-time paths keep no per-call state in the model or the pipeline.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from safepredict import SafePredictor

THREADS = 8
PER_THREAD = 100


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["detectron2", "mmdet"])
def test_shared_predictor_under_threads(framework, request):
    fixture = request.getfixturevalue("d2_fixture" if framework == "detectron2" else "mmdet_fixture")
    images = fixture.dataset.val_images[:8]
    p = SafePredictor.from_checkpoint(fixture.checkpoint)
    serial = {path: p.predict(path) for path in images}
    before = p.monitor.snapshot()
    failures: list[BaseException] = []
    results: list[list[tuple[object, object]]] = [[] for _ in range(THREADS)]

    def work(slot: int) -> None:
        try:
            for i in range(PER_THREAD):
                path = images[(slot + i) % len(images)]
                results[slot].append((path, p.predict(path)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a prediction thread hung"
    assert not failures, failures
    for slot in results:
        assert len(slot) == PER_THREAD
        for path, dets in slot:
            ref = serial[path]
            np.testing.assert_array_equal(dets.boxes, ref.boxes)
            np.testing.assert_array_equal(dets.scores, ref.scores)
            np.testing.assert_array_equal(dets.labels, ref.labels)
    after = p.monitor.snapshot()
    total = THREADS * PER_THREAD
    assert after["images_total"] - before["images_total"] == total
    assert after["detections_total"] - before["detections_total"] == sum(
        len(d) for slot in results for _, d in slot
    )
