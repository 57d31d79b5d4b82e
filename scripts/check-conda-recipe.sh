#!/usr/bin/env bash
# Render conda/recipe.yaml with rattler-build's own parser and check conda-forge's conventions
# for a pure-Python package. Exits non-zero on any problem.
#
# rattler-build comes from the registry as py-rattler-build (its Python bindings, which carry the
# recipe parser and renderer). Building the package itself needs the conda channels, which CI
# cannot reach, so this renders and lints; it does not build.
#
# Environment:
#   SAFEPREDICT_CACHE  cache root (default: ~/.cache/safepredict)
#   SAFEPREDICT_VENV   virtual environment to use (default: $SAFEPREDICT_CACHE/venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SAFEPREDICT_CACHE:-$HOME/.cache/safepredict}"
VENV="${SAFEPREDICT_VENV:-$CACHE/venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"

if ! "$PY" -c "import rattler_build" 2>/dev/null; then
  echo "[check-conda-recipe] installing py-rattler-build" >&2
  "$PY" -m pip install -q py-rattler-build
fi

"$PY" - "$ROOT" <<'PYEOF'
import re
import sys
import tomllib
from pathlib import Path

import rattler_build as rb

root = Path(sys.argv[1])
recipe_path = root / "conda" / "recipe.yaml"
problems: list[str] = []
warnings: list[str] = []

try:
    recipe = rb.Stage0Recipe.from_file(recipe_path)
    variants = recipe.render(
        rb.VariantConfig({"python_min": ["3.10"]}),
        rb.RenderConfig(platform=rb.PlatformConfig(target_platform="linux-64")),
    )
except Exception as exc:  # the parser's own error names the field
    sys.exit(f"conda/recipe.yaml does not render: {type(exc).__name__}: {exc}")

if len(variants) != 1:
    problems.append(f"a noarch recipe renders to one variant, this one to {len(variants)}")
rendered = variants[0].recipe.to_dict()
python_min = variants[0].variant.get("python_min")
build, reqs, about = rendered.get("build", {}), rendered.get("requirements", {}), rendered.get("about", {})
host, run = reqs.get("host", []), reqs.get("run", [])

project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
if rendered["package"]["version"] != project["version"]:
    problems.append(f"recipe version {rendered['package']['version']} != pyproject version {project['version']}")
if build.get("noarch") != "python":
    problems.append("build.noarch must be python (pure-Python package)")
if not re.search(r"-m pip install \. .*--no-deps.*--no-build-isolation", build.get("script", "")):
    problems.append("build.script must be `${{ PYTHON }} -m pip install . -vv --no-deps --no-build-isolation`")
if f"python {python_min}.*" not in host:
    problems.append("host must pin `python ${{ python_min }}.*` (conda-forge's noarch: python convention)")
if f"python >={python_min}" not in run:
    problems.append("run must require `python >=${{ python_min }}`")
if "pip" not in host:
    problems.append("host must contain pip")
tests = rendered.get("tests", [])
py_tests = [t["python"] for t in tests if "python" in t]
if not py_tests or py_tests[0].get("python_version") != f"{python_min}.*":
    problems.append("a python test with `python_version: ${{ python_min }}.*` is required")
if any(t.get("pip_check") is False for t in py_tests):
    problems.append("python tests must keep pip_check")
for key in ("license", "license_file", "summary", "homepage"):
    if not about.get(key):
        problems.append(f"about.{key} is required")
for name in about.get("license_file", []):
    if not (root / name).is_file():
        warnings.append(f"about.license_file {name} is not in the repository yet: a build would fail")
if not rendered.get("extra", {}).get("recipe-maintainers"):
    problems.append("extra.recipe-maintainers is required")

# The run requirements must be pyproject's dependencies under their conda-forge names.
conda_names = {"opencv-python": "py-opencv"}


def name_of(req: str) -> str:
    return re.split(r"[ ;<>=!~\[]", req.strip(), maxsplit=1)[0].lower()


wanted = {conda_names.get(name_of(r), name_of(r)) for r in project["dependencies"]}
have = {name_of(r) for r in run} - {"python"}
if wanted != have:
    problems.append(f"run requirements differ from pyproject: missing {sorted(wanted - have)}, extra {sorted(have - wanted)}")

for w in warnings:
    print(f"WARNING: {w}")
if problems:
    print("conda/recipe.yaml:")
    for p in problems:
        print(f"  - {p}")
    sys.exit(1)
print(f"conda/recipe.yaml renders ({rendered['package']['name']} {rendered['package']['version']}, "
      f"build {build.get('string')}, python_min {python_min}) and follows conda-forge's noarch: python conventions")
PYEOF
