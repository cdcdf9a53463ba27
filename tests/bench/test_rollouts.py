"""`bench run --rollouts K --fork-at WHERE`: rollout groups forked from each pair's run, outside pass@k."""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path

import pytest

from agentflow.bench import BenchOptions, BenchRun, build_report, load_bench
from agentflow.traces import TraceStore
from tests.cli.test_cli import agentflow, assert_one_line_error

# the second node guesses: the answer or -1, so the continuations forked after `compute` differ in outcome
WORKFLOW = """
name: guess
state:
  a: {type: int, default: 0}
  b: {type: int, default: 0}
  expected: {type: int, default: 0}
  answer: {type: str, default: ""}
tools: [python]
start: compute
nodes:
  compute: {kind: tool, tool: python, args: {code: "print({a} + {b})"}, output: {answer: result.stdout}}
  guess:
    kind: tool
    tool: python
    args: {code: "import random; print(random.choice([{a} + {b}, -1]))"}
    output: {answer: result.stdout}
edges:
  - {from: compute, to: guess}
  - {from: guess, to: END}
"""

BENCH = """
name: guessing
workflow: guess.yaml
tasks: {path: tasks.jsonl}
inputs: {a: "{a}", b: "{b}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}
epochs: 2
seed: 3
concurrency: 2
"""

TASKS = ['{"id": "t1", "a": 1, "b": 2, "expected": 3}', '{"id": "t2", "a": 20, "b": 22, "expected": 42}']


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    (tmp_path / "guess.yaml").write_text(WORKFLOW)
    (tmp_path / "tasks.jsonl").write_text("\n".join(TASKS) + "\n")
    path = tmp_path / "guessing.yaml"
    path.write_text(BENCH)
    return path


def test_rollout_groups_are_reported_with_their_spread_and_leave_pass_at_k_alone(
    bench_file: Path, tmp_path: Path
) -> None:
    ran = agentflow("bench", "run", str(bench_file), "--rollouts", "3", "--fork-at", "1", "--json", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    store = TraceStore(tmp_path / ".agentflow")
    items = store.list_bench_items(report["bench_run_id"])
    assert len(items) == 4 and report["scored"] == 4  # the continuations are no attempts
    # pass@1 is the mean over tasks of the share of correct epochs: the pairs' own runs only
    by_task = {task: [i.outcome for i in items if i.task_id == task] for task in ("t1", "t2")}
    expected = statistics.fmean(sum(value == 1.0 for value in values) / 2 for values in by_task.values())
    assert report["pass_at_k"]["pass@1"] == pytest.approx(expected)

    groups = report["rollouts"]
    assert sorted((g["task_id"], g["epoch"]) for g in groups) == [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]
    for group in groups:
        assert group["fork_step"] == 1 and len(group["run_ids"]) == 3
        parent = next(i for i in items if i.run_id == group["run_id"])
        assert group["parent_outcome"] == parent.outcome
        outcomes = group["outcomes"]
        assert all(value in (0.0, 1.0) for value in outcomes)
        assert group["mean"] == pytest.approx(statistics.fmean(outcomes))
        assert group["std"] == pytest.approx(statistics.pstdev(outcomes))
        assert (group["min"], group["max"]) == (min(outcomes), max(outcomes))
        assert group["solved"] == pytest.approx(sum(outcomes) / 3)
        assert group["succeeded"] == 1.0
        for index, run_id in enumerate(group["run_ids"]):
            started = store.load_trace(run_id).events[0].data
            assert (started["forked_from"]["run_id"], started["fork_index"]) == (parent.run_id, index)
            assert started["fork_group"] == group["fork_group"] and "bench" not in started
    listed = agentflow("runs", "--fork-group", groups[0]["fork_group"], "--json", cwd=tmp_path)
    assert sorted(run["run_id"] for run in json.loads(listed.stdout)["runs"]) == sorted(groups[0]["run_ids"])

    shown = agentflow("bench", "report", report["bench_run_id"], cwd=tmp_path)
    assert "Rollout groups (4; not counted in pass@k)" in shown.stdout
    assert "| t1 | 0 | 1 | 3 |" in shown.stdout


def test_each_step_forks_before_every_step_and_first_error_needs_an_error(bench_file: Path, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    options = BenchOptions(task_ids=["t1"], epochs=1, rollouts=2, fork_at="each_step")
    bench = BenchRun(load_bench(bench_file), store, options=options)
    outcome = asyncio.run(bench.run())
    assert outcome.rollout_problems == []
    report = asyncio.run(build_report(store, bench.info.bench_run_id))
    assert [(group.fork_step, len(group.run_ids)) for group in report.rollouts] == [(0, 2), (1, 2)]

    # no tool failed and no step reward was negative: first_error finds no fork point, so no group
    options = BenchOptions(task_ids=["t1"], epochs=1, rollouts=2, fork_at="first_error")
    bench = BenchRun(load_bench(bench_file), store, options=options)
    asyncio.run(bench.run())
    assert asyncio.run(build_report(store, bench.info.bench_run_id)).rollouts == []


def test_a_fork_point_that_is_not_one_is_a_usage_error(bench_file: Path, tmp_path: Path) -> None:
    line = assert_one_line_error(
        agentflow("bench", "run", str(bench_file), "--rollouts", "2", "--fork-at", "later", cwd=tmp_path), 2
    )
    assert "--fork-at 'later'" in line
