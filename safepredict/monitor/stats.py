"""Cheap statistics shared by the reference profile and the monitor, and the tests run on them.

Everything here is numpy only. The profile and the monitor compute the same numbers with the same
functions, so a drift can only come from the data, never from two implementations disagreeing.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist
from typing import Any

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
# After the named statistics, the vector holds a 5 × 5 opponent-colour histogram (see GridBatch).
CHROMA_SIDE = 5
CHROMA_BINS = CHROMA_SIDE * CHROMA_SIDE
CHROMA = slice(len(INPUT_STATS), len(INPUT_STATS) + CHROMA_BINS)
VECTOR_SIZE = len(INPUT_STATS) + CHROMA_BINS
_CHROMA_GRAY = (CHROMA_SIDE // 2) * CHROMA_SIDE + CHROMA_SIDE // 2  # the bin of R = G = B
BRIGHTNESS, CONTRAST, NOISE, COLOURFULNESS, GRAY_FRACTION, MEAN_R, MEAN_G, MEAN_B, HEIGHT, WIDTH = range(
    len(INPUT_STATS)
)

# What the input statistics are: bump INPUT_RECIPE when the numbers image_statistics gives change.
# A profile records the recipe and grid of its input part; a monitor or diagnose compares images with
# that part only when both match (inputs_comparable), so an older profile is never compared unlike.
INPUT_RECIPE = 2  # 2: a 24 × 24 grid, the opponent colours of every grid pixel, one pass over a batch
INPUT_GRID = 24
# A profile that records no recipe was written by recipe 1: a 64 × 64 grid, colours of every 4th pixel.
LEGACY_INPUT_RECIPE, LEGACY_INPUT_GRID = 1, 64

_LUMA = (0.299, 0.587, 0.114)  # BT.601
# Each grid pixel is gathered as the 8 bytes that start at its left neighbour:
# R G B of the left neighbour, R G B of the pixel, R G of the right neighbour.
_LEFT_G, _R, _G, _B, _RIGHT_G = 1, 3, 4, 5, 7
# A pixel's opponent colours in one byte: 7 × class(R − G) + class(B − G), each difference in 7 classes,
# < −48, −48..−17, −16..−3, −2..2, 3..15, 16..47, ≥ 48 levels: the 5 histogram bins of each axis, the
# middle one split so that class 3 on both axes is a gray pixel (both differences within 2 levels).
_CLASSES = 7
_CLASS_BIN = (0, 1, 2, 2, 2, 3, 4)  # class -> histogram bin of that axis
_GRAY_CODE = 3 * _CLASSES + 3
_CLIP = 64  # differences are clipped to −64..63 (+64: one byte); no class boundary lies beyond


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class look-up tables (clipped difference + 64 -> 7 × class, -> class) and the code -> bin matrix."""
    d = np.arange(256) - _CLIP
    cls = np.searchsorted(np.array([-48, -16, -2, 3, 16, 48]), d, side="right").astype(np.uint8)
    cls[d >= _CLIP] = 0  # unused entries
    to_bins = np.zeros((_CLASSES * _CLASSES, CHROMA_BINS + 1), dtype=np.float64)
    for c1 in range(_CLASSES):
        for c2 in range(_CLASSES):
            to_bins[_CLASSES * c1 + c2, CHROMA_SIDE * _CLASS_BIN[c1] + _CLASS_BIN[c2]] = 1.0
    to_bins[_GRAY_CODE, CHROMA_BINS] = 1.0  # the last column counts the gray pixels
    return (_CLASSES * cls).astype(np.uint8), cls, to_bins


