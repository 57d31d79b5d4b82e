"""The probes of ``safepredict diagnose``: run the model on the user's images in controlled ways.

Every probe compares one pipeline with the training-contract pipeline on the same decoded images:
the channel-order probe feeds the images with red and blue swapped, the normalisation probe uses
ImageNet's mean/std instead of the training values, the resize probe moves the test size around
the trained one, and a contract difference is measured by forcing the user's value through
``overrides=``. Nothing here knows a framework: a probe only builds a :class:`SafePredictor`
with other overrides, or feeds it other pixels.

The predictors come from one :class:`Pipelines` per diagnosis, which builds each distinct pipeline
(training contract plus overrides, or the user's config) once and hands it to every probe that asks.

A probe's answer is a :class:`Run` per pipeline (the candidates of each image) and an
:class:`Effect` between two runs: how confident the model is (mean best score per image), how many
detections pass the threshold, and how many of the training pipeline's detections the other
pipeline keeps (same class, IoU >= 0.5).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.detections import Detections
from safepredict.errors import SafePredictWarning
from safepredict.findings import Finding
from safepredict.images import LoadedImage

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Effect",
    "Pipelines",
    "Run",
    "build_predictor",
    "channel_order_probe",
    "compare",
    "normalisation_probe",
    "resize_probe",
    "run_pipeline",
    "threshold_probe",
]

# ImageNet statistics in the 0-255 scale, by channel order: the defaults of both frameworks' configs.
IMAGENET_MEAN = {"RGB": (123.675, 116.28, 103.53), "BGR": (103.53, 116.28, 123.675)}
IMAGENET_STD = {"RGB": (58.395, 57.12, 57.375), "BGR": (57.375, 57.12, 58.395)}

# A pipeline is "clearly better" than another when its mean best score is higher by this much...
CONFIDENCE_MARGIN = 0.1
# ... or it keeps this share more of the detections.
DETECTION_MARGIN = 0.25
# Test sizes tried by the resize probe, as factors of the trained one, on at most RESIZE_IMAGES images:
# every size is a predictor and a pass over the images, and larger sizes cost quadratically more.
RESIZE_FACTORS = (0.5, 0.75, 1.5, 2.0)
RESIZE_IMAGES = 4
IOU_MATCH = 0.5


# --------------------------------------------------------------------------- runs


@attrs.frozen(eq=False)
class Run:
    """One pipeline over the image set: every image's candidates and the threshold it cuts them at."""

    label: str
    candidates: tuple[Detections, ...]
    threshold: float
    swapped: bool = False  # the images were fed with red and blue swapped

    def final(self, index: int, threshold: float | None = None) -> Detections:
        """The detections of image ``index`` above ``threshold`` (default: this run's)."""
        cut = self.threshold if threshold is None else threshold
        c = self.candidates[index]
        return c[np.asarray(c.scores > cut)]

    def top_scores(self) -> np.ndarray:
        """The best candidate score of each image (0 where the image has none)."""
        return np.array([float(c.scores.max()) if len(c) else 0.0 for c in self.candidates])

    @property
    def mean_top(self) -> float:
        tops = self.top_scores()
        return float(tops.mean()) if tops.size else 0.0

    def detections(self, threshold: float | None = None) -> int:
        return sum(len(self.final(i, threshold)) for i in range(len(self.candidates)))

    def images_with_detections(self, threshold: float | None = None) -> int:
        return sum(1 for i in range(len(self.candidates)) if len(self.final(i, threshold)))

    def scores(self) -> np.ndarray:
        """Every candidate score of every image (for histograms)."""
        if not self.candidates:
            return np.zeros(0, np.float32)
        return np.concatenate([c.scores for c in self.candidates])

    def head(self, n: int) -> Run:
        """This run on its first ``n`` images only."""
        return attrs.evolve(self, candidates=self.candidates[:n])

    def with_threshold(self, threshold: float, label: str) -> Run:
        return attrs.evolve(self, label=label, threshold=float(threshold))

    def objects(self, threshold: float | None = None) -> list[tuple[float, float]]:
        """``(best score, class margin)`` of every object found above ``threshold``, over all images.

        An object is a cluster of candidates overlapping its best one (IoU >= 0.5) whatever their
        class: NMS runs per class, so one object the model cannot decide on comes out once per
        class it hesitates between. Its class margin is the best score minus the best score of
        another class on it (the best score itself when no other class competes).
        """
        cut = self.threshold if threshold is None else threshold
        found = []
        for c in self.candidates:
            if not len(c):
                continue
            order = np.argsort(-c.scores)
            boxes, scores, labels = c.boxes[order], c.scores[order], c.labels[order]
            overlaps = _iou(boxes, boxes)
            free = np.ones(len(scores), bool)
            for i in range(len(scores)):
                if not free[i]:
                    continue
                members = free & (overlaps[i] >= IOU_MATCH)
                members[i] = True
                free &= ~members
                if scores[i] <= cut:
                    continue
                rivals = scores[members & (labels != labels[i])]
                found.append((float(scores[i]), float(scores[i] - (rivals.max() if rivals.size else 0.0))))
        return found

    def class_margin(self, threshold: float | None = None) -> float:
        """The mean class margin of the objects found (0 when none): how decided the model is."""
        objects = self.objects(threshold)
        return float(np.mean([m for _, m in objects])) if objects else 0.0

    def summary(self, threshold: float | None = None) -> dict[str, Any]:
        objects = self.objects(threshold)
        return {
            "label": self.label,
            "threshold": self.threshold if threshold is None else threshold,
            "images": len(self.candidates),
            "mean_top_score": round(self.mean_top, 4),
            "detections": self.detections(threshold),
            "objects": len(objects),
            "class_margin": round(float(np.mean([m for _, m in objects])) if objects else 0.0, 4),
            "images_with_detections": self.images_with_detections(threshold),
        }


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def matched(reference: Detections, other: Detections, iou: float = IOU_MATCH) -> int:
    """How many of ``reference``'s detections ``other`` also has (same class, IoU >= ``iou``), greedily by score."""
    if not len(reference) or not len(other):
        return 0
    overlaps = _iou(reference.boxes, other.boxes)
    overlaps[reference.labels[:, None] != other.labels[None, :]] = 0.0
    used = np.zeros(len(other), bool)
    count = 0
    for i in np.argsort(-reference.scores):
        row = np.where(used, 0.0, overlaps[i])
        j = int(np.argmax(row))
        if row[j] >= iou:
            used[j] = True
            count += 1
    return count


