#!/bin/sh
# Chromium for the viewer's end-to-end tests (tests/viewer): Debian's package, driven by Playwright from PyPI through
# executable_path=/usr/bin/chromium, so no browser is downloaded. Idempotent; fast when already installed.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
