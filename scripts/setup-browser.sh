#!/usr/bin/env bash
# Install headless Chromium (Debian's `chromium`) for the HTML report test. Idempotent: does nothing
# when a chromium binary is already on PATH. Needs root (apt-get); runs `apt-get update` once per call
# that installs.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "setup-browser: $(command -v "$name") present ($("$name" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium
echo "setup-browser: installed $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
