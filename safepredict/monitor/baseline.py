"""The self-baseline: a reference profile made of the stream's own first images, from the monitor's windows.

Without a reference profile the monitor only knows absolute signs (NaN scores, streaks). Most
deployments are steady for a while after start-up, so the stream's first images are a fair
baseline for the rest: a stream that changes mid-way (another camera, a colour-order change in a
new release of the caller, a dirty lens) is then named by the same drift tests a reference drives.
The profile is built once, from the rows the windows already hold, with the same summaries
:class:`~safepredict.monitor.profile.ProfileBuilder` makes of validation images.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np

from safepredict.monitor import stats
from safepredict.monitor.profile import ReferenceProfile, StatSummary, input_summaries

__all__ = ["baseline_profile"]


def baseline_profile(
    *,
    score_threshold: float,
    threshold_key: str | None,
    class_names: Sequence[str] | None,
    n_classes: int,
    best: np.ndarray,
    hist: np.ndarray,
    inv_candidates: np.ndarray,
    inv_detections: np.ndarray,
    class_counts: np.ndarray,
    inputs: np.ndarray,
    input_grid: int = stats.INPUT_GRID,
) -> ReferenceProfile:
    """A profile of the images in the monitor's windows (the arguments are the windows' filled rows).

    ``hist`` holds each image's raw candidate-score counts over ``bins + 1`` columns (the last one:
    scores of exactly 1.0), ``inv_candidates``/``inv_detections`` 1/n per image (0: none),
    ``class_counts`` the per-image counts of the detections by class, ``inputs`` the input window's
    statistics rows (possibly none).
    """
    n = int(best.size)
    bins = hist.shape[1] - 1
    has_candidates = inv_candidates > 0
    has_detections = inv_detections > 0
    n_cand = int(np.count_nonzero(has_candidates))
    n_det = int(np.count_nonzero(has_detections))
    total = inv_candidates.astype(np.float64) @ hist
    cand_hist = total[:bins].copy()
    cand_hist[-1] += total[bins]
    if n_cand:
        cand_hist /= n_cand
    best_bins = np.full(n, bins, dtype=np.intp)  # the last bin: no candidate
    best_bins[has_candidates] = np.minimum((best[has_candidates] * bins).astype(np.intp), bins - 1)
    max_hist = np.bincount(best_bins, minlength=bins + 1) / max(n, 1)
    with np.errstate(divide="ignore"):
        candidates = np.where(has_candidates, np.rint(1.0 / inv_candidates), 0.0)
        detections = np.where(has_detections, np.rint(1.0 / inv_detections), 0.0)
    if n_classes and n_det:
        share = (inv_detections.astype(np.float64) @ class_counts) / n_det
        counts = np.rint(has_detections.astype(np.float64) @ class_counts).astype(int)
    else:
        share = np.zeros(n_classes)
        counts = np.zeros(n_classes, dtype=int)
    summaries, chroma, chroma_std = input_summaries(inputs) if len(inputs) else (None, None, None)
    return ReferenceProfile(
        score_threshold=score_threshold,
        threshold_key=threshold_key,
        class_names=None if class_names is None else tuple(class_names),
        n_images=n,
        n_empty=n - n_det,
        n_without_candidates=n - n_cand,
        score_bins=bins,
        candidate_score_hist=cand_hist,
        max_score_hist=max_hist,
        max_score=StatSummary.of(best[has_candidates]),
        candidates_per_image=StatSummary.of(candidates),
        detections_per_image=StatSummary.of(detections),
        n_images_with_detections=n_det,
        class_share=share,
        class_counts=counts,
        inputs=summaries,
        chroma_hist=chroma,
        chroma_std=chroma_std,
        input_grid=input_grid,
        source=f"self-baseline: the stream's first {n} images",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
