"""State values reach the `python` tool's code and the `shell` tool's command as literals, never as code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentflow.errors import GraphValidationError
from agentflow.graph import build_template_graph, validate_template
from agentflow.runtime import InstalledCheckers, run_workflow
from agentflow.spec import load_workflow
from agentflow.spec._templating import TemplateError, render
from agentflow.traces import TraceStore

PYTHON_PAYLOAD = '"); import os; os.system("touch pwned_py") #'
SHELL_PAYLOAD = "'; touch pwned_sh; echo '$(touch pwned_sub) `touch pwned_tick`\ntouch pwned_line"


def quoting_workflow(root: Path, code: str, command: str) -> Path:
    spec: dict[str, Any] = {
        "name": "quoting",
        "state": {
            "said": {"type": "str", "default": PYTHON_PAYLOAD},
            "shouted": {"type": "str", "default": SHELL_PAYLOAD},
            "count": {"type": "int", "default": 2},
            "printed": {"type": "str", "default": ""},
            "echoed": {"type": "str", "default": ""},
            "listing": {"type": "list", "default": []},
        },
        "tools": ["python", "shell", "list_files"],
        "start": "py",
        "nodes": {
            "py": {"kind": "tool", "tool": "python", "args": {"code": code}, "output": {"printed": "result.stdout"}},
            "sh": {
                "kind": "tool",
                "tool": "shell",
                "args": {"command": command},
                "output": {"echoed": "result.stdout"},
            },
            "ls": {"kind": "tool", "tool": "list_files", "output": {"listing": "result"}},
        },
        "edges": [{"from": "py", "to": "sh"}, {"from": "sh", "to": "ls"}],
        "end": ["ls"],
    }
    path = root / "quoting.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def test_placeholders_become_literals_in_code_and_commands(tmp_path: Path) -> None:
    workflow = quoting_workflow(tmp_path, "print({said}); print({count} * 21)", "printf '%s|' {shouted} {count}")
    result = await run_workflow(workflow, store=TraceStore(tmp_path / ".agentflow"))
    assert result.status == "succeeded", result.error
    state = result.final_state
    assert state["printed"] == f"{PYTHON_PAYLOAD}\n42\n", "the text is printed, not run; the number stays a number"
    assert state["echoed"] == f"{SHELL_PAYLOAD}|2|", "the command got the value as one word"
    assert not [name for name in state["listing"] if name.startswith("pwned")], "no injected command ran"


@pytest.mark.parametrize(
    ("code", "command", "problem"),
    [
        ('print("{said}")', "true", "inside a string literal of the Python code"),
        ("print(f'{said}')", "true", "inside a string literal of the Python code"),
        ("print(1)", 'echo "{shouted}"', "inside quotes, a comment or a here-document of the shell command"),
        ("print(1)", "cat <<EOF\n{shouted}\nEOF", "inside quotes, a comment or a here-document of the shell command"),
    ],
)
async def test_a_placeholder_inside_quotes_is_refused_before_the_run(
    tmp_path: Path, code: str, command: str, problem: str
) -> None:
    workflow = quoting_workflow(tmp_path, code, command)
    found = validate_template(build_template_graph(load_workflow(workflow)), checkers=InstalledCheckers())
    [diagnostic] = [d for d in found if d.code == "tool.code-placeholder"]
    assert problem in diagnostic.message
    assert diagnostic.location is not None and diagnostic.location.file == str(workflow)
    with pytest.raises(GraphValidationError):
        await run_workflow(workflow, store=TraceStore(tmp_path / ".agentflow"))
    assert not list(tmp_path.glob("**/pwned*"))


def test_render_refuses_quoted_placeholders_at_run_time_too() -> None:
    # Tool nodes built outside validation (a subgraph, an API caller) meet the same rule when the value is filled.
    with pytest.raises(TemplateError, match="write it bare"):
        render('print("{said}")', {"said": PYTHON_PAYLOAD}, "python")
    assert render("x = {said}", {"said": PYTHON_PAYLOAD}, "python") == f"x = {PYTHON_PAYLOAD!r}"
    assert render("x = {said}", {"said": PYTHON_PAYLOAD}) == f"x = {PYTHON_PAYLOAD}", "text templates stay text"
