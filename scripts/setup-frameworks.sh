#!/usr/bin/env bash
# Install torch, Detectron2 and MMDetection (mmcv built with ops) for safepredict's tests.
#
# Idempotent: every step checks what is already there. The mmcv wheel (a ~14 minute build
# on 2 cores) and the repacked Detectron2 wheel are cached under $SAFEPREDICT_CACHE, so a
# second run on the same machine takes seconds.
#
# Environment:
#   SAFEPREDICT_CACHE  cache root (default: ~/.cache/safepredict)
#   SAFEPREDICT_VENV   virtual environment to install into (default: $SAFEPREDICT_CACHE/venv)
#   PYTHON             interpreter used to create the venv (default: python3.11)
#
# How each piece was made to work on a CPU-only Python 3.11 machine is recorded in
# docs/installing.md. Each wheel built or repacked here gets a build record beside it
# (<wheel>.build.json: source, flags, steps); `safepredict lock` reads it, and every
# `safepredict export-conda` names the wheel and writes a recipe that makes it again
# (docs/lock.md). `setup-frameworks.sh records` writes missing records and nothing else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SAFEPREDICT_CACHE:-$HOME/.cache/safepredict}"
VENV="${SAFEPREDICT_VENV:-$CACHE/venv}"
PYTHON="${PYTHON:-python3.11}"
WHEELS="$CACHE/wheels"
mkdir -p "$WHEELS"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
MMENGINE_VERSION=0.10.7
MMDET_VERSION=3.3.0
D2_DIST=sal-detectron2
D2_VERSION=0.7.2

log() { printf '[setup-frameworks] %s\n' "$*" >&2; }

# The build steps of the two local wheels, run as written (in an empty folder $BUILD, with $PY and
# $WHEELS) and copied as written into their build records.
mmcv_wheel() { ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true; }
MMCV_STEPS=(
  '"$PY" -m pip download -q --no-deps --no-build-isolation --no-binary=:all: mmcv==${MMCV_VERSION} -d .'
  'tar -xzf mmcv-${MMCV_VERSION}.tar.gz'
  "sed -i 's/-std=c++17/-std=c++20/g' mmcv-\${MMCV_VERSION}/setup.py  # torch >= 2.10 headers need C++20"
  '(cd mmcv-${MMCV_VERSION} && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 "$PY" -m pip wheel -q --no-deps --no-build-isolation . -w "$WHEELS")'
)
# The only wheel on the registry is tagged cp310 and carries a 3.10-only _C extension: repacked as
# a pure-Python wheel without _C (Faster R-CNN does not need it); its metadata pins numpy<2 and
# black, and the code runs with numpy 2.
D2_WHEEL="$WHEELS/sal_detectron2-$D2_VERSION-py3-none-any.whl"
D2_STEPS=(
  '"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 --platform manylinux2014_x86_64 ${D2_DIST}==${D2_VERSION} -d .'
  '"$PY" -m wheel unpack -d unpacked ./*.whl'
  'rm -f unpacked/*/detectron2/_C*.so'
  "sed -i -e 's/^Tag: .*/Tag: py3-none-any/' -e 's/^Root-Is-Purelib: .*/Root-Is-Purelib: true/' unpacked/*/*.dist-info/WHEEL"
  "sed -i -e '/^Requires-Dist: numpy/d' -e '/^Requires-Dist: black/d' unpacked/*/*.dist-info/METADATA"
  '"$PY" -m wheel pack -d "$WHEELS" unpacked/*'
)

expand() {  # the step with the versions written in, as it runs and as it is recorded
  local s="$1"
  s="${s//'${MMCV_VERSION}'/$MMCV_VERSION}"
  s="${s//'${D2_DIST}'/$D2_DIST}"
  s="${s//'${D2_VERSION}'/$D2_VERSION}"
  printf '%s' "$s"
}

run_steps() {  # run_steps STEP... in a fresh folder
  local BUILD step
  BUILD=$(mktemp -d)
  for step in "$@"; do (cd "$BUILD" && eval "$(expand "$step")"); done
  rm -rf "$BUILD"
}

