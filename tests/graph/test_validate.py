"""Static validation: each rule reports file:line:col, a message and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.errors import Diagnostic, GraphValidationError
from agentflow.graph import build_template_graph, compute_metrics, validate_template
from agentflow.runtime import InstalledCheckers, compile_workflow
from agentflow.spec import load_workflow

EXAMPLES = Path(__file__).parents[2] / "graphs" / "examples"

BASE = """\
name: loop
state:
  done: {type: bool, default: false}
  count: {type: int, default: 0}
  note: {type: str}
models:
  m: {model: "scripted:script.yaml"}
tools: [list_files, read_file]
start: work
nodes:
  work: {kind: agent, model: m, prompt: "go", tools: [read_file]}
  check: {kind: tool, tool: list_files, output: {done: "ok"}}
  decide:
    kind: router
    routes:
      - {when: state.done, to: END}
      - {to: work}
edges:
  - {from: work, to: check}
  - {from: check, to: decide}
loops:
  - {nodes: [work, check, decide], max_iterations: 2}
"""


def diagnose(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    (tmp_path / "script.yaml").write_text("responses: []\n")  # the model script BASE names (only its presence counts)
    return validate_template(build_template_graph(load_workflow(path)), checkers=InstalledCheckers())


def codes(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.code for d in diagnostics if d.severity == "error"]


def test_base_is_valid(tmp_path: Path) -> None:
    assert codes(diagnose(tmp_path, BASE)) == []


def test_example_workflows_are_valid() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        diagnostics = validate_template(build_template_graph(load_workflow(path)), checkers=InstalledCheckers())
        assert [d for d in diagnostics if d.severity == "error"] == [], path


def test_unbounded_cycle(tmp_path: Path) -> None:
    found = diagnose(tmp_path, BASE.replace("loops:\n  - {nodes: [work, check, decide], max_iterations: 2}\n", ""))
    cycle = next(d for d in found if d.code == "graph.unbounded-cycle")
    assert "work -> check -> decide -> work" in cycle.message or "decide -> work" in cycle.message
    assert cycle.fix is not None and "max_iterations" in cycle.fix
    assert cycle.location is not None and cycle.location.line in (17, 19, 20)  # a transition of the cycle


def test_loop_that_covers_part_of_the_cycle_is_not_enough(tmp_path: Path) -> None:
    found = diagnose(tmp_path, BASE.replace("nodes: [work, check, decide]", "nodes: [work, check]"))
    assert "graph.unbounded-cycle" in codes(found)


def test_unreachable_node(tmp_path: Path) -> None:
    text = BASE.replace("edges:", "  orphan: {kind: tool, tool: list_files}\nedges:") + "end: [orphan]\n"
    found = diagnose(tmp_path, text)
    unreachable = next(d for d in found if d.code == "graph.unreachable")
    assert "'orphan'" in unreachable.message
    assert unreachable.location is not None and unreachable.location.line == 18


def test_node_that_cannot_reach_end(tmp_path: Path) -> None:
    text = BASE.replace("      - {to: work}", "      - {to: work}\n  sink: {kind: tool, tool: list_files}")
    text = text.replace(
        "  - {from: check, to: decide}", "  - {from: check, to: decide, when: state.done}\n  - {from: check, to: sink}"
    )
    found = diagnose(tmp_path, text)
    assert any(d.code == "graph.no-end" and "'sink'" in d.message for d in found)


def test_unknown_names_suggest_the_closest(tmp_path: Path) -> None:
    text = (
        BASE.replace("model: m,", "model: mm,")
        .replace("tools: [read_file]}", "tools: [read_fil]}")
        .replace("to: END}", "to: ENDD}")
        .replace("start: work", "start: wrk")
    )
    found = {d.code: d for d in diagnose(tmp_path, text + "rewards:\n  - {hook: exit_cod}\n")}
    assert found["model.unknown"].fix is not None and "did you mean 'm'?" in found["model.unknown"].fix
    assert found["tool.unknown"].fix is not None and "did you mean 'read_file'?" in found["tool.unknown"].fix
    assert found["reward.unknown-hook"].fix is not None and "'exit_code'" in found["reward.unknown-hook"].fix
    unknown_nodes = [d for d in diagnose(tmp_path, text) if d.code == "graph.unknown-node"]
    assert {d.message for d in unknown_nodes} == {"unknown start node 'wrk'", "unknown route target 'ENDD'"}


def test_unknown_builtin_tool_and_missing_plugin_file(tmp_path: Path) -> None:
    text = BASE.replace("tools: [list_files, read_file]", "tools: [list_files, read_file, reed_file, plug/x.py:f]")
    found = diagnose(tmp_path, text)
    assert any(d.code == "tool.unknown" and "reed_file" in d.message for d in found)
    missing = next(d for d in found if d.code == "tool.missing-file")
    assert "plug/x.py" in missing.message


def test_router_edges_must_be_routes(tmp_path: Path) -> None:
    text = BASE.replace("  - {from: check, to: decide}", "  - {from: check, to: decide}\n  - {from: decide, to: check}")
    found = diagnose(tmp_path, text)
    assert "graph.router-edge" in codes(found)


def test_state_key_read_but_never_written(tmp_path: Path) -> None:
    found = diagnose(tmp_path, BASE.replace('prompt: "go"', 'prompt: "go {note}"'))
    never = next(d for d in found if d.code == "state.never-written")
    assert "'note'" in never.message
    assert never.location is not None and never.location.line == 11


def test_unknown_state_key_in_output_and_condition(tmp_path: Path) -> None:
    text = BASE.replace('output: {done: "ok"}', 'output: {dne: "ok"}').replace("state.done", "state.don")
    found = [d for d in diagnose(tmp_path, text) if d.code == "state.unknown-key"]
    assert len(found) == 2
    assert all(d.fix and "'done'" in d.fix for d in found)


def test_condition_type_error_detected(tmp_path: Path) -> None:
    found = diagnose(tmp_path, BASE.replace("when: state.done", 'when: state.count + "x" == "1x"'))
    assert "expr.type" in codes(found)
    found = diagnose(tmp_path, BASE.replace("when: state.done", "when: state.count"))
    assert any(d.code == "expr.type" and "not a boolean" in d.message for d in found)


def test_condition_syntax_error(tmp_path: Path) -> None:
    assert "expr.syntax" in codes(diagnose(tmp_path, BASE.replace("when: state.done", "when: state.done &&")))


def test_compile_rejects_invalid_and_reports_all(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(BASE.replace("start: work", "start: wrk").replace("model: m,", "model: mm,"))
    (tmp_path / "script.yaml").write_text("responses: []\n")
    with pytest.raises(GraphValidationError) as caught:
        compile_workflow(path)
    assert {"graph.unknown-node", "model.unknown"} <= set(codes(caught.value.diagnostics))
    assert "and 1 more" in str(caught.value)


def test_tool_module_raising_on_import(tmp_path: Path) -> None:
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "bad.py").write_text("raise RuntimeError('boom at import')\n")
    path = tmp_path / "wf.yaml"
    path.write_text(BASE.replace("tools: [list_files, read_file]", "tools: [list_files, read_file, plug/bad.py:f]"))
    (tmp_path / "script.yaml").write_text("responses: []\n")
    # Validation loads the plugin as the run will, so the failure names the workflow line that references it.
    with pytest.raises(GraphValidationError, match="boom at import") as caught:
        compile_workflow(path)
    assert [(d.code, d.location.line if d.location else None) for d in caught.value.diagnostics] == [("tool.plugin", 8)]


def test_metrics_of_example() -> None:
    template = build_template_graph(load_workflow(EXAMPLES / "fix_failing_test.yaml"))
    metrics = compute_metrics(template)
    assert metrics.nodes == 4
    assert metrics.critical_path == ["plan", "code", "test", "check", "END"]
    assert metrics.depth == 4
    assert [(sorted(c.nodes), c.max_iterations) for c in metrics.cycles] == [(["check", "code", "test"], 3)]
    assert metrics.max_steps == 1 + 3 * 3


def test_width_counts_parallel_branches(tmp_path: Path) -> None:
    text = """\