@attrs.frozen
class Effect:
    """How a pipeline differs from the training-contract pipeline on the same images."""

    base_mean_top: float
    other_mean_top: float
    base_detections: int
    other_detections: int
    kept: int  # base detections the other pipeline also found (same class, IoU >= 0.5)
    extra: int  # other detections with no counterpart in base

    @property
    def agreement(self) -> float:
        """Matched detections over the larger of the two counts (1 when both find nothing)."""
        most = max(self.base_detections, self.other_detections)
        return 1.0 if most == 0 else self.kept / most

    @property
    def impact(self) -> float:
        return round(1.0 - self.agreement, 4)

    @property
    def confidence_change(self) -> float:
        return self.other_mean_top - self.base_mean_top

    def describe(self, base: str, other: str) -> str:
        return (
            f"{other}: {self.other_detections} detection(s), mean best score {self.other_mean_top:.3f}; "
            f"{base}: {self.base_detections} detection(s), mean best score {self.base_mean_top:.3f}; "
            f"{self.kept} of the {self.base_detections} {base} detection(s) found again "
            f"({self.extra} other), agreement {self.agreement:.0%}"
        )

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data.update(agreement=round(self.agreement, 4), impact=self.impact)
        return data


def compare(base: Run, other: Run) -> Effect:
    """The :class:`Effect` of ``other`` against ``base`` (each cut at its own threshold)."""
    kept = extra = 0
    n_base = n_other = 0
    for i in range(len(base.candidates)):
        b, o = base.final(i), other.final(i)
        n_base += len(b)
        n_other += len(o)
        k = matched(b, o)
        kept += k
        extra += len(o) - k
    return Effect(
        base_mean_top=round(base.mean_top, 4),
        other_mean_top=round(other.mean_top, 4),
        base_detections=n_base,
        other_detections=n_other,
        kept=kept,
        extra=extra,
    )


