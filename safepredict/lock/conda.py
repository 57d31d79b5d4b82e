"""Conda exports of a lock: ``environment.yml``, an ``@EXPLICIT`` spec and a conda-lock v1 file.

What each can hold depends on where the packages came from. ``environment.yml`` holds both:
conda packages pinned to version and build, pip packages in its ``pip:`` section. ``@EXPLICIT``
and conda-lock v1 list package URLs and hashes; the conda-meta records give those for conda
packages, while pip's metadata holds no archive URL or hash, so pip packages are left out of
those two (with a warning that names them) and stay in ``environment.yml``.

Every export says which pip packages no index serves as installed (a wheel built or repacked on
this machine, a source folder: the lock's ``inventory.builds``, :mod:`safepredict.lock.builds`):
its header names them and how they were made, ``environment.yml``'s pip lines point at their
wheel files, and a bash recipe beside the export (``environment.rebuild.sh``) makes the missing
wheels again and installs the pip packages.

The YAML is written by hand (scalars quoted as JSON strings, which YAML reads unchanged) so that
exporting needs no YAML library; the tests load every file with conda-lock's and py-rattler's
own parsers.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as _platform
from pathlib import Path

from safepredict._logging import warn
from safepredict.errors import InputError, LockError
from safepredict.lock.builds import build_summary, pip_requirements, rebuild_script, recipe_path
from safepredict.lock.entries import CondaRecord, Lock

__all__ = [
    "FORMATS",
    "conda_lock_v1",
    "current_subdir",
    "environment_yml",
    "explicit",
    "export",
    "export_files",
    "platform_subdir",
    "recipe_path",
]

FORMATS = ("environment", "explicit", "conda-lock")

_SUBDIRS = {
    ("Linux", "x86_64"): "linux-64",
    ("Linux", "aarch64"): "linux-aarch64",
    ("Linux", "ppc64le"): "linux-ppc64le",
    ("Darwin", "x86_64"): "osx-64",
    ("Darwin", "arm64"): "osx-arm64",
    ("Windows", "AMD64"): "win-64",
}


def current_subdir() -> str | None:
    """The conda platform of this machine (``linux-64``), or None for one conda has no name for."""
    return _SUBDIRS.get((_platform.system(), _platform.machine()))


def _q(text: object) -> str:
    return json.dumps(str(text))


def platform_subdir(lock: Lock) -> str:
    """The conda platform the lock was written on (``linux-64``), from its records or its facts."""
    subdirs = {c.subdir for c in lock.environment.conda if c.subdir and c.subdir != "noarch"}
    if len(subdirs) == 1:
        return subdirs.pop()
    env = lock.environment
    system, machine = (env.fact("platform.system"), env.fact("platform.machine"))
    key = (str(system.value) if system else "", str(machine.value) if machine else "")
    if key not in _SUBDIRS:
        raise LockError(f"cannot tell the conda platform of a lock written on {key[0]} {key[1]}", source=lock.path)
    return _SUBDIRS[key]


def _pip_requirements(lock: Lock) -> list[str]:
    return pip_requirements(lock.environment)


def _builds_header(lock: Lock, recipe: str, *, in_file: bool) -> list[str]:
    """The header lines that name the local builds and the recipe beside the export."""
    builds = lock.environment.builds
    if not builds:
        return []
    where = "their pip lines point at the files the lock was written with" if in_file else "they are not in this file"
    return [
        f"# {len(builds)} pip package(s) are on no package index as installed ({where}):",
        *build_summary(lock.environment),
        f"# `bash {recipe} wheels` makes the missing wheel files again (the steps recorded when they were built);",
        f"# `bash {recipe}` also installs the pip packages into the active Python. See docs/lock.md.",
    ]


def environment_yml(lock: Lock, name: str = "safepredict", recipe: str = "environment.rebuild.sh") -> str:
    """``environment.yml``: conda packages as ``name=version=build``, pip packages under ``pip:``.

    A local build's pip line is ``name @ file:///...whl`` (its wheel file); ``recipe`` is the file
    name of the rebuild recipe the header points at.
    """
    env = lock.environment
    channels = list(dict.fromkeys(c.channel_name for c in env.conda if c.channel_name)) or ["conda-forge"]
    deps = [c.spec for c in sorted(env.conda, key=lambda c: c.name)]
    if not any(c.name == "python" for c in env.conda):
        py = env.fact("python.version")
        deps.insert(0, f"python={py.value}" if py and py.value else "python")
    if not any(c.name == "pip" for c in env.conda):
        deps.append("pip")
    lines = [
        f"# written by `safepredict export-conda` from {lock.path or 'the running environment'}",
        "# conda packages pinned to version and build; pip packages in the pip section",
        "# (pip, setuptools and wheel left to the installer, as `pip freeze` does)",
        *_builds_header(lock, recipe, in_file=True),
        f"name: {_q(name)}",
        "channels:",
        *(f"  - {_q(c)}" for c in channels),
        "dependencies:",
        *(f"  - {_q(d)}" for d in deps),
    ]
    pip = _pip_requirements(lock)
    if pip:
        lines.append("  - pip:")
        lines += [f"      - {_q(r)}" for r in pip]
    return "\n".join(lines) + "\n"


def _conda_only(lock: Lock, what: str, recipe: str = "") -> list[CondaRecord]:
    records = sorted(lock.environment.conda, key=lambda c: c.name)
    if not records:
        raise LockError(
            f"the lock holds no conda packages (it was written outside a conda environment): no {what} to write",
            source=lock.path,
            fix="export --format environment instead, which pins pip packages",
        )
    missing = [c.spec for c in records if not c.url or not c.md5]
    if missing:
        raise LockError(
            f"{what} needs each conda package's URL and md5; conda-meta lacks them for: {', '.join(missing)}",
            source=lock.path,
            fix="export --format environment instead",
        )
    pip = _pip_requirements(lock)
    if pip:
        warn(
            f"{len(pip)} pip package(s) are not in the {what} (pip metadata has no archive URL or hash): "
            f"{', '.join(pip[:10])}{' ...' if len(pip) > 10 else ''}; export --format environment keeps them"
            + (f", and {recipe} beside this file installs them" if recipe else ""),
            code="lock.export_incomplete",
            left_out=pip,
        )
    return records


def _pip_left_out(lock: Lock, recipe: str) -> list[str]:
    pip = _pip_requirements(lock)
    if not pip:
        return []
    return [
        f"# {len(pip)} pip package(s) are not in this file (pip metadata has no archive URL or hash);",
        f"# `bash {recipe}` installs them into the environment made from it.",
        *_builds_header(lock, recipe, in_file=False),
    ]


def explicit(lock: Lock, recipe: str = "explicit.rebuild.sh") -> str:
    """An ``@EXPLICIT`` spec (``conda create --file``): one URL#md5 per conda package."""
    records = _conda_only(lock, "@EXPLICIT spec", recipe)
    lines = [
        f"# written by `safepredict export-conda` from {lock.path or 'the running environment'}",
        *_pip_left_out(lock, recipe),
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {platform_subdir(lock)}",
        "@EXPLICIT",
        *(f"{c.url}#{c.md5}" for c in records),
    ]
    return "\n".join(lines) + "\n"


