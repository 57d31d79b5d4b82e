"""The environment lock: pin the environment a model was validated in, and check it at start-up.

::

    from safepredict.lock import write_lock, check_lock, enforce

    write_lock("safepredict.lock", weights="model_final.pth", config="config.yaml")  # at training
    enforce(check_lock("safepredict.lock", weights=w, config=c), on_mismatch="error")  # at start-up

The format, the rules and the CI recipe are in ``docs/lock.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from safepredict.lock.capture import Probe, capture_environment, file_entry
from safepredict.lock.check import LockReport, Mismatch, Unverified, check_lock, enforce, refuse_changed_files
from safepredict.lock.entries import CondaRecord, Environment, Fact, FileEntry, Lock, PackageEntry
from safepredict.lock.lockfile import SCHEMA_VERSION, new_lock, read_lock, write_lock_file
from safepredict.lock.rules import RULES

__all__ = [
    "RULES",
    "SCHEMA_VERSION",
    "CondaRecord",
    "Environment",
    "Fact",
    "FileEntry",
    "Lock",
    "LockReport",
    "Mismatch",
    "PackageEntry",
    "Probe",
    "Unverified",
    "capture_environment",
    "check_lock",
    "enforce",
    "read_lock",
    "refuse_changed_files",
    "write_lock",
]


def write_lock(
    path: str | os.PathLike[str],
    env: Environment | None = None,
    *,
    weights: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    extra_packages: Iterable[str] = (),
) -> Lock:
    """Capture the running environment (unless ``env`` is given) and write it as a lock at ``path``.

    Paths of ``weights`` and ``config`` inside the lock's folder are stored relative to it, so the
    folder can move (into a container image) with its lock.
    """
    folder = Path(path).resolve().parent
    if env is None:
        env = capture_environment(extra_packages, weights, config, relative_to=folder)
    elif weights is not None or config is not None:
        pinned = [
            file_entry(role, f, relative_to=folder) for role, f in (("weights", weights), ("config", config)) if f
        ]
        roles = {f.role for f in pinned}
        env = attrs.evolve(env, files=[f for f in env.files if f.role not in roles] + pinned)
    return write_lock_file(new_lock(env), path)
