"""The user's images and outputs against a reference profile captured on validation images.

The monitor's window tests need hundreds of images; diagnose sees a handful, so it asks a smaller
question with the same statistics: are more of these images outside the reference's 1 %..99 %
range (or empty, or below the reference's usual best score) than chance allows at level
:data:`ALPHA`? With 8 images that takes 5 of them, so a finding here is strong evidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from safepredict.diagnose.probes import Run
from safepredict.findings import Finding
from safepredict.monitor import stats

__all__ = ["ALPHA", "reference_findings"]

ALPHA = 1e-3
_TAIL = 0.01
# (statistic, words for below, words for above); None: that side is not a concern.
_CHECKS: tuple[tuple[str, str | None, str | None], ...] = (
    ("brightness", "darker", "brighter"),
    ("contrast", "lower in contrast", "higher in contrast"),
    ("noise", "smoother (blurred or upscaled?)", "noisier (compression, sensor noise?)"),
    ("colourfulness", "less colourful (grayscale?)", "more colourful"),
    ("gray_fraction", None, "more often grayscale"),
    ("height", "smaller", "larger"),
    ("width", "narrower", "wider"),
)


def reference_findings(
    reference: Any, rgb: Sequence[np.ndarray], base: Run, class_names: Sequence[str] | None
) -> tuple[list[Finding], dict[str, Any]]:
    """Findings where the images or the training pipeline's outputs differ from ``reference``."""
    findings: list[Finding] = []
    data: dict[str, Any] = {"reference_images": reference.n_images, "images": len(rgb)}
    n = len(rgb)
    if n == 0:
        return findings, data
    if reference.inputs and getattr(reference, "inputs_current", True):
        table = np.stack([stats.image_statistics(image) for image in rgb])
        findings += _input_findings(reference, table, data)
    elif reference.inputs:  # computed by another recipe of the input statistics: not comparable
        data["inputs"] = {"skipped": f"the profile's input statistics are recipe {reference.input_recipe}"}
    findings += _output_findings(reference, base, data)
    if not math.isclose(reference.score_threshold, base.threshold, abs_tol=1e-9):
        findings.append(
            Finding(
                code="outputs.reference",
                severity="info",
                subject="score_threshold",
                message=(
                    f"the reference profile was captured at score threshold {reference.score_threshold:g}, "
                    f"the training contract's is {base.threshold:g}"
                ),
                evidence="empty-rate comparisons use the reference's own threshold",
                fix="recapture the profile with `safepredict profile` on the validation images",
            )
        )
    return findings, data


def _input_findings(reference: Any, table: np.ndarray, data: dict[str, Any]) -> list[Finding]:
    inputs = reference.inputs
    n = table.shape[0]
    n_ref = inputs["brightness"].n
    rate = stats.tail_rate(_TAIL, n_ref)
    k_crit = stats.binomial_critical(n, rate, ALPHA)
    data["inputs"] = {"critical_count": k_crit, "tail_rate": round(rate, 4), "statistics": {}}
    findings = []
    for name, low_words, high_words in _CHECKS:
        summary = inputs.get(name)
        if summary is None or not summary.quantiles:
            continue
        column = table[:, stats.INPUT_STATS.index(name)]
        lo, hi = summary.quantile(_TAIL), summary.quantile(1 - _TAIL)
        below, above = int(np.count_nonzero(column < lo)), int(np.count_nonzero(column > hi))
        median = float(np.median(column))
        data["inputs"]["statistics"][name] = {
            "median": round(median, 3),
            "reference_range": [round(lo, 3), round(hi, 3)],
            "below": below,
            "above": above,
        }
        for words, count, side, bound in ((low_words, below, "below", lo), (high_words, above, "above", hi)):
            if words is None or count < k_crit:
                continue
            findings.append(
                Finding(
                    code="inputs.reference",
                    severity="warning",
                    subject=name,
                    message=f"the images are {words} than the validation images of the reference profile",
                    evidence=(
                        f"{count} of {n} image(s) have {name} {side} {bound:.3g}, the reference's "
                        f"{_TAIL:g}..{1 - _TAIL:g} quantile range being {lo:.3g}..{hi:.3g} over {n_ref} images "
                        f"(at most {k_crit - 1} expected by chance); median {median:.3g} against "
                        f"{summary.quantiles.get('0.5', summary.mean):.3g}"
                    ),
                    fix=(
                        "check how these images are captured and decoded (camera, resolution, compression, colour "
                        "conversion) against the validation images; a model only knows the images it was trained on"
                    ),
                    impact=round(count / n, 4),
                    data={"statistic": name, "side": side, "count": count, "images": n, "bound": bound},
                )
            )
    findings += _colour_finding(reference, table, data)
    return findings


