"""The lockfile: a versioned, human-readable TOML file, and its reader and writer.

Schema 1 (``docs/lock.md`` has an annotated example)::

    schema_version = 1
    created = "2026-11-25T11:40:03+00:00"
    safepredict_version = "0.1.0"

    [packages.torch]                  # compared, one table per package
    version = "2.14.1+cu130"          # omitted with `absent = true` when not installed
    rule = "exact"                    # exact | minor | major | at_least | present | record
    origin = "pip"                    # pip | conda | another installer | absent
    distribution = "torch"

    [facts."torch.cuda"]              # compared, one table per fact
    value = "13.0"                    # or `absent = true`
    rule = "minor"
    source = "torch.version.cuda"

    [files.weights]                   # compared by sha256
    path = "model_final.pth"          # relative to the lock's folder when inside it
    sha256 = "..."
    size = 123456
    rule = "exact"

    [inventory.pip]                   # not compared: what export-conda writes
    numpy = "2.4.6"
    [[inventory.conda]]
    name = "python" ...
    [inventory.builds.mmcv]           # a pip package no index serves as installed (lock/builds.py)
    version = "2.1.0"
    kind = "built"                    # built | repacked | wheel-file | directory | vcs | url
    url = "file:///.../mmcv-2.1.0-cp311-cp311-linux_x86_64.whl"
    flags = ["-std=c++20", "MMCV_WITH_OPS=1"]  # and sha256, wheel_tag, generator, source, steps ...

Every reading failure is a :class:`~safepredict.errors.LockError`: corrupt TOML and missing or
mistyped fields a ``LockFormatError``, a schema this safepredict does not know a
``LockVersionError``. Parser tracebacks never reach the user.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from safepredict._version import installed_version
from safepredict.errors import LockError, LockFormatError, LockVersionError
from safepredict.lock.entries import (
    BUILD_KINDS,
    CondaRecord,
    Environment,
    Fact,
    FileEntry,
    LocalBuild,
    Lock,
    PackageEntry,
)
from safepredict.lock.rules import RULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject pulls tomli on 3.10
    import tomli as tomllib

__all__ = ["SCHEMA_VERSION", "dumps", "loads", "read_lock", "write_lock_file"]

SCHEMA_VERSION = 1

HEADER = """\
# safepredict environment lock: the environment this model was validated in.
# `safepredict check` compares the running environment with it (exit 0 match, 1 mismatch).
# Each entry has a `rule`: exact | minor | major | at_least | driver_for_cuda | present | record.
# Edit a rule to relax or tighten one entry; re-run `safepredict lock` after an intended upgrade.
# Format: docs/lock.md.
"""


def _value_table(value: Any, **fields: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"absent": True} if value is None else {"value": value}
    table.update({k: v for k, v in fields.items() if v not in (None, "")})
    return table


def to_dict(lock: Lock) -> dict[str, Any]:
    env = lock.environment
    packages: dict[str, Any] = {}
    for p in env.packages:
        table: dict[str, Any] = {"absent": True} if p.version is None else {"version": p.version}
        table.update(rule=p.rule, origin=p.origin)
        if p.distribution:
            table["distribution"] = p.distribution
        packages[p.name] = table
    facts = {f.key: _value_table(f.value, rule=f.rule, source=f.source) for f in env.facts}
    files = {f.role: {"path": f.path, "sha256": f.sha256, "size": f.size, "rule": f.rule} for f in env.files}
    conda = []
    for c in env.conda:
        rec: dict[str, Any] = {"name": c.name, "version": c.version, "build": c.build, "build_number": c.build_number}
        for key in ("channel", "subdir", "url", "md5", "sha256"):
            if getattr(c, key):
                rec[key] = getattr(c, key)
        if c.depends:
            rec["depends"] = list(c.depends)
        conda.append(rec)
    doc: dict[str, Any] = {
        "schema_version": lock.schema_version,
        "created": lock.created,
        "safepredict_version": lock.safepredict_version,
        "packages": packages,
        "facts": facts,
    }
    if files:
        doc["files"] = files
    inventory: dict[str, Any] = {"pip": dict(env.pip)}
    if conda:
        inventory["conda"] = conda
    if env.builds:
        inventory["builds"] = {b.name: _build_table(b) for b in env.builds}
    doc["inventory"] = inventory
    return doc


_BUILD_TEXT = ("kind", "url", "sha256", "wheel_tag", "generator", "source", "evidence")
_BUILD_LISTS = ("flags", "build_requires", "steps")


def _build_table(b: LocalBuild) -> dict[str, Any]:
    table: dict[str, Any] = {"version": b.version}
    table.update({key: getattr(b, key) for key in _BUILD_TEXT if getattr(b, key)})
    if b.editable:
        table["editable"] = True
    table.update({key: list(getattr(b, key)) for key in _BUILD_LISTS if getattr(b, key)})
    return table


def dumps(lock: Lock) -> str:
    return HEADER + "\n" + tomli_w.dumps(to_dict(lock))


def write_lock_file(lock: Lock, path: str | os.PathLike[str]) -> Lock:
    """Write ``lock`` to ``path`` atomically (a half-written lock would fail every start-up)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(dumps(lock), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise LockError(f"cannot write lock {str(target)!r}: {exc}", source=str(target)) from exc
    return Lock(lock.environment, lock.schema_version, lock.created, lock.safepredict_version, path=str(target))


def new_lock(env: Environment) -> Lock:
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return Lock(env, SCHEMA_VERSION, created, installed_version())


# -- reading -------------------------------------------------------------------------------------


class _Reader:
    """Pulls typed fields out of the parsed TOML, naming the exact key of anything wrong."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> LockFormatError:
        return LockFormatError(
            f"lock {self.source}: {where}: {problem}",
            source=f"{self.source}: {where}",
            fix="fix that entry by hand, or re-create the lock with `safepredict lock`",
        )

    def table(self, doc: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Mapping[str, Any]:
        if key not in doc:
            if required:
                raise self.fail(f"{where}{key}", "missing table")
            return {}
        value = doc[key]
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"expected a table, found {type(value).__name__}")
        return value

    def field(self, doc: Mapping[str, Any], key: str, where: str, types: Any, *, required: bool = True) -> Any:
        if key not in doc:
            if required:
                raise self.fail(f"{where}.{key}", "missing field")
            return None
        value = doc[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise self.fail(f"{where}.{key}", f"expected {_type_names(types)}, found {value!r}")
        return value

    def only(self, doc: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise self.fail(where, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")

    def rule(self, doc: Mapping[str, Any], where: str) -> str:
        rule = self.field(doc, "rule", where, str)
        if rule not in RULES:
            raise self.fail(f"{where}.rule", f"unknown rule {rule!r} (known: {', '.join(RULES)})")
        return str(rule)

    def value(self, doc: Mapping[str, Any], where: str, key: str, types: Any) -> Any:
        has_value, absent = key in doc, doc.get("absent", False)
        if absent is not True and absent is not False:
            raise self.fail(f"{where}.absent", f"expected true or false, found {absent!r}")
        if has_value == absent:
            raise self.fail(where, f"needs exactly one of `{key} = ...` or `absent = true`")
        return None if absent else self.field(doc, key, where, types)


def _as_tuple(types: Any) -> tuple[Any, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: Any) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(types))


def from_dict(doc: Mapping[str, Any], source: str) -> Lock:
    r = _Reader(source)
    if "schema_version" not in doc:
        raise r.fail("schema_version", "missing: not a safepredict lock?")
    version = doc["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise r.fail("schema_version", f"expected an integer, found {version!r}")
    if version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise LockVersionError(
            f"lock {source}: schema version {version}, this safepredict reads schema {SCHEMA_VERSION}",
            expected=SCHEMA_VERSION,
            found=version,
            source=source,
            fix="upgrade safepredict to read it" if newer else "re-create the lock with `safepredict lock`",
        )
    r.only(
        doc,
        "top level",
        {"schema_version", "created", "safepredict_version", "packages", "facts", "files", "inventory"},
    )
    created = r.field(doc, "created", "top level", str, required=False) or ""
    sp_version = r.field(doc, "safepredict_version", "top level", str, required=False) or ""

    packages = []
    for name, table in r.table(doc, "packages", "").items():
        where = f"packages.{name}"
        if not isinstance(table, dict):
            raise r.fail(where, "expected a table")
        r.only(table, where, {"version", "absent", "rule", "origin", "distribution"})
        packages.append(
            PackageEntry(
                name=name,
                version=r.value(table, where, "version", str),
                rule=r.rule(table, where),
                origin=r.field(table, "origin", where, str),
                distribution=r.field(table, "distribution", where, str, required=False),
            )
        )
    facts = []
    for key, table in r.table(doc, "facts", "").items():
        where = f'facts."{key}"'
        if not isinstance(table, dict):
            raise r.fail(where, "expected a table")
        r.only(table, where, {"value", "absent", "rule", "source"})
        facts.append(
            Fact(
                key=key,
                value=r.value(table, where, "value", (str, int, bool)),
                rule=r.rule(table, where),
                source=r.field(table, "source", where, str, required=False) or "",
            )
        )
    files = []
    for role, table in r.table(doc, "files", "", required=False).items():
        where = f"files.{role}"
        if not isinstance(table, dict):
            raise r.fail(where, "expected a table")
        r.only(table, where, {"path", "sha256", "size", "rule"})
        rule = r.rule(table, where)
        if rule not in ("exact", "record"):
            raise r.fail(f"{where}.rule", f"a file is compared by content: rule must be exact or record, not {rule!r}")
        sha = r.field(table, "sha256", where, str)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise r.fail(f"{where}.sha256", f"not a sha256 hex digest: {sha!r}")
        files.append(FileEntry(role, r.field(table, "path", where, str), sha, r.field(table, "size", where, int), rule))

    inventory = r.table(doc, "inventory", "", required=False)
    pip_table = r.table(inventory, "pip", "inventory.", required=False)
    pip = []
    for name, pinned in pip_table.items():
        if not isinstance(pinned, str):
            raise r.fail(f"inventory.pip.{name}", f"expected a version string, found {pinned!r}")
        pip.append((name, pinned))
    conda = []
    records = inventory.get("conda", [])
    if not isinstance(records, list):
        raise r.fail("inventory.conda", "expected an array of tables ([[inventory.conda]])")
    for i, rec in enumerate(records):
        where = f"inventory.conda[{i}]"
        if not isinstance(rec, dict):
            raise r.fail(where, "expected a table")
        r.only(
            rec,
            where,
            {"name", "version", "build", "build_number", "channel", "subdir", "url", "md5", "sha256", "depends"},
        )
        depends = r.field(rec, "depends", where, list, required=False) or []
        conda.append(
            CondaRecord(
                name=r.field(rec, "name", where, str),
                version=r.field(rec, "version", where, str),
                build=r.field(rec, "build", where, str),
                build_number=r.field(rec, "build_number", where, int, required=False) or 0,
                channel=r.field(rec, "channel", where, str, required=False) or "",
                subdir=r.field(rec, "subdir", where, str, required=False) or "",
                url=r.field(rec, "url", where, str, required=False) or "",
                md5=r.field(rec, "md5", where, str, required=False) or "",
                sha256=r.field(rec, "sha256", where, str, required=False) or "",
                depends=tuple(str(d) for d in depends),
            )
        )
    builds = []
    for name, table in r.table(inventory, "builds", "inventory.", required=False).items():
        where = f"inventory.builds.{name}"
        if not isinstance(table, dict):
            raise r.fail(where, "expected a table")
        r.only(table, where, {"version", "editable", *_BUILD_TEXT, *_BUILD_LISTS})
        kind = r.field(table, "kind", where, str)
        if kind not in BUILD_KINDS:
            raise r.fail(f"{where}.kind", f"unknown kind {kind!r} (known: {', '.join(BUILD_KINDS)})")
        lists: dict[str, tuple[str, ...]] = {}
        for key in _BUILD_LISTS:
            value = r.field(table, key, where, list, required=False) or []
            if not all(isinstance(v, str) for v in value):
                raise r.fail(f"{where}.{key}", f"expected a list of strings, found {value!r}")
            lists[key] = tuple(value)
        text = {key: r.field(table, key, where, str, required=False) or "" for key in _BUILD_TEXT}
        builds.append(
            LocalBuild(
                name=name,
                version=r.field(table, "version", where, str),
                kind=kind,
                url=text["url"],
                sha256=text["sha256"],
                wheel_tag=text["wheel_tag"],
                generator=text["generator"],
                editable=bool(r.field(table, "editable", where, bool, required=False)),
                source=text["source"],
                flags=lists["flags"],
                build_requires=lists["build_requires"],
                steps=lists["steps"],
                evidence=text["evidence"],
            )
        )
    env = Environment(packages=packages, facts=facts, files=files, conda=conda, pip=pip, builds=builds)
    return Lock(env, version, created, sp_version, path=source)


def loads(text: str, source: str = "<string>") -> Lock:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockFormatError(
            f"lock {source} is not valid TOML: {exc}",
            source=source,
            fix="restore the lock from version control, or re-create it with `safepredict lock`",
        ) from None
    return from_dict(doc, source)


def read_lock(path: str | os.PathLike[str]) -> Lock:
    """Read and validate the lock at ``path``; every failure is a :class:`LockError`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(
            f"no lock at {source!r}", source=source, fix="create one with `safepredict lock`, or pass --lock PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockFormatError(f"cannot read lock {source!r}: {exc}", source=source) from None
    return loads(text, source)
