"""The automatic reference: a monitor reference profile made once from the validation set training used.

A model trained without the safepredict training hook has no ``safepredict-profile.json`` beside
it, and almost nobody runs ``safepredict profile``. Its training config usually still names the
validation set, and on the machine it was trained on (or any machine with the data) the files are
there. So, when a :class:`~safepredict.SafePredictor` with a monitor has no reference:

1. the cache (``<user cache>/safepredict/references/``, or ``$SAFEPREDICT_REFERENCES``) is looked
   up by the checkpoint's sha256 (and the training config's, where it is a separate file);
2. if absent, the framework layer names the validation images
   (``safepredict.frameworks.<name>.validation``); without any, the monitor runs without a reference
   (it then takes the stream's own first images as its baseline);
3. a bounded sample of them (:data:`MAX_IMAGES`, evenly spread, within :data:`MAX_SECONDS`) runs
   through the *training* pipeline (the training contract, its score threshold, no user override),
   plus :data:`SWAPPED_IMAGES` of them with red and blue swapped (the label-aware channel-order
   evidence), into a :class:`~safepredict.monitor.ReferenceProfile` cached for the next time.

It is logged once at INFO with its one-off cost. ``SafePredictor(auto_reference=False)`` or
``monitor=False`` turns it off, and ``SAFEPREDICT_AUTO_REFERENCE=0`` turns it off for the process
(a test suite, a batch job that must not read other files).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from filelock import FileLock

from safepredict.monitor.profile import ProfileBuilder, ReferenceProfile

__all__ = [
    "MAX_IMAGES",
    "MAX_SECONDS",
    "SWAPPED_IMAGES",
    "ValidationSet",
    "automatic_reference",
    "build_reference",
    "cached_reference",
    "find_validation_set",
    "references_dir",
]

logger = logging.getLogger("safepredict")

MAX_IMAGES = 200  # validation images in an automatic profile
SWAPPED_IMAGES = 50  # of those, also run with red and blue swapped
MAX_SECONDS = 120.0  # stop adding images after this (a large model on a CPU), keeping what is done
MIN_IMAGES = 20  # fewer than this within MAX_SECONDS: no profile
# Bump when what an automatic profile holds changes: older cache entries are then rebuilt.
RECIPE = 4  # 4: input statistics recipe 2 (monitor.stats.INPUT_RECIPE); 3: MMDetection candidates capped


@attrs.frozen
class ValidationSet:
    """Validation images found for a checkpoint, their class names if known, and where they came from."""

    images: tuple[Path, ...]
    class_names: tuple[str, ...] | None
    source: str


def enabled() -> bool:
    """Whether the process allows automatic references (``SAFEPREDICT_AUTO_REFERENCE``, default on)."""
    return os.environ.get("SAFEPREDICT_AUTO_REFERENCE", "1").strip().lower() not in ("0", "false", "no", "off")


def references_dir() -> Path:
    """Where automatic profiles are cached: ``$SAFEPREDICT_REFERENCES``, else ``<cache>/references``.

    ``<cache>`` is ``$SAFEPREDICT_CACHE`` or the user cache directory (``platformdirs``).
    """
    env = os.environ.get("SAFEPREDICT_REFERENCES")
    if env:
        return Path(env)
    root = os.environ.get("SAFEPREDICT_CACHE")
    if root:
        return Path(root) / "references"
    import platformdirs

    return Path(platformdirs.user_cache_dir("safepredict")) / "references"


# --------------------------------------------------------------------------- the cache key


def _sha256(path: Path, memo: Path) -> str:
    """The file's sha256, remembered by (path, size, mtime) so a 100 MB checkpoint is hashed once."""
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(ident), str):
        return str(known[ident])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    known = known if isinstance(known, dict) else {}
    known[ident] = value
    if len(known) > 256:  # a bounded memo: the oldest entries go
        known = dict(list(known.items())[-256:])
    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        tmp.replace(memo)
    return value


def _has_profiles(folder: Path) -> bool:
    try:
        return any(folder.glob(f"*-r{RECIPE}.json"))
    except OSError:
        return False


def _cache_key(predictor: Any, folder: Path) -> str | None:
    """:func:`_key`, or None (logged) for an unreadable checkpoint or cache folder: no reference, no failure."""
    try:
        return _key(predictor, folder)
    except Exception as exc:  # noqa: BLE001
        logger.debug("no automatic reference: %s", exc)
        return None


