"""Comparison rules: when a locked value and a found value count as the same environment.

A rule is a name stored next to each entry of the lock (``rule = "minor"``), so a user changes
how strictly an entry is checked by editing one word in the lockfile. The defaults below are
what a detector's numbers depend on: frameworks, torch, CUDA major.minor and cuDNN exactly;
numpy, OpenCV and Pillow within a minor release; the NVIDIA driver at least the one the
locked CUDA runtime needs; onnxruntime and the execution provider it runs an exported model on
exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from packaging.version import InvalidVersion, Version

Value = str | int | bool | None

__all__ = [
    "CUDA_MIN_DRIVER",
    "DEFAULT_FACT_RULES",
    "DEFAULT_PACKAGE_RULES",
    "RULES",
    "compare",
    "describe_rule",
    "min_driver_for_cuda",
]

# Rule name -> what it means, in the words reports use.
RULES: dict[str, str] = {
    "exact": "must be identical",
    "minor": "must have the same major.minor release",
    "major": "must have the same major release",
    "at_least": "must be this version or newer",
    "driver_for_cuda": "must be at least the driver the locked CUDA runtime needs",
    "present": "must be present (any version)",
    "record": "recorded only, never compared",
}

# Packages whose numbers a detector's output depends on, and how strictly each is held.
DEFAULT_PACKAGE_RULES: dict[str, str] = {
    "torch": "exact",
    "torchvision": "exact",
    "detectron2": "exact",
    "mmdet": "exact",
    "mmcv": "exact",
    "mmengine": "exact",
    "opencv": "minor",
    "numpy": "minor",
    "pillow": "minor",
    # An exported model's runtime: its kernels decide the numbers as torch's do.
    "onnxruntime": "exact",
}
# A package the user names with --package is held exactly: they named it because it matters.
USER_PACKAGE_RULE = "exact"

DEFAULT_FACT_RULES: dict[str, str] = {
    "python.version": "minor",
    "python.implementation": "exact",
    "platform.system": "exact",
    "platform.machine": "exact",
    "torch.cuda": "minor",
    "torch.cudnn": "exact",
    "nvidia.driver": "driver_for_cuda",
    "gpu.name": "record",
    "gpu.compute_capability": "exact",
    "opencv.ipp": "exact",
    "opencv.parallel_framework": "exact",
    "opencv.hal": "exact",
    "opencv.threads": "record",
    "detectron2.version": "exact",
    "detectron2.c_extension": "exact",
    "mmcv.ops": "exact",
    "onnxruntime.execution_provider": "exact",
}

# Lowest Linux driver that runs any CUDA runtime of a major release (CUDA minor-version
# compatibility). A runtime that needs PTX JIT for a new GPU can need a newer driver than this;
# lock with rule "at_least" to hold the captured driver instead.
CUDA_MIN_DRIVER: dict[int, str] = {
    10: "410.48",
    11: "450.80.02",
    12: "525.60.13",
    13: "580.65.06",
}


def min_driver_for_cuda(cuda: Value) -> str | None:
    """Return the lowest Linux driver that can run CUDA runtime ``cuda`` ("12.1"), or None if unknown."""
    if not isinstance(cuda, str) or not cuda:
        return None
    try:
        major = Version(cuda).major
    except InvalidVersion:
        return None
    return CUDA_MIN_DRIVER.get(major)


def _version(value: Value) -> Version | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Version(str(value))
    except InvalidVersion:
        return None


def _same(locked: Value, found: Value) -> bool:
    lv, fv = _version(locked), _version(found)
    if lv is not None and fv is not None:
        return lv == fv and lv.local == fv.local
    return locked == found


def _release_prefix(locked: Value, found: Value, parts: int) -> bool:
    lv, fv = _version(locked), _version(found)
    if lv is None or fv is None:
        return locked == found
    pad = (0,) * parts
    return (lv.release + pad)[:parts] == (fv.release + pad)[:parts]


def _at_least(locked: Value, found: Value) -> bool:
    lv, fv = _version(locked), _version(found)
    if lv is None or fv is None:
        return locked == found
    return fv >= lv


def _driver_for_cuda(locked: Value, found: Value, context: Mapping[str, Value]) -> bool:
    needed = min_driver_for_cuda(context.get("torch.cuda"))
    if needed is None:  # CPU-only torch or an unknown CUDA major: hold the captured driver
        return _at_least(locked, found)
    return _at_least(needed, found)


_COMPARE: dict[str, Callable[[Value, Value, Mapping[str, Value]], bool]] = {
    "exact": lambda lo, fo, _: _same(lo, fo),
    "minor": lambda lo, fo, _: _release_prefix(lo, fo, 2),
    "major": lambda lo, fo, _: _release_prefix(lo, fo, 1),
    "at_least": lambda lo, fo, _: _at_least(lo, fo),
    "driver_for_cuda": _driver_for_cuda,
    "present": lambda lo, fo, _: True,
}


def compare(rule: str, locked: Value, found: Value, context: Mapping[str, Value] | None = None) -> bool:
    """Return True when ``found`` satisfies ``rule`` against ``locked``.

    ``None`` means absent. Absent on both sides matches (a CPU-only lock checked on a CPU-only
    machine). Something locked but absent never matches. Something absent at lock time but
    present now matches only the lenient rules (``at_least``, ``driver_for_cuda``, ``present``):
    for the others a CPU-only torch replaced by a CUDA build is a different environment.
    ``context`` holds the lock's other fact values (``driver_for_cuda`` reads ``torch.cuda``).
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; known rules: {', '.join(RULES)}")
    if rule == "record":
        return True
    if locked is None and found is None:
        return True
    if found is None:
        return False
    if locked is None:
        return rule in ("at_least", "driver_for_cuda", "present")
    return _COMPARE[rule](locked, found, context or {})


def describe_rule(rule: str, locked: Value, context: Mapping[str, Value] | None = None) -> str:
    """Say in words what ``rule`` asks of a found value ("same major.minor as 2.4 (2.4.*)")."""
    if rule == "minor" and (v := _version(locked)) is not None:
        return f"{RULES[rule]} ({'.'.join(map(str, (*v.release, 0)[:2]))}.*)"
    if rule == "major" and (v := _version(locked)) is not None:
        return f"{RULES[rule]} ({v.major}.*)"
    if rule == "at_least":
        return f"{RULES[rule]} (>= {locked})"
    if rule == "driver_for_cuda":
        cuda = (context or {}).get("torch.cuda")
        needed = min_driver_for_cuda(cuda)
        if needed is not None:
            return f"{RULES[rule]} (CUDA {cuda} needs driver >= {needed})"
        return f"must be this driver or newer (>= {locked}; no CUDA runtime locked)"
    return RULES.get(rule, rule)
