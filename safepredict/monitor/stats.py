"""Cheap statistics shared by the reference profile and the monitor, and the tests run on them.

Everything here is numpy only. The profile and the monitor compute the same numbers with the same
functions, so a drift can only come from the data, never from two implementations disagreeing.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from safepredict.errors import InputError

# Per-image input statistics, in the order of the vector image_statistics() returns.
INPUT_STATS: tuple[str, ...] = (
    "brightness",  # mean luminance (BT.601 weights), 0..255
    "contrast",  # standard deviation of luminance
    "noise",  # mean |Laplacian| of green over (std of green + 1): high-frequency share, contrast-invariant
    "colourfulness",  # mean (|R-G| + |G-B|) / 2; 0 for a grayscale image
    "gray_fraction",  # share of sampled pixels whose channels differ by at most 2 levels
    "mean_r",
    "mean_g",
    "mean_b",
    "height",
    "width",
)
BRIGHTNESS, CONTRAST, NOISE, COLOURFULNESS, GRAY_FRACTION, MEAN_R, MEAN_G, MEAN_B, HEIGHT, WIDTH = range(
    len(INPUT_STATS)
)


def image_statistics(image: np.ndarray, grid: int = 64) -> np.ndarray:
    """The input statistics of one image, from a fixed strided grid of about ``grid`` × ``grid`` pixels.

    ``image`` is ``H×W×3`` RGB (or ``H×W`` gray), normally uint8. Only basic slicing is used (views,
    no gathers), so the cost does not grow with the image: about ``grid²`` pixels are read five times
    (the centre pixels and their four neighbours, for the Laplacian).
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise InputError(
            f"the monitor expects an H×W×3 RGB image, got shape {arr.shape}",
            expected="H×W×3",
            found=arr.shape,
        )
    h, w = arr.shape[:2]
    out = np.zeros(len(INPUT_STATS), dtype=np.float64)
    out[HEIGHT], out[WIDTH] = h, w
    if h == 0 or w == 0:
        return out
    if h < 3 or w < 3:
        centre = arr.astype(np.float32)
        lap = None
    else:
        sy = max(1, (h - 2) // grid)
        sx = max(1, (w - 2) // grid)
        centre = arr[1 : h - 1 : sy, 1 : w - 1 : sx].astype(np.float32)
        g = arr.shape[2] // 2  # green, or the only channel
        lap = (
            4.0 * centre[:, :, g]
            - arr[0 : h - 2 : sy, 1 : w - 1 : sx, g]
            - arr[2:h:sy, 1 : w - 1 : sx, g]
            - arr[1 : h - 1 : sy, 0 : w - 2 : sx, g]
            - arr[1 : h - 1 : sy, 2:w:sx, g]
        )
    if centre.shape[2] == 1:
        r = gg = b = centre[:, :, 0]
    else:
        r, gg, b = centre[:, :, 0], centre[:, :, 1], centre[:, :, 2]
    lum = 0.299 * r + 0.587 * gg + 0.114 * b
    out[BRIGHTNESS] = lum.mean()
    out[CONTRAST] = lum.std()
    # Normalised by the spread of the same channel, so contrast changes leave it alone and a grayscale
    # conversion (green replaced by luminance) barely moves it; noise raises it, blur lowers it.
    out[NOISE] = 0.0 if lap is None else float(np.abs(lap).mean()) / (float(gg.std()) + 1.0)
    if centre.shape[2] == 3:
        rg, gb = np.abs(r - gg), np.abs(gg - b)
        out[COLOURFULNESS] = 0.5 * (rg.mean() + gb.mean())
        out[GRAY_FRACTION] = np.count_nonzero(np.maximum(rg, gb) <= 2.0) / rg.size
    else:
        out[GRAY_FRACTION] = 1.0
    out[MEAN_R], out[MEAN_G], out[MEAN_B] = r.mean(), gg.mean(), b.mean()
    return out


def score_edges(n_bins: int) -> np.ndarray:
    """Fixed, equal-width score bins over [0, 1]; a score of exactly 1 falls in the last bin."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def score_histogram(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts of finite ``scores`` in ``n_bins`` equal bins over [0, 1] (out-of-range scores are clipped)."""
    idx = (scores * n_bins).astype(np.intp)
    np.clip(idx, 0, n_bins - 1, out=idx)
    return np.bincount(idx, minlength=n_bins)


def psi(observed: np.ndarray, expected: np.ndarray, n_observed: float, n_expected: float) -> float:
    """Population stability index of two distributions given as proportions over the same bins.

    Each side is smoothed with half a pseudo-observation per bin (its sample size is ``n_*``), so an
    empty bin gives a finite, small-sample-aware contribution instead of infinity.
    """
    k = len(observed)
    p = (np.asarray(observed, dtype=np.float64) * n_observed + 0.5) / (n_observed + 0.5 * k)
    q = (np.asarray(expected, dtype=np.float64) * n_expected + 0.5) / (n_expected + 0.5 * k)
    return float(np.sum((p - q) * np.log(p / q)))


def js_divergence(observed: np.ndarray, expected: np.ndarray) -> float:
    """Jensen-Shannon divergence (natural log, 0..ln 2) of two proportion vectors; reported as evidence."""
    p = np.asarray(observed, dtype=np.float64)
    q = np.asarray(expected, dtype=np.float64)
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(0.5 * kl_p.sum() + 0.5 * kl_q.sum())


def z_for(alpha: float) -> float:
    """The one-sided standard-normal quantile whose upper tail is ``alpha``."""
    return NormalDist().inv_cdf(1.0 - alpha)


@lru_cache(maxsize=256)
def chi2_quantile(df: int, alpha: float) -> float:
    """Upper ``alpha`` quantile of chi-square with ``df`` degrees of freedom (Wilson–Hilferty)."""
    z = z_for(alpha)
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def psi_critical(n_bins: int, n_observed: float, n_expected: float, alpha: float, floor: float) -> float:
    """PSI above which two samples of these sizes differ beyond chance.

    For samples from one distribution, ``PSI × n_eff`` is approximately chi-square with
    ``n_bins - 1`` degrees of freedom, ``n_eff = 1 / (1/n_observed + 1/n_expected)``. The critical
    value is never below ``floor`` (the conventional 0.25 "significant shift"), so a large window does
    not make negligible shifts alarming.
    """
    n_eff = 1.0 / (1.0 / max(n_observed, 1.0) + 1.0 / max(n_expected, 1.0))
    return max(floor, chi2_quantile(max(n_bins - 1, 1), alpha) / n_eff)


@lru_cache(maxsize=4096)
def binomial_critical(n: int, p: float, alpha: float) -> int:
    """The smallest ``k`` with ``P(X >= k) <= alpha`` for ``X ~ Binomial(n, p)``; ``n + 1`` if none.

    Computed exactly in log space (no scipy); cached because a full window always asks for the same n.
    """
    if p <= 0.0:
        return 1
    if p >= 1.0:
        return n + 1
    log_p, log_q = math.log(p), math.log1p(-p)
    log_pmf = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        for k in range(n + 1)
    ]
    tail = 0.0
    for k in range(n, -1, -1):
        tail += math.exp(log_pmf[k])
        if tail > alpha:
            return k + 1
    return 0


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``; evidence for a finding, computed only when one fires."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for j in range(k, n + 1):
        total += math.exp(
            math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q
        )
    return min(1.0, total)


def upper_rate(successes: int, trials: int, z: float = 3.0) -> float:
    """A generous upper bound on a rate estimated from a finite reference (Agresti–Coull, ``z`` sigmas).

    Drift tests compare against this rather than the point estimate, so a reference of a few hundred
    images does not make ordinary sampling noise in the reference itself look like drift.
    """
    if trials <= 0:
        return 1.0
    n = trials + z * z
    centre = (successes + z * z / 2.0) / n
    return min(1.0, centre + z * math.sqrt(centre * (1.0 - centre) / n))


def tail_rate(q: float, n_reference: int) -> float:
    """The rate at which healthy images fall beyond a reference's empirical ``q`` quantile, generously.

    The empirical quantile of ``n`` values is itself uncertain (its exceedance probability has
    standard deviation ``sqrt(q(1-q)/n)``); three of those, plus one observation, are added.
    """
    n = max(n_reference, 1)
    return min(1.0, q + 3.0 * math.sqrt(q * (1.0 - q) / n) + 1.0 / (n + 1))
