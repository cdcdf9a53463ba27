#!/usr/bin/env bash
# Harbor's own ATIF trajectory models, for the tests that validate `agentflow traces export --format atif` against
# them (tests/traces/test_export_atif.py). Harbor needs Python >= 3.12, newer than agentflow's venv may be, so it
# gets a venv of its own from a Python 3.12+ interpreter of the machine (pyenv's, or one on PATH), installed from
# the package index by name. The tests find it at this fixed place (or AGENTFLOW_TEST_HARBOR_PYTHON).
# Idempotent and quick on a machine that already has it.
set -euo pipefail
VENV=/var/tmp/agentflow-harbor-venv

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import harbor.models.trajectories" 2>/dev/null; then
    echo "harbor already in $VENV"
    exit 0
fi
PYTHON=""
for candidate in python3.13 python3.12 /root/.pyenv/versions/3.13*/bin/python /root/.pyenv/versions/3.12*/bin/python; do
    found=$(command -v "$candidate" 2>/dev/null || true)
    if [ -n "$found" ] && "$found" -c "import sys; sys.exit(sys.version_info < (3, 12))" 2>/dev/null; then
        PYTHON=$found
        break
    fi
done
if [ -z "$PYTHON" ]; then
    echo "no Python >= 3.12 on this machine: the ATIF validation tests will skip (or fail under AGENTFLOW_REQUIRE_ALL)"
    exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "harbor==0.26.0"  # the version the ATIF tests were checked against
"$VENV/bin/python" -c "import harbor.models.trajectories"
echo "harbor ready in $VENV"
