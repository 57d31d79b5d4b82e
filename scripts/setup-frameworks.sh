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
# docs/installing.md.
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
  WHL=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$WHL" ]; then
    log "building mmcv $MMCV_VERSION with ops (about 14 minutes on 2 cores; cached afterwards)"
    BUILD=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary=:all: "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv's setup.py asks for C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 \
       "$PY" -m pip wheel -q --no-deps --no-build-isolation . -w "$BUILD/dist")
    cp "$BUILD"/dist/mmcv-*.whl "$WHEELS/"
    rm -rf "$BUILD"
    WHL=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
  fi
  log "installing $WHL"
  "${PIP[@]}" --no-deps "$WHL"
fi
"${PIP[@]}" "mmengine==$MMENGINE_VERSION" "mmdet==$MMDET_VERSION"
# mmcv's own requirements (installed --no-deps above).
"${PIP[@]}" addict yapf opencv-python

# 4. Detectron2: the only wheel on the registry is tagged cp310 and carries a 3.10-only _C
#    extension. Repack it as a pure-Python wheel without _C (Faster R-CNN does not need it).
if ! have "$D2_DIST" "$D2_VERSION"; then
  WHL="$WHEELS/sal_detectron2-$D2_VERSION-py3-none-any.whl"
  if [ ! -f "$WHL" ]; then
    log "repacking $D2_DIST $D2_VERSION as a pure-Python wheel"
    BUILD=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 \
      --platform manylinux2014_x86_64 "$D2_DIST==$D2_VERSION" -d "$BUILD"
    (cd "$BUILD" && "$PY" -m wheel unpack -d unpacked ./*.whl)
    D=$(ls -d "$BUILD"/unpacked/*)
    rm -f "$D"/detectron2/_C*.so
    INFO=$(ls -d "$D"/*.dist-info)
    sed -i -e 's/^Tag: .*/Tag: py3-none-any/' -e 's/^Root-Is-Purelib: .*/Root-Is-Purelib: true/' "$INFO/WHEEL"
    # Its metadata pins numpy<2 and black; the code runs with numpy 2.
    sed -i -e '/^Requires-Dist: numpy/d' -e '/^Requires-Dist: black/d' "$INFO/METADATA"
    mkdir -p "$BUILD/dist"
    "$PY" -m wheel pack -d "$BUILD/dist" "$D"
    cp "$BUILD"/dist/*.whl "$WHL"
    rm -rf "$BUILD"
  fi
  "${PIP[@]}" --no-deps "$WHL"
fi

# 5. safepredict itself, editable, pointing at this checkout.
"${PIP[@]}" --no-deps -e "$ROOT"

"$PY" - <<'PYEOF'
import torch, torchvision, mmcv, mmengine, mmdet, detectron2
from mmcv.ops import nms  # compiled ops are present
print(f"torch {torch.__version__} torchvision {torchvision.__version__} mmcv {mmcv.__version__} "
      f"mmengine {mmengine.__version__} mmdet {mmdet.__version__} detectron2 {detectron2.__version__}")
PYEOF
log "ready: $VENV"