record_build() {  # record_build WHEEL KIND SOURCE FLAGS... -- BUILD_REQUIRES... -- STEP...
  local wheel="$1"; shift
  [ -f "$wheel" ] && [ ! -f "$wheel.build.json" ] || return 0
  local args=() step
  for step in "$@"; do args+=("$(expand "$step")"); done
  "$PY" - "$wheel.build.json" "${args[@]}" <<'PYEOF'
import json, sys
out, kind, source, *rest = sys.argv[1:]
parts, current = [], []
for item in rest + ["--"]:
    if item == "--":
        parts.append(current)
        current = []
    else:
        current.append(item)
flags, requires, steps = (parts + [[], [], []])[:3]
record = {"kind": kind, "source": source, "flags": flags, "build_requires": requires, "steps": steps,
          "recorded_by": "scripts/setup-frameworks.sh"}
with open(out, "w", encoding="utf-8") as fh:
    json.dump(record, fh, indent=2)
    fh.write("\n")
PYEOF
  log "recorded how $(basename "$wheel") was made: $wheel.build.json"
}

record_builds() {
  record_build "$(mmcv_wheel)" built \
    "mmcv-$MMCV_VERSION.tar.gz, mmcv's source archive on PyPI (no mmcv $MMCV_VERSION wheel for CPython 3.11 there), compiled with its ops" \
    "-std=c++20 (setup.py asks for -std=c++17; torch >= 2.10 headers need C++20)" "MMCV_WITH_OPS=1" "FORCE_CUDA=0" \
    -- "torch==$TORCH_VERSION" "setuptools<70" wheel ninja -- "${MMCV_STEPS[@]}"
  record_build "$D2_WHEEL" repacked \
    "$D2_DIST $D2_VERSION's cp310 manylinux wheel on PyPI, re-tagged py3-none-any" \
    "without detectron2/_C (built for CPython 3.10 only)" "Requires-Dist numpy and black removed" \
    -- wheel -- "${D2_STEPS[@]}"
}

if [ "${1:-}" = records ]; then
  PY="$VENV/bin/python"
  record_builds
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q)

have() {  # have DIST VERSION -> 0 when DIST==VERSION is installed
  "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
except PackageNotFoundError:
    sys.exit(1)
PYEOF
}

# 1. torch + torchvision (a CUDA build that runs on the CPU; the CPU-only 2.13 wheel has no
#    matching torchvision on the registry).
if ! have torch "$TORCH_VERSION" || ! have torchvision "$TORCHVISION_VERSION"; then
  log "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION"
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

# 2. Everything else from the registry: build tools for mmcv, Detectron2's run-time
#    dependencies (it ships none we can use), test and lint tools.
log "installing registry dependencies"
"${PIP[@]}" -r "$ROOT/scripts/requirements-test.txt"

# 3. mmcv with compiled ops, built once from the source archive and cached.
if ! have mmcv "$MMCV_VERSION"; then
  if [ -z "$(mmcv_wheel)" ]; then
    log "building mmcv $MMCV_VERSION with ops (about 14 minutes on 2 cores; cached afterwards)"
    run_steps "${MMCV_STEPS[@]}"
  fi
  log "installing $(mmcv_wheel)"
  "${PIP[@]}" --no-deps "$(mmcv_wheel)"
fi
"${PIP[@]}" "mmengine==$MMENGINE_VERSION" "mmdet==$MMDET_VERSION"
# mmcv's own requirements (installed --no-deps above).
"${PIP[@]}" addict yapf opencv-python

# 4. Detectron2, repacked (D2_STEPS above).
if ! have "$D2_DIST" "$D2_VERSION"; then
  if [ ! -f "$D2_WHEEL" ]; then
    log "repacking $D2_DIST $D2_VERSION as a pure-Python wheel"
    run_steps "${D2_STEPS[@]}"
  fi
  "${PIP[@]}" --no-deps "$D2_WHEEL"
fi
record_builds

# 5. safepredict itself, editable, pointing at this checkout.
"${PIP[@]}" --no-deps -e "$ROOT"

"$PY" - <<'PYEOF'
import torch, torchvision, mmcv, mmengine, mmdet, detectron2
from mmcv.ops import nms  # compiled ops are present
print(f"torch {torch.__version__} torchvision {torchvision.__version__} mmcv {mmcv.__version__} "
      f"mmengine {mmengine.__version__} mmdet {mmdet.__version__} detectron2 {detectron2.__version__}")
PYEOF
log "ready: $VENV"
