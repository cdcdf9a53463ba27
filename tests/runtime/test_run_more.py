"""The runtime against a real OpenAI-compatible HTTP server, failing and hanging reward hooks, a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentflow.rewards import Reward, RewardHook, StepContext, reward_hook
from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore
from tests.runtime.conftest import Workspace, agent_workflow
from tests.support.openai_server import OpenAIServer, Reply

EXAMPLES = Path(__file__).parents[2] / "graphs" / "examples"


async def test_example_runs_on_the_openai_sdk_over_http(
    tmp_path: Path, examples: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in openai_server.env.items():
        monkeypatch.setenv(key, value)
    patch = (
        "--- a/calc/stats.py\n+++ b/calc/stats.py\n"
        "@@ -8 +8 @@\n"
        "-    return sum(values) / (len(values) - 1)\n"
        "+    return sum(values) / len(values)\n"
        "@@ -19 +19 @@\n"
        "-    return ordered[middle]\n"
        "+    return (ordered[middle - 1] + ordered[middle]) / 2\n"
    )
    openai_server.queue(
        Reply.tool_calls(("read_file", json.dumps({"path": "calc/stats.py"}))),
        Reply.error(429, "slow down"),  # agentflow retries this one
        Reply.text("Fix mean and median."),
        Reply.tool_calls(("apply_patch", json.dumps({"patch": patch}))),
        Reply.text("Fixed both."),
    )
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(examples / "fix_failing_test.yaml", model="openai:test-model", store=store)
    assert result.status == "succeeded", result.error
    assert openai_server.pending == 0
    bodies = openai_server.requests
    assert len(bodies) == 5  # four answers plus the retried 429
    assert bodies[0]["model"] == "test-model"
    assert {t["function"]["name"] for t in bodies[0]["tools"]} == {"list_files", "read_file", "search_code"}
    assert bodies[0]["messages"][0]["role"] == "system"
    # the tool result went back to the model as a tool message with the call's id
    tool_message = bodies[2]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "def mean" in tool_message["content"]
    trace = store.load_trace(result.run_id)
    responses = [e for e in trace.events if e.type is EventType.MODEL_RESPONSE]
    assert len(responses) == 4
    assert all(e.data["model"] for e in responses)


async def test_model_api_error_errors_the_run_with_status(
    ws: Workspace, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in openai_server.env.items():
        monkeypatch.setenv(key, value)
    openai_server.queue(Reply.error(400, "bad request: messages: bad role"), Reply.text("never asked"))
    spec = agent_workflow(["list_files"])
    spec["models"] = {"m": {"model": "openai:test-model"}}
    result = await run_workflow(ws.workflow(spec), store=ws.store)
    assert result.status == "errored"  # the provider refused the request: no verdict on the agent
    assert result.error is not None and "400" in result.error
    assert openai_server.pending == 1  # a 400 is not retried
    errors = [e for e in ws.store.load_trace(result.run_id).events if e.type is EventType.ERROR]
    assert errors[0].data["kind"] == "ModelAPIError"
    assert errors[0].data["status_code"] == 400


@reward_hook("test_raises")
class RaisingHook(RewardHook):
    async def score(self, step: StepContext) -> Reward | None:
        raise RuntimeError("hook bug")


@reward_hook("test_hangs")
class HangingHook(RewardHook):
    async def score(self, step: StepContext) -> Reward | None:
        import asyncio

        await asyncio.sleep(60)
        return Reward(value=1.0)


async def test_failing_and_hanging_hooks_are_recorded_and_never_fail_the_run(ws: Workspace) -> None:
    spec = agent_workflow(["list_files"])
    spec["rewards"] = [
        {"hook": "test_raises", "on": "node"},
        {"hook": "test_hangs", "on": "node", "timeout_s": 0.2},
        {"hook": "exit_code", "on": "node"},
    ]
    script = [{"tool_calls": [{"name": "list_files", "arguments": {}}]}, {"content": "ok"}]
    result = await run_workflow(ws.workflow(spec, script), store=ws.store)
    assert result.status == "succeeded"
    events = ws.store.load_trace(result.run_id).events
    hook_errors = {e.data["hook"]: e.data["message"] for e in events if e.type is EventType.ERROR}
    assert "hook bug" in hook_errors["test_raises"]
    assert "timed out" in hook_errors["test_hangs"]
    rewards = [e.data["hook"] for e in events if e.type is EventType.REWARD]
    assert rewards == ["exit_code"]


async def test_step_limit(ws: Workspace) -> None:
    spec = {
        "name": "two",
        "tools": ["list_files"],
        "start": "a",
        "nodes": {"a": {"kind": "tool", "tool": "list_files"}, "b": {"kind": "tool", "tool": "list_files"}},
        "edges": [{"from": "a", "to": "b"}],
        "end": ["b"],
        "limits": {"max_steps": 1},
    }
    result = await run_workflow(ws.workflow(spec), store=ws.store)
    assert result.status == "limit_exceeded"
    assert result.limit is not None and result.limit["name"] == "max_steps"


def _two_shell_nodes(name: str, second: str, command: str, **extra: object) -> dict[str, object]:
    """A run of `echo one`, then `command` (a sleep, named by its odd duration) in the node `second`."""
    return {
        "name": name,
        "tools": ["shell"],
        "start": "first",
        "nodes": {
            "first": {"kind": "tool", "tool": "shell", "args": {"command": "echo one"}},
            second: {"kind": "tool", "tool": "shell", "args": {"command": command, "timeout_s": 60}},
        },
        "edges": [{"from": "first", "to": second}],
        "end": [second],
        **extra,
    }


def _sigkill_run_when(ws: Workspace, spec: dict[str, object], ready: Callable[[], bool], waiting_for: str) -> None:
    """Run ``spec`` with the CLI in a child process and SIGKILL it as soon as ``ready()`` holds."""
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("agentflow")),
            "run",
            str(ws.workflow(spec)),
            "--store",
            str(ws.store.root),
        ],
        cwd=ws.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"the run never got to {waiting_for}")
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()


def test_killed_run_leaves_a_readable_trace(ws: Workspace) -> None:
    def at_second_node() -> bool:
        runs = ws.store.list_runs()
        events = ws.store.load_trace(runs[0].run_id).events if runs else []
        return any(e.type is EventType.TOOL_CALL and e.node == "wait" for e in events)

    _sigkill_run_when(ws, _two_shell_nodes("slow", "wait", "sleep 37.25"), at_second_node, "its second node")
    run_id = ws.store.list_runs()[0].run_id
    trace = ws.store.load_trace(run_id)
    assert trace.ok, trace.problems
    types = [e.type for e in trace.events]
    assert types[0] is EventType.RUN_STARTED
    assert types[-1] is EventType.TOOL_CALL  # everything up to the last event written before the kill
    assert EventType.RUN_FINISHED not in types
    assert ws.store.list_runs()[0].status == "interrupted"
    # the sandboxed command died with the run: nothing it started outlives agentflow
    deadline = time.monotonic() + 10
    while _processes_running("37.25") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_running("37.25")


def test_run_killed_right_after_a_sandbox_command_started_keeps_every_event_before_it(ws: Workspace) -> None:
    # The run holds its events in memory between writes; the command starting in the sandbox is an effect outside
    # the process, so everything recorded before it must already be in the trace when the process dies.
    spec = _two_shell_nodes("effect", "effect", "sleep 41.75", rewards=[{"hook": "exit_code", "on": "node"}])
    # the effect itself is the signal, not the trace
    _sigkill_run_when(ws, spec, lambda: bool(_processes_running("41.75")), "its sandbox command")
    [run] = ws.store.list_runs()
    trace = ws.store.load_trace(run.run_id)
    assert trace.ok, trace.problems
    assert [(e.type.value, e.node) for e in trace.events] == [
        ("run_started", None),
        ("node_started", "first"),
        ("tool_call", "first"),
        ("sandbox_exec", "first"),
        ("tool_result", "first"),
        ("node_finished", "first"),
        ("reward", "first"),
        ("node_started", "effect"),
        ("tool_call", "effect"),
    ]
    assert run.status == "interrupted"


def _processes_running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
