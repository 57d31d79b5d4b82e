"""The monitor's input window: per-image input statistics of the last images, against the reference.

Each image's statistics (:func:`safepredict.monitor.stats.image_statistics`: brightness, contrast,
noise, grayscale, size, channel means, the opponent-colour histogram) fill one row of a ring
buffer; every ``check_every`` images the window is tested against the reference profile's ranges
of the same statistics, and for the signatures of red and blue swapped. The output checks and the
rate limit stay in :class:`~safepredict.monitor.monitor.Monitor`, which owns this window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from safepredict.findings import Finding
from safepredict.monitor import stats
from safepredict.monitor.config import MonitorConfig
from safepredict.monitor.profile import ReferenceProfile

__all__ = ["InputWindow"]

# (statistic index, code, words for "low", words for "high"); None: that side is not watched.
_INPUT_CHECKS: tuple[tuple[int, str, str | None, str | None], ...] = (
    (stats.BRIGHTNESS, "monitor.input_brightness", "darker", "brighter"),
    (stats.CONTRAST, "monitor.input_contrast", "lower in contrast", "higher in contrast"),
    (stats.NOISE, "monitor.input_noise", "smoother (blurred or upscaled?)", "noisier"),
    (stats.GRAY_FRACTION, "monitor.input_grayscale", None, "more often grayscale (equal channels)"),
    (stats.HEIGHT, "monitor.input_size", "smaller", "larger"),
    (stats.WIDTH, "monitor.input_size", "narrower", "wider"),
)


class InputWindow:
    """The input statistics of the last ``config.input_window`` images and their tests against ``reference``.

    Not thread-safe by itself: the Monitor calls it under its lock.
    """

    def __init__(self, reference: ReferenceProfile | None, config: MonitorConfig) -> None:
        self.config = config
        self.reference = reference
        self.table = np.zeros((config.input_window, stats.VECTOR_SIZE), dtype=np.float64)
        self.filled = 0
        self.images = 0  # cumulative, for the Monitor's snapshot
        self._pos = 0
        self._z = stats.z_for(config.alpha)
        self._limits = _input_limits(reference, config) if reference is not None and reference.inputs else None

    def add(self, vec: np.ndarray) -> None:
        """Record one image's statistics vector."""
        self.table[self._pos] = vec
        self._pos = (self._pos + 1) % self.config.input_window
        self.filled = min(self.filled + 1, self.config.input_window)
        self.images += 1

    @property
    def testable(self) -> bool:
        """Whether the window can be tested: a reference with input statistics, and enough images."""
        return self._limits is not None and self.filled >= self.config.min_input_window

    def check(self, out: list[Finding], may_fire: Callable[[str], bool]) -> None:
        """Test the window against the reference; findings go to ``out``, each code passing ``may_fire`` first."""
        limits = self._limits
        assert limits is not None and self.reference is not None and self.reference.inputs is not None
        cfg = self.config
        n = self.filled
        table = self.table[:n]
        named = table[:, : len(stats.INPUT_STATS)]
        below = np.count_nonzero(named < limits.lo, axis=0)
        above = np.count_nonzero(named > limits.hi, axis=0)
        k_crit = stats.binomial_critical(n, limits.tail_rate, cfg.alpha)
        for index, code, low_words, high_words in _INPUT_CHECKS:
            name = stats.INPUT_STATS[index]
            for side, words, k, bound in (
                ("low", low_words, int(below[index]), limits.lo[index]),
                ("high", high_words, int(above[index]), limits.hi[index]),
            ):
                if words is None or k < k_crit:
                    continue
                if code == "monitor.input_grayscale" and limits.hi[index] > cfg.max_reference_gray:
                    continue  # the reference itself holds grayscale images: nothing to compare against
                if not may_fire(code):
                    continue
                ref = self.reference.inputs[name]
                median = float(np.median(table[:, index]))
                out.append(
                    Finding(
                        code,
                        f"inputs are {words} than the reference: {k} of the last {n} images have {name} "
                        f"{'below' if side == 'low' else 'above'} {bound:.3g} (the reference's "
                        f"{cfg.input_tail:g}..{1 - cfg.input_tail:g} quantile range is "
                        f"{limits.lo[index]:.3g}..{limits.hi[index]:.3g}, at most {k_crit - 1} expected by chance); "
                        f"median {median:.3g} against {ref.quantiles.get('0.5', ref.mean):.3g}",
                        "warning",
                        {
                            "statistic": name,
                            "side": side,
                            "count": k,
                            "window": n,
                            "critical_count": k_crit,
                            "bound": bound,
                            "median": median,
                            "reference_median": ref.quantiles.get("0.5"),
                        },
                    )
                )
        self._check_channel_order(out, table, may_fire)

    def _check_channel_order(self, out: list[Finding], table: np.ndarray, may_fire: Callable[[str], bool]) -> None:
        """Two signatures of red and blue swapped; either fires the finding.

        The channel means: the window's mean of (R − B) sits near the reference's negated. The
        colour histogram: the window's opponent-colour histogram is much closer to the transpose of
        the reference's (what a swap produces) than to the reference's, which also catches data sets
        whose red and blue balance out on average (red and blue objects, yellow turning cyan).
        """
        limits = self._limits
        assert limits is not None
        n = table.shape[0]
        evidence: dict[str, Any] = {"window": n}
        by_means = self._swap_by_means(table, evidence)
        by_colours = self._swap_by_colours(table, evidence)
        if not (by_means or by_colours) or not may_fire("monitor.input_channel_order"):
            return
        means, ref = evidence["channel_means"], evidence["reference_channel_means"]
        signs = " and ".join(
            w for w, hit in (("the mean colour", by_means), ("the colour histogram", by_colours)) if hit
        )
        out.append(
            Finding(
                "monitor.input_channel_order",
                f"{signs} of the last {n} images (mean R {means[0]:.0f}, G {means[1]:.0f}, B {means[2]:.0f}) "
                f"is much closer to the reference's with red and blue swapped than to the reference's "
                f"(R {ref[0]:.0f}, G {ref[1]:.0f}, B {ref[2]:.0f}): the images are probably BGR where RGB is expected",
                "warning",
                evidence,
            )
        )

    def _swap_by_means(self, table: np.ndarray, evidence: dict[str, Any]) -> bool:
        limits = self._limits
        assert limits is not None
        ratio = self.config.channel_order_ratio
        n = table.shape[0]
        means = table[:, stats.MEAN_R : stats.MEAN_B + 1].mean(axis=0)
        ref = limits.channel_means
        d_same = float(np.linalg.norm(means - ref))
        d_swap = float(np.linalg.norm(means - ref[::-1]))
        evidence.update(
            channel_means=[float(x) for x in means],
            reference_channel_means=[float(x) for x in ref],
            distance=d_same,
            distance_swapped=d_swap,
        )
        d = float(means[0] - means[2])
        delta, spread = limits.r_minus_b
        se = spread / math.sqrt(n) + 1e-3
        if abs(delta) < 2.0 * self._z * se:
            return False  # the reference's mean red and blue are too alike for a swap to show
        if abs(d - delta) / se < self._z or abs(d + delta) >= ratio * abs(d - delta):
            return False
        return d_swap < ratio * d_same

    def _swap_by_colours(self, table: np.ndarray, evidence: dict[str, Any]) -> bool:
        limits = self._limits
        assert limits is not None
        if limits.chroma is None:
            return False
        cfg = self.config
        n = table.shape[0]
        window = stats.smoothed(table[:, stats.CHROMA].mean(axis=0), n)
        q, log_q, q_swapped, log_q_swapped = limits.chroma
        psi_same = stats.psi_smoothed(window, q, log_q)
        psi_swapped = stats.psi_smoothed(window, q_swapped, log_q_swapped)
        noise = limits.chroma_noise * (1.0 / n + 1.0 / limits.n_reference)
        evidence.update(
            colour_psi=psi_same,
            colour_psi_swapped=psi_swapped,
            colour_psi_noise=noise,
            colour_reference_asymmetry=limits.chroma_asymmetry,
        )
        # The reference must look unlike its own swap (else a swap cannot show), the window unlike
        # the reference, both well above the sampling noise, and the window much closer to the
        # swapped reference than to the reference.
        floor = cfg.colour_noise_factor * noise
        return limits.chroma_asymmetry > floor and psi_same > floor and psi_swapped < cfg.channel_order_ratio * psi_same


