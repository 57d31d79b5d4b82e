"""The training contract: what a detector saw at training-time evaluation, and how inference differs.

A :class:`TrainingContract` is a framework-neutral, frozen value holding every pre-processing,
post-processing and architecture setting that must be the same at inference as at training-time
evaluation: colour order, pixel mean/std, resize policy, padding, score/NMS thresholds,
detections per image, classes, backbone and heads. Each field remembers the framework key it
was read from (``keys``), so a difference can say where to fix it.

:func:`diff` compares two contracts key by key and returns :class:`Discrepancy` values;
:func:`check_training_config` looks for known traps *inside* one training config;
:func:`discover` finds the training artifact (config and checkpoint) of a checkpoint path.

The framework-specific readers live in ``safepredict.frameworks.<name>.contract``; this module
imports no framework and no torch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from safepredict.errors import ConfigError

__all__ = [
    "Discrepancy",
    "FrozenMap",
    "ResizePolicy",
    "TrainingArtifact",
    "TrainingContract",
    "TrainingProgress",
    "check_training_config",
    "diff",
    "discover",
    "read_contract",
    "with_overrides",
]

RESIZE_KINDS = ("shortest_edge", "scale", "fixed", "none")
SEVERITIES = ("error", "warning", "info")
CATEGORIES = ("preprocessing", "postprocessing", "architecture", "internal")
HEADS = frozenset({"box", "mask", "keypoint"})


# --------------------------------------------------------------------------- small converters


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def _ints(value: Any) -> tuple[int, ...]:
    if isinstance(value, int | float):
        return (int(value),)
    return tuple(int(v) for v in value)


def _opt_int_pair(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"scale must have two values, got {value!r}")
    return (pair[0], pair[1])


def _opt_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(str(v) for v in value)


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def _heads(value: Any) -> frozenset[str]:
    return frozenset(str(v) for v in value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable mapping (field name -> framework key path, or -> raw value)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items: dict[str, Any] = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._items.items())))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def _frozen_map(value: Any) -> FrozenMap:
    return value if isinstance(value, FrozenMap) else FrozenMap(value)


# --------------------------------------------------------------------------- values


@attrs.frozen
class ResizePolicy:
    """How the test-time pipeline resizes an image before the model sees it.

    ``kind``:

    - ``"shortest_edge"``: the short edge becomes ``min_size`` (one value at test time), unless
      the long edge would then exceed ``max_size``, in which case the long edge becomes ``max_size``;
    - ``"scale"``: keep the aspect ratio and fit the image inside ``scale`` (``(w, h)`` as the
      framework writes it; the long edge at most ``max(scale)``, the short edge at most
      ``min(scale)``); ``min_size``/``max_size`` then repeat ``min(scale)``/``max(scale)``;
    - ``"fixed"``: resize to exactly ``scale`` ``(w, h)``, ignoring the aspect ratio;
    - ``"none"``: no resize.

    ``interpolation`` names the filter (``"bilinear"``, ``"nearest"``, ``"bicubic"``, ...) and
    ``backend`` the library that applies it (``"PIL"``, ``"cv2"``): the same filter name gives
    different pixels in different libraries.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(RESIZE_KINDS))
    min_size: tuple[int, ...] = attrs.field(default=(), converter=_ints)
    max_size: int | None = attrs.field(default=None, converter=_opt_int)
    scale: tuple[int, int] | None = attrs.field(default=None, converter=_opt_int_pair)
    keep_ratio: bool = attrs.field(default=True, converter=bool)
    interpolation: str = "bilinear"
    backend: str = "PIL"
    sample_style: str | None = None

    def describe(self) -> str:
        """The policy in words."""
        how = f"{self.interpolation} interpolation via {self.backend}"
        if self.kind == "none":
            return "no resize"
        if self.kind == "shortest_edge":
            sizes = "/".join(str(s) for s in self.min_size)
            if len(self.min_size) > 1:
                sizes = f"one of {sizes} ({self.sample_style or 'choice'})"
            cap = f", long edge at most {self.max_size}" if self.max_size else ""
            return f"shortest edge to {sizes} px{cap}, keeping the aspect ratio; {how}"
        if self.kind == "scale":
            assert self.scale is not None
            return (
                f"fit inside scale {self.scale[0]}x{self.scale[1]} keeping the aspect ratio "
                f"(long edge <= {max(self.scale)}, short edge <= {min(self.scale)}); {how}"
            )
        assert self.scale is not None
        return f"resize to exactly {self.scale[0]}x{self.scale[1]} (w x h), aspect ratio not kept; {how}"


