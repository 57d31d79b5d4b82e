"""`safepredict check` against lockfiles of the conda ecosystem: conda-lock v1, pixi.lock, @EXPLICIT.

Each file is written the way its tool writes it (conda-lock's own models and writer, py-rattler's
``LockFile`` as pixi uses it, the text of ``conda list --explicit --md5``) and parsed back with
that ecosystem's parser before the check reads it. The entries name this venv's real numpy and
torch versions (a match) or an edited one (a mismatch, exit 1).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
from pathlib import Path

import pytest
import rattler
from conda_lock.lockfile import parse_conda_lock_file, write_conda_lock_file
from conda_lock.lockfile.v1.models import HashModel, LockMeta
from conda_lock.lockfile.v2prelim.models import LockedDependency, Lockfile
from conda_lock.models.channel import Channel
from rattler.explicit_environment import ExplicitEnvironmentSpec
from test_lock_conda import make_conda_prefix, probe_for

from safepredict.cli import main
from safepredict.lock.conda import current_subdir
from safepredict.lock.external import (
    DISTRIBUTIONS,
    ExternalLock,
    LockedEntry,
    _archive_parts,
    _read_conda_lock,
    _read_rattler,
    _targets,
    check_external,
    detect_format,
    read_external,
)
from safepredict.lock.rules import DEFAULT_PACKAGE_RULES

NUMPY = md.version("numpy")
TORCH = md.version("torch").split("+")[0]  # conda versions carry no local label
ATTRS = md.version("attrs")
HERE = current_subdir() or "linux-64"
CF = "https://conda.anaconda.org/conda-forge"

# (name, version, build, depends) of conda packages: the venv's numpy and torch under their conda
# names, the interpreter, and a native library nothing here records.
CONDA = [
    ("python", "3.11.9", "hb806964_0_cpython", ["libzlib >=1.2.13,<2.0a0"]),
    ("libzlib", "1.3.1", "h4ab18f5_1", []),
    ("numpy", NUMPY, "py311h64a7726_0", ["python >=3.11,<3.12.0a0", "python_abi 3.11.* *_cp311"]),
    ("pytorch", TORCH, "cpu_generic_py311_0", ["python >=3.11,<3.12.0a0", "numpy >=1.23"]),
]


def _conda(edits: dict[str, str] | None = None) -> list[tuple[str, str, str, list[str]]]:
    edits = edits or {}
    return [(n, edits.get(n, v), b, d) for n, v, b, d in CONDA]


def _url(name: str, version: str, build: str, subdir: str = HERE) -> str:
    return f"{CF}/{subdir}/{name}-{version}-{build}.conda"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _dependency(spec: str) -> tuple[str, str]:
    name, _, rest = spec.partition(" ")
    return name, rest or "*"


def write_conda_lock(path: Path, edits: dict[str, str] | None = None, platform: str = HERE) -> Path:
    """A conda-lock v1 file written by conda-lock's own writer from its own models."""
    deps = [
        LockedDependency(
            name=n,
            version=v,
            manager="conda",
            platform=platform,
            dependencies=dict(_dependency(d) for d in ds),
            url=_url(n, v, b, platform),
            hash=HashModel(md5=_md5(n + v), sha256=hashlib.sha256((n + v).encode()).hexdigest()),
            build=b,
            categories={"main"},
        )
        for n, v, b, ds in _conda(edits)
    ]
    deps.append(
        LockedDependency(
            name="attrs",
            version=(edits or {}).get("attrs", ATTRS),
            manager="pip",
            platform=platform,
            url=f"https://files.pythonhosted.org/packages/attrs-{ATTRS}-py3-none-any.whl",
            hash=HashModel(sha256="0" * 64),
            categories={"main"},
        )
    )
    # A dev-only package that is not installed: `conda-lock install` leaves it out unless asked.
    deps.append(
        LockedDependency(
            name="no-such-dev-tool",
            version="1.0",
            manager="conda",
            platform=platform,
            dependencies={"python": ">=3.8"},
            url=_url("no-such-dev-tool", "1.0", "pyhd8ed1ab_0", "noarch"),
            hash=HashModel(md5=_md5("dev"), sha256="1" * 64),
            build="pyhd8ed1ab_0",
            categories={"dev"},
        )
    )
    lockfile = Lockfile(
        package=deps,
        metadata=LockMeta(
            content_hash={platform: "0" * 64},
            channels=[Channel.from_string("conda-forge")],
            platforms=[platform],
            sources=["environment.yml"],
        ),
    )
    write_conda_lock_file(lockfile, path, metadata_choices=None)
    return path


