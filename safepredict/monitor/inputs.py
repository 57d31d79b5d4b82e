"""The monitor's input window: per-image input statistics of the last images, against the reference.

Each image's statistics (:class:`safepredict.monitor.stats.GridBatch`: brightness, contrast,
noise, grayscale, size, channel means, the opponent-colour histogram) fill one row of a ring
buffer; the window is tested against the reference profile's ranges of the same statistics. The
signatures of red and blue swapped are :class:`~safepredict.monitor.channel.ChannelOrderCheck`'s;
the output checks, the batching of the statistics and the rate limit stay in
:class:`~safepredict.monitor.monitor.Monitor`, which owns this window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    """The input statistics of the last ``config.input_window`` observed images, tested against ``reference``.

    ``words`` names the reference in messages ("the reference", or the stream's own first images
    for a self-baseline). Not thread-safe by itself: the Monitor calls it under its lock.
    """

    def __init__(self, reference: ReferenceProfile | None, config: MonitorConfig, words: str = "the reference") -> None:
        self.config = config
        self.table = np.zeros((config.input_window, stats.VECTOR_SIZE), dtype=np.float64)
        self.filled = 0
        self.images = 0  # cumulative, for the Monitor's snapshot
        self.fresh = 0  # rows added since the last test
        self._added = np.zeros(config.input_window, dtype=np.int64)  # the monitor's image count at each row
        self._pos = 0
        self.reference: ReferenceProfile | None = None
        self.words = words
        self._limits: _RangeLimits | None = None
        self.set_reference(reference, words)

    def set_reference(self, reference: ReferenceProfile | None, words: str = "the reference") -> None:
        """Test against ``reference`` from now on (the Monitor's self-baseline arrives this way)."""
        self.reference = reference
        self.words = words
        self._limits = _range_limits(reference, self.config) if reference is not None and reference.inputs else None

    def add(self, vec: np.ndarray, image_index: int = 0) -> None:
        """Record one image's statistics vector (``image_index``: the monitor's count of that image)."""
        self.add_many(vec[None, :], [image_index])

    def add_many(self, rows: np.ndarray, image_indices: Sequence[int]) -> None:
        """Record the statistics vectors of several images, oldest first (one ring write for all)."""
        size = self.config.input_window
        m = len(rows)
        if not m:
            return
        if m > size:  # more than the window holds: only the last ``size`` stay
            rows, image_indices, skipped = rows[-size:], image_indices[-size:], m - size
        else:
            skipped = 0
        slots = (self._pos + skipped + np.arange(len(rows))) % size
        self.table[slots] = rows
        self._added[slots] = image_indices
        self._pos = (self._pos + m) % size
        self.filled = min(self.filled + m, size)
        self.images += m
        self.fresh += m

    def rows(self) -> np.ndarray:
        """The statistics of the images in the window (in slot order, not time order)."""
        return self.table[: self.filled]

    def added_at(self, m: int) -> int:
        """The monitor's image count when the oldest of the last ``m`` rows was added."""
        m = min(m, self.filled)
        return int(self._added[(self._pos - m) % self.config.input_window]) if m else 0

    def recent(self, m: int) -> np.ndarray:
        """The statistics of the last ``m`` images added (at most the window), oldest first."""
        m = min(m, self.filled)
        end = self._pos
        start = end - m
        if start >= 0:
            return self.table[start:end]
        return np.concatenate([self.table[start:], self.table[:end]])

    @property
    def testable(self) -> bool:
        """Whether the window can be tested: a reference with input statistics, and enough images."""
        return self._limits is not None and self.filled >= self.config.min_input_window

    def check(self, out: list[Finding], may_fire: Callable[[str], bool]) -> None:
        """Test the window against the reference; findings go to ``out``, each code passing ``may_fire`` first."""
        limits = self._limits
        assert limits is not None and self.reference is not None and self.reference.inputs is not None
        self.fresh = 0
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
                        f"inputs are {words} than {self.words}: {k} of the last {n} images have {name} "
                        f"{'below' if side == 'low' else 'above'} {bound:.3g} (the "
                        f"{cfg.input_tail:g}..{1 - cfg.input_tail:g} quantile range of {self.words} is "
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
                            "baseline": self.words,
                        },
                    )
                )


class _RangeLimits:
    """The reference's per-statistic bounds, precomputed as vectors for the range tests."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, tail_rate: float) -> None:
        self.lo, self.hi, self.tail_rate = lo, hi, tail_rate


def _range_limits(ref: ReferenceProfile, cfg: MonitorConfig) -> _RangeLimits:
    inputs = ref.inputs
    assert inputs is not None
    q_lo, q_hi = cfg.input_tail, 1.0 - cfg.input_tail
    available = {float(k) for k in inputs["brightness"].quantiles}
    if q_lo not in available or q_hi not in available:
        raise ValueError(f"input_tail {q_lo} is not a stored quantile; use one of {sorted(available)}")
    lo = np.array([inputs[name].quantile(q_lo) for name in stats.INPUT_STATS])
    hi = np.array([inputs[name].quantile(q_hi) for name in stats.INPUT_STATS])
    return _RangeLimits(lo, hi, stats.tail_rate(cfg.input_tail, inputs["brightness"].n))
