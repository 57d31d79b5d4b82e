"""ReferenceProfile: what healthy outputs and inputs look like, captured at validation time.

The profile is a small JSON file stored beside the lock. It holds distributions, not images: the
empty rate, the score distribution *before* the score threshold (so a collapse below the threshold
stays visible), the per-image best score, the class shares, and the input statistics of
:mod:`safepredict.monitor.stats`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict.detections import Detections
from safepredict.errors import LockFormatError, LockVersionError
from safepredict.monitor import stats

SCHEMA_VERSION = 1
PROFILE_FILENAME = "safepredict-profile.json"
_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)


@attrs.frozen
class StatSummary:
    """Summary of one per-image quantity over the reference images."""

    n: int
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[str, float] = attrs.field(eq=False, hash=False)  # "0.01" -> value

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> StatSummary:
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return cls(n=0, mean=math.nan, std=math.nan, min=math.nan, max=math.nan, quantiles={})
        qs = np.quantile(arr, _QUANTILES)
        return cls(
            n=int(arr.size),
            mean=float(arr.mean()),
            std=float(arr.std()),
            min=float(arr.min()),
            max=float(arr.max()),
            quantiles={f"{q:g}": float(x) for q, x in zip(_QUANTILES, qs, strict=True)},
        )

    def quantile(self, q: float) -> float:
        """The stored quantile ``q`` (one of 0.01, 0.05, 0.5, 0.95, 0.99)."""
        return self.quantiles[f"{q:g}"]


@attrs.frozen
class ImageOutput:
    """The per-image numbers both the profile and the monitor derive from candidates."""

    n_candidates: int  # finite-scored candidates, before the score threshold
    n_detections: int  # strictly above the score threshold
    n_nonfinite: int
    max_score: float  # NaN when there is no finite candidate
    score_hist: np.ndarray = attrs.field(eq=False)  # per-image proportions over the score bins (zeros if none)
    labels: np.ndarray = attrs.field(eq=False)  # labels of the detections above the threshold

    @classmethod
    def of(cls, candidates: Detections, score_threshold: float, n_bins: int) -> ImageOutput:
        scores = candidates.scores
        finite = np.isfinite(scores)
        n_nonfinite = int(scores.size - np.count_nonzero(finite))
        if n_nonfinite:
            scores = scores[finite]
            labels = candidates.labels[finite]
        else:
            labels = candidates.labels
        if scores.size == 0:
            return cls(0, 0, n_nonfinite, math.nan, np.zeros(n_bins), labels[:0])
        keep = scores > score_threshold  # strictly above, as Detectron2 and MMDetection filter
        hist = stats.score_histogram(scores, n_bins) / scores.size
        return cls(int(scores.size), int(np.count_nonzero(keep)), n_nonfinite, float(scores.max()), hist, labels[keep])


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _none_to_nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def _summary_to_json(s: StatSummary) -> dict[str, Any]:
    # NaN (a quantity with no finite value) is written as null: strict JSON readers refuse NaN.
    data = attrs.asdict(s)
    for key in ("mean", "std", "min", "max"):
        data[key] = _nan_to_none(data[key])
    return data


def _summary_from_json(d: Any, where: str) -> StatSummary:
    try:
        return StatSummary(
            n=int(d["n"]),
            mean=_none_to_nan(d["mean"]),
            std=_none_to_nan(d["std"]),
            min=_none_to_nan(d["min"]),
            max=_none_to_nan(d["max"]),
            quantiles={str(k): float(v) for k, v in d["quantiles"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LockFormatError(f"reference profile: {where} is not a statistics summary ({exc})", source=where) from exc


def _floats(values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(x) for x in values)


def _ints(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(x) for x in values)


def _optional_floats(values: Iterable[Any] | None) -> tuple[float, ...] | None:
    return None if values is None else _floats(values)


def _names(values: Iterable[Any] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(x) for x in values)


@attrs.frozen(kw_only=True)
class ReferenceProfile:
    """What a healthy stream looks like for one model, captured on validation images.

    Build it with :meth:`build` (or :class:`ProfileBuilder` image by image), keep it with
    :meth:`save`, and hand it to :class:`~safepredict.monitor.Monitor` as ``reference``.
    """

    score_threshold: float
    threshold_key: str | None = None
    class_names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    n_images: int
    n_empty: int  # images with nothing strictly above the score threshold
    n_without_candidates: int  # images with no candidate at all, even below the threshold
    n_nonfinite_images: int = 0
    score_bins: int
    candidate_score_hist: tuple[float, ...] = attrs.field(converter=_floats)  # mean per-image proportions
    max_score_hist: tuple[float, ...] = attrs.field(converter=_floats)  # score_bins + 1 ("no candidate") bins
    max_score: StatSummary
    candidates_per_image: StatSummary
    detections_per_image: StatSummary
    n_images_with_detections: int
    class_share: tuple[float, ...] = attrs.field(converter=_floats)  # mean per-image class proportions
    class_counts: tuple[int, ...] = attrs.field(converter=_ints)
    inputs: dict[str, StatSummary] | None = attrs.field(default=None, eq=False, hash=False)
    chroma_hist: tuple[float, ...] | None = attrs.field(default=None, converter=_optional_floats)  # 5 × 5 mean
    chroma_std: tuple[float, ...] | None = attrs.field(default=None, converter=_optional_floats)  # per-image std
    # The same class shares with the images' red and blue swapped: what a channel-order mistake
    # makes of this model's outputs (None when not captured).
    swapped_class_share: tuple[float, ...] | None = attrs.field(default=None, converter=_optional_floats)
    swapped_n_images_with_detections: int = 0
    # Objects found both as given and swapped (same box), counted by (label as given, label swapped),
    # row-major over the classes: how a swap relabels this model's objects (diagnose's evidence).
    swap_pairs: tuple[int, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_ints))
    source: str = ""  # where the images came from, in words
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    # How the input part was computed (stats.INPUT_RECIPE and the grid side); a profile written before
    # these were recorded reads as recipe 1 on a 64² grid. Inputs are compared only at the same recipe.
    input_recipe: int = stats.INPUT_RECIPE
    input_grid: int = stats.INPUT_GRID

    @property
    def inputs_current(self) -> bool:
        """Whether the input part can be compared with input statistics computed now (same recipe, grid)."""
        return stats.inputs_comparable(self.input_recipe, self.input_grid)

    def __attrs_post_init__(self) -> None:
        if len(self.candidate_score_hist) != self.score_bins or len(self.max_score_hist) != self.score_bins + 1:
            raise LockFormatError(
                f"reference profile: score histograms have {len(self.candidate_score_hist)} and "
                f"{len(self.max_score_hist)} bins, expected {self.score_bins} and {self.score_bins + 1}",
            )
        for key in ("chroma_hist", "chroma_std"):
            value = getattr(self, key)
            if value is not None and len(value) != stats.CHROMA_BINS:
                raise LockFormatError(f"reference profile: {key} has {len(value)} bins, expected {stats.CHROMA_BINS}")
        if len(self.class_share) != len(self.class_counts):
            raise LockFormatError("reference profile: class_share and class_counts differ in length")
        if self.swapped_class_share is not None and len(self.swapped_class_share) != len(self.class_share):
            raise LockFormatError("reference profile: swapped_class_share and class_share differ in length")
        if self.swap_pairs is not None and len(self.swap_pairs) != len(self.class_share) ** 2:
            raise LockFormatError("reference profile: swap_pairs is not a classes × classes table")
        if self.class_names is not None and len(self.class_names) != len(self.class_counts):
            raise LockFormatError(
                f"reference profile: {len(self.class_names)} class names but {len(self.class_counts)} class counts"
            )

    # -- derived values -------------------------------------------------------------------------
    @property
    def empty_rate(self) -> float:
        return self.n_empty / self.n_images if self.n_images else math.nan

    @property
    def n_images_with_candidates(self) -> int:
        return self.n_images - self.n_without_candidates

    @property
    def n_classes(self) -> int:
        return len(self.class_counts)

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        samples: Iterable[tuple[np.ndarray | None, Detections]],
        *,
        score_threshold: float,
        class_names: Sequence[str] | None = None,
        threshold_key: str | None = None,
        score_bins: int = 20,
        input_grid: int = stats.INPUT_GRID,
    ) -> ReferenceProfile:
        """A profile from ``(image_rgb, candidates)`` pairs of validation images.

        ``candidates`` are all detections before the score threshold (down to the model's floor),
        after NMS, exactly what the monitor will be given; ``image_rgb`` may be None where the input
        statistics are not wanted.
        """
        builder = ProfileBuilder(
            score_threshold=score_threshold,
            class_names=class_names,
            threshold_key=threshold_key,
            score_bins=score_bins,
            input_grid=input_grid,
        )
        for image, candidates in samples:
            builder.add(image, candidates)
        return builder.build()

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        for key in ("max_score", "candidates_per_image", "detections_per_image"):
            data[key] = _summary_to_json(data[key])
        data["inputs"] = None if self.inputs is None else {k: _summary_to_json(v) for k, v in self.inputs.items()}
        data["class_names"] = None if self.class_names is None else list(self.class_names)
        for key in ("candidate_score_hist", "max_score_hist", "class_share", "class_counts"):
            data[key] = list(data[key])
        for key in ("chroma_hist", "chroma_std", "swapped_class_share", "swap_pairs"):
            value = getattr(self, key)
            data[key] = None if value is None else list(value)
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "<reference profile>") -> ReferenceProfile:
        if not isinstance(data, dict):
            raise LockFormatError(f"{source}: a reference profile is a JSON object", source=source)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise LockVersionError(
                f"{source}: reference profile schema version {version!r}, this safepredict reads {SCHEMA_VERSION}",
                expected=SCHEMA_VERSION,
                found=version,
                source=source,
                fix="recapture the profile with `safepredict profile` using this safepredict version",
            )
        try:
            fields = dict(data)
            fields.setdefault("input_recipe", stats.LEGACY_INPUT_RECIPE)
            fields.setdefault("input_grid", stats.LEGACY_INPUT_GRID)
            for key in ("max_score", "candidates_per_image", "detections_per_image"):
                fields[key] = _summary_from_json(fields[key], f"{source}: {key}")
            if fields.get("inputs") is not None:
                fields["inputs"] = {
                    k: _summary_from_json(v, f"{source}: inputs.{k}") for k, v in fields["inputs"].items()
                }
            return cls(**fields)
        except (TypeError, KeyError, ValueError, AttributeError, OverflowError) as exc:
            raise LockFormatError(f"{source}: malformed reference profile ({exc})", source=source) from exc

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (atomically: a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`; LockFormatError / LockVersionError when it cannot."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LockFormatError(f"{path}: not valid JSON ({exc})", source=str(path)) from exc
        return cls.from_json(data, source=str(path))

    def describe(self) -> str:
        """The profile in words."""
        lines = [
            f"reference profile of {self.n_images} images at score threshold {self.score_threshold:g}"
            + (f" ({self.threshold_key})" if self.threshold_key else "")
            + (f"; {self.source}" if self.source else ""),
            f"  empty (nothing above the threshold): {self.n_empty} ({self.empty_rate:.1%}); "
            f"no candidate at all: {self.n_without_candidates}",
            f"  candidates per image: median {self.candidates_per_image.quantiles.get('0.5', math.nan):g}; "
            f"detections per image: mean {self.detections_per_image.mean:.2f}",
            f"  best score per image: median {self.max_score.quantiles.get('0.5', math.nan):.3f}, "
            f"1% quantile {self.max_score.quantiles.get('0.01', math.nan):.3f}",
        ]
        if self.class_counts:
            names = self.class_names or tuple(str(i) for i in range(self.n_classes))
            shares = ", ".join(f"{n} {s:.0%}" for n, s in zip(names, self.class_share, strict=True))
            lines.append(f"  class shares: {shares}")
            if self.swapped_class_share is not None:
                shares = ", ".join(f"{n} {s:.0%}" for n, s in zip(names, self.swapped_class_share, strict=True))
                n_swapped = self.swapped_n_images_with_detections
                lines.append(f"  class shares with red and blue swapped ({n_swapped} images): {shares}")
        if self.inputs:
            b, c = self.inputs["brightness"], self.inputs["contrast"]
            lines.append(
                f"  inputs: brightness {b.mean:.1f} ± {b.std:.1f}, contrast {c.mean:.1f} ± {c.std:.1f}, "
                f"channel means R {self.inputs['mean_r'].mean:.1f} G {self.inputs['mean_g'].mean:.1f} "
                f"B {self.inputs['mean_b'].mean:.1f}"
            )
        return "\n".join(lines)


class ProfileBuilder:
    """Accumulates validation images one at a time into a :class:`ReferenceProfile`."""

    def __init__(
        self,
        *,
        score_threshold: float,
        class_names: Sequence[str] | None = None,
        threshold_key: str | None = None,
        score_bins: int = 20,
        input_grid: int = stats.INPUT_GRID,
    ) -> None:
        self.score_threshold = float(score_threshold)
        self.class_names = None if class_names is None else tuple(class_names)
        self.threshold_key = threshold_key
        self.score_bins = int(score_bins)
        self.input_grid = int(input_grid)
        self._n = 0
        self._n_empty = 0
        self._n_without = 0
        self._n_nonfinite = 0
        self._hist_sum = np.zeros(self.score_bins)
        self._max_scores: list[float] = []
        self._n_candidates: list[int] = []
        self._n_detections: list[int] = []
        self._share_sum: dict[int, float] = {}
        self._counts: dict[int, int] = {}
        self._n_with_dets = 0
        self._inputs: list[np.ndarray] = []  # input statistics, one block of rows per computed batch
        self._grids = stats.GridBatch(64, self.input_grid)
        self._swapped_share_sum: dict[int, float] = {}
        self._swapped_with_dets = 0
        self._pairs: dict[tuple[int, int], int] = {}
        self.source = ""

    def add(self, image: np.ndarray | None, candidates: Detections) -> None:
        out = ImageOutput.of(candidates, self.score_threshold, self.score_bins)
        self._n += 1
        self._n_nonfinite += out.n_nonfinite > 0
        self._n_candidates.append(out.n_candidates)
        self._n_detections.append(out.n_detections)
        self._max_scores.append(out.max_score)
        if out.n_candidates == 0:
            self._n_without += 1
        else:
            self._hist_sum += out.score_hist
        if out.n_detections == 0:
            self._n_empty += 1
        else:
            self._n_with_dets += 1
            labels, counts = np.unique(out.labels, return_counts=True)
            for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
                self._counts[label] = self._counts.get(label, 0) + count
                self._share_sum[label] = self._share_sum.get(label, 0.0) + count / out.n_detections
        if image is not None:
            self._grids.add(image)
            if self._grids.full:
                self._inputs.append(self._grids.compute())

    def add_swapped(self, candidates: Detections, given: Detections | None = None) -> None:
        """Record the candidates of a validation image fed with red and blue swapped.

        Their class shares become the profile's ``swapped_class_share``: what the outputs look like
        when a caller hands this model the wrong channel order (the monitor's label-aware evidence).
        With ``given`` (the same image's candidates as given), the objects both find are counted by
        their two labels (``swap_pairs``).
        """
        if given is not None:
            for pair in matched_label_pairs(given, candidates, self.score_threshold):
                self._pairs[pair] = self._pairs.get(pair, 0) + 1
        out = ImageOutput.of(candidates, self.score_threshold, self.score_bins)
        if out.n_detections == 0:
            return
        self._swapped_with_dets += 1
        labels, counts = np.unique(out.labels, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            self._swapped_share_sum[label] = self._swapped_share_sum.get(label, 0.0) + count / out.n_detections

    def build(self) -> ReferenceProfile:
        if self._n == 0:
            raise ValueError("a reference profile needs at least one image")
        n_with_cand = self._n - self._n_without
        cand_hist = self._hist_sum / n_with_cand if n_with_cand else np.zeros(self.score_bins)
        max_scores = np.asarray(self._max_scores)
        has = np.isfinite(max_scores)
        max_hist = np.zeros(self.score_bins + 1)
        max_hist[: self.score_bins] = stats.score_histogram(max_scores[has], self.score_bins)
        max_hist[self.score_bins] = np.count_nonzero(~has)
        max_hist /= self._n
        if self.class_names is not None:
            n_classes = len(self.class_names)
            unknown = [label for label in self._counts if not 0 <= label < n_classes]
            if unknown:
                raise ValueError(f"labels {sorted(unknown)} are outside the {n_classes} class names")
        else:
            n_classes = max(self._counts, default=-1) + 1
        share = [
            self._share_sum.get(i, 0.0) / self._n_with_dets if self._n_with_dets else 0.0 for i in range(n_classes)
        ]
        counts = [self._counts.get(i, 0) for i in range(n_classes)]
        swapped = None
        if self._swapped_with_dets:
            n_swapped = max(n_classes, max(self._swapped_share_sum, default=-1) + 1)
            if n_swapped == n_classes:
                swapped = [self._swapped_share_sum.get(i, 0.0) / self._swapped_with_dets for i in range(n_classes)]
        pairs = None
        if self._pairs and all(0 <= a < n_classes and 0 <= b < n_classes for a, b in self._pairs):
            pairs = [self._pairs.get((a, b), 0) for a in range(n_classes) for b in range(n_classes)]
        if self._grids.count:
            self._inputs.append(self._grids.compute())
        table = np.concatenate(self._inputs) if self._inputs else None
        inputs, chroma, chroma_std = input_summaries(table) if table is not None else (None, None, None)
        return ReferenceProfile(
            score_threshold=self.score_threshold,
            threshold_key=self.threshold_key,
            class_names=self.class_names,
            n_images=self._n,
            n_empty=self._n_empty,
            n_without_candidates=self._n_without,
            n_nonfinite_images=self._n_nonfinite,
            score_bins=self.score_bins,
            candidate_score_hist=cand_hist,
            max_score_hist=max_hist,
            max_score=StatSummary.of(max_scores),
            candidates_per_image=StatSummary.of(self._n_candidates),
            detections_per_image=StatSummary.of(self._n_detections),
            n_images_with_detections=self._n_with_dets,
            class_share=share,
            class_counts=counts,
            inputs=inputs,
            chroma_hist=chroma,
            chroma_std=chroma_std,
            swapped_class_share=swapped,
            swapped_n_images_with_detections=self._swapped_with_dets if swapped is not None else 0,
            swap_pairs=pairs,
            source=self.source,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            input_grid=self.input_grid,
        )


def matched_label_pairs(
    a: Detections, b: Detections, score_threshold: float, iou: float = 0.5
) -> list[tuple[int, int]]:
    """``(label in a, label in b)`` of every object both find above the threshold (the same box, IoU ≥ ``iou``).

    Boxes are matched whatever their labels, greedily by ``a``'s scores: a model whose classes are
    colours keeps its boxes under a red/blue swap and changes their labels.
    """
    keep_a, keep_b = a.scores > score_threshold, b.scores > score_threshold
    boxes_a, boxes_b = np.asarray(a.boxes)[keep_a], np.asarray(b.boxes)[keep_b]
    if not len(boxes_a) or not len(boxes_b):
        return []
    labels_a, labels_b = np.asarray(a.labels)[keep_a], np.asarray(b.labels)[keep_b]
    x1 = np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    y1 = np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    x2 = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    y2 = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    overlaps = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    used = np.zeros(len(boxes_b), bool)
    pairs = []
    for i in np.argsort(-np.asarray(a.scores)[keep_a]):
        row = np.where(used, 0.0, overlaps[i])
        j = int(np.argmax(row))
        if row[j] >= iou:
            used[j] = True
            pairs.append((int(labels_a[i]), int(labels_b[j])))
    return pairs


def input_summaries(table: np.ndarray) -> tuple[dict[str, StatSummary], np.ndarray, np.ndarray]:
    """The profile's input part from a table of per-image statistics vectors (one row per image).

    The summaries of every named statistic and of R − B, the opponent-colour histogram's mean and
    per-image standard deviation, and the summary of the images' colour votes against that
    histogram (:func:`safepredict.monitor.stats.colour_votes`).
    """
    inputs = {name: StatSummary.of(table[:, i]) for i, name in enumerate(stats.INPUT_STATS)}
    inputs["r_minus_b"] = StatSummary.of(table[:, stats.MEAN_R] - table[:, stats.MEAN_B])
    chroma_rows = table[:, stats.CHROMA]
    chroma, chroma_std = chroma_rows.mean(axis=0), chroma_rows.std(axis=0)
    weights = stats.colour_weights(chroma, chroma_std, len(table))
    inputs["colour_vote"] = StatSummary.of(stats.colour_votes(chroma_rows, weights))
    return inputs, chroma, chroma_std
