"""Local builds in the lock and in every conda export, on wheels pip really builds and installs here.

Five tiny projects are built with ``pip wheel`` and installed with ``pip install --target`` (the
metadata under test is what pip writes): a wheel compiled here (retagged ``linux_x86_64`` by
``wheel tags``, as a compiler's output is) with a build record beside it; a pure wheel from a
file; a source folder; a git checkout; and an index wheel whose WHEEL says ``linux_x86_64``
inside a manylinux file name (as ray's PyPI wheels do), which is no local build. The exports are
read with conda-lock's and py-rattler's parsers, and the recipe beside them is run by bash: it
makes the compiled wheel again from the steps in its build record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import rattler
from conda_lock.lockfile import parse_conda_lock_file
from conda_lock.src_parser.environment_yaml import parse_environment_file
from rattler.explicit_environment import ExplicitEnvironmentSpec
from test_lock_conda import SP, make_conda_prefix

from safepredict.cli import main
from safepredict.errors import LockFormatError, SafePredictWarning
from safepredict.lock import Probe, capture_environment, read_lock, write_lock
from safepredict.lock.builds import RECORD_SUFFIX
from safepredict.lock.conda import export_files
from safepredict.lock.lockfile import dumps, loads

PY = sys.executable


def _pip(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run([PY, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _project(root: Path, name: str) -> Path:
    src = root / "src" / name
    (src / name).mkdir(parents=True)
    (src / name / "__init__.py").write_text(f"NAME = {name!r}\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n[tool.setuptools]\npackages = ["{name}"]\n'
    )
    return src


def _wheel(src: Path, out: Path) -> Path:
    _pip("wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src), "-w", str(out))
    [built] = out.glob(f"{src.name}-1.0-*.whl")
    return built


def _retag(wheel: Path, platform: str) -> Path:
    out = subprocess.run(
        [PY, "-m", "wheel", "tags", "--remove", "--python-tag", "cp311", "--abi-tag", "cp311", "--platform-tag",
         platform, str(wheel)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return wheel.with_name(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A conda prefix (conda-meta records) whose site-packages also holds the five pip installs."""
    root = tmp_path_factory.mktemp("builds")
    wheels = root / "wheels"
    # alpha: compiled here (linux_x86_64), with a build record saying how; the steps remake it.
    alpha_src = _project(root, "alpha")
    alpha = _retag(_wheel(alpha_src, wheels), "linux_x86_64")
    steps = [
        f'"$PY" -m pip wheel -q --no-deps --no-build-isolation --no-index {alpha_src} -w .',
        '"$PY" -m wheel tags --remove --python-tag cp311 --abi-tag cp311 --platform-tag linux_x86_64 alpha-1.0-*.whl',
        'mv alpha-1.0-cp311-cp311-linux_x86_64.whl "$WHEELS/"',
    ]
    record = {"kind": "built", "source": "alpha's source folder", "flags": ["ALPHA_FAST=1"], "steps": steps}
    Path(str(alpha) + RECORD_SUFFIX).write_text(json.dumps(record))
    beta = _wheel(_project(root, "beta"), wheels)  # a pure wheel from a file, no record
    gamma = _project(root, "gamma")  # a source folder
    delta = _project(root, "delta")  # a git checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "delta"]):
        subprocess.run([*git, *cmd], cwd=delta, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=delta, capture_output=True, text=True, check=True)
    # epsilon: from an "index" (--find-links): a manylinux file name with a linux_x86_64 WHEEL Tag inside.
    index = root / "index"
    eps = _retag(_wheel(_project(root, "epsilon"), index), "linux_x86_64")
    eps.rename(eps.with_name("epsilon-1.0-cp311-cp311-manylinux2014_x86_64.whl"))
    prefix = make_conda_prefix(root)
    site = prefix / SP
    _pip(
        "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--find-links", str(index),
        "--target", str(site), "--upgrade", str(alpha), str(beta), str(gamma), f"git+file://{delta}", "epsilon",
    )  # fmt: skip
    return {"root": root, "prefix": prefix, "site": site, "alpha": alpha, "beta": beta, "gamma": gamma,
            "delta": delta, "commit": Path(commit.stdout.strip())}  # fmt: skip


def _probe(installed: dict[str, Path]) -> Probe:
    return Probe(deep=False, path=[str(installed["site"])], prefixes=[str(installed["prefix"])])


