"""Offline re-grading of stored (native and imported) traces: hooks, checkpoints, passes, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentflow.cli import run_cli
from agentflow.errors import ConfigError
from agentflow.grading import evaluate_checkpoints, grade_runs, load_checkpoints
from agentflow.traces import EventType, TraceStore
from agentflow.traces._import import import_openai_messages


def _call(index: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"c{index}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


RECORD: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You answer questions with tools."},
        {"role": "user", "content": "What is 6 times 7?"},
        {"role": "assistant", "content": "", "tool_calls": [_call(1, "search", {"query": "six times seven"})]},
        {"role": "tool", "tool_call_id": "c1", "content": "no results"},
        {"role": "assistant", "content": "", "tool_calls": [_call(2, "python", {"code": "print(6*7)"})]},
        {"role": "tool", "tool_call_id": "c2", "content": "42"},
        {"role": "assistant", "content": "The answer is 42."},
    ],
    "question": "What is 6 times 7?",
    "ground_truth": "42",
    "answer_text": "The answer is 42.",
    "step_labels": {"2": 0, "4": 1, "6": 1},
    "total_index": 0,
}

CHECKPOINTS = """
checkpoints:
  - {id: searched, tools: [search], args: {query: {contains: seven}}}
  - {id: computed, tools: [python], args: {code: {regex: "6\\\\s*\\\\*\\\\s*7"}}}
  - {id: computed_twice, tools: [python]}
  - {id: answer, answer_check: {type: numeric, expected: 42, tolerance: 0.01}}
  - {id: words, axis: answer, answer_check: {type: keyword, keywords: [answer, forty, "42"], min_matches: 2}}
  - {id: verified, verifier: {cmd: [python3, -c, "import sys; sys.exit(0 if '42' in sys.stdin.read() else 1)"]}}
