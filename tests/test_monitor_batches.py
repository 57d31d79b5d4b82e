"""The monitor checks outputs a batch at a time: exactly what checking each image alone does.

``observe`` keeps each image's scores and labels and checks them, vectorised, when the window tests
are due (every ``check_every`` images) or at ``flush``/``snapshot``. Calling ``flush`` after every
image makes each batch one image: the two must agree on every finding (code, message, evidence,
order), every counter and every slot of the output window, on streams with empty images,
constant and repeated scores, NaN, scores outside [0, 1] and labels outside the classes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from safepredict.detections import Detections
from safepredict.monitor import Monitor, MonitorConfig, ReferenceProfile

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402 - after the importorskip
from hypothesis import strategies as st  # noqa: E402

NAMES = ("a", "b", "c", "d")


def _image(draw: st.DrawFn) -> Detections:
    kind = draw(st.sampled_from(["healthy", "healthy", "healthy", "empty", "low", "constant", "irregular", "label"]))
    n = 0 if kind == "empty" else draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scores = rng.uniform(0.0, 1.0, n).astype(np.float32)
    labels = rng.integers(0, len(NAMES), n)
    if kind == "low":
        scores *= 0.4
    elif kind == "constant":
        scores[:] = draw(st.sampled_from([0.3, 0.7, 1.0]))
    elif kind == "irregular":
        scores[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -0.25, 1.5]))
    elif kind == "label":
        labels[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, len(NAMES), 99]))
        scores[:] = 0.9
    return Detections(boxes=np.zeros((n, 4)), scores=scores, labels=labels)


@st.composite
def _streams(draw: st.DrawFn) -> list[Detections]:
    # Runs of one kind, so streaks and repeated best scores occur.
    out: list[Detections] = []
    for _ in range(draw(st.integers(1, 12))):
        image = _image(draw)
        out += [image] * draw(st.sampled_from([1, 1, 3, 12, 30]))
    return out


def _monitor(reference: ReferenceProfile | None) -> Monitor:
    now = iter(range(10**6))
    config = MonitorConfig(window=120, min_window=40, check_every=20, baseline_images=60, rate_limit_images=30)
    return Monitor(reference, config, 0.5, "KEY", NAMES, clock=lambda: float(next(now)), emit=False)


def _state(mon: Monitor) -> dict:
    has = mon._inv_candidates > 0
    return {
        "snapshot": mon.snapshot(),
        "max": np.nan_to_num(mon._max, nan=-1.0).tolist(),  # NaN: no candidate
        "inv": (mon._inv_candidates.tolist(), mon._inv_detections.tolist()),
        "hist": mon._hist[has].tolist(),
        "classes": mon._class_counts[mon._inv_detections > 0].tolist(),
        "streaks": (mon._streak, mon._below_run, mon._same_max_run, mon._streak_best_below),
    }


def _findings(found) -> list[tuple]:
    return [(f.code, f.message, f.severity, repr(f.data)) for f in found]


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    rng = np.random.default_rng(3)
    samples = []
    for _ in range(200):
        n = int(rng.integers(0, 10))
        scores = rng.uniform(0, 1, n).astype(np.float32)
        samples.append((None, Detections(np.zeros((n, 4)), scores, rng.integers(0, len(NAMES), n))))
    return ReferenceProfile.build(samples, score_threshold=0.5, class_names=NAMES)


@pytest.mark.parametrize("with_reference", [False, True])
@settings(max_examples=60, deadline=None)
@given(stream=_streams())
def test_batched_checks_equal_one_image_at_a_time(stream, with_reference, reference):
    ref = reference if with_reference else None
    batched, single = _monitor(ref), _monitor(ref)
    found_batched, found_single = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's casts of NaN and infinity
        for dets in stream:
            found_batched += batched.observe(None, dets)
            found_single += single.observe(None, dets) + single.flush()
        found_batched += batched.flush()
    assert _findings(found_batched) == _findings(found_single)
    assert _state(batched) == _state(single)


def test_a_finding_comes_back_with_its_batch_and_names_its_image():
    mon = _monitor(None)
    healthy = Detections(np.zeros((3, 4)), np.array([0.9, 0.6, 0.2], np.float32), np.array([0, 1, 2]))
    broken = Detections(np.zeros((2, 4)), np.array([np.nan, 0.8], np.float32), np.array([0, 1]))
    returned_at = {}
    stream = [healthy] * 4 + [broken] + [healthy] * 35 + [Detections.empty()] * 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, dets in enumerate(stream, start=1):
            for f in mon.observe(None, dets):
                returned_at.setdefault(f.code, (i, f.data["image_index"]))
    # NaN in image 5, inside the batch of images 1-20 (check_every = 20): returned by the call of
    # image 20, the evidence naming image 5.
    assert returned_at["monitor.nan_scores"] == (20, 5)
    # The empty images start at 41; the default streak limit (25) is reached at image 65, in the
    # batch of images 61-80: a streak that may fire is checked at once, at its own image.
    limit = MonitorConfig().empty_streak
    assert returned_at["monitor.empty_streak"] == (40 + limit, 40 + limit)
    # A snapshot checks the images not yet checked: the count is every image observed.
    for _ in range(7):
        mon.observe(None, healthy)
    assert mon.snapshot()["images_total"] == len(stream) + 7