@pytest.fixture(scope="module")
def lock(installed: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    env = capture_environment(probe=_probe(installed))
    return read_lock(write_lock(tmp_path_factory.mktemp("lock") / "safepredict.lock", env).path or "")


def test_capture_records_each_kind_of_local_build(lock, installed) -> None:
    builds = {b.name: b for b in lock.environment.builds}
    assert set(builds) == {"alpha", "beta", "gamma", "delta"}  # epsilon came from an index
    alpha = builds["alpha"]
    assert (alpha.kind, alpha.wheel_tag, alpha.flags) == ("built", "cp311-cp311-linux_x86_64", ("ALPHA_FAST=1",))
    assert alpha.wheel_path == str(installed["alpha"]) and len(alpha.steps) == 3
    assert alpha.requirement == f"alpha @ {installed['alpha'].as_uri()}"
    assert "linux_* platform tag" in alpha.evidence and "build record" in alpha.evidence
    beta = builds["beta"]
    assert beta.kind == "wheel-file" and beta.wheel_tag == "py3-none-any" and not beta.steps
    assert len(beta.sha256) == 64  # pip's archive hash from direct_url.json
    gamma = builds["gamma"]
    assert (gamma.kind, gamma.url, gamma.editable) == ("directory", installed["gamma"].as_uri(), False)
    delta = builds["delta"]
    assert (
        delta.kind == "vcs" and delta.requirement == f"delta @ git+{installed['delta'].as_uri()}@{installed['commit']}"
    )


def test_lock_file_round_trips_the_builds_and_rejects_a_bad_kind(lock) -> None:
    text = dumps(lock)
    assert "[inventory.builds.alpha]" in text
    assert loads(text, "x.lock").environment.builds == lock.environment.builds
    with pytest.raises(LockFormatError, match=r"inventory\.builds\.alpha\.kind"):
        loads(text.replace('kind = "built"', 'kind = "magic"'), "x.lock")


def test_unreadable_build_record_is_warned_and_left_out(installed, tmp_path) -> None:
    record = Path(str(installed["alpha"]) + RECORD_SUFFIX)
    good = record.read_text()
    record.write_text('{"steps": "not a list"}')
    try:
        with pytest.warns(SafePredictWarning, match="steps is not a list"):
            env = capture_environment(probe=_probe(installed))
    finally:
        record.write_text(good)
    alpha = env.build("alpha")
    assert alpha is not None and alpha.kind == "built" and not alpha.steps  # from the WHEEL tag alone


def test_every_export_names_the_builds_and_parses(lock, installed, tmp_path) -> None:
    yml, recipe = export_files(lock, "environment", tmp_path / "environment.yml")
    assert recipe == tmp_path / "environment.rebuild.sh" and os.access(recipe, os.X_OK)
    text = yml.read_text()
    assert "4 pip package(s) are on no package index" in text and "(ALPHA_FAST=1)" in text
    assert "bash environment.rebuild.sh wheels" in text
    mapping = tmp_path / "pypi-mapping.json"
    mapping.write_text("{}")
    spec = parse_environment_file(yml, ["linux-64"], mapping_url=str(mapping))
    deps = {d.name: d for d in spec.dependencies["linux-64"]}
    assert getattr(deps["alpha"], "path", None) == str(installed["alpha"])  # the wheel file itself
    assert getattr(deps["gamma"], "is_directory", False)
    assert deps["epsilon"].version == "==1.0"
    for fmt, name in (("explicit", "explicit.txt"), ("conda-lock", "conda-lock.yml")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SafePredictWarning)  # the pip packages are left out: said in the file
            path, recipe = export_files(lock, fmt, tmp_path / name)
        assert recipe is not None and recipe.name == name.split(".")[0] + ".rebuild.sh"
        head = path.read_text()
        assert "4 pip package(s) are on no package index" in head and f"bash {recipe.name}" in head
    assert len(ExplicitEnvironmentSpec.from_path(tmp_path / "explicit.txt").packages) == 5
    assert {p.name for p in parse_conda_lock_file(tmp_path / "conda-lock.yml").package} >= {"python", "numpy"}
    assert rattler.LockFile.from_path(tmp_path / "conda-lock.yml").default_environment() is not None


def test_recipe_makes_a_missing_wheel_from_its_build_record(lock, installed, tmp_path) -> None:
    _, recipe = export_files(lock, "environment", tmp_path / "environment.yml")
    assert recipe is not None
    subprocess.run(["bash", "-n", str(recipe)], check=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # beta has no build record: its stand-in would ask an index, so its file is put there as it is.
    (wheels / installed["beta"].name).write_bytes(installed["beta"].read_bytes())
    env = {**os.environ, "PYTHON": PY, "WHEELS": str(wheels), "PIP_NO_INDEX": "1"}
    out = subprocess.run(["bash", str(recipe), "wheels"], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert f"making {wheels / installed['alpha'].name}" in out.stderr
    rebuilt = wheels / installed["alpha"].name
    assert rebuilt.is_file()
    assert "alpha/__init__.py" in zipfile.ZipFile(rebuilt).namelist()
    # A second run finds every file and makes nothing.
    again = subprocess.run(["bash", str(recipe), "wheels"], env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "making" not in again.stderr


def test_export_conda_takes_the_lock_as_an_argument(lock, tmp_path, capsys) -> None:
    out = tmp_path / "environment.yml"
    assert main(["export-conda", str(lock.path), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recipe"] == str(tmp_path / "environment.rebuild.sh")
    assert report["local_builds"] == ["alpha", "beta", "delta", "gamma"]
    with pytest.warns(SafePredictWarning, match="--lock LOCK is deprecated"):
        assert main(["export-conda", "--lock", str(lock.path), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["export-conda", str(lock.path), "--lock", str(tmp_path / "other.lock"), "-o", str(out)]) == 2
    assert "two locks given" in capsys.readouterr().err