def _colour_finding(reference: Any, table: np.ndarray, data: dict[str, Any]) -> list[Finding]:
    """Mean colour much nearer the reference's with red and blue swapped than the reference's own."""
    inputs = reference.inputs
    n = table.shape[0]
    rb = inputs.get("r_minus_b")
    if rb is None:
        return []
    ref_means = np.array([inputs["mean_r"].mean, inputs["mean_g"].mean, inputs["mean_b"].mean])
    means = table[:, stats.MEAN_R : stats.MEAN_B + 1].mean(axis=0)
    d_same = float(np.linalg.norm(means - ref_means))
    d_swap = float(np.linalg.norm(means - ref_means[::-1]))
    se = rb.std / math.sqrt(n) + 1e-3
    z = stats.z_for(ALPHA)
    data["inputs"]["colour"] = {
        "channel_means": [round(float(x), 2) for x in means],
        "reference_channel_means": [round(float(x), 2) for x in ref_means],
        "distance": round(d_same, 3),
        "distance_swapped": round(d_swap, 3),
    }
    if abs(rb.mean) < 2.0 * z * se or d_swap >= 0.5 * d_same:
        return []  # red and blue too alike in the reference for a swap to show, or no swap
    return [
        Finding(
            code="inputs.reference",
            severity="warning",
            subject="input_format",
            message="the images' mean colour matches the reference with red and blue swapped",
            evidence=(
                f"mean colour of these images R {means[0]:.0f}, G {means[1]:.0f}, B {means[2]:.0f}; reference "
                f"R {ref_means[0]:.0f}, G {ref_means[1]:.0f}, B {ref_means[2]:.0f} (distance {d_same:.1f}, "
                f"{d_swap:.1f} with red and blue swapped)"
            ),
            fix="the images are probably in the other channel order: see the channel-order probe",
            impact=round(min(1.0, (d_same - d_swap) / max(d_same, 1e-9)), 4),
        )
    ]


def _output_findings(reference: Any, base: Run, data: dict[str, Any]) -> list[Finding]:
    findings = []
    n = len(base.candidates)
    threshold = reference.score_threshold
    empty = sum(1 for i in range(n) if len(base.final(i, threshold)) == 0)
    ref_rate = stats.upper_rate(reference.n_empty, reference.n_images)
    p_empty = stats.binomial_upper_tail(empty, n, ref_rate)
    tops = base.top_scores()
    low_q = reference.max_score.quantiles.get("0.05")
    low = int(np.count_nonzero(tops < low_q)) if low_q is not None else 0
    p_low = stats.binomial_upper_tail(low, n, stats.tail_rate(0.05, reference.n_images)) if low_q is not None else 1.0
    ref_median = reference.max_score.quantiles.get("0.5", math.nan)
    data["outputs"] = {
        "empty": empty,
        "reference_empty_rate": round(reference.empty_rate, 4),
        "p_empty": p_empty,
        "below_reference_best_score_q05": low,
        "p_low": p_low,
        "median_best_score": round(float(np.median(tops)), 4) if n else None,
        "reference_median_best_score": ref_median,
    }
    if empty and p_empty < ALPHA:
        findings.append(
            Finding(
                code="outputs.reference",
                severity="warning",
                subject="empty_rate",
                message=(
                    f"{empty} of {n} image(s) have no detection, against {reference.empty_rate:.0%} in the reference"
                ),
                evidence=(
                    f"at threshold {threshold:g}: {empty} of {n} image(s) empty; the reference's empty rate is "
                    f"{reference.empty_rate:.1%} over {reference.n_images} images (p = {p_empty:.2g})"
                ),
                fix="look at the findings above: a preprocessing or input difference usually comes first",
                impact=round(empty / n, 4),
                data={"empty": empty, "images": n, "p_value": p_empty},
            )
        )
    if low and p_low < ALPHA:
        findings.append(
            Finding(
                code="outputs.reference",
                severity="warning",
                subject="scores",
                message="the model is much less confident on these images than on the reference's",
                evidence=(
                    f"{low} of {n} image(s) have a best score below {low_q:.3f}, the reference's 5 % quantile "
                    f"(p = {p_low:.2g}); median best score {float(np.median(tops)):.3f} against {ref_median:.3f}"
                ),
                fix="look at the findings above: a preprocessing or input difference usually comes first",
                impact=round(low / n, 4),
                data={"low": low, "images": n, "p_value": p_low},
            )
        )
    return findings
