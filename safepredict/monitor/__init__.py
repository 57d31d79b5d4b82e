"""The runtime monitor: a reference profile of healthy predictions and a cheap streaming watcher.

::

    profile = ReferenceProfile.build(validation_pairs, score_threshold=0.5, class_names=names)
    profile.save("safepredict-profile.json")
    mon = Monitor(reference=ReferenceProfile.load("safepredict-profile.json"), score_threshold=0.5,
                  threshold_key="MODEL.ROI_HEADS.SCORE_THRESH_TEST", class_names=names)
    findings = mon.observe(image_rgb, candidates)  # logged and warned too; see docs/monitoring.md
    register_prometheus(predictor, model="retinanet-v3")  # Prometheus metrics: docs/monitoring-production.md
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safepredict._lazy import lazy_attributes

# name -> module that defines it, imported on first use: `safepredict check` reaches
# safepredict.monitor.commands (for --replay) without paying for numpy and the monitor.
_LAZY = {
    "PROFILE_FILENAME": "safepredict.monitor.profile",
    "Finding": "safepredict.findings",
    "Monitor": "safepredict.monitor.monitor",
    "MonitorConfig": "safepredict.monitor.config",
    "ProfileBuilder": "safepredict.monitor.profile",
    "ReferenceProfile": "safepredict.monitor.profile",
    "StatSummary": "safepredict.monitor.profile",
    "register_prometheus": "safepredict.monitor.metrics",
    "render_prometheus": "safepredict.monitor.metrics",
    "threshold_advice": "safepredict.monitor.hints",
    "undertraining_hint": "safepredict.monitor.hints",
}

__all__ = [
    "PROFILE_FILENAME",
    "Finding",
    "Monitor",
    "MonitorConfig",
    "ProfileBuilder",
    "ReferenceProfile",
    "StatSummary",
    "register_prometheus",
    "render_prometheus",
    "threshold_advice",
    "undertraining_hint",
]

if TYPE_CHECKING:
    from safepredict.findings import Finding
    from safepredict.monitor.config import MonitorConfig
    from safepredict.monitor.hints import threshold_advice, undertraining_hint
    from safepredict.monitor.metrics import register_prometheus, render_prometheus
    from safepredict.monitor.monitor import Monitor
    from safepredict.monitor.profile import PROFILE_FILENAME, ProfileBuilder, ReferenceProfile, StatSummary

__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
