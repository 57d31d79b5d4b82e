"""The runtime monitor: a reference profile of healthy predictions and a cheap streaming watcher.

::

    profile = ReferenceProfile.build(validation_pairs, score_threshold=0.5, class_names=names)
    profile.save("safepredict-profile.json")
    mon = Monitor(reference=ReferenceProfile.load("safepredict-profile.json"), score_threshold=0.5,
                  threshold_key="MODEL.ROI_HEADS.SCORE_THRESH_TEST", class_names=names)
    findings = mon.observe(image_rgb, candidates)  # logged and warned too; see docs/monitoring.md
"""

from __future__ import annotations

from safepredict.findings import Finding
from safepredict.monitor.config import MonitorConfig
from safepredict.monitor.hints import threshold_advice, undertraining_hint
from safepredict.monitor.monitor import Monitor
from safepredict.monitor.profile import PROFILE_FILENAME, ProfileBuilder, ReferenceProfile, StatSummary

__all__ = [
    "PROFILE_FILENAME",
    "Finding",
    "Monitor",
    "MonitorConfig",
    "ProfileBuilder",
    "ReferenceProfile",
    "StatSummary",
    "threshold_advice",
    "undertraining_hint",
]