def describe_run(run: Run, threshold: float) -> str:
    """The numbers ``clearly_better`` decides on, in words."""
    return (
        f"mean best score {run.mean_top:.3f}, {len(run.objects(threshold))} object(s) above {threshold:g} "
        f"with mean class margin {run.class_margin(threshold):.3f}"
    )


def clearly_better(a: Run, b: Run, *, more_objects: bool = True) -> bool:
    """Whether the model is clearly more sure of itself on pipeline ``a`` than on ``b`` (at ``b``'s threshold).

    Sure means one of: a mean best score higher by :data:`CONFIDENCE_MARGIN`; a mean class margin
    higher by as much (the model stops hesitating between classes) while finding about as many
    objects; or, unless ``more_objects`` is False, a quarter more objects at no lower best score.
    (The resize probe turns the last one off: an enlarged image always yields more small boxes.)
    """
    t = b.threshold
    oa, ob = len(a.objects(t)), len(b.objects(t))
    top = a.mean_top - b.mean_top
    if top >= CONFIDENCE_MARGIN and oa >= ob:
        return True
    if a.class_margin(t) - b.class_margin(t) >= CONFIDENCE_MARGIN and oa >= (1 - DETECTION_MARGIN) * ob and top > -0.02:
        return True
    return more_objects and oa >= ob * (1 + DETECTION_MARGIN) + 1 and top >= 0.0


# --------------------------------------------------------------------------- predictors


class _DropSafepredictRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def quiet_construction() -> Iterator[None]:
    """Silence the warnings a predictor emits while it is built: diagnose reports them as findings."""
    logger = logging.getLogger("safepredict")
    flt = _DropSafepredictRecords()
    logger.addFilter(flt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SafePredictWarning)
            yield
    finally:
        logger.removeFilter(flt)


def build_predictor(
    checkpoint: str | os.PathLike[str],
    *,
    training_config: Any = None,
    config: Any = None,
    overrides: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "cpu",
    trust: bool = False,
) -> Any:
    """A monitor-less SafePredictor, built quietly (its warnings become findings elsewhere)."""
    from safepredict.predictor import SafePredictor

    with quiet_construction():
        return SafePredictor.from_checkpoint(
            checkpoint,
            config=config,
            device=device,
            training_config=training_config,
            overrides=dict(overrides) if overrides else None,
            class_names=class_names,
            monitor=False,
            trust=trust,
        )


def _frozen(value: Any) -> Any:
    """``value`` as a hashable key part: sequences as tuples, numpy values as Python ones."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class Pipelines:
    """The predictors of one diagnosis: each distinct pipeline built once, then reused by every probe.

    A pipeline is the training contract with ``overrides`` forced through and, for the user's whole
    pipeline, the user's ``config`` (its post-processing honoured). Building one reads the artifact,
    builds the model and loads the checkpoint, and checks ask for the same pipeline again (the
    training contract; the user's mean/std when it is ImageNet's, which the normalisation probe
    tries too): ``pipelines(overrides)`` builds it once, and :meth:`run` also passes it over the
    same images once. The predictors live as long as this object: keep one per diagnosis, not
    longer, since each holds a model.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        *,
        training_config: Any = None,
        class_names: Sequence[str] | None = None,
        device: str = "cpu",
        trust: bool = False,
    ) -> None:
        self.checkpoint = checkpoint
        self.trust = trust
        self.training_config = training_config
        self.class_names = None if class_names is None else tuple(class_names)
        self.device = device
        self._built: dict[tuple[Any, ...], Any] = {}
        self._runs: dict[tuple[Any, ...], tuple[tuple[LoadedImage, ...], Run]] = {}
        self._configs: list[Any] = []  # config objects keyed by id(): kept alive so no id is reused

    def __call__(self, overrides: Mapping[str, Any] | None = None, *, user_config: Any = None) -> Any:
        """The predictor of this pipeline, built on first request (quietly: see :func:`build_predictor`)."""
        key = self._key(overrides, user_config)
        predictor = self._built.get(key)
        if predictor is None:
            predictor = build_predictor(
                self.checkpoint,
                training_config=self.training_config,
                config=user_config,
                overrides=overrides,
                class_names=self.class_names,
                device=self.device,
                trust=self.trust,
            )
            self._built[key] = predictor
        return predictor

    def run(
        self,
        images: Sequence[LoadedImage],
        label: str,
        overrides: Mapping[str, Any] | None = None,
        *,
        user_config: Any = None,
    ) -> Run:
        """This pipeline's :class:`Run` over ``images``, labelled ``label``; each pipeline passes each image set once.

        Image sets are told apart by the identity of their images: the probes pass the images
        one diagnosis decoded, or the first few of them.
        """
        key = (self._key(overrides, user_config), tuple(id(image) for image in images))
        cached = self._runs.get(key)
        if cached is None:
            # The images are kept with their run: an id is only unique while its object lives.
            cached = (tuple(images), run_pipeline(self(overrides, user_config=user_config), images, label))
            self._runs[key] = cached
        run = cached[1]
        return run if run.label == label else attrs.evolve(run, label=label)

    def _key(self, overrides: Mapping[str, Any] | None, config: Any) -> tuple[Any, ...]:
        return (self._config_key(config), tuple(sorted((k, _frozen(v)) for k, v in (overrides or {}).items())))

    def _config_key(self, config: Any) -> Any:
        if config is None:
            return None
        if isinstance(config, (str, os.PathLike)):
            return ("file", os.path.abspath(os.fspath(config)))
        if not any(c is config for c in self._configs):
            self._configs.append(config)
        return ("object", id(config))


