"""Running workflows end to end on the real local sandbox, scripted models and the real trace store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import ConfigError
from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore, summarize
from tests.runtime.conftest import Workspace, agent_workflow

EXAMPLES = Path(__file__).parents[2] / "graphs" / "examples"


def events_of(store: TraceStore, run_id: str, kind: EventType) -> list[Any]:
    return [e for e in store.load_trace(run_id).events if e.type is kind]


async def test_example_fixes_the_bug_and_loops_back_once(tmp_path: Path, examples: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(examples / "fix_failing_test.yaml", store=store)
    assert result.status == "succeeded", result.error
    assert result.final_state["tests_passed"] is True
    trace = store.load_trace(result.run_id)
    assert trace.ok
    summary = summarize(trace.events)
    assert summary.nodes_visited == ["plan", "code", "test", "check", "code", "test", "check"]
    # the first test run fails (median still wrong), the second passes: per-node rewards show it
    test_rewards = [r for r in summary.rewards if r.hook == "tests_passed"]
    assert [r.label for r in test_rewards] == [-1, 1]
    assert test_rewards[0].value == pytest.approx(0.75)
    # a real language server scored each code step; the stale patch failed the safety check (S = 0, label -1)
    lsp = [e.data for e in trace.events if e.type is EventType.REWARD and e.data["hook"] == "lsp_diagnostics"]
    steps = [d for d in lsp if not d.get("aggregate")]
    assert [d["components"]["s"] for d in steps] == [1, 0, 1]
    assert all(len(d["components"]["bundle_id"]) == 64 for d in steps)
    assert steps[0]["components"]["bundle"]["server"]["name"] == "basedpyright"
    # run-level: the outcome, and the aggregates the workflow asks for
    aggregates = {d["hook"]: d["aggregate"] for d in (e.data for e in trace.events) if d.get("aggregate")}
    assert aggregates["lsp_diagnostics"]["first_error"] == 1
    assert aggregates["tests_delta"]["outcome"] == 1.0
    assert aggregates["tests_delta"]["grounded"] == pytest.approx((1 * 2 + 1 * 1) / 4 + 1 / 2)  # V + F/N
    # the stale patch went back to the model as an error, and the run went on
    failed = [e for e in trace.events if e.type is EventType.TOOL_RESULT and not e.data["ok"]]
    assert len(failed) == 1 and failed[0].data["tool"] == "apply_patch"
    request_after = next(e for e in trace.events if e.type is EventType.MODEL_REQUEST and e.seq > failed[0].seq)
    assert request_after.data["messages"][-1]["role"] == "tool"
    assert request_after.data["messages"][-1]["content"].startswith("error:")
    # the original workspace is untouched: the agent edited a copy inside the sandbox
    assert "len(values) - 1" in (examples / "fix_failing_test/workspace/calc/stats.py").read_text()
    started = trace.events[0]
    assert started.type is EventType.RUN_STARTED
    assert started.data["sandbox"]["backend"] == "local"
    assert "network_isolated" in started.data["sandbox"]["isolation"]


async def test_exhausted_script_fails_the_run_with_a_readable_trace(ws: Workspace) -> None:
    path = ws.workflow(
        agent_workflow(["list_files"]), script=[{"tool_calls": [{"name": "list_files", "arguments": {}}]}]
    )
    result = await run_workflow(path, store=ws.store)
    assert result.status == "failed"
    assert result.error is not None and "script" in result.error
    trace = ws.store.load_trace(result.run_id)
    assert trace.ok
    assert trace.events[-1].type is EventType.RUN_FINISHED
    assert trace.events[-1].data["status"] == "failed"


async def test_malformed_tool_call_json_goes_back_to_the_model(ws: Workspace) -> None:
    script = [
        {"tool_calls": [{"name": "read_file", "arguments_raw": '{"path": "a.txt",'}]},
        {"tool_calls": [{"name": "read_fiel", "arguments": {"path": "a.txt"}}]},
        {"tool_calls": [{"name": "read_file", "arguments": {"path": 7, "extra": 1}}]},
        {"content": "gave up"},
    ]
    result = await run_workflow(ws.workflow(agent_workflow(["read_file"]), script), store=ws.store)
    assert result.status == "succeeded"
    results = events_of(ws.store, result.run_id, EventType.TOOL_RESULT)
    assert [r.data["ok"] for r in results] == [False, False, False]
    assert "not valid JSON" in results[0].data["error"]
    assert "unknown tool 'read_fiel'" in results[1].data["error"]
    assert "extra" in results[2].data["error"]
    rewards = events_of(ws.store, result.run_id, EventType.REWARD)
    assert [r.data["label"] for r in rewards] == [-1, -1, -1]


async def test_tool_raising_and_plugin_tools(ws: Workspace) -> None:
    ws.file(
        "plugins/mytools.py",
        "def explode(reason: str) -> str:\n    '''Always fails.'''\n    raise RuntimeError(reason)\n\n"
        "def shout(text: str) -> str:\n    '''Upper-case the text.'''\n    return text.upper()\n",
    )
    script = [
        {"tool_calls": [{"name": "explode", "arguments": {"reason": "kaboom"}}]},
        {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]},
        {"content": "HI"},
    ]
    spec = agent_workflow(["plugins/mytools.py:explode", "plugins/mytools.py:shout"])
    result = await run_workflow(ws.workflow(spec, script), store=ws.store)
    assert result.status == "succeeded"
    assert result.final_state["answer"] == "HI"
    results = events_of(ws.store, result.run_id, EventType.TOOL_RESULT)
    assert results[0].data["ok"] is False and "kaboom" in results[0].data["error"]
    assert results[1].data["content"] == "HI"


async def test_model_call_limit(ws: Workspace) -> None:
    script = [{"tool_calls": [{"name": "list_files", "arguments": {}}]}] * 5
    spec = agent_workflow(["list_files"], limits={"max_model_calls": 2})
    result = await run_workflow(ws.workflow(spec, script), store=ws.store)
    assert result.status == "limit_exceeded"
    assert result.limit is not None and result.limit["name"] == "max_model_calls"
    errors = events_of(ws.store, result.run_id, EventType.ERROR)
    assert any(e.data["kind"] == "LimitExceeded" and e.data["limit"]["name"] == "max_model_calls" for e in errors)
    assert ws.store.list_runs()[0].status == "limit_exceeded"


def looping_workflow(max_iterations: int) -> dict[str, Any]:
    return {
        "name": "never_green",
        "state": {"green": {"type": "bool", "default": False}},
        "tools": ["shell"],
        "start": "attempt",
        "nodes": {
            "attempt": {
                "kind": "tool",
                "tool": "shell",
                "args": {"command": "exit 1"},
                "output": {"green": "result.exit_code == 0"},
            },
            "check": {"kind": "router", "routes": [{"when": "state.green", "to": "END"}, {"to": "attempt"}]},
        },
        "edges": [{"from": "attempt", "to": "check"}],
        "loops": [{"nodes": ["attempt", "check"], "max_iterations": max_iterations}],
    }


async def test_loop_bound_stops_the_run(ws: Workspace) -> None:
    result = await run_workflow(ws.workflow(looping_workflow(3)), store=ws.store)
    assert result.status == "limit_exceeded"
    assert result.limit is not None and "max_iterations" in result.limit["name"]
    summary = summarize(ws.store.load_trace(result.run_id).events)
    assert summary.nodes_visited.count("attempt") == 3
    routes = events_of(ws.store, result.run_id, EventType.ROUTE)
    assert [r.data["to"] for r in routes] == ["attempt", "attempt", "attempt"]


async def test_node_timeout_is_retried_then_recorded(ws: Workspace) -> None:
    spec = {
        "name": "slow",
        "tools": ["shell"],
        "start": "wait",
        "nodes": {
            "wait": {
                "kind": "tool",
                "tool": "shell",
                "args": {"command": "sleep 5"},
                "timeout_s": 0.5,
                "retry": {"attempts": 2, "backoff_s": 0.01},
            }
        },
        "end": ["wait"],
    }
    result = await run_workflow(ws.workflow(spec), store=ws.store)
    assert result.status == "limit_exceeded"
    assert result.limit is not None and result.limit["name"] == "timeout_s of node 'wait'"
    started = events_of(ws.store, result.run_id, EventType.NODE_STARTED)
    assert [e.data["attempt"] for e in started] == [1, 2]


async def test_sandbox_command_timeout_and_output_flood_are_tool_results(ws: Workspace) -> None:
    script = [
        {"tool_calls": [{"name": "shell", "arguments": {"command": "sleep 10", "timeout_s": 0.3}}]},
        {"tool_calls": [{"name": "python", "arguments": {"code": "print('x' * 5_000_000)"}}]},
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "../../../etc/passwd"}}]},
        {"content": "done"},
    ]
    spec = agent_workflow(["shell", "python", "read_file"])
    spec["sandbox"] = {"limits": {"output_bytes": 10_000}}
    result = await run_workflow(ws.workflow(spec, script), store=ws.store)
    assert result.status == "succeeded"
    results = events_of(ws.store, result.run_id, EventType.TOOL_RESULT)
    assert results[0].data["result"]["timed_out"] is True
    assert results[1].data["result"]["truncated"] is True
    assert len(results[1].data["result"]["stdout"]) <= 10_000
    assert results[2].data["ok"] is False
    execs = events_of(ws.store, result.run_id, EventType.SANDBOX_EXEC)
    assert execs[0].data["timed_out"] is True


async def test_inputs_are_type_checked(ws: Workspace) -> None:
    path = ws.workflow(looping_workflow(1))
    with pytest.raises(ConfigError, match="should be bool"):
        await run_workflow(path, inputs={"green": "not-a-bool"}, store=ws.store)
    with pytest.raises(ConfigError, match="not a state key"):
        await run_workflow(path, inputs={"gren": True}, store=ws.store)


async def test_subgraph_maps_inputs_and_outputs(ws: Workspace) -> None:
    child = {
        "name": "child",
        "state": {"n": {"type": "int", "default": 0}, "doubled": {"type": "int", "default": 0}},
        "tools": ["python"],
        "start": "double",
        "nodes": {
            "double": {
                "kind": "tool",
                "tool": "python",
                "args": {"code": "import sys; sys.stdout.write(str({n} * 2))"},
                "output": {"doubled": "int(result.stdout)"},
            }
        },
        "end": ["double"],
    }
    parent = {
        "name": "parent",
        "state": {"value": {"type": "int", "default": 21}, "result": {"type": "int", "default": 0}},
        "start": "inner",
        "nodes": {
            "inner": {
                "kind": "subgraph",
                "workflow": "child.yaml",
                "inputs": {"n": "state.value"},
                "outputs": {"result": "state.doubled"},
            }
        },
        "end": ["inner"],
    }
    ws.workflow(child, name="child.yaml")
    result = await run_workflow(ws.workflow(parent), store=ws.store)
    assert result.status == "succeeded", result.error
    assert result.final_state["result"] == 42
    nodes = [e.node for e in events_of(ws.store, result.run_id, EventType.NODE_STARTED)]
    assert nodes == ["inner", "inner/double"]


async def test_a_workflow_without_state_keys_runs(ws: Workspace) -> None:
    spec = {
        "name": "stateless",
        "tools": ["list_files"],
        "start": "a",
        "nodes": {"a": {"kind": "tool", "tool": "list_files"}},
        "end": ["a"],
    }
    result = await run_workflow(ws.workflow(spec), store=ws.store)
    assert result.status == "succeeded", result.error
    assert result.final_state == {}