ordering: [[computed, searched], [searched, answer]]
efficiency: {reference_tool_calls: 1, penalty_per_extra_call: 0.1, max_tool_calls: 5}
"""


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    return TraceStore(tmp_path / "store")


def test_import_makes_gradeable_runs_and_skips_malformed_lines_by_number(tmp_path: Path, store: TraceStore) -> None:
    source = tmp_path / "trajectories.jsonl"
    broken_tool = {
        **RECORD,
        "messages": [*RECORD["messages"][:3], {"role": "tool", "tool_call_id": "zz", "content": ""}],
    }
    source.write_text(
        "\n".join(
            [json.dumps(RECORD), "{not json", json.dumps({"messages": []}), json.dumps(broken_tool), json.dumps(RECORD)]
        )
        + "\n"
    )
    report = import_openai_messages(store, source)
    assert len(report.run_ids) == 2
    assert [line for line, _ in report.skipped] == [2, 3, 4]
    assert "answers no earlier tool call" in report.skipped[2][1]
    trace = store.load_trace(report.run_ids[0])
    assert trace.ok
    assert trace.summary().status == "imported"
    responses = [e for e in trace.events if e.type is EventType.MODEL_RESPONSE]
    assert [e.data["message_index"] for e in responses] == [2, 4, 6]
    assert trace.events[0].data["metadata"]["step_labels"] == {"2": 0, "4": 1, "6": 1}
    assert [r.status for r in store.list_runs()] == ["imported", "imported"]


async def test_checkpoints_report_every_score(tmp_path: Path, store: TraceStore) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(RECORD) + "\n")
    [run_id] = import_openai_messages(store, source).run_ids
    spec_file = tmp_path / "cp.yaml"
    spec_file.write_text(CHECKPOINTS)
    events = store.load_trace(run_id).events
    report = await evaluate_checkpoints(load_checkpoints(spec_file), events)
    passed = {r.id: r.passed for r in report.results}
    # each tool call satisfies one checkpoint: the single python call cannot serve `computed_twice` too
    assert passed == {
        "searched": True,
        "computed": True,
        "computed_twice": False,
        "answer": True,
        "words": True,
        "verified": True,
    }
    seqs = {r.id: r.event_seq for r in report.results}
    assert seqs["searched"] < seqs["computed"] < seqs["answer"]
    assert report.axis_pass_rates == {"tool": pytest.approx(2 / 3), "answer": 1.0, "verifier": 1.0}
    assert report.ordering_score == 0.5  # computed came after searched, searched before the answer
    assert (report.tool_calls, report.penalty, report.overthinking) == (2, pytest.approx(0.1), 2.0)
    assert report.pqs == pytest.approx((2 / 3 + 1 + 1) / 3 * 0.9)


async def test_over_the_budget_costs_everything(tmp_path: Path, store: TraceStore) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(RECORD) + "\n")
    [run_id] = import_openai_messages(store, source).run_ids
    spec_file = tmp_path / "cp.yaml"
    spec_file.write_text(
        "checkpoints: [{id: a, tools: [python]}]\nefficiency: {reference_tool_calls: 1, penalty_per_extra_call: 0.01,"
        " max_tool_calls: 1}\n"
    )
    report = await evaluate_checkpoints(load_checkpoints(spec_file), store.load_trace(run_id).events)
    assert (report.penalty, report.pqs) == (1.0, 0.0)


def test_bad_checkpoint_files_are_config_errors(tmp_path: Path) -> None:
    spec_file = tmp_path / "cp.yaml"
    spec_file.write_text("checkpoints: [{id: a, tools: [x], answer_check: {type: exact, expected: 1}}]\n")
    with pytest.raises(ConfigError, match="exactly one of"):
        load_checkpoints(spec_file)
    spec_file.write_text("checkpoints: [{id: a, tools: [x]}]\nordering: [[a, b]]\n")
    with pytest.raises(ConfigError, match="unknown checkpoints: b"):
        load_checkpoints(spec_file)


async def test_grading_passes_keep_old_rewards(tmp_path: Path, store: TraceStore) -> None:
    source = tmp_path / "two.jsonl"
    source.write_text(json.dumps(RECORD) + "\n" + json.dumps(RECORD) + "\n")
    run_ids = import_openai_messages(store, source).run_ids
    first = await grade_runs(store, run_ids, hooks=["exit_code", "constant:run"])
    rewards = first.rewards[run_ids[0]]
    assert [(r.hook, r.kind) for r in rewards] == [("exit_code", "step"), ("exit_code", "step"), ("constant", "run")]
    assert [r.value for r in rewards if r.hook == "exit_code"] == [1.0, 1.0]
    second = await grade_runs(store, run_ids[:1], hooks=["exit_code"], mode="overwrite")
    assert second.grading_pass.pass_id != first.grading_pass.pass_id
    current = store.list_rewards(run_ids[0])
    assert {(r.pass_id, r.hook) for r in current} == {
        (second.grading_pass.pass_id, "exit_code"),
        (first.grading_pass.pass_id, "constant"),
    }
    assert len(store.list_rewards(run_ids[0], include_superseded=True)) == 5
    assert len(store.list_rewards(run_ids[1])) == 3  # not part of the overwriting pass
    # no hooks named: each run is graded with its workflow's rewards, which an imported trace does not name
    own = await grade_runs(store, run_ids)
    assert set(own.failures) == set(run_ids)
    assert all("names no workflow file" in why for why in own.failures.values())


def test_cli_grade_all_with_checkpoints(tmp_path: Path, store: TraceStore, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(RECORD) + "\n")
    assert run_cli(["traces", "import", str(source), "--store", str(store.root), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["imported"] == 1
    spec_file = tmp_path / "cp.yaml"
    spec_file.write_text(CHECKPOINTS)
    code = run_cli(
        [
            "grade",
            "--all",
            "--hooks",
            "exit_code",
            "--checkpoints",
            str(spec_file),
            "--store",
            str(store.root),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    [run] = result["runs"].values()
    assert run["checkpoints"]["pqs"] == pytest.approx((2 / 3 + 1 + 1) / 3 * 0.9)
    assert {r["hook"] for r in run["rewards"]} == {"exit_code", "checkpoints"}
    assert run_cli(["grade", "--store", str(store.root)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1]\n")
    assert run_cli(["traces", "import", str(bad), "--store", str(store.root)]) == 1
    assert "bad.jsonl:1: skipped" in capsys.readouterr().out
