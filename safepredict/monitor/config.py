"""MonitorConfig: every threshold of the monitor, as one frozen value (docs/monitoring.md says why each)."""

from __future__ import annotations

import attrs
from attrs import validators as v

_pos_int = [v.instance_of(int), v.gt(0)]
_prob = [v.instance_of(float), v.gt(0.0), v.lt(1.0)]


@attrs.frozen(kw_only=True)
class MonitorConfig:
    """The monitor's window sizes, test levels and rate limits. The defaults are the documented ones."""

    # Windows (bounded memory: every buffer is sized by these, never by the stream length).
    window: int = attrs.field(default=1000, validator=_pos_int)  # images in the output window
    input_window: int = attrs.field(default=200, validator=_pos_int)  # images in the input-statistics window
    min_window: int = attrs.field(default=100, validator=_pos_int)  # images before output window tests run
    min_input_window: int = attrs.field(default=50, validator=_pos_int)  # images before input tests run
    check_every: int = attrs.field(default=50, validator=_pos_int)  # window tests run every this many images

    # Statistical level: the false-alarm probability of one window test on a healthy stream.
    alpha: float = attrs.field(default=1e-6, validator=_prob)

    # Empty outputs.
    empty_streak: int = attrs.field(default=25, validator=_pos_int)  # without a reference
    min_empty_streak: int = attrs.field(default=10, validator=_pos_int)  # with one: never shorter than this
    below_threshold_streak: int = attrs.field(default=10, validator=_pos_int)  # without a reference

    # Score distributions.
    psi_floor: float = attrs.field(default=0.25, validator=[v.instance_of(float), v.ge(0.0)])
    score_bins: int = attrs.field(default=20, validator=[v.instance_of(int), v.ge(2)])  # when building a profile
    min_constant_candidates: int = attrs.field(default=5, validator=[v.instance_of(int), v.ge(2)])

    # Classes.
    takeover_margin: float = attrs.field(default=0.25, validator=_prob)  # share above the reference's
    takeover_min_share: float = attrs.field(default=0.5, validator=_prob)  # and at least this share
    min_images_with_detections: int = attrs.field(default=50, validator=_pos_int)

    # Inputs.
    input_checks: bool = attrs.field(default=True, validator=v.instance_of(bool))
    input_grid: int = attrs.field(default=24, validator=[v.instance_of(int), v.ge(4)])  # grid side, pixels
    # The input statistics are computed on every image (input_every = 1): each image's grid is copied
    # in observe and the statistics of a batch computed in one pass, a few µs per image. input_every > 1
    # samples them instead: every image for the first ``input_startup``, then one image in
    # ``input_every`` on average (random gaps, so a periodic stream, several cameras in turn, is not
    # aliased); a fault that starts after the start-up then takes that much longer to name.
    input_startup: int = attrs.field(default=1000, validator=[v.instance_of(int), v.ge(0)])
    input_every: int = attrs.field(default=1, validator=_pos_int)
    input_tail: float = attrs.field(default=0.01, validator=_prob)  # reference quantiles that bound "normal"
    max_reference_gray: float = attrs.field(default=0.5, validator=_prob)  # grayscale check off above this
    channel_order_ratio: float = attrs.field(default=0.5, validator=_prob)
    colour_noise_factor: float = attrs.field(default=3.0, validator=[v.instance_of(float), v.gt(0.0)])

    # Without a reference profile the stream's own first images are the baseline of the drift tests
    # (a stream that changes mid-way is named); None of this runs when a reference is given.
    self_baseline: bool = attrs.field(default=True, validator=v.instance_of(bool))
    baseline_images: int = attrs.field(default=200, validator=[v.instance_of(int), v.ge(20)])

    # Rate limit: one code fires at most once per this many images AND this many seconds.
    rate_limit_images: int = attrs.field(default=500, validator=[v.instance_of(int), v.ge(0)])
    rate_limit_seconds: float = attrs.field(default=60.0, validator=[v.instance_of(float), v.ge(0.0)])

    def __attrs_post_init__(self) -> None:
        if self.min_window > self.window:
            raise ValueError(f"min_window ({self.min_window}) cannot exceed window ({self.window})")
        if self.check_every > self.window:
            raise ValueError(f"check_every ({self.check_every}) cannot exceed window ({self.window})")
        if self.min_input_window > self.input_window:
            raise ValueError(
                f"min_input_window ({self.min_input_window}) cannot exceed input_window ({self.input_window})"
            )

    def describe(self) -> str:
        """The configuration in words."""
        sampling = (
            "on every image"
            if self.input_every == 1
            else f"on every image for the first {self.input_startup}, then on 1 in {self.input_every}"
        )
        return (
            f"output window {self.window} images (tests from {self.min_window}, every {self.check_every}), "
            f"input window {self.input_window} images (tests from {self.min_input_window}; statistics "
            f"{sampling}), alpha {self.alpha:g}, "
            f"PSI floor {self.psi_floor:g}, rate limit {self.rate_limit_images} images and "
            f"{self.rate_limit_seconds:g} s per code"
        )
