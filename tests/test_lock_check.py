"""A lock written here checks clean here, and each change of what decides results is reported.

Changes are made the way a moved model meets them: the lock holds what another machine had
(its values are edited, the lock is data) and the running environment is this one, unpatched.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import tomllib

from safepredict.errors import EnvironmentMismatchError, InputError, SafePredictWarning
from safepredict.lock import Probe, check_lock, enforce, read_lock, write_lock
from safepredict.lock.lockfile import HEADER


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock of this environment pinning a weights file and a config, written once per module."""
    root = tmp_path_factory.mktemp("locked")
    (root / "model_final.pth").write_bytes(bytes(range(256)) * 512)
    (root / "config.yaml").write_text("MODEL:\n  WEIGHTS: model_final.pth\n")
    write_lock(root / "safepredict.lock", weights=root / "model_final.pth", config=root / "config.yaml")
    return root


def edited(locked: Path, tmp_path: Path, change: Any) -> Path:
    """A copy of the lock folder whose lock ``change(doc)`` edited, as another machine would have written it."""
    doc = tomllib.loads((locked / "safepredict.lock").read_text())
    change(doc)
    for name in ("model_final.pth", "config.yaml"):
        (tmp_path / name).write_bytes((locked / name).read_bytes())
    out = tmp_path / "safepredict.lock"
    out.write_text(HEADER + tomli_w.dumps(doc))
    return out


def test_lock_written_here_checks_clean_here(locked: Path) -> None:
    report = check_lock(locked / "safepredict.lock")
    assert report.ok, report.describe()
    assert report.mismatches == ()
    lock = read_lock(locked / "safepredict.lock")
    compared = [e for e in (*lock.environment.packages, *lock.environment.facts) if e.rule != "record"]
    assert report.checked == len(compared) + 2  # + weights and config
    assert {p.name for p in lock.environment.packages} >= {"torch", "torchvision", "numpy", "opencv", "pillow"}


def test_check_does_not_import_torch_or_cv2(locked: Path) -> None:
    code = (
        "import sys; from safepredict.lock import check_lock; "
        f"r = check_lock({str(locked / 'safepredict.lock')!r}); "
        "print(r.ok, 'torch' in sys.modules, 'cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"], out.stderr


