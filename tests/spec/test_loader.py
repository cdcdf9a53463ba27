"""Loading workflow files: positions, clear errors for malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.errors import SpecError
from agentflow.spec import load_workflow, workflow_json_schema

MINIMAL = """\
name: tiny
start: a
nodes:
  a: {kind: tool, tool: list_files}
tools: [list_files]
end: [a]
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_workflow_loads_with_positions(tmp_path: Path) -> None:
    loaded = load_workflow(write(tmp_path, MINIMAL))
    assert loaded.spec.name == "tiny"
    where = loaded.locate("nodes", "a", "tool")
    assert (where.line, where.column) == (4, 25)
    assert loaded.locate("nodes", "a", key=True).line == 4


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nnodes:\n  a: {kind: tool\n  b: 1\n")
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    assert caught.value.location is not None
    assert caught.value.location.file == str(path)
    assert caught.value.location.line == 4
    assert "invalid YAML" in str(caught.value)
    assert caught.value.fix


def test_unknown_key_points_at_the_key_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("a: {kind: tool, tool: list_files}", "a: {kind: tool, tol: list_files}"))
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    messages = [d.message for d in caught.value.diagnostics]
    assert any("unknown key 'nodes.a.tol'" in m for m in messages)
    unknown = next(d for d in caught.value.diagnostics if d.code == "spec.unknown-key")
    assert unknown.location is not None and unknown.location.line == 4
    assert unknown.fix == "did you mean 'tool'?"


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("tool: list_files}", "tool: list_files, timeout_s: soon}"))
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    diagnostic = caught.value.diagnostics[0]
    assert diagnostic.code == "spec.type"
    assert "nodes.a.timeout_s" in diagnostic.message
    assert diagnostic.location is not None and diagnostic.location.line == 4


def test_duplicate_node_ids_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "nodes:\n  b: {kind: router, routes: [{to: END}]}\n")
    with pytest.raises(SpecError, match="duplicate key 'nodes'") as caught:
        load_workflow(path)
    assert caught.value.location is not None and caught.value.location.line == 7


def test_duplicate_node_inside_nodes(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  a: {kind: tool, tool: list_files}", "  a: {kind: tool, tool: list_files}\n  a: {kind: tool, tool: x}"
    )
    with pytest.raises(SpecError, match="duplicate key 'a' \\(first defined at line 4\\)"):
        load_workflow(write(tmp_path, text))


def test_unknown_node_kind(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("kind: tool", "kind: robot"))
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    assert caught.value.diagnostics[0].code == "spec.node-kind"


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_workflow(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_workflow(write(tmp_path, "- a\n- b\n"))


def test_on_key_is_not_a_boolean(tmp_path: Path) -> None:
    text = MINIMAL + "rewards:\n  - {hook: exit_code, on: step}\n"
    loaded = load_workflow(write(tmp_path, text))
    assert loaded.spec.rewards[0].on == "step"


def test_template_hash_ignores_comments(tmp_path: Path) -> None:
    first = load_workflow(write(tmp_path, MINIMAL, "a.yaml")).template_hash
    second = load_workflow(write(tmp_path, "# a comment\n" + MINIMAL, "b.yaml")).template_hash
    changed = load_workflow(write(tmp_path, MINIMAL.replace("tiny", "other"), "c.yaml")).template_hash
    assert first == second != changed


def test_json_schema_describes_nodes() -> None:
    schema = workflow_json_schema()
    assert schema["title"] == "agentflow workflow"
    assert {"name", "start", "nodes"} <= set(schema["required"])
    assert "AgentNode" in schema["$defs"]


def test_a_position_inside_a_value_is_a_column_of_the_file(tmp_path: Path) -> None:
    text = (
        "name: t\nstart: a\ntools: [list_files]\nnodes:\n"
        "  a:\n    kind: tool\n    tool: list_files\n    output:\n"
        "      plain: size(result)\n"
        '      quoted: "size(result)"\n'
        '      escaped: "size(\\u0072esult)"\n'
        "      block: |\n        size(result)\n"
        "end: [a]\n"
    )
    loaded = load_workflow(write(tmp_path, text))
    offset = "size(result)".index("result")
    line = text.splitlines()

    def column(key: str) -> int:
        return loaded.locate_inside(offset, "nodes", "a", "output", key).column

    assert column("plain") == line[8].index("size") + 1 + offset
    assert column("quoted") == line[9].index("size") + 1 + offset
    # YAML escapes and block scalars do not map characters one to one: the value's own position is given
    assert column("escaped") == line[10].index('"') + 1
    block = ("nodes", "a", "output", "block")
    assert loaded.locate_inside(offset, *block) == loaded.locate(*block)
