"""The safepredict bundle: what training knows and inference needs, written beside the checkpoint.

At the end of training (the framework hooks in ``safepredict.frameworks.<name>.hook``), on the
validation set the model was evaluated on, through the training contract's own pipeline:

- ``safepredict.lock``: the environment the model was validated in, weights (and config) pinned
  by sha256;
- ``safepredict-profile.json``: the reference profile the runtime monitor compares against;
- ``safepredict-golden/``: a few validation images and their detections, for the golden replay;
- ``safepredict-classes.json``: the class names (Detectron2's ``config.yaml`` records none).

``SafePredictor`` finds these beside the checkpoint with no argument (:func:`find`) and logs
that it uses them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from safepredict._logging import warn
from safepredict.errors import ConfigError, InputError

__all__ = ["CLASSES_FILENAME", "LOCK_FILENAME", "Bundle", "find", "write_bundle"]

logger = logging.getLogger("safepredict")

LOCK_FILENAME = "safepredict.lock"
CLASSES_FILENAME = "safepredict-classes.json"


@attrs.frozen
class Bundle:
    """The bundle files found beside a checkpoint (None where absent)."""

    folder: Path
    lock: Path | None = None
    profile: Path | None = None
    golden: Path | None = None
    classes: Path | None = None

    def is_empty(self) -> bool:
        return self.lock is None and self.profile is None and self.golden is None and self.classes is None

    def class_names(self) -> tuple[str, ...] | None:
        """The class names the bundle records, or None."""
        if self.classes is None:
            return None
        try:
            names = json.loads(self.classes.read_text(encoding="utf-8"))["class_names"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.classes} is not a safepredict class-names file: {exc}", source=str(self.classes)
            ) from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{self.classes}: class_names must be a list of strings", source=str(self.classes))
        return tuple(names)

    def describe(self) -> str:
        parts = ("lock", "profile", "golden", "classes")
        found = [f"{name} {path.name}" for name in parts if (path := getattr(self, name)) is not None]
        return f"safepredict bundle in {self.folder}: " + (", ".join(found) if found else "nothing")


def find(checkpoint: str | Path) -> Bundle:
    """The bundle files beside ``checkpoint``."""
    from safepredict.monitor.profile import PROFILE_FILENAME
    from safepredict.monitor.replay import GOLDEN_FILENAME, golden_dir

    folder = Path(checkpoint).resolve().parent
    lock = folder / LOCK_FILENAME
    golden = golden_dir(lock) / GOLDEN_FILENAME
    return Bundle(
        folder=folder,
        lock=lock if lock.is_file() else None,
        profile=(folder / PROFILE_FILENAME) if (folder / PROFILE_FILENAME).is_file() else None,
        golden=golden if golden.is_file() else None,
        classes=(folder / CLASSES_FILENAME) if (folder / CLASSES_FILENAME).is_file() else None,
    )


def write_bundle(
    checkpoint: str | Path,
    val_images: Sequence[str | Path],
    *,
    config: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    max_images: int = 200,
    golden: int = 8,
    predictor_kwargs: dict[str, Any] | None = None,
    factory: Any,
) -> Bundle:
    """Write the bundle beside ``checkpoint`` from its validation images; return what was written.

    ``factory`` builds that predictor (``SafePredictor.from_checkpoint``; passed in, so this module
    never imports the predictor, which reads the bundle). The predictor that computes the profile
    and the golden detections is a SafePredictor on the
    final checkpoint, so the bundle describes exactly what inference will see. ``config`` (the
    training config file) is pinned in the lock too when given. An empty ``val_images`` (a run
    with no validation set) writes the lock and the class names only, and says so.
    """
    from safepredict.autoref import build_reference
    from safepredict.lock import write_lock
    from safepredict.monitor.profile import PROFILE_FILENAME
    from safepredict.monitor.replay import capture_golden

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint {checkpoint} does not exist", found=str(checkpoint))
    images = [Path(p) for p in val_images if Path(p).is_file()][:max_images]
    if not images and len(val_images):
        raise InputError(
            "no validation image found to describe the model with",
            found=[str(p) for p in list(val_images)[:3]],
            fix="pass the validation images (Detectron2: DATASETS.TEST; mmengine: val_dataloader)",
        )
    folder = checkpoint.parent
    started = time.monotonic()
    if class_names:
        (folder / CLASSES_FILENAME).write_text(
            json.dumps({"class_names": list(class_names)}, indent=1) + "\n", encoding="utf-8"
        )
    lock_path = folder / LOCK_FILENAME
    write_lock(lock_path, weights=checkpoint, config=config)
    if not images:
        bundle = find(checkpoint)
        warn(
            f"{bundle.describe()}: no validation set, so no reference profile and no golden set "
            "(the runtime monitor runs without drift tests); give the hook dataset= or val_images=, "
            "or run `safepredict profile` and `safepredict golden` on validation images",
            code="bundle.no_validation_set",
        )
        return bundle
    kwargs = dict(predictor_kwargs or {})
    kwargs.setdefault("class_names", tuple(class_names) if class_names else None)
    # The bundle is not there yet: nothing beside the checkpoint to find but the lock just written.
    predictor = factory(checkpoint, monitor=False, bundle=False, **kwargs)
    # With the swapped signature (a few images also run red/blue swapped) the label-aware
    # channel-order checks need; the same builder as the automatic reference.
    profile = build_reference(
        predictor,
        images,
        class_names=predictor.class_names,
        swapped=min(50, len(images)),
        source=f"training hook, {len(images)} validation images",
    )
    profile.save(folder / PROFILE_FILENAME)
    if golden:
        capture_golden(predictor, images[:golden], lock_path)
    bundle = find(checkpoint)
    logger.info("%s (%d validation images, %.1f s)", bundle.describe(), len(images), time.monotonic() - started)
    return bundle