@attrs.frozen
class TrainingProgress:
    """How far training got when the checkpoint was written, where the artifact records it."""

    iteration: int | None = None
    max_iter: int | None = None
    epoch: int | None = None
    max_epochs: int | None = None

    @property
    def finished(self) -> bool | None:
        """True when the checkpoint is from the end of the schedule; None when unknown."""
        if self.epoch is not None and self.max_epochs:
            return self.epoch >= self.max_epochs
        if self.iteration is not None and self.max_iter:
            # Detectron2 saves model_final at iteration max_iter - 1 (iterations count from 0).
            return self.iteration >= self.max_iter - 1
        return None

    def describe(self) -> str:
        parts = []
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}" + (f" of {self.max_epochs}" if self.max_epochs else ""))
        if self.iteration is not None:
            parts.append(f"iteration {self.iteration}" + (f" of {self.max_iter}" if self.max_iter else ""))
        if not parts:
            return "training progress unknown"
        state = {True: "finished", False: "NOT finished", None: "schedule unknown"}[self.finished]
        return ", ".join(parts) + f" ({state})"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        inner = ", ".join(_fmt(v) for v in value)
        return f"({inner},)" if len(value) == 1 and isinstance(value, tuple) else f"({inner})"
    if isinstance(value, frozenset | set):
        return "{" + ", ".join(sorted(str(v) for v in value)) + "}"
    return repr(value) if isinstance(value, str) else str(value)