def _key(predictor: Any, folder: Path) -> str:
    memo = folder / "sha256-memo.json"
    parts = [_sha256(Path(predictor.artifact.checkpoint), memo)[:32]]
    source = predictor.artifact.training_source
    config = Path(source) if isinstance(source, str) and source and Path(source).is_file() else None
    if config is not None and config.resolve() != Path(predictor.artifact.checkpoint).resolve():
        parts.append(_sha256(config, memo)[:16])  # Detectron2: config.yaml beside the weights
    return "-".join(parts) + f"-r{RECIPE}"


# --------------------------------------------------------------------------- finding and building


def find_validation_set(predictor: Any) -> ValidationSet | None:
    """The validation images the predictor's training config names and this machine has, or None."""
    try:
        module = importlib.import_module(f"safepredict.frameworks.{predictor.framework}.validation")
        found = module.validation_images(predictor.artifact.training_cfg, Path(predictor.artifact.checkpoint))
    except Exception as exc:  # noqa: BLE001 - looking for optional files never breaks a predictor
        logger.debug("no validation set found for %s: %s", predictor.artifact.checkpoint, exc)
        return None
    if not found:
        return None
    images, names, source = found
    return ValidationSet(tuple(Path(p) for p in images), None if names is None else tuple(names), source)


def _spread(paths: Sequence[Path], limit: int) -> list[Path]:
    """At most ``limit`` of ``paths``, evenly spread over the list (reproducible: no randomness)."""
    if len(paths) <= limit:
        return list(paths)
    step = len(paths) / limit
    return [paths[int(i * step)] for i in range(limit)]


def _class_names(predictor: Any, found: ValidationSet) -> tuple[str, ...] | None:
    names = predictor.class_names
    if names is not None:
        return tuple(names)
    expected = predictor.contract.num_classes
    if found.class_names is not None and (not expected or len(found.class_names) == expected):
        return found.class_names
    return None


def _training_pipeline(predictor: Any) -> Any:
    """A predictor of the training pipeline: this one when the user changed nothing, else a fresh one."""
    if predictor.applied_contract is predictor.artifact.training_contract:
        return predictor
    kwargs = dict(predictor._init_kwargs)
    # The predictor's own class: this module never imports the predictor (which calls it).
    return type(predictor)(
        checkpoint=predictor.artifact.checkpoint,
        training_config=kwargs.get("training_config"),
        class_names=kwargs.get("class_names"),
        device=predictor.device,
        trust=bool(kwargs.get("trust")),
        strict=bool(kwargs.get("strict", True)),
        monitor=False,
        bundle=False,
    )


