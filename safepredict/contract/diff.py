"""How an inference contract differs from the training contract: :func:`diff` and its wording."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from safepredict.contract.values import (
    ARCHITECTURE_FIELDS,
    DIFF_FIELDS,
    POSTPROCESSING_FIELDS,
    TTA_FIELDS,
    Discrepancy,
    TrainingContract,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _category(field: str) -> str:
    if field in POSTPROCESSING_FIELDS:
        return "postprocessing"
    if field in ARCHITECTURE_FIELDS:
        return "architecture"
    return "preprocessing"


def _severity(field: str) -> str:
    if field in TTA_FIELDS:
        # A predictor runs one pass per image either way: the detections differ from the TTA
        # evaluation's, on purpose, not wrongly.
        return "warning"
    if field in POSTPROCESSING_FIELDS or field == "class_names":
        # A post-processing value chosen at inference is honoured (and logged); wrong names
        # mislabel but do not change boxes or scores.
        return "warning"
    return "error"


def _training_value_text(training: TrainingContract, field: str) -> str:
    # repr, not _fmt: a fix is copied into a config, so values keep their exact spelling.
    if field in training.raw:
        return repr(training.raw[field])
    return repr(training.value(field))


def _tta_fix(field: str, training: TrainingContract, inference: TrainingContract) -> str:
    key = str(inference.keys.get(field) or training.keys.get(field) or field)
    want = _training_value_text(training, field)
    single = (
        "no predictor runs TTA (DefaultPredictor, inference_detector and SafePredictor run one pass per image), "
        "so detections match the evaluation without TTA"
    )
    if training.tta.enabled and not inference.tta.enabled:
        return (
            f"set {key} = {want} (training value) if you mean to evaluate as training did; {single}: compare them "
            "with that evaluation, not the TTA one"
        )
    if inference.tta.enabled and not training.tta.enabled:
        return f"set {key} = {want} (training value): training evaluated without TTA; {single}"
    return f"set {key} = {want} (training value) to evaluate with the training's augmentation; {single}"


def _fix(field: str, training: TrainingContract, inference: TrainingContract) -> str:
    if field in TTA_FIELDS:
        return _tta_fix(field, training, inference)
    want = _training_value_text(training, field)
    have = repr(inference.value(field))
    inference_key = str(inference.keys.get(field, ""))
    if inference_key.startswith("overrides["):
        return f"drop {inference_key} to use the training value {want}, or keep it if the change is deliberate"
    key = inference_key or str(training.keys.get(field, ""))
    if not key:
        note = training.notes.get(field) or "fixed in the framework's code"
        return f"use the training value {want} ({note}); the inference side has {have}"
    deliberate = f"or pass overrides={{{field!r}: {have}}} to keep it deliberately"
    if field in POSTPROCESSING_FIELDS:
        return f"set {key} = {want} (training value) to match training evaluation, {deliberate}"
    if field in ("framework", "meta_architecture", "backbone", "depth", "heads", "num_classes"):
        return (
            f"build the model from the training config: set {key} = {want} (training value); "
            "the checkpoint's weights only fit the architecture they were trained with"
        )
    if field == "class_names":
        return f"use the training class names {want} (from {training.where(field)})"
    return f"set {key} = {want} (training value), {deliberate}"


def _message(field: str, t: Any, i: Any) -> str:
    if field in ("pixel_mean", "pixel_std") and isinstance(t, tuple) and len(t) > 1 and _same(tuple(reversed(t)), i):
        return "same values in reversed channel order: RGB/BGR swapped"
    if field == "input_format":
        return "channel order swapped: the first convolution sees red where it learned blue"
    if field == "tta.enabled":
        return "test-time augmentation " + ("on at training evaluation, off here" if t else "off at training, on here")
    if field in TTA_FIELDS:
        return "another test-time augmentation"
    return ""


def diff(
    training: TrainingContract, inference: TrainingContract, *, inference_source: str | None = None
) -> tuple[Discrepancy, ...]:
    """Every setting of ``inference`` that differs from ``training``, as :class:`Discrepancy` values.

    A field the inference side does not know (``class_names`` None) is not a difference.
    ``inference_source`` overrides the inference contract's ``source`` in the messages.
    """
    if inference_source is not None:
        inference = attrs.evolve(inference, source=inference_source)
    found: list[Discrepancy] = []
    reported: set[str] = set()
    for field in DIFF_FIELDS:
        t, i = training.value(field), inference.value(field)
        if field == "class_names" and (t is None or i is None):
            continue
        if field in TTA_FIELDS and field != "tta.enabled" and not (training.tta.enabled and inference.tta.enabled):
            continue  # the copies only matter where both sides augment
        if _same(t, i):
            continue
        key = training.keys.get(field)
        if field.startswith("resize.") and key is not None:
            if key in reported:
                continue  # another resize field read from the same key already names it
            reported.add(key)
        found.append(
            Discrepancy(
                key=field,
                framework_key=training.key(field),
                training=t,
                inference=i,
                training_source=training.where(field),
                inference_source=inference.where(field),
                severity=_severity(field),
                category=_category(field),
                fix=_fix(field, training, inference),
                message=_message(field, t, i),
            )
        )
    return tuple(found)


def config_diff(
    training: Mapping[str, Any],
    inference: Mapping[str, Any],
    *,
    covered: Iterable[str],
    category_of: Callable[[str], str],
    training_source: str,
    inference_source: str,
) -> tuple[Discrepancy, ...]:
    """Every config key (flattened ``a.b[0].c`` paths) whose value differs, outside the contract.

    The contract's own fields are diffed by :func:`diff`; this names the rest, so a changed
    ``MODEL.ROI_BOX_HEAD.FC_DIM`` is reported even though the model (built from training)
    ignores it. ``covered`` are the key paths the contract already compares; ``category_of``
    maps a key path to preprocessing / postprocessing / architecture / other.
    """
    skip = set(covered)
    found = []
    for key in sorted(set(training) | set(inference)):
        # Covered: the key itself, or an ancestor of it (A.B of A.B.C, a.b of a.b[0].c); one set lookup per
        # separator, not one prefix test per covered key (a few hundred keys against tens covered).
        if key in skip or any(key[: m.start()] in skip for m in _SEPARATOR.finditer(key)):
            continue
        t, i = training.get(key, _ABSENT), inference.get(key, _ABSENT)
        if t is not _ABSENT and i is not _ABSENT and _same(_tuples(t), _tuples(i)):
            continue
        category = category_of(key)
        ignored = category != "other"
        found.append(
            Discrepancy(
                key=key,
                framework_key=key,
                training=None if t is _ABSENT else t,
                inference=None if i is _ABSENT else i,
                training_source=training_source,
                inference_source=inference_source,
                severity="warning" if ignored else "info",
                category=category,
                fix=(
                    f"the model is built and run from the training config: set {key} = {_short(t)} in your config "
                    "to match it, or retrain if you meant the change"
                    if ignored
                    else "none needed: this key does not change inference"
                ),
                message="outside the contract"
                + (": absent from training" if t is _ABSENT else ": absent from your config" if i is _ABSENT else ""),
            )
        )
    return tuple(found)


def _tuples(value: Any) -> Any:
    """Lists as tuples, recursively: configs spell one sequence either way (yacs dumps, yaml loads)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()
_SEPARATOR = re.compile(r"[.\[]")


def _short(value: Any) -> str:
    return "<absent>" if value is _ABSENT else repr(value)


def single_pass_difference(training: TrainingContract, runner: str) -> Discrepancy | None:
    """The difference between a training evaluation with test-time augmentation and ``runner``, which
    runs the model once per image at the test size (every predictor does: DefaultPredictor,
    inference_detector, SafePredictor). None when the evaluation did not augment."""
    if not training.tta.enabled:
        return None
    return Discrepancy(
        key="tta.enabled",
        framework_key=training.key("tta.enabled"),
        training=True,
        inference=False,
        training_source=training.where("tta.enabled"),
        inference_source=f"{runner}: one pass per image at the test size",
        severity="warning",
        category="preprocessing",
        fix=(
            f"compare {runner}'s detections with the evaluation without TTA (Detectron2's tools/train_net.py "
            "reports both, the TTA one as bbox_TTA; mmdet: tools/test.py without --tta), not with the TTA one: "
            f"training evaluated merged copies at {training.tta.copies()}"
        ),
        message="test-time augmentation on at training evaluation; the predictor runs one pass per image",
    )
