"""The monitor as Prometheus metrics, scraped from real prometheus_client registries and parsed by its parser.

Expectations are derived from the stream fed in (per-image best scores, the input statistics of
the images), never written down as numbers a change of the monitor could move.
"""

from __future__ import annotations

import urllib.request

import attrs
import numpy as np
import prometheus_client  # installed by scripts/requirements-test.txt: a missing one is a failure
import pytest
from prometheus_client.parser import text_string_to_metric_families

from safepredict.detections import Detections
from safepredict.errors import InputError, SafePredictWarning
from safepredict.monitor import Monitor, register_prometheus, render_prometheus, stats

NAMES = ("cat", 'say "hi"')


def _stream(n_full: int = 3, n_empty: int = 30, seed: int = 0) -> tuple[list[np.ndarray], list[Detections]]:
    rng = np.random.default_rng(seed)
    images, dets = [], []
    for i in range(n_full + n_empty):
        images.append(rng.integers(0, 256, (40 + i, 64, 3), dtype=np.uint8))
        if i < n_full:
            scores = rng.uniform(0.0, 1.0, 3).astype(np.float32)
            scores[0] = 1.0 if i == 0 else scores[0]  # a score of exactly 1.0 goes in the last bucket
            dets.append(Detections(boxes=np.zeros((3, 4)), scores=scores, labels=[0, 1, 1]))
        else:
            dets.append(Detections.empty())
    return images, dets


def _monitor(seed: int = 0) -> tuple[Monitor, list[np.ndarray], list[Detections]]:
    mon = Monitor(score_threshold=0.5, class_names=NAMES, emit=False)
    images, dets = _stream(seed=seed)
    for image, d in zip(images, dets, strict=True):
        mon.observe(image, d)
    return mon, images, dets


def test_snapshot_counts_and_histograms():
    mon, images, dets = _monitor()
    snap = mon.snapshot()
    assert snap["images_total"] == len(images) and snap["images_empty_total"] == 30
    assert snap["candidates_total"] == 9
    kept = np.concatenate([d.scores for d in dets if len(d)]) > 0.5
    assert snap["detections_total"] == int(kept.sum())
    assert snap["findings_total"] == {"monitor.empty_streak": 1}
    assert snap["findings_suppressed_total"] == {"monitor.empty_streak": 5}
    bins = snap["score_bins"]
    scores = np.concatenate([d.scores for d in dets if len(d)])
    expected = np.bincount(np.minimum(scores * bins, bins - 1).astype(int), minlength=bins)
    assert snap["candidate_score_bins_total"] == expected.tolist()
    best = np.array([d.scores.max() for d in dets if len(d)])
    assert (
        snap["best_score_bins_total"]
        == np.bincount(np.minimum(best * bins, bins - 1).astype(int), minlength=bins).tolist()
    )
    assert snap["best_score_sum"] == pytest.approx(float(best.sum()))
    assert snap["window_best_score_quantiles"]["0.5"] == pytest.approx(float(np.median(best)))


def test_text_exposition_parses_with_prometheus_clients_parser():
    mon, images, _ = _monitor()
    snap = mon.snapshot()
    text = render_prometheus(mon, model="cats")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser names a counter without its _total; the samples keep it.
    images_total = fams["safepredict_images"]
    assert images_total.type == "counter"
    assert [(s.name, s.labels, s.value) for s in images_total.samples] == [
        ("safepredict_images_total", {"model": "cats"}, len(images))
    ]
    by_class = {s.labels["class"]: s.value for s in fams["safepredict_detections_by_class"].samples}
    assert by_class == snap["detections_by_class_total"]  # 'say "hi"' escaped and read back
    assert fams["safepredict_best_score"].type == "histogram"
    assert fams["safepredict_empty_streak_images"].samples[0].value == snap["empty_streak"]
    # No reference: its gauge is left out rather than exported as a made-up number.
    assert "safepredict_reference_empty_ratio" not in fams
    # A snapshot dict renders the same families, less the build info.
    from_snapshot = {f.name for f in text_string_to_metric_families(render_prometheus(snap, model="cats"))}
    assert from_snapshot == set(fams) - {"safepredict_build_info"}


