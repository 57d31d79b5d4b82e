"""Compare the running environment with a lock, and act on the differences.

The check reads only what the lock names, and never imports torch (see :mod:`.capture`): it is
what a predictor runs at start-up and what ``safepredict check`` runs in a container entrypoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from safepredict._logging import warn
from safepredict.errors import EnvironmentMismatchError, InputError, IntegrityError
from safepredict.lock.capture import Probe, sha256_file
from safepredict.lock.entries import Lock, _to_tuple
from safepredict.lock.lockfile import read_lock
from safepredict.lock.rules import Value, compare, describe_rule

__all__ = ["LockReport", "Mismatch", "Unverified", "check_lock", "enforce", "refuse_changed_files"]

# What a difference in each entry does to a detector's output, in words.
_CONSEQUENCES: dict[str, str] = {
    "packages.torch": "operators, default algorithms and numerics change between torch builds: boxes, scores shift",
    "packages.torchvision": "NMS, RoIAlign and transforms change between torchvision releases: detections can differ",
    "packages.detectron2": "config defaults, pre/post-processing and model code change between Detectron2 versions",
    "packages.mmdet": "config defaults, pre/post-processing and model code change between MMDetection versions",
    "packages.mmcv": "mmcv's compiled ops (NMS, RoIAlign) and transforms differ: detections can differ",
    "packages.mmengine": "mmengine builds the model and loads the checkpoint: behaviour can change",
    "packages.opencv": "image decoding and resizing (interpolation) can change: boxes and scores shift",
    "packages.numpy": "numeric defaults and dtype promotion can change pre- and post-processing",
    "packages.pillow": "image decoding, EXIF handling and resizing can change inputs to the model",
    "torch.cuda": "a different CUDA runtime runs different kernels: numerics differ, and the build may not load",
    "torch.cudnn": "cuDNN picks other convolution algorithms: scores and boxes shift slightly, reproducibility is lost",
    "nvidia.driver": "the CUDA runtime may fail to start, or fall back to the CPU, whose numerics differ",
    "gpu.compute_capability": "another GPU generation runs other kernels (TF32 on Ampere and newer): numerics differ",
    "gpu.name": "another GPU model can run other kernels",
    "opencv.ipp": "OpenCV's resize and colour conversion use Intel IPP when built with it: pixel values differ",
    "opencv.parallel_framework": "OpenCV's threading backend changed: some resizes split work differently",
    "opencv.hal": "OpenCV's hardware-accelerated kernels changed: resize results can differ",
    "detectron2.version": "another Detectron2 source than the one validated, whatever its distribution says",
    "detectron2.c_extension": "Detectron2 ops in _C (deformable conv, rotated boxes) become unavailable or change",
    "mmcv.ops": "without mmcv's compiled ops, MMDetection models using NMS/RoIAlign cannot run",
    "python.version": "a different Python can change library builds and defaults",
    "platform.machine": "another CPU architecture runs other kernels: numerics differ",
    "files.weights": "these are not the weights that were validated",
    "files.config": "this is not the training config that was validated: preprocessing or the model can differ",
}
_DEFAULT_CONSEQUENCE = "results may differ from the validated environment"


def consequence(key: str) -> str:
    return _CONSEQUENCES.get(key, _DEFAULT_CONSEQUENCE)


@attrs.frozen
class Mismatch:
    """One difference between the lock and the running environment."""

    key: str  # packages.torch, facts key (torch.cuda), files.weights
    locked: Value
    found: Value
    rule: str
    consequence: str
    source: str = ""  # where the found value was read
    lock_path: str | None = None
    fix: str = ""
    requirement: str = ""  # the rule in words, with its numbers ("same major.minor (2.4.*)")

    @property
    def package(self) -> str | None:
        return self.key.split(".", 1)[1] if self.key.startswith("packages.") else None

    def describe(self) -> str:
        locked = "absent" if self.locked is None else self.locked
        found = "absent" if self.found is None else self.found
        where = f"{self.lock_path}: " if self.lock_path else ""
        lines = [
            f"{self.key}: locked {locked}, found {found} ({self.source or 'running environment'})",
            f"  rule: {self.rule}, {self.requirement or describe_rule(self.rule, self.locked)} [{where}{self.key}]",
            f"  consequence: {self.consequence}",
        ]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "package": self.package,
            "locked": self.locked,
            "found": self.found,
            "rule": self.rule,
            "requirement": self.requirement or describe_rule(self.rule, self.locked),
            "consequence": self.consequence,
            "source": self.source,
            "fix": self.fix,
        }


@attrs.frozen
class Unverified:
    """A locked entry that could not be read cheaply here, so it was neither passed nor failed."""

    key: str
    locked: Value
    reason: str

    def describe(self) -> str:
        return f"{self.key}: locked {self.locked}, not verified: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "locked": self.locked, "reason": self.reason}


@attrs.frozen
class LockReport:
    """The outcome of checking a lock: every mismatch, what could not be verified, and how much was checked."""

    mismatches: tuple[Mismatch, ...] = attrs.field(converter=_to_tuple)
    unverified: tuple[Unverified, ...] = attrs.field(default=(), converter=_to_tuple)
    checked: int = 0
    lock_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        where = self.lock_path or "the lock"
        if self.ok:
            head = f"environment matches {where} ({self.checked} entries checked)"
        else:
            head = f"environment differs from {where}: {len(self.mismatches)} of {self.checked} entries"
        lines = [head] + [m.describe() for m in self.mismatches]
        lines += [u.describe() for u in self.unverified]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lock": self.lock_path,
            "checked": self.checked,
            "mismatches": [m.to_dict() for m in self.mismatches],
            "unverified": [u.to_dict() for u in self.unverified],
        }


def _fix_for_package(name: str, dist: str | None, version: Value, origin: str | None) -> str:
    if version is None:
        return f"uninstall {dist or name}, or re-run `safepredict lock` if it is meant to be there"
    if origin == "conda":
        return f"conda install '{dist or name}={version}', or relax the rule in the lock if the change is intended"
    return f"pip install '{dist or name}=={version}', or relax the rule in the lock if the change is intended"


_FIX_FACT = (
    "install the locked version, or re-run `safepredict lock` (or relax this entry's rule) if the change is intended"
)


def check_lock(
    lock_or_path: Lock | str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    deep: bool = False,
    probe: Probe | None = None,
) -> LockReport:
    """Compare the running environment with a lock, entry by entry, under each entry's rule.

    ``weights``/``config`` are the files this process uses; when not given, the files the lock
    names are hashed (their paths relative to the lock's folder). ``deep`` lets the check import
    torch to read what it cannot read from files (cuDNN without a cuDNN distribution).
    """
    if not isinstance(lock_or_path, Lock):
        from safepredict.lock.external import check_external, detect_format

        if detect_format(lock_or_path) != "safepredict":
            # A conda-lock.yml / pixi.lock / @EXPLICIT file: package versions only, no model files.
            return check_external(lock_or_path, deep=deep, probe=probe)
    lock = lock_or_path if isinstance(lock_or_path, Lock) else read_lock(lock_or_path)
    p = probe or Probe(deep=deep)
    env = lock.environment
    context: Mapping[str, Value] = env.fact_values()
    mismatches: list[Mismatch] = []
    unverified: list[Unverified] = []
    checked = 0

    for pkg in env.packages:
        if pkg.rule == "record":
            continue
        checked += 1
        now = p.package(pkg.name, distribution=pkg.distribution, origin=pkg.origin)
        if not compare(pkg.rule, pkg.version, now.version, context):
            found_in = f"{now.origin} distribution {now.distribution}" if now.version is not None else "not installed"
            mismatches.append(
                Mismatch(
                    pkg.key,
                    pkg.version,
                    now.version,
                    pkg.rule,
                    consequence(pkg.key),
                    found_in,
                    lock.path,
                    _fix_for_package(pkg.name, pkg.distribution, pkg.version, pkg.origin),
                )
            )
        elif (
            pkg.version is not None
            and now.version is not None
            and pkg.origin != now.origin
            and "absent" not in (pkg.origin, now.origin)
        ):
            # Same version from another installer is another build (conda's pytorch links other
            # BLAS/MKL and CUDA libraries than the pip wheel).
            mismatches.append(
                Mismatch(
                    f"{pkg.key}.origin",
                    pkg.origin,
                    now.origin,
                    "exact",
                    f"{pkg.name} {now.version} from {now.origin} is not the build from {pkg.origin}",
                    f"distribution {now.distribution}",
                    lock.path,
                    f"install {pkg.name} from {pkg.origin}, or re-run `safepredict lock`",
                )
            )

    for fact in env.facts:
        if fact.rule == "record":
            continue
        checked += 1
        found = p.fact(fact.key)
        if not found.known:
            unverified.append(Unverified(fact.key, fact.value, found.source))
            continue
        if not compare(fact.rule, fact.value, found.value, context):
            mismatches.append(
                Mismatch(
                    fact.key,
                    fact.value,
                    found.value,
                    fact.rule,
                    consequence(fact.key),
                    found.source,
                    lock.path,
                    _FIX_FACT,
                    describe_rule(fact.rule, fact.value, context),
                )
            )

    given = {"weights": weights, "config": config}
    base = Path(lock.path).parent if lock.path else Path.cwd()
    for entry in env.files:
        if entry.rule == "record":
            continue
        checked += 1
        chosen = given.get(entry.role)
        path = Path(chosen) if chosen is not None else base / entry.path
        key = entry.key
        if not path.is_file():
            if given.get(entry.role) is not None:
                raise InputError(f"{entry.role} file {str(path)!r} does not exist", source=str(path))
            mismatches.append(
                Mismatch(
                    key,
                    entry.sha256,
                    None,
                    entry.rule,
                    consequence(key),
                    f"{path} (missing)",
                    lock.path,
                    f"pass the {entry.role} file with --{entry.role}, or put it at {path}",
                )
            )
            continue
        digest = sha256_file(path)
        if digest != entry.sha256:
            mismatches.append(
                Mismatch(
                    key,
                    entry.sha256,
                    digest,
                    entry.rule,
                    consequence(key),
                    str(path),
                    lock.path,
                    f"use the validated {entry.role} ({entry.path}), or re-lock with `--{entry.role} {path}`",
                )
            )
    return LockReport(mismatches, unverified, checked, lock.path)


def refuse_changed_files(report: LockReport, lock: str | os.PathLike[str]) -> None:
    """Raise IntegrityError when a model file differs from the lock: integrity refuses whatever the policy."""
    files = [m for m in report.mismatches if m.key.startswith("files.")]
    if files:
        raise IntegrityError(
            "refusing to load model files that differ from the lock (nothing was deserialised):\n"
            + "\n".join(f"  {m.key}: locked sha256 {m.locked}, found {m.found} ({m.source})" for m in files),
            expected={m.key: m.locked for m in files},
            found={m.key: m.found for m in files},
            source=str(lock),
            fix="use the files the lock was written for, or re-run `safepredict lock` if the change is intended",
            details=files,
        )


def enforce(report: LockReport, on_mismatch: str = "warn") -> LockReport:
    """Act on a report: ``"warn"`` warns once per check (code ``env.mismatch``), ``"error"`` raises.

    The raised :class:`EnvironmentMismatchError` carries ``expected``/``found`` as
    ``{key: value}`` mappings and the mismatches themselves in ``details``.
    """
    if on_mismatch not in ("warn", "error"):
        raise InputError(
            f"on_mismatch must be 'warn' or 'error', not {on_mismatch!r}", expected=("warn", "error"), found=on_mismatch
        )
    if report.ok:
        return report
    message = report.describe()
    if on_mismatch == "error":
        raise EnvironmentMismatchError(
            message,
            expected={m.key: m.locked for m in report.mismatches},
            found={m.key: m.found for m in report.mismatches},
            source=report.lock_path,
            fix="install what the lock names, or re-run `safepredict lock` if the change is intended",
            details=report.mismatches,
        )
    warn(message, code="env.mismatch", lock=report.lock_path, mismatches=[m.to_dict() for m in report.mismatches])
    return report
