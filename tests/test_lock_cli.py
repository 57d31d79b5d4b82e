"""`safepredict lock`, `check` and `export-conda` as a container entrypoint runs them: exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import tomllib

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "safepredict", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "model.pth").write_bytes(b"weights" * 1000)
    (root / "config.py").write_text("model = dict(type='FasterRCNN')\n")
    out = run("lock", "--weights", "model.pth", "--config", "config.py", "--package", "attrs", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "wrote safepredict.lock" in out.stdout
    return root


def test_lock_pins_files_relative_to_the_lock_and_extra_packages(folder: Path) -> None:
    doc = tomllib.loads((folder / "safepredict.lock").read_text())
    assert doc["files"]["weights"]["path"] == "model.pth" and doc["files"]["config"]["path"] == "config.py"
    assert doc["packages"]["attrs"]["rule"] == "exact"


def test_check_matches_exit_0(folder: Path) -> None:
    out = run("check", cwd=folder)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "environment matches" in out.stdout


def test_check_json_on_match(folder: Path) -> None:
    out = run("check", "--json", cwd=folder)
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert data["ok"] is True and data["mismatches"] == [] and data["checked"] > 10


def test_check_mismatch_exit_1_with_json_report(folder: Path, tmp_path: Path) -> None:
    doc = tomllib.loads((folder / "safepredict.lock").read_text())
    doc["packages"]["numpy"]["version"] = "1.26.4"
    (tmp_path / "other.lock").write_text(tomli_w.dumps(doc))
    out = run(
        "check",
        "--lock",
        str(tmp_path / "other.lock"),
        "--weights",
        "model.pth",
        "--config",
        "config.py",
        "--json",
        cwd=folder,
    )
    assert out.returncode == 1, out.stderr
    [m] = json.loads(out.stdout)["mismatches"]
    assert (m["key"], m["package"], m["locked"], m["rule"]) == ("packages.numpy", "numpy", "1.26.4", "minor")
    text = run(
        "check", "--lock", str(tmp_path / "other.lock"), "--weights", "model.pth", "--config", "config.py", cwd=folder
    )
    assert text.returncode == 1 and "packages.numpy: locked 1.26.4" in text.stderr


def test_check_changed_weights_exit_1(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "model.pth").write_bytes(b"retrained")
    out = run("check", "--lock", str(folder / "safepredict.lock"), "--weights", str(tmp_path / "model.pth"), cwd=folder)
    assert out.returncode == 1 and "files.weights" in out.stderr


def test_corrupt_lock_exit_2(tmp_path: Path) -> None:
    (tmp_path / "safepredict.lock").write_text("schema_version = 1\n[packages\n")
    out = run("check", cwd=tmp_path)
    assert out.returncode == 2
    assert "not valid TOML" in out.stderr and "Traceback" not in out.stderr


def test_future_schema_exit_2(tmp_path: Path) -> None:
    (tmp_path / "safepredict.lock").write_text("schema_version = 7\n")
    out = run("check", cwd=tmp_path)
    assert out.returncode == 2 and "schema version 7" in out.stderr


def test_missing_lock_and_bad_usage_exit_2(tmp_path: Path) -> None:
    assert run("check", cwd=tmp_path).returncode == 2
    assert run("check", "--no-such-flag", cwd=tmp_path).returncode == 2


def test_export_environment_yml(folder: Path, tmp_path: Path) -> None:
    out = run("export-conda", "--format", "environment", "--out", str(tmp_path / "environment.yml"), cwd=folder)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "environment.yml").read_text()
    assert '- "pip"' in text and '"numpy==' in text


def test_export_explicit_without_conda_exit_2(folder: Path, tmp_path: Path) -> None:
    out = run(
        "export-conda",
        "safepredict.lock",
        "--format",
        "explicit",
        "--out",
        str(tmp_path / "x.txt"),
        cwd=folder,
    )
    assert out.returncode == 2 and "no conda packages" in out.stderr


def test_python_m_safepredict_prints_the_environment(tmp_path: Path) -> None:
    out = run(cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "torch.cuda" in out.stdout and "packages:" in out.stdout and "nvidia.driver" in out.stdout


def test_check_command_does_not_import_torch(folder: Path) -> None:
    code = "import sys; from safepredict.cli import main; rc = main(['check']); print(rc, 'torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)
    assert out.stdout.split()[-2:] == ["0", "False"], out.stdout + out.stderr


def test_lock_of_a_package_that_is_not_installed_warns_and_records_it_absent(tmp_path: Path) -> None:
    out = run("lock", "--package", "no-such-distribution-xyz", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "'no-such-distribution-xyz' is not installed" in out.stderr
    entry = tomllib.loads((tmp_path / "safepredict.lock").read_text())["packages"]["no-such-distribution-xyz"]
    assert entry["absent"] is True and "version" not in entry
    assert run("check", cwd=tmp_path).returncode == 0


def test_unverified_entries_pass_unless_strict_and_deep_verifies_them(folder: Path, tmp_path: Path) -> None:
    # OpenCV's thread count exists only inside a process that imported cv2: a plain check cannot see it.
    doc = tomllib.loads((folder / "safepredict.lock").read_text())
    doc["facts"]["opencv.threads"]["rule"] = "exact"
    lock = tmp_path / "threads.lock"
    lock.write_text(tomli_w.dumps(doc))
    common = ["--lock", str(lock), "--weights", "model.pth", "--config", "config.py"]
    plain = run("check", *common, "--json", cwd=folder)
    assert plain.returncode == 0, plain.stderr
    [u] = json.loads(plain.stdout)["unverified"]
    assert u["key"] == "opencv.threads"
    assert run("check", *common, "--strict", cwd=folder).returncode == 1
    deep = run("check", *common, "--deep", "--strict", "--json", cwd=folder)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert json.loads(deep.stdout)["unverified"] == []


def test_check_takes_the_lock_as_a_positional_argument_too(folder: Path, tmp_path: Path) -> None:
    out = run("check", str(folder / "safepredict.lock"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["format"] == "safepredict" and data["lock"] == str(folder / "safepredict.lock")
    both = run("check", "a.lock", "--lock", "b.lock", cwd=tmp_path)
    assert both.returncode == 2 and "two locks given" in both.stderr


def test_short_out_option_for_lock_and_export(folder: Path, tmp_path: Path) -> None:
    out = run("lock", "-o", str(tmp_path / "short.lock"), cwd=folder)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "short.lock").is_file()
    out = run("export-conda", str(tmp_path / "short.lock"), "-o", str(tmp_path / "environment.yml"), cwd=folder)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "environment.yml").is_file()


def test_check_offers_the_golden_replay_extension(tmp_path: Path) -> None:
    # Only the chosen command's module is imported: `check` fetches its extensions itself.
    out = run("check", "--help", cwd=tmp_path)
    assert "--replay" in out.stdout