name: fan
tools: [list_files]
start: a
nodes:
  a: {kind: router, routes: [{when: "true", to: b}, {to: c}]}
  b: {kind: tool, tool: list_files}
  c: {kind: tool, tool: list_files}
end: [b, c]
"""
    path = tmp_path / "fan.yaml"
    path.write_text(text)
    metrics = compute_metrics(build_template_graph(load_workflow(path)))
    assert metrics.width == 2
    assert metrics.depth == 2
    assert metrics.cycles == []


# -- expressions: conditions and output mappings ------------------------------------------------------------------


def column_of(text: str, line: int, needle: str) -> int:
    """The 1-based column of ``needle`` on a 1-based line of ``text``."""
    return text.splitlines()[line - 1].index(needle) + 1


def test_output_mapping_with_an_unknown_function_points_at_it(tmp_path: Path) -> None:
    text = BASE.replace('prompt: "go",', 'prompt: "go", output: {note: "answer.trim()"},')
    found = [d for d in diagnose(tmp_path, text) if d.code == "expr.unknown-function"]
    assert len(found) == 1
    problem = found[0]
    assert "trim()" in problem.message and "Activation" not in problem.message
    assert problem.location is not None and problem.location.line == 11
    assert problem.location.column == column_of(text, 11, "trim()")
    assert problem.fix is not None and "startsWith" in problem.fix and "size" in problem.fix


def test_output_mapping_whose_result_cannot_fit_the_state_key(tmp_path: Path) -> None:
    text = BASE.replace('prompt: "go",', 'prompt: "go", output: {count: answer},')
    found = [d for d in diagnose(tmp_path, text) if d.code == "expr.type"]
    assert len(found) == 1
    assert "gives str" in found[0].message and "'count' (declared int)" in found[0].message
    assert found[0].fix is not None and "int(" in found[0].fix
    fitting = BASE.replace('prompt: "go",', 'prompt: "go", output: {count: "size(answer)", note: answer},')
    assert codes(diagnose(tmp_path, fitting)) == []


def test_output_mapping_with_an_unknown_name_suggests_the_variables_there(tmp_path: Path) -> None:
    text = BASE.replace('output: {done: "ok"}', 'output: {done: "okay"}')
    found = next(d for d in diagnose(tmp_path, text) if d.code == "expr.unknown-name")
    assert "'okay'" in found.message
    assert found.fix is not None and "did you mean ok?" in found.fix and "result" in found.fix


def test_type_error_behind_a_short_circuit_is_found_at_its_column(tmp_path: Path) -> None:
    text = BASE.replace("when: state.done", "when: \"state.done && state.count > 'a'\"")
    found = [d for d in diagnose(tmp_path, text) if d.code == "expr.type"]
    assert len(found) == 1
    assert "`>` cannot take int and string" in found[0].message
    assert found[0].location is not None and found[0].location.line == 16
    assert found[0].location.column == column_of(text, 16, "state.count")


def test_syntax_error_points_at_its_column_and_says_what_may_come(tmp_path: Path) -> None:
    text = BASE.replace("when: state.done", "when: state.done && )")
    found = [d for d in diagnose(tmp_path, text) if d.code == "expr.syntax"]
    assert len(found) == 1
    assert found[0].location is not None and found[0].location.column == column_of(text, 16, ")")
    assert found[0].fix is not None and "operand" in found[0].fix


def test_runtime_expression_errors_hide_cel_python_internals() -> None:
    from agentflow.graph import _expr

    with pytest.raises(_expr.ExpressionError) as caught:
        _expr.evaluate("answer.trim()", {"answer": "x"})
    assert "Activation" not in str(caught.value) and "NameContainer" not in str(caught.value)
    assert "trim" in str(caught.value)
    with pytest.raises(_expr.ExpressionError, match="`\\+` cannot take int and string"):
        _expr.evaluate("state.n + 'a'", {"state": {"n": 1}})


# -- tool nodes' arguments against the tool's parameters ---------------------------------------------------------


def compile_diagnostics(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    (tmp_path / "script.yaml").write_text("responses: []\n")
    with pytest.raises(GraphValidationError) as caught:
        compile_workflow(path)
    return caught.value.diagnostics


def test_tool_node_arguments_are_checked_against_the_tools_parameters(tmp_path: Path) -> None:
    text = (
        BASE.replace(
            '  check: {kind: tool, tool: list_files, output: {done: "ok"}}',
            '  check: {kind: tool, tool: list_files, args: {pth: "."}, output: {done: "ok"}}\n'
            "  read: {kind: tool, tool: read_file, args: {start_line: 2}}\n"
            '  typed: {kind: tool, tool: read_file, args: {path: "{count}"}}\n'
            '  fine: {kind: tool, tool: read_file, args: {path: "{note}", end_line: "{count}"}}',
        )
        + "end: [read, typed, fine]\n"
    )
    found = {d.code: d for d in compile_diagnostics(tmp_path, text) if d.code.startswith("tool.")}
    unknown = found["tool.unknown-argument"]
    assert "'pth'" in unknown.message and unknown.fix is not None and "did you mean 'path'?" in unknown.fix
    assert unknown.location is not None and unknown.location.line == 12
    missing = found["tool.missing-argument"]
    assert "'path'" in missing.message and missing.location is not None and missing.location.line == 13
    mistyped = found["tool.argument-type"]
    assert "'path'" in mistyped.message and "{count} is a state key of type int" in mistyped.message
    assert mistyped.location is not None and mistyped.location.line == 14
    assert len([d for d in compile_diagnostics(tmp_path, text) if d.code.startswith("tool.")]) == 3  # `fine` is


# -- files a run opens ---------------------------------------------------------------------------------------------


def test_missing_script_sandbox_folder_and_subgraph_file(tmp_path: Path) -> None:
    from agentflow.graph import check_run_files

    text = (
        BASE.replace('"scripted:script.yaml"', '"scripted:gone.yaml"')
        .replace("tools: [list_files", 'sandbox: {files: {"/workspace": ./no_such_folder}}\ntools: [list_files')
        .replace("edges:", "  sub: {kind: subgraph, workflow: parts/missing.yaml}\nedges:")
        + "end: [sub]\n"
    )
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    template = build_template_graph(load_workflow(path))
    checkers = InstalledCheckers()
    files = {d.code: d for d in check_run_files(template, checkers=checkers)}
    assert "gone.yaml" in files["model.missing-script"].message
    assert files["model.missing-script"].location is not None and files["model.missing-script"].location.line == 7
    assert "no_such_folder" in files["sandbox.missing-files"].message
    assert files["sandbox.missing-files"].location is not None and files["sandbox.missing-files"].location.line == 8
    # --model replaces scripts
    assert check_run_files(template, checkers=checkers, scripts=False)[0].code == "sandbox.missing-files"
    subgraph = next(d for d in validate_template(template, checkers=checkers) if d.code == "subgraph.missing-file")
    assert "parts/missing.yaml" in subgraph.message and subgraph.location is not None


# -- a misspelt node name is one root cause ------------------------------------------------------------------------


def test_a_mistyped_edge_target_is_reported_once_without_the_errors_it_causes(tmp_path: Path) -> None:
    found = diagnose(tmp_path, BASE.replace("{from: work, to: check}", "{from: work, to: chek}"))
    assert codes(found) == ["graph.unknown-node"]
    assert found[0].fix is not None and found[0].fix.startswith("did you mean 'check'?")
    lowercase_end = diagnose(tmp_path, BASE.replace("to: END}", "to: end}"))
    assert codes(lowercase_end) == ["graph.unknown-node"]
    assert lowercase_end[0].fix is not None and lowercase_end[0].fix.startswith("did you mean 'END'?")


def test_a_real_reachability_error_is_still_reported_next_to_a_typo(tmp_path: Path) -> None:
    text = BASE.replace("{from: work, to: check}", "{from: work, to: chek}").replace(
        "edges:", "  orphan: {kind: tool, tool: list_files}\nedges:"
    )
    found = diagnose(tmp_path, text + "end: [orphan]\n")
    assert codes(found) == ["graph.unreachable", "graph.unknown-node"]
    assert "'orphan'" in found[0].message
