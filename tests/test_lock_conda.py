"""Conda origin and conda exports, against a conda prefix laid out on disk as conda writes it.

There is no conda on the test machines; the prefix below has what a conda install leaves: one
``conda-meta/<name>-<version>-<build>.json`` record per package (the fields conda writes, parsed
here by py-rattler's ``PrefixRecord`` to prove they are real records), and the ``.dist-info``
folders those records own in ``site-packages``, next to one distribution that pip installed.
The exports are loaded with conda-lock's and py-rattler's own parsers.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import rattler
from conda_lock.lockfile import parse_conda_lock_file
from conda_lock.src_parser.environment_yaml import parse_environment_file

from safepredict.errors import LockError, SafePredictWarning
from safepredict.lock import Probe, capture_environment, check_lock, read_lock, write_lock
from safepredict.lock.conda import conda_lock_v1, environment_yml, explicit, export
from safepredict.lock.lockfile import new_lock

SP = "lib/python3.11/site-packages"
CHANNEL = "https://conda.anaconda.org/conda-forge"

# name, version, build, subdir, depends, the dist-info it owns (None: not a Python distribution)
PACKAGES = [
    ("python", "3.11.9", "hb806964_0_cpython", "linux-64", ["libgcc-ng >=12", "libzlib >=1.2.13,<2.0a0"], None),
    ("libzlib", "1.3.1", "h4ab18f5_1", "linux-64", ["libgcc-ng >=12"], None),
    (
        "numpy",
        "1.26.4",
        "py311h64a7726_0",
        "linux-64",
        ["libblas >=3.9.0,<4.0a0", "python >=3.11,<3.12.0a0", "python_abi 3.11.* *_cp311"],
        "numpy-1.26.4.dist-info",
    ),
    ("pillow", "10.3.0", "py311h18e6fac_0", "linux-64", ["python >=3.11,<3.12.0a0"], "pillow-10.3.0.dist-info"),
    ("pip", "24.0", "pyhd8ed1ab_0", "noarch", ["python >=3.7", "setuptools", "wheel"], "pip-24.0.dist-info"),
]


def _dist_info(site: Path, dirname: str, name: str, version: str, installer: str, top: str) -> list[str]:
    info = site / dirname
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text(installer + "\n")
    (info / "top_level.txt").write_text(top + "\n")
    (site / top).mkdir(exist_ok=True)
    (site / top / "__init__.py").write_text("")
    files = [f"{dirname}/{n}" for n in ("METADATA", "INSTALLER", "top_level.txt")] + [f"{top}/__init__.py"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in [*files, f"{dirname}/RECORD"]))
    return [f"{SP}/{f}" for f in [*files, f"{dirname}/RECORD"]]


def make_conda_prefix(root: Path) -> Path:
    """A conda environment's prefix as conda leaves it, plus one pip-installed distribution."""
    prefix = root / "env"
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "history").write_text("==> 2026-11-25 10:00:00 <==\n# cmd: conda create -n env numpy pillow\n")
    site = prefix / SP
    site.mkdir(parents=True)
    for name, version, build, subdir, depends, dist_info in PACKAGES:
        files = [f"bin/{name}-tool"] if dist_info is None else []
        if dist_info is not None:
            top = {"pillow": "PIL"}.get(name, name)
            files = _dist_info(site, dist_info, name, version, "conda", top)
        fn = f"{name}-{version}-{build}.conda"
        payload = f"{name}{version}{build}".encode()
        record = {
            "build": build,
            "build_number": int(build.rsplit("_", 1)[-1]) if build[-1].isdigit() else 0,
            "channel": f"{CHANNEL}/{subdir}",
            "constrains": [],
            "depends": depends,
            "extracted_package_dir": f"/opt/conda/pkgs/{fn[: -len('.conda')]}",
            "features": "",
            "files": files,
            "fn": fn,
            "license": "BSD-3-Clause",
            "link": {"source": f"/opt/conda/pkgs/{fn[: -len('.conda')]}", "type": 1},
            "md5": hashlib.md5(payload).hexdigest(),
            "name": name,
            "package_tarball_full_path": f"/opt/conda/pkgs/{fn}",
            "paths_data": {
                "paths": [
                    {
                        "_path": f,
                        "path_type": "hardlink",
                        "sha256": hashlib.sha256(f.encode()).hexdigest(),
                        "size_in_bytes": 1,
                    }
                    for f in files
                ],
                "paths_version": 1,
            },
            "requested_spec": name,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": 1000,
            "subdir": subdir,
            "timestamp": 1716000000000,
            "url": f"{CHANNEL}/{subdir}/{fn}",
            "version": version,
        }
        if subdir == "noarch":
            record["noarch"] = "python"
        (meta / f"{name}-{version}-{build}.json").write_text(json.dumps(record, indent=2))
    _dist_info(site, "requests-2.32.3.dist-info", "requests", "2.32.3", "pip", "requests")
    return prefix


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return make_conda_prefix(tmp_path)


def probe_for(prefix: Path) -> Probe:
    return Probe(deep=False, path=[str(prefix / SP)], prefixes=[str(prefix)])


