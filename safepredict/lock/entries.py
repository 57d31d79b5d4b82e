"""The values a lock holds: packages, facts, model files and the installed inventory.

Every value is a frozen attrs class: entries are compared and printed, never mutated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from safepredict.lock.rules import RULES, Value

__all__ = [
    "CondaRecord",
    "Environment",
    "Fact",
    "FileEntry",
    "Lock",
    "PackageEntry",
]

_rule = attrs.validators.in_(set(RULES))


def _to_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(items)


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


@attrs.frozen
class Environment:
    """Everything a lock pins: packages and facts (compared), files, and the inventory (for export)."""

    packages: tuple[PackageEntry, ...] = attrs.field(default=(), converter=_to_tuple)
    facts: tuple[Fact, ...] = attrs.field(default=(), converter=_to_tuple)
    files: tuple[FileEntry, ...] = attrs.field(default=(), converter=_to_tuple)
    conda: tuple[CondaRecord, ...] = attrs.field(default=(), converter=_to_tuple)
    pip: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_to_tuple)  # (name, version), not conda

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