def write_pixi_lock(path: Path, edits: dict[str, str] | None = None, environments: tuple[str, ...] = ("default",)):
    """A pixi.lock written through py-rattler's LockFile (the rattler_lock writer pixi uses)."""
    platform = rattler.LockPlatform(HERE)
    lock = rattler.LockFile([platform])
    for env in environments:
        lock.set_channels(env, [rattler.LockChannel(f"{CF}/")])
        for n, v, b, ds in _conda(edits):
            fn = f"{n}-{v}-{b}.conda"
            record = rattler.PackageRecord(
                n,
                v,
                rattler.BuildString(b),
                int(b.rsplit("_", 1)[-1]) if b[-1].isdigit() else 0,
                HERE,
                depends=ds,
                md5=hashlib.md5(fn.encode()).digest(),
                sha256=hashlib.sha256(fn.encode()).digest(),
            )
            lock.add_conda_package(env, platform, rattler.RepoDataRecord(record, fn, _url(n, v, b), f"{CF}/"))
        attrs_version = (edits or {}).get("attrs", ATTRS)
        lock.add_pypi_package(
            env, platform, "attrs", attrs_version, f"https://files.pythonhosted.org/attrs-{attrs_version}.whl"
        )
    lock.to_path(path)
    return path


def write_explicit(path: Path, edits: dict[str, str] | None = None, platform: str = HERE) -> Path:
    """An @EXPLICIT spec as `conda list --explicit --md5` prints it."""
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {platform}",
        "@EXPLICIT",
        *(f"{_url(n, v, b, platform)}#{_md5(n + v)}" for n, v, b, _ in _conda(edits)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the files are what their tools write -----------------------------------------------------


def test_written_files_parse_back_with_their_own_parsers(tmp_path: Path) -> None:
    cl = parse_conda_lock_file(write_conda_lock(tmp_path / "conda-lock.yml"))
    assert {p.name: p.version for p in cl.package}["numpy"] == NUMPY
    assert cl.metadata.platforms == [HERE]
    pixi = rattler.LockFile.from_path(write_pixi_lock(tmp_path / "pixi.lock"))
    env = pixi.default_environment()
    assert env is not None
    names = {p.name for pkgs in env.packages_by_platform().values() for p in pkgs}
    assert {"numpy", "pytorch", "attrs"} <= names
    spec = ExplicitEnvironmentSpec.from_path(write_explicit(tmp_path / "explicit.txt"))
    assert str(spec.platform) == HERE and len(spec.packages) == len(CONDA)


def test_formats_are_told_apart_by_name_and_content(tmp_path: Path) -> None:
    write_conda_lock(tmp_path / "conda-lock.yml")
    write_pixi_lock(tmp_path / "pixi.lock")
    write_explicit(tmp_path / "explicit.txt")
    assert detect_format(tmp_path / "conda-lock.yml") == "conda-lock"
    assert detect_format(tmp_path / "pixi.lock") == "pixi"
    assert detect_format(tmp_path / "explicit.txt") == "explicit"
    for src, renamed in (("conda-lock.yml", "env.yml"), ("pixi.lock", "deploy.lock"), ("explicit.txt", "spec")):
        (tmp_path / renamed).write_bytes((tmp_path / src).read_bytes())
    assert detect_format(tmp_path / "env.yml") == "conda-lock"
    assert detect_format(tmp_path / "deploy.lock") == "pixi"
    assert detect_format(tmp_path / "spec") == "explicit"
    (tmp_path / "safepredict.lock").write_text("schema_version = 1\n")
    assert detect_format(tmp_path / "safepredict.lock") == "safepredict"
    assert detect_format(tmp_path / "missing.lock") == "safepredict"  # its reader says it is missing


def test_read_external_keeps_what_each_file_says(tmp_path: Path) -> None:
    cl = read_external(write_conda_lock(tmp_path / "conda-lock.yml"))
    by_name = {e.name: e for e in cl.entries}
    assert cl.format == "conda-lock" and cl.platform == HERE and cl.parser.startswith("conda_lock")
    assert by_name["numpy"] == LockedEntry("numpy", NUMPY, "conda", "py311h64a7726_0", True)
    assert by_name["libzlib"].python is False and by_name["attrs"].manager == "pypi"
    assert by_name["no-such-dev-tool"].optional
    pixi = read_external(write_pixi_lock(tmp_path / "pixi.lock"))
    assert pixi.environment == "default" and {e.name for e in pixi.entries} == {n for n, *_ in CONDA} | {"attrs"}
    explicit = read_external(write_explicit(tmp_path / "explicit.txt"))
    assert {e.name: (e.version, e.build) for e in explicit.entries}["pytorch"] == (TORCH, "cpu_generic_py311_0")


def test_conda_lock_reads_the_same_with_rattler_when_conda_lock_is_missing(tmp_path: Path) -> None:
    path = write_conda_lock(tmp_path / "conda-lock.yml")
    ours = _read_conda_lock(path, HERE)
    theirs = _read_rattler(path, "conda-lock", HERE, None)
    # rattler does not keep conda-lock's categories: the optional flag is conda-lock's alone.
    assert {(e.name, e.version, e.manager, e.build) for e in ours.entries} == {
        (e.name, e.version, e.manager, e.build) for e in theirs.entries
    }


# -- the check --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "writer", [write_conda_lock, write_pixi_lock, write_explicit], ids=["conda-lock", "pixi", "explicit"]
)
def test_this_venvs_versions_match_exit_0(writer, tmp_path: Path, capsys) -> None:
    name = {"write_conda_lock": "conda-lock.yml", "write_pixi_lock": "pixi.lock"}.get(writer.__name__, "explicit.txt")
    path = writer(tmp_path / name)
    code, out, err = run(["check", str(path), "--json"], capsys)
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] and report["mismatches"] == [] and report["format"] == detect_format(path)
    unverified = {u["key"]: u for u in report["unverified"]}
    # libzlib is a native library: outside a conda environment nothing records it.
    assert "conda-meta records" in unverified["packages.libzlib"]["reason"]
    # numpy and torch are pip wheels here: the version matches, the conda build cannot be told.
    assert {"packages.numpy.build", "packages.torch.build"} <= set(unverified)
    assert report["checked"] >= 3  # python.version, numpy, torch (and attrs where the file has it)
    # --strict counts the unverified entries as failures.
    assert run(["check", str(path), "--strict"], capsys)[0] == 1


