"""`validate` loads plugin tools as the run will: a broken plugin is reported at the workflow line that names it."""

from __future__ import annotations

import json
from pathlib import Path

from agentflow.errors import Diagnostic
from agentflow.graph import build_template_graph, validate_template
from agentflow.runtime import InstalledCheckers
from agentflow.spec import load_workflow

WORKFLOW = """\
name: plugged
tools:
  - list_files
  - {tool}
start: a
nodes:
  a: {{kind: agent, model: m, prompt: go, tools: [list_files, search_code]}}
models:
  m: {{model: "scripted:script.yaml"}}
end: [a]
"""


def diagnostics(tmp_path: Path, plugin_source: str, ref: str) -> list[Diagnostic]:
    (tmp_path / "tools").mkdir(exist_ok=True)
    (tmp_path / "tools" / "search.py").write_text(plugin_source)
    (tmp_path / "wf.yaml").write_text(WORKFLOW.format(tool=ref))
    template = build_template_graph(load_workflow(tmp_path / "wf.yaml"))
    return [d for d in validate_template(template, checkers=InstalledCheckers())]


def test_a_plugin_syntax_error_names_the_plugin_position_and_the_workflow_line(tmp_path: Path) -> None:
    found = diagnostics(
        tmp_path, "def search_code(pattern: str) -> str:\n    return (pattern\n", "tools/search.py:search_code"
    )
    [broken] = [d for d in found if d.code == "tool.plugin"]
    assert broken.location is not None
    assert (broken.location.file, broken.location.line, broken.location.column) == (str(tmp_path / "wf.yaml"), 4, 5)
    plugin = tmp_path / "tools" / "search.py"
    assert f"has a syntax error at {plugin}:2:12: '(' was never closed" in broken.message
    # The node naming the tool is not reported again: the plugin is the one thing to fix.
    assert [d.code for d in found if d.severity == "error"] == ["tool.plugin"]


def test_did_you_mean_for_a_plugin_function_names_the_function_that_exists(tmp_path: Path) -> None:
    source = "def search_code(pattern: str) -> str:\n    '''Search.'''\n    return pattern\n"
    found = diagnostics(tmp_path, source, "tools/search.py:serch_code")
    errors = [d for d in found if d.severity == "error"]
    assert [d.code for d in errors] == ["tool.plugin"], "one root cause, not also the node's use of search_code"
    [typo] = errors
    assert "no function 'serch_code'" in typo.message
    assert typo.fix is not None and typo.fix.startswith("did you mean 'search_code'?")
    assert typo.location is not None and typo.location.line == 4


def test_host_on_a_builtin_tool_is_a_warning_and_an_unknown_builtin_node_does_not_crash(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: b\ntools: [{ref: read_file, host: true}, pythn]\nstart: a\n"
        "nodes:\n  a: {kind: tool, tool: pythn, args: {code: 'print({x})'}}\nend: [a]\n"
    )
    found = validate_template(build_template_graph(load_workflow(tmp_path / "wf.yaml")), checkers=InstalledCheckers())
    codes = {(d.code, d.severity) for d in found}
    assert ("tool.host-builtin", "warning") in codes
    assert ("tool.unknown", "error") in codes


def test_a_plugin_signature_no_schema_describes_is_a_validate_diagnostic_at_its_line(tmp_path: Path) -> None:
    from tests.cli.test_cli import agentflow

    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "search.py").write_text("import socket\n\ndef search_code(conn: socket.socket) -> str: ...\n")
    (tmp_path / "wf.yaml").write_text(WORKFLOW.format(tool="tools/search.py:search_code"))
    (tmp_path / "script.yaml").write_text("responses: []\n")
    result = agentflow("validate", "wf.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    [found] = json.loads(result.stdout)["files"][0]["diagnostics"]
    assert (found["code"], found["line"]) == ("tool.plugin", 4)
    assert "cannot be described to a model" in found["message"]
    assert "socket" in found["message"] and "\n" not in found["message"]  # one line, naming the type
    text = agentflow("validate", "wf.yaml", cwd=tmp_path)
    assert len(text.stdout.strip().splitlines()) == 1, text.stdout
