#!/usr/bin/env bash
# Install the Debian package of a headless Chromium (and a font), used by
# tests/test_report.py (the run report) and tests/test_service.py (the service page) to
# open pages and take screenshots.
#
# Idempotent and cheap when already installed: it touches apt only if `chromium`
# is missing, so CI can call it unconditionally before pytest (`make test` does,
# through `make services`). Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core)

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || echo chromium)"
    exit 0
fi

# shellcheck source=../apt-install.sh
source "$(dirname "$0")/../apt-install.sh"
apt_install "${PACKAGES[@]}"
echo "chromium installed: $(chromium --version 2>/dev/null || echo chromium)"
