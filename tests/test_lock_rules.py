"""Comparison rules, value by value: what each rule lets through and what it stops."""

from __future__ import annotations

import pytest

from safepredict.lock.rules import DEFAULT_FACT_RULES, DEFAULT_PACKAGE_RULES, RULES, compare, describe_rule

CASES = [
    # rule, locked, found, matches
    ("exact", "2.4.1", "2.4.1", True),
    ("exact", "2.4.1", "2.4.0", False),
    ("exact", "2.4.1+cu121", "2.4.1+cu118", False),  # another CUDA build of the same release
    ("exact", "2.4.1+cu121", "2.4.1", False),
    ("exact", "2.4", "2.4.0", True),  # the same version, spelt two ways
    ("exact", "pthreads", "pthreads", True),
    ("exact", "pthreads", "TBB", False),
    ("minor", "1.26.4", "1.26.0", True),
    ("minor", "1.26.4", "1.27.0", False),
    ("minor", "4.10.0.84", "4.10.1.99", True),
    ("minor", "12.1", "12.4", False),
    ("major", "2.4.1", "2.0.0", True),
    ("major", "2.4.1", "3.0.0", False),
    ("at_least", "535.104.05", "550.54.15", True),
    ("at_least", "550.54.15", "535.104.05", False),
    ("present", "1.0", "9.9", True),
    ("record", "8", "64", True),
    ("record", "8", None, True),
    # absence
    ("exact", None, None, True),
    ("exact", "12.1", None, False),
    ("exact", None, "12.1", False),  # a CPU-only torch replaced by a CUDA build
    ("at_least", None, "550.54.15", True),
    ("minor", "2.4.1", None, False),
]


@pytest.mark.parametrize(("rule", "locked", "found", "matches"), CASES)
def test_rule(rule: str, locked, found, matches: bool) -> None:
    assert compare(rule, locked, found) is matches


@pytest.mark.parametrize(
    ("cuda", "driver", "matches"),
    [
        ("12.1", "525.60.13", True),  # minor-version compatibility: any 12.x runs on 525.60.13+
        ("12.4", "535.104.05", True),
        ("12.1", "520.61.05", False),
        ("13.0", "570.86.10", False),
        ("13.0", "580.65.06", True),
        ("11.8", "470.82.01", True),
        ("12.1", None, False),  # a GPU model on a machine without a driver
    ],
)
def test_driver_for_cuda(cuda: str, driver, matches: bool) -> None:
    assert compare("driver_for_cuda", "560.35.03", driver, {"torch.cuda": cuda}) is matches


def test_driver_for_cpu_only_torch_holds_the_captured_driver() -> None:
    assert compare("driver_for_cuda", "550.54.15", "550.54.15", {"torch.cuda": None})
    assert not compare("driver_for_cuda", "550.54.15", "535.0", {"torch.cuda": None})
    assert compare("driver_for_cuda", None, None, {"torch.cuda": "13.0"})  # CPU-only both times


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rule"):
        compare("roughly", "1", "1")


def test_defaults_use_known_rules_and_hold_frameworks_exactly() -> None:
    assert set(DEFAULT_PACKAGE_RULES.values()) | set(DEFAULT_FACT_RULES.values()) <= set(RULES)
    for name in ("torch", "torchvision", "detectron2", "mmdet", "mmcv", "mmengine"):
        assert DEFAULT_PACKAGE_RULES[name] == "exact"
    for name in ("numpy", "opencv", "pillow"):
        assert DEFAULT_PACKAGE_RULES[name] == "minor"
    assert (DEFAULT_FACT_RULES["torch.cuda"], DEFAULT_FACT_RULES["torch.cudnn"]) == ("minor", "exact")
    assert DEFAULT_FACT_RULES["nvidia.driver"] == "driver_for_cuda"
    # An exported model's runtime (issue 23): onnxruntime and its execution provider, exactly.
    assert DEFAULT_PACKAGE_RULES["onnxruntime"] == DEFAULT_FACT_RULES["onnxruntime.execution_provider"] == "exact"


def test_rules_describe_themselves_with_their_numbers() -> None:
    assert describe_rule("minor", "1.26.4") == "must have the same major.minor release (1.26.*)"
    assert "(>= 535.0)" in describe_rule("at_least", "535.0")
    assert "CUDA 12.1 needs driver >= 525.60.13" in describe_rule("driver_for_cuda", "550.0", {"torch.cuda": "12.1"})
