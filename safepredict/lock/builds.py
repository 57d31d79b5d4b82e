"""Pip packages that no index serves as installed: told from their metadata, and a recipe to make them again.

A distribution is a local build when its installed metadata says so (what pip writes, whoever
built the wheel):

- ``direct_url.json`` (PEP 610), written by pip for anything installed from a URL rather than an
  index: a wheel file on this machine, a source folder (editable or not), a VCS checkout, an
  archive URL;
- the ``WHEEL`` file's ``Tag``, for a wheel installed from a file: a ``linux_*`` platform tag
  (``cp311-cp311-linux_x86_64``) is one no package index accepts (indexes take
  ``manylinux``/``musllinux`` only), so the wheel was compiled on this machine. The tag alone
  proves nothing: ray's wheels on PyPI are ``manylinux2014`` files whose ``WHEEL`` says
  ``linux_x86_64``. A wheel pip built itself from an index's source archive during an install
  leaves no trace either way; pip builds it again from the same archive.

How it was made (the source, the flags, the steps) is no part of a wheel's metadata. Where the
wheel was installed from a file, a *build record* beside that file says it:
``<wheel file>.build.json``, a JSON object with ``kind`` (``built`` or ``repacked``),
``source`` (words), ``flags``, ``build_requires`` and ``steps`` (lists of strings; the steps are
bash lines run in an empty folder ``$BUILD``, with ``$PY`` the Python to build with, that leave the
wheel in ``$WHEELS``). ``scripts/setup-frameworks.sh`` writes one for each wheel it builds or
repacks; anyone can write one for their own (docs/lock.md).

:func:`rebuild_script` turns a lock's local builds into a bash recipe that makes the missing wheel
files again and installs the lock's pip packages: what every conda export writes beside itself.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from safepredict._logging import warn
from safepredict.lock.entries import BUILD_KINDS, Environment, LocalBuild, Lock

__all__ = ["RECORD_SUFFIX", "local_build", "pip_requirements", "read_build_record", "rebuild_script"]

RECORD_SUFFIX = ".build.json"
_MAX_RECORD = 1 << 20  # a build record is a few hundred bytes; anything this large is not one
# Left to the installer, as `pip freeze` leaves them out: pinning them makes environments that pip's
# resolver refuses (torch 2.14 wants setuptools >= 77, an mmcv build wants setuptools < 70).
_INSTALLER_TOOLS = frozenset({"pip", "setuptools", "wheel", "distribute"})


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _wheel_headers(text: str) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            headers.setdefault(key.strip().lower(), []).append(value.strip())
    return headers


def _compiled_here(tag: str) -> bool:
    """A ``linux_*`` platform tag: no index accepts one, so the wheel was compiled where it was installed."""
    return tag.rsplit("-", 1)[-1].startswith("linux_")


def _file_path(url: str) -> Path | None:
    if not url.startswith("file://"):
        return None
    return Path(unquote(urlparse(url).path))


def read_build_record(wheel: Path) -> dict[str, Any] | None:
    """The build record beside ``wheel`` (``<wheel>.build.json``), validated; None when there is none.

    A record that cannot be read is warned about (``lock.build_record``) and left out: the lock
    still records the build, from the metadata alone.
    """
    path = wheel.with_name(wheel.name + RECORD_SUFFIX)
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > _MAX_RECORD:
            raise ValueError(f"larger than {_MAX_RECORD} bytes")
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        kind = record.get("kind", "built")
        if kind not in BUILD_KINDS:
            raise ValueError(f"kind {kind!r} is none of {', '.join(BUILD_KINDS)}")
        if not isinstance(record.get("source", ""), str):
            raise ValueError("source is not a string")
        for key in ("flags", "build_requires", "steps"):
            value = record.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} is not a list of strings")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        warn(
            f"build record {path} is unreadable ({exc}); the lock records the build from the wheel's metadata alone",
            code="lock.build_record",
            path=str(path),
        )
        return None
    return record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_build(dist: md.Distribution, name: str, version: str) -> LocalBuild | None:
    """How ``dist`` came to be installed, when that was not as an index's wheel; None when it was."""
    direct = _json_object(dist.read_text("direct_url.json"))
    wheel = _wheel_headers(dist.read_text("WHEEL") or "")
    tags = wheel.get("tag", [])
    generator = (wheel.get("generator") or [""])[0]
    kind: str | None = None
    url = sha256 = ""
    editable = False
    evidence: list[str] = []
    if direct is not None and isinstance(direct.get("url"), str):
        url = direct["url"]
        if isinstance(direct.get("vcs_info"), dict):
            vcs = direct["vcs_info"]
            kind = "vcs"
            url = f"{vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}".rstrip("@")
            if isinstance(direct.get("subdirectory"), str):
                url += f"#subdirectory={direct['subdirectory']}"
        elif isinstance(direct.get("dir_info"), dict):
            kind = "directory"
            editable = bool(direct["dir_info"].get("editable", False))
        else:
            archive = direct.get("archive_info")
            archive = archive if isinstance(archive, dict) else {}
            hashes = archive.get("hashes")
            hashes = hashes if isinstance(hashes, dict) else {}
            sha256 = str(hashes.get("sha256", ""))
            if not sha256 and str(archive.get("hash", "")).startswith("sha256="):
                sha256 = str(archive["hash"]).split("=", 1)[1]
            local = _file_path(url)
            if local is None:
                kind = "url"
            elif local.name.endswith(".whl"):
                kind = "wheel-file"
                if not sha256 and local.is_file():
                    sha256 = _sha256(local)
            else:
                kind = "built"  # a source archive on this machine, built by pip at install
        evidence.append(f"direct_url.json: installed from {url}" + (" (editable)" if editable else ""))
    compiled = [t for t in tags if _compiled_here(t)]
    if compiled and kind == "wheel-file":
        # Only with a wheel file: some index wheels keep a linux_* Tag inside a manylinux file (ray).
        evidence.append(f"WHEEL Tag {compiled[0]}: a linux_* platform tag, which no package index accepts")
        kind = "built"
    record = None
    wheel_file = _file_path(url)
    if wheel_file is not None and wheel_file.name.endswith(".whl"):
        record = read_build_record(wheel_file)
    if record is not None:
        kind = str(record.get("kind", kind or "built"))
        evidence.append(f"build record {wheel_file}{RECORD_SUFFIX}")
    if kind is None:
        return None
    return LocalBuild(
        name=name,
        version=version,
        kind=kind,
        url=url,
        sha256=sha256,
        wheel_tag=".".join(tags),
        generator=generator,
        editable=editable,
        source=str(record.get("source", "")) if record else "",
        flags=tuple(record.get("flags", ())) if record else (),
        build_requires=tuple(record.get("build_requires", ())) if record else (),
        steps=tuple(record.get("steps", ())) if record else (),
        evidence="; ".join(evidence),
    )


def pip_requirements(env: Environment) -> list[str]:
    """The pip lines of an export: ``name==version``, or ``name @ url`` for a local build.

    pip, setuptools and wheel are left to the installer, as ``pip freeze`` leaves them.
    """
    lines = []
    for name, version in env.pip:
        if _pep503(name) in _INSTALLER_TOOLS:
            continue
        build = env.build(name)
        lines.append(build.requirement if build is not None else f"{name}=={version}")
    return lines


def build_summary(env: Environment) -> list[str]:
    """One comment line per local build, for an export's header (``[]`` when there are none)."""
    lines = []
    for b in env.builds:
        flags = f" ({', '.join(b.flags)})" if b.flags else ""
        how = f": {b.source}" if b.source else ""
        lines.append(f"#   {b.name} {b.version}: {BUILD_KINDS[b.kind]}{how}{flags}")
        if b.wheel_path:
            lines.append(f"#     wheel {b.wheel_path}" + (f" (sha256 {b.sha256})" if b.sha256 else ""))
        elif b.url:
            lines.append(f"#     from {b.url}")
        else:
            lines.append("#     pip builds it from the source archive at install, without any flags it needed")
    return lines


def _fallback_steps(b: LocalBuild) -> tuple[str, ...]:
    """What to run for a wheel that has no build record: pip's own build, or the index's wheel."""
    pin = shlex.quote(f"{b.name}=={b.version}")
    if b.kind == "built":
        return (f'"$PY" -m pip wheel --no-deps --no-binary=:all: {pin} -w "$WHEELS"',)
    return (f'"$PY" -m pip download --no-deps --only-binary=:all: {pin} -d "$WHEELS"',)


def rebuild_script(lock: Lock, export_name: str) -> str:
    """A bash recipe beside the export ``export_name``: make the missing local wheels, then install the pip packages.

    ``bash RECIPE wheels`` only makes the wheel files that are missing (at the paths the export
    names, or under ``$WHEELS``); ``bash RECIPE`` also installs every pip package into ``$PYTHON``.
    """
    env = lock.environment
    source = lock.path or "the running environment"
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        f"# How to make the pip packages of {export_name} again: written by `safepredict export-conda`",
        f"# from {source}.",
        "#",
    ]
    if env.builds:
        lines += [f"# {len(env.builds)} of them are on no package index as they were installed:", *build_summary(env)]
    else:
        lines.append("# All of them are on the package index.")
    lines += [
        "#",
        "# Read it before running it: the build steps below are copied from the build records the lock holds.",
        f"#   bash {q(_recipe_name(export_name))} wheels   make the wheel files that are missing, nothing else",
        f"#   bash {q(_recipe_name(export_name))}          the same, then pip-install every pip package into $PYTHON",
        "# PYTHON: the interpreter to build with and install into (default: python3 on PATH, the active",
        "# environment's). WHEELS: one folder for the wheel files, instead of the folders they were in.",
        "set -euo pipefail",
        'PY="${PYTHON:-python3}"',
        'MODE="${1:-install}"',
        'case "$MODE" in wheels|install) ;; *) echo "usage: $0 [wheels|install]" >&2; exit 2 ;; esac',
        "",
    ]
    wheel_vars: dict[str, str] = {}
    for i, b in enumerate(env.builds, 1):
        path = b.wheel_path
        source_folder = _file_path(b.url) if b.kind == "directory" else None
        if source_folder is not None:
            missing = f"the source folder of {b.name}, {source_folder}, is missing"
            lines += [
                f"# {b.name} {b.version}: {BUILD_KINDS[b.kind]}",
                f"[ -d {q(str(source_folder))} ] || {{ echo {q(missing)} >&2; exit 1; }}",
                "",
            ]
            continue
        if path is None:
            continue
        var = f"WHEEL_{i}"
        wheel_vars[b.name] = var
        folder, filename = str(Path(path).parent), Path(path).name
        steps = b.steps or _fallback_steps(b)
        note = "" if b.steps else " (no build record: how it was first made is not known; this is a stand-in)"
        lines += [
            f"# {b.name} {b.version}: {BUILD_KINDS[b.kind]}{': ' + b.source if b.source else ''}{note}",
            *(f"#   flag: {flag}" for flag in b.flags),
            f'{var}="${{WHEELS:-{q(folder)}}}/"{q(filename)}',
            f'case "${var}" in /*) ;; *) {var}="$PWD/${var}" ;; esac',
            f"make_{i}() {{",
            *([f'  "$PY" -m pip install {" ".join(q(r) for r in b.build_requires)}'] if b.build_requires else []),
            "  local WHEELS BUILD",
            f'  WHEELS="$(dirname "${var}")"',
            '  BUILD="$(mktemp -d)"',
            '  mkdir -p "$WHEELS"',
            '  (cd "$BUILD"',
            *(f"    {step}" for step in steps),
            "  )",
            '  rm -rf "$BUILD"',
            "}",
            # Not `[ -f ] || make`: bash ignores `set -e` inside a function called from an || list.
            f'if [ ! -f "${var}" ]; then echo "making ${var}" >&2; make_{i}; fi',
            f'[ -f "${var}" ] || {{ echo "the steps for {b.name} left no ${var}" >&2; exit 1; }}',
            "",
        ]
    requirements = pip_requirements(env)
    lines.append('[ "$MODE" = wheels ] && exit 0')
    if not requirements:
        return "\n".join([*lines, "echo 'no pip packages to install' >&2", ""])
    lines += ['REQS="$(mktemp)"', "trap 'rm -f \"$REQS\"' EXIT", "printf '%s\\n' \\"]
    for requirement in requirements:
        name = requirement.split(" @ ", 1)[0] if " @ " in requirement else requirement.split("==", 1)[0]
        wheel_var = wheel_vars.get(name)
        lines.append(f'  {q(name + " @ file://")}"${wheel_var}" \\' if wheel_var else f"  {q(requirement)} \\")
    lines += ['  > "$REQS"', '"$PY" -m pip install -r "$REQS"', ""]
    return "\n".join(lines)


def _recipe_name(export_name: str) -> str:
    return recipe_path(Path(export_name)).name


def recipe_path(export: Path) -> Path:
    """Where the recipe of an export goes: ``environment.yml`` -> ``environment.rebuild.sh``."""
    stem = export.name.split(".", 1)[0] if not export.name.startswith(".") else export.name
    return export.with_name(f"{stem}.rebuild.sh")
