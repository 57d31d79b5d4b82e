#!/usr/bin/env bash
# Every benchmark, side by side with the frameworks' own tools, in one run. Results are printed and
# written to docs/benchmarks-*.md; docs/benchmarks.md summarises them as ratios.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SAFEPREDICT_CACHE:-$HOME/.cache/safepredict}"
VENV="${SAFEPREDICT_VENV:-$CACHE/venv}"
cd "$ROOT"
bash scripts/setup-frameworks.sh
PY="$VENV/bin/python"
"$PY" benchmarks/bench_predictor.py --out docs/benchmarks-predictor.md
"$PY" benchmarks/bench_lock.py --write docs/benchmarks-lock.md
{ printf '# Monitor cost per image\n\n`python benchmarks/bench_monitor.py`\n\n'; "$PY" benchmarks/bench_monitor.py; } | tee docs/benchmarks-monitor.md
"$PY" benchmarks/bench_diagnose.py --out docs/benchmarks-diagnose.md
"$PY" benchmarks/bench_batching.py --out docs/benchmarks-batching.md
"$PY" benchmarks/bench_folder.py --images 200 --out docs/benchmarks-folder.md
"$PY" benchmarks/bench_onnx.py --repeats 3 --zoo --out docs/benchmarks-onnx.md