def run_pipeline(predictor: Any, images: Sequence[LoadedImage], label: str, *, swap: bool = False) -> Run:
    """``predictor``'s candidates for each image (with red and blue swapped when ``swap``)."""
    out = []
    for image in images:
        array = image.array[:, :, ::-1] if swap else image.array
        _rgb, candidates = predictor.predict_candidates(np.ascontiguousarray(array), color=image.color)
        out.append(candidates)
    return Run(label, tuple(out), float(predictor.score_threshold), swapped=swap)


# --------------------------------------------------------------------------- probes


@attrs.frozen(eq=False)
class ProbeResult:
    """What one probe measured: its findings, its runs (for the report) and its numbers (for --json)."""

    name: str
    findings: tuple[Finding, ...] = ()
    runs: tuple[Run, ...] = ()
    data: dict[str, Any] = attrs.field(factory=dict)


def label_pairs(base: Run, other: Run) -> list[tuple[int, int]]:
    """``(label in base, label in other)`` of every object both runs find: the same box (IoU >= 0.5), any class.

    Each run is cut at the base run's threshold. A model whose classes are colours keeps its boxes
    and its confidence under a red/blue swap but changes their labels: these pairs show it.
    """
    from safepredict.monitor.profile import matched_label_pairs

    pairs: list[tuple[int, int]] = []
    for i in range(len(base.candidates)):
        pairs += matched_label_pairs(base.candidates[i], other.candidates[i], base.threshold, IOU_MATCH)
    return pairs


def pair_log_odds(pairs: Sequence[tuple[int, int]], reference: Any) -> float | None:
    """Log odds that the images are in the wrong channel order, from how a swap relabels their objects; or None.

    The reference counted, on validation images, each object's (label as given, label swapped)
    (``swap_pairs``). Images in the right order give pairs like those; images in the wrong order
    give them reversed (what the validation set gives swapped is now given, and the reverse). Each
    pair scores log(M[b, a] / M[a, b]): a likelihood ratio between the two hypotheses.
    """
    table = getattr(reference, "swap_pairs", None)
    k = len(getattr(reference, "class_share", ()) or ())
    if table is None or k < 2 or not pairs:
        return None
    m = np.asarray(table, dtype=np.float64).reshape(k, k) + 0.5  # a pair never seen is rare, not impossible
    return float(sum(math.log(m[b, a] / m[a, b]) for a, b in pairs if 0 <= a < k and 0 <= b < k))


