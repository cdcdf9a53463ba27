"""Package-level promises: a light `import agentflow`, a current JSON Schema file, a complete error tree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from agentflow import errors
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


def test_import_agentflow_imports_nothing_until_a_public_name_is_read() -> None:
    heavy = (*VENDOR_SDKS, "langgraph", "networkx", "pydantic", "yaml")
    code = (
        "import json, sys, agentflow\n"
        f"heavy = {heavy!r}\n"
        "bare = sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('agentflow.'))\n"
        "public = [getattr(agentflow, name) for name in agentflow.__all__]\n"
        f"vendors = sorted(m for m in {(*VENDOR_SDKS, 'langgraph')!r} if m in sys.modules)\n"
        "print(json.dumps({'bare': bare, 'vendors': vendors}))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == {"bare": [], "vendors": []}


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


def _drawn_tree() -> dict[str, str]:
    """Each class of the drawing in errors.py's docstring, with the class it is drawn under."""
    drawing = errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in drawing.splitlines():
        match = re.match(r"^[│ ]*(?:[├└]── )?([A-Z]\w+)(\s|$)", line)
        if not match or not ("── " in line or match.group(1) == "AgentflowError"):
            continue
        depth = match.start(1)  # the name's column: one level is four columns
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[match.group(1)] = stack[-1][1]
        stack.append((depth, match.group(1)))
    return parents


def test_every_error_is_drawn_in_the_tree_under_its_base() -> None:
    drawn = _drawn_tree()
    defined = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.AgentflowError) and cls is not errors.AgentflowError
    }
    assert set(drawn) == set(defined)
    for name, cls in defined.items():
        assert drawn[name] in {base.__name__ for base in cls.__bases__}, name


def test_the_errors_once_outside_the_tree_are_in_it_and_importable_where_they_are_raised() -> None:
    from agentflow.graph._expr import ExpressionError
    from agentflow.runtime._nodes import NodeTimeout
    from agentflow.spec._templating import TemplateError
    from agentflow.traces._import import MalformedRecord

    # ConfigError: a mistake in what the user wrote; still a ValueError for code that caught one
    for config_error in (ExpressionError, TemplateError, MalformedRecord):
        assert issubclass(config_error, errors.ConfigError) and issubclass(config_error, ValueError)
    assert issubclass(NodeTimeout, errors.RunError) and not issubclass(NodeTimeout, errors.LimitExceeded)
    assert str(ExpressionError("x: no such key", offset=3)) == "x: no such key"
