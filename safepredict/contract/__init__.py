"""The training contract: what a detector saw at training-time evaluation, and how inference differs.

- :mod:`~safepredict.contract.values`: :class:`TrainingContract` (colour order, mean/std, resize,
  padding, thresholds, classes, backbone, heads, test-time augmentation, each with the framework
  key it came from) and
  :class:`Discrepancy`;
- :mod:`~safepredict.contract.diff`: :func:`diff` compares two contracts key by key;
- :mod:`~safepredict.contract.traps`: :func:`check_training_config` looks for known traps inside
  one training config.

These are neutral values: this package imports no framework, no torch and nothing from
``safepredict.frameworks``. Finding a checkpoint's training artifact (which framework, which
config) is framework knowledge: :func:`safepredict.frameworks.artifact.discover`.
"""

from __future__ import annotations

from safepredict.contract.diff import config_diff, diff, single_pass_difference
from safepredict.contract.traps import check_training_config
from safepredict.contract.values import (
    ARCHITECTURE_FIELDS,
    CATEGORIES,
    DIFF_FIELDS,
    HEADS,
    OVERRIDABLE_FIELDS,
    POSTPROCESSING_FIELDS,
    PREPROCESSING_FIELDS,
    RESIZE_FIELDS,
    RESIZE_KINDS,
    SEVERITIES,
    TTA_FIELDS,
    Discrepancy,
    FrozenMap,
    ResizePolicy,
    TestTimeAugmentation,
    TrainingContract,
    TrainingProgress,
    with_overrides,
)

__all__ = [
    "ARCHITECTURE_FIELDS",
    "CATEGORIES",
    "DIFF_FIELDS",
    "HEADS",
    "OVERRIDABLE_FIELDS",
    "POSTPROCESSING_FIELDS",
    "PREPROCESSING_FIELDS",
    "RESIZE_FIELDS",
    "RESIZE_KINDS",
    "SEVERITIES",
    "TTA_FIELDS",
    "Discrepancy",
    "FrozenMap",
    "ResizePolicy",
    "TestTimeAugmentation",
    "TrainingContract",
    "TrainingProgress",
    "check_training_config",
    "config_diff",
    "diff",
    "single_pass_difference",
    "with_overrides",
]
