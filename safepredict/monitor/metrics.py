"""The monitor as Prometheus metrics: counters, score histograms, input statistics, findings, the lock check.

::

    from prometheus_client import start_http_server
    from safepredict.monitor import register_prometheus

    register_prometheus(predictor, model="retinanet-v3")  # a SafePredictor, or a Monitor
    start_http_server(9108)                               # GET http://host:9108/metrics

Where ``prometheus_client`` is installed (``pip install "safepredict[prometheus]"``),
:func:`register_prometheus` adds one collector per registry; each scrape reads a fresh
``monitor.snapshot()`` of every registered source, so nothing runs on the prediction path and no
thread is started. :func:`render_prometheus` writes the same families in the text exposition
format (0.0.4) with the standard library only. Every sample carries the ``model`` label; names
follow Prometheus' conventions (``safepredict_`` prefix, ``_total`` counters, units and
``_ratio`` in names), listed in docs/monitoring-production.md.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safepredict.errors import InputError

__all__ = ["PREFIX", "Family", "PrometheusCollector", "families", "register_prometheus", "render_prometheus"]

PREFIX = "safepredict_"
_QUANTILE_LABELS = ("0.05", "0.25", "0.5", "0.75", "0.95")

# (snapshot key, family name, kind, help). Counters are named without `_total`: their sample has it.
_SCALARS: tuple[tuple[str, str, str, str], ...] = (
    ("images_total", "images", "counter", "Images observed by the monitor."),
    ("images_empty_total", "images_empty", "counter", "Images with no detection above the score threshold."),
    (
        "images_without_candidates_total",
        "images_without_candidates",
        "counter",
        "Images with no candidate at all, even below the score threshold.",
    ),
    ("images_nonfinite_total", "images_nonfinite", "counter", "Images with NaN or infinite scores."),
    ("input_images_total", "input_images", "counter", "Images whose input statistics were computed."),
    ("candidates_total", "candidates", "counter", "Candidates (all detections before the score threshold)."),
    ("detections_total", "detections", "counter", "Detections above the score threshold."),
    ("empty_streak", "empty_streak_images", "gauge", "Current run of images in a row with no detection."),
    ("score_threshold", "score_threshold", "gauge", "Score threshold the outputs are cut at."),
    ("window_images", "window_images", "gauge", "Images in the monitor's output window."),
    ("window_empty_rate", "window_empty_ratio", "gauge", "Share of the output window's images with no detection."),
    ("reference_empty_rate", "reference_empty_ratio", "gauge", "Share of empty images in the reference profile."),
)
# (snapshot key, family name, label, help)
_LABELLED: tuple[tuple[str, str, str, str], ...] = (
    ("detections_by_class_total", "detections_by_class", "class", "Detections above the threshold, by class."),
    ("findings_total", "findings", "code", "Findings reported (logged and warned), by code."),
    ("findings_suppressed_total", "findings_suppressed", "code", "Findings held back by the rate limit, by code."),
)
# Input statistic (safepredict.monitor.stats.INPUT_STATS) -> (family name, extra labels, help).
_INPUTS: dict[str, tuple[str, dict[str, str], str]] = {
    "brightness": ("input_brightness", {}, "Mean luminance (BT.601) of the input window's images, 0-255."),
    "contrast": ("input_contrast", {}, "Standard deviation of luminance of the input window's images."),
    "noise": ("input_noise", {}, "High-frequency share (mean |Laplacian| over contrast) of the input window."),
    "colourfulness": ("input_colourfulness", {}, "Mean channel difference of the input window's images."),
    "gray_fraction": ("input_gray_ratio", {}, "Share of grayscale pixels in the input window's images."),
    "mean_r": ("input_channel_mean", {"channel": "red"}, "Mean of one RGB channel of the input window's images."),
    "mean_g": ("input_channel_mean", {"channel": "green"}, "Mean of one RGB channel of the input window's images."),
    "mean_b": ("input_channel_mean", {"channel": "blue"}, "Mean of one RGB channel of the input window's images."),
    "height": ("input_height_pixels", {}, "Height of the input window's images."),
    "width": ("input_width_pixels", {}, "Width of the input window's images."),
}


class Family:
    """One metric family: its name (without ``_total`` for a counter), type, help and samples.

    A sample is ``(suffix, labels, value)``: ``("_total", {"model": "m"}, 33.0)``.
    """

    __slots__ = ("help", "kind", "name", "samples")

    def __init__(self, name: str, kind: str, help: str) -> None:
        self.name, self.kind, self.help = name, kind, help
        self.samples: list[tuple[str, dict[str, str], float]] = []

    def add(self, suffix: str, labels: Mapping[str, str], value: float) -> None:
        self.samples.append((suffix, dict(labels), float(value)))

    def get(self, suffix: str = "", **labels: str) -> float | None:
        """The value of the sample with exactly these labels, or None (for tests and health checks)."""
        return next((v for s, lab, v in self.samples if s == suffix and lab == labels), None)


def _families_of(snapshot: Mapping[str, Any], model: str, lock_report: Any = None) -> list[Family]:
    """The families of one source: its monitor's snapshot and, for a predictor, its start-up lock check."""
    base = {"model": model}
    out: list[Family] = []

    def family(name: str, kind: str, help: str) -> Family:
        fam = Family(PREFIX + name, kind, help)
        out.append(fam)
        return fam

    for key, name, kind, help_text in _SCALARS:
        value = snapshot.get(key)
        if value is None:
            continue  # no reference, an empty window: left out rather than exported as a made-up number
        family(name, kind, help_text).add("_total" if kind == "counter" else "", base, value)
    for key, name, label, help_text in _LABELLED:
        fam = family(name, "counter", help_text)
        for k, v in sorted((snapshot.get(key) or {}).items()):
            fam.add("_total", {**base, label: str(k)}, v)

    bins = snapshot.get("score_bins")
    if bins:
        best = family("best_score", "histogram", "Best score per image (images with candidates), cumulative.")
        _histogram(best, base, bins, snapshot.get("best_score_bins_total") or [], snapshot.get("best_score_sum"))
        cand = family("candidate_score", "histogram", "Scores of all candidates before the threshold, cumulative.")
        _histogram(cand, base, bins, snapshot.get("candidate_score_bins_total") or [], None)
    window = snapshot.get("window_best_score_quantiles") or {}
    if window:
        fam = family("window_best_score", "summary", "Quantiles of the best score per image over the output window.")
        for q in _QUANTILE_LABELS:
            if q in window:
                fam.add("", {**base, "quantile": q}, window[q])
    inputs: dict[str, Family] = {}
    for stat, quantiles in (snapshot.get("input_window_quantiles") or {}).items():
        if not quantiles:
            continue
        # A statistic this table does not know yet is exported under its own name, never dropped.
        name, extra, help_text = _INPUTS.get(
            stat, (f"input_{stat}", {}, f"Input statistic {stat} of the input window.")
        )
        if name not in inputs:
            inputs[name] = family(name, "summary", help_text + " Quantiles over the input window.")
        for q in ("0.05", "0.5", "0.95"):
            if q in quantiles:
                inputs[name].add("", {**base, **extra, "quantile": q}, quantiles[q])

    if lock_report is not None:
        family("lock_check_ok", "gauge", "1 when the environment matched the lock at start-up, else 0.").add(
            "", base, 1.0 if lock_report.ok else 0.0
        )
        family("lock_entries", "gauge", "Lock entries checked at start-up.").add("", base, lock_report.checked)
        mismatch = family("lock_mismatch", "gauge", "1 for each lock entry that differed at start-up, by key.")
        for m in lock_report.mismatches:
            mismatch.add("", {**base, "key": str(m.key)}, 1.0)
        family("lock_unverified_entries", "gauge", "Lock entries that could not be verified at start-up.").add(
            "", base, len(lock_report.unverified)
        )
    return out


