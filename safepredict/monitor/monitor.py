"""Monitor: watches every prediction, cheaply, and says when outputs or inputs stop looking healthy.

``observe(image, candidates)`` does a few numpy operations per image and writes one slot of
fixed-size ring buffers; the window tests (empty rate, score drift, class takeover, input drift)
run every ``check_every`` images on those buffers. Memory is bounded by the window sizes, never by
the stream. One lock guards the state, so one Monitor can be shared by threads. This module holds
the output checks, the batching (and optional sampling) of images for input statistics and the rate limit; the input
statistics' window and its range tests are :class:`~safepredict.monitor.inputs.InputWindow`, the
channel-order signatures :class:`~safepredict.monitor.channel.ChannelOrderCheck`, the
self-baseline :func:`~safepredict.monitor.baseline.baseline_profile`.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from safepredict.detections import Detections
from safepredict.errors import InputError
from safepredict.findings import Finding
from safepredict.monitor import stats
from safepredict.monitor.baseline import baseline_profile
from safepredict.monitor.channel import ChannelOrderCheck
from safepredict.monitor.config import MonitorConfig
from safepredict.monitor.hints import threshold_advice
from safepredict.monitor.inputs import InputWindow
from safepredict.monitor.profile import ReferenceProfile, input_summaries

logger = logging.getLogger("safepredict")

# Repeated identical best scores below this are suspicious; at 1.0 a confident model saturates.
_SATURATED = 0.9999
_CONSTANT_STREAK = 20
# After the start-up, the input tests wait for this many new rows.
_FRESH_INPUT_ROWS = 10
_MAX = np.maximum.reduce  # without ndarray.max's Python wrapper: this runs once per image
_SCHEDULE_MASK = 4095


def _sampling_schedule(every: int) -> list[bool]:
    """Which images past the start-up get input statistics: 1 in ``every`` on average, at random gaps.

    Fixed (seeded) and cycled every 4096 images, so a run is reproducible; random gaps, so a
    stream that repeats with some period (cameras in turn) is not sampled at one phase only.
    """
    if every <= 1:
        return [True] * (_SCHEDULE_MASK + 1)
    rng = np.random.default_rng(every)
    chosen = [False] * (_SCHEDULE_MASK + 1)
    position = int(rng.integers(0, every))
    while position <= _SCHEDULE_MASK:
        chosen[position] = True
        position += int(rng.integers(1, 2 * every))
    return chosen


class Monitor:
    """The streaming monitor attached to a predictor (see docs/monitoring.md).

    ``reference`` is the :class:`ReferenceProfile` captured on validation images; without one the
    absolute checks run (NaN scores, empty streaks, everything below the threshold) and, from the
    ``config.baseline_images``-th image on, the drift tests against the stream's own first images
    (the self-baseline, :mod:`safepredict.monitor.baseline`).
    ``score_threshold`` is the threshold the final outputs are cut at and ``threshold_key`` the
    config key that sets it, named in the advice. ``observe`` returns the findings it logged.
    """

    def __init__(
        self,
        reference: ReferenceProfile | None = None,
        config: MonitorConfig | None = None,
        score_threshold: float = 0.5,
        threshold_key: str | None = None,
        class_names: Sequence[str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        emit: bool = True,
    ) -> None:
        cfg = config if config is not None else MonitorConfig()
        self.config = cfg
        self.reference = reference
        self.score_threshold = float(score_threshold)
        self.threshold_key = threshold_key if threshold_key is not None else getattr(reference, "threshold_key", None)
        if class_names is None and reference is not None:
            class_names = reference.class_names
        self.class_names = None if class_names is None else tuple(class_names)
        self._clock = clock
        self._emit = emit
        self._lock = threading.Lock()

        ref = reference
        self._bins = ref.score_bins if ref is not None else cfg.score_bins
        self._n_classes = len(self.class_names) if self.class_names is not None else (ref.n_classes if ref else 0)
        if ref is not None:
            _check_reference_classes(ref, self.class_names, self._n_classes)
        w = cfg.window
        # Output window: one slot per image.
        # Whether a slot's image had candidates or detections is read off the 1/n rows below (0: none),
        # so the per-image work writes as few slots as possible.
        self._max = np.full(w, np.nan, dtype=np.float32)  # best score; NaN: no candidate
        # Raw per-image counts; the per-image proportions are taken at test time as one weighted
        # column sum (weights 1/n per row), which keeps the per-image work to a row copy.
        self._hist = np.zeros((w, self._bins + 1), dtype=np.float32)  # + 1: scores of exactly 1.0
        self._inv_candidates = np.zeros(w, dtype=np.float32)  # 1 / candidates, 0 if none
        self._inv_detections = np.zeros(w, dtype=np.float32)  # 1 / detections, 0 if none
        # Per-image class counts of the detections: the takeover test's input.
        self._class_counts = np.zeros((w, self._n_classes), dtype=np.float32)
        self._pos = 0
        self._filled = 0
        # Images observed whose outputs are not yet checked: (scores, labels, time), checked as a batch.
        self._pending: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._seen = 0  # images observed; self._images counts those whose outputs are checked
        self._now = 0.0  # the time of the image being checked (the rate limit's clock)
        self._empty_run = 0  # images in a row without a detection, up to the last observed
        self._window_size = w
        self._input_checks = cfg.input_checks
        self._check_every = cfg.check_every
        self._min_constant = cfg.min_constant_candidates
        # Input statistics: on every image by default (input_every = 1); with input_every > 1, on
        # every image during the start-up, then on a random 1 in input_every. Each image's grid is
        # gathered in observe and the statistics computed for a batch at a time (at most check_every
        # images, so the window tests always see every image before them).
        self._every_image = cfg.input_every == 1
        self._input_seen = itertools.count()
        self._input_schedule = _sampling_schedule(cfg.input_every)
        self._grids = stats.GridBatch(min(cfg.check_every, 255), cfg.input_grid)
        self._grid_images: list[int] = []  # the monitor's count at each gathered image
        # Streaks.
        self._streak = 0
        self._streak_below_images = 0
        self._streak_below_candidates = 0
        self._streak_best_below = -math.inf
        self._below_run = 0
        self._last_max = math.nan
        self._same_max_run = 0
        # Counters (cumulative, for snapshot()).
        self._images = 0
        self._images_empty = 0
        self._images_without_candidates = 0
        self._images_nonfinite = 0
        self._candidates = 0
        self._detections = 0
        self._class_totals = np.zeros(self._n_classes, dtype=np.float64)
        # Cumulative score histograms (flushed with the class totals), for Prometheus histograms.
        self._candidate_bin_totals = np.zeros(self._bins + 1, dtype=np.float64)
        self._best_bin_totals = np.zeros(self._bins, dtype=np.float64)
        self._best_sum = 0.0
        self._fired: Counter[str] = Counter()
        self._suppressed: Counter[str] = Counter()
        self._last_fired: dict[str, tuple[int, float]] = {}
        self._threshold_checked = False

        # The empty streak's limit follows a given reference; a self-baseline leaves the absolute rules.
        self._z = stats.z_for(cfg.alpha)
        if ref is not None:
            self._empty_streak_limit = _streak_limit(
                stats.upper_rate(ref.n_empty, ref.n_images), cfg.alpha, cfg.min_empty_streak
            )
        else:
            self._empty_streak_limit = cfg.empty_streak
        # The shortest run of empty images a streak finding needs: such a run is checked at once.
        limits = [self._empty_streak_limit] if self._empty_streak_limit is not None else []
        if ref is None:
            limits.append(cfg.below_threshold_streak)
        self._early_streak = min(limits) if limits else math.inf
        # What the drift tests compare with: the reference, or (without one) the stream's own first
        # images once baseline_images are in.
        self._input_window = InputWindow(None, cfg)
        self._channel = ChannelOrderCheck(None, cfg)
        self._baseline: ReferenceProfile | None = None
        self._words = "the reference"
        self._baseline_pending = ref is None and cfg.self_baseline
        # A reference whose input part another recipe computed: its outputs are compared from the start,
        # its inputs never; the stream's first images are the baseline of the input tests instead.
        self._inputs_baseline_pending = False
        if (
            ref is not None
            and ref.inputs is not None
            and not stats.inputs_comparable(ref.input_recipe, ref.input_grid, cfg.input_grid)
        ):
            logger.warning(
                "monitor: the reference profile's input statistics were computed by recipe %d on a %d² grid, "
                "this monitor computes recipe %d on a %d² grid: its input part is not used; the input tests "
                "compare with the stream's first %d images instead (recapture the profile with `safepredict "
                "profile` to use it again)",
                ref.input_recipe,
                ref.input_grid,
                stats.INPUT_RECIPE,
                cfg.input_grid,
                min(cfg.baseline_images, cfg.window),
            )
            ref = attrs.evolve(ref, inputs=None, chroma_hist=None, chroma_std=None)
            self._inputs_baseline_pending = cfg.self_baseline
        self._ref_empty_rate = math.nan
        self._watch_classes = False
        if ref is not None:
            self._set_baseline(ref, "the reference")

    def _set_baseline(self, ref: ReferenceProfile, words: str) -> None:
        """Derive every drift test's limits from ``ref`` (the reference, or the self-baseline) once."""
        self._baseline = ref
        self._words = words
        self._ref_empty_rate = stats.upper_rate(ref.n_empty, ref.n_images)
        self._ref_cand_hist = np.asarray(ref.candidate_score_hist)
        self._ref_max_hist = np.asarray(ref.max_score_hist)
        # The reference side of each PSI never changes: smooth it and take its log once.
        self._ref_cand_q = stats.smoothed(self._ref_cand_hist, max(ref.n_images_with_candidates, 1))
        self._ref_cand_log_q = np.log(self._ref_cand_q)
        self._ref_max_q = stats.smoothed(self._ref_max_hist, ref.n_images)
        self._ref_max_log_q = np.log(self._ref_max_q)
        # A profile captured without class names knows only the labels it saw: pad the rest with 0.
        self._ref_share = np.zeros(self._n_classes)
        self._ref_share[: min(ref.n_classes, self._n_classes)] = ref.class_share[: self._n_classes]
        self._watch_classes = self._n_classes >= 2 and ref.n_images_with_detections > 0
        self._input_window.set_reference(ref, words)
        self._channel = ChannelOrderCheck(ref, self.config, self._n_classes, words)

    # -- the hot path ---------------------------------------------------------------------------
    def observe(self, image: np.ndarray | None, candidates: Detections) -> list[Finding]:
        """Record one prediction and return the findings it raised (already logged and warned).

        ``candidates`` are all detections before the score threshold, after NMS; the monitor cuts
        them at ``score_threshold`` itself. ``image`` is the RGB uint8 input, or None to skip the
        input statistics. The per-image work is a grid copy, an append and one comparison: the
        outputs of the images since the last window test are checked together when the next one is
        due (every ``check_every`` images, and at :meth:`flush` and :meth:`snapshot`), each image's
        checks as if it came alone (its own index and time), and at once when the images without a
        detection in a row reach a streak limit (the streak findings come back at their image). Any
        other finding about one image (NaN, ranges, constant scores) is returned by the call that
        completes its batch, with the image's number in its evidence (``image_index``).
        """
        with self._lock:
            now = self._clock()
            seen = self._seen = self._seen + 1
            unreadable = None
            if image is not None and self._input_checks and (self._every_image or self._sampled()):
                try:
                    # The image's grid is copied now; its statistics are computed with the batch's.
                    self._grids.add(image)
                except InputError as exc:  # the monitor reports; it never breaks a prediction
                    unreadable = exc
                else:
                    self._grid_images.append(seen)
                    if self._grids.full:
                        self._flush_inputs()
            # The arrays are kept, not copied: a Detections is not changed after it is made.
            scores = candidates.scores
            self._pending.append((scores, candidates.labels, now))
            # Empty images in a row, checked or not: a streak that may fire now is checked now.
            if scores.size and (scores > self.score_threshold).any():
                self._empty_run = 0
            else:
                self._empty_run += 1
            due = seen % self._check_every == 0 or (
                self._empty_run >= self._early_streak and self._streak_may_fire(seen, now)
            )
            found = self._flush_outputs() if due else []
            if unreadable is not None and self._may_fire("monitor.input_shape", seen, now):
                found.append(
                    Finding(
                        "monitor.input_shape",
                        f"the input statistics were skipped: {unreadable.message}",
                        "warning",
                        {"found": str(unreadable.found), "image_index": seen},
                    )
                )
        if self._emit:
            for finding in found:
                finding.emit()
        return found

    def _streak_may_fire(self, image: int, now: float) -> bool:
        """Whether a streak finding would pass the rate limit at ``image`` and ``now`` (counts nothing)."""
        cfg = self.config
        for code in ("monitor.empty_streak", "monitor.all_below_threshold"):
            last = self._last_fired.get(code)
            if last is None or (image - last[0] >= cfg.rate_limit_images and now - last[1] >= cfg.rate_limit_seconds):
                return True
        return False

    def _sampled(self) -> bool:
        """With input_every > 1: whether this image gets input statistics (the start-up, then the schedule)."""
        seen = next(self._input_seen)
        return seen < self.config.input_startup or self._input_schedule[seen & _SCHEDULE_MASK]

    def _flush_inputs(self) -> None:
        """Compute the statistics of the images gathered so far, all in one pass, into the input window."""
        if self._grids.count:
            self._input_window.add_many(self._grids.compute(), self._grid_images)
            self._grid_images = []

    def observe_many(self, samples: Iterable[tuple[np.ndarray | None, Detections]]) -> list[Finding]:
        """Replay a recorded stream of ``(image, candidates)``; every finding raised, in order."""
        found: list[Finding] = []
        for image, candidates in samples:
            found.extend(self.observe(image, candidates))
        found.extend(self.flush())
        return found

    def flush(self) -> list[Finding]:
        """Check the outputs of the images not yet checked (the end of a stream); the findings raised."""
        with self._lock:
            found = self._flush_outputs()
        if self._emit:
            for finding in found:
                finding.emit()
        return found

    def _flush_outputs(self) -> list[Finding]:
        """Check the pending images' outputs, in order, then the window tests when they are due."""
        out: list[Finding] = []
        pending = self._pending
        if pending:
            self._pending = []
            if not self._observe_batch(pending, out):
                for one in pending:  # an irregular score or label in the batch: one image at a time
                    self._observe_batch([one], out)
        return out

    def _observe_batch(self, batch: list[tuple[np.ndarray, np.ndarray, float]], out: list[Finding]) -> bool:
        """The output checks of consecutive images, vectorised over the batch: what one image at a time would do.

        One bincount each gives the per-image score histograms, detection counts and class counts
        (keyed by the image's slot), one reduceat each the best and lowest scores; a loop over the
        images' scalars then carries the streaks, the counters and the per-image findings, each
        with its image's index and time. Returns False, having changed nothing but the once-only
        threshold check, if a batch of several images holds a score outside [0, 1] (NaN included) or
        a kept label outside the classes: the caller then checks its images one at a time, where
        those are reported and dropped or clipped.
        """
        k = len(batch)
        base = self._images
        if not self._threshold_checked:
            self._threshold_checked = True
            self._images, self._now = base + 1, batch[0][2]
            self._check_threshold_mismatch(out)
            self._images = base
        if k == 1:
            scores, labels = batch[0][0], batch[0][1]
            sizes = [scores.size]
        else:
            sizes = [b[0].size for b in batch]
            scores = np.concatenate([b[0] for b in batch])
            labels = np.concatenate([b[1] for b in batch])
        total = scores.size
        if total:
            low, top = float(np.minimum.reduce(scores)), float(_MAX(scores))
            if not (low >= 0.0 and top <= 1.0):  # NaN fails both
                if k > 1:
                    return False
                self._images, self._now = base + 1, batch[0][2]
                scores, labels = self._irregular_scores(out, scores, labels, low, top)
                total = scores.size
                sizes = [total]
        n_classes = self._n_classes
        keep = scores > self.score_threshold  # strictly above, as both frameworks filter
        kept = labels[keep]
        bad_labels = bool(n_classes and kept.size and (kept.min() < 0 or kept.max() >= n_classes))
        if bad_labels and k > 1:
            return False

        bins, w, pos = self._bins, self._window_size, self._pos
        rows: slice | np.ndarray = slice(pos, pos + k) if pos + k <= w else np.arange(pos, pos + k) % w
        counts = np.asarray(sizes)
        slot = np.repeat(np.arange(k), counts)
        n_final = np.bincount(slot[keep], minlength=k)
        tops = np.full(k, np.nan)
        constant = np.zeros(k, bool)
        if total:
            # Scores in [0, 1] give bin indices in [0, bins]; the extra column holds scores of exactly
            # 1.0 and is folded into the last bin when the window is tested.
            hist = np.bincount(slot * (bins + 1) + (scores * bins).astype(np.intp), minlength=k * (bins + 1))
            hist = hist.reshape(k, bins + 1)
            self._hist[rows] = hist
            has = np.flatnonzero(counts)
            starts = (np.cumsum(counts) - counts)[has]
            tops[has] = np.maximum.reduceat(scores, starts)
            lows = np.minimum.reduceat(scores, starts)
            # All candidates of one image in one bin and within 1e-6 of each other: a constant output.
            n_has = counts[has]
            top_bins = np.minimum((tops[has] * bins).astype(np.intp), bins)
            constant[has] = (
                (n_has >= self._min_constant)
                & (hist[has, top_bins] == n_has)
                & (tops[has] - lows.astype(np.float64) < 1e-6)
            )
        with np.errstate(divide="ignore"):
            self._inv_candidates[rows] = np.where(counts > 0, 1.0 / counts, 0.0)
            self._inv_detections[rows] = np.where(n_final > 0, 1.0 / n_final, 0.0)
        self._max[rows] = tops
        if total:
            # The cumulative counters (Prometheus histograms): the batch's scores and best scores.
            self._candidate_bin_totals += hist.sum(axis=0)
            best = self._max[rows][has]  # float32, as the window holds them
            self._best_bin_totals += np.bincount(np.minimum(best * bins, bins - 1).astype(np.intp), minlength=bins)
            self._best_sum += float(best.sum(dtype=np.float64))
        if n_classes and kept.size:
            if bad_labels:  # one image: only its labels inside the classes are counted
                inside = kept[(kept >= 0) & (kept < n_classes)] if kept.min() >= 0 else kept[:0]
                per_class = np.bincount(inside, minlength=n_classes)
                self._class_counts[rows] = per_class
                self._class_totals += per_class
            else:
                per_image = np.bincount(slot[keep] * n_classes + kept, minlength=k * n_classes)
                self._class_counts[rows] = per_image.reshape(k, n_classes)
                self._class_totals += np.bincount(kept, minlength=n_classes)

        # The images' scalars, in order: streaks, repeated best scores and the per-image findings.
        tops_list = tops.tolist()
        if self._healthy_batch(tops, n_final, constant, bad_labels):
            # Every image has detections, none is constant and no best score repeats the one before:
            # what the loop would do, in one step.
            self._images, self._now = base + k, batch[-1][2]
            self._same_max_run, self._last_max = 1, tops_list[-1]
            if self._streak:
                self._streak = self._streak_below_images = self._streak_below_candidates = self._below_run = 0
                self._streak_best_below = -math.inf
        else:
            n_final_list = n_final.tolist()
            constant_list = constant.tolist()
            for i in range(k):
                self._images = base + i + 1
                self._now = batch[i][2]
                n = sizes[i]
                top = tops_list[i]
                if n:
                    if constant_list[i]:
                        self._constant(out, f"all {n} candidates of one image score {top:.6g}", n, top)
                    if top == self._last_max and top < _SATURATED:
                        self._same_max_run += 1
                        if self._same_max_run >= _CONSTANT_STREAK:
                            self._constant(
                                out, f"the best score was {top:.6g} in {self._same_max_run} images in a row", n, top
                            )
                    else:
                        self._same_max_run = 1
                        self._last_max = top
                else:
                    self._images_without_candidates += 1
                if n_final_list[i]:
                    if bad_labels:
                        self._label_range(out, kept)
                    if self._streak:
                        self._streak = self._streak_below_images = self._streak_below_candidates = self._below_run = 0
                        self._streak_best_below = -math.inf
                else:
                    # Empty outputs and the threshold advice.
                    self._images_empty += 1
                    self._streak += 1
                    if n:
                        self._streak_below_images += 1
                        self._streak_below_candidates += n
                        self._streak_best_below = max(self._streak_best_below, top)
                        self._below_run += 1
                    else:
                        self._below_run = 0
                    self._check_streaks(out, n, top)
        self._candidates += total
        self._detections += int(kept.size)
        self._pos = (pos + k) % w
        self._filled = min(self._filled + k, w)
        if self._images % self._check_every == 0:
            self._window_tests(out)
        return True

    def _window_tests(self, out: list[Finding]) -> None:
        cfg = self.config
        self._flush_inputs()
        if self._inputs_baseline_pending and self._images >= min(cfg.baseline_images, cfg.window):
            self._form_input_baseline()
        if self._baseline_pending and self._images >= min(cfg.baseline_images, cfg.window):
            self._form_baseline()
        if self._baseline is None:
            return
        if self._filled >= cfg.min_window:
            self._check_empty_rate(out)
            self._check_score_drift(out)
            if self._watch_classes:
                self._check_classes(out)
        window = self._input_window
        # Sampled (input_every > 1), the input window fills slowly after the start-up: its tests wait
        # for a few new rows rather than re-testing the same ones.
        inputs_due = window.testable and window.fresh >= min(cfg.check_every, _FRESH_INPUT_ROWS)
        if inputs_due:
            window.check(out, self._may_fire)
        if self._channel.usable and (inputs_due or (window.filled == 0 and self._channel.classes_alone)):
            table = window.rows() if window.testable else None
            found = len(out)
            self._channel.check(out, self._may_fire, table, self._window_class_shares(), self.class_names)
            # A swap that starts mid-stream is a mixture in the whole window, half like the reference and
            # half like its swap; the latest images alone show it pure.
            recent = cfg.min_input_window
            if len(out) == found and table is not None and window.filled > recent:
                span = min(self._images - window.added_at(recent) + 1, self._filled)
                self._channel.check(
                    out, self._may_fire, window.recent(recent), self._window_class_shares(span), self.class_names
                )

    def _window_class_shares(self, last: int | None = None) -> tuple[np.ndarray, int, int] | None:
        """The mean per-image class shares of the output window (or of its ``last`` images), the images
        with detections among them, and their count."""
        if not self._n_classes or not self._filled:
            return None
        n = self._filled if last is None else max(1, min(last, self._filled))
        if n == self._filled:
            inv, counts = self._inv_detections[:n], self._class_counts[:n]
        else:
            rows = np.arange(self._pos - n, self._pos) % self._window_size
            inv, counts = self._inv_detections[rows], self._class_counts[rows]
        n_det = int(np.count_nonzero(inv))
        if not n_det:
            return None
        return (inv @ counts) / n_det, n_det, n

    def _form_baseline(self) -> None:
        """Without a reference: the images seen so far become the baseline of every drift test."""
        self._baseline_pending = False
        n = self._filled
        profile = baseline_profile(
            score_threshold=self.score_threshold,
            threshold_key=self.threshold_key,
            class_names=self.class_names,
            n_classes=self._n_classes,
            best=self._max[:n],
            hist=self._hist[:n],
            inv_candidates=self._inv_candidates[:n],
            inv_detections=self._inv_detections[:n],
            class_counts=self._class_counts[:n],
            inputs=self._input_window.rows(),
            input_grid=self.config.input_grid,
        )
        self._set_baseline(profile, f"the stream's first {n} images")
        logger.info(
            "monitor: no reference profile; the first %d images (%d with input statistics) are the baseline of "
            "the drift tests from now on",
            n,
            self._input_window.filled,
        )

    def _form_input_baseline(self) -> None:
        """With a reference whose input part is of another recipe: the inputs seen so far become its input part."""
        self._inputs_baseline_pending = False
        rows = self._input_window.rows()
        if not len(rows) or self._baseline is None:
            return
        inputs, chroma, chroma_std = input_summaries(rows)
        words = f"the stream's first {len(rows)} images"
        profile = attrs.evolve(
            self._baseline,
            inputs=inputs,
            chroma_hist=chroma,
            chroma_std=chroma_std,
            input_recipe=stats.INPUT_RECIPE,
            input_grid=self.config.input_grid,
        )
        self._input_window.set_reference(profile, words)
        self._channel = ChannelOrderCheck(profile, self.config, self._n_classes, words)
        logger.info("monitor: the input tests compare with %s from now on", words)

    def _irregular_scores(
        self, out: list[Finding], scores: np.ndarray, labels: np.ndarray, low: float, top: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """NaN/infinite scores are reported and dropped; scores outside [0, 1] reported and clipped."""
        n = scores.size
        finite = np.isfinite(scores)
        bad = n - int(np.count_nonzero(finite))
        if bad:
            self._images_nonfinite += 1
            if self._may_fire("monitor.nan_scores"):
                out.append(
                    Finding(
                        "monitor.nan_scores",
                        f"{bad} of {n} candidate scores are NaN or infinite: the model's numerics are broken "
                        "(fp16 overflow, a corrupt checkpoint, or an input far outside the training range)",
                        "error",
                        {"nonfinite": bad, "candidates": n, "image_index": self._images},
                    )
                )
            scores, labels = scores[finite], labels[finite]
            if not scores.size:
                return scores, labels
            low, top = float(scores.min()), float(scores.max())
        if low < 0.0 or top > 1.0:
            if self._may_fire("monitor.score_range"):
                out.append(
                    Finding(
                        "monitor.score_range",
                        f"candidate scores span [{low:.4g}, {top:.4g}], outside [0, 1]: these are not "
                        "probabilities (logits, or an output decoded with the wrong head)",
                        "error",
                        {"min_score": low, "max_score": top, "image_index": self._images},
                    )
                )
            scores = np.clip(scores, 0.0, 1.0)
        return scores, labels

    # -- rate limit ----------------------------------------------------------------------------
    def _healthy_batch(self, tops: np.ndarray, n_final: np.ndarray, constant: np.ndarray, bad_labels: bool) -> bool:
        """Whether no image of a batch can change a streak or raise a per-image finding (see _observe_batch)."""
        if bad_labels or not n_final.all() or constant.any():
            return False
        repeats = np.empty(tops.size, bool)
        repeats[0] = tops[0] == self._last_max
        np.equal(tops[1:], tops[:-1], out=repeats[1:])
        return not (repeats & (tops < _SATURATED)).any()

    def _may_fire(self, code: str, image: int | None = None, now: float | None = None) -> bool:
        """Whether ``code`` may fire at ``image`` and ``now`` (default: the image being checked); counts it."""
        cfg = self.config
        last = self._last_fired.get(code)
        image = self._images if image is None else image
        now = self._now if now is None else now
        if last is not None and (image - last[0] < cfg.rate_limit_images or now - last[1] < cfg.rate_limit_seconds):
            self._suppressed[code] += 1
            return False
        self._last_fired[code] = (image, now)
        self._fired[code] += 1
        return True

    # -- per-image checks ----------------------------------------------------------------------
    def _check_threshold_mismatch(self, out: list[Finding]) -> None:
        ref = self.reference
        if ref is None or math.isclose(ref.score_threshold, self.score_threshold, abs_tol=1e-9):
            return
        if self._may_fire("monitor.threshold_mismatch"):
            key = f" ({self.threshold_key})" if self.threshold_key else ""
            out.append(
                Finding(
                    "monitor.threshold_mismatch",
                    f"the score threshold{key} is {self.score_threshold:g} but the reference profile was "
                    f"captured at {ref.score_threshold:g}; empty-rate and class checks compare unlike things",
                    "warning",
                    {
                        "score_threshold": self.score_threshold,
                        "reference_threshold": ref.score_threshold,
                        "threshold_key": self.threshold_key,
                    },
                )
            )

    def _constant(self, out: list[Finding], what: str, n: int, value: float) -> None:
        if self._may_fire("monitor.constant_scores"):
            out.append(
                Finding(
                    "monitor.constant_scores",
                    f"constant scores: {what}; a healthy model's scores vary (broken weights, or a constant input)",
                    "error",
                    {"candidates": n, "score": value, "image_index": self._images},
                )
            )

    def _label_range(self, out: list[Finding], labels: np.ndarray) -> None:
        if self._may_fire("monitor.label_range"):
            bad = sorted({int(x) for x in labels.tolist() if not 0 <= x < self._n_classes})
            out.append(
                Finding(
                    "monitor.label_range",
                    f"labels {bad[:10]} are outside the {self._n_classes} known classes: the class names do not "
                    "belong to this model",
                    "error",
                    {"labels": bad[:10], "n_classes": self._n_classes, "image_index": self._images},
                )
            )

    def _advice(self, images: int) -> str:
        return threshold_advice(
            self._streak_below_candidates,
            self._streak_best_below,
            self.score_threshold,
            self.threshold_key,
            images=images,
        )

    def _advice_evidence(self) -> dict[str, Any]:
        best = self._streak_best_below
        return {
            "score_threshold": self.score_threshold,
            "threshold_key": self.threshold_key,
            "images_with_candidates_below": self._streak_below_images,
            "candidates_below": self._streak_below_candidates,
            "best_below": None if best == -math.inf else best,
        }

    def _check_streaks(self, out: list[Finding], n: int, top: float) -> None:
        limit = self._empty_streak_limit
        if limit is not None and self._streak >= limit and self._may_fire("monitor.empty_streak"):
            ref = self.reference
            basis = (
                f"the reference's empty rate is {ref.empty_rate:.1%}, so {limit} in a row happens with "
                f"probability below {self.config.alpha:g}"
                if ref is not None
                else "no reference profile to compare with"
            )
            advice = "; " + self._advice(self._streak_below_images) if self._streak_below_images else ""
            out.append(
                Finding(
                    "monitor.empty_streak",
                    f"{self._streak} images in a row with no detection above the score threshold ({basis}){advice}",
                    "warning",
                    {
                        "streak": self._streak,
                        "limit": limit,
                        "reference_empty_rate": None if ref is None else ref.empty_rate,
                        "image_index": self._images,
                        **self._advice_evidence(),
                    },
                )
            )
        if (
            self.reference is None
            and self._below_run >= self.config.below_threshold_streak
            and self._may_fire("monitor.all_below_threshold")
        ):
            out.append(
                Finding(
                    "monitor.all_below_threshold",
                    f"every candidate of the last {self._below_run} images scored below the threshold; "
                    + self._advice(self._streak_below_images),
                    "warning",
                    {
                        "run": self._below_run,
                        "limit": self.config.below_threshold_streak,
                        "image_index": self._images,
                        **self._advice_evidence(),
                    },
                )
            )

    # -- window checks -------------------------------------------------------------------------
    def _check_empty_rate(self, out: list[Finding]) -> None:
        ref = self._baseline
        assert ref is not None
        n = self._filled
        empty = self._inv_detections[:n] == 0
        k = int(np.count_nonzero(empty))
        k_crit = stats.binomial_critical(n, self._ref_empty_rate, self.config.alpha)
        if k < k_crit or not self._may_fire("monitor.empty_rate"):
            return
        empty_below = empty & (self._inv_candidates[:n] > 0)
        with_below = int(np.count_nonzero(empty_below))
        best_below = self._max[:n][empty_below]
        best = float(best_below.max()) if best_below.size else None
        advice = (
            f"; {with_below} of these empty images had candidates below the threshold {self.score_threshold:g} "
            f"(best {best:.3f}), set by {self.threshold_key or 'the test-time score threshold'}"
            if best is not None
            else "; none had any candidate, even below the threshold"
        )
        out.append(
            Finding(
                "monitor.empty_rate",
                f"{k} of the last {n} images ({k / n:.1%}) had no detection above the score threshold, against "
                f"{ref.empty_rate:.1%} in {self._words} (at most {k_crit - 1} expected by chance){advice}",
                "warning",
                {
                    "empty": k,
                    "window": n,
                    "empty_rate": k / n,
                    "reference_empty_rate": ref.empty_rate,
                    "critical_count": k_crit,
                    "p_value": stats.binomial_upper_tail(k, n, self._ref_empty_rate),
                    "score_threshold": self.score_threshold,
                    "threshold_key": self.threshold_key,
                    "images_with_candidates_below": with_below,
                    "best_below": best,
                    "baseline": self._words,
                },
            )
        )

    def _check_score_drift(self, out: list[Finding]) -> None:
        ref = self._baseline
        assert ref is not None
        cfg = self.config
        n = self._filled
        has = self._inv_candidates[:n] > 0
        n_cand = int(np.count_nonzero(has))
        drifted: dict[str, Any] = {}
        if n_cand and ref.n_images_with_candidates:
            total = self._inv_candidates[:n] @ self._hist[:n]  # sum of per-image proportions (BLAS)
            hist = total[: self._bins] / n_cand
            hist[-1] += total[self._bins] / n_cand
            drifted["candidate_psi"] = stats.psi_smoothed(
                stats.smoothed(hist, n_cand), self._ref_cand_q, self._ref_cand_log_q
            )
            drifted["candidate_psi_critical"] = stats.psi_critical(
                self._bins, n_cand, ref.n_images_with_candidates, cfg.alpha, cfg.psi_floor
            )
        # The best score's bin (a score of 1.0 in the last), and the extra bin for "no candidate" (NaN).
        best = np.minimum(self._max[:n] * self._bins, self._bins - 1)
        best_bins = np.where(has, best, self._bins).astype(np.intp)
        max_hist = np.bincount(best_bins, minlength=self._bins + 1) / n
        value = stats.psi_smoothed(stats.smoothed(max_hist, n), self._ref_max_q, self._ref_max_log_q)
        crit = stats.psi_critical(self._bins + 1, n, ref.n_images, cfg.alpha, cfg.psi_floor)
        drifted["best_score_psi"] = value
        drifted["best_score_psi_critical"] = crit
        cand_bad = drifted.get("candidate_psi", 0.0) > drifted.get("candidate_psi_critical", math.inf)
        best_bad = value > crit
        if not (cand_bad or best_bad) or not self._may_fire("monitor.score_drift"):
            return
        maxes = self._max[:n][has]
        median = float(np.median(maxes)) if maxes.size else math.nan
        if n_cand and ref.n_images_with_candidates:
            drifted["candidate_js"] = stats.js_divergence(hist, self._ref_cand_hist)
        drifted["best_score_js"] = stats.js_divergence(max_hist, self._ref_max_hist)
        ref_median = ref.max_score.quantiles.get("0.5", math.nan)
        kind = "collapsed" if median < ref_median else "drifted"
        which = " and ".join(
            w for w, bad in (("pre-threshold scores", cand_bad), ("best score per image", best_bad)) if bad
        )
        out.append(
            Finding(
                "monitor.score_drift",
                f"scores have {kind}: the {which} distribution of the last {n} images differs from {self._words} "
                f"(PSI {max(drifted.get('candidate_psi', 0.0), value):.2f}); median best score {median:.3f} "
                f"against {ref_median:.3f}",
                "warning",
                {
                    "window": n,
                    "median_best_score": median,
                    "reference_median_best_score": ref_median,
                    "baseline": self._words,
                    **drifted,
                },
            )
        )

    def _check_classes(self, out: list[Finding]) -> None:
        cfg = self.config
        n = self._filled
        n_det = int(np.count_nonzero(self._inv_detections[:n]))
        if n_det >= cfg.min_images_with_detections:
            share = (self._inv_detections[:n] @ self._class_counts[:n]) / n_det
            if self._takeover(out, share, n_det, n):
                return
        # A takeover that starts mid-stream is diluted in the whole window (up to `window` images, most
        # of them from before); the latest `min_window` images alone show it pure, as for the colour order.
        if n > cfg.min_window:
            recent = self._window_class_shares(cfg.min_window)
            if recent is not None and recent[1] >= cfg.min_images_with_detections:
                self._takeover(out, recent[0], recent[1], recent[2])

    def _takeover(self, out: list[Finding], share: np.ndarray, n_det: int, n: int) -> bool:
        """Whether one class's share of ``share`` (over ``n`` images, ``n_det`` with detections) took over."""
        ref = self._baseline
        assert ref is not None
        cfg = self.config
        excess = share - self._ref_share
        c = int(np.argmax(excess))
        s, r = float(share[c]), float(self._ref_share[c])
        se = math.sqrt(max(s * (1 - s), 1e-12) / n_det + max(r * (1 - r), 1e-12) / ref.n_images_with_detections)
        z = (s - r) / se
        if s - r < cfg.takeover_margin or s < cfg.takeover_min_share or z < self._z:
            return False
        if self._may_fire("monitor.class_takeover"):
            name = self.class_names[c] if self.class_names else str(c)
            out.append(
                Finding(
                    "monitor.class_takeover",
                    f"class {name!r} takes {s:.0%} of the detections of the last {n} images against {r:.0%} in "
                    f"{self._words}: one class is taking over (a colour-order or preprocessing error, or a changed "
                    "scene)",
                    "warning",
                    {
                        "class": name,
                        "share": s,
                        "reference_share": r,
                        "z": z,
                        "images_with_detections": n_det,
                        "baseline": self._words,
                    },
                )
            )
        return True

    # -- scraping ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The counters and window state as plain values (for logs, health endpoints and Prometheus).

        The images not yet checked are checked first (:meth:`flush`), so a scrape counts every image.
        """
        self.flush()
        with self._lock:
            n = self._filled
            maxes = self._max[:n][self._inv_candidates[:n] > 0]
            names = self.class_names or tuple(str(i) for i in range(self._n_classes))
            candidate_bins = self._candidate_bin_totals[: self._bins].astype(np.int64)
            candidate_bins[-1] += int(self._candidate_bin_totals[self._bins])
            self._flush_inputs()  # the images gathered since the last batch: a scrape sees every one
            inputs = self._input_window.rows()
            return {
                "images_total": self._images,
                "images_empty_total": self._images_empty,
                "images_without_candidates_total": self._images_without_candidates,
                "images_nonfinite_total": self._images_nonfinite,
                "input_images_total": self._input_window.images + self._grids.count,
                "candidates_total": self._candidates,
                "detections_total": self._detections,
                "detections_by_class_total": {
                    name: int(c) for name, c in zip(names, self._class_totals.tolist(), strict=True)
                },
                "findings_total": dict(self._fired),
                "findings_suppressed_total": dict(self._suppressed),
                "empty_streak": self._streak,
                "score_threshold": self.score_threshold,
                "window_images": n,
                "window_empty_rate": float(np.count_nonzero(self._inv_detections[:n] == 0) / n) if n else None,
                "window_median_best_score": float(np.median(maxes)) if maxes.size else None,
                "reference_empty_rate": None if self.reference is None else self.reference.empty_rate,
                # Cumulative per-bin counts (bin i: scores in [i/score_bins, (i+1)/score_bins), 1.0 in the last).
                "score_bins": self._bins,
                "candidate_score_bins_total": candidate_bins.tolist(),
                "best_score_bins_total": self._best_bin_totals.astype(np.int64).tolist(),
                "best_score_sum": self._best_sum,
                "window_best_score_quantiles": _quantiles(maxes),
                "input_window_quantiles": {
                    name: _quantiles(column) for name, column in zip(stats.INPUT_STATS, inputs.T, strict=False)
                }
                if inputs.shape[0]
                else {},
            }


_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    """The snapshot's quantiles of ``values`` (keys as the profile writes them: ``"0.5"``); empty for none."""
    if not values.size:
        return {}
    return {f"{q:g}": float(v) for q, v in zip(_QUANTILES, np.quantile(values, _QUANTILES), strict=True)}


def _check_reference_classes(ref: ReferenceProfile, names: tuple[str, ...] | None, n_classes: int) -> None:
    """Refuse a profile captured for other classes: its shares and labels would be compared wrongly."""
    if ref.class_names is not None and names is not None and ref.class_names != names:
        raise InputError(
            f"the reference profile was captured for classes {list(ref.class_names)[:8]}, this monitor watches "
            f"{list(names)[:8]}: the profile belongs to another model",
            expected=list(names),
            found=list(ref.class_names),
            fix="pass this model's profile (safepredict profile CHECKPOINT VAL_IMAGES/), or none",
        )
    if ref.n_classes > n_classes and (ref.class_names is not None or names is not None):
        raise InputError(
            f"the reference profile knows {ref.n_classes} classes, this monitor {n_classes}: "
            "the profile belongs to another model",
            expected=n_classes,
            found=ref.n_classes,
            fix="pass this model's profile (safepredict profile CHECKPOINT VAL_IMAGES/), or none",
        )


def _streak_limit(empty_rate: float, alpha: float, minimum: int) -> int | None:
    """The run of empty images that happens with probability below ``alpha`` at ``empty_rate``."""
    if empty_rate >= 0.999:
        return None  # a model that is nearly always empty on healthy data: streaks mean nothing
    if empty_rate <= 0.0:
        return minimum
    return max(minimum, math.ceil(math.log(alpha) / math.log(empty_rate)))
