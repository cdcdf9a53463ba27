"""Every event's data matches the TypedDict of its event type (``agentflow.traces.DATA_TYPES``).

The data types are the contract between emitters and readers, so they are checked against what the emitters
really write: every key of every event of real recorded runs (the shipped example with its hooks, a tape replay of
it, a run that fails, an imported run) is declared in its event type's data type, and every key the type requires
is present. An emitter that adds a key the type does not declare fails here. The committed traces written before
the types existed hold only declared keys too: the trace format did not change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import get_type_hints

import pytest
import yaml

from agentflow.errors import TraceError
from agentflow.rerun import replay_run
from agentflow.runtime import run_workflow
from agentflow.traces import (
    DATA_TYPES,
    EventType,
    RewardData,
    RouteData,
    ToolCallData,
    ToolResultData,
    TraceStore,
    import_openai_messages,
)
from tests.support.event_data import assert_data_declared

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_event_type_has_a_typed_dict_of_its_own() -> None:
    assert set(DATA_TYPES) == set(EventType)
    assert len(set(DATA_TYPES.values())) == len(EventType)
    for data_type in DATA_TYPES.values():
        declared = set(get_type_hints(data_type))
        required: frozenset[str] = data_type.__required_keys__  # type: ignore[attr-defined]
        optional: frozenset[str] = data_type.__optional_keys__  # type: ignore[attr-defined]
        assert declared and required | optional == declared, data_type.__name__
        assert data_type.__doc__, f"{data_type.__name__} says what its event means"
    # NotRequired is seen (Python 3.11 misses it in string annotations): keys only some emitters write
    assert "host" in ToolCallData.__optional_keys__
    assert {"aggregate", "not_scored", "weight"} <= RewardData.__optional_keys__
    assert RouteData.__required_keys__ == {"from", "to", "condition"}


async def test_a_recorded_run_and_its_replay_hold_exactly_the_declared_keys(tmp_path: Path, examples: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(examples / "fix_failing_test.yaml", store=store)
    assert result.status == "succeeded", result.error
    seen = assert_data_declared(store.load_trace(result.run_id).events)
    everything_but = {EventType.RUN_RESUMED, EventType.ERROR}  # the example is neither resumed nor failing
    assert seen == set(EventType) - everything_but
    report = await replay_run(store, result.run_id, mode="tape", workflow=examples / "fix_failing_test.yaml")
    assert report.identical, report.first_divergence
    replayed = store.load_trace(report.replay_run_id).events
    assert_data_declared(replayed)
    assert {"replay_of", "replay_mode"} <= set(replayed[0].data)


async def test_a_failing_run_holds_exactly_the_declared_keys(tmp_path: Path) -> None:
    workflow = {
        "name": "failing",
        "tools": ["read_file"],
        "sandbox": {"backend": "local"},
        "start": "look",
        "nodes": {
            "look": {"kind": "tool", "tool": "read_file", "args": {"path": "missing.txt"}},
            "insist": {"kind": "tool", "tool": "read_file", "args": {"path": "missing.txt"}, "fail_on_error": True},
        },
        "edges": [{"from": "look", "to": "insist"}, {"from": "insist", "to": "END"}],
        "rewards": [{"hook": "exit_code", "on": "step"}],
    }
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(workflow))
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(path, store=store)
    assert result.status == "failed", result.error
    events = store.load_trace(result.run_id).events
    seen = assert_data_declared(events)
    assert EventType.ERROR in seen
    finished = [event.data for event in events if event.type is EventType.NODE_FINISHED]
    assert [data["status"] for data in finished] == ["ok", "failed"] and "error" in finished[1]


def test_an_imported_run_holds_exactly_the_declared_keys(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "What is 6 times 7?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "python", "arguments": '{"code": "6*7"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "42"},
        ],
        "question": "What is 6 times 7?",
        "answer_text": "42",
    }
    source = tmp_path / "trajectories.jsonl"
    source.write_text(json.dumps(record) + "\n")
    store = TraceStore(tmp_path / ".agentflow")
    [run_id] = import_openai_messages(store, source).run_ids
    seen = assert_data_declared(store.load_trace(run_id).events)
    assert EventType.TOOL_RESULT in seen and EventType.MODEL_RESPONSE in seen


def test_the_committed_traces_hold_only_declared_keys(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "fix_failing_test-0.1", tmp_path / "example")
    example = TraceStore(tmp_path / "example")
    [run_id] = example.reindex()
    # recorded by agentflow 0.1.0 running the shipped example: every key it wrote is declared, none it needs lacks
    assert len(assert_data_declared(example.load_trace(run_id).events)) == len(EventType) - 2
    # written by hand through the store API to test the store's format (not by the runtime): its minimal events
    # lack keys the runtime always writes, but hold no key the types do not know
    shutil.copytree(FIXTURES / "store-before-i9", tmp_path / "store")
    store = TraceStore(tmp_path / "store")
    for stored_run in store.reindex():
        assert_data_declared(store.load_trace(stored_run).events, complete=False)


def test_data_as_returns_the_data_itself_typed_and_refuses_another_event_types_data(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    with store.new_run(workflow="typed") as recorder:
        event = recorder.emit(
            EventType.TOOL_RESULT,
            data=ToolResultData(tool="t", call_id="c", ok=False, content="", result=None, error="boom"),
        )
        recorder.finish("succeeded")
    result = event.data_as(ToolResultData)
    assert result is event.data and result["error"] == "boom"
    with pytest.raises(TraceError, match="tool_result event, whose data is ToolResultData, not ToolCallData"):
        event.data_as(ToolCallData)
    # read back from the store, the event's data is the same dict type and is typed the same way
    [stored, _finished] = store.load_trace(store.list_runs()[0].run_id).events
    assert stored.data_as(ToolResultData) == result