def _dependency(spec: str) -> tuple[str, str]:
    name, _, rest = spec.strip().partition(" ")
    return name, rest.strip() or "*"


def conda_lock_v1(lock: Lock, recipe: str = "conda-lock.rebuild.sh") -> str:
    """A conda-lock v1 file (``conda-lock.yml``) for the lock's platform, conda packages only."""
    records = _conda_only(lock, "conda-lock file", recipe)
    platform = platform_subdir(lock)
    channels = list(dict.fromkeys(c.channel_name for c in records if c.channel_name))
    content = hashlib.sha256("\n".join(f"{c.url}#{c.md5}" for c in records).encode()).hexdigest()
    lines = [
        f"# written by `safepredict export-conda` from {lock.path or 'the running environment'}",
        *_pip_left_out(lock, recipe),
        "version: 1",
        "metadata:",
        "  content_hash:",
        f"    {platform}: {_q(content)}",
        "  channels:",
        *(f"    - url: {_q(c)}\n      used_env_vars: []" for c in channels),
        "  platforms:",
        f"    - {platform}",
        "  sources:",
        f"    - {_q(os.path.basename(lock.path) if lock.path else 'safepredict.lock')}",
        "package:",
    ]
    for c in records:
        lines += [
            f"  - name: {_q(c.name)}",
            f"    version: {_q(c.version)}",
            "    manager: conda",
            f"    platform: {_q(c.subdir if c.subdir and c.subdir != 'noarch' else platform)}",
            "    dependencies:" + ("" if c.depends else " {}"),
            *(f"      {_q(n)}: {_q(s)}" for n, s in (_dependency(d) for d in c.depends)),
            f"    url: {_q(c.url)}",
            "    hash:",
            f"      md5: {_q(c.md5)}",
            *([f"      sha256: {_q(c.sha256)}"] if c.sha256 else []),
            "    category: main",
            "    optional: false",
        ]
    return "\n".join(lines) + "\n"


def export(lock: Lock, fmt: str, out: str | os.PathLike[str], *, name: str = "safepredict") -> Path:
    """Write ``lock`` to ``out`` in conda format ``fmt`` (one of :data:`FORMATS`), and its recipe beside it.

    The recipe (:func:`recipe_path`) is written when the lock holds local builds, or pip packages
    the format leaves out; see :func:`export_files` for both paths.
    """
    return export_files(lock, fmt, out, name=name)[0]


def export_files(
    lock: Lock, fmt: str, out: str | os.PathLike[str], *, name: str = "safepredict"
) -> tuple[Path, Path | None]:
    """:func:`export`, returning the export's path and the recipe's (None when none was needed)."""
    path = Path(out)
    recipe = recipe_path(path)
    if fmt == "environment":
        text = environment_yml(lock, name=name, recipe=recipe.name)
    elif fmt == "explicit":
        text = explicit(lock, recipe=recipe.name)
    elif fmt == "conda-lock":
        text = conda_lock_v1(lock, recipe=recipe.name)
    else:
        raise InputError(f"unknown conda export format {fmt!r}", expected=FORMATS, found=fmt)
    needs_recipe = bool(lock.environment.builds) or (fmt != "environment" and bool(_pip_requirements(lock)))
    written: Path | None = None
    try:
        path.write_text(text, encoding="utf-8")
        if needs_recipe:
            recipe.write_text(rebuild_script(lock, path.name), encoding="utf-8")
            recipe.chmod(0o755)
            written = recipe
    except OSError as exc:
        raise LockError(f"cannot write {str(path)!r}: {exc}", source=str(path)) from exc
    return path, written
