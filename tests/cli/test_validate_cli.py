"""`agentflow validate` and `run` on mistakes that used to show only while running: said once, where they are."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.test_cli import agentflow, assert_one_line_error

DIAGNOSTIC = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): error \[(?P<code>[a-z.-]+)\] .+ \(fix: .+\)$")

LOOP = """\
name: loop
state:
  done: {type: bool, default: false}
tools: [list_files]
start: work
nodes:
  work: {kind: tool, tool: list_files, output: {done: "ok"}}
  check: {kind: router, routes: [{when: state.done, to: END}, {to: work}]}
edges:
  - {from: work, to: check}
loops:
  - {nodes: [work, check], max_iterations: 2}
"""


def test_an_expression_error_is_one_complete_line_then_the_source_and_a_caret(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(LOOP.replace('output: {done: "ok"}', "output: {done: \"ok && result.trim() == ''\"}"))
    result = agentflow("validate", "wf.yaml", cwd=tmp_path)
    assert result.returncode == 1
    first, source, caret = result.stdout.splitlines()
    found = DIAGNOSTIC.match(first)
    assert found is not None, first
    assert (found["file"], found["code"]) == ("wf.yaml", "expr.unknown-function")
    assert source == "  " + workflow.read_text().splitlines()[6]
    assert caret.strip() == "^"
    assert len(caret) - 1 == 2 + int(found["column"]) - 1  # under the column the first line names
    assert source[len(caret) - 1 :].startswith("trim()")


def test_a_child_workflows_errors_come_once_by_the_path_as_written(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "child.yaml").write_text(
        "name: child\nstate:\n  y: {type: str, default: ''}\ntools: [list_files]\nstart: a\n"
        'nodes:\n  a: {kind: tool, tool: list_files, output: {y: "result.trim()"}}\nedges:\n  - {from: a, to: end}\n'
    )
    parent = "name: parent\nstart: s\nnodes:\n  s: {kind: subgraph, workflow: parts/child.yaml}\nend: [s]\n"
    (tmp_path / "parent.yaml").write_text(parent)
    result = agentflow("validate", "parent.yaml", cwd=tmp_path)
    assert result.returncode == 1
    errors = [m for m in map(DIAGNOSTIC.match, result.stdout.splitlines()) if m]
    assert [(m["file"], m["line"], m["code"]) for m in errors] == [
        ("parts/child.yaml", "7", "expr.unknown-function"),
        ("parts/child.yaml", "9", "graph.unknown-node"),
    ]
    # the parent has its own error too: its subgraph's are still said, once each
    (tmp_path / "parent.yaml").write_text(parent.replace("start: s", "start: S"))
    result = agentflow("validate", "parent.yaml", cwd=tmp_path)
    errors = [m for m in map(DIAGNOSTIC.match, result.stdout.splitlines()) if m]
    assert [(m["file"], m["code"]) for m in errors] == [
        ("parent.yaml", "graph.unknown-node"),
        ("parts/child.yaml", "expr.unknown-function"),
        ("parts/child.yaml", "graph.unknown-node"),
    ]


def test_run_names_the_mistyped_target_first_and_only(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(LOOP.replace("{from: work, to: check}", "{from: work, to: chek}"))
    line = assert_one_line_error(agentflow("run", "wf.yaml", cwd=tmp_path), 2)
    assert line.startswith("agentflow: error: wf.yaml:10:22: error [graph.unknown-node] unknown node 'chek'")
    assert "did you mean 'check'?" in line
    assert "more errors" not in line


def test_run_with_a_missing_model_script_stops_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: t\nmodels:\n  m: {model: 'scripted:gone.script.yaml'}\nstart: a\n"
        "nodes:\n  a: {kind: agent, model: m, prompt: hi}\nend: [a]\n"
    )
    line = assert_one_line_error(agentflow("run", "wf.yaml", cwd=tmp_path), 2)
    assert line.startswith("agentflow: error: wf.yaml:3:")
    assert "[model.missing-script]" in line and "gone.script.yaml" in line
    assert not (tmp_path / ".agentflow").exists()  # nothing ran, nothing was recorded
