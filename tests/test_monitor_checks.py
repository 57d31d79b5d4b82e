"""The streaming Monitor on synthetic streams: silent on healthy ones, the right code on each fault.

Every stream is a replayable list of ``(image_rgb, candidates)`` pairs, so the same tests can run on
recorded real predictions once a predictor produces them.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter

import numpy as np
import pytest
from _synthetic import SyntheticStream

from safepredict.detections import Detections
from safepredict.errors import SafePredictWarning
from safepredict.monitor import Finding, Monitor, MonitorConfig, ReferenceProfile, stats, undertraining_hint

KEY = "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
NAMES = SyntheticStream().class_names
OUTPUT_CODES = {
    "monitor.empty_streak",
    "monitor.empty_rate",
    "monitor.score_drift",
    "monitor.class_takeover",
    "monitor.nan_scores",
    "monitor.constant_scores",
}


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return ReferenceProfile.build(
        SyntheticStream(seed=11).take(300), score_threshold=0.5, class_names=NAMES, threshold_key=KEY
    )


def _monitor(reference=None, threshold=0.5, **config) -> Monitor:
    return Monitor(
        reference=reference,
        config=MonitorConfig(**config),
        score_threshold=threshold,
        threshold_key=KEY,
        class_names=NAMES,
        emit=False,
    )


def _codes(findings: list[Finding]) -> Counter[str]:
    return Counter(f.code for f in findings)


def _stream(*faults: str, n: int = 300, seed: int = 21) -> list:
    return SyntheticStream(seed=seed, faults=faults).take(n)


# -- healthy streams: false-alarm rate 0 -------------------------------------------------------


@pytest.mark.parametrize("seed", [31, 32])
def test_healthy_stream_with_reference_raises_nothing(reference, seed):
    mon = _monitor(reference)
    findings = mon.observe_many(_stream(n=1200, seed=seed))
    assert findings == [], [f.describe() for f in findings]
    snap = mon.snapshot()
    assert snap["images_total"] == 1200 and snap["findings_total"] == {} and snap["findings_suppressed_total"] == {}


def test_healthy_stream_without_reference_raises_nothing():
    findings = _monitor(None).observe_many(_stream(n=600, seed=33))
    assert findings == [], [f.describe() for f in findings]


def test_healthy_stream_against_a_small_reference_raises_nothing():
    small = ReferenceProfile.build(SyntheticStream(seed=12).take(80), score_threshold=0.5, class_names=NAMES)
    findings = _monitor(small).observe_many(_stream(n=600, seed=34))
    assert findings == [], [f.describe() for f in findings]


# -- output faults -----------------------------------------------------------------------------


def test_too_high_threshold_fires_empty_checks_with_threshold_advice(reference):
    findings = _monitor(reference, threshold=0.995).observe_many(_stream(n=300))
    codes = _codes(findings)
    assert codes["monitor.threshold_mismatch"] == 1
    assert codes["monitor.empty_streak"] == 1 and codes["monitor.empty_rate"] == 1
    streak = next(f for f in findings if f.code == "monitor.empty_streak")
    ev = streak.data
    assert ev["threshold_key"] == KEY and ev["score_threshold"] == 0.995
    assert ev["candidates_below"] > 0 and 0.5 < ev["best_below"] < 0.995
    # The sentence says how many, the best score and the key.
    assert f"{ev['candidates_below']} candidate(s) below" in streak.message
    assert f"{ev['best_below']:.3f}" in streak.message and KEY in streak.message
    rate = next(f for f in findings if f.code == "monitor.empty_rate")
    assert KEY in rate.message and rate.data["p_value"] < 1e-6


def test_too_high_threshold_without_reference_fires_all_below_threshold():
    findings = _monitor(None, threshold=0.995).observe_many(_stream(n=100))
    first = findings[0]
    assert first.code == "monitor.all_below_threshold"
    assert first.data["run"] == 10 and first.data["threshold_key"] == KEY
    assert "empty_streak" in {f.code.split(".")[1] for f in findings}


def test_empty_streak_without_candidates_gives_no_threshold_advice():
    mon = _monitor(None)
    findings = [f for _ in range(30) for f in mon.observe(None, Detections.empty())] + mon.flush()
    assert _codes(findings) == {"monitor.empty_streak": 1}
    assert findings[0].data["image_index"] == findings[0].data["limit"] == MonitorConfig().empty_streak
    assert "below the score threshold 0.5" not in findings[0].message
    assert findings[0].data["candidates_below"] == 0


def test_empty_streak_limit_follows_the_reference_empty_rate(reference):
    mon = _monitor(reference)
    limit = mon._empty_streak_limit
    assert limit is not None
    # The shortest run that is rarer than alpha at the reference's (generously bounded) empty rate.
    p = stats.upper_rate(reference.n_empty, reference.n_images)
    assert reference.empty_rate < p < 2 * reference.empty_rate
    assert p**limit < 1e-6 and (limit == 10 or p ** (limit - 1) >= 1e-6)
    findings = [f for _ in range(limit) for f in mon.observe(None, Detections.empty())] + mon.flush()
    assert [f.code for f in findings] == ["monitor.empty_streak"]
    assert findings[0].data["streak"] == findings[0].data["image_index"] == limit


def test_score_collapse_fires_score_drift(reference):
    findings = _monitor(reference).observe_many(_stream("collapse", n=200))
    drift = [f for f in findings if f.code == "monitor.score_drift"]
    assert drift and "collapsed" in drift[0].message
    assert drift[0].data["best_score_psi"] > drift[0].data["best_score_psi_critical"]


def test_class_takeover(reference):
    findings = _monitor(reference).observe_many(_stream("takeover", n=300))
    codes = _codes(findings)
    assert codes["monitor.class_takeover"] == 1
    f = next(f for f in findings if f.code == "monitor.class_takeover")
    assert f.data["class"] == NAMES[0] and f.data["share"] > 0.9
    assert codes.keys() <= {"monitor.class_takeover"}


def test_no_takeover_check_without_reference():
    assert _monitor(None).observe_many(_stream("takeover", n=300)) == []


def test_nan_scores_fire_at_once_and_are_excluded(reference):
    mon = _monitor(reference)
    findings = mon.observe_many(_stream("nan", n=50))
    assert findings[0].code == "monitor.nan_scores" and findings[0].severity == "error"
    assert findings[0].data["nonfinite"] == 1
    assert mon.snapshot()["images_nonfinite_total"] == 50
    assert "monitor.score_drift" not in _codes(findings)  # the finite scores are still healthy


def test_constant_scores(reference):
    findings = _monitor(reference).observe_many(_stream("constant", n=40))
    assert findings[0].code == "monitor.constant_scores"


def test_repeated_best_score_across_images_is_constant():
    mon = _monitor(None)
    dets = Detections(boxes=np.zeros((2, 4)), scores=[0.7, 0.2], labels=[0, 1])
    findings = [f for _ in range(25) for f in mon.observe(None, dets)] + mon.flush()
    assert [f.code for f in findings] == ["monitor.constant_scores"]
    assert "20 images in a row" in findings[0].message and findings[0].data["image_index"] == 20


def test_scores_outside_zero_one_and_labels_outside_the_classes():
    mon = _monitor(None)
    logits = Detections(boxes=np.zeros((3, 4)), scores=[3.5, -1.0, 0.8], labels=[0, 1, 9])
    assert _codes(mon.observe(None, logits) + mon.flush()) == {"monitor.score_range": 1, "monitor.label_range": 1}


@pytest.mark.parametrize("bad", [[0.9, -0.5], [0.9, np.nan], [np.inf, 0.2], [0.9, -np.inf]])
def test_irregular_scores_take_the_slow_path_and_are_reported(bad):
    mon = _monitor(None)
    dets = Detections(boxes=np.zeros((2, 4)), scores=bad, labels=[0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's cast of -inf to an index
        codes = _codes(mon.observe(None, dets) + mon.flush())
    finite = np.isfinite(np.asarray(bad, np.float32))
    assert codes["monitor.nan_scores"] == int(not finite.all())
    assert codes["monitor.score_range"] == int(
        bool(((np.asarray(bad)[finite] < 0) | (np.asarray(bad)[finite] > 1)).any())
    )
    assert mon.snapshot()["candidates_total"] == int(finite.sum())


# -- input faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "side"),
    [
        ("noise", "monitor.input_noise", "high"),
        ("low_contrast", "monitor.input_contrast", "low"),
        ("dark", "monitor.input_brightness", "low"),
        ("grayscale", "monitor.input_grayscale", "high"),
    ],
)
def test_input_drift(reference, fault, code, side):
    findings = _monitor(reference).observe_many(_stream(fault, n=200))
    hits = [f for f in findings if f.code == code]
    assert hits, _codes(findings)
    assert hits[0].data["side"] == side
    assert hits[0].data["count"] >= hits[0].data["critical_count"]
    # The candidates are healthy: no output check may blame them.
    assert not (_codes(findings).keys() & OUTPUT_CODES)


def test_grayscale_is_not_mistaken_for_swapped_channels(reference):
    findings = _monitor(reference).observe_many(_stream("grayscale", n=200))
    assert "monitor.input_channel_order" not in _codes(findings)


def test_swapped_channel_order(reference):
    findings = _monitor(reference).observe_many(_stream("swap_channels", n=200))
    hit = next(f for f in findings if f.code == "monitor.input_channel_order")
    means, ref = hit.data["channel_means"], hit.data["reference_channel_means"]
    assert means[0] < means[2] and ref[0] > ref[2]
    assert hit.data["distance_swapped"] < 0.5 * hit.data["distance"]
    assert "BGR" in hit.message
    assert "monitor.input_grayscale" not in _codes(findings)


def test_an_unusable_image_is_reported_not_raised(reference):
    mon = _monitor(reference)
    dets = _stream(n=1)[0][1]
    found = mon.observe(np.zeros((8, 8, 4), np.uint8), dets)
    assert [f.code for f in found] == ["monitor.input_shape"]
    assert mon.snapshot()["images_total"] == 1 and mon.snapshot()["input_images_total"] == 0


def test_swapped_channels_with_balanced_red_and_blue():
    """Red and blue objects on gray: the means cannot tell, the telling colours (yellow → cyan) can, at once."""
    ref = ReferenceProfile.build(
        SyntheticStream(seed=13, balanced_colours=True).take(300), score_threshold=0.5, class_names=NAMES
    )
    healthy = _monitor(ref).observe_many(SyntheticStream(seed=14, balanced_colours=True).take(400))
    assert healthy == [], [f.describe() for f in healthy]
    swapped = SyntheticStream(seed=15, balanced_colours=True, faults=("swap_channels",)).take(50)
    hit = next(f for f in _monitor(ref).observe_many(swapped) if f.code == "monitor.input_channel_order")
    ev = hit.data
    assert ev["reference_colour_vote"] < 0 < ev["colour_vote"] and ev["colour_vote_z"] > stats.z_for(1e-6)
    assert "telling colours" in hit.message and "mean colour" not in hit.message
    assert "color='RGB'" in hit.message and "cv2.cvtColor" in hit.message
    # Over a longer window the colour histogram shows it too.
    later = _monitor(ref, rate_limit_images=0, rate_limit_seconds=0.0).observe_many(
        SyntheticStream(seed=15, balanced_colours=True, faults=("swap_channels",)).take(200)
    )
    last = [f for f in later if f.code == "monitor.input_channel_order"][-1].data
    assert last["colour_psi_swapped"] < 0.5 * last["colour_psi"] and last["colour_psi"] > 3 * last["colour_psi_noise"]


def test_images_are_optional(reference):
    mon = _monitor(reference)
    assert mon.observe_many((None, d) for _, d in _stream("noise", n=200)) == []
    assert mon.snapshot()["input_images_total"] == 0


# -- rate limit, logging, threads --------------------------------------------------------------


def test_rate_limit_by_images_and_seconds():
    now = [0.0]
    mon = Monitor(
        config=MonitorConfig(rate_limit_images=100, rate_limit_seconds=10.0),
        score_threshold=0.5,
        clock=lambda: now[0],
        emit=False,
    )
    fired = []
    for i in range(400):
        now[0] = i * 0.05  # 20 images a second: 100 images take 5 s, so seconds decide
        fired += [(i, f) for f in mon.observe(None, Detections.empty())]
    streaks = [(i, f.data["image_index"]) for i, f in fired if f.code == "monitor.empty_streak"]
    # Image 25 first, then 10 s (200 images) later, each time as of its image's own clock, and
    # returned at once: a run of empty images that reaches a streak limit is checked without waiting
    # for its batch.
    assert streaks == [(24, 25), (224, 225)]
    snap = mon.snapshot()
    assert snap["findings_total"]["monitor.empty_streak"] == 2
    assert snap["findings_suppressed_total"]["monitor.empty_streak"] == 400 - 24 - 2


def test_findings_are_logged_with_structured_fields_and_warned(caplog):
    mon = Monitor(score_threshold=0.9, threshold_key=KEY)
    below = Detections(boxes=np.zeros((1, 4)), scores=[0.4], labels=[0])
    with caplog.at_level(logging.WARNING, logger="safepredict"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        returned = [f for _ in range(12) for f in mon.observe(None, below)] + mon.flush()
    assert [f.code for f in returned] == ["monitor.all_below_threshold"]
    records = [r for r in caplog.records if getattr(r, "safepredict_code", None) == "monitor.all_below_threshold"]
    assert len(records) == 1
    rec = records[0]
    assert rec.safepredict_severity == "warning"
    assert rec.safepredict_evidence["best_below"] == pytest.approx(0.4)
    assert rec.safepredict_evidence["threshold_key"] == KEY
    assert any(issubclass(w.category, SafePredictWarning) for w in caught)


def test_concurrent_observers_lose_no_counts(reference):
    mon = _monitor(reference)
    pairs = _stream(n=200, seed=40)

    def work():
        for image, dets in pairs:
            mon.observe(image, dets)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = mon.snapshot()
    assert snap["images_total"] == 800 and snap["input_images_total"] == 800
    assert snap["candidates_total"] == 4 * sum(len(d) for _, d in pairs)
    assert sum(snap["detections_by_class_total"].values()) == snap["detections_total"]


def test_memory_is_bounded_by_the_window(reference):
    mon = _monitor(reference, window=150, min_window=100, input_window=60)
    mon.observe_many(_stream(n=400))
    assert mon._hist.shape[0] == 150 and mon._input_window.table.shape[0] == 60
    assert mon.snapshot()["window_images"] == 150


def test_class_counters_survive_window_wraps():
    mon = _monitor(None, window=120, min_window=100, check_every=50)
    pairs = _stream(n=437, seed=41)
    mon.observe_many(pairs)
    expected = np.zeros(len(NAMES))
    for _, d in pairs:
        expected += np.bincount(d.labels[d.scores > 0.5], minlength=len(NAMES))
    snap = mon.snapshot()
    assert list(snap["detections_by_class_total"].values()) == expected.astype(int).tolist()
    assert snap["window_images"] == 120


def test_profile_from_another_model_is_refused(reference):
    with pytest.raises(ValueError, match="another model"):
        Monitor(reference=reference, class_names=("a", "b"))
    with pytest.raises(ValueError, match="another model"):
        Monitor(reference=reference, class_names=tuple(reversed(NAMES)))


def test_profile_without_class_names_is_padded_to_the_monitor_classes():
    # Labels 0 and 1 only were seen: the profile knows 2 classes, the model has 4.
    dets = Detections(boxes=np.zeros((2, 4)), scores=[0.9, 0.8], labels=[0, 1])
    ref = ReferenceProfile.build([(None, dets)] * 60, score_threshold=0.5)
    assert ref.n_classes == 2
    mon = Monitor(reference=ref, class_names=NAMES, emit=False)
    takeover = Detections(boxes=np.zeros((2, 4)), scores=[0.9, 0.8], labels=[3, 3])
    found = [f for _ in range(200) for f in mon.observe(None, takeover)]
    assert "monitor.class_takeover" in _codes(found)


def test_config_validates():
    with pytest.raises(ValueError):
        MonitorConfig(window=50, min_window=100)
    with pytest.raises(ValueError):
        MonitorConfig(window=100, min_window=50, check_every=200)
    with pytest.raises((TypeError, ValueError)):
        MonitorConfig(alpha=2.0)


# -- under-training hint -----------------------------------------------------------------------


def test_undertraining_hint_names_an_early_checkpoint():
    f = undertraining_hint(499, 90000)
    assert f is not None and f.code == "monitor.undertrained" and f.severity == "warning"
    assert "499 of 90000" in f.message and f.data["fraction"] == pytest.approx(499 / 90000, abs=1e-4)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((89999, 90000), {}), ((None, None), {"epoch": 12, "max_epochs": 12}), ((None, None), {})],
)
def test_undertraining_hint_is_silent_for_finished_or_unknown_schedules(args, kwargs):
    assert undertraining_hint(*args, **kwargs) is None


def test_undertraining_hint_prefers_epochs_and_grades_severity():
    f = undertraining_hint(1000, 1200, epoch=11, max_epochs=12)
    assert f is not None and f.data["unit"] == "epoch" and f.severity == "info"
    with pytest.raises(ValueError):
        undertraining_hint(-1, 100)


# -- sampling of the input statistics, label-aware channel order --------------------------------


def test_input_statistics_are_sampled_after_the_start_up(reference):
    mon = _monitor(reference, input_startup=100, input_every=8, input_window=60, min_input_window=50)
    mon.observe_many(_stream(n=900, seed=42))
    sampled = mon.snapshot()["input_images_total"]
    assert 100 + 800 / 8 * 0.7 < sampled < 100 + 800 / 8 * 1.3, sampled
    again = _monitor(reference, input_startup=100, input_every=8, input_window=60, min_input_window=50)
    again.observe_many(_stream(n=900, seed=42))
    assert again.snapshot()["input_images_total"] == sampled  # a fixed schedule: reproducible
    every = _monitor(reference, input_startup=0, input_every=1)
    every.observe_many(_stream(n=120, seed=42))
    assert every.snapshot()["input_images_total"] == 120


def test_input_faults_after_the_start_up_are_still_named_when_sampled(reference):
    mon = _monitor(reference, input_startup=200, input_every=8)
    healthy = SyntheticStream(seed=43).take(400)
    noisy = SyntheticStream(seed=44, faults=("noise",)).take(1200)
    found = [(i, f) for i, (image, d) in enumerate(healthy + noisy) for f in mon.observe(image, d)]
    hits = [i for i, f in found if f.code == "monitor.input_noise"]
    assert hits and 400 < hits[0] < 400 + 1200, [f.code for _, f in found]


LATE_FAULTS = {
    "noise": "monitor.input_noise",
    "grayscale": "monitor.input_grayscale",
    "dark": "monitor.input_brightness",
    "low_contrast": "monitor.input_contrast",
    "swap_channels": "monitor.input_channel_order",
    "takeover": "monitor.class_takeover",
}


@pytest.mark.parametrize("fault", sorted(LATE_FAULTS))
def test_a_fault_after_1000_healthy_images_is_named_within_150(reference, fault):
    # Every image's input statistics are computed (the default): a fault that starts long after the
    # start-up is named as soon as one that is there from the first image.
    mon = _monitor(reference)
    for image, d in SyntheticStream(seed=45).take(1000):
        assert not mon.observe(image, d)
    assert mon.snapshot()["input_images_total"] == 1000
    faulty = SyntheticStream(seed=46, faults=(fault,)).take(150)
    code = LATE_FAULTS[fault]
    named = [i for i, (image, d) in enumerate(faulty, 1) if code in {f.code for f in mon.observe(image, d)}]
    assert named, f"{code} not named within 150 images of {fault}: {mon.snapshot()['findings_total']}"


def test_a_profile_of_an_older_input_recipe_is_not_compared_on_inputs(reference, tmp_path, caplog):
    # A profile written before the input recipe was recorded: its input statistics came from another
    # grid and are not compared; the stream's first images stand in for them, its outputs still count.
    data = reference.to_json()
    del data["input_recipe"], data["input_grid"]
    legacy = ReferenceProfile.from_json(data)
    assert (legacy.input_recipe, legacy.input_grid) == (stats.LEGACY_INPUT_RECIPE, stats.LEGACY_INPUT_GRID)
    assert not legacy.inputs_current and reference.inputs_current
    with caplog.at_level(logging.WARNING, logger="safepredict"):
        mon = _monitor(legacy)
    assert any("recipe 1" in r.getMessage() for r in caplog.records)
    healthy = SyntheticStream(seed=47).take(300)
    assert not [f.code for image, d in healthy for f in mon.observe(image, d)]
    gray = SyntheticStream(seed=48, faults=("grayscale",)).take(150)
    codes = {f.code for image, d in gray for f in mon.observe(image, d)}
    assert "monitor.input_grayscale" in codes, codes
    collapsed = _monitor(legacy)
    codes = {f.code for image, d in _stream("collapse", n=150) for f in collapsed.observe(image, d)}
    assert "monitor.score_drift" in codes or "monitor.empty_streak" in codes, codes  # outputs: from the start


def _relabel(dets: Detections, mapping: dict[int, int]) -> Detections:
    labels = np.array([mapping.get(int(x), int(x)) for x in dets.labels], dtype=np.int64)
    return Detections(boxes=dets.boxes, scores=dets.scores, labels=labels, class_names=dets.class_names)


# A model whose classes are colours, under a red/blue swap: red and blue trade, yellow (cyan) reads as blue.
SWAP = {0: 2, 2: 0, 3: 2}


def test_class_shares_alone_name_a_channel_order_mistake():
    from safepredict.monitor import ProfileBuilder

    builder = ProfileBuilder(score_threshold=0.5, class_names=NAMES)
    for image, dets in SyntheticStream(seed=45).take(300):
        builder.add(image, dets)
        builder.add_swapped(_relabel(dets, SWAP), given=dets)
    ref = builder.build()
    assert ref.swapped_class_share is not None and ref.swapped_class_share[3] == 0.0
    assert ref.swap_pairs is not None and ref.swap_pairs[3 * 4 + 2] > 0  # yellow as given, blue swapped
    healthy = _monitor(ref).observe_many((None, d) for _, d in SyntheticStream(seed=46).take(600))
    assert healthy == [], [f.describe() for f in healthy]
    swapped = [(None, _relabel(d, SWAP)) for _, d in SyntheticStream(seed=47).take(200)]
    hit = next(f for f in _monitor(ref).observe_many(swapped) if f.code == "monitor.input_channel_order")
    assert "the class shares" in hit.message and "color='RGB'" in hit.message
    assert hit.data["class_js_swapped"] < hit.data["class_js"]
    assert hit.data["class_psi"] > hit.data["class_psi_critical"]
