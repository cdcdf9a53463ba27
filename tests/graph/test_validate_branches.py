"""Static rules of parallel fan-outs, joins and maps: each mistake named with file:line:col and its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.errors import Diagnostic, SpecError
from agentflow.graph import build_template_graph, compute_metrics, validate_template
from agentflow.runtime import InstalledCheckers
from agentflow.spec import load_workflow

AGENTFLOW = str(Path(sys.executable).with_name("agentflow"))

FANOUT = """\
name: fan
state:
  notes: {type: list, default: []}
  total: {type: int, default: 0, reduce: sum}
tools: [shell]
start: begin
nodes:
  begin: {kind: tool, tool: shell, args: {command: "true"}, parallel: [a, b]}
  a: {kind: tool, tool: shell, args: {command: "true"}, output: {notes: "['a']", total: "1"}}
  b: {kind: tool, tool: shell, args: {command: "true"}, output: {notes: "['b']", total: "2"}}
  join: {kind: tool, tool: shell, args: {command: "true"}, after: [a, b]}
end: [join]
"""


def diagnose(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return validate_template(build_template_graph(load_workflow(path)), checkers=InstalledCheckers())


def errors(diagnostics: list[Diagnostic]) -> dict[str, Diagnostic]:
    return {d.code: d for d in diagnostics if d.severity == "error"}


def test_concurrent_writes_without_a_reducer_are_refused_at_the_second_writer(tmp_path: Path) -> None:
    found = errors(diagnose(tmp_path, FANOUT))

    assert list(found) == ["state.concurrent-write"]  # `total` has a reducer; `notes` has none
    problem = found["state.concurrent-write"]
    assert (problem.location.line, problem.location.column) == (10, 66)  # b's output key `notes`
    assert "'a'" in problem.message and "'b'" in problem.message
    assert "reduce: <append | extend | merge | sum | max | min | last>" in (problem.fix or "")


def test_the_fix_makes_the_fanout_valid_and_metrics_show_the_branches(tmp_path: Path) -> None:
    fixed = FANOUT.replace("notes: {type: list, default: []}", "notes: {type: list, default: [], reduce: extend}")
    assert errors(diagnose(tmp_path, fixed)) == {}
    metrics = compute_metrics(build_template_graph(load_workflow(tmp_path / "wf.yaml")))
    assert metrics.branches == {"begin": {"a": ["a"], "b": ["b"]}}
    assert metrics.width == 2


def test_a_branch_that_cannot_reach_the_join_is_refused(tmp_path: Path) -> None:
    text = FANOUT.replace("parallel: [a, b]", "parallel: [a, b, c]").replace(
        "  join:", '  c: {kind: tool, tool: shell, args: {command: "true"}}\n  join:'
    )
    text = text.replace("end: [join]", "end: [join, c]")
    found = errors(diagnose(tmp_path, text))

    problem = found["graph.branch-no-join"]
    assert problem.message == "branch 'c' of 'begin' never reaches the join 'join'"
    assert (problem.location.line, problem.location.column) == (8, 78)  # `c` in parallel: [a, b, c]
    assert problem.fix == "add the last node of branch 'c' to nodes.join.after"


def test_a_fanout_without_a_join_and_a_join_without_a_fanout_are_refused(tmp_path: Path) -> None:
    no_join = FANOUT.replace(", after: [a, b]", "").replace("end: [join]", "end: [a, b]")
    no_join = no_join.replace('  join: {kind: tool, tool: shell, args: {command: "true"}}\n', "")
    assert "graph.fanout-no-join" in errors(diagnose(tmp_path, no_join))

    no_fanout = FANOUT.replace(", parallel: [a, b]", "").replace("edges: []", "")
    no_fanout += "edges:\n  - {from: begin, to: a}\n"
    found = errors(diagnose(tmp_path, no_fanout))
    assert "graph.join-without-fanout" in found


def test_a_loop_from_the_join_back_into_one_branch_is_refused(tmp_path: Path) -> None:
    text = FANOUT.replace("notes: {type: list, default: []}", "notes: {type: list, default: [], reduce: extend}")
    text = text.replace(
        "end: [join]", "edges:\n  - {from: join, to: a}\nloops:\n  - {nodes: [a, join], max_iterations: 2}"
    )
    found = errors(diagnose(tmp_path, text))

    assert "graph.branch-loop" in found
    assert "loop back to 'begin'" in (found["graph.branch-loop"].fix or "")


def test_map_rules(tmp_path: Path) -> None:
    text = """\
name: m
state:
  files: {type: list, default: []}
  out: {type: str, default: ""}
tools: [shell]
start: each
nodes:
  each: {kind: map, over: "state.files", node: item, output: out}
  item: {kind: tool, tool: shell, args: {command: "echo {item}"}}
end: [each]
"""
    found = errors(diagnose(tmp_path, text))

    assert found["state.map-output-type"].message == "map 'each' writes a list to 'out', declared str"
    assert "graph.map-node-result" in found
    assert "state.unknown-key" not in found  # `{item}` is what an item node sees beside the state
    bad_over = text.replace('over: "state.files"', "over: \"'not a list'\"")
    assert "expr.type" in errors(diagnose(tmp_path, bad_over))


def test_an_unknown_reducer_is_a_spec_error_with_the_closest_name(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FANOUT.replace("reduce: sum", "reduce: summ"))

    with pytest.raises(SpecError) as raised:
        load_workflow(path)

    assert raised.value.location is not None and raised.value.location.line == 4
    assert "'summ' is not one of append, extend, merge, sum, max, min, last" in raised.value.message
    assert (raised.value.fix or "").startswith("did you mean 'sum'?")


def test_agentflow_validate_reports_branch_mistakes_as_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FANOUT)
    result = subprocess.run(
        [AGENTFLOW, "validate", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )

    assert result.returncode == 1, result.stderr
    diagnostics = json.loads(result.stdout)["files"][0]["diagnostics"]
    assert [(d["code"], d["line"], d["column"]) for d in diagnostics] == [("state.concurrent-write", 10, 66)]