def test_registry_scrape_matches_the_stream():
    mon, images, dets = _monitor()
    registry = prometheus_client.CollectorRegistry()
    register_prometheus(mon, registry, model="cats")
    get = registry.get_sample_value
    m = {"model": "cats"}
    snap = mon.snapshot()
    assert get("safepredict_images_total", m) == len(images)
    assert get("safepredict_images_empty_total", m) == snap["images_empty_total"]
    assert get("safepredict_findings_total", {**m, "code": "monitor.empty_streak"}) == 1
    assert get("safepredict_findings_suppressed_total", {**m, "code": "monitor.empty_streak"}) == 5
    # The best-score histogram: cumulative, +Inf and _count are the images with candidates.
    best = np.array([d.scores.max() for d in dets if len(d)])
    assert get("safepredict_best_score_bucket", {**m, "le": "+Inf"}) == len(best)
    assert get("safepredict_best_score_count", m) == len(best)
    assert get("safepredict_best_score_bucket", {**m, "le": "1.0"}) == len(best)
    assert get("safepredict_best_score_sum", m) == pytest.approx(float(best.sum()))
    assert get("safepredict_best_score_bucket", {**m, "le": "0.5"}) == int((best < 0.5).sum())
    assert get("safepredict_candidate_score_count", m) == snap["candidates_total"]
    for q in ("0.05", "0.5", "0.95"):
        assert get("safepredict_window_best_score", {**m, "quantile": q}) == pytest.approx(
            float(np.quantile(best, float(q)))
        )
    # Input statistics: the quantiles of what stats.image_statistics says of the images fed in.
    rows = np.array([stats.image_statistics(im, mon.config.input_grid) for im in images])
    for name, column in (("input_brightness", stats.BRIGHTNESS), ("input_height_pixels", stats.HEIGHT)):
        assert get(f"safepredict_{name}", {**m, "quantile": "0.5"}) == pytest.approx(float(np.median(rows[:, column])))
    assert get("safepredict_input_channel_mean", {**m, "channel": "blue", "quantile": "0.95"}) == pytest.approx(
        float(np.quantile(rows[:, stats.MEAN_B], 0.95))
    )
    # Read at scrape time: more images, higher counters, no re-registration.
    mon.observe(images[0], dets[0])
    assert get("safepredict_images_total", m) == len(images) + 1


def test_every_input_statistic_is_exported():
    mon, _, _ = _monitor()
    snap = mon.snapshot()
    fams = {f.name: f for f in text_string_to_metric_families(render_prometheus(snap, model="m"))}
    inputs = {name: f for name, f in fams.items() if name.startswith("safepredict_input_") and f.type == "summary"}
    # One sample per statistic and quantile (the three channel means share one family, by label).
    assert sum(len(f.samples) for f in inputs.values()) == 3 * len(stats.INPUT_STATS)
    # A statistic the metrics do not name yet still comes out, under its own name.
    extra = {**snap, "input_window_quantiles": {"sharpness": {"0.05": 1.0, "0.5": 2.0, "0.95": 3.0}}}
    fams = {f.name: f for f in text_string_to_metric_families(render_prometheus(extra, model="m"))}
    assert [s.value for s in fams["safepredict_input_sharpness"].samples] == [1.0, 2.0, 3.0]


def test_two_models_share_one_registry_by_label():
    first, _, _ = _monitor(seed=1)
    second = Monitor(score_threshold=0.3, emit=False)
    registry = prometheus_client.CollectorRegistry()
    collector = register_prometheus(first, registry, model="a")
    assert register_prometheus(second, registry, model="b") is collector
    get = registry.get_sample_value
    assert get("safepredict_images_total", {"model": "a"}) == first.snapshot()["images_total"]
    assert get("safepredict_images_total", {"model": "b"}) == 0
    assert get("safepredict_score_threshold", {"model": "b"}) == 0.3
    with pytest.raises(InputError, match="already exported"):
        register_prometheus(Monitor(emit=False), registry, model="a")
    collector.remove("b")
    assert get("safepredict_images_total", {"model": "b"}) is None
    # The text the HTTP endpoint serves is one document: every family once, both models in it.
    text = prometheus_client.generate_latest(registry).decode()
    assert text.count("# TYPE safepredict_images_total counter") == 1


@pytest.mark.slow
def test_http_endpoint_and_the_lock_check_of_a_real_predictor(d2_fixture, tmp_path):
    from safepredict import SafePredictor
    from safepredict.lock import Probe, capture_environment, read_lock, write_lock
    from safepredict.lock.lockfile import write_lock_file

    lock = write_lock(tmp_path / "safepredict.lock", capture_environment(probe=Probe(deep=False)))
    numpy = lock.environment.package("numpy")
    assert numpy is not None
    other = attrs.evolve(numpy, version="1.0.0")
    env = attrs.evolve(lock.environment, packages=[other if p is numpy else p for p in lock.environment.packages])
    stale = write_lock_file(attrs.evolve(read_lock(lock.path or ""), environment=env), tmp_path / "stale.lock")

    names = d2_fixture.class_names
    good = SafePredictor(checkpoint=d2_fixture.checkpoint, lock=lock.path, auto_reference=False, class_names=names)
    with pytest.warns(SafePredictWarning, match="packages.numpy"):
        bad = SafePredictor(checkpoint=d2_fixture.checkpoint, lock=stale.path, auto_reference=False, class_names=names)
    images = d2_fixture.dataset.val_images[:3]
    for path in images:
        good.predict(path)
    registry = prometheus_client.CollectorRegistry()
    register_prometheus(good, registry, model="good")
    register_prometheus(bad, registry, model="stale")
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("safepredict_images_total", (("model", "good"),))] == len(images)
    assert samples[("safepredict_images_total", (("model", "stale"),))] == 0
    assert good.lock_report is not None and good.lock_report.ok
    assert samples[("safepredict_lock_check_ok", (("model", "good"),))] == 1
    assert samples[("safepredict_lock_entries", (("model", "good"),))] == good.lock_report.checked
    assert samples[("safepredict_lock_check_ok", (("model", "stale"),))] == 0
    assert samples[("safepredict_lock_mismatch", (("key", "packages.numpy"), ("model", "stale")))] == 1
    info = [k for k in samples if k[0] == "safepredict_build_info" and ("model", "good") in k[1]]
    assert info and ("framework", "detectron2") in info[0][1]
