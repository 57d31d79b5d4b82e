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
# After the named statistics, the vector holds a 5 × 5 opponent-colour histogram (see chroma_histogram).
CHROMA_SIDE = 5
CHROMA_BINS = CHROMA_SIDE * CHROMA_SIDE
CHROMA = slice(len(INPUT_STATS), len(INPUT_STATS) + CHROMA_BINS)
VECTOR_SIZE = len(INPUT_STATS) + CHROMA_BINS
_CHROMA_GRAY = (CHROMA_SIDE // 2) * CHROMA_SIDE + CHROMA_SIDE // 2  # the bin of R = G = B
BRIGHTNESS, CONTRAST, NOISE, COLOURFULNESS, GRAY_FRACTION, MEAN_R, MEAN_G, MEAN_B, HEIGHT, WIDTH = range(
    len(INPUT_STATS)
)


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601


def image_statistics(image: np.ndarray, grid: int = 64) -> np.ndarray:
    """The input statistics of one image, from a fixed strided grid of at most ``grid`` × ``grid`` pixels.

    ``image`` is ``H×W×3`` RGB (or ``H×W`` gray), normally uint8. Only basic slicing is used, so the
    cost does not grow with the image: the grid pixels are copied once into a planar float32 array,
    and the green values of their left and right neighbours are read for the high-frequency estimate.
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
    h, w, channels = arr.shape
    out = np.zeros(VECTOR_SIZE, dtype=np.float64)
    out[HEIGHT], out[WIDTH] = h, w
    if h == 0 or w == 0:
        return out
    # Ceiling division: at most grid × grid samples, whatever the image size.
    sy = max(1, -(-h // grid))
    wide = w >= 3
    sx = max(1, -(-(w - 2) // grid)) if wide else 1
    x0, x1 = (1, w - 1) if wide else (0, w)
    view = arr[::sy, x0:x1:sx]
    gy, gx = view.shape[:2]
    green = channels // 2  # green, or the only channel
    # One planar float32 copy (channel, pixel), each row contiguous so every reduction below is a
    # fast BLAS or contiguous loop; rows 3 and 4 hold the green of the left and right neighbours.
    # Every step below is one numpy call on at most 4096 values: the cost is the number of calls.
    planes = np.empty((channels + 2, gy, gx), dtype=np.float32)
    planes[:channels] = view.transpose(2, 0, 1)
    if wide:
        planes[channels] = arr[::sy, x0 - 1 : x1 - 1 : sx, green]
        planes[channels + 1] = arr[::sy, x0 + 1 : x1 + 1 : sx, green]
    flat = planes.reshape(channels + 2, -1)
    n = flat.shape[1]
    unit = ones(n)
    means = (flat[:channels] @ unit) / n
    g = flat[green]
    if channels == 3:
        lum = _LUMA @ flat[:3]
        brightness = float(_LUMA @ means)
    else:
        lum, brightness = g - np.float32(0.0), float(means[0])
    lum -= np.float32(brightness)
    out[BRIGHTNESS] = brightness
    out[CONTRAST] = math.sqrt(max(float(lum @ lum) / n, 0.0))
    if wide:
        # Horizontal second difference of green: noise raises it, blur lowers it. Divided by green's
        # spread, so a contrast change leaves it alone and a grayscale conversion (green replaced by
        # luminance) barely moves it.
        second = flat[channels] + flat[channels + 1]
        second -= g
        second -= g
        np.abs(second, out=second)
        g -= np.float32(means[green])  # the planes are ours: green is not needed as it was any more
        out[NOISE] = float(second @ unit) / n / (math.sqrt(float(g @ g) / n) + 1.0)
        g += np.float32(means[green])
    if channels == 3:
        opp = flat[0:3:2] - g  # R − G and B − G, one call
        out[CHROMA] = _opponent_histogram(opp)
        np.abs(opp, out=opp)  # |R − G| and |G − B|
        spread = opp @ unit
        out[COLOURFULNESS] = 0.5 * (float(spread[0]) + float(spread[1])) / n
        out[GRAY_FRACTION] = np.count_nonzero(np.maximum(opp[0], opp[1], out=opp[0]) <= 2.0) / n
        out[MEAN_R], out[MEAN_G], out[MEAN_B] = means
    else:
        out[GRAY_FRACTION] = 1.0
        out[MEAN_R] = out[MEAN_G] = out[MEAN_B] = means[0]
        out[len(INPUT_STATS) + _CHROMA_GRAY] = 1.0
    return out


_CHROMA_CODE = np.array([CHROMA_SIDE, 1], dtype=np.intp)


def _opponent_histogram(opp: np.ndarray, step: int = 4) -> np.ndarray:
    """:func:`chroma_histogram` of the opponent rows ``(R − G, B − G)``, every ``step``-th pixel."""
    q = opp[:, ::step] * np.float32(1.0 / 32.0)
    q += np.float32(2.5)
    np.maximum(q, 0.0, out=q)
    np.minimum(q, CHROMA_SIDE - 0.5, out=q)
    codes = _CHROMA_CODE @ q.astype(np.intp)
    return np.bincount(codes, minlength=CHROMA_BINS) / codes.size


def chroma_histogram(flat: np.ndarray, step: int = 4) -> np.ndarray:
    """Proportions of pixels over a 5 × 5 grid of opponent colours (R − G) × (B − G), row-major.

    ``flat`` holds the R, G and B rows of the sampled pixels. Each axis has bins < −48, −48..−16,
    −16..16, 16..48, ≥ 48 levels. Swapping red and blue swaps the two axes, so the histogram of a
    BGR image is the transpose of its RGB histogram: the reference's transpose is what a swapped
    stream would look like, at no extra cost. Every ``step``-th pixel is used (about 1000): colour
    is a population property of the window.
    """
    return _opponent_histogram(flat[0:3:2] - flat[1], step)


def swap_chroma(hist: np.ndarray) -> np.ndarray:
    """The opponent-colour histogram of the same pixels with red and blue swapped (the transpose)."""
    return np.asarray(hist).reshape(CHROMA_SIDE, CHROMA_SIDE).T.reshape(-1)


# The bin each opponent-colour bin becomes when red and blue are swapped.
_SWAPPED_BIN = np.arange(CHROMA_BINS).reshape(CHROMA_SIDE, CHROMA_SIDE).T.reshape(-1)
# A vote divides by the image's pixels in telling colours plus this share, so an image with only a
# few such pixels votes little.
VOTE_PIXELS = 0.01


def colour_weights(mean: np.ndarray, std: np.ndarray, n: int, z_min: float = 3.0) -> np.ndarray:
    """The colour vote's weight per opponent-colour bin, from a reference's per-image histograms.

    -1 for a colour the reference clearly has more often than its red/blue swap (yellow, where the
    swap makes cyan), +1 for the swapped colour, 0 for the rest: the bin's share must differ from
    its swapped bin's by ``z_min`` standard errors of the reference's mean and be at least twice
    as large. The weights are antisymmetric under the swap, so an image's vote flips sign exactly
    when its red and blue are swapped.
    """
    q = np.asarray(mean, dtype=np.float64)
    var = np.square(np.asarray(std, dtype=np.float64))
    q_swapped, var_swapped = q[_SWAPPED_BIN], var[_SWAPPED_BIN]
    z = (q - q_swapped) / np.sqrt((var + var_swapped) / max(n, 1) + 1e-12)
    high, low = np.maximum(q, q_swapped), np.minimum(q, q_swapped)
    telling = (np.abs(z) >= z_min) & (high >= 2.0 * low) & (high >= 1e-3)
    return np.where(telling, -np.sign(z), 0.0)


def colour_votes(chroma: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each image's colour vote in [-1, 1]: -1 its telling colours are the reference's, +1 their swap's.

    ``chroma`` holds one opponent-colour histogram per row. An image without telling colours
    (grayscale, or none of the colours that tell) votes 0.
    """
    return (chroma @ weights) / (chroma @ np.abs(weights) + VOTE_PIXELS)


def share_psi(p: np.ndarray, q: np.ndarray, n_p: float, n_q: float) -> float:
    """PSI of two class-share vectors, both smoothed with the pseudo-count of the smaller sample.

    Smoothing each side by its own size would make two samples of one distribution differ in
    every empty class; one pseudo-count keeps that bias out of the comparison.
    """
    n = max(min(n_p, n_q), 1.0)
    a, b = smoothed(np.asarray(p), n), smoothed(np.asarray(q), n)
    return psi_smoothed(a, b, np.log(b))


@lru_cache(maxsize=64)
def ones(n: int) -> np.ndarray:
    """A cached float32 vector of ones: ``ones(n) @ table`` is a fast column sum (BLAS)."""
    return np.ones(n, dtype=np.float32)


def score_edges(n_bins: int) -> np.ndarray:
    """Fixed, equal-width score bins over [0, 1]; a score of exactly 1 falls in the last bin."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def score_histogram(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts of finite ``scores`` in ``n_bins`` equal bins over [0, 1] (out-of-range scores are clipped)."""
    idx = (scores * n_bins).astype(np.intp)
    np.clip(idx, 0, n_bins - 1, out=idx)
    return np.bincount(idx, minlength=n_bins)


def smoothed(proportions: np.ndarray, n: float) -> np.ndarray:
    """Proportions from a sample of size ``n`` with half a pseudo-observation added to every bin.

    An empty bin then gives PSI a finite, small-sample-aware contribution instead of infinity.
    """
    k = len(proportions)
    scale = n / (n + 0.5 * k)
    return np.asarray(proportions, dtype=np.float64) * scale + (0.5 / (n + 0.5 * k))


def psi_smoothed(p: np.ndarray, q: np.ndarray, log_q: np.ndarray) -> float:
    """PSI of smoothed proportions ``p`` against smoothed ``q`` (``log_q`` precomputed: q is the reference)."""
    return float((p - q) @ (np.log(p) - log_q))


def psi(observed: np.ndarray, expected: np.ndarray, n_observed: float, n_expected: float) -> float:
    """Population stability index of two distributions given as proportions over the same bins.

    ``sum((p - q) * ln(p / q))`` after smoothing each side by its sample size (:func:`smoothed`).
    """
    q = smoothed(expected, n_expected)
    return psi_smoothed(smoothed(observed, n_observed), q, np.log(q))


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