class GridBatch:
    """Grids of pixels gathered from images one at a time; their statistics computed together.

    ``add`` copies one image's grid, at most ``grid`` × ``grid`` pixels on a fixed stride, each with
    its left and right neighbours, into a fixed buffer: for a C-contiguous RGB uint8 image that is
    one strided copy of 8 bytes per grid pixel, whatever the image size. ``compute`` turns every
    gathered grid into its statistics vector in one pass of OpenCV's vectorised routines over the
    whole batch (one image per row): a numpy or OpenCV call costs about a microsecond whatever its
    size, paid here once per batch, not once per image.

    The statistics of one image (:data:`INPUT_STATS`, then the opponent-colour histogram): mean
    luminance and its standard deviation; the mean absolute horizontal second difference of green
    over green's standard deviation + 1 (noise raises it, blur lowers it, a contrast change leaves it
    alone); the mean of (|R − G| + |B − G|) / 2; the share of pixels whose channels differ by at most
    2 levels; the channel means; the size; the shares of pixels over a 5 × 5 grid of opponent colours
    (R − G) × (B − G), rows R − G, each axis < −48, −48..−16, −16..16, 16..48, ≥ 48 levels. Swapping
    red and blue swaps the histogram's axes: the reference's transpose is what a swapped stream would
    look like, at no extra cost.

    Not thread-safe: the Monitor calls it under its lock.
    """

    def __init__(self, capacity: int, grid: int = INPUT_GRID) -> None:
        if capacity < 1 or capacity > 255 or grid < 2:
            raise ValueError(f"a grid batch needs 1 <= capacity <= 255 and grid >= 2, got {capacity} and {grid}")
        self.capacity = capacity
        self.grid = grid
        self._cells = grid * grid
        self._words = np.zeros((capacity, self._cells), dtype="<u8")
        self._sizes: list[tuple[int, int, int]] = []  # height, width, grid pixels (negative: too narrow)
        # Image shape -> each slot's target view, the gather's strides and the image's sizes.
        self._known: dict[tuple[int, ...], tuple[list[np.ndarray], tuple[int, int], tuple[int, int, int]]] = {}
        self._extent = [0] * capacity  # how far each slot holds data (the rest is zero)
        self._work: tuple[list[np.ndarray], list[np.ndarray]] | None = None
        self._work16: np.ndarray | None = None
        self._planes = np.empty((8, capacity * self._cells), np.uint8)  # a full batch's bytes, plane by plane
        self._rows = np.empty((0, 0), np.uint8)

    @property
    def count(self) -> int:
        return len(self._sizes)

    @property
    def full(self) -> bool:
        return len(self._sizes) == self.capacity

    def add(self, image: Any) -> None:
        """Gather one image's grid (``H×W×3`` RGB or ``H×W`` gray); an InputError if it has another shape."""
        sizes = self._sizes
        k = len(sizes)
        if k == self.capacity:
            raise ValueError("the grid batch is full: compute() it first")
        # The hot path, for a C-contiguous RGB uint8 image of a shape seen before: one strided copy.
        known = self._known.get(image.shape) if type(image) is np.ndarray and image.dtype == np.uint8 else None
        if known is not None and image.flags.c_contiguous:
            targets, strides, size = known
            target = targets[k]
            if size[2] < self._extent[k]:
                self._words[k, size[2] : self._extent[k]] = 0
            self._extent[k] = size[2]
            target[...] = np.ndarray(target.shape, "<u8", image, 0, strides)
            sizes.append(size)
            return
        self._add_any(image, k)

    def _add_any(self, image: Any, k: int) -> None:
        arr = np.asarray(image)
        direct = arr.ndim == 3 and arr.shape[2] == 3 and arr.shape[1] >= 3 and arr.dtype == np.uint8
        if direct and arr.flags.c_contiguous:
            h, w, src = arr.shape[0], arr.shape[1], arr
        else:
            h, w, src = _rgb_rows(arr, self.grid)
        slot = self._words[k]
        if h == 0 or w == 0:
            slot[:] = 0
            self._extent[k] = 0
            self._sizes.append((h, w, 0))
            return
        row_stride, gy, col_stride, gx = _grid_geometry(h, src.shape[1], self.grid, src.strides[0], src is arr)
        n = gy * gx
        targets = [self._words[i, :n].reshape(gy, gx) for i in range(self.capacity)]
        size = (h, w, n if w >= 3 else -n)  # negative: too narrow for the second difference
        if src is arr:  # remember the shape: the next image like it takes the hot path
            if len(self._known) >= 16:  # a stream of ever-new sizes: keep the memory bounded
                self._known.clear()
            self._known[arr.shape] = (targets, (row_stride, col_stride), size)
        slot[n:] = 0
        self._extent[k] = n
        targets[k][...] = np.ndarray((gy, gx), "<u8", src, 0, (row_stride, col_stride))
        self._sizes.append(size)

    def _scratch(self, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Work planes for ``k`` images, allocated once: OpenCV then writes into them instead of allocating."""
        if self._work is None:
            shape = (self.capacity, self._cells)
            self._work = [np.empty(shape, np.uint8) for _ in range(3)], [np.empty(shape, np.float32) for _ in range(4)]
            # Each cell's image (row) index, the second axis of the per-image histograms.
            self._rows = np.repeat(np.arange(self.capacity, dtype=np.uint8), self._cells).reshape(shape)
        u8, f32 = self._work
        return [a[:k] for a in u8], [a[:k] for a in f32]

    def _scratch16(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Two 16-bit work planes for ``k`` images, allocated once."""
        if self._work16 is None:
            self._work16 = np.empty((2, self.capacity, self._cells), np.int16)
        return self._work16[0, :k], self._work16[1, :k]

    def compute(self) -> np.ndarray:
        """The statistics vectors of the images gathered since the last call, one row each; empties the batch."""
        import cv2 as _cv2  # a dependency; imported here so that importing the monitor stays light

        cv2: Any = _cv2  # its stubs know no scalar operands

        k, cells = len(self._sizes), self._cells
        out = np.zeros((k, VECTOR_SIZE), dtype=np.float64)
        if not k:
            return out
        sizes = np.array(self._sizes, dtype=np.float64)
        self._sizes = []
        times_seven, classes, to_bins = _tables()
        u8, f32 = self._scratch(k)
        t1, t2, t3 = u8
        # One transpose makes each of the 8 bytes of every gathered pixel a plane: one image per row.
        pixels = self._words[:k].view(np.uint8).reshape(k * cells, 8)
        planes = cv2.transpose(pixels, self._planes) if k == self.capacity else cv2.transpose(pixels)
        left, red, green, blue, right = (planes[c].reshape(k, cells) for c in (_LEFT_G, _R, _G, _B, _RIGHT_G))

        def row_sums(plane: np.ndarray) -> np.ndarray:  # uint8 -> int32 per image: OpenCV's fast case
            return cv2.reduce(plane, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0].astype(np.float64)

        def row_sums_f(plane: np.ndarray) -> np.ndarray:
            return cv2.reduce(plane, 1, cv2.REDUCE_SUM, dtype=cv2.CV_64F)[:, 0]

        means = np.stack([row_sums(red), row_sums(green), row_sums(blue)], axis=1)
        spread = row_sums(cv2.absdiff(red, green, t1)) + row_sums(cv2.absdiff(blue, green, t1))
        # Each difference clipped to −64..63 and shifted by 64, in saturating uint8 arithmetic: one of
        # (R − G)+ and (G − R)+ is 0, so 64 + (R − G)+ − (G − R)+ is the difference shifted, floored at 0.
        for a, b, code in ((red, green, t2), (blue, green, t3)):
            cv2.add(cv2.subtract(a, b, t1), 64, t1)
            cv2.subtract(t1, cv2.subtract(b, a, code), t1)
            cv2.LUT(cv2.min(t1, 2 * _CLIP - 1, t1), times_seven if code is t2 else classes, code)
        code = cv2.add(t2, t3, t1)
        hist = cv2.calcHist([code, self._rows[:k]], [0, 1], None, [_CLASSES**2, k], [0, _CLASSES**2, 0, k])
        bins = hist.T.astype(np.float64) @ to_bins  # (k, 25 bins + gray)
        g, lum, f1, f2 = f32
        s1, s2 = self._scratch16(k)
        # |left + right - 2 green| in int16 and summed as integers: exact, as the float32 pass was.
        cv2.add(left, right, s1, dtype=cv2.CV_16S)
        cv2.add(green, green, s2, dtype=cv2.CV_16S)
        noise_sum = cv2.absdiff(s1, s2, s1).sum(axis=1, dtype=np.int64).astype(np.float64)
        np.copyto(g, green)
        np.copyto(f1, red)
        np.copyto(f2, blue)
        cv2.scaleAdd(f2, _LUMA[2], cv2.addWeighted(f1, _LUMA[0], g, _LUMA[1], 0.0, lum), lum)
        sum_lum2 = row_sums_f(cv2.multiply(lum, lum, f1))
        sum_g2 = row_sums_f(cv2.multiply(g, g, f2))

        signed = sizes[:, 2]
        n = np.abs(signed)
        # Unused cells hold zeros, a black pixel with black neighbours: they add nothing to the sums
        # and count as gray pixels of the middle bin, taken back here.
        pad = cells - n
        bins[:, CHROMA_SIDE * 2 + 2] -= pad
        bins[:, CHROMA_BINS] -= pad
        inv = 1.0 / np.maximum(n, 1.0)
        means *= inv[:, None]
        brightness = means @ np.array(_LUMA)
        out[:, BRIGHTNESS] = brightness
        out[:, CONTRAST] = np.sqrt(np.maximum(sum_lum2 * inv - brightness * brightness, 0.0))
        green_std = np.sqrt(np.maximum(sum_g2 * inv - means[:, 1] * means[:, 1], 0.0))
        out[:, NOISE] = np.where(signed > 0, noise_sum * inv / (green_std + 1.0), 0.0)
        out[:, COLOURFULNESS] = 0.5 * spread * inv
        out[:, GRAY_FRACTION] = bins[:, CHROMA_BINS] * inv
        out[:, MEAN_R : MEAN_B + 1] = means
        out[:, HEIGHT] = sizes[:, 0]
        out[:, WIDTH] = sizes[:, 1]
        out[:, CHROMA] = bins[:, :CHROMA_BINS] * inv[:, None]
        return out


def _grid_geometry(h: int, w: int, grid: int, row_bytes: int, full_rows: bool) -> tuple[int, int, int, int]:
    """(row stride in bytes, grid rows, column stride in bytes, grid columns) for an image ``h`` × ``w``.

    Ceiling division: at most ``grid`` × ``grid`` pixels. Columns 1 .. w − 2 (each pixel needs both
    neighbours); rows 0, sy, 2 sy, ... of the image (``full_rows``) or every row of rows taken already.
    """
    sy = max(1, -(-h // grid))
    gy = -(-h // sy)
    sx = max(1, -(-(w - 2) // grid))
    gx = -(-(w - 2) // sx)
    return (row_bytes * sy if full_rows else row_bytes), gy, 3 * sx, gx


def _rgb_rows(arr: np.ndarray, grid: int) -> tuple[int, int, np.ndarray]:
    """Any readable image's grid rows as a C-contiguous uint8 RGB array at least 3 pixels wide.

    For the cases the direct gather cannot read: gray images (three equal channels), views with
    other strides, other dtypes (rounded and clipped to 0..255 levels), images narrower than 3
    pixels (edges repeated; their second difference is not used). Returns (height, width, rows).
    """
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise InputError(
            f"the monitor expects an H×W×3 RGB image, got shape {arr.shape}",
            expected="H×W×3",
            found=arr.shape,
        )
    h, w = arr.shape[0], arr.shape[1]
    if h == 0 or w == 0:
        return h, w, np.zeros((0, 3, 3), np.uint8)
    rows = arr[:: max(1, -(-h // grid))]
    if rows.dtype != np.uint8:
        rows = np.clip(np.rint(rows.astype(np.float64)), 0, 255).astype(np.uint8)
    if rows.shape[2] == 1:
        rows = np.repeat(rows, 3, axis=2)
    if w < 3:
        rows = np.pad(rows, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return h, w, np.ascontiguousarray(rows)


def image_statistics(image: np.ndarray, grid: int = INPUT_GRID) -> np.ndarray:
    """The input statistics vector of one image (see :class:`GridBatch`; the monitor batches them)."""
    batch = GridBatch(1, grid)
    batch.add(image)
    return batch.compute()[0]


def inputs_comparable(recipe: int, grid: int, monitor_grid: int = INPUT_GRID) -> bool:
    """Whether a profile's input part (computed by ``recipe`` on ``grid``) can be compared with this one's."""
    return recipe == INPUT_RECIPE and grid == monitor_grid


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
