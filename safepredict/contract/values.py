"""The training contract's values: what a detector saw at training-time evaluation.

A :class:`TrainingContract` is a framework-neutral, frozen value holding every pre-processing,
post-processing and architecture setting that must be the same at inference as at training-time
evaluation: colour order, pixel mean/std, resize policy, padding, score/NMS thresholds,
detections per image, classes, backbone and heads. Each field remembers the framework key it
was read from (``keys``), so a difference can say where to fix it. A :class:`Discrepancy` is one
difference between two contracts, or a trap inside one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from safepredict.errors import ConfigError

RESIZE_KINDS = ("shortest_edge", "scale", "fixed", "none")
SEVERITIES = ("error", "warning", "info")
# "other": a config key outside the contract that changes nothing at inference (solver, data sets).
CATEGORIES = ("preprocessing", "postprocessing", "architecture", "internal", "other")
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


@attrs.frozen(eq=False)
class TestTimeAugmentation:
    """Whether training-time evaluation merged augmented copies of each image (TTA), and which.

    ``enabled``: the evaluation ran the model on several resized (and flipped) copies of each image
    and merged the detections (Detectron2: ``TEST.AUG.ENABLED``, which ``tools/train_net.py``
    evaluates besides the plain model; MMDetection: a ``TestTimeAug`` test pipeline, or a TTA
    model wrapper). ``min_sizes``: the short-edge sizes of the copies, ``max_size`` the long-edge
    cap, ``flip`` whether horizontally flipped copies were added. ``declared``: a TTA set-up the
    config holds for a separate run without being the evaluation's own (mmdet's ``tta_model`` /
    ``tta_pipeline``, used by ``tools/test.py --tta``). Two values are equal when both are off, or
    both on with the same copies: the copies of an augmentation that is off set nothing.
    """

    __test__ = False  # a value named Test*, not a pytest test class

    enabled: bool = attrs.field(default=False, converter=bool)
    min_sizes: tuple[int, ...] = attrs.field(default=(), converter=_ints)
    max_size: int | None = attrs.field(default=None, converter=_opt_int)
    flip: bool = attrs.field(default=False, converter=bool)
    declared: bool = attrs.field(default=False, converter=bool)

    def _setting(self) -> tuple[Any, ...]:
        return (True, self.min_sizes, self.max_size, self.flip) if self.enabled else (False,)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TestTimeAugmentation):
            return NotImplemented
        return self._setting() == other._setting()

    def __hash__(self) -> int:
        return hash(self._setting())

    def copies(self) -> str:
        """The augmented copies in words (short-edge sizes, long-edge cap, flips)."""
        sizes = "/".join(str(s) for s in self.min_sizes) or "the test size"
        cap = f", long edge at most {self.max_size}" if self.max_size else ""
        flip = ", each also flipped horizontally" if self.flip else ""
        return f"short edge {sizes} px{cap}{flip}"

    def describe(self) -> str:
        """The augmentation in words."""
        if self.enabled:
            return f"on: the evaluation merged copies at {self.copies()}"
        if self.declared:
            return f"off at evaluation (a separate TTA run is configured: {self.copies()})"
        return "off"


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
    ``train_resize`` and ``test_transforms`` feed :func:`check_training_config`. ``tta`` says
    whether the evaluation used test-time augmentation (a predictor runs one pass per image).

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
    tta: TestTimeAugmentation = attrs.field(factory=TestTimeAugmentation)
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
            f"  test-time augmentation: {self.tta.describe()}",
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
# Test-time augmentation: diffed (sizes and flip only where both sides augment), never overridden:
# no predictor runs it, so there is no value to choose.
TTA_FIELDS = ("tta.enabled", "tta.min_sizes", "tta.max_size", "tta.flip")
DIFF_FIELDS = PREPROCESSING_FIELDS + POSTPROCESSING_FIELDS + ARCHITECTURE_FIELDS + TTA_FIELDS
OVERRIDABLE_FIELDS = (*PREPROCESSING_FIELDS, *POSTPROCESSING_FIELDS, *ARCHITECTURE_FIELDS, "resize")


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

