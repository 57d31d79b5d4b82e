"""Long streams through real models: silent when healthy, and a mid-stream change named with no reference at all.

Each framework's fixture predicts fresh images of its data set (never trained on). With the
automatic reference (``SafePredictor.from_checkpoint(path)`` and nothing else) a healthy stream of
1000 images raises no monitor finding: 200 distinct images through ``predict``, then what the
monitor saw replayed four more times (a forward pass costs ~0.1 s here; the monitor only sees
images and candidates, so cycling them is a stream of 1000 to it). Without any reference, the
stream's own first images become the baseline: after 300 healthy images, grayscale images or RGB
pixels declared BGR are named.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from _synthetic import dataset_images, degraded

from safepredict import SafePredictor
from safepredict.detections import Detections
from safepredict.findings import Finding
from safepredict.monitor import Monitor

pytestmark = pytest.mark.slow

DISTINCT = 200  # healthy images predicted; the stream of 1000 cycles what the monitor saw of them
HEALTHY_BEFORE = 300  # healthy images before the stream turns bad
BAD = 100  # bad images after them: the fault must be named within these


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("images")
    return {"healthy": dataset_images(root, 505, DISTINCT), "bad": dataset_images(root, 606, BAD)}


class _Recorder:
    """Stands in for the predictor's monitor: passes every observation on and keeps a copy to replay."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.seen: list[tuple[np.ndarray | None, Detections]] = []
        self.findings: list[Finding] = []

    def observe(self, image: np.ndarray | None, candidates: Detections) -> list[Finding]:
        self.seen.append((image, candidates))
        found = self.monitor.observe(image, candidates)
        self.findings += found
        return found


def _quiet(monitor: Monitor) -> Monitor:
    return Monitor(
        reference=monitor.reference,
        score_threshold=monitor.score_threshold,
        threshold_key=monitor.threshold_key,
        class_names=monitor.class_names,
        emit=False,
    )


@pytest.fixture(scope="module", params=["d2_fixture", "mmdet_fixture"], ids=["detectron2", "mmdet"])
def recorded(request, references, paths) -> dict:
    """The healthy images through a predictor with the automatic reference; what its monitor saw."""
    fixture = request.getfixturevalue(request.param)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = SafePredictor.from_checkpoint(fixture.checkpoint)
    assert p.monitor is not None and p.monitor.reference is not None
    recorder = _Recorder(_quiet(p.monitor))
    p.monitor = recorder  # type: ignore[assignment]
    for path in paths["healthy"]:
        p.predict(cv2.imread(str(path)))  # BGR arrays, as cv2 reads them: the default colour order
    return {"fixture": fixture, "predictor": p, "recorder": recorder}


def test_1000_healthy_images_raise_no_finding(recorded):
    recorder: _Recorder = recorded["recorder"]
    seen = list(recorder.seen)
    for _ in range(1000 // DISTINCT - 1):
        for image, candidates in seen:
            recorder.observe(image, candidates)
    assert recorder.monitor.snapshot()["images_total"] == 1000
    assert recorder.findings == [], [f.describe() for f in recorder.findings]


@pytest.mark.parametrize("fault", ["grayscale", "rgb_declared_bgr"])
def test_a_stream_that_turns_bad_is_named_without_any_reference(recorded, paths, fault):
    fixture = recorded["fixture"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = SafePredictor.from_checkpoint(fixture.checkpoint, class_names=fixture.class_names, auto_reference=False)
    assert p.monitor is not None and p.monitor.reference is None
    recorder = _Recorder(_quiet(p.monitor))
    healthy = recorded["recorder"].seen
    for i in range(HEALTHY_BEFORE):
        recorder.observe(*healthy[i % len(healthy)])
    assert recorder.findings == [], [f.describe() for f in recorder.findings]
    p.monitor = recorder  # type: ignore[assignment]
    expected = {"grayscale": "monitor.input_grayscale", "rgb_declared_bgr": "monitor.input_channel_order"}[fault]
    named_at = None
    for i, path in enumerate(paths["bad"]):
        bgr = cv2.imread(str(path))
        p.predict(degraded("grayscale", bgr) if fault == "grayscale" else np.ascontiguousarray(bgr[:, :, ::-1]))
        if any(f.code == expected for f in recorder.findings):
            named_at = i + 1
            break
    assert named_at is not None, [f.describe() for f in recorder.findings]
    hit = next(f for f in recorder.findings if f.code == expected)
    assert "the stream's first" in hit.message, hit.message  # against the self-baseline, and says so
    print(f"{fixture.framework}: {fault} named {named_at} images after {HEALTHY_BEFORE} healthy ones")
