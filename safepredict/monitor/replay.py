"""Golden replay: a handful of reference images and their detections, stored beside the lock and re-run.

An environment or export difference that changes the numerics (another torch, cuDNN, OpenCV
build, an fp16 export) rarely fails loudly; it moves boxes and scores a little, or a lot. The
golden set catches it: ``capture_golden`` copies a few images next to the lock with the detections
the validated model gave them, ``replay_golden`` re-runs them and reports every detection that went
missing, appeared, moved or was rescored beyond tolerance. Everything about golden sets lives here:
where one is stored (beside its lock), which weights it belongs to (the ones the lock pins), and
the rule that a fresh capture is replayed at once; the commands (``safepredict golden``,
``safepredict check --replay``) and ``SafePredictor(replay=True)`` only call these functions.

The predictor is used through two members only: ``predict_candidates(path) -> (image_rgb,
candidates)`` and ``score_threshold``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from safepredict._logging import warn
from safepredict.detections import Detections
from safepredict.errors import InputError, LockFormatError, LockVersionError, SafePredictError

GOLDEN_DIRNAME = "safepredict-golden"
GOLDEN_FILENAME = "golden.json"
SCHEMA_VERSION = 1


@attrs.frozen(kw_only=True)
class ReplayTolerance:
    """How far a replayed detection may move before it counts as drift.

    ``box_px``: the largest difference of any box coordinate, in pixels of the original image;
    ``score``: the largest score difference. Detections within ``score`` of the threshold may appear
    or vanish without drift (they sit on the edge); ``margin`` is how far below the threshold the
    golden set keeps candidates so that such edge cases can still be matched.
    """

    box_px: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    score: float = attrs.field(default=0.02, validator=attrs.validators.ge(0.0))
    margin: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))


@attrs.frozen
class Drift:
    """One detection that did not replay as captured."""

    image: str
    kind: str  # missing | extra | moved | rescored | image_changed | image_missing
    label: int | None = None
    expected: tuple[float, ...] | None = None  # x1, y1, x2, y2, score
    found: tuple[float, ...] | None = None
    box_delta: float | None = None
    score_delta: float | None = None

    def describe(self) -> str:
        what = {
            "missing": "a detection is gone",
            "extra": "a detection appeared",
            "moved": "a box moved",
            "rescored": "a score changed",
            "image_changed": "the golden image file changed since capture",
            "image_missing": "the golden image file is missing",
        }[self.kind]
        parts = [f"{self.image}: {what}"]
        if self.label is not None:
            parts.append(f"label {self.label}")
        if self.expected is not None:
            parts.append("expected " + _fmt(self.expected))
        if self.found is not None:
            parts.append("found " + _fmt(self.found))
        if self.box_delta is not None:
            parts.append(f"box Δ {self.box_delta:.2f} px")
        if self.score_delta is not None:
            parts.append(f"score Δ {self.score_delta:.4f}")
        return ", ".join(parts)


def _fmt(det: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in det[:4]) + f"] @ {det[4]:.3f}"


@attrs.frozen
class ReplayReport:
    """What the replay found: drift per detection, and the largest differences seen overall."""

    golden: Path
    images: int
    detections: int
    drifts: tuple[Drift, ...]
    max_box_delta: float
    max_score_delta: float
    tolerance: ReplayTolerance

    @property
    def ok(self) -> bool:
        return not self.drifts

    def describe(self) -> str:
        head = (
            f"golden replay of {self.images} images ({self.detections} detections) from {self.golden}: "
            f"largest box Δ {self.max_box_delta:.3f} px, largest score Δ {self.max_score_delta:.4f} "
            f"(tolerance {self.tolerance.box_px:g} px, {self.tolerance.score:g})"
        )
        if self.ok:
            return head + "; everything replays"
        lines = [head + f"; {len(self.drifts)} drift(s):"]
        lines += [f"  {d.describe()}" for d in self.drifts[:20]]
        if len(self.drifts) > 20:
            lines.append(f"  ... and {len(self.drifts) - 20} more")
        lines.append(
            "  fix: the environment or the model differs from the one the golden set was captured with; "
            "`safepredict check` says what changed"
        )
        return "\n".join(lines)


def golden_dir(lock_path: str | Path) -> Path:
    """Where the golden set of a lock lives: ``safepredict-golden/`` beside it."""
    return Path(lock_path).parent / GOLDEN_DIRNAME


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(dets: Detections, floor: float) -> list[list[float]]:
    keep = np.isfinite(dets.scores) & (dets.scores > floor)
    boxes, scores, labels = dets.boxes[keep], dets.scores[keep], dets.labels[keep]
    order = np.argsort(-scores, kind="stable")
    return [
        [float(x) for x in boxes[i]] + [float(scores[i]), int(labels[i])]  # x1, y1, x2, y2, score, label
        for i in order
    ]


def capture_golden(
    predictor: Any,
    images: Sequence[str | Path],
    lock_path: str | Path,
    *,
    tolerance: ReplayTolerance | None = None,
) -> Path:
    """Copy ``images`` beside the lock with the detections ``predictor`` gives them; the golden file's path."""
    tol = tolerance if tolerance is not None else ReplayTolerance()
    if not images:
        raise InputError("a golden set needs at least one image")
    folder = golden_dir(lock_path)
    folder.mkdir(parents=True, exist_ok=True)
    threshold = float(predictor.score_threshold)
    floor = max(0.0, threshold - tol.margin)
    entries = []
    for i, src in enumerate(images):
        src = Path(src)
        if not src.is_file():
            raise InputError(f"{src}: no such image", found=str(src))
        name = f"{i:03d}{src.suffix.lower()}"
        shutil.copyfile(src, folder / name)
        _, candidates = predictor.predict_candidates(folder / name)
        entries.append(
            {
                "file": name,
                "source": str(src),
                "sha256": _sha256(folder / name),
                "detections": _rows(candidates, floor),
            }
        )
    doc = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "score_threshold": threshold,
        "tolerance": attrs.asdict(tol),
        "images": entries,
    }
    path = folder / GOLDEN_FILENAME
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def capture_and_replay(
    predictor: Any,
    images: Sequence[str | Path],
    lock_path: str | Path,
    *,
    tolerance: ReplayTolerance | None = None,
) -> ReplayReport:
    """Capture the golden set (:func:`capture_golden`) and replay it at once; the replay's report.

    A set that does not replay in the environment that captured it is useless (a nondeterministic
    model or pipeline), and whoever captures it should know now. Drift is reported, not logged.
    """
    capture_golden(predictor, images, lock_path, tolerance=tolerance)
    return replay_golden(predictor, lock_path, emit=False)


