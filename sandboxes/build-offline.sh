#!/usr/bin/env bash
# Build an agentflow sandbox image with no image registry (root, debootstrap and docker.io needed):
#   sandboxes/build-offline.sh python [--if-missing] [--tag T] [--mirror URL] [--suite NAME]
# The same builder as `agentflow sandbox build`, runnable before agentflow is installed (standard library only).
set -euo pipefail
exec python3 "$(dirname "$0")/../agentflow/sandboxes/images.py" "$@"
