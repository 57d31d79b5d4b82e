"""Known traps inside one training config (ImageNet statistics in the other channel order,
random augmentation in the test pipeline, test-time augmentation, an unfinished schedule...)."""

from __future__ import annotations

from typing import Any

from safepredict.contract.values import Discrepancy, TrainingContract, _fmt

# ImageNet statistics in the 0-255 scale, by channel order: a mean equal to the *other* order's
# values says the mean was copied from a config with the other INPUT.FORMAT / bgr_to_rgb.
_IMAGENET_MEAN = {"RGB": (123.675, 116.28, 103.53), "BGR": (103.53, 116.28, 123.675)}
_IMAGENET_STD = {"RGB": (58.395, 57.12, 57.375), "BGR": (57.375, 57.12, 58.395)}

# Transforms that only make sense at training: random augmentation. Names as the frameworks
# spell them; any name starting with "Random" counts too.
TRAINING_ONLY_TRANSFORMS = frozenset(
    {
        "Mosaic",
        "MixUp",
        "CopyPaste",
        "PhotoMetricDistortion",
        "Expand",
        "MinIoURandomCrop",
        "CutOut",
        "YOLOXHSVRandomAug",
        "AutoAugment",
        "RandAugment",
        "CachedMosaic",
        "CachedMixUp",
        "Albu",
        "RandomErasing",
    }
)
# A test pipeline wrapped in test-time augmentation flips on purpose.
_TTA_TRANSFORMS = frozenset({"TestTimeAug", "MultiScaleFlipAug"})

# How far (as a ratio) the test size may sit outside the training size range before it is a trap.
SIZE_RATIO_TRAP = 1.5


def _close(a: tuple[float, ...], b: tuple[float, ...], tol: float = 0.5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _trap(
    training: TrainingContract,
    field: str,
    value: Any,
    other: Any,
    other_source: str,
    severity: str,
    message: str,
    fix: str,
) -> Discrepancy:
    return Discrepancy(
        key=field,
        framework_key=training.key(field),
        training=value,
        inference=other,
        training_source=training.where(field),
        inference_source=other_source,
        severity=severity,
        category="internal",
        fix=fix,
        message=message,
    )


def check_training_config(training: TrainingContract) -> tuple[Discrepancy, ...]:
    """Known traps inside one training config, as ``category="internal"`` discrepancies.

    - the test size far outside the training size range (the model never saw objects that size);
    - a test pipeline that still holds a training-only (random) transform;
    - a mean/std in ImageNet's *other* channel order than the contract's ``input_format``;
    - a mean/std in the 0-1 scale where the model normalises 0-255 pixels;
    - a checkpoint written before the end of its schedule.
    """
    found: list[Discrepancy] = []
    test, train = training.resize, training.train_resize
    if (
        train is not None
        and train.kind in ("shortest_edge", "scale")
        and test.kind in ("shortest_edge", "scale")
        and train.min_size
        and test.min_size
        and all(s > 0 for s in test.min_size)
    ):
        lo, hi = min(train.min_size), max(train.min_size)
        if train.sample_style == "range" and len(train.min_size) == 2:
            lo, hi = train.min_size[0], train.min_size[1]
        for size in test.min_size:
            if size > hi * SIZE_RATIO_TRAP or size * SIZE_RATIO_TRAP < lo:
                found.append(
                    _trap(
                        training,
                        "resize.min_size",
                        test.min_size,
                        train.min_size,
                        f"{training.source}: {training.key('train_resize.min_size')}",
                        "warning",
                        f"test short edge {size} px is far outside the training range {lo}-{hi} px",
                        f"set {training.key('resize.min_size')} within {lo}-{hi} (objects then have the sizes "
                        "the model was trained on), unless the test images really are at another scale",
                    )
                )
    if training.test_transforms and not _TTA_TRANSFORMS & set(training.test_transforms):
        for name in training.test_transforms:
            if name in TRAINING_ONLY_TRANSFORMS or name.startswith("Random"):
                found.append(
                    _trap(
                        training,
                        "test_transforms",
                        name,
                        training.test_transforms,
                        training.where("test_transforms"),
                        "error",
                        f"the test pipeline contains the training-only transform {name}: "
                        "evaluation is random and differs from run to run",
                        f"remove {name} from {training.key('test_transforms')}",
                    )
                )
    other = "BGR" if training.input_format == "RGB" else "RGB"
    if training.pixel_mean:
        if _close(training.pixel_mean, _IMAGENET_MEAN[other]):
            found.append(
                _trap(
                    training,
                    "pixel_mean",
                    training.pixel_mean,
                    training.input_format,
                    training.where("input_format"),
                    "error",
                    f"pixel mean {_fmt(training.pixel_mean)} is ImageNet's mean in {other} order, but the model "
                    f"normalises {training.input_format} images (mean/std apply in {training.input_format} order)",
                    f"set {training.key('pixel_mean')} = {_fmt(_IMAGENET_MEAN[training.input_format])} "
                    f"({training.input_format} order) and retrain, or make {training.key('input_format')} "
                    f"{other} if the images really are {other}",
                )
            )
        if _close(training.pixel_std, _IMAGENET_STD[other], tol=0.05):
            found.append(
                _trap(
                    training,
                    "pixel_std",
                    training.pixel_std,
                    training.input_format,
                    training.where("input_format"),
                    "warning",
                    f"pixel std {_fmt(training.pixel_std)} is ImageNet's std in {other} order, but the model "
                    f"normalises {training.input_format} images",
                    f"set {training.key('pixel_std')} = {_fmt(_IMAGENET_STD[training.input_format])}",
                )
            )
    if training.pixel_mean and max(training.pixel_mean) <= 1.0 and max(training.pixel_std or (1.0,)) <= 1.0:
        if any(v > 0 for v in training.pixel_mean):
            found.append(
                _trap(
                    training,
                    "pixel_mean",
                    training.pixel_mean,
                    training.pixel_std,
                    training.where("pixel_std"),
                    "warning",
                    "mean and std look like the 0-1 scale, but the model normalises 0-255 pixel values",
                    f"multiply {training.key('pixel_mean')} and {training.key('pixel_std')} by 255",
                )
            )
    progress = training.progress
    if progress is not None and progress.finished is False:
        found.append(
            _trap(
                training,
                "progress",
                progress.describe(),
                None,
                training.source,
                "info",
                f"the checkpoint was written before the end of training ({progress.describe()})",
                "use the final checkpoint of the run if that was intended",
            )
        )
    return tuple(found)
