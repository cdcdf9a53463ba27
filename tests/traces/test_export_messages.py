"""`agentflow traces export --format openai-messages`: chat messages with tools, rewards and labels per step; the
round trip through `traces import`; the exit codes of bad input (unknown run, damaged trace, bad flags)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentflow.cli import run_cli
from agentflow.traces import (
    BenchItem,
    EventType,
    ModelRequestData,
    ModelResponseData,
    NodeStartedData,
    RunStartedData,
    Store,
    TokenUsage,
    ToolCallData,
    ToolResultData,
    TraceStore,
    export_atif,
    export_openai_messages,
    import_openai_messages,
)
from tests.cli.test_cli import agentflow
from tests.support.event_data import assert_data_declared
from tests.traces.export_support import EXAMPLE_RUN, call, example_store, record_run

AGENTPROCESSBENCH_RECORD: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You answer questions with tools."},
        {"role": "user", "content": "What is 6 times 7?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "python", "arguments": '{"code": "6*7"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "The answer is 42."},
    ],
    "tools": [{"type": "function", "function": {"name": "python", "parameters": {}}}],
    "question": "What is 6 times 7?",
    "ground_truth": "42",
    "answer_text": "The answer is 42.",
    "step_labels": {"2": 1, "4": -1},
    "final_label": -1,
    "query_index": 3,
    "sample_index": 1,
}


def _export(store: TraceStore, *args: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code = run_cli(["traces", "export", *args, "--format", "openai-messages", "--store", str(store.root)])
    assert code == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_recorded_run_exports_its_conversation_with_rewards_and_labels_per_assistant_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = example_store(tmp_path)
    [record] = _export(store, EXAMPLE_RUN, capsys=capsys)
    roles = [m["role"] for m in record["messages"]]
    # plan's conversation, then code's two (each visit of an agent node sends a conversation of its own)
    assert roles.count("system") == 3 and roles.count("user") == 3
    assert roles[:4] == ["system", "user", "assistant", "tool"] and roles[-1] == "assistant"
    assert [t["function"]["name"] for t in record["tools"]] == [
        "list_files",
        "read_file",
        "search_code",
        "write_file",
        "apply_patch",
    ]
    assistants = [i for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]
    assert set(record["step_rewards"]) <= {str(i) for i in assistants}
    assert set(record["step_labels"]) <= {str(i) for i in assistants}
    # every tool call of the run was scored by exit_code; the patches also by the LSP hook
    hooks = {r["hook"] for rewards in record["step_rewards"].values() for r in rewards}
    assert hooks == {"exit_code", "lsp_diagnostics"}
    # a message's label is the lowest its rewards gave: a patch the language server found errors in is -1
    for index, rewards in record["step_rewards"].items():
        assert record["step_labels"][index] == min(r["label"] for r in rewards)
    assert -1 in record["step_labels"].values()
    # the run's outcome, and the tool node's rewards (a tool node writes no message), stay with the run
    run_level = {(r["hook"], r["on"], r.get("node")) for r in record["rewards"]}
    assert ("outcome", "run", None) in run_level and ("tests_delta", "node", "test") in run_level
    assert record["status"] == "succeeded" and record["run_id"] == EXAMPLE_RUN
    assert record["question"].startswith("Make the failing tests")
    assert record["answer_text"] == record["messages"][-1]["content"]


def test_export_then_import_then_export_gives_the_same_messages_labels_and_rewards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = example_store(tmp_path)
    out = tmp_path / "messages.jsonl"
    code = run_cli(
        ["traces", "export", EXAMPLE_RUN, "--format", "openai-messages", "-o", str(out), "--store", str(store.root)]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"exported 1 openai-messages records to {out}"
    [first] = [json.loads(line) for line in out.read_text().splitlines()]
    assert run_cli(["traces", "import", str(out), "--store", str(store.root), "--json"]) == 0
    [imported] = json.loads(capsys.readouterr().out)["run_ids"]
    [again] = _export(store, imported, capsys=capsys)
    for key in ("messages", "tools", "step_labels", "step_rewards", "rewards", "question", "answer_text"):
        assert again[key] == first[key], key
    assert again["record_id"] == EXAMPLE_RUN and again["status"] == "imported"


def test_an_agentprocessbench_record_exports_back_as_it_was_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = TraceStore(tmp_path / "store")
    source = tmp_path / "apb.jsonl"
    source.write_text(json.dumps(AGENTPROCESSBENCH_RECORD) + "\n")
    [run_id] = import_openai_messages(store, source).run_ids
    [record] = export_openai_messages(store, [run_id])
    for key, value in AGENTPROCESSBENCH_RECORD.items():
        assert record[key] == value, key  # the reference labels, the metadata, the messages and tools
    assert record["step_rewards"] == {} and record["rewards"] == []


def test_several_runs_and_the_runs_of_a_bench_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = TraceStore(tmp_path / "store")
    first = record_run(store, [("ls", "c1", 1.0), ("done", None, 0)], outcome=1.0)
    second = record_run(store, [("rm", "c1", 0.0), ("gave up", None, 0)], outcome=0.0, status="failed")
    records = _export(store, first, second, capsys=capsys)
    assert [r["run_id"] for r in records] == [first, second]
    assert records[0]["step_labels"] == {"2": 1} and records[1]["step_labels"] == {"2": -1}
    assert records[1]["step_rewards"]["2"] == [{"hook": "exit_code", "on": "step", "value": 0.0, "label": -1}]
    assert records[1]["rewards"] == [{"hook": "outcome", "on": "run", "value": 0.0, "label": -1}]
    bench = store.create_bench_run(name="fixers", config={"outcome": {"hook": "outcome"}})
    for epoch, run_id in enumerate([second, first]):
        store.start_bench_item(
            BenchItem(bench.bench_run_id, "t1", epoch, 1, run_id, None, "succeeded", 1.0, "2026-12-02T00:00:00Z")
        )
    by_bench = _export(store, "--bench", bench.bench_run_id[:8], capsys=capsys)
    assert [r["run_id"] for r in by_bench] == [second, first]


def test_the_real_command_writes_jsonl_to_stdout(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    run_id = record_run(store, [("ls", "c1", 1.0), ("done", None, 0)])
    result = agentflow("traces", "export", run_id[:15], "--format", "openai-messages", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert record["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "out:ls"}


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bad_input_is_refused_with_one_line_and_the_documented_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    run_id = record_run(store, [("ls", "c1", 1.0), ("done", None, 0)])
    unknown = agentflow("traces", "export", "no-such-run", "--format", "atif", cwd=tmp_path)
    assert unknown.returncode == 3 and "no run 'no-such-run'" in _error_line(unknown)
    folder = str(tmp_path / ".agentflow")

    def refused(*args: str) -> tuple[int, str]:
        code = run_cli(["traces", "export", *args, "--store", folder])
        return code, capsys.readouterr().err.strip()

    code, error = refused("--format", "atif")
    assert code == 2 and "pass RUN_ID... or --bench ID" in error
    assert refused(run_id, "--bench", "b", "--format", "atif")[0] == 2
    code, error = refused(run_id, "--format", "parquet")
    assert code == 2 and "openai-messages | atif | rollouts | otlp" in error
    code, error = refused(run_id, "--format", "atif", "--otlp", "http://127.0.0.1:9")
    assert code == 2 and "--otlp sends spans" in error
    assert refused(run_id, "--format", "otlp", "-o", "x.jsonl")[0] == 2
    code, error = refused("--bench", "nope", "--format", "openai-messages")
    assert code == 3 and "nope" in error
    # a damaged trace is never exported: a tool result rewritten after the run
    trace_file = next((tmp_path / ".agentflow" / "runs").glob("*/trace.jsonl"))
    trace_file.write_text(trace_file.read_text().replace("out:ls", "out:rm"))
    damaged = agentflow("traces", "export", run_id, "--format", "openai-messages", "-o", "x.jsonl", cwd=tmp_path)
    assert damaged.returncode == 3 and "failed verification" in _error_line(damaged)
    assert not (tmp_path / "x.jsonl").exists()


def test_records_whose_rewards_break_the_format_are_skipped_by_line(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    good = {**AGENTPROCESSBENCH_RECORD, "step_rewards": {"2": [{"hook": "exit_code", "value": 1, "label": 1}]}}
    on_a_user_message = {**AGENTPROCESSBENCH_RECORD, "step_rewards": {"1": [{"hook": "h", "value": 1}]}}
    bad_label = {**AGENTPROCESSBENCH_RECORD, "rewards": [{"hook": "outcome", "value": 1, "label": 2}]}
    no_hook = {**AGENTPROCESSBENCH_RECORD, "step_rewards": {"4": [{"value": 1}]}}
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in [good, on_a_user_message, bad_label, no_hook]))
    report = import_openai_messages(store, source)
    assert len(report.run_ids) == 1
    assert report.skipped == [
        (2, "step_rewards['1'] does not name an assistant message"),
        (3, "rewards[0].label = 2: use -1, 0, +1 or null"),
        (4, "step_rewards['4'][0] must be an object with a 'hook' name"),
    ]
    events = store.load_trace(report.run_ids[0]).events
    assert_data_declared(events)  # the reward events an import writes hold what RewardData declares
    [record] = export_openai_messages(store, report.run_ids)
    assert record["step_rewards"] == {"2": [{"hook": "exit_code", "on": "step", "value": 1.0, "label": 1}]}


def test_both_stores_export_the_same(any_store: Store) -> None:
    run_id = record_run(any_store, [("ls", "c1", 1.0), ("done", None, 0)], outcome=1.0)
    [record] = export_openai_messages(any_store, [run_id])
    assert record["step_labels"] == {"2": 1} and record["rewards"][0]["hook"] == "outcome"
    [trajectory] = export_atif(any_store, [run_id])
    assert [s["source"] for s in trajectory["steps"]] == ["system", "user", "agent", "agent"]


def _turn(
    recorder: Any, node: str, parent: int, sent: list[dict[str, Any]], answer: dict[str, Any], branch: str | None
) -> None:
    """One model turn of ``node`` (in ``branch``), with the `run` tool calls its answer makes answered."""
    extra = {"branch": branch} if branch else {}
    request = recorder.emit(
        EventType.MODEL_REQUEST,
        node=node,
        parent=parent,
        data={**ModelRequestData(model="m", messages=list(sent), tools=[]), **extra},
    )
    calls = answer.get("tool_calls") or []
    response = recorder.emit(
        EventType.MODEL_RESPONSE,
        node=node,
        parent=request.seq,
        data={
            **ModelResponseData(
                model="m",
                message=answer,
                tool_calls=[{"id": c["id"], "name": "run", "arguments": c["function"]["arguments"]} for c in calls],
                usage=TokenUsage(input_tokens=1, output_tokens=1),
            ),
            **extra,
        },
    )
    for c in calls:
        tool_call = recorder.emit(
            EventType.TOOL_CALL,
            node=node,
            parent=response.seq,
            data={**ToolCallData(tool="run", call_id=c["id"], arguments=c["function"]["arguments"]), **extra},
        )
        recorder.emit(
            EventType.TOOL_RESULT,
            node=node,
            parent=tool_call.seq,
            data={
                **ToolResultData(
                    tool="run", call_id=c["id"], ok=True, content=f"ran {c['id']}", result=None, error=None
                ),
                **extra,
            },
        )


def test_sequential_nodes_and_concurrent_branches_keep_each_conversation_in_order(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    ask = {"role": "user", "content": "go"}
    with store.new_run(workflow="w") as recorder:
        started = recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="w", inputs={}))
        # `plan` ends on a tool call no later request of its shows (its turns ran out): its result still counts
        plan = recorder.emit(
            EventType.NODE_STARTED, node="plan", parent=started.seq, data=NodeStartedData(visit=1, attempt=1)
        )
        first = {"role": "assistant", "content": "", "tool_calls": [call("p1", "ls")]}
        _turn(recorder, "plan", plan.seq, [ask], first, None)
        # two branches of `code` run concurrently: their events interleave
        left_ask, right_ask = {"role": "user", "content": "left"}, {"role": "user", "content": "right"}
        left = {"role": "assistant", "content": "", "tool_calls": [call("l1", "a")]}
        right = {"role": "assistant", "content": "", "tool_calls": [call("r1", "b")]}
        for branch in ("code#0", "code#1"):
            recorder.emit(
                EventType.NODE_STARTED,
                node="code",
                parent=started.seq,
                data={"visit": 1, "attempt": 1, "branch": branch},
            )
        _turn(recorder, "code", plan.seq, [left_ask], left, "code#0")
        _turn(recorder, "code", plan.seq, [right_ask], right, "code#1")
        left_tool = {"role": "tool", "tool_call_id": "l1", "content": "ran l1"}
        right_tool = {"role": "tool", "tool_call_id": "r1", "content": "ran r1"}
        _turn(recorder, "code", plan.seq, [left_ask, left, left_tool], {"role": "assistant", "content": "L"}, "code#0")
        _turn(
            recorder, "code", plan.seq, [right_ask, right, right_tool], {"role": "assistant", "content": "R"}, "code#1"
        )
        recorder.finish("succeeded")
        run_id = recorder.run_id
    [record] = export_openai_messages(store, [run_id])
    plan_tool = {"role": "tool", "tool_call_id": "p1", "content": "ran p1"}
    assert record["messages"] == [
        ask, first, plan_tool,  # plan's conversation, its last result before what came next
        left_ask, left, right_ask, right,  # each branch's turns as they happened, none repeated
        {"role": "tool", "tool_call_id": "l1", "content": "ran l1"},
        {"role": "assistant", "content": "L"},
        {"role": "tool", "tool_call_id": "r1", "content": "ran r1"},
        {"role": "assistant", "content": "R"},
    ]  # fmt: skip
