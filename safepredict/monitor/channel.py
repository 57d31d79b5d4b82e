"""The monitor's channel-order check: does the stream look like the reference with red and blue swapped?

A swap leaves brightness, contrast and noise alone, so the range tests cannot see it; what it
changes is known in advance from the reference alone, and four signatures are compared with it
(any one fires ``monitor.input_channel_order``, the others are reported as evidence):

- *the mean colour*: the window's mean R − B sits near the reference's negated;
- *the colour histogram*: the window's opponent-colour histogram is much closer to the
  reference's transpose (what a swap makes of it) than to the reference's;
- *the telling colours*: each image votes with the colours the reference has far more often than
  their swap (yellow, where a swap makes cyan) against those swapped colours; a swap flips every
  vote's sign, so the window's mean vote lands near the reference's negated. This one sees small
  coloured objects on large neutral backgrounds, where the histogram's mass barely moves;
- *the class shares* (label-aware): the window's class shares against the reference's and against
  the shares the reference images gave with red and blue swapped (``swapped_class_share``, captured
  with the profile). A model whose classes are colours relabels under a swap at full confidence,
  so scores cannot show it; the shares can.

It runs with the other window tests, on the input window's rows and the output window's class
counts: nothing per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from safepredict.findings import Finding
from safepredict.monitor import stats
from safepredict.monitor.config import MonitorConfig
from safepredict.monitor.profile import ReferenceProfile

__all__ = ["ChannelOrderCheck", "channel_order_fix"]


def channel_order_fix() -> str:
    """What to do about a channel-order mistake, in words (shared with diagnose)."""
    return (
        "SafePredictor takes arrays as BGR, as cv2.imread returns them: pass color='RGB' for RGB arrays "
        "(PIL, imageio, torchvision, a video decoder set to RGB), or convert them with "
        "cv2.cvtColor(image, cv2.COLOR_RGB2BGR)"
    )


class ChannelOrderCheck:
    """The four swap signatures against one reference (see the module docstring).

    ``words`` names the reference in messages. Not thread-safe by itself: the Monitor calls it under
    its lock.
    """

    def __init__(
        self,
        reference: ReferenceProfile | None,
        config: MonitorConfig,
        n_classes: int = 0,
        words: str = "the reference",
    ) -> None:
        self.config = config
        self.words = words
        self._z = stats.z_for(config.alpha)
        self.inputs_usable = False
        self.classes_usable = False
        if reference is None:
            return
        inputs = reference.inputs
        if inputs is not None and "brightness" in inputs and inputs["brightness"].n > 0:
            self.inputs_usable = True
            self._n_ref = inputs["brightness"].n
            rb = inputs["r_minus_b"]
            self._r_minus_b = (rb.mean, rb.std)
            self._means = np.array([inputs["mean_r"].mean, inputs["mean_g"].mean, inputs["mean_b"].mean])
            self._chroma: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
            self._vote: tuple[np.ndarray, float, float] | None = None
            if reference.chroma_hist is not None and reference.chroma_std is not None:
                chroma, chroma_std = np.asarray(reference.chroma_hist), np.asarray(reference.chroma_std)
                q = stats.smoothed(chroma, self._n_ref)
                q_swapped = stats.swap_chroma(q)
                self._chroma = (q, np.log(q), q_swapped, np.log(q_swapped))
                self._asymmetry = stats.psi_smoothed(q_swapped, q, np.log(q))  # how unlike its own swap
                # For small differences PSI ≈ Σ (w − r)² / r, and the window's and reference's means of a
                # bin each vary as (per-image variance) / (their image count): PSI between two healthy
                # samples is about chroma_noise × (1/n_window + 1/n_reference).
                self._chroma_noise = float(np.sum(np.square(chroma_std) / q))
                weights = stats.colour_weights(chroma, chroma_std, self._n_ref)
                vote = inputs.get("colour_vote")
                if weights.any() and vote is not None and vote.n > 0 and vote.mean < 0:
                    self._vote = (weights, vote.mean, vote.std)
        if n_classes >= 2 and reference.n_images_with_detections > 0:
            self.classes_usable = True
            self._ref_share = np.zeros(n_classes)
            self._ref_share[: reference.n_classes] = reference.class_share
            self._n_ref_det = reference.n_images_with_detections
            self._swapped_share: np.ndarray | None = None
            if reference.swapped_class_share is not None and reference.swapped_n_images_with_detections > 0:
                self._swapped_share = np.zeros(n_classes)
                self._swapped_share[: reference.n_classes] = reference.swapped_class_share
                self._n_swapped_det = reference.swapped_n_images_with_detections

    @property
    def usable(self) -> bool:
        return self.inputs_usable or self.classes_usable

    @property
    def classes_alone(self) -> bool:
        """Whether the class shares can fire without input statistics (a reference with its swapped shares)."""
        return self.classes_usable and self._swapped_share is not None

    def check(
        self,
        out: list[Finding],
        may_fire: Callable[[str], bool],
        table: np.ndarray | None,
        shares: tuple[np.ndarray, int, int] | None,
        class_names: Sequence[str] | None,
    ) -> None:
        """Test the window; ``table`` holds the input window's rows (None: no input statistics),
        ``shares`` the output window's mean per-image class shares, the images with detections and
        the images in the window (None: no classes)."""
        evidence: dict[str, Any] = {"baseline": self.words}
        hits: list[str] = []
        if self.inputs_usable and table is not None and len(table) >= self.config.min_input_window:
            n = len(table)
            evidence["window"] = n
            column_means = (stats.ones(n) @ table.astype(np.float32)) / n  # one BLAS pass over the window
            if self._swap_by_means(column_means, n, evidence):
                hits.append("the mean colour")
            if self._swap_by_histogram(column_means, n, evidence):
                hits.append("the colour histogram")
            if self._swap_by_votes(table, evidence):
                hits.append("the telling colours")
        toward_swap = False
        if self.classes_usable and shares is not None and shares[1] >= self.config.min_input_window:
            by_classes, toward_swap = self._swap_by_classes(shares, evidence)
            if by_classes:
                hits.append("the class shares")
        if not hits or not may_fire("monitor.input_channel_order"):
            return
        if toward_swap and "the class shares" not in hits:
            hits.append("the class shares")
        self._add_class_evidence(evidence, shares)
        out.append(
            Finding("monitor.input_channel_order", self._message(hits, evidence, class_names), "warning", evidence)
        )

    def _add_class_evidence(self, evidence: dict[str, Any], shares: tuple[np.ndarray, int, int] | None) -> None:
        """The class shares in words and numbers, for a finding that fires (computed only then)."""
        if not self.classes_usable or shares is None:
            return
        share = shares[0]
        evidence.update(
            class_window=shares[2],
            class_shares=[round(float(x), 4) for x in share],
            reference_class_shares=[round(float(x), 4) for x in self._ref_share],
            class_js=stats.js_divergence(share, self._ref_share),
            swapped_class_shares=None,
        )
        if self._swapped_share is not None:
            evidence.update(
                swapped_class_shares=[round(float(x), 4) for x in self._swapped_share],
                class_js_swapped=stats.js_divergence(share, self._swapped_share),
            )

    def _message(self, hits: list[str], evidence: dict[str, Any], class_names: Sequence[str] | None) -> str:
        signs = ", ".join(hits[:-1]) + (" and " if len(hits) > 1 else "") + hits[-1]
        n = evidence.get("window") or evidence.get("class_window")
        details = []
        if "channel_means" in evidence:
            means, ref = evidence["channel_means"], evidence["reference_channel_means"]
            details.append(
                f"mean R {means[0]:.0f}, G {means[1]:.0f}, B {means[2]:.0f} against "
                f"R {ref[0]:.0f}, G {ref[1]:.0f}, B {ref[2]:.0f}"
            )
        if "colour_vote" in evidence and "the telling colours" in hits:
            details.append(
                f"colour vote {evidence['colour_vote']:+.2f} against {evidence['reference_colour_vote']:+.2f} "
                "(-1: the reference's colours, +1: their swap)"
            )
        if "class_shares" in evidence and "the class shares" in hits:
            names = list(class_names) if class_names else [str(i) for i in range(len(evidence["class_shares"]))]

            def fmt(values: list[float]) -> str:
                return ", ".join(f"{name} {v:.0%}" for name, v in zip(names, values, strict=True))

            text = f"class shares {fmt(evidence['class_shares'])} against {fmt(evidence['reference_class_shares'])}"
            if evidence.get("swapped_class_shares") is not None:
                text += f"; the reference images with red and blue swapped gave {fmt(evidence['swapped_class_shares'])}"
            details.append(text)
        return (
            f"{signs} of the last {n} images look like {self.words} with red and blue swapped, not like "
            f"{self.words} ({'; '.join(details)}): the images are probably in the wrong channel order (RGB "
            f"where BGR is expected, or the reverse). {channel_order_fix()}"
        )

    # -- the input signatures -------------------------------------------------------------------
    def _swap_by_means(self, column_means: np.ndarray, n: int, evidence: dict[str, Any]) -> bool:
        ratio = self.config.channel_order_ratio
        means = column_means[stats.MEAN_R : stats.MEAN_B + 1].astype(np.float64)
        ref = self._means
        d_same = float(np.linalg.norm(means - ref))
        d_swap = float(np.linalg.norm(means - ref[::-1]))
        evidence.update(
            channel_means=[float(x) for x in means],
            reference_channel_means=[float(x) for x in ref],
            distance=d_same,
            distance_swapped=d_swap,
        )
        d = float(means[0] - means[2])
        delta, spread = self._r_minus_b
        se = spread / math.sqrt(n) + 1e-3
        if abs(delta) < 2.0 * self._z * se:
            return False  # the reference's mean red and blue are too alike for a swap to show
        if abs(d - delta) / se < self._z or abs(d + delta) >= ratio * abs(d - delta):
            return False
        return d_swap < ratio * d_same

    def _swap_by_histogram(self, column_means: np.ndarray, n: int, evidence: dict[str, Any]) -> bool:
        if self._chroma is None:
            return False
        cfg = self.config
        window = stats.smoothed(column_means[stats.CHROMA], n)
        q, log_q, q_swapped, log_q_swapped = self._chroma
        psi_same = stats.psi_smoothed(window, q, log_q)
        psi_swapped = stats.psi_smoothed(window, q_swapped, log_q_swapped)
        noise = self._chroma_noise * (1.0 / n + 1.0 / self._n_ref)
        evidence.update(
            colour_psi=psi_same,
            colour_psi_swapped=psi_swapped,
            colour_psi_noise=noise,
            colour_reference_asymmetry=self._asymmetry,
        )
        # The reference must look unlike its own swap (else a swap cannot show), the window unlike
        # the reference, both well above the sampling noise, and the window much closer to the
        # swapped reference than to the reference.
        floor = cfg.colour_noise_factor * noise
        return self._asymmetry > floor and psi_same > floor and psi_swapped < cfg.channel_order_ratio * psi_same

    def _swap_by_votes(self, table: np.ndarray, evidence: dict[str, Any]) -> bool:
        if self._vote is None:
            return False
        weights, v0, s0 = self._vote
        votes = stats.colour_votes(table[:, stats.CHROMA], weights)
        n = votes.size
        d = float(votes.sum()) / n
        spread = math.sqrt(max(float(votes @ votes) / n - d * d, 0.0))
        se = math.sqrt(spread * spread / n + s0 * s0 / self._n_ref) + 1e-9
        z = (d - v0) / se
        evidence.update(colour_vote=d, reference_colour_vote=v0, colour_vote_z=z)
        # Beyond chance away from the reference, towards the swapped side, and near the reference's
        # vote negated (a swap flips each image's vote): a grayscale stream (every vote 0) is as far
        # from both and does not fire.
        return z > self._z and abs(d + v0) <= self.config.channel_order_ratio * abs(d - v0)

    # -- the label-aware signature ---------------------------------------------------------------
    def _swap_by_classes(self, shares: tuple[np.ndarray, int, int], evidence: dict[str, Any]) -> tuple[bool, bool]:
        """(fires on its own, the shares moved towards the swap's): the window's class shares against both."""
        cfg = self.config
        share, n_det, _ = shares
        ref = self._ref_share
        k = ref.size
        psi_ref = stats.share_psi(share, ref, n_det, self._n_ref_det)
        evidence.update(
            class_psi=psi_ref,
            class_psi_critical=stats.psi_critical(k, n_det, self._n_ref_det, cfg.alpha, 0.0),
        )
        if self._swapped_share is None:
            return False, False
        swapped = self._swapped_share
        psi_swapped = stats.share_psi(share, swapped, n_det, self._n_swapped_det)
        separation = stats.share_psi(ref, swapped, self._n_ref_det, self._n_swapped_det)
        evidence.update(class_psi_swapped=psi_swapped, class_reference_separation=separation)
        toward = psi_swapped < cfg.channel_order_ratio * psi_ref
        # On its own only when the shares are beyond chance from the reference's, the reference's
        # two orders are beyond chance from each other (this model's classes depend on colour), and
        # the window sits much closer to the swapped shares.
        fires = (
            toward
            and psi_ref > evidence["class_psi_critical"]
            and separation > stats.psi_critical(k, self._n_ref_det, self._n_swapped_det, cfg.alpha, 0.0)
        )
        return fires, toward