@attrs.frozen
class TrainingContract:
    """Everything about pre-/post-processing and architecture that must match training.

    ``pixel_mean``/``pixel_std`` are in ``input_format`` channel order, in the 0-255 pixel scale
    the model subtracts them in. ``pad_value`` is the value padding is filled with after
    normalisation (both frameworks pad the normalised batch). ``nms_iou`` is None for a model
    without NMS. ``class_names`` is None where the artifact does not record names (a Detectron2
    config alone does not). ``keys`` maps each field (``"resize.min_size"`` for a resize field)
    to the framework key path it was read from; ``raw`` to the value as the framework wrote it.
    ``train_resize`` and ``test_transforms`` feed :func:`check_training_config`.

    Two contracts are equal when every setting is equal; where they were read from
    (``source``, ``keys``, ``raw``) and ``progress`` do not take part.
    """

    framework: str
    source: str = attrs.field(eq=False)
    input_format: str = attrs.field(validator=attrs.validators.in_(("RGB", "BGR")))
    pixel_mean: tuple[float, ...] = attrs.field(converter=_floats)
    pixel_std: tuple[float, ...] = attrs.field(converter=_floats)
    resize: ResizePolicy
    pad_divisor: int = attrs.field(converter=int)
    pad_value: float = attrs.field(converter=float)
    score_threshold: float = attrs.field(converter=float)
    nms_iou: float | None = attrs.field(converter=_opt_float)
    max_detections: int = attrs.field(converter=int)
    num_classes: int = attrs.field(converter=int)
    class_names: tuple[str, ...] | None = attrs.field(converter=_opt_names)
    meta_architecture: str
    backbone: str
    depth: int | None = attrs.field(converter=_opt_int)
    heads: frozenset[str] = attrs.field(converter=_heads)
    progress: TrainingProgress | None = attrs.field(default=None, eq=False)
    keys: FrozenMap = attrs.field(factory=FrozenMap, converter=_frozen_map, eq=False)
    raw: FrozenMap = attrs.field(factory=FrozenMap, converter=_frozen_map, eq=False, repr=False)
    notes: FrozenMap = attrs.field(factory=FrozenMap, converter=_frozen_map, eq=False, repr=False)
    sources: FrozenMap = attrs.field(factory=FrozenMap, converter=_frozen_map, eq=False, repr=False)
    train_resize: ResizePolicy | None = attrs.field(default=None, eq=False, repr=False)
    test_transforms: tuple[str, ...] = attrs.field(default=(), converter=_names, eq=False, repr=False)

    @heads.validator
    def _check_heads(self, attribute: Any, value: frozenset[str]) -> None:
        unknown = value - HEADS
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)}; expected a subset of {sorted(HEADS)}")

    def key(self, field: str) -> str:
        """The framework key path ``field`` was read from (``field`` itself when it has none).

        Keys are settable paths (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``,
        ``model.test_cfg.rcnn.score_thr``, ``test_dataloader.dataset.pipeline[1].scale``); a
        setting fixed in the framework's code has no key, and ``notes`` says where it comes from.
        """
        return str(self.keys.get(field, field))

    def where(self, field: str) -> str:
        """``source: key (note)`` of ``field``, for messages."""
        note = self.notes.get(field)
        key = self.keys.get(field)
        source = self.sources.get(field, self.source)
        if key is None:
            return f"{source}: {note or field}"
        return f"{source}: {key}" + (f" ({note})" if note else "")

    def value(self, field: str) -> Any:
        """The value of a field by its dotted name (``"resize.min_size"``)."""
        head, _, rest = field.partition(".")
        value = getattr(self, head)
        return getattr(value, rest) if rest else value

    def with_overrides(self, overrides: Mapping[str, Any], *, source: str = "overrides") -> TrainingContract:
        """A copy with ``overrides`` (dotted field name -> value) applied, for deliberate changes.

        Each overridden field's key reads ``overrides['field']`` and its source is ``source``
        (``sources``), so a :func:`diff` against the original names the override; the other
        fields keep where they were read from.
        """
        return with_overrides(self, overrides, source=source)

    def describe(self) -> str:
        """The contract in words: what the model expects and what it does with its outputs."""
        names = f" ({', '.join(self.class_names)})" if self.class_names else " (names not recorded)"
        nms = f"NMS IoU {self.nms_iou:g}" if self.nms_iou is not None else "no NMS"
        pad = f"to a multiple of {self.pad_divisor}" if self.pad_divisor > 1 else "none"
        cap = f"at most {self.max_detections} per image" if self.max_detections > 0 else "no cap on detections"
        depth = f"-{self.depth}" if self.depth is not None else ""
        heads = ", ".join(sorted(self.heads)) or "none"
        lines = [
            f"{self.framework} training contract, read from {self.source}",
            f"  colour order: {self.input_format} (mean/std apply in this order)",
            f"  normalisation: (x - mean) / std, mean {_fmt(self.pixel_mean)}, std {_fmt(self.pixel_std)}"
            " (0-255 scale)",
            f"  resize: {self.resize.describe()}",
            f"  padding: {pad}, filled with {self.pad_value:g} after normalisation",
            f"  post-processing: score >= {self.score_threshold:g}, {nms}, {cap}",
            f"  model: {self.meta_architecture}, backbone {self.backbone}{depth}, heads: {heads}",
            f"  classes: {self.num_classes}{names}",
        ]
        if self.progress is not None:
            lines.append(f"  checkpoint: {self.progress.describe()}")
        return "\n".join(lines)


@attrs.frozen
class Discrepancy:
    """One setting that differs between training and inference (or a trap inside training).

    ``key`` is the contract field (``"resize.min_size"``), ``framework_key`` the framework's key
    path (``"INPUT.MIN_SIZE_TEST"``). ``severity`` is ``"error"`` where results would be wrong,
    ``"warning"`` where they would differ on purpose (post-processing), ``"info"`` otherwise.
    """

    key: str
    framework_key: str
    training: Any
    inference: Any
    training_source: str
    inference_source: str
    severity: str = attrs.field(validator=attrs.validators.in_(SEVERITIES))
    category: str = attrs.field(validator=attrs.validators.in_(CATEGORIES))
    fix: str
    message: str = ""

    def describe(self) -> str:
        """The difference in words: what training had, what inference has, where, and the fix."""
        if self.category == "internal":
            head = f"[{self.severity}] training config trap at {self.framework_key}: {self.message}"
            return f"{head}\n  at: {self.training_source}\n  fix: {self.fix}"
        what = f" ({self.message})" if self.message else ""
        return (
            f"[{self.severity}] {self.category} {self.key} differs{what}\n"
            f"  training:  {_fmt(self.training)}  ({self.training_source})\n"
            f"  inference: {_fmt(self.inference)}  ({self.inference_source})\n"
            f"  fix: {self.fix}"
        )