def _histogram(fam: Family, base: dict[str, str], bins: int, counts: list[Any], total: float | None) -> None:
    running = 0.0
    for i, c in enumerate(counts):
        running += float(c)
        upper = "1.0" if i == bins - 1 else _go_float((i + 1) / bins)
        fam.add("_bucket", {**base, "le": upper}, running)
    fam.add("_bucket", {**base, "le": "+Inf"}, running)
    fam.add("_count", base, running)
    if total is not None:
        fam.add("_sum", base, total)


def families(sources: Iterable[tuple[str, Any]]) -> list[Family]:
    """The metric families of ``(model, source)`` pairs, each family holding every source's samples.

    A source is a Monitor, or a predictor (anything with a ``monitor``; its ``lock_report`` too).
    """
    merged: dict[str, Family] = {}
    info = Family(PREFIX + "build_info", "gauge", "1, labelled with safepredict's version and the model's framework.")
    version = _version()
    for model, source in sources:
        monitor = getattr(source, "monitor", source)
        lock_report = getattr(source, "lock_report", None)
        framework = getattr(source, "framework", None)
        info.add("", {"model": model, "version": version, "framework": str(framework or "")}, 1.0)
        # A predictor made with monitor=False: its build info and lock check only.
        snapshot = monitor.snapshot() if monitor is not None else {}
        for fam in _families_of(snapshot, model, lock_report):
            into = merged.setdefault(fam.name, Family(fam.name, fam.kind, fam.help))
            into.samples.extend(fam.samples)
    return [info, *merged.values()] if info.samples else list(merged.values())


