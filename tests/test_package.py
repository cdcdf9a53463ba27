"""Package-level promises: a light `import agentflow`, a current JSON Schema file, a complete error tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agentflow.spec import workflow_json_schema

ROOT = Path(__file__).parents[1]
VENDOR_SDKS = ("openai", "docker", "e2b", "ray", "psycopg", "opentelemetry", "pygls")


def test_import_agentflow_loads_no_vendor_sdk() -> None:
    code = (
        "import sys, agentflow, agentflow.spec, agentflow.graph, agentflow.runtime, agentflow.models, "
        "agentflow.tools, agentflow.sandboxes, agentflow.traces, agentflow.rewards, agentflow.cli\n"
        f"print([m for m in {VENDOR_SDKS!r} if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads((ROOT / "agentflow.schema.json").read_text())
    assert committed == workflow_json_schema(), "run `make schema` and commit agentflow.schema.json"


def test_ci_flag_turns_any_skip_into_a_failure(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n\ndef test_needs_a_widget():\n    pytest.skip('no widget here')\n")

    def run(flag: str) -> str:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "--rootdir", str(tmp_path), str(probe)]
        env = {**os.environ, "AGENTFLOW_REQUIRE_ALL": flag}
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False).stdout

    assert "1 skipped" in run("0")
    assert "1 failed" in run("1")
