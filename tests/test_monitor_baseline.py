"""The self-baseline: without a reference, the stream's first images are the baseline of every drift test."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from _synthetic import SyntheticStream

from safepredict.detections import Detections
from safepredict.monitor import Monitor, MonitorConfig, ReferenceProfile

NAMES = SyntheticStream().class_names
HEALTHY = 300


def _monitor(**config) -> Monitor:
    return Monitor(config=MonitorConfig(**config), score_threshold=0.5, class_names=NAMES, emit=False)


def _turns_bad(fault: str, n_bad: int = 400, seed: int = 51) -> list:
    healthy = SyntheticStream(seed=seed).take(HEALTHY)
    return healthy + SyntheticStream(seed=seed + 1, faults=(fault,)).take(n_bad)


@pytest.mark.parametrize("seed", [61, 62])
def test_a_healthy_stream_stays_silent_against_its_own_start(seed):
    mon = _monitor()
    findings = mon.observe_many(SyntheticStream(seed=seed).take(1500))
    assert findings == [], [f.describe() for f in findings]
    assert mon.reference is None and mon._baseline is not None  # the baseline formed, and stayed quiet


@pytest.mark.parametrize(
    ("fault", "code", "within"),
    [
        ("noise", "monitor.input_noise", 50),
        ("grayscale", "monitor.input_grayscale", 50),
        ("dark", "monitor.input_brightness", 50),
        ("swap_channels", "monitor.input_channel_order", 50),
        ("collapse", "monitor.score_drift", 250),
        ("takeover", "monitor.class_takeover", 400),
    ],
)
def test_a_stream_that_changes_midway_is_named(fault, code, within):
    found = []
    mon = _monitor()
    for i, (image, dets) in enumerate(_turns_bad(fault)):
        found += [(i + 1, f) for f in mon.observe(image, dets)]
    first = next(((i, f) for i, f in found if f.code == code), None)
    assert first is not None, Counter(f.code for _, f in found)
    at, finding = first
    assert HEALTHY < at <= HEALTHY + within, at
    assert "the stream's first 200 images" in finding.message and finding.data["baseline"].startswith("the stream")
    assert all(i > HEALTHY for i, _ in found)  # nothing before the change


def test_the_baseline_describes_the_first_images_as_a_profile_would():
    pairs = SyntheticStream(seed=71).take(200)
    mon = _monitor()
    mon.observe_many(pairs)
    base = mon._baseline
    assert base is not None and base.n_images == 200
    built = ReferenceProfile.build(pairs, score_threshold=0.5, class_names=NAMES)
    assert (base.n_empty, base.n_without_candidates, base.n_images_with_detections) == (
        built.n_empty,
        built.n_without_candidates,
        built.n_images_with_detections,
    )
    assert base.class_counts == built.class_counts
    np.testing.assert_allclose(base.class_share, built.class_share, atol=1e-6)
    np.testing.assert_allclose(base.candidate_score_hist, built.candidate_score_hist, atol=1e-5)
    np.testing.assert_allclose(base.max_score_hist, built.max_score_hist, atol=1e-9)
    assert base.inputs is not None and built.inputs is not None
    assert base.inputs["brightness"] == built.inputs["brightness"]
    assert base.candidates_per_image.mean == pytest.approx(built.candidates_per_image.mean)


def test_no_baseline_when_switched_off_or_given_a_reference():
    pairs = SyntheticStream(seed=72).take(300)
    off = _monitor(self_baseline=False)
    off.observe_many(pairs)
    assert off._baseline is None
    ref = ReferenceProfile.build(SyntheticStream(seed=73).take(100), score_threshold=0.5, class_names=NAMES)
    given = Monitor(reference=ref, score_threshold=0.5, class_names=NAMES, emit=False)
    given.observe_many(pairs)
    assert given._baseline is ref


def test_an_all_empty_start_makes_a_baseline_that_fires_nothing():
    mon = _monitor(rate_limit_images=0, rate_limit_seconds=0.0)
    empty = [(None, Detections.empty())] * 300
    codes = Counter(f.code for f in mon.observe_many(empty))
    assert set(codes) == {"monitor.empty_streak"}  # the absolute rule, not the drift tests