def class_shares(run: Run, n_classes: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The run's mean per-image class shares (images with detections), and each such image's shares."""
    per_image = []
    for i in range(len(run.candidates)):
        labels = run.final(i).labels
        labels = labels[(labels >= 0) & (labels < n_classes)]
        if labels.size:
            per_image.append(np.bincount(labels, minlength=n_classes) / labels.size)
    mean = np.mean(per_image, axis=0) if per_image else np.zeros(n_classes)
    return mean, per_image


# Odds beyond which the class shares decide the channel order (a likelihood ratio of 1000 to 1).
SHARE_LOG_ODDS = math.log(1000.0)


def share_log_odds(given: Run, swapped: Run, reference: Any) -> tuple[float, dict[str, Any]] | None:
    """Log odds that the images are in the wrong channel order, from class shares, and the numbers; or None.

    The reference knows the model's class shares on validation images (``class_share``) and on the
    same images with red and blue swapped (``swapped_class_share``). Images in the right order give
    the first as given and the second swapped; images in the wrong order the reverse. Each image's
    class shares x are scored against both (sum of x·log(s/r), each image counting once however many
    objects it has), as given and swapped: a likelihood ratio between the two hypotheses.
    """
    shares = getattr(reference, "class_share", None)
    swapped_shares = getattr(reference, "swapped_class_share", None)
    if not shares or swapped_shares is None or len(shares) < 2:
        return None
    k = len(shares)
    n_ref = max(int(getattr(reference, "n_images_with_detections", 1)), 1)
    n_swapped = max(int(getattr(reference, "swapped_n_images_with_detections", 1)), 1)
    # Smoothed as proportions from that many images, so a class the reference never saw is rare, not impossible.
    r = (np.asarray(shares) * n_ref + 0.5) / (n_ref + 0.5 * k)
    s = (np.asarray(swapped_shares) * n_swapped + 0.5) / (n_swapped + 0.5 * k)
    weights = np.log(s / r)
    mean_given, per_given = class_shares(given, k)
    mean_swapped, per_swapped = class_shares(swapped, k)
    odds = float(sum(x @ weights for x in per_given) - sum(x @ weights for x in per_swapped))
    numbers = {
        "class_shares_as_given": [round(float(x), 4) for x in mean_given],
        "class_shares_swapped": [round(float(x), 4) for x in mean_swapped],
        "reference_class_shares": [round(float(x), 4) for x in shares],
        "reference_swapped_class_shares": [round(float(x), 4) for x in swapped_shares],
        "log_odds_wrong_order": round(odds, 3),
        "reference_images": getattr(reference, "n_images", None),
    }
    return odds, numbers


def _reference_for(predictor: Any) -> Any:
    """The reference profile a diagnosis can compare class shares with: beside the checkpoint, or the
    automatic one already cached for this checkpoint (never built here)."""
    from safepredict.monitor import PROFILE_FILENAME, ReferenceProfile

    beside = Path(predictor.artifact.checkpoint).parent / PROFILE_FILENAME
    if beside.is_file():
        with contextlib.suppress(Exception):
            return ReferenceProfile.load(beside)
    from safepredict.autoref import cached_reference

    return cached_reference(predictor)


def _shares_text(names: Sequence[str], values: Sequence[float]) -> str:
    return ", ".join(f"{name} {v:.0%}" for name, v in zip(names, values, strict=True))


def channel_order_probe(predictor: Any, images: Sequence[LoadedImage], base: Run, reference: Any = None) -> ProbeResult:
    """The same images with red and blue swapped: is the model more confident on them, or are its labels
    (class shares) those of the reference only when swapped?

    ``reference`` is the ReferenceProfile to compare class shares with (default: the one beside the
    checkpoint, or the cached automatic one).
    """
    contract = predictor.contract
    swapped = run_pipeline(predictor, images, "red and blue swapped", swap=True)
    effect = compare(base, swapped)
    key = contract.key("input_format")
    other = "BGR" if contract.input_format == "RGB" else "RGB"
    pairs = label_pairs(base, swapped)
    both, changed = len(pairs), sum(1 for a, b in pairs if a != b)
    numbers = (
        f"as given: {describe_run(base, base.threshold)}; red and blue swapped: {describe_run(swapped, base.threshold)}"
        + (f"; {changed} of the {both} objects both find change class when red and blue are swapped" if both else "")
    )
    data: dict[str, Any] = {
        "as_given": base.summary(),
        "swapped": swapped.summary(),
        "effect": effect.to_json(),
        "objects_in_both": both,
        "objects_relabelled": changed,
    }
    fix = (
        f"convert the images to {contract.input_format} before predicting (cv2.cvtColor(img, "
        f"cv2.COLOR_{other}2{contract.input_format})), or pass color='{other}' to SafePredictor.predict "
        f"for arrays in {other} order; if the files really are {contract.input_format}, the config "
        f"({key}) may not be the one the model was trained with"
    )
    colour_classes = both >= 3 and changed >= 0.3 * both
    if reference is None and colour_classes:
        reference = _reference_for(predictor)
    by_shares = share_log_odds(base, swapped, reference) if reference is not None and colour_classes else None
    if by_shares is not None:
        data["class_evidence"] = by_shares[1]
        # The relabelling of the very same objects, where the reference recorded it, is the stronger evidence.
        by_pairs = pair_log_odds(pairs, reference)
        if by_pairs is not None:
            by_shares[1]["log_odds_wrong_order_by_class_shares"] = by_shares[1]["log_odds_wrong_order"]
            by_shares[1]["log_odds_wrong_order"] = round(by_pairs, 3)
            by_shares = (by_pairs, by_shares[1])
    names = predictor.class_names or tuple(str(i) for i in range(len(getattr(reference, "class_share", ()) or ())))

    if clearly_better(swapped, base):
        finding = Finding(
            code="probe.channel_order",
            severity="error",
            subject="input_format",
            message=(
                f"the model is far more confident with red and blue swapped: these images look {other}, "
                f"the model was trained on {contract.input_format} ({key})"
            ),
            evidence=numbers,
            fix=fix,
            impact=effect.impact,
            data=data,
        )
    elif by_shares is not None and by_shares[0] >= SHARE_LOG_ODDS:
        ev = by_shares[1]
        finding = Finding(
            code="probe.channel_order",
            severity="error",
            subject="input_format",
            message=(
                f"these images look {other}, the model was trained on {contract.input_format} ({key}): with red "
                f"and blue swapped their class shares are the validation set's, as given they are what the "
                f"validation set gives swapped ({changed} of {both} objects change class; the confidence barely "
                "moves, so only the labels show it)"
            ),
            evidence=(
                f"{numbers}; class shares as given {_shares_text(names, ev['class_shares_as_given'])}, swapped "
                f"{_shares_text(names, ev['class_shares_swapped'])}; the reference ({ev['reference_images']} "
                f"validation images) has {_shares_text(names, ev['reference_class_shares'])}, and "
                f"{_shares_text(names, ev['reference_swapped_class_shares'])} swapped; log odds of the wrong "
                f"order {ev['log_odds_wrong_order']:.1f} from "
                + (
                    "how the swap relabels these objects against how it relabels the validation set's"
                    if "log_odds_wrong_order_by_class_shares" in ev
                    else "the class shares"
                )
                + f" (decides beyond {SHARE_LOG_ODDS:.1f})"
            ),
            fix=fix,
            impact=round(changed / both, 4) if both else effect.impact,
            data=data,
        )
    else:
        sensitive = clearly_better(base, swapped)
        if sensitive:
            message = (
                f"channel order is right: the model is more confident on the images as given ({contract.input_format})"
            )
        elif by_shares is not None and by_shares[0] <= -SHARE_LOG_ODDS:
            message = (
                f"channel order is right: the class shares of the images as given are the validation set's "
                f"({changed} of {both} objects change class with red and blue swapped)"
            )
        elif colour_classes:
            message = (
                f"the model's labels depend on the channel order ({changed} of {both} objects change class with red "
                "and blue swapped) while its confidence barely does: confidence cannot tell which order is right"
                + (
                    "; the class shares against the reference profile do not decide either"
                    if by_shares is not None
                    else "; a reference profile (the training hook's, or the automatic one of the validation set) "
                    "would let the class shares decide"
                )
            )
        else:
            message = "the model's confidence and labels barely depend on the channel order of these images"
        finding = Finding(
            code="probe.channel_order",
            severity="info",
            subject="input_format",
            message=message,
            evidence=numbers,
            impact=0.0,
            data=data,
        )
    return ProbeResult("channel_order", (finding,), (swapped,), data)


def _close(a: Sequence[float], b: Sequence[float], tol: float = 0.5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def normalisation_probe(pipelines: Pipelines, images: Sequence[LoadedImage], base: Run, contract: Any) -> ProbeResult:
    """The training mean/std against ImageNet's defaults: which one is the model confident with?"""
    order = contract.input_format
    mean, std = IMAGENET_MEAN[order], IMAGENET_STD[order]
    if _close(contract.pixel_mean, mean) and _close(contract.pixel_std, std, 0.05):
        finding = Finding(
            code="probe.normalisation",
            severity="info",
            subject="normalisation",
            message="the model was trained with ImageNet's mean/std: a default config normalises the same way",
            evidence=f"training mean {list(contract.pixel_mean)}, std {list(contract.pixel_std)} ({order} order)",
            impact=0.0,
        )
        return ProbeResult("normalisation", (finding,), (), {"skipped": "training uses ImageNet statistics"})
    imagenet = pipelines.run(images, "ImageNet mean/std", {"pixel_mean": mean, "pixel_std": std})
    effect = compare(base, imagenet)
    where = f"{contract.key('pixel_mean')} / {contract.key('pixel_std')}"
    numbers = (
        f"training mean {_fmt(contract.pixel_mean)}, std {_fmt(contract.pixel_std)} ({where}): "
        f"{describe_run(base, base.threshold)}; ImageNet mean {_fmt(mean)}, std {_fmt(std)}: "
        f"{describe_run(imagenet, base.threshold)}; {effect.kept} of the training pipeline's "
        f"{effect.base_detections} detection(s) found again"
    )
    data = {"training": base.summary(), "imagenet": imagenet.summary(), "effect": effect.to_json()}
    if clearly_better(imagenet, base):
        finding = Finding(
            code="probe.normalisation",
            severity="warning",
            subject="normalisation",
            message=(
                "the model is more confident with ImageNet's mean/std than with its training config's: "
                "the config may not be the one the checkpoint was trained with"
            ),
            evidence=numbers,
            fix=f"check {where} against the config the checkpoint was really trained with",
            impact=effect.impact,
            data=data,
        )
    else:
        finding = Finding(
            code="probe.normalisation",
            severity="info",
            subject="normalisation",
            message=(
                f"the model depends on its training mean/std: ImageNet's defaults keep {effect.agreement:.0%} "
                "of its detections"
            ),
            evidence=numbers,
            impact=0.0,
            data=data,
        )
    return ProbeResult("normalisation", (finding,), (imagenet,), data)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def resize_overrides(contract: Any, factor: float) -> tuple[dict[str, Any], int] | None:
    """Overrides that scale the test size by ``factor``, and the resulting short-edge size; None if no resize."""
    resize = contract.resize
    if resize.kind == "shortest_edge" and resize.min_size:
        size = max(8, round(resize.min_size[0] * factor))
        overrides: dict[str, Any] = {"resize.min_size": size}
        if resize.max_size:
            overrides["resize.max_size"] = max(size, round(resize.max_size * factor))
        return overrides, size
    if resize.kind in ("scale", "fixed") and resize.scale is not None:
        w, h = (max(8, round(v * factor)) for v in resize.scale)
        return {"resize.scale": (w, h)}, min(w, h)
    return None


def trained_size(contract: Any) -> int | None:
    resize = contract.resize
    if resize.kind == "shortest_edge" and resize.min_size:
        return int(resize.min_size[0])
    if resize.kind in ("scale", "fixed") and resize.scale is not None:
        return int(min(resize.scale))
    return None


def resize_probe(pipelines: Pipelines, images: Sequence[LoadedImage], base: Run, contract: Any) -> ProbeResult:
    """Scores against the test size, around the trained one: is the trained size the model's best?"""
    size0 = trained_size(contract)
    if size0 is None:
        finding = Finding(
            code="probe.resize",
            severity="info",
            subject="resize",
            message="the test pipeline does not resize: nothing to probe",
            evidence=contract.resize.describe(),
            impact=0.0,
        )
        return ProbeResult("resize", (finding,), (), {"skipped": "no resize"})
    key = contract.key("resize.scale" if contract.resize.kind != "shortest_edge" else "resize.min_size")
    images = images[:RESIZE_IMAGES]
    base = base.head(RESIZE_IMAGES)
    curve: list[dict[str, Any]] = [{"size": size0, "factor": 1.0, **base.summary()}]
    runs: list[Run] = []
    for factor in RESIZE_FACTORS:
        made = resize_overrides(contract, factor)
        if made is None:
            continue
        overrides, size = made
        run = pipelines.run(images, f"test size {size}", overrides)
        runs.append(run)
        curve.append({"size": size, "factor": factor, **run.summary(base.threshold)})
    curve.sort(key=lambda point: point["size"])
    better = [
        (run, point)
        for run, point in zip(runs, curve_points(curve, runs), strict=True)
        if clearly_better(run, base, more_objects=False)
    ]
    best = max(better, key=lambda pair: (pair[0].class_margin(base.threshold), pair[0].mean_top), default=None)
    text = "; ".join(
        f"{p['size']} px: mean best score {p['mean_top_score']:.3f}, {p['objects']} object(s), "
        f"class margin {p['class_margin']:.3f}"
        for p in curve
    )
    data = {"trained_size": size0, "key": key, "images": len(images), "curve": curve}
    if best is not None and clearly_better(best[0], base):
        run, point = best
        finding = Finding(
            code="probe.resize",
            severity="warning",
            subject="resize",
            message=(
                f"the model is more confident at test size {point['size']} than at its trained {size0}: "
                "objects in these images may be at another scale than in training"
            ),
            evidence=text,
            fix=(
                f"check that the images are like the training images (resolution, crop); if they really are at "
                f"another scale, pass overrides for {key} deliberately"
            ),
            impact=compare(base, run).impact,
            data=data,
        )
    else:
        finding = Finding(
            code="probe.resize",
            severity="info",
            subject="resize",
            message=f"the trained test size ({size0} px, {key}) is the best of those tried",
            evidence=text,
            impact=0.0,
            data=data,
        )
    return ProbeResult("resize", (finding,), tuple(runs), data)


def curve_points(curve: list[dict[str, Any]], runs: list[Run]) -> list[dict[str, Any]]:
    """The curve point of each probe run (by label), in ``runs`` order."""
    by_label = {p["label"]: p for p in curve}
    return [by_label[r.label] for r in runs]


def threshold_probe(base: Run, threshold: float, threshold_key: str) -> ProbeResult:
    """Candidates waiting below the score threshold in images that have nothing above it."""
    n = len(base.candidates)
    empty_with_candidates = []
    best_below: list[float] = []
    for i in range(n):
        c = base.candidates[i]
        if len(base.final(i, threshold)) == 0 and len(c):
            empty_with_candidates.append(i)
            best_below.append(float(c.scores.max()))
    near = [s for s in best_below if s >= threshold / 2]
    empty = sum(1 for i in range(n) if len(base.final(i, threshold)) == 0)
    data = {
        "threshold": threshold,
        "threshold_key": threshold_key,
        "images": n,
        "empty_images": empty,
        "empty_images_with_candidates": len(empty_with_candidates),
        "best_below": [round(s, 4) for s in best_below],
    }
    if not best_below:
        finding = Finding(
            code="probe.threshold",
            severity="info",
            subject="score_threshold",
            message=f"every image has a detection above the score threshold {threshold:g}, or no candidate at all",
            evidence=f"{n - empty} of {n} image(s) have detections above {threshold:g} ({threshold_key})",
            impact=0.0,
            data=data,
        )
        return ProbeResult("threshold", (finding,), (), data)
    suggestion = math.floor(min(near or best_below) * 100) / 100
    evidence = (
        f"{len(best_below)} of {n} image(s) have no detection above {threshold:g} ({threshold_key}) but candidates "
        f"below it, best scores {', '.join(f'{s:.3f}' for s in sorted(best_below, reverse=True)[:8])}"
    )
    if len(near) * 2 >= n and n >= 2:
        finding = Finding(
            code="probe.threshold",
            severity="warning",
            subject="score_threshold",
            message=f"half or more of the images have nothing above {threshold:g}, with candidates close below it",
            evidence=evidence,
            fix=(
                f"look at the other findings first (a preprocessing mistake lowers every score); if the images are "
                f"right, a threshold of {suggestion:g} ({threshold_key}) keeps them"
            ),
            impact=round(len(near) / n, 4),
            data=data,
        )
    else:
        finding = Finding(
            code="probe.threshold",
            severity="info",
            subject="score_threshold",
            message=f"some candidates wait below the score threshold {threshold:g}",
            evidence=evidence,
            fix=f"lower {threshold_key} only if those objects matter and false detections are acceptable",
            impact=0.0,
            data=data,
        )
    return ProbeResult("threshold", (finding,), (), data)