def _set(table: str, key: str, field: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        entry = doc[table][key]
        entry.pop("absent", None)
        entry[field] = value

    return change


# (what changed, how the lock of the other machine differs, key reported, rule reported)
def _bump(table: str, key: str, field: str, part: int) -> Any:
    """Change the locked version one step at ``part`` (1 minor, 2 patch): the smallest change a rule must see."""

    def change(doc: dict[str, Any]) -> None:
        release = [int(x) for x in str(doc[table][key][field]).split("+")[0].split(".")] + [0, 0]
        release[part] += 1
        doc[table][key][field] = ".".join(map(str, release[: max(part + 1, 2)]))

    return change


CHANGES = [
    ("torch next patch", _bump("packages", "torch", "version", 2), "packages.torch", "exact"),
    ("CUDA next minor", _bump("facts", "torch.cuda", "value", 1), "torch.cuda", "minor"),
    ("cuDNN next patch", _bump("facts", "torch.cudnn", "value", 2), "torch.cudnn", "exact"),
    ("OpenCV next minor", _bump("packages", "opencv", "version", 1), "packages.opencv", "minor"),
    ("numpy next minor", _bump("packages", "numpy", "version", 1), "packages.numpy", "minor"),
    ("detectron2 next patch", _bump("packages", "detectron2", "version", 2), "packages.detectron2", "exact"),
    ("onnxruntime next patch", _bump("packages", "onnxruntime", "version", 2), "packages.onnxruntime", "exact"),
    ("torch", _set("packages", "torch", "version", "2.13.0"), "packages.torch", "exact"),
    ("torchvision", _set("packages", "torchvision", "version", "0.28.0"), "packages.torchvision", "exact"),
    ("CUDA runtime", _set("facts", "torch.cuda", "value", "12.1"), "torch.cuda", "minor"),
    ("cuDNN", _set("facts", "torch.cudnn", "value", "8.9.2"), "torch.cudnn", "exact"),
    ("NVIDIA driver", _set("facts", "nvidia.driver", "value", "550.54.15"), "nvidia.driver", "driver_for_cuda"),
    ("OpenCV", _set("packages", "opencv", "version", "4.10.0.84"), "packages.opencv", "minor"),
    ("OpenCV IPP", _set("facts", "opencv.ipp", "value", "NO"), "opencv.ipp", "exact"),
    ("numpy", _set("packages", "numpy", "version", "1.26.4"), "packages.numpy", "minor"),
    ("pillow", _set("packages", "pillow", "version", "10.3.0"), "packages.pillow", "minor"),
    ("detectron2", _set("packages", "detectron2", "version", "0.6"), "packages.detectron2", "exact"),
    ("weights", _set("files", "weights", "sha256", "0" * 64), "files.weights", "exact"),
    ("config", _set("files", "config", "sha256", "f" * 64), "files.config", "exact"),
]


@pytest.mark.parametrize(("what", "change", "key", "rule"), CHANGES, ids=[c[0] for c in CHANGES])
def test_each_change_is_reported_with_its_rule(locked: Path, tmp_path: Path, what: str, change, key, rule) -> None:
    lock_path = edited(locked, tmp_path, change)
    report = check_lock(lock_path)
    assert not report.ok
    assert [m.key for m in report.mismatches] == [key], report.describe()
    m = report.mismatches[0]
    assert m.rule == rule
    lock = read_lock(lock_path)
    if key.startswith("packages."):
        entry = lock.environment.package(key.split(".", 1)[1])
        assert entry is not None and m.package == entry.name and m.locked == entry.version
        assert m.found == read_lock(locked / "safepredict.lock").environment.package(entry.name).version  # type: ignore[union-attr]
    text = m.describe()
    assert key in text and rule in text and m.consequence in text and str(lock_path) in text


@pytest.mark.parametrize("framework", ["mmdet", "mmcv", "mmengine"])
def test_a_changed_mmdetection_stack_is_reported(locked: Path, tmp_path: Path, framework: str) -> None:
    lock = read_lock(locked / "safepredict.lock")
    entry = lock.environment.package(framework)

    # On a machine where scripts/setup-frameworks.sh ran, the lock pins the installed version;
    # the other machine's lock names an older one either way.
    def change(doc: dict[str, Any]) -> None:
        doc["packages"][framework] = {"version": "0.0.1", "rule": "exact", "origin": "pip", "distribution": framework}

    report = check_lock(edited(locked, tmp_path, change))
    [m] = report.mismatches
    assert (m.key, m.rule, m.locked) == (f"packages.{framework}", "exact", "0.0.1")
    assert m.found == (entry.version if entry is not None else None)


def test_a_changed_weights_file_is_reported(locked: Path, tmp_path: Path) -> None:
    other = tmp_path / "retrained.pth"
    other.write_bytes(b"other weights")
    report = check_lock(locked / "safepredict.lock", weights=other)
    [m] = report.mismatches
    assert (m.key, m.rule, m.found) == (
        "files.weights",
        "exact",
        __import__("hashlib").sha256(b"other weights").hexdigest(),
    )
    assert m.fix and "weights" in m.fix
    with pytest.raises(InputError):
        check_lock(locked / "safepredict.lock", weights=tmp_path / "missing.pth")


def test_compatible_changes_pass_their_rule(locked: Path, tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        numpy = doc["packages"]["numpy"]["version"].split(".")
        doc["packages"]["numpy"]["version"] = f"{numpy[0]}.{numpy[1]}.0"  # same minor: allowed
        doc["packages"]["torch"]["rule"] = "major"
        doc["packages"]["torch"]["version"] = "2.0.0"  # relaxed by the user: allowed
        doc["facts"]["opencv.threads"]["value"] = 64  # recorded only

    assert check_lock(edited(locked, tmp_path, change)).ok


def test_cudnn_that_cannot_be_read_without_torch_is_unverified(tmp_path: Path) -> None:
    # A torch install whose cuDNN comes from neither a cuDNN distribution nor conda.
    site = tmp_path / "site-packages"
    info = site / "torch-2.4.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.4.1\n")
    (site / "torch").mkdir()
    (site / "torch" / "version.py").write_text("__version__ = '2.4.1'\ncuda: Optional[str] = '12.1'\n")
    (info / "RECORD").write_text("torch/version.py,,\ntorch-2.4.1.dist-info/METADATA,,\n")

    def change(doc: dict[str, Any]) -> None:
        doc["packages"] = {"torch": {"version": "2.4.1", "rule": "exact", "origin": "unknown", "distribution": "torch"}}
        doc["facts"] = {k: v for k, v in doc["facts"].items() if k in ("torch.cuda", "torch.cudnn")}
        doc["facts"]["torch.cuda"] = {"value": "12.1", "rule": "minor"}
        doc["facts"]["torch.cudnn"] = {"value": "9.1.0", "rule": "exact"}
        doc.pop("files")

    lock = edited_lock(tmp_path, change)
    report = check_lock(lock, probe=Probe(path=[str(site)], prefixes=[]))
    assert report.ok
    [u] = report.unverified
    assert (u.key, u.locked) == ("torch.cudnn", "9.1.0") and "without importing torch" in u.reason


def test_the_onnxruntime_execution_provider_is_locked_and_checked(locked: Path, tmp_path: Path) -> None:
    import onnxruntime

    from safepredict.engines.providers import preferred_provider

    lock = read_lock(locked / "safepredict.lock")
    [fact] = [f for f in lock.environment.facts if f.key == "onnxruntime.execution_provider"]
    assert fact.rule == "exact"
    assert fact.value == preferred_provider(onnxruntime.get_available_providers())
    other = "CUDAExecutionProvider" if fact.value == "CPUExecutionProvider" else "CPUExecutionProvider"
    lock_path = edited(locked, tmp_path, _set("facts", "onnxruntime.execution_provider", "value", other))
    deep = check_lock(lock_path, deep=True)
    assert [(m.key, m.locked, m.found) for m in deep.mismatches] == [
        ("onnxruntime.execution_provider", other, fact.value)
    ], deep.describe()
    # A plain check, in a process that never imports onnxruntime, reads it off the installed files.
    code = (
        "import sys, json; from safepredict.lock import check_lock; "
        f"r = check_lock({str(lock_path)!r}); "
        "print(json.dumps([[m.key, m.found] for m in r.mismatches]), 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found, imported = out.stdout.rsplit(" ", 1)
    assert imported.strip() == "False", out.stderr
    assert json.loads(found) == [["onnxruntime.execution_provider", fact.value]]


def edited_lock(tmp_path: Path, change: Any) -> Path:
    doc: dict[str, Any] = {"schema_version": 1, "packages": {}, "facts": {}, "files": {}}
    change(doc)
    out = tmp_path / "other.lock"
    out.write_text(tomli_w.dumps(doc))
    return out


def test_enforce_warns_with_code_and_raises_with_fields(
    locked: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = check_lock(edited(locked, tmp_path, _set("packages", "torch", "version", "2.13.0")))
    with (
        caplog.at_level(logging.WARNING, logger="safepredict"),
        pytest.warns(SafePredictWarning, match="packages.torch"),
    ):
        enforce(report, "warn")
    [record] = [r for r in caplog.records if getattr(r, "safepredict_code", None) == "env.mismatch"]
    assert record.safepredict_mismatches[0]["key"] == "packages.torch"  # type: ignore[attr-defined]
    with pytest.raises(EnvironmentMismatchError) as info:
        enforce(report, "error")
    err = info.value
    assert err.expected == {"packages.torch": "2.13.0"}
    assert err.found == {"packages.torch": report.mismatches[0].found}
    assert err.details == report.mismatches and err.source == report.lock_path
    with pytest.raises(InputError):
        enforce(report, "ignore")
    assert enforce(check_lock(locked / "safepredict.lock"), "error").ok


def test_report_json_round_trips(locked: Path, tmp_path: Path) -> None:
    report = check_lock(edited(locked, tmp_path, _set("facts", "torch.cuda", "value", "12.1")))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False
    assert data["mismatches"][0]["key"] == "torch.cuda" and data["mismatches"][0]["rule"] == "minor"
    assert data["mismatches"][0]["locked"] == "12.1"


@pytest.mark.parametrize(
    ("files", "state"),
    [
        ([], "missing"),
        (["detectron2/_C.cpython-310-x86_64-linux-gnu.so"], "incompatible (_C.cpython-310-x86_64-linux-gnu.so)"),
        ([f"detectron2/_C{__import__('importlib.machinery').machinery.EXTENSION_SUFFIXES[0]}"], "present"),
    ],
)
def test_detectron2_c_extension_state_from_its_files(tmp_path: Path, files: list[str], state: str) -> None:
    # The sal-detectron2 wheel ships a _C built for CPython 3.10: on 3.11 it is there but cannot load.
    site = tmp_path / "site-packages"
    info = site / "detectron2-0.7.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: detectron2\nVersion: 0.7.2\n\nlong description\n")
    (site / "detectron2").mkdir()
    (site / "detectron2" / "__init__.py").write_text('__version__ = "0.7.2.dev0"\n')
    for f in files:
        (site / f).write_bytes(b"\x7fELF")
    (info / "RECORD").write_text("".join(f"{f},sha256=x,4\n" for f in [*files, "detectron2/__init__.py"]))
    probe = Probe(path=[str(site)], prefixes=[])
    assert probe.fact("detectron2.c_extension").value == state
    assert probe.package("detectron2").version == "0.7.2"
    assert probe.fact("detectron2.version").value == "0.7.2.dev0"  # the module's own, not the distribution's
