"""The top-level API: what `agentflow` exports, and docs/python-api.md, whose every snippet runs here."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agentflow
from agentflow.errors import ConfigError, TraceError

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "python-api.md"
PUBLIC = {
    "load_workflow",
    "compile_workflow",
    "run",
    "arun",
    "RunResult",
    "open_store",
    "Store",
    "replay",
    "resume",
    "fork",
    "tool",
    "ToolContext",
    "reward_hook",
    "RewardHook",
    "Reward",
    "StepContext",
    "sandbox",
    "Sandbox",
    "create_sandbox",
    "AgentflowError",
}


def test_the_top_level_lists_shows_and_documents_every_public_name() -> None:
    assert set(agentflow.__all__) == PUBLIC
    # dir() shows them before any is read (then they are not yet attributes of the module): a fresh interpreter
    listed = subprocess.run(
        [sys.executable, "-c", "import agentflow, json; print(json.dumps(dir(agentflow)))"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    assert set(json.loads(listed)) >= PUBLIC
    for name in PUBLIC:
        assert inspect.getdoc(getattr(agentflow, name)), f"agentflow.{name} has no docstring"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = agentflow.no_such_name  # type: ignore[attr-defined]


def test_the_top_level_names_are_the_subpackages_own() -> None:
    from agentflow import errors, rewards, runtime, sandboxes, spec, tools, traces

    assert agentflow.load_workflow is spec.load_workflow
    assert agentflow.compile_workflow is runtime.compile_workflow
    assert agentflow.RunResult is runtime.RunResult
    assert agentflow.open_store is traces.open_store and agentflow.Store is traces.Store
    assert agentflow.tool is tools.tool and agentflow.ToolContext is tools.ToolContext
    assert agentflow.reward_hook is rewards.reward_hook and agentflow.StepContext is rewards.StepContext
    assert agentflow.sandbox is sandboxes.sandbox and agentflow.create_sandbox is sandboxes.create_sandbox
    assert agentflow.AgentflowError is errors.AgentflowError


def test_run_refuses_to_block_inside_a_running_event_loop(tmp_path: Path) -> None:
    async def inside() -> None:
        agentflow.run(tmp_path / "never_read.yaml")

    with pytest.raises(ConfigError, match=r"await its async version \(agentflow.arun\)"):
        asyncio.run(inside())


def python_snippets(markdown: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.M | re.S)


def test_every_snippet_of_the_python_api_page_runs(tmp_path: Path) -> None:
    snippets = python_snippets(DOC.read_text())
    assert len(snippets) >= 5, "the page shows running, a tool, a reward hook, the store and a sandbox"
    # The page runs from the root of a checkout: give the temp folder the example and the tool plugin it uses.
    shutil.copytree(ROOT / "graphs" / "examples", tmp_path / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    # One session, snippet after snippet, as the page says; a failure names the snippet.
    runner = (
        "import sys\n"
        "namespace = {'__name__': '__main__'}\n"
        "for number, source in enumerate(SNIPPETS, start=1):\n"
        "    print(f'--- snippet {number}', flush=True)\n"
        "    exec(compile(source, f'python-api.md snippet {number}', 'exec'), namespace)\n"
    )
    script = tmp_path / "run_the_page.py"
    script.write_text(f"SNIPPETS = {snippets!r}\n{runner}")
    # No key or endpoint of the developer's leaks in: the page must run offline, on its scripted models.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENAI_", "AGENTFLOW_"))}
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    # what the comments on the page promise
    assert "todo.txt has 3 lines." in out
    assert "answer_has_number run 1.0 1 the answer states 3" in out
    assert "True 2" in out
    assert "0 ['todo.txt']" in out
    assert (tmp_path / "runs").is_dir()


ONE_STEP = """
name: one_step
version: 1
state:
  listing: {type: list, default: []}
sandbox:
  backend: local
  files: {".": workspace}
tools: [list_files]
start: look
end: [look]
nodes:
  look: {kind: tool, tool: list_files, args: {path: "."}, output: {listing: result}}
"""


def test_arun_replay_and_resume_reach_the_runtime_and_the_store(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "a.txt").write_text("a\n")
    workflow = tmp_path / "one_step.yaml"
    workflow.write_text(ONE_STEP)
    store = agentflow.open_store(tmp_path / "runs")

    result = asyncio.run(agentflow.arun(workflow, store=store))
    assert result.succeeded, result.error
    assert result.final_state["listing"] == ["a.txt"]

    tape = agentflow.replay(store, result.run_id, ignore=())
    assert (tape.mode, tape.identical, tape.sandbox_execs) == ("tape", True, 0)
    (tmp_path / "workspace" / "b.txt").write_text("b\n")  # verify mode runs the tool again, on today's files
    verify = agentflow.replay(store, result.run_id, mode="verify")
    assert verify.mode == "verify" and verify.divergence is not None
    assert verify.divergence.actual is not None and verify.divergence.actual["data"]["result"] == ["a.txt", "b.txt"]

    with pytest.raises(TraceError, match="finished"):
        agentflow.resume(store, result.run_id)  # only an interrupted resumable run can be resumed