def build_reference(
    predictor: Any,
    images: Sequence[str | os.PathLike[str]],
    *,
    class_names: Sequence[str] | None = None,
    swapped: int = SWAPPED_IMAGES,
    max_seconds: float | None = None,
    source: str = "",
) -> ReferenceProfile:
    """A reference profile of ``images`` through ``predictor``, with ``swapped`` of them also fed swapped.

    Every image is decoded as the framework's evaluation decodes files; the swapped ones are the
    same pixels with red and blue exchanged, which records what a channel-order mistake makes of
    this model's class shares (``swapped_class_share``). The training hooks' bundle and
    ``safepredict profile`` build theirs the same way. ``max_seconds`` stops early (at least
    :data:`MIN_IMAGES` images are needed).
    """
    builder = ProfileBuilder(
        # Where the predictor's monitor cuts candidates (the score threshold, or 0 for a model that
        # keeps its own candidates): the profile must be cut where the monitor cuts.
        score_threshold=getattr(predictor, "monitor_threshold", predictor.score_threshold),
        class_names=tuple(class_names) if class_names is not None else predictor.class_names,
        threshold_key=predictor.threshold_key,
    )
    paths = list(images)
    every = max(1, len(paths) // max(swapped, 1)) if swapped else 0
    started = time.monotonic()
    done = 0
    for index, path in enumerate(paths):
        rgb, candidates = predictor.predict_candidates(path)
        builder.add(rgb, candidates)
        if every and index % every == 0 and index // every < swapped:
            swapped_rgb = np.ascontiguousarray(rgb[:, :, ::-1])
            builder.add_swapped(predictor.predict_candidates(swapped_rgb, color="RGB")[1], given=candidates)
        done += 1
        if done % 50 == 0:
            logger.info("automatic reference: %d of %d images (%.0f s)", done, len(paths), time.monotonic() - started)
        if max_seconds is not None and time.monotonic() - started > max_seconds and done >= MIN_IMAGES:
            logger.info("automatic reference: stopping at %d images, after %.0f s", done, max_seconds)
            break
    builder.source = source or f"{done} images"
    return builder.build()


def cached_reference(predictor: Any) -> ReferenceProfile | None:
    """The automatic reference already cached for this predictor's checkpoint, or None (never builds)."""
    if not enabled():
        return None
    try:
        folder = references_dir()
        path = folder / f"{_key(predictor, folder)}.json"
        return _fit(ReferenceProfile.load(path), predictor) if path.is_file() else None
    except Exception as exc:  # noqa: BLE001 - an unreadable cache entry is rebuilt, never fatal
        logger.debug("automatic reference cache unreadable: %s", exc)
        return None


def _fit(profile: ReferenceProfile, predictor: Any) -> ReferenceProfile:
    """The cached profile under this predictor's class names (labels are indices; the names are words)."""
    names = predictor.class_names
    if names is not None and profile.class_names != tuple(names) and len(names) == profile.n_classes:
        return attrs.evolve(profile, class_names=tuple(names))
    return profile


def automatic_reference(
    predictor: Any,
    *,
    max_images: int = MAX_IMAGES,
    swapped: int = SWAPPED_IMAGES,
    max_seconds: float = MAX_SECONDS,
) -> ReferenceProfile | None:
    """The automatic reference of ``predictor``'s checkpoint: cached, built now, or None (see the module docstring)."""
    if not enabled():
        return None
    folder = references_dir()
    # The key hashes the checkpoint (once per file: memoised by path, size and mtime). With no
    # cached profile of this recipe at all, nothing can hit, so the hash waits until there is a
    # validation set to build from.
    key = _cache_key(predictor, folder) if _has_profiles(folder) else None
    if key is not None:
        cached = _load(folder / f"{key}.json", predictor)
        if cached is not None:
            return cached
    found = find_validation_set(predictor)
    if found is not None and found.images and key is None:
        key = _cache_key(predictor, folder)
    if key is None or found is None or not found.images:
        logger.info(
            "monitor: no reference profile and no validation images named by the training config found on this "
            "machine; the stream's own first images will be its baseline (train with the safepredict hook, or run "
            "`safepredict profile`, for a reference)"
        )
        return None
    path = folder / f"{key}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # One builder per key across processes (pytest workers, several services starting at once).
        with FileLock(folder / f"{key}.lock"):
            cached = _load(path, predictor)  # another process may have built it meanwhile
            if cached is not None:
                return cached
            return _build_and_cache(predictor, found, path, max_images, swapped, max_seconds)
    except Exception as exc:  # noqa: BLE001 - the monitor goes on without; the cause is logged
        logger.warning("monitor: could not build the automatic reference profile (%s: %s)", type(exc).__name__, exc)
        return None


def _load(path: Path, predictor: Any) -> ReferenceProfile | None:
    if not path.is_file():
        return None
    try:
        profile = _fit(ReferenceProfile.load(path), predictor)
    except Exception as exc:  # noqa: BLE001 - a broken cache entry is rebuilt
        logger.debug("automatic reference %s unreadable (%s): rebuilding", path, exc)
        return None
    logger.info("monitor: using the automatic reference profile %s (%s)", path, profile.source)
    return profile


def _build_and_cache(
    predictor: Any, found: ValidationSet, path: Path, max_images: int, swapped: int, max_seconds: float
) -> ReferenceProfile:
    images = _spread([p for p in found.images if p.is_file()], max_images)
    logger.info(
        "monitor: no reference profile beside the checkpoint; building one, once, from %d validation images of %s "
        "(cached in %s)",
        len(images),
        found.source,
        path.parent,
    )
    started = time.monotonic()
    pipeline = _training_pipeline(predictor)
    profile = build_reference(
        pipeline,
        images,
        class_names=_class_names(pipeline, found),
        swapped=min(swapped, len(images)),
        max_seconds=max_seconds,
        source=f"automatic: validation images of {found.source}",
    )
    seconds = time.monotonic() - started
    profile = attrs.evolve(profile, source=f"automatic, {profile.n_images} validation images of {found.source}")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    logger.info(
        "monitor: automatic reference profile of %d validation images (%d also with red and blue swapped) built in "
        "%.1f s, once: %s",
        profile.n_images,
        min(swapped, profile.n_images),
        seconds,
        path,
    )
    return _fit(profile, predictor)
