"""An export rebuilds: a fresh venv made by the recipe beside ``environment.yml`` imports the frameworks.

The lock is of the environment these tests run in, where mmcv is a wheel built here with its ops
and Detectron2 a repacked one (``scripts/setup-frameworks.sh``, which writes their build records).
The recipe runs as its header says, into a new venv (no system site-packages), with ``WHEELS``
pointing at a folder that holds mmcv's wheel but not Detectron2's: the recipe makes Detectron2's
wheel again from its build record (a download and a repack), while mmcv's 14-minute build is left
out. It installs every pip package of the lock, torch and its CUDA libraries included (about
7 GB on disk from the local index), the one test here that does it: measured on the 2-core
development machine, the install takes about 2.2 minutes of CPU (1m44 user, 0m29 system), and the
whole test ran 645 s of wall time under a load average of 7 (2026-12-02).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conda_lock.src_parser.environment_yaml import parse_environment_file

from safepredict.lock import Probe, capture_environment, write_lock
from safepredict.lock.conda import export_files

pytestmark = pytest.mark.slow

IMPORTS = """
import torch, torchvision, detectron2, mmcv, mmengine, mmdet, safepredict
from mmcv.ops import nms                        # mmcv's compiled ops
from detectron2.modeling import build_model     # Detectron2 without its _C
from mmdet.apis import init_detector
print(torch.__version__, detectron2.__version__, mmcv.__version__, mmdet.__version__)
"""


def _record(wheel: Path) -> set[str]:
    """The files of a wheel with their hashes, from its RECORD (the RECORD's own line left out)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        lines = z.read(name).decode().splitlines()
    return {line.rsplit(",", 1)[0] for line in lines if line and not line.startswith(name)}


def test_a_fresh_venv_built_by_the_exports_recipe_imports_the_frameworks(tmp_path: Path) -> None:
    lock = write_lock(tmp_path / "safepredict.lock", capture_environment(probe=Probe(deep=False)))
    builds = {b.name: b for b in lock.environment.builds}
    mmcv, d2 = builds["mmcv"], builds["sal-detectron2"]
    assert mmcv.kind == "built" and any("-std=c++20" in f for f in mmcv.flags), mmcv.describe()
    assert d2.kind == "repacked" and d2.steps, d2.describe()
    assert mmcv.wheel_path and d2.wheel_path

    yml, recipe = export_files(lock, "environment", tmp_path / "environment.yml")
    assert recipe is not None
    header = yml.read_text().split("\nname:", 1)[0]
    assert "mmcv 2.1.0: built on this machine" in header and "sal-detectron2" in header
    # What `conda env create` hands to pip: the pip section, as conda-lock's parser reads it.
    mapping = tmp_path / "pypi-mapping.json"
    mapping.write_text("{}")
    spec = parse_environment_file(yml, ["linux-64"], mapping_url=str(mapping))
    deps = {d.name: d for d in spec.dependencies["linux-64"]}
    assert getattr(deps["mmcv"], "path", None) == mmcv.wheel_path
    assert getattr(deps["sal-detectron2"], "path", None) == d2.wheel_path

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / Path(mmcv.wheel_path).name).symlink_to(mmcv.wheel_path)
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # PIP_NO_COMPILE: no .pyc for torch's thousands of files, the install's largest CPU cost.
    env = {**os.environ, "PYTHON": str(python), "WHEELS": str(wheels), "PIP_NO_COMPILE": "1"}
    env.pop("PYTHONPATH", None)
    try:
        run = subprocess.run(["bash", str(recipe)], env=env, capture_output=True, text=True, timeout=1500, check=False)
        assert run.returncode == 0, run.stderr[-4000:]
        remade = wheels / Path(d2.wheel_path).name
        assert f"making {remade}" in run.stderr
        assert _record(remade) == _record(Path(d2.wheel_path))  # the same files, byte for byte
        imported = subprocess.run(
            [str(python), "-c", IMPORTS], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert imported.returncode == 0, imported.stderr[-4000:]
        assert (
            str(python.parent.parent)
            in subprocess.run(
                [str(python), "-c", "import mmcv; print(mmcv.__file__)"], capture_output=True, text=True, check=True
            ).stdout
        )  # imported from the fresh venv, not from the one the tests run in
        # The rebuilt environment is the locked one.
        check = subprocess.run(
            [str(venv / "bin" / "safepredict"), "check", str(lock.path)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 7 GB
