"""Lockfiles of the conda ecosystem as the expected environment: conda-lock, pixi.lock, ``@EXPLICIT``.

``safepredict check conda-lock.yml`` compares the running environment with what such a file pins
and reports in the words of a safepredict lock's check (:class:`~safepredict.lock.check.Mismatch`,
:class:`~safepredict.lock.check.LockReport`). Each file is read by its own ecosystem's parser:
``conda-lock.yml`` by conda-lock's ``parse_conda_lock_file`` (py-rattler's ``LockFile`` when
conda-lock is not installed), ``pixi.lock`` by py-rattler's ``LockFile``, an ``@EXPLICIT`` spec by
py-rattler's ``ExplicitEnvironmentSpec``. Neither parser is a dependency of safepredict: reading
a file that needs one that is missing says what to install.

How an entry is compared (the file's entries for this machine's platform):

- conda ``python``, ``cuda-version`` / ``cudatoolkit`` and ``cudnn`` pin facts of the environment:
  ``python.version``, ``torch.cuda``, ``torch.cudnn``, under the lock's default rules;
- the packages a detector's results depend on are found under their Python distributions
  (conda ``pytorch`` is the ``torch`` distribution, ``py-opencv`` any ``opencv-python*`` wheel) and
  held under the lock's default rules (torch exactly, numpy within a minor release, ...);
- every other entry is held exactly, as the file pins it: a PyPI entry against the distribution
  of its name, a conda entry against the distribution of its name (or of its name without
  ``py-``) when one is installed;
- in a conda environment a conda entry is read from its ``conda-meta`` record, build included;
- what cannot be mapped to anything installed here (a native conda library outside a conda
  environment, a conda Python package whose PyPI name differs) is reported as unverified, not as
  failed; ``--strict`` counts it as a failure.

A conda lockfile says which installer each package came from, but a conda build and a pip wheel
of one version cannot be compared by their metadata: for the packages results depend on, a check
in an environment of the other installer passes on the version and reports the build as
unverified (a safepredict lock records the installer, and there another installer is a mismatch).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from packaging.version import InvalidVersion, Version

from safepredict.errors import LockError, LockFormatError
from safepredict.lock.capture import ONNXRUNTIME_DISTRIBUTIONS, Probe
from safepredict.lock.check import LockReport, Mismatch, Unverified, consequence
from safepredict.lock.conda import current_subdir
from safepredict.lock.entries import _to_tuple
from safepredict.lock.rules import DEFAULT_FACT_RULES, DEFAULT_PACKAGE_RULES, Value, compare, describe_rule

__all__ = [
    "CONDA_FACTS",
    "CONDA_PACKAGES",
    "DISTRIBUTIONS",
    "FORMATS",
    "ExternalLock",
    "LockedEntry",
    "check_external",
    "detect_format",
    "read_external",
]

FORMATS = ("conda-lock", "pixi", "explicit")

# A conda package that pins a fact of the environment rather than a Python distribution.
CONDA_FACTS: dict[str, str] = {
    "python": "python.version",
    "cuda-version": "torch.cuda",
    "cudatoolkit": "torch.cuda",
    "cudnn": "torch.cudnn",
}
# conda package -> safepredict's name of the package it provides. Where several provide one
# (conda-forge's `opencv` and `pytorch-gpu` are metapackages of `py-opencv` and `pytorch`), the
# first listed is the one compared.
CONDA_PACKAGES: dict[str, str] = {
    "pytorch": "torch",
    "pytorch-gpu": "torch",
    "pytorch-cpu": "torch",
    "torchvision": "torchvision",
    "py-opencv": "opencv",
    "opencv": "opencv",
    "numpy": "numpy",
    "pillow": "pillow",
    "detectron2": "detectron2",
    "mmdet": "mmdet",
    "mmcv": "mmcv",
    "mmcv-full": "mmcv",
    "mmengine": "mmengine",
}
# safepredict's package name -> the Python distributions that install it.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "detectron2": ("detectron2", "sal-detectron2"),
    "mmdet": ("mmdet",),
    "mmcv": ("mmcv", "mmcv-full", "mmcv-lite"),
    "mmengine": ("mmengine",),
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "numpy": ("numpy",),
    "pillow": ("pillow",),
    "onnxruntime": ONNXRUNTIME_DISTRIBUTIONS,
}


def _norm(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Pillow``, ``pillow``; ``py_opencv``, ``py-opencv``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


_DIST_PACKAGE = {_norm(d): name for name, dists in DISTRIBUTIONS.items() for d in dists}


@attrs.frozen
class LockedEntry:
    """One package a conda-ecosystem lockfile pins, as the file writes it."""

    name: str
    version: str
    manager: str = attrs.field(validator=attrs.validators.in_({"conda", "pypi"}))
    build: str = ""
    # conda: whether the package is a Python package (depends on python); None when the file cannot tell
    python: bool | None = None
    # conda-lock: only in optional categories (dev, extras), which `conda-lock install` leaves out by default
    optional: bool = False

    def describe(self) -> str:
        build = f"={self.build}" if self.build else ""
        return f"{self.manager} package {self.name}={self.version}{build}"


@attrs.frozen
class ExternalLock:
    """A conda-ecosystem lockfile, reduced to the entries for one platform of one environment."""

    path: str
    format: str = attrs.field(validator=attrs.validators.in_(set(FORMATS)))
    platform: str  # the platform whose entries are held; "" when the file locks none of this machine's
    entries: tuple[LockedEntry, ...] = attrs.field(converter=_to_tuple)
    platforms: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)  # every platform it locks
    environment: str = ""  # pixi: the environment read
    parser: str = ""  # the parser that read it, for the record

    def describe(self) -> str:
        env = f", environment {self.environment}" if self.environment else ""
        platform = self.platform or "no platform of this machine"
        head = f"{self.format} lockfile {self.path} ({platform}{env}; read by {self.parser})"
        return "\n".join([head, *(f"  {e.describe()}" for e in self.entries)])


# -- reading -------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike[str]) -> str:
    """The kind of lockfile at ``path``: ``safepredict``, or one of :data:`FORMATS`.

    By name first (``pixi.lock``, ``*conda-lock.yml``), then by content (an ``@EXPLICIT`` line; a
    YAML ``version:`` with conda-lock's ``package:`` or rattler's ``environments:``). Anything
    else is taken for a safepredict lock, whose reader names what is wrong with it.
    """
    p = Path(path)
    name = p.name.lower()
    if name == "pixi.lock":
        return "pixi"
    if name.endswith(("conda-lock.yml", "conda-lock.yaml")):
        return "conda-lock"
    try:
        with p.open("rb") as fh:
            head = fh.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return "safepredict"
    if re.search(r"^@EXPLICIT\s*$", head, re.MULTILINE):
        return "explicit"
    if re.search(r"^version:\s*\d+\s*$", head, re.MULTILINE):
        if re.search(r"^environments:", head, re.MULTILINE):
            return "pixi"
        if re.search(r"^package:", head, re.MULTILINE):
            return "conda-lock"
    return "safepredict"


def read_external(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    platform: str | None = None,
    environment: str | None = None,
) -> ExternalLock:
    """Read a conda-lock, pixi or ``@EXPLICIT`` lockfile with its ecosystem's parser.

    ``platform`` (default: this machine's conda platform) chooses whose entries are kept;
    ``environment`` a pixi environment (default ``default``). Every failure is a
    :class:`~safepredict.errors.LockError`.
    """
    source = str(path)
    p = Path(path)
    if not p.is_file():
        raise LockError(f"no lockfile at {source!r}", source=source, fix="pass the path of the lockfile")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise LockFormatError(
            f"{source} is not a conda-lock, pixi or @EXPLICIT lockfile", expected=FORMATS, found=fmt, source=source
        )
    want = platform or current_subdir() or ""
    if fmt == "conda-lock":
        try:
            import conda_lock.lockfile  # noqa: F401 - the format's own parser, when installed
        except ImportError:
            return _read_rattler(p, "conda-lock", want, environment)
        return _read_conda_lock(p, want)
    if fmt == "pixi":
        return _read_rattler(p, "pixi", want, environment)
    return _read_explicit(p, want)


def _unreadable(source: str, parser: str, exc: BaseException) -> LockFormatError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return LockFormatError(
        f"{source}: {parser} cannot read it: {first}",
        source=source,
        fix="restore the file from version control, or re-create it with the tool that wrote it",
    )


def _needs(package: str, what: str, source: str) -> LockError:
    return LockError(
        f"reading {what} {source} needs {package}, which is not installed",
        source=source,
        fix=f"pip install {package} (or safepredict[conda], which brings conda-lock and py-rattler)",
    )


def _choose_platform(platforms: Iterable[str], want: str) -> str:
    listed = list(platforms)
    if want in listed:
        return want
    return listed[0] if len(listed) == 1 else ""


def _archive_parts(url: str) -> tuple[str, str, str]:
    """``(name, version, build)`` of a conda archive URL: ``name-version-build.conda``.

    Versions and builds hold no ``-``; names may (conda's own rule for archive names).
    """
    filename = url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    suffix = next((s for s in (".conda", ".tar.bz2") if filename.endswith(s)), None)
    parts = filename[: -len(suffix)].rsplit("-", 2) if suffix else []
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a conda package archive name: {filename!r}")
    return parts[0], parts[1], parts[2]


def _read_conda_lock(p: Path, want: str) -> ExternalLock:
    from conda_lock.lockfile import parse_conda_lock_file

    parser = "conda_lock.lockfile.parse_conda_lock_file"
    try:
        parsed = parse_conda_lock_file(p)
    except Exception as exc:  # noqa: BLE001 - yaml, pydantic and version errors: one message for all
        raise _unreadable(str(p), parser, exc) from None
    platforms = tuple(parsed.metadata.platforms)
    chosen = _choose_platform(platforms, want)
    entries = []
    for dep in parsed.package:
        if dep.platform != chosen:
            continue
        if dep.manager == "conda":
            build = dep.build or _safe_build(dep.url)
            python = "python" in dep.dependencies
            entries.append(LockedEntry(dep.name, dep.version, "conda", build, python, "main" not in dep.categories))
        else:
            entries.append(LockedEntry(dep.name, dep.version, "pypi", optional="main" not in dep.categories))
    return ExternalLock(str(p), "conda-lock", chosen, entries, platforms, parser=parser)


def _safe_build(url: str) -> str:
    try:
        return _archive_parts(url)[2]
    except ValueError:
        return ""


def _read_rattler(p: Path, fmt: str, want: str, environment: str | None) -> ExternalLock:
    try:
        import rattler
    except ImportError:
        raise _needs("py-rattler", "the conda-lock file" if fmt == "conda-lock" else "the pixi.lock", str(p)) from None
    parser = "rattler.LockFile.from_path"
    try:
        lock = rattler.LockFile.from_path(p)
    except Exception as exc:  # noqa: BLE001 - rattler raises its own exception classes per problem
        raise _unreadable(str(p), parser, exc) from None
    envs = dict(lock.environments())
    name = environment or "default"
    if name not in envs:
        raise LockError(
            f"{p} has no environment {name!r} (it has: {', '.join(sorted(envs)) or 'none'})",
            expected=sorted(envs),
            found=name,
            source=str(p),
            fix="pass --environment with one of those",
        )
    by_platform = {str(pl.name): pkgs for pl, pkgs in envs[name].packages_by_platform().items()}
    platforms = tuple(str(pl.name) for pl in lock.platforms())
    chosen = _choose_platform(platforms, want)
    entries = []
    for pkg in by_platform.get(chosen, []):
        if isinstance(pkg, rattler.PypiLockedPackage):
            entries.append(LockedEntry(pkg.name, str(pkg.version), "pypi"))
            continue
        record: Any = getattr(pkg, "package_record", None)
        if record is None:  # a pixi source package whose metadata was never evaluated
            continue
        depends = [str(d).split()[0] for d in record.depends]
        python = "python" in depends or str(getattr(record, "noarch", "")).lower().endswith("python")
        entries.append(LockedEntry(str(record.name.source), str(record.version), "conda", str(record.build), python))
    return ExternalLock(str(p), fmt, chosen, entries, platforms, environment=name, parser=parser)


def _read_explicit(p: Path, want: str) -> ExternalLock:
    try:
        from rattler.explicit_environment import ExplicitEnvironmentSpec
    except ImportError:
        raise _needs("py-rattler", "the @EXPLICIT spec", str(p)) from None
    parser = "rattler.explicit_environment.ExplicitEnvironmentSpec.from_path"
    try:
        spec = ExplicitEnvironmentSpec.from_path(p)
        urls = [e.url for e in spec.packages]
        named = [_archive_parts(url) for url in urls]
    except Exception as exc:  # noqa: BLE001 - rattler's parse errors and archive names that are not conda's
        raise _unreadable(str(p), parser, exc) from None
    platforms = (str(spec.platform),) if spec.platform is not None else ()
    # Without a `# platform:` line the file does not say: it is taken as this machine's.
    chosen = _choose_platform(platforms, want) if platforms else want
    # The file records no dependencies; a Python package's build names its Python (py311h...,
    # cuda126_py311_..., pyhd8ed1ab_0 for noarch python). Other builds do not tell either way.
    entries = [
        LockedEntry(name, version, "conda", build, True if re.search(r"(^|_)py(\d|h)", build) else None)
        for name, version, build in named
    ]
    if platforms and not chosen:
        entries = []
    return ExternalLock(str(p), "explicit", chosen, entries, platforms, parser=parser)


# -- checking ------------------------------------------------------------------------------------


@attrs.frozen
class _Found:
    version: str | None
    source: str
    origin: str = "absent"
    distribution: str | None = None
    build: str = ""


def _installed(p: Probe, entry: LockedEntry, candidates: Iterable[str], package: str | None) -> _Found:
    """The installed counterpart of ``entry``: its conda-meta record, else the first candidate distribution."""
    if entry.manager == "conda" and p.prefixes:
        hit = p.conda_record(entry.name)
        if hit is not None:
            rec = hit[1]
            return _Found(
                str(rec.get("version")),
                f"conda-meta record {entry.name}",
                "conda",
                entry.name,
                str(rec.get("build", "")),
            )
    for cand in candidates:
        dist = p.distribution(cand)
        if dist is not None:
            name, version = p.name_version(dist)
            origin = p.origin(dist)
            return _Found(version, f"{origin} distribution {name}", origin, name)
    if package is not None:  # installed under a distribution name of its own: find it by its import name
        now = p.package(package)
        if now.version is not None:
            return _Found(now.version, f"{now.origin} distribution {now.distribution}", now.origin, now.distribution)
    return _Found(None, "not installed")


def _comparable(version: str | None, entry: LockedEntry, found: _Found) -> Value:
    """The found version as the entry's ecosystem writes versions.

    conda versions carry no local label; the CUDA variant of a conda build is in its build string.
    A pip wheel's ``2.4.1+cu121`` is compared to conda's ``2.4.1`` as ``2.4.1``.
    """
    if version is None or entry.manager != "conda" or found.origin == "conda":
        return version
    try:
        return Version(version).public
    except InvalidVersion:
        return version


def _fix(entry: LockedEntry, found: _Found, dist: str, in_conda: bool) -> str:
    if found.origin == "conda" or (found.version is None and entry.manager == "conda" and in_conda):
        how = f"conda install '{entry.name}={entry.version}'"
    else:
        how = f"pip install '{dist}=={entry.version}'"
    return f"{how}, or re-solve the lockfile if the change is intended"


def _targets(lock: ExternalLock) -> list[tuple[str, str, LockedEntry]]:
    """``(kind, key, entry)`` for each entry: kind ``fact``, ``package`` (the lock's own) or ``other``.

    Where several entries map to one key, the preferred one is kept (see :data:`CONDA_PACKAGES`;
    a PyPI entry first, as pip installs over conda).
    """
    order = {name: i for i, name in enumerate(CONDA_PACKAGES)}
    best: dict[str, tuple[int, str, LockedEntry]] = {}
    listed: list[str] = []
    for entry in lock.entries:
        if entry.manager == "conda" and entry.name in CONDA_FACTS:
            kind, key, rank = "fact", CONDA_FACTS[entry.name], 0
        elif entry.manager == "conda" and entry.name in CONDA_PACKAGES:
            kind, key, rank = "package", f"packages.{CONDA_PACKAGES[entry.name]}", order[entry.name]
        elif entry.manager == "pypi" and _norm(entry.name) in _DIST_PACKAGE:
            kind, key, rank = "package", f"packages.{_DIST_PACKAGE[_norm(entry.name)]}", -1
        else:
            kind, key, rank = "other", f"packages.{_norm(entry.name)}", 0
        if key not in best:
            listed.append(key)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, kind, entry)
    return [(best[key][1], key, best[key][2]) for key in listed]


def check_external(
    lock_or_path: ExternalLock | str | os.PathLike[str],
    *,
    platform: str | None = None,
    environment: str | None = None,
    deep: bool = False,
    probe: Probe | None = None,
) -> LockReport:
    """Compare the running environment with a conda-lock, pixi or ``@EXPLICIT`` lockfile.

    The report is the one :func:`~safepredict.lock.check.check_lock` gives for a safepredict lock.
    ``platform`` compares with another platform's entries (then the platform itself is not
    compared); ``environment`` picks a pixi environment; ``deep`` lets facts import torch.
    """
    lock = (
        lock_or_path
        if isinstance(lock_or_path, ExternalLock)
        else read_external(lock_or_path, platform=platform, environment=environment)
    )
    p = probe or Probe(deep=deep)
    mismatches: list[Mismatch] = []
    unverified: list[Unverified] = []
    checked = 0
    here = current_subdir()
    if platform is None and lock.platforms and here not in lock.platforms:
        checked += 1
        mismatches.append(
            Mismatch(
                "platform.subdir",
                ", ".join(lock.platforms),
                here,
                "exact",
                "the lockfile pins builds for other platforms: versions and builds here differ from those",
                "platform.system(), platform.machine()",
                lock.path,
                f"solve the lockfile for {here} too (conda-lock -p {here}, or add it to pixi's platforms), "
                "or pass --platform to compare with one of its platforms",
            )
        )
    in_conda = bool(p.prefixes)
    for kind, key, entry in _targets(lock):
        if kind == "fact":
            checked += 1
            rule = DEFAULT_FACT_RULES[key]
            locked: Value = entry.version
            if key == "torch.cudnn":  # torch reports cuDNN as major.minor.patch; conda versions have four parts
                locked = ".".join(entry.version.split(".")[:3])
            fact = p.fact(key)
            if not fact.known:
                unverified.append(Unverified(key, locked, fact.source))
            elif not compare(rule, locked, fact.value):
                mismatches.append(
                    Mismatch(
                        key,
                        locked,
                        fact.value,
                        rule,
                        consequence(key),
                        fact.source,
                        lock.path,
                        f"install {entry.name} {entry.version}, or re-solve the lockfile if the change is intended",
                        f"{describe_rule(rule, locked)} (from {entry.describe()})",
                    )
                )
            continue

        package = key.split(".", 1)[1] if kind == "package" else None
        if package is not None:
            candidates: tuple[str, ...] = DISTRIBUTIONS[package]
            rule = DEFAULT_PACKAGE_RULES[package]
        else:
            candidates = (
                (entry.name,) if entry.manager == "pypi" else tuple(dict.fromkeys(_conda_candidates(entry.name)))
            )
            rule = "exact"
        found = _installed(p, entry, candidates, package)
        if found.version is None:
            if entry.optional:
                continue  # an optional category that was not installed, as `conda-lock install` leaves it
            if package is None and entry.manager == "conda" and not in_conda:
                unverified.append(Unverified(key, entry.version, _unmapped_reason(entry)))
                continue
        checked += 1
        dist = found.distribution or candidates[0]
        if not compare(rule, entry.version, _comparable(found.version, entry, found)):
            mismatches.append(
                Mismatch(
                    key,
                    entry.version,
                    found.version,
                    rule,
                    consequence(key),
                    found.source,
                    lock.path,
                    _fix(entry, found, dist, in_conda),
                    f"{describe_rule(rule, entry.version)} (from {entry.describe()})",
                )
            )
            continue
        if found.origin == "conda" and entry.manager == "conda" and entry.build and found.build:
            checked += 1
            if found.build != entry.build:
                mismatches.append(
                    Mismatch(
                        f"{key}.build",
                        entry.build,
                        found.build,
                        "exact",
                        f"another build of {entry.name} {entry.version} links other libraries (BLAS, CUDA): "
                        "numerics can differ",
                        found.source,
                        lock.path,
                        f"conda install '{entry.name}={entry.version}={entry.build}', or re-solve the lockfile",
                    )
                )
        elif package is not None and (entry.manager == "conda") != (found.origin == "conda"):
            unverified.append(
                Unverified(
                    f"{key}.build",
                    entry.describe(),
                    f"installed by {found.origin} ({found.source}): the version matches, but whether it computes "
                    "like the locked build cannot be told from metadata",
                )
            )
    return LockReport(mismatches, unverified, checked, lock.path)


def _conda_candidates(name: str) -> list[str]:
    """Distribution names a conda package may install: its own, and without conda-forge's ``py-`` prefix."""
    return [name, name[3:]] if name.startswith("py-") and len(name) > 3 else [name]


def _unmapped_reason(entry: LockedEntry) -> str:
    if entry.python:
        return (
            f"conda package {entry.name} is a Python package, but no installed distribution has its name "
            "(its PyPI name may differ); outside a conda environment nothing else records it"
        )
    if entry.python is False:
        return "a native conda package: only a conda environment's conda-meta records say what is installed"
    return (
        f"no installed Python distribution is named {entry.name}, and outside a conda environment "
        "no conda-meta records say what is installed"
    )