def locked_weights(lock_path: str | Path) -> Path:
    """The weights file the lock pins: the model its golden set was captured with."""
    from safepredict.lock import read_lock

    lock = Path(lock_path)
    entry = next((f for f in read_lock(lock).environment.files if f.role == "weights"), None)
    if entry is None:
        raise SafePredictError(f"{lock} pins no weights: pass --weights to replay the golden set")
    path = Path(entry.path)
    return path if path.is_absolute() else lock.parent / path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(
            f"no golden set at {path}",
            found=str(path),
            fix="capture one with `safepredict golden CHECKPOINT IMAGE... --lock LOCK`",
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LockFormatError(f"{path}: not valid JSON ({exc})", source=str(path)) from exc
    if not isinstance(doc, dict):
        raise LockFormatError(f"{path}: a golden set is a JSON object", source=str(path))
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise LockVersionError(
            f"{path}: golden set schema version {doc.get('schema_version')!r}, this safepredict reads {SCHEMA_VERSION}",
            expected=SCHEMA_VERSION,
            found=doc.get("schema_version"),
            source=str(path),
        )
    if not isinstance(doc.get("images"), list) or "score_threshold" not in doc:
        raise LockFormatError(f"{path}: a golden set needs 'images' and 'score_threshold'", source=str(path))
    return doc


def compare(
    image: str,
    expected: list[list[float]],
    found: Detections,
    threshold: float,
    tol: ReplayTolerance,
) -> tuple[list[Drift], float, float, int]:
    """Match expected detections to found candidates (same label, nearest box, greedily by score).

    Returns the drifts, the largest box and score differences among matched pairs, and how many
    expected detections were above the threshold.
    """
    rows = _rows(found, max(0.0, threshold - tol.margin - tol.score))
    used = [False] * len(rows)
    drifts: list[Drift] = []
    max_box = max_score = 0.0
    counted = 0
    edge = threshold + tol.score  # above this a detection must replay; below it, it may vanish
    for exp in expected:
        label, exp_t = int(exp[5]), tuple(exp[:5])
        if exp[4] > threshold:
            counted += 1
        best, best_delta = -1, float("inf")
        for j, row in enumerate(rows):
            if used[j] or int(row[5]) != label:
                continue
            delta = max(abs(a - b) for a, b in zip(row[:4], exp[:4], strict=True))
            if delta < best_delta:
                best, best_delta = j, delta
        if best < 0 or best_delta > max(tol.box_px * 20.0, 8.0):
            if exp[4] > edge:
                drifts.append(Drift(image, "missing", label, exp_t))
            continue
        used[best] = True
        row = rows[best]
        score_delta = abs(row[4] - exp[4])
        max_box, max_score = max(max_box, best_delta), max(max_score, score_delta)
        if max(exp[4], row[4]) <= threshold - tol.score:
            continue  # both safely below the threshold: kept only for matching
        if best_delta > tol.box_px:
            drifts.append(Drift(image, "moved", label, exp_t, tuple(row[:5]), best_delta, score_delta))
        elif score_delta > tol.score:
            drifts.append(Drift(image, "rescored", label, exp_t, tuple(row[:5]), best_delta, score_delta))
    for j, row in enumerate(rows):
        if not used[j] and row[4] > edge:
            drifts.append(Drift(image, "extra", int(row[5]), None, tuple(row[:5])))
    return drifts, max_box, max_score, counted


def replay_golden(
    predictor: Any,
    lock_path: str | Path | None,
    *,
    tolerance: ReplayTolerance | None = None,
    emit: bool = True,
) -> ReplayReport:
    """Re-run the golden set stored beside ``lock_path``; warn (``monitor.replay_drift``) on any drift.

    ``lock_path`` None (a predictor made without ``lock=``) is an InputError that says where the set lives.
    """
    if lock_path is None:
        raise InputError(
            "replay=True needs lock=... (the golden set is stored beside the lock)",
            fix="pass the lock the golden set was captured with: SafePredictor(..., lock='safepredict.lock')",
        )
    folder = golden_dir(lock_path)
    path = folder / GOLDEN_FILENAME
    doc = _read(path)
    try:
        tol = tolerance if tolerance is not None else ReplayTolerance(**doc.get("tolerance", {}))
        threshold = float(doc["score_threshold"])
        drifts: list[Drift] = []
        max_box = max_score = 0.0
        counted = 0
        for entry in doc["images"]:
            name = str(entry["file"])
            file = folder / name
            if not file.is_file():
                drifts.append(Drift(name, "image_missing"))
                continue
            if _sha256(file) != entry["sha256"]:
                drifts.append(Drift(name, "image_changed"))
                continue
            _, found = predictor.predict_candidates(file)
            d, b, s, c = compare(name, entry["detections"], found, threshold, tol)
            drifts += d
            max_box, max_score, counted = max(max_box, b), max(max_score, s), counted + c
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LockFormatError(f"{path}: malformed golden set ({exc})", source=str(path)) from exc
    report = ReplayReport(
        golden=path,
        images=len(doc["images"]),
        detections=counted,
        drifts=tuple(drifts),
        max_box_delta=max_box,
        max_score_delta=max_score,
        tolerance=tol,
    )
    if emit and not report.ok:
        warn(
            report.describe(),
            code="monitor.replay_drift",
            severity="error",
            evidence={
                "drifts": len(report.drifts),
                "images": report.images,
                "max_box_delta": max_box,
                "max_score_delta": max_score,
                "golden": str(path),
            },
        )
    return report