@pytest.mark.parametrize(
    ("writer", "name"),
    [(write_conda_lock, "conda-lock.yml"), (write_pixi_lock, "pixi.lock"), (write_explicit, "explicit.txt")],
    ids=["conda-lock", "pixi", "explicit"],
)
def test_an_edited_version_is_a_mismatch_exit_1(writer, name, tmp_path: Path, capsys) -> None:
    path = writer(tmp_path / name, {"numpy": "1.26.4", "pytorch": "2.4.1"})
    code, out, err = run(["check", "--lock", str(path), "--json"], capsys)
    assert code == 1, out + err
    mismatches = {m["key"]: m for m in json.loads(out)["mismatches"]}
    assert set(mismatches) == {"packages.numpy", "packages.torch"}
    numpy, torch = mismatches["packages.numpy"], mismatches["packages.torch"]
    assert (numpy["locked"], numpy["found"], numpy["rule"]) == ("1.26.4", NUMPY, "minor")
    assert (torch["locked"], torch["rule"]) == ("2.4.1", "exact") and torch["found"].startswith(TORCH)
    assert "conda package pytorch=2.4.1" in torch["requirement"]
    assert torch["fix"].startswith("pip install 'torch==2.4.1'")
    # The words of a safepredict lock's report.
    code, _, err = run(["check", str(path)], capsys)
    assert code == 1
    assert f"packages.numpy: locked 1.26.4, found {NUMPY} (pip distribution numpy)" in err
    assert "rule: minor, must have the same major.minor release (1.26.*)" in err


def test_pypi_entries_are_compared_with_the_distribution_of_their_name(tmp_path: Path, capsys) -> None:
    path = write_pixi_lock(tmp_path / "pixi.lock", {"attrs": "20.1.0"})
    code, out, _ = run(["check", str(path), "--json"], capsys)
    assert code == 1
    [m] = json.loads(out)["mismatches"]
    assert (m["key"], m["locked"], m["found"], m["rule"]) == ("packages.attrs", "20.1.0", ATTRS, "exact")


def test_a_pixi_environment_is_chosen_by_name(tmp_path: Path, capsys) -> None:
    path = write_pixi_lock(tmp_path / "pixi.lock", environments=("default", "prod"))
    assert run(["check", str(path), "--environment", "prod"], capsys)[0] == 0
    code, _, err = run(["check", str(path), "--environment", "staging"], capsys)
    assert code == 2 and "no environment 'staging' (it has: default, prod)" in err


def test_a_lockfile_for_another_platform_is_a_mismatch(tmp_path: Path, capsys) -> None:
    other = "osx-arm64" if HERE != "osx-arm64" else "linux-64"
    path = write_conda_lock(tmp_path / "conda-lock.yml", platform=other)
    code, out, _ = run(["check", str(path), "--json"], capsys)
    assert code == 1
    mismatches = {m["key"]: m for m in json.loads(out)["mismatches"]}
    assert mismatches["platform.subdir"]["locked"] == other and mismatches["platform.subdir"]["found"] == HERE
    # Asked for explicitly, that platform's entries are compared, and the platform is not.
    assert run(["check", str(path), "--platform", other], capsys)[0] == 0


