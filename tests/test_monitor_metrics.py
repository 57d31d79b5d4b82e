"""Counters for scraping: the snapshot rendered as Prometheus text, and the prometheus_client collector."""

from __future__ import annotations

import numpy as np
import pytest

from safepredict.detections import Detections
from safepredict.monitor import Monitor
from safepredict.monitor.metrics import PrometheusCollector, render_prometheus


def _monitor() -> Monitor:
    mon = Monitor(score_threshold=0.5, class_names=("cat", 'say "hi"'), emit=False)
    dets = Detections(boxes=np.zeros((3, 4)), scores=[0.9, 0.6, 0.1], labels=[0, 1, 1])
    for _ in range(3):
        mon.observe(None, dets)
    for _ in range(30):
        mon.observe(None, Detections.empty())
    return mon


def test_snapshot_counts():
    snap = _monitor().snapshot()
    assert snap["images_total"] == 33 and snap["images_empty_total"] == 30
    assert snap["candidates_total"] == 9 and snap["detections_total"] == 6
    assert snap["detections_by_class_total"] == {"cat": 3, 'say "hi"': 3}
    assert snap["findings_total"] == {"monitor.empty_streak": 1}
    assert snap["findings_suppressed_total"] == {"monitor.empty_streak": 5}
    assert snap["empty_streak"] == 30 and snap["window_empty_rate"] == pytest.approx(30 / 33)


def test_prometheus_text_exposition():
    text = render_prometheus(_monitor().snapshot())
    lines = text.splitlines()
    assert "safepredict_monitor_images_total 33" in lines
    assert "# TYPE safepredict_monitor_images_total counter" in lines
    assert "# TYPE safepredict_monitor_empty_streak gauge" in lines
    assert 'safepredict_monitor_findings_total{code="monitor.empty_streak"} 1' in lines
    assert 'safepredict_monitor_detections_by_class_total{class="say \\"hi\\""} 3' in lines
    # No reference: its gauge is left out rather than exported as a fake number.
    assert not any(line.startswith("safepredict_monitor_reference_empty_rate") for line in lines)


def test_prometheus_client_collector():
    import prometheus_client  # installed by scripts/requirements-test.txt: a missing one is a failure

    registry = prometheus_client.CollectorRegistry()
    registry.register(PrometheusCollector(_monitor()))
    assert registry.get_sample_value("safepredict_monitor_images_total") == 33
    assert registry.get_sample_value("safepredict_monitor_findings_total", {"code": "monitor.empty_streak"}) == 1
    assert registry.get_sample_value("safepredict_monitor_empty_streak") == 30
    text = prometheus_client.generate_latest(registry).decode()
    assert 'safepredict_monitor_detections_by_class_total{class="cat"} 3.0' in text
