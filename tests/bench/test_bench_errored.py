"""Errored runs in a benchmark: a model provider failing some calls (the real OpenAI SDK against the loopback
server) makes those runs errored; they are retried, reported apart, and never count as failures in pass@k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentflow.bench import BenchProgress, BenchRun, build_report, load_bench
from agentflow.traces import TraceStore, summarize
from tests.support.openai_server import OpenAIServer, Reply, openai_server  # noqa: F401 - the fixture

WORKFLOW = """
name: answer
state:
  question: {type: str, default: ""}
  answer: {type: str, default: ""}
models:
  m: {model: "openai:test-model", max_retries: 0}
start: think
nodes:
  think: {kind: agent, model: m, prompt: "{question}", max_turns: 1, output: {answer: answer}}
edges:
  - {from: think, to: END}
"""

BENCH = """
name: answers
workflow: answer.yaml
tasks: {path: tasks.jsonl}
inputs: {question: "What is {n}?"}
outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}
concurrency: 1
retry_errored: 2
prices:
  openai:test-model: {input_per_mtok: 2.0, output_per_mtok: 8.0}
"""


async def test_errored_runs_are_retried_and_left_out_of_pass_at_k(
    tmp_path: Path,
    openai_server: OpenAIServer,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in openai_server.env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "answer.yaml").write_text(
        WORKFLOW.replace(
            '  answer: {type: str, default: ""}',
            '  answer: {type: str, default: ""}\n  expected: {type: int, default: 0}',
        )
    )
    tasks = [json.dumps({"id": f"q{i}", "n": i, "expected": i}) for i in range(10)]
    (tmp_path / "tasks.jsonl").write_text("\n".join(tasks) + "\n")
    (tmp_path / "answers.yaml").write_text(
        BENCH.replace(
            'inputs: {question: "What is {n}?"}', 'inputs: {question: "What is {n}?", expected: "{expected}"}'
        )
    )
    outage = Reply.error(500, "overloaded", headers={"x-should-retry": "false"})
    # one run at a time, so replies go to the tasks in order: q0 fails once then answers; q5 answers wrong;
    # q9's provider fails every attempt (1 + 2 retries)
    replies = [outage, Reply.text("0")]
    replies += [Reply.text("99" if i == 5 else str(i)) for i in range(1, 9)]
    replies += [outage, outage, outage]
    openai_server.queue(*replies)

    store = TraceStore(tmp_path / "store")
    seen: list[BenchProgress] = []
    bench = BenchRun(load_bench(tmp_path / "answers.yaml"), store, on_progress=seen.append)
    await bench.run()
    assert openai_server.pending == 0 and len(openai_server.requests) == len(replies)
    attempts = [(i.task_id, i.attempt, i.status) for i in store.list_bench_items(bench.info.bench_run_id)]
    assert [a for a in attempts if a[0] in ("q0", "q5", "q9")] == [
        ("q0", 1, "errored"),
        ("q0", 2, "succeeded"),
        ("q5", 1, "succeeded"),
        ("q9", 1, "errored"),
        ("q9", 2, "errored"),
        ("q9", 3, "errored"),
    ]
    report = await build_report(store, bench.info.bench_run_id)
    assert (report.finished, report.scored, report.correct, report.errored) == (10, 9, 8, 1)
    assert report.pass_at_k == {1: pytest.approx(8 / 9)}  # q9 has no verdict, q5 is the one failure
    assert report.retried == 3
    # cost: every model call's tokens at the benchmark's prices, the same live (progress) and in the report
    items = store.list_bench_items(bench.info.bench_run_id)
    summaries = [summarize(store.load_trace(i.run_id).events) for i in items]
    expected_cost = sum(s.tokens_in * 2.0 / 1e6 + s.tokens_out * 8.0 / 1e6 for s in summaries)
    assert expected_cost > 0
    assert report.cost == pytest.approx(expected_cost)
    assert seen[-1].cost == pytest.approx(expected_cost) and seen[-1].done == 10
    # the runs index has each run's own cost and outcome, from its trace alone: an attempt whose every call failed
    # has no cost (nothing was answered, so nothing was priced), and an errored one no outcome
    rows = {info.run_id: info for info in store.list_runs(limit=100)}
    for item, summary in zip(items, summaries, strict=True):
        row = rows[item.run_id]
        answered = summary.tokens_in * 2.0 / 1e6 + summary.tokens_out * 8.0 / 1e6 if summary.tokens else None
        assert (row.cost, row.outcome) == (pytest.approx(answered), item.outcome), item
    assert [rows[i.run_id].outcome for i in items if i.task_id == "q5"] == [0.0]
    assert all(rows[i.run_id].outcome == 1.0 for i in items if i.status == "succeeded" and i.task_id != "q5")
    assert sum(rows[i.run_id].cost or 0.0 for i in items) == pytest.approx(report.cost)
    errored_task = next(task for task in report.tasks if task.task_id == "q9")
    assert (errored_task.samples, errored_task.errored, errored_task.pass_at_k) == (0, 1, {})
