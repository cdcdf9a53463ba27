"""Replay: tape mode serves everything from the trace, verify mode re-runs tools, divergences are located."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentflow.errors import ConfigError, TraceError
from agentflow.rerun import replay_run
from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore, content_digest

WORKFLOW = """
name: echo_twice
state:
  task: {type: str, default: "say hi"}
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:echo.script.yaml"}
sandbox: {backend: local, files: {".": ws}}
tools: [read_file, shell]
start: work
nodes:
  work:
    kind: agent
    model: m
    prompt: "Do: {task}"
    tools: [read_file, shell]
    max_turns: 4
    output: {answer: answer}
  check: {kind: tool, tool: read_file, args: {path: greeting.txt}, output: {answer: result}}
edges:
  - {from: work, to: check}
  - {from: check, to: END}
rewards:
  - {hook: exit_code, on: step, nodes: [work]}
"""

SCRIPT = """
responses:
  - tool_calls: [{name: read_file, arguments: {path: greeting.txt}}]
  - tool_calls: [{name: shell, arguments: {command: "cat greeting.txt"}}]
  - content: done
"""


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    folder = tmp_path / "wf"
    (folder / "ws").mkdir(parents=True)
    (folder / "ws" / "greeting.txt").write_text("hello\n")
    (folder / "echo.script.yaml").write_text(SCRIPT)
    path = folder / "echo.yaml"
    path.write_text(WORKFLOW)
    return path


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    return TraceStore(tmp_path / "store")


async def test_tape_replay_needs_no_model_and_no_sandbox_and_matches_every_event(
    workflow: Path, store: TraceStore
) -> None:
    original = await run_workflow(workflow, store=store)
    assert original.succeeded
    # Without its script the scripted model cannot even be created, and without the workspace no tool could read
    # anything: a tape replay that succeeds used neither.
    (workflow.parent / "echo.script.yaml").unlink()
    shutil.rmtree(workflow.parent / "ws")
    report = await replay_run(store, original.run_id, mode="tape")
    assert report.identical, report.divergence
    assert report.status == "succeeded"
    assert (report.model_calls_served, report.tool_results_served, report.sandbox_execs) == (3, 3, 0)
    recorded = store.load_trace(original.run_id).events
    replayed = store.load_trace(report.replay_run_id).events
    assert [content_digest(e) for e in recorded] == [content_digest(e) for e in replayed]
    assert sum(e.type is EventType.SANDBOX_EXEC for e in replayed) == sum(
        e.type is EventType.SANDBOX_EXEC for e in recorded
    )
    assert replayed[0].data["replay_of"] == original.run_id
    assert not report.template_changed


async def test_verify_mode_reruns_tools_and_reports_the_first_divergence(workflow: Path, store: TraceStore) -> None:
    original = await run_workflow(workflow, store=store)
    same = await replay_run(store, original.run_id, mode="verify")
    assert same.identical, same.divergence
    assert same.sandbox_execs >= 1  # the shell tool really ran again

    (workflow.parent / "ws" / "greeting.txt").write_text("goodbye\n")  # the tool's world changed
    changed = await replay_run(store, original.run_id, mode="verify")
    assert not changed.identical
    divergence = changed.divergence
    assert divergence is not None
    recorded = store.load_trace(original.run_id).events
    first_read = next(e for e in recorded if e.type is EventType.TOOL_RESULT)
    assert (divergence.index, divergence.node) == (first_read.seq, "work")
    assert "hello" in divergence.diff and "goodbye" in divergence.diff
    assert divergence.expected is not None and divergence.actual is not None


TIMED_SCRIPT = """
responses:
  - tool_calls: [{name: shell, arguments: {command: "echo 4 passed in 0.$(date +%N)s"}}]
  - content: done
"""


async def test_verify_mode_masks_test_runner_timings_in_results_and_requests(workflow: Path, store: TraceStore) -> None:
    """A test runner's wall time differs on every run; it reaches the next model request too. Verify masks it on both
    sides (comparison and request matching) unless asked to compare exactly."""
    (workflow.parent / "echo.script.yaml").write_text(TIMED_SCRIPT)
    original = await run_workflow(workflow, store=store)
    assert original.succeeded, original.error
    masked = await replay_run(store, original.run_id, mode="verify")
    assert masked.identical, masked.divergence
    assert masked.model_calls_served == 2 and masked.sandbox_execs >= 1
    exact = await replay_run(store, original.run_id, mode="verify", ignore=())
    assert not exact.identical and exact.divergence is not None
    assert "passed in 0." in exact.divergence.diff
    with pytest.raises(ConfigError, match="not a regular expression"):
        await replay_run(store, original.run_id, mode="verify", ignore=["("])


async def test_a_changed_workflow_is_detected_by_its_template_hash(workflow: Path, store: TraceStore) -> None:
    original = await run_workflow(workflow, store=store)
    workflow.write_text(WORKFLOW.replace('prompt: "Do: {task}"', 'prompt: "Please do: {task}"'))
    report = await replay_run(store, original.run_id, mode="tape")
    assert report.template_changed
    assert report.recorded_template_hash != report.current_template_hash
    assert not report.identical
    assert report.divergence is not None and report.divergence.index == 0  # run_started holds the template hash
    assert report.status == "failed"  # the new prompt's request is not on the tape


async def test_a_tampered_trace_is_not_replayed(workflow: Path, store: TraceStore) -> None:
    original = await run_workflow(workflow, store=store)
    path = store.run_dir(original.run_id) / "trace.jsonl"
    path.write_text(path.read_text().replace('"hello\\n"', '"HELLO\\n"', 1))
    with pytest.raises(TraceError, match="tampered"):
        await replay_run(store, original.run_id)


async def test_a_missing_workflow_file_names_the_fix(workflow: Path, store: TraceStore) -> None:
    original = await run_workflow(workflow, store=store)
    moved = workflow.with_name("moved.yaml")
    workflow.rename(moved)
    with pytest.raises(ConfigError, match="--workflow"):
        await replay_run(store, original.run_id)
    report = await replay_run(store, original.run_id, workflow=moved)
    assert report.identical


def test_cli_replay_exit_codes(workflow: Path, store: TraceStore, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    from agentflow.cli import run_cli

    original = asyncio.run(run_workflow(workflow, store=store))
    assert run_cli(["replay", original.run_id, "--store", str(store.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["identical"], report["sandbox_execs"], report["divergence"]) == (True, 0, None)
    (workflow.parent / "ws" / "greeting.txt").write_text("changed\n")
    assert run_cli(["replay", original.run_id, "--mode", "verify", "--store", str(store.root)]) == 1
    printed = capsys.readouterr().out
    assert "diverged" in printed and "first divergence at event" in printed
    assert run_cli(["replay", original.run_id, "--mode", "bogus", "--store", str(store.root)]) == 2