def test_conda_environment_reads_conda_meta_records_and_builds(tmp_path: Path) -> None:
    prefix = make_conda_prefix(tmp_path)  # numpy 1.26.4 py311h64a7726_0, pillow 10.3.0, python 3.11.9 ...
    probe = probe_for(prefix)
    same = ExternalLock(
        str(tmp_path / "conda-lock.yml"),
        "conda-lock",
        HERE,
        [
            LockedEntry("numpy", "1.26.4", "conda", "py311h64a7726_0", True),
            LockedEntry("libzlib", "1.3.1", "conda", "h4ab18f5_1", False),
        ],
        (HERE,),
    )
    report = check_external(same, probe=probe)
    assert report.ok and report.unverified == () and report.checked == 4  # two versions, two builds
    rebuilt = ExternalLock(
        same.path, "conda-lock", HERE, [LockedEntry("numpy", "1.26.4", "conda", "py311_mkl_0", True)]
    )
    [m] = check_external(rebuilt, probe=probe).mismatches
    assert (m.key, m.locked, m.found) == ("packages.numpy.build", "py311_mkl_0", "py311h64a7726_0")
    missing = ExternalLock(same.path, "conda-lock", HERE, [LockedEntry("openssl", "3.3.1", "conda", "h4bc722e_2")])
    [m] = check_external(missing, probe=probe).mismatches
    assert (m.key, m.found) == ("packages.openssl", None) and m.fix.startswith("conda install 'openssl=3.3.1'")


def test_unreadable_files_exit_2_without_a_traceback(tmp_path: Path, capsys) -> None:
    (tmp_path / "pixi.lock").write_text("version: 6\nenvironments: [not, a, mapping\n")
    code, _, err = run(["check", str(tmp_path / "pixi.lock")], capsys)
    assert code == 2 and "rattler.LockFile.from_path cannot read it" in err and "Traceback" not in err
    (tmp_path / "conda-lock.yml").write_text("version: 1\npackage: 3\n")
    code, _, err = run(["check", str(tmp_path / "conda-lock.yml")], capsys)
    assert code == 2 and "parse_conda_lock_file cannot read it" in err
    (tmp_path / "explicit.txt").write_text("@EXPLICIT\nhttps://example.org/not-an-archive\n")
    code, _, err = run(["check", str(tmp_path / "explicit.txt")], capsys)
    assert code == 2 and "cannot read it" in err


def test_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    path = write_explicit(tmp_path / "explicit.txt")
    code, _, err = run(["check", str(path), "--weights", "model.pth"], capsys)
    assert code == 2 and "pins no model files" in err
    (tmp_path / "safepredict.lock").write_text("schema_version = 1\n")
    code, _, err = run(["check", str(tmp_path / "safepredict.lock"), "--environment", "prod"], capsys)
    assert code == 2 and "choose entries of a conda lockfile" in err
    code, _, err = run(["check", str(path), "--lock", str(tmp_path / "other.txt")], capsys)
    assert code == 2 and "two locks given" in err


# -- the mapping ------------------------------------------------------------------------------


def test_every_package_the_lock_holds_has_its_distributions() -> None:
    assert set(DISTRIBUTIONS) == set(DEFAULT_PACKAGE_RULES)


def test_metapackages_and_facts_map_to_one_key_each() -> None:
    lock = ExternalLock(
        "x",
        "explicit",
        HERE,
        [
            LockedEntry("pytorch-gpu", "2.4.1", "conda", "cuda120_0"),
            LockedEntry("pytorch", "2.4.1", "conda", "cuda120_py311_0", True),
            LockedEntry("opencv", "4.10.0", "conda", "headless_py311_1"),
            LockedEntry("py-opencv", "4.10.0", "conda", "headless_py311_1", True),
            LockedEntry("cudnn", "9.3.0.75", "conda", "h93bb076_0"),
            LockedEntry("cuda-version", "12.6", "conda", "h7480c83_3"),
            LockedEntry("Pillow", "10.4.0", "pypi"),
        ],
    )
    targets = {key: (kind, e.name) for kind, key, e in _targets(lock)}
    assert targets == {
        "packages.torch": ("package", "pytorch"),
        "packages.opencv": ("package", "py-opencv"),
        "torch.cudnn": ("fact", "cudnn"),
        "torch.cuda": ("fact", "cuda-version"),
        "packages.pillow": ("package", "Pillow"),
    }


def test_conda_archive_names() -> None:
    assert _archive_parts(f"{CF}/linux-64/python_abi-3.11-4_cp311.conda#abc") == ("python_abi", "3.11", "4_cp311")
    assert _archive_parts(f"{CF}/noarch/typing-extensions-4.12.2-pyha770c72_0.tar.bz2") == (
        "typing-extensions",
        "4.12.2",
        "pyha770c72_0",
    )
    with pytest.raises(ValueError, match="not a conda package archive"):
        _archive_parts("https://example.org/wheel.whl")