def _version() -> str:
    from safepredict._version import installed_version

    return installed_version()


def _go_float(value: float) -> str:
    """A float as Prometheus writes it (Go's formatting: ``+Inf``, ``NaN``, ``1.0``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _model_of(source: Any, model: str | None) -> str:
    if model is not None:
        return str(model)
    checkpoint = getattr(getattr(source, "artifact", None), "checkpoint", None)
    if checkpoint is not None:
        path = Path(checkpoint)
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return "default"


def render_prometheus(source: Any, model: str | None = None) -> str:
    """The metrics of ``source`` (a Monitor, a predictor, or a monitor's ``snapshot()`` dict) as Prometheus text."""
    name = _model_of(source, model)
    if isinstance(source, Mapping):
        fams = _families_of(source, name)
    else:
        fams = families([(name, source)])
    lines: list[str] = []
    for fam in fams:
        shown = fam.name + "_total" if fam.kind == "counter" else fam.name
        lines += [f"# HELP {shown} {_escape(fam.help)}", f"# TYPE {shown} {fam.kind}"]
        for suffix, labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(
                f"{fam.name}{suffix}{{{text}}} {_go_float(value)}" if text else f"{fam.name}{suffix} {_go_float(value)}"
            )
    return "\n".join(lines) + "\n"


class PrometheusCollector:
    """A prometheus_client collector over every registered source, read at scrape time.

    One per registry (:func:`register_prometheus` keeps it); sources are added and removed by model label.
    """

    def __init__(self) -> None:
        self._sources: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add(self, source: Any, model: str | None = None) -> str:
        """Export ``source`` under the ``model`` label (default: the checkpoint's folder and file name)."""
        name = _model_of(source, model)
        with self._lock:
            if name in self._sources and self._sources[name] is not source:
                raise InputError(
                    f"model label {name!r} is already exported by another source",
                    found=name,
                    fix="pass model='...' with a name of its own to register_prometheus",
                )
            self._sources[name] = source
        return name

    def remove(self, model: str) -> None:
        """Stop exporting the source with label ``model`` (a predictor that is shut down)."""
        with self._lock:
            self._sources.pop(model, None)

    @property
    def models(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._sources)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        with self._lock:
            sources = list(self._sources.items())
        for fam in families(sources):
            metric = Metric(fam.name, fam.help, fam.kind)
            for suffix, labels, value in fam.samples:
                metric.add_sample(fam.name + suffix, labels, value)
            yield metric


_COLLECTORS: weakref.WeakKeyDictionary[Any, PrometheusCollector] = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


def register_prometheus(source: Any, registry: Any = None, *, model: str | None = None) -> PrometheusCollector:
    """Export ``source`` (a SafePredictor or a Monitor) to ``registry`` (prometheus_client's default if None).

    Several predictors share one registry, told apart by ``model``; returns the registry's collector.
    """
    try:
        from prometheus_client import REGISTRY
    except ImportError as exc:
        raise ImportError(
            'the Prometheus metrics need prometheus_client: pip install "safepredict[prometheus]" '
            "(or serve render_prometheus(monitor) yourself)"
        ) from exc
    target = registry if registry is not None else REGISTRY
    with _COLLECTORS_LOCK:
        collector = _COLLECTORS.get(target)
        fresh = collector is None
        if collector is None:
            collector = _COLLECTORS[target] = PrometheusCollector()
    collector.add(source, model)
    if fresh:
        target.register(collector)
    return collector