def test_prefix_records_are_real_conda_records(prefix: Path) -> None:
    records = [rattler.PrefixRecord.from_path(p) for p in sorted((prefix / "conda-meta").glob("*.json"))]
    assert sorted(r.name.normalized for r in records) == sorted(p[0] for p in PACKAGES)
    numpy = next(r for r in records if r.name.normalized == "numpy")
    assert str(numpy.version) == "1.26.4" and str(numpy.build) == "py311h64a7726_0"


def test_capture_tells_conda_packages_from_pip_packages(prefix: Path) -> None:
    env = capture_environment(extra_packages=["requests"], probe=probe_for(prefix))
    numpy, pillow, requests = env.package("numpy"), env.package("pillow"), env.package("requests")
    assert numpy is not None and (numpy.version, numpy.origin) == ("1.26.4", "conda")
    assert pillow is not None and (pillow.version, pillow.origin) == ("10.3.0", "conda")
    assert requests is not None and (requests.version, requests.origin) == ("2.32.3", "pip")
    assert {c.name for c in env.conda} == {p[0] for p in PACKAGES}
    assert dict(env.pip) == {"requests": "2.32.3"}  # conda's own distributions are not pip's
    numpy_rec = next(c for c in env.conda if c.name == "numpy")
    assert numpy_rec.channel_name == "conda-forge" and numpy_rec.url.endswith("numpy-1.26.4-py311h64a7726_0.conda")


def test_conda_lock_checks_clean_and_reports_a_changed_origin(prefix: Path, tmp_path: Path) -> None:
    env = capture_environment(probe=probe_for(prefix))
    lock = write_lock(tmp_path / "safepredict.lock", env)
    assert lock.path is not None
    assert check_lock(lock.path, probe=probe_for(prefix)).ok
    text = Path(lock.path).read_text()
    (tmp_path / "pip.lock").write_text(
        text.replace('origin = "conda"\ndistribution = "numpy"', 'origin = "pip"\ndistribution = "numpy"')
    )
    report = check_lock(tmp_path / "pip.lock", probe=probe_for(prefix))
    assert [m.key for m in report.mismatches] == ["packages.numpy.origin"]
    assert (report.mismatches[0].locked, report.mismatches[0].found) == ("pip", "conda")


@pytest.fixture
def conda_lock(prefix: Path, tmp_path: Path):
    env = capture_environment(extra_packages=["requests"], probe=probe_for(prefix))
    return read_lock(write_lock(tmp_path / "safepredict.lock", env).path or "")


def test_environment_yml_loads_in_conda_lock(conda_lock, tmp_path: Path) -> None:
    out = export(conda_lock, "environment", tmp_path / "environment.yml")
    # conda-lock maps pip names to conda names with a PyPI mapping; a local one keeps it offline.
    mapping = tmp_path / "pypi-mapping.json"
    entry = {"conda_name": "requests", "conda_forge": "requests", "pypi_name": "requests"}
    mapping.write_text(json.dumps({"requests": entry}))
    spec = parse_environment_file(out, ["linux-64"], mapping_url=str(mapping))
    deps = {d.name: d for d in spec.dependencies["linux-64"]}
    assert deps["numpy"].manager == "conda" and deps["numpy"].version == "1.26.4"
    assert deps["numpy"].build == "py311h64a7726_0"
    assert deps["requests"].manager == "pip" and deps["requests"].version == "==2.32.3"
    assert [c.url for c in spec.channels] == ["conda-forge"]


def test_explicit_spec_lines_are_conda_urls_with_md5(conda_lock) -> None:
    with pytest.warns(SafePredictWarning, match="requests==2.32.3"):
        text = explicit(conda_lock)
    lines = text.splitlines()
    assert "# platform: linux-64" in lines
    body = lines[lines.index("@EXPLICIT") + 1 :]
    assert len(body) == len(PACKAGES)
    md5 = {c.name: c.md5 for c in conda_lock.environment.conda}
    for line in body:
        url, _, digest = line.partition("#")
        spec = rattler.MatchSpec(url)
        assert md5[spec.name.normalized] == digest


def test_conda_lock_v1_file_loads_in_conda_lock_and_rattler(conda_lock, tmp_path: Path) -> None:
    path = tmp_path / "conda-lock.yml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SafePredictWarning)  # requests is pip-only: left out on purpose
        path.write_text(conda_lock_v1(conda_lock))
    parsed = parse_conda_lock_file(path)
    by_name = {p.name: p for p in parsed.package}
    assert set(by_name) == {p[0] for p in PACKAGES}
    assert by_name["numpy"].version == "1.26.4" and by_name["numpy"].manager == "conda"
    assert by_name["numpy"].dependencies["python"] == ">=3.11,<3.12.0a0"
    assert parsed.metadata.platforms == ["linux-64"]
    rattler_lock = rattler.LockFile.from_path(path)
    env = rattler_lock.default_environment()
    assert env is not None
    [platform] = env.platforms()
    assert str(platform.name) == "linux-64"
    names = {p.name for p in env.packages(platform) or ()}
    assert names == {p[0] for p in PACKAGES}


def test_explicit_without_conda_packages_is_a_typed_error() -> None:
    pip_only = new_lock(capture_environment())
    with pytest.raises(LockError, match="no conda packages"):
        explicit(pip_only)
    assert "pip:" in environment_yml(pip_only)