class _InputLimits:
    """The reference's per-statistic bounds, precomputed as vectors for the input tests."""

    def __init__(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        tail_rate: float,
        r_minus_b: tuple[float, float],
        means: np.ndarray,
        chroma: tuple[float, ...] | None,
        chroma_std: tuple[float, ...] | None,
        n_reference: int,
    ):
        self.lo, self.hi, self.tail_rate, self.r_minus_b, self.channel_means = lo, hi, tail_rate, r_minus_b, means
        self.n_reference = n_reference
        self.chroma: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.chroma_asymmetry = 0.0
        self.chroma_noise = 0.0
        if chroma is not None and chroma_std is not None:
            q = stats.smoothed(np.asarray(chroma), n_reference)
            q_swapped = stats.swap_chroma(q)
            self.chroma = (q, np.log(q), q_swapped, np.log(q_swapped))
            # How unlike its own swap the reference is.
            self.chroma_asymmetry = stats.psi_smoothed(q_swapped, q, np.log(q))
            # For small differences PSI ≈ Σ (w − r)² / r, and the window and reference means of a bin
            # each vary as (per-image variance) / (their image count): so PSI between two healthy
            # samples is about chroma_noise × (1/n_window + 1/n_reference).
            self.chroma_noise = float(np.sum(np.square(chroma_std) / q))


def _input_limits(ref: ReferenceProfile, cfg: MonitorConfig) -> _InputLimits | None:
    inputs = ref.inputs
    assert inputs is not None
    q_lo, q_hi = cfg.input_tail, 1.0 - cfg.input_tail
    available = {float(k) for k in inputs["brightness"].quantiles}
    if q_lo not in available or q_hi not in available:
        raise ValueError(f"input_tail {q_lo} is not a stored quantile; use one of {sorted(available)}")
    lo = np.array([inputs[name].quantile(q_lo) for name in stats.INPUT_STATS])
    hi = np.array([inputs[name].quantile(q_hi) for name in stats.INPUT_STATS])
    n_ref = inputs["brightness"].n
    rb = inputs["r_minus_b"]
    means = np.array([inputs["mean_r"].mean, inputs["mean_g"].mean, inputs["mean_b"].mean])
    return _InputLimits(
        lo,
        hi,
        stats.tail_rate(cfg.input_tail, n_ref),
        (rb.mean, rb.std),
        means,
        ref.chroma_hist,
        ref.chroma_std,
        n_ref,
    )
