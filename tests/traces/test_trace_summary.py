"""Run summaries and realized graphs over hand-built traces shaped like real runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentflow.traces import Event, EventType, LimitInfo, TraceStore, realized_graph, summarize


class _TraceBuilder:
    """Builds events the way the runtime emits them: seq in order, one second apart, parents by seq."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._start = datetime(2025, 1, 1, tzinfo=UTC)

    def add(self, type: EventType, node: str | None = None, parent: int | None = None, **data: Any) -> int:
        seq = len(self.events)
        ts = (self._start + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")
        self.events.append(Event(run_id="run-1", seq=seq, type=type, ts=ts, node=node, parent=parent, data=data))
        return seq

    def model_turn(self, node: str, parent: int, tokens_in: int | None, tokens_out: int = 0) -> None:
        self.add(EventType.MODEL_REQUEST, node, parent, model="scripted:fix", messages=[], tools=[], settings={})
        if tokens_in is not None:
            usage = {"input_tokens": tokens_in, "output_tokens": tokens_out}
            self.add(EventType.MODEL_RESPONSE, node, parent, model="scripted:fix", tool_calls=[], usage=usage)

    def tool(self, node: str, parent: int, tool: str, *, ok: bool) -> None:
        call = self.add(EventType.TOOL_CALL, node, parent, tool=tool, call_id=f"c{parent}", arguments={})
        # Results carry no node: the summary must attribute them through their parent tool_call.
        self.add(EventType.TOOL_RESULT, None, call, tool=tool, call_id=f"c{parent}", ok=ok, error=None if ok else "x")

    def reward(self, node: str | None, parent: int | None, hook: str, value: float, label: int, on: str) -> None:
        self.add(EventType.REWARD, node, parent, hook=hook, value=value, label=label, on=on, components={})


def _fix_failing_test_run() -> list[Event]:
    """plan -> code -> test -> check -> code (fails once, retried) -> test -> check -> END."""
    trace = _TraceBuilder()
    trace.add(EventType.RUN_STARTED, workflow="fix_failing_test", inputs={"task": "fix it"}, limits={})

    plan = trace.add(EventType.NODE_STARTED, "plan", 0, visit=1, attempt=1)
    trace.model_turn("plan", plan, 100, 20)
    trace.tool("plan", plan, "read_file", ok=True)
    trace.model_turn("plan", plan, 150, 30)
    trace.add(EventType.NODE_FINISHED, "plan", plan, status="ok", updates={}, duration_s=1.5)

    code = trace.add(EventType.NODE_STARTED, "code", 0, visit=1, attempt=1)
    trace.model_turn("code", code, 200, 50)
    trace.tool("code", code, "write_file", ok=False)
    trace.reward("code", code, "lsp_diagnostics", 0.4, 1, "step")
    trace.tool("code", code, "write_file", ok=True)
    trace.reward("code", code, "lsp_diagnostics", 0.9, 1, "step")
    trace.add(EventType.NODE_FINISHED, "code", code, status="ok", updates={}, duration_s=2.0)

    test = trace.add(EventType.NODE_STARTED, "test", 0, visit=1, attempt=1)
    trace.add(EventType.SANDBOX_EXEC, "test", test, cmd=["pytest"], exit_code=1, timed_out=False)
    trace.tool("test", test, "run_tests", ok=True)
    trace.reward("test", test, "tests_delta", 0.0, 0, "node")
    trace.add(EventType.NODE_FINISHED, "test", test, status="ok", updates={"tests_passed": False}, duration_s=3.0)

    check = trace.add(EventType.NODE_STARTED, "check", 0, visit=1, attempt=1)
    trace.add(EventType.ROUTE, "check", check, **{"from": "check", "to": "code", "condition": None})
    trace.add(EventType.NODE_FINISHED, "check", check, status="ok", updates={}, duration_s=0.0)

    code = trace.add(EventType.NODE_STARTED, "code", 0, visit=2, attempt=1)
    trace.model_turn("code", code, None)  # the request failed: no response
    trace.add(EventType.ERROR, "code", code, kind="ModelAPIError", message="HTTP 503")
    trace.add(EventType.NODE_FINISHED, "code", code, status="failed", updates={}, duration_s=0.5, error="HTTP 503")
    code = trace.add(EventType.NODE_STARTED, "code", 0, visit=2, attempt=2)
    trace.model_turn("code", code, 220, 40)
    trace.tool("code", code, "write_file", ok=True)
    trace.reward("code", code, "lsp_diagnostics", 1.0, 1, "step")
    trace.add(EventType.NODE_FINISHED, "code", code, status="ok", updates={}, duration_s=1.0)

    test = trace.add(EventType.NODE_STARTED, "test", 0, visit=2, attempt=1)
    trace.add(EventType.SANDBOX_EXEC, "test", test, cmd=["pytest"], exit_code=0, timed_out=False)
    trace.tool("test", test, "run_tests", ok=True)
    trace.reward("test", test, "tests_delta", 1.0, 1, "node")
    trace.add(EventType.NODE_FINISHED, "test", test, status="ok", updates={"tests_passed": True}, duration_s=3.0)

    check = trace.add(EventType.NODE_STARTED, "check", 0, visit=2, attempt=1)
    trace.add(EventType.ROUTE, "check", check, **{"from": "check", "to": "END", "condition": "state.tests_passed"})
    trace.add(EventType.NODE_FINISHED, "check", check, status="ok", updates={}, duration_s=0.0)

    trace.reward(None, None, "outcome", 1.0, 1, "run")
    trace.add(
        EventType.RUN_FINISHED, status="succeeded", final_state={"tests_passed": True}, error=None, duration_s=12.5
    )
    return trace.events


def test_summary_counts_a_realistic_run() -> None:
    summary = summarize(_fix_failing_test_run())

    assert (summary.run_id, summary.workflow, summary.status, summary.duration_s) == (
        "run-1",
        "fix_failing_test",
        "succeeded",
        12.5,
    )
    assert summary.nodes_visited == ["plan", "code", "test", "check", "code", "test", "check"]
    assert summary.steps == 8  # seven visits plus one retry
    assert (summary.tool_calls, summary.tool_calls_ok, summary.tool_calls_failed) == (6, 5, 1)
    assert (summary.model_calls, summary.tokens_in, summary.tokens_out, summary.tokens) == (5, 670, 140, 810)
    assert summary.sandbox_execs == 2
    assert [(error.kind, error.node) for error in summary.errors] == [("ModelAPIError", "code")]
    assert summary.limit_exceeded is None

    code = summary.nodes["code"]
    assert (code.visits, code.attempts, code.failures) == (2, 3, 1)
    assert (code.model_calls, code.tokens_in, code.tokens_out) == (3, 420, 90)
    assert (code.tool_calls, code.tool_failures) == (3, 1)
    assert [reward.value for reward in code.rewards] == [0.4, 0.9, 1.0]
    assert code.reward_mean == pytest.approx(2.3 / 3)
    assert code.duration_s == pytest.approx(3.5)
    assert (summary.nodes["plan"].model_calls, summary.nodes["plan"].tool_calls) == (2, 1)
    assert summary.nodes["test"].reward_mean == 0.5
    assert summary.nodes["check"].rewards == []

    by_hook = summary.rewards_by_hook
    assert sorted(by_hook) == ["lsp_diagnostics", "outcome", "tests_delta"]
    assert (by_hook["tests_delta"].count, by_hook["tests_delta"].mean) == (2, 0.5)
    assert by_hook["tests_delta"].labels == {"0": 1, "1": 1}
    assert by_hook["lsp_diagnostics"].mean == pytest.approx(2.3 / 3)
    assert summary.reward_mean == pytest.approx(4.3 / 6)


def test_summary_is_json_serialisable_with_derived_values() -> None:
    data = json.loads(json.dumps(summarize(_fix_failing_test_run()).to_dict()))
    assert data["tokens"] == 810
    assert data["reward_mean"] == pytest.approx(4.3 / 6)
    assert data["nodes"]["test"]["reward_mean"] == 0.5
    assert data["nodes"]["code"]["tokens"] == 510
    assert data["rewards_by_hook"]["outcome"]["mean"] == 1.0
    assert data["errors"][0]["message"] == "HTTP 503"


def test_summary_of_a_run_stopped_by_a_limit() -> None:
    trace = _TraceBuilder()
    trace.add(EventType.RUN_STARTED, workflow="loop")
    node = trace.add(EventType.NODE_STARTED, "agent", 0, visit=1, attempt=1)
    trace.model_turn("agent", node, 10, 1)
    trace.model_turn("agent", node, 10, 1)
    limit = {"name": "max_model_calls", "value": 2, "observed": 3}
    trace.add(EventType.ERROR, "agent", node, kind="LimitExceeded", message="limit max_model_calls", limit=limit)
    trace.add(EventType.RUN_FINISHED, status="limit_exceeded", final_state={}, error="limit", duration_s=0.1)

    summary = summarize(trace.events)
    assert summary.status == "limit_exceeded"
    assert summary.limit_exceeded == LimitInfo(name="max_model_calls", value=2.0, observed=3.0)
    assert summary.reward_mean is None
    assert summary.nodes["agent"].reward_mean is None


def test_summary_of_an_unfinished_trace_uses_timestamps() -> None:
    events = _fix_failing_test_run()[:-2]
    summary = summarize(events)
    assert summary.status == "incomplete"
    assert summary.duration_s == float(len(events) - 1)  # the builder spaces events one second apart


def test_realized_graph_counts_visits_and_edges_taken() -> None:
    graph = realized_graph(_fix_failing_test_run())
    assert graph["start"] == "plan"
    assert graph["path"] == ["plan", "code", "test", "check", "code", "test", "check"]
    assert graph["nodes"] == {
        "plan": {"visits": 1},
        "code": {"visits": 2},
        "test": {"visits": 2},
        "check": {"visits": 2},
    }
    edges = {(edge["from"], edge["to"]): (edge["count"], edge["conditions"]) for edge in graph["edges"]}
    assert edges == {
        ("plan", "code"): (1, []),
        ("code", "test"): (2, []),  # the retry of code is no new edge
        ("test", "check"): (2, []),
        ("check", "code"): (1, []),
        ("check", "END"): (1, ["state.tests_passed"]),
    }
    json.dumps(graph)


def test_recorder_summary_and_index_agree_with_the_stored_trace(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    with store.new_run(workflow="fix_failing_test") as recorder:
        for event in _fix_failing_test_run():
            if event.type is EventType.RUN_FINISHED:
                recorder.finish("succeeded", **{k: v for k, v in event.data.items() if k != "status"})
            else:
                recorder.emit(event.type, node=event.node, parent=event.parent, data=event.data)
        live = recorder.summary()
    stored = summarize(store.load_trace(recorder.run_id).events)
    assert live.to_dict() == stored.to_dict()
    [info] = store.list_runs()
    assert (info.steps, info.tool_calls, info.model_calls, info.tokens) == (8, 6, 5, 810)
    assert info.reward_mean == pytest.approx(4.3 / 6)
    assert (info.status, info.duration_s, info.error) == ("succeeded", 12.5, None)


def test_recorder_summary_agrees_with_the_trace_over_many_summary_batches(tmp_path: Path) -> None:
    from agentflow.traces._recorder import SUMMARY_BATCH

    run = [event for event in _fix_failing_test_run() if event.type is not EventType.RUN_FINISHED]
    store = TraceStore(tmp_path / "store")
    with store.new_run(workflow="fix_failing_test") as recorder:
        recorder.hold_events()
        emitted = 0
        for repeat in range(2 * SUMMARY_BATCH // len(run) + 2):  # past two batches, ending inside a third
            for event in run[1:] if repeat else run:
                recorder.emit(event.type, node=event.node, parent=event.parent, data=event.data)
                emitted += 1
                if emitted in (SUMMARY_BATCH - 1, SUMMARY_BATCH, 2 * SUMMARY_BATCH + 1):
                    recorder.flush()
                    live = recorder.summary()
                    stored = summarize(store.load_trace(recorder.run_id).events)
                    assert live.to_dict() == stored.to_dict()
        assert emitted > 2 * SUMMARY_BATCH + 1
        recorder.finish("succeeded")
        final = recorder.summary()
    assert final.to_dict() == summarize(store.load_trace(recorder.run_id).events).to_dict()
    [info] = store.list_runs()
    assert (info.tool_calls, info.model_calls) == (final.tool_calls, final.model_calls)