# --------------------------------------------------------------------------- overrides

RESIZE_FIELDS = tuple(a.name for a in attrs.fields(ResizePolicy))
PREPROCESSING_FIELDS = (
    "input_format",
    "pixel_mean",
    "pixel_std",
    # scale before min/max size: where both derive from one key (mmcv's scale), name the key once.
    *(f"resize.{f}" for f in sorted(RESIZE_FIELDS, key=lambda f: f != "scale")),
    "pad_divisor",
    "pad_value",
)
POSTPROCESSING_FIELDS = ("score_threshold", "nms_iou", "max_detections")
ARCHITECTURE_FIELDS = (
    "framework",
    "meta_architecture",
    "backbone",
    "depth",
    "heads",
    "num_classes",
    "class_names",
)
DIFF_FIELDS = PREPROCESSING_FIELDS + POSTPROCESSING_FIELDS + ARCHITECTURE_FIELDS
OVERRIDABLE_FIELDS = (*DIFF_FIELDS, "resize")


def with_overrides(
    contract: TrainingContract, overrides: Mapping[str, Any], *, source: str = "overrides"
) -> TrainingContract:
    """``contract`` with ``overrides`` applied (see :meth:`TrainingContract.with_overrides`)."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE_FIELDS))
    if unknown:
        raise ConfigError(
            f"unknown contract field(s) in overrides: {unknown}",
            found=unknown,
            expected=OVERRIDABLE_FIELDS,
            source=source,
            fix=f"use field names of the training contract: {', '.join(OVERRIDABLE_FIELDS)}",
        )
    top: dict[str, Any] = {}
    resize: dict[str, Any] = {}
    keys = dict(contract.keys)
    raw = dict(contract.raw)
    notes = {k: v for k, v in contract.notes.items() if k not in overrides}
    sources = dict(contract.sources)
    for field, value in overrides.items():
        if field == "resize":
            if isinstance(value, Mapping):
                resize.update(value)
            else:
                top["resize"] = value
        elif field.startswith("resize."):
            resize[field.split(".", 1)[1]] = value
        else:
            top[field] = value
        keys[field] = f"overrides[{field!r}]"
        sources[field] = source
        raw[field] = value
    if resize:
        base = top.get("resize", contract.resize)
        for name in resize:
            keys[f"resize.{name}"] = f"overrides['resize.{name}']"
            sources[f"resize.{name}"] = source
            notes.pop(f"resize.{name}", None)
        top["resize"] = attrs.evolve(base, **resize)
    try:
        return attrs.evolve(contract, keys=keys, raw=raw, notes=notes, sources=sources, **top)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid override value: {exc}", found=dict(overrides), source=source) from exc


# --------------------------------------------------------------------------- diff


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


def _fix(field: str, training: TrainingContract, inference: TrainingContract) -> str:
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


# --------------------------------------------------------------------------- internal traps

# ImageNet statistics in the 0-255 scale, by channel order: a mean equal to the *other* order's
# values says the mean was copied from a config with the other INPUT.FORMAT / bgr_to_rgb.
_IMAGENET_MEAN = {"RGB": (123.675, 116.28, 103.53), "BGR": (103.53, 116.28, 123.675)}
_IMAGENET_STD = {"RGB": (58.395, 57.12, 57.375), "BGR": (57.375, 57.12, 58.395)}

# Transforms that only make sense at training: random augmentation. Names as the frameworks
# spell them; any name starting with "Random" counts too.
TRAINING_ONLY_TRANSFORMS = frozenset(
    {
        "Mosaic",
        "MixUp",
        "CopyPaste",
        "PhotoMetricDistortion",
        "Expand",
        "MinIoURandomCrop",
        "CutOut",
        "YOLOXHSVRandomAug",
        "AutoAugment",
        "RandAugment",
        "CachedMosaic",
        "CachedMixUp",
        "Albu",
        "RandomErasing",
    }
)
# A test pipeline wrapped in test-time augmentation flips on purpose.
_TTA_TRANSFORMS = frozenset({"TestTimeAug", "MultiScaleFlipAug"})

# How far (as a ratio) the test size may sit outside the training size range before it is a trap.
SIZE_RATIO_TRAP = 1.5


def _close(a: tuple[float, ...], b: tuple[float, ...], tol: float = 0.5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _trap(
    training: TrainingContract,
    field: str,
    value: Any,
    other: Any,
    other_source: str,
    severity: str,
    message: str,
    fix: str,
) -> Discrepancy:
    return Discrepancy(
        key=field,
        framework_key=training.key(field),
        training=value,
        inference=other,
        training_source=training.where(field),
        inference_source=other_source,
        severity=severity,
        category="internal",
        fix=fix,
        message=message,
    )


def check_training_config(training: TrainingContract) -> tuple[Discrepancy, ...]:
    """Known traps inside one training config, as ``category="internal"`` discrepancies.

    - the test size far outside the training size range (the model never saw objects that size);
    - a test pipeline that still holds a training-only (random) transform;
    - a mean/std in ImageNet's *other* channel order than the contract's ``input_format``;
    - a mean/std in the 0-1 scale where the model normalises 0-255 pixels;
    - a checkpoint written before the end of its schedule.
    """
    found: list[Discrepancy] = []
    test, train = training.resize, training.train_resize
    if (
        train is not None
        and train.kind in ("shortest_edge", "scale")
        and test.kind in ("shortest_edge", "scale")
        and train.min_size
        and test.min_size
        and all(s > 0 for s in test.min_size)
    ):
        lo, hi = min(train.min_size), max(train.min_size)
        if train.sample_style == "range" and len(train.min_size) == 2:
            lo, hi = train.min_size[0], train.min_size[1]
        for size in test.min_size:
            if size > hi * SIZE_RATIO_TRAP or size * SIZE_RATIO_TRAP < lo:
                found.append(
                    _trap(
                        training,
                        "resize.min_size",
                        test.min_size,
                        train.min_size,
                        f"{training.source}: {training.key('train_resize.min_size')}",
                        "warning",
                        f"test short edge {size} px is far outside the training range {lo}-{hi} px",
                        f"set {training.key('resize.min_size')} within {lo}-{hi} (objects then have the sizes "
                        "the model was trained on), unless the test images really are at another scale",
                    )
                )
    if training.test_transforms and not _TTA_TRANSFORMS & set(training.test_transforms):
        for name in training.test_transforms:
            if name in TRAINING_ONLY_TRANSFORMS or name.startswith("Random"):
                found.append(
                    _trap(
                        training,
                        "test_transforms",
                        name,
                        training.test_transforms,
                        training.where("test_transforms"),
                        "error",
                        f"the test pipeline contains the training-only transform {name}: "
                        "evaluation is random and differs from run to run",
                        f"remove {name} from {training.key('test_transforms')}",
                    )
                )
    other = "BGR" if training.input_format == "RGB" else "RGB"
    if training.pixel_mean:
        if _close(training.pixel_mean, _IMAGENET_MEAN[other]):
            found.append(
                _trap(
                    training,
                    "pixel_mean",
                    training.pixel_mean,
                    training.input_format,
                    training.where("input_format"),
                    "error",
                    f"pixel mean {_fmt(training.pixel_mean)} is ImageNet's mean in {other} order, but the model "
                    f"normalises {training.input_format} images (mean/std apply in {training.input_format} order)",
                    f"set {training.key('pixel_mean')} = {_fmt(_IMAGENET_MEAN[training.input_format])} "
                    f"({training.input_format} order) and retrain, or make {training.key('input_format')} "
                    f"{other} if the images really are {other}",
                )
            )
        if _close(training.pixel_std, _IMAGENET_STD[other], tol=0.05):
            found.append(
                _trap(
                    training,
                    "pixel_std",
                    training.pixel_std,
                    training.input_format,
                    training.where("input_format"),
                    "warning",
                    f"pixel std {_fmt(training.pixel_std)} is ImageNet's std in {other} order, but the model "
                    f"normalises {training.input_format} images",
                    f"set {training.key('pixel_std')} = {_fmt(_IMAGENET_STD[training.input_format])}",
                )
            )
    if training.pixel_mean and max(training.pixel_mean) <= 1.0 and max(training.pixel_std or (1.0,)) <= 1.0:
        if any(v > 0 for v in training.pixel_mean):
            found.append(
                _trap(
                    training,
                    "pixel_mean",
                    training.pixel_mean,
                    training.pixel_std,
                    training.where("pixel_std"),
                    "warning",
                    "mean and std look like the 0-1 scale, but the model normalises 0-255 pixel values",
                    f"multiply {training.key('pixel_mean')} and {training.key('pixel_std')} by 255",
                )
            )
    progress = training.progress
    if progress is not None and progress.finished is False:
        found.append(
            _trap(
                training,
                "progress",
                progress.describe(),
                None,
                training.source,
                "info",
                f"the checkpoint was written before the end of training ({progress.describe()})",
                "use the final checkpoint of the run if that was intended",
            )
        )
    return tuple(found)


# --------------------------------------------------------------------------- artifact discovery


@attrs.frozen
class TrainingArtifact:
    """A checkpoint with its training contract and, if given, the inference config's contract.

    ``training_cfg``/``inference_cfg`` are the framework's own config objects (a yacs
    ``CfgNode``, an mmengine ``Config``, a LazyConfig ``DictConfig``).
    ``discrepancies`` holds the :func:`diff` of the two contracts plus the internal traps of
    the training config.
    """

    framework: str
    checkpoint: Path
    training_contract: TrainingContract
    inference_contract: TrainingContract | None
    training_cfg: Any = attrs.field(eq=False, repr=False)
    inference_cfg: Any = attrs.field(eq=False, repr=False)
    training_source: str
    inference_source: str | None
    dataset_meta: dict[str, Any] | None = attrs.field(eq=False)
    discrepancies: tuple[Discrepancy, ...]

    @property
    def contract(self) -> TrainingContract:
        return self.training_contract

    def errors(self) -> tuple[Discrepancy, ...]:
        return tuple(d for d in self.discrepancies if d.severity == "error")

    def describe(self) -> str:
        lines = [f"checkpoint {self.checkpoint}", self.training_contract.describe()]
        if self.inference_source:
            lines.append(f"inference config: {self.inference_source}")
        if self.discrepancies:
            lines.append(f"{len(self.discrepancies)} difference(s):")
            lines.extend("  " + d.describe().replace("\n", "\n  ") for d in self.discrepancies)
        else:
            lines.append("no differences")
        return "\n".join(lines)


def _reader(framework: str) -> Any:
    return importlib.import_module(f"safepredict.frameworks.{framework}.contract")


def discover(
    checkpoint: str | Path,
    config: Any = None,
    *,
    training_config: Any = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainingArtifact:
    """Find the training artifact of ``checkpoint``: which framework, its training config, the diff.

    The framework is told by the checkpoint's content. The training config is read from the
    artifact itself (mmengine: the config text embedded in the checkpoint; Detectron2:
    ``config.yaml`` beside the checkpoint, as training writes it into ``OUTPUT_DIR``), or from
    ``training_config`` when you say which file (or config object) the model was trained with.
    ``config`` is the config you mean to infer with: it is read too and diffed against training.
    ``overrides`` (contract field -> value) are applied on top of the inference side (the
    training contract when no ``config`` is given) and show up in the diff.

    Raises :class:`~safepredict.errors.TrainingArtifactNotFound` when no training config can be
    found, naming what to pass.
    """
    from safepredict.frameworks.checkpoint import detect_framework, load_checkpoint

    path = Path(checkpoint)
    data = load_checkpoint(path)
    framework = detect_framework(data, path)
    artifact: TrainingArtifact = _reader(framework).discover(path, data, config=config, training_config=training_config)
    if overrides:
        base = artifact.inference_contract or artifact.training_contract
        inference = base.with_overrides(overrides)
        discrepancies = diff(artifact.training_contract, inference) + check_training_config(artifact.training_contract)
        artifact = attrs.evolve(artifact, inference_contract=inference, discrepancies=discrepancies)
    return artifact


def read_contract(config: Any, *, framework: str | None = None) -> TrainingContract:
    """The contract of one config (a file path or a framework config object), without a checkpoint."""
    from safepredict.frameworks.checkpoint import framework_of_config

    name = framework or framework_of_config(config)
    contract: TrainingContract = _reader(name).read_contract(config)
    return contract
