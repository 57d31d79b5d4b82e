#!/usr/bin/env bash
# The main job on the embedded default: set the frameworks up (idempotent, cached), then run
# `safepredict demo` (trains a tiny detector offline the first time, cached afterwards).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SAFEPREDICT_CACHE:-$HOME/.cache/safepredict}"
VENV="${SAFEPREDICT_VENV:-$CACHE/venv}"
bash "$ROOT/scripts/setup-frameworks.sh"
exec "$VENV/bin/safepredict" demo "$@"
