"""`agentflow tools list [FILE] [--json]`: the built-in and plugin tools, where each runs, their JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import agentflow

EXAMPLES = Path(__file__).parents[2] / "graphs" / "examples"


def test_tools_list_json_gives_every_builtin_with_its_schema(tmp_path: Path) -> None:
    listed = agentflow("tools", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    tools = {t["name"]: t for t in json.loads(listed.stdout)["tools"]}
    assert {"python", "shell", "read_file", "write_file", "list_files", "apply_patch", "run_tests"} <= set(tools)
    python = tools["python"]
    assert python["runs_on"] == "agentflow"
    assert python["parameters"]["required"] == ["code"]
    assert set(python["parameters"]["properties"]) == {"code", "timeout_s"}
    assert "description" in python["parameters"]["properties"]["code"]


def test_tools_list_of_a_workflow_adds_its_plugins_and_where_they_run(tmp_path: Path) -> None:
    listed = agentflow("tools", "list", str(EXAMPLES / "fix_failing_test.yaml"), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    tools = {t["name"]: t for t in json.loads(listed.stdout)["tools"]}
    search = tools["search_code"]
    assert (search["ref"], search["runs_on"], search["declared"]) == (
        "../../tools/search.py:search_code",
        "sandbox",
        True,
    )
    # The plugin's descriptions come from its Google-style docstring.
    assert search["parameters"]["properties"]["path"]["description"] == "folder to search, relative to the workdir"
    assert tools["run_tests"]["declared"] is True and tools["shell"]["declared"] is False

    text = agentflow("tools", "list", str(EXAMPLES / "fix_failing_test.yaml"), cwd=tmp_path)
    assert text.returncode == 0
    assert "search_code (declared)  runs on: sandbox ../../tools/search.py:search_code" in text.stdout
    assert '"pattern": {' in text.stdout


def test_inspect_lists_the_host_tools_and_why(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "mixed.py").write_text(
        "from agentflow.tools import ToolContext\n\n"
        "def pure(x: int) -> int:\n    '''Add one.'''\n    return x + 1\n\n"
        "def counted(x: int) -> int:\n    '''Add two.'''\n    return x + 2\n\n"
        "async def driving(ctx: ToolContext) -> str:\n    '''Use the sandbox.'''\n    return ctx.run_id\n"
    )
    (tmp_path / "wf.yaml").write_text(
        "name: mixed\n"
        "tools:\n"
        "  - tools/mixed.py:pure\n"
        "  - {ref: tools/mixed.py:counted, host: true}\n"
        "  - tools/mixed.py:driving\n"
        "start: a\n"
        "nodes:\n  a: {kind: tool, tool: pure, args: {x: 1}}\n"
        "end: [a]\n"
    )
    shown = agentflow("inspect", "wf.yaml", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["host_tools"] == [
        {"name": "counted", "ref": "tools/mixed.py:counted", "reason": "declared host: true"},
        {"name": "driving", "ref": "tools/mixed.py:driving", "reason": "takes a ToolContext"},
    ]
    text = agentflow("inspect", "wf.yaml", cwd=tmp_path)
    assert "host tool counted (tools/mixed.py:counted): declared host: true" in text.stdout
