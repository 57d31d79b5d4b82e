"""The lockfile format: it round-trips, and every bad lock is a typed error naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w
import tomllib

from safepredict.errors import LockError, LockFormatError, LockVersionError
from safepredict.lock import Environment, Fact, FileEntry, PackageEntry, read_lock, write_lock
from safepredict.lock.entries import CondaRecord
from safepredict.lock.lockfile import SCHEMA_VERSION, dumps, loads

ENV = Environment(
    packages=[
        PackageEntry("torch", "2.4.1+cu121", "exact", "pip", "torch"),
        PackageEntry("opencv", "4.10.0.84", "minor", "conda", "py-opencv"),
        PackageEntry("mmdet", None, "exact", "absent", "mmdet"),
    ],
    facts=[
        Fact("torch.cuda", "12.1", "minor", "torch/version.py (cuda)"),
        Fact("nvidia.driver", None, "driver_for_cuda", "no NVIDIA driver"),
        Fact("opencv.threads", 8, "record", "cv2.getNumThreads()"),
    ],
    files=[FileEntry("weights", "model_final.pth", "ab" * 32, 1234)],
    conda=[
        CondaRecord(
            "python",
            "3.11.9",
            "hb806964_0_cpython",
            0,
            "https://conda.anaconda.org/conda-forge/linux-64",
            "linux-64",
            "https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda",
            "0" * 32,
            "1" * 64,
            ["libgcc-ng >=12"],
        )
    ],
    pip=[("requests", "2.32.3")],
)


def test_round_trip(tmp_path: Path) -> None:
    written = write_lock(tmp_path / "safepredict.lock", ENV)
    again = read_lock(tmp_path / "safepredict.lock")
    assert again.environment == ENV
    assert again.schema_version == SCHEMA_VERSION == 1
    assert written.created == again.created and again.created.endswith("+00:00")
    text = (tmp_path / "safepredict.lock").read_text()
    assert text.startswith("# safepredict environment lock")
    assert '[packages.torch]\nversion = "2.4.1+cu121"\nrule = "exact"' in text
    assert '[facts."nvidia.driver"]\nabsent = true' in text  # TOML has no null: absence is spelled out


def _doc() -> dict[str, Any]:
    from safepredict.lock.lockfile import new_lock

    return tomllib.loads(dumps(new_lock(ENV)))


def _loads(doc: dict[str, Any]) -> Any:
    return loads(tomli_w.dumps(doc), "test.lock")


def test_corrupt_toml_is_a_format_error_not_a_parser_traceback(tmp_path: Path) -> None:
    path = tmp_path / "safepredict.lock"
    path.write_text(dumps(_from_env())[:-40] + '\n[packages.torch\nversion = "2')
    with pytest.raises(LockFormatError, match="not valid TOML") as info:
        read_lock(path)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert info.value.source == str(path) and info.value.fix


def _from_env():
    from safepredict.lock.lockfile import new_lock

    return new_lock(ENV)


def test_binary_garbage_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "safepredict.lock"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(LockFormatError):
        read_lock(path)


def test_missing_lock_is_a_lock_error(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="no lock") as info:
        read_lock(tmp_path / "nope.lock")
    assert "safepredict lock" in (info.value.fix or "")


@pytest.mark.parametrize("version", [2, 99])
def test_unknown_future_schema_is_a_version_error(version: int) -> None:
    doc = _doc()
    doc["schema_version"] = version
    with pytest.raises(LockVersionError) as info:
        _loads(doc)
    assert (info.value.expected, info.value.found) == (1, version)
    assert "upgrade safepredict" in str(info.value)


def test_old_schema_is_a_version_error() -> None:
    doc = _doc()
    doc["schema_version"] = 0
    with pytest.raises(LockVersionError, match="re-create"):
        _loads(doc)


def _drop(path: tuple[str, ...]) -> Any:
    def change(doc: dict[str, Any]) -> None:
        for part in path[:-1]:
            doc = doc[part]
        del doc[path[-1]]

    return change


def _put(path: tuple[str, ...], value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        for part in path[:-1]:
            doc = doc[part]
        doc[path[-1]] = value

    return change


BAD = [
    ("no schema_version", _drop(("schema_version",)), "schema_version"),
    ("schema_version a string", _put(("schema_version",), "1"), "schema_version"),
    ("no packages table", _drop(("packages",)), "packages"),
    ("package without rule", _drop(("packages", "torch", "rule")), "packages.torch.rule"),
    ("package without version or absent", _drop(("packages", "torch", "version")), "packages.torch"),
    ("package version a number", _put(("packages", "torch", "version"), 2.4), "packages.torch.version"),
    ("package without origin", _drop(("packages", "torch", "origin")), "packages.torch.origin"),
    ("unknown rule", _put(("packages", "torch", "rule"), "roughly"), "unknown rule 'roughly'"),
    ("misspelt field", _put(("packages", "torch", "rulez"), "exact"), "unknown field(s) rulez"),
    ("fact with value and absent", _put(("facts", "torch.cuda", "absent"), True), 'facts."torch.cuda"'),
    ("fact without value", _drop(("facts", "torch.cuda", "value")), 'facts."torch.cuda"'),
    ("fact value a table", _put(("facts", "torch.cuda", "value"), {"x": 1}), 'facts."torch.cuda".value'),
    ("file without sha256", _drop(("files", "weights", "sha256")), "files.weights.sha256"),
    ("file sha256 not hex", _put(("files", "weights", "sha256"), "xyz"), "files.weights.sha256"),
    ("file rule minor", _put(("files", "weights", "rule"), "minor"), "files.weights.rule"),
    ("conda record without build", _drop(("inventory", "conda", 0, "build")), "inventory.conda[0].build"),
    ("pip inventory version a number", _put(("inventory", "pip", "requests"), 2), "inventory.pip.requests"),
    ("packages an array", _put(("packages",), [1, 2]), "packages"),
]


@pytest.mark.parametrize(("what", "change", "where"), BAD, ids=[b[0] for b in BAD])
def test_malformed_locks_are_format_errors_naming_the_key(what: str, change: Any, where: str) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(LockFormatError) as info:
        _loads(doc)
    assert where in str(info.value)
    assert info.value.source and info.value.source.startswith("test.lock")


def test_public_names_are_exported() -> None:
    import safepredict.lock as lock

    assert set(lock.__all__) >= {
        "capture_environment",
        "write_lock",
        "read_lock",
        "check_lock",
        "enforce",
        "LockReport",
    }
    for name in lock.__all__:
        assert getattr(lock, name) is not None, name
