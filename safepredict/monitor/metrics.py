"""The monitor's counters for scraping: Prometheus text exposition, and a collector for prometheus_client.

``render_prometheus(monitor.snapshot())`` needs nothing but the standard library; where
``prometheus_client`` is installed, ``register_prometheus(monitor)`` adds a collector that reads a
fresh snapshot at every scrape (no background thread, nothing on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

PREFIX = "safepredict_monitor_"

# (snapshot key, metric name, type, help)
_SCALARS: tuple[tuple[str, str, str, str], ...] = (
    ("images_total", "images_total", "counter", "Images observed."),
    ("images_empty_total", "images_empty_total", "counter", "Images with no detection above the score threshold."),
    (
        "images_without_candidates_total",
        "images_without_candidates_total",
        "counter",
        "Images with no candidate at all, even below the score threshold.",
    ),
    ("images_nonfinite_total", "images_nonfinite_total", "counter", "Images with NaN or infinite scores."),
    ("candidates_total", "candidates_total", "counter", "Candidates (before the score threshold) observed."),
    ("detections_total", "detections_total", "counter", "Detections above the score threshold."),
    ("empty_streak", "empty_streak", "gauge", "Current run of images with no detection."),
    ("score_threshold", "score_threshold", "gauge", "Score threshold the outputs are cut at."),
    ("window_empty_rate", "window_empty_rate", "gauge", "Empty rate over the output window."),
    ("window_median_best_score", "window_median_best_score", "gauge", "Median best score over the output window."),
    ("reference_empty_rate", "reference_empty_rate", "gauge", "Empty rate of the reference profile."),
)
# (snapshot key, metric name, label name, help)
_LABELLED: tuple[tuple[str, str, str, str], ...] = (
    ("detections_by_class_total", "detections_by_class_total", "class", "Detections above the threshold, by class."),
    ("findings_total", "findings_total", "code", "Findings reported (logged and warned), by code."),
    ("findings_suppressed_total", "findings_suppressed_total", "code", "Findings held back by the rate limit."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(snapshot: Mapping[str, Any]) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for key, name, kind, help_text in _SCALARS:
        value = snapshot.get(key)
        if value is None:
            continue
        lines += [
            f"# HELP {PREFIX}{name} {help_text}",
            f"# TYPE {PREFIX}{name} {kind}",
            f"{PREFIX}{name} {float(value):g}",
        ]
    for key, name, label, help_text in _LABELLED:
        values = snapshot.get(key) or {}
        lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} counter"]
        lines += [f'{PREFIX}{name}{{{label}="{_escape(str(k))}"}} {float(v):g}' for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


class PrometheusCollector:
    """A prometheus_client collector that turns a monitor's snapshot into metric families at scrape time."""

    def __init__(self, monitor: Any, prefix: str = PREFIX) -> None:
        self.monitor = monitor
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.monitor.snapshot()
        for key, name, kind, help_text in _SCALARS:
            value = snap.get(key)
            if value is None:
                continue
            if kind == "counter":
                # prometheus_client appends _total itself.
                yield CounterMetricFamily(self.prefix + name.removesuffix("_total"), help_text, value=value)
            else:
                yield GaugeMetricFamily(self.prefix + name, help_text, value=value)
        for key, name, label, help_text in _LABELLED:
            family = CounterMetricFamily(self.prefix + name.removesuffix("_total"), help_text, labels=[label])
            for k, v in sorted((snap.get(key) or {}).items()):
                family.add_metric([str(k)], v)
            yield family


def register_prometheus(monitor: Any, registry: Any = None) -> PrometheusCollector:
    """Register a collector for ``monitor`` with ``registry`` (prometheus_client's default registry if None)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError as exc:
        raise ImportError(
            "the Prometheus exposition needs prometheus_client: pip install prometheus_client "
            "(or scrape render_prometheus(monitor.snapshot()) yourself)"
        ) from exc
    collector = PrometheusCollector(monitor)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector
