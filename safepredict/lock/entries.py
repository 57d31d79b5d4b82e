"""The values a lock holds: packages, facts, model files and the installed inventory.

Every value is a frozen attrs class: entries are compared and printed, never mutated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from safepredict.lock.rules import RULES, Value

__all__ = [
    "CondaRecord",
    "Environment",
    "Fact",
    "FileEntry",
    "LocalBuild",
    "Lock",
    "PackageEntry",
]

_rule = attrs.validators.in_(set(RULES))


def _to_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(items)


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@attrs.frozen
class PackageEntry:
    """A package that decides results: its version, where it came from, and how strictly it is held.

    ``name`` is safepredict's name for it (``opencv``, ``torch``); ``distribution`` the
    installed distribution that provides it (``opencv-python``, ``sal-detectron2``, or the conda
    package name when ``origin`` is ``conda``). ``version`` is None when the package is absent.
    """

    name: str
    version: str | None
    rule: str = attrs.field(validator=_rule)
    origin: str = "pip"  # pip | conda | other installer name | absent
    distribution: str | None = None

    @property
    def key(self) -> str:
        return f"packages.{self.name}"

    def describe(self) -> str:
        if self.version is None:
            return f"{self.name}: not installed (rule {self.rule})"
        dist = f" [{self.distribution}]" if self.distribution and self.distribution != self.name else ""
        return f"{self.name}{dist} {self.version} from {self.origin} (rule {self.rule}: {RULES[self.rule]})"


@attrs.frozen
class Fact:
    """A fact of the machine or build that changes results (CUDA runtime, driver, OpenCV's IPP...).

    ``value`` None means absent (no driver, CPU-only torch). ``source`` says where it was read.
    """

    key: str
    value: Value
    rule: str = attrs.field(validator=_rule)
    source: str = ""

    def describe(self) -> str:
        shown = "absent" if self.value is None else str(self.value)
        src = f" (from {self.source})" if self.source else ""
        return f"{self.key} = {shown}{src}, rule {self.rule}: {RULES[self.rule]}"


@attrs.frozen
class FileEntry:
    """A model file pinned by content: the weights or the training config."""

    role: str  # weights | config
    path: str
    sha256: str
    size: int
    rule: str = attrs.field(default="exact", validator=attrs.validators.in_({"exact", "record"}))

    @property
    def key(self) -> str:
        return f"files.{self.role}"

    def describe(self) -> str:
        return f"{self.role}: {self.path} sha256 {self.sha256[:16]}... ({self.size} bytes, rule {self.rule})"


@attrs.frozen
class CondaRecord:
    """One installed conda package, as its ``conda-meta/*.json`` record has it (what export needs)."""

    name: str
    version: str
    build: str
    build_number: int = 0
    channel: str = ""
    subdir: str = ""
    url: str = ""
    md5: str = ""
    sha256: str = ""
    depends: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}={self.build}"

    @property
    def channel_name(self) -> str:
        """The channel as people write it: ``conda-forge`` for ``https://conda.anaconda.org/conda-forge/linux-64``."""
        channel = self.channel.rstrip("/")
        if self.subdir and channel.endswith("/" + self.subdir):
            channel = channel[: -len(self.subdir) - 1]
        prefix = "https://conda.anaconda.org/"
        return channel[len(prefix) :] if channel.startswith(prefix) else channel

    def describe(self) -> str:
        return f"{self.spec} from {self.channel_name or 'an unknown channel'}"


# How a pip package that no index serves as installed was made (see LocalBuild).
BUILD_KINDS: dict[str, str] = {
    "built": "built on this machine",
    "repacked": "an index's wheel, changed and packed again here",
    "wheel-file": "installed from a wheel file on this machine (how that wheel was made is not recorded)",
    "directory": "built from a source folder",
    "vcs": "built from a version-control checkout",
    "url": "installed from an archive URL, not from an index",
}


@attrs.frozen
class LocalBuild:
    """A pip package that no index serves as it is installed: built or repacked here, or from a file, folder or VCS.

    Read from the installed distribution (``direct_url.json``, the ``WHEEL`` file's tags and
    generator) and, where one was written, from the build record next to the wheel file
    (``<wheel>.build.json``: ``source``, ``flags``, ``build_requires``, ``steps``). ``url`` is the
    archive, folder or VCS URL pip installed it from ("" when pip built it from an index's source
    archive itself); ``evidence`` says what the detection read.
    """

    name: str
    version: str
    kind: str = attrs.field(validator=attrs.validators.in_(set(BUILD_KINDS)))
    url: str = ""
    sha256: str = ""
    wheel_tag: str = ""
    generator: str = ""
    editable: bool = False
    source: str = ""
    flags: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)
    build_requires: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)
    steps: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)
    evidence: str = ""

    @property
    def wheel_path(self) -> str | None:
        """The wheel file it was installed from, when that is a local ``.whl``."""
        if not self.url.startswith("file://") or not self.url.endswith(".whl"):
            return None
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(self.url).path)

    @property
    def requirement(self) -> str:
        """The pip requirement that installs this very distribution again (``name @ url``, else ``name==version``)."""
        return f"{self.name} @ {self.url}" if self.url else f"{self.name}=={self.version}"

    def describe(self) -> str:
        how = f": {self.source}" if self.source else ""
        flags = f" ({', '.join(self.flags)})" if self.flags else ""
        where = f" from {self.url}" if self.url else ""
        return f"{self.name} {self.version} {BUILD_KINDS[self.kind]}{how}{flags}{where}"


@attrs.frozen
class Environment:
    """Everything a lock pins: packages and facts (compared), files, and the inventory (for export)."""

    packages: tuple[PackageEntry, ...] = attrs.field(default=(), converter=_to_tuple)
    facts: tuple[Fact, ...] = attrs.field(default=(), converter=_to_tuple)
    files: tuple[FileEntry, ...] = attrs.field(default=(), converter=_to_tuple)
    conda: tuple[CondaRecord, ...] = attrs.field(default=(), converter=_to_tuple)
    pip: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_to_tuple)  # (name, version), not conda
    builds: tuple[LocalBuild, ...] = attrs.field(default=(), converter=_to_tuple)  # pip packages no index serves

    def build(self, name: str) -> LocalBuild | None:
        """The local build of pip distribution ``name`` (names compared as PEP 503 does), or None."""
        key = _pep503(name)
        return next((b for b in self.builds if _pep503(b.name) == key), None)

    def package(self, name: str) -> PackageEntry | None:
        return next((p for p in self.packages if p.name == name), None)

    def fact(self, key: str) -> Fact | None:
        return next((f for f in self.facts if f.key == key), None)

    def file(self, role: str) -> FileEntry | None:
        return next((f for f in self.files if f.role == role), None)

    def fact_values(self) -> Mapping[str, Value]:
        return {f.key: f.value for f in self.facts}

    def describe(self) -> str:
        lines = ["packages:"]
        lines += [f"  {p.describe()}" for p in self.packages]
        lines.append("facts:")
        lines += [f"  {f.describe()}" for f in self.facts]
        if self.files:
            lines.append("files:")
            lines += [f"  {f.describe()}" for f in self.files]
        lines.append(f"inventory: {len(self.conda)} conda packages, {len(self.pip)} pip packages")
        if self.builds:
            lines.append("built or repacked locally (on no index as installed):")
            lines += [f"  {b.describe()}" for b in self.builds]
        return "\n".join(lines)


@attrs.frozen
class Lock:
    """A lockfile: the environment a model was validated in, with the schema it was written in."""

    environment: Environment
    schema_version: int = 1
    created: str = ""
    safepredict_version: str = ""
    path: str | None = attrs.field(default=None, eq=False)

    def describe(self) -> str:
        where = f" ({self.path})" if self.path else ""
        head = f"safepredict lock{where}, schema {self.schema_version}, written {self.created or '?'}"
        return head + "\n" + self.environment.describe()
