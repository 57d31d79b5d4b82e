"""Synthetic prediction streams (image + candidates) for the monitor's tests and its benchmark.

A stream is drawn from one fixed distribution: images are a coloured, lit background with a few
rectangles and mild sensor noise; candidates are a few objects scoring high plus many low-scoring
background candidates, as a detector returns them before its score threshold. The faults are the
ones that end in "no instances": a stream can be made noisier, lower in contrast, darker, grayscale,
BGR instead of RGB, or its scores NaN, collapsed or taken over by one class.

Test-only: no module under ``safepredict/`` imports it. Tests import it as ``from _synthetic import
SyntheticStream`` (pytest puts ``tests/`` on ``sys.path``, the folder having no ``__init__.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np

from safepredict.detections import Detections

IMAGE_FAULTS = ("noise", "low_contrast", "dark", "grayscale", "swap_channels")
OUTPUT_FAULTS = ("nan", "collapse", "takeover", "constant")
_PALETTE = ((215, 45, 40), (40, 55, 220), (220, 210, 45))  # red, blue, yellow


@attrs.frozen(kw_only=True)
class SyntheticStream:
    """A reproducible stream of ``(image_rgb_uint8, candidates)`` pairs, healthy unless faults are named."""

    seed: int = 0
    class_names: tuple[str, ...] = ("red", "green", "blue", "yellow")
    height: int = 96
    width: int = 128
    empty_rate: float = 0.2  # images with no real object (they still have background candidates)
    background_candidates: float = 20.0  # mean number of low-scoring candidates per image
    faults: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # Gray backgrounds and red, blue and yellow objects: red and blue balance out on average, so only
    # the colour histogram (yellow turns cyan) tells a swapped channel order.
    balanced_colours: bool = False

    def __attrs_post_init__(self) -> None:
        unknown = set(self.faults) - set(IMAGE_FAULTS) - set(OUTPUT_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {IMAGE_FAULTS + OUTPUT_FAULTS}")

    def __iter__(self) -> Iterator[tuple[np.ndarray, Detections]]:
        rng = np.random.default_rng(self.seed)
        while True:
            yield self._image(rng), self._candidates(rng)

    def take(self, n: int) -> list[tuple[np.ndarray, Detections]]:
        """The first ``n`` pairs of the stream."""
        it = iter(self)
        return [next(it) for _ in range(n)]

    def _image(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.height, self.width
        if self.balanced_colours:
            base = np.full(3, rng.normal(90.0, 14.0)) + rng.normal(0.0, 3.0, 3)
        else:
            base = rng.normal((140.0, 118.0, 88.0), 14.0)
        ramp = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :, None] * rng.normal(0.0, 12.0)
        img = np.empty((h, w, 3), dtype=np.float32)
        img[:] = base.astype(np.float32)
        img += ramp
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
            dy, dx = rng.integers(10, h // 2), rng.integers(10, w // 2)
            if self.balanced_colours:
                colour = np.array(_PALETTE[rng.integers(0, len(_PALETTE))]) + rng.normal(0.0, 10.0, 3)
            else:
                colour = base + rng.normal(0.0, 45.0, 3)
            img[y : y + dy, x : x + dx] = colour
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.8, 1.25) + mean
        img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
        faults = self.faults
        if "low_contrast" in faults:
            img = (img - img.mean()) * 0.3 + img.mean()
        if "dark" in faults:
            img *= 0.35
        if "noise" in faults:
            img += rng.normal(0.0, 30.0, img.shape).astype(np.float32)
        if "grayscale" in faults:
            img[:] = (0.299 * img[:, :, 0] + 0.587 * img[:, :, 1] + 0.114 * img[:, :, 2])[:, :, None]
        if "swap_channels" in faults:
            img = img[:, :, ::-1]
        return np.clip(img, 0, 255).astype(np.uint8)

    def _candidates(self, rng: np.random.Generator) -> Detections:
        n_classes = len(self.class_names)
        n_obj = 0 if rng.random() < self.empty_rate else int(rng.integers(1, 4))
        n_bg = int(rng.poisson(self.background_candidates))
        obj_scores = rng.beta(8.0, 1.5, n_obj)
        bg_scores = 0.001 + 0.999 * rng.beta(1.0, 14.0, n_bg)
        scores = np.concatenate([obj_scores, bg_scores]).astype(np.float32)
        labels = rng.integers(0, n_classes, n_obj + n_bg)
        n = scores.size
        xy = rng.uniform(0, min(self.height, self.width) / 2, (n, 2))
        wh = rng.uniform(4, min(self.height, self.width) / 2, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        faults = self.faults
        if "nan" in faults and n:
            scores[rng.integers(0, n)] = np.nan
        if "collapse" in faults:
            scores *= 0.1
        if "takeover" in faults:
            labels[:] = 0
        if "constant" in faults:
            scores[:] = 0.5
        # Any: Detections' optional(tuple) converter confuses mypy for every concrete sequence type.
        names: Any = self.class_names
        order = np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable")
        return Detections(
            boxes=boxes[order],
            scores=scores[order],
            labels=labels[order],
            class_names=names,
            image_size=(self.height, self.width),
        )


def dataset_images(root: Any, seed: int, n: int) -> list[Any]:
    """``n`` fresh image files of the fixtures' data set: its generator with another seed (never trained on).

    The real-model tests feed these to the trained fixtures as a healthy stream, then altered.
    """
    from pathlib import Path

    from safepredict.demo.data import DatasetSpec, generate

    dataset = generate(Path(root) / f"seed-{seed}", DatasetSpec(seed=seed, num_train=0, num_val=n))
    return sorted(dataset.val_dir.glob("*.png"))


def degraded(kind: str, bgr: np.ndarray, seed: int = 7) -> np.ndarray:
    """A BGR image made grayscale, low in contrast (×0.3) or noisy (σ = 30), as a camera fault makes it."""
    if kind == "grayscale":
        gray = (0.114 * bgr[:, :, 0] + 0.587 * bgr[:, :, 1] + 0.299 * bgr[:, :, 2]).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if kind == "low_contrast":
        f = bgr.astype(np.float32)
        return np.clip((f - f.mean()) * 0.3 + f.mean(), 0, 255).astype(np.uint8)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(bgr + rng.normal(0.0, 30.0, bgr.shape), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown degradation {kind!r}")
