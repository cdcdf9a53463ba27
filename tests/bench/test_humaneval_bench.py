"""graphs/bench/humaneval.yaml offline: the agent writes each function in the sandbox (scripted answers, three in
four right), the `humaneval` hook grades it with the sample grader's rules, every grading command in the trace."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from agentflow.bench import BenchOptions, BenchProgress, BenchRun, build_report, checkout_problems, load_bench
from agentflow.rewards import reward_hooks
from agentflow.traces import EventType, SandboxExecData, TraceStore

BENCH = Path(__file__).parents[2] / "graphs" / "bench" / "humaneval.yaml"


def test_the_shipped_humaneval_benchmark_grades_the_agents_solutions(humaneval: object, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    data = checkout_problems()
    assert data is not None
    bench = BenchRun(
        load_bench(BENCH, check_tasks=False), store, options=BenchOptions(limit=8, task_file=str(data), concurrency=2)
    )
    asyncio.run(bench.run())
    report = asyncio.run(build_report(store, bench.info.bench_run_id))
    # make_script.py answers every fourth task (by position) wrong: HumanEval/3 and HumanEval/7 of the first eight
    assert {task.task_id: task.correct for task in report.tasks} == {
        f"HumanEval/{i}": 0 if i % 4 == 3 else 1 for i in range(8)
    }
    assert report.pass_at_k == {1: 0.75}
    item = next(i for i in store.list_bench_items(bench.info.bench_run_id) if i.task_id == "HumanEval/3")
    events = store.load_trace(item.run_id).events
    reward = next(e.data for e in events if e.type is EventType.REWARD and e.data["hook"] == "humaneval")
    assert reward["value"] == 0 and reward["explanation"].startswith("failed")
    graded = [e.data_as(SandboxExecData) for e in events if e.type is EventType.SANDBOX_EXEC]
    assert any(d["by"] == "hook:humaneval" and d.get("sandbox") == "fresh" for d in graded)  # the grading exec


def test_the_hook_is_registered_for_every_process_through_its_entry_point() -> None:
    # a process that never imports agentflow.bench finds it through the `agentflow.reward_hook` entry point
    found = subprocess.run(
        [sys.executable, "-c", "from agentflow.rewards import reward_hooks; print(reward_hooks.get('humaneval'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "HumanEvalHook" in found.stdout
    assert "humaneval" in reward_hooks.names()


def test_a_benchmark_whose_models_have_no_price_reports_no_cost(humaneval: object, tmp_path: Path) -> None:
    # the shipped benchmark prices openai:gpt-4o-mini; offline its scripted model has no price: the cost is unknown,
    # not zero
    store = TraceStore(tmp_path / "store")
    data = checkout_problems()
    assert data is not None
    seen: list[BenchProgress] = []
    bench = BenchRun(
        load_bench(BENCH, check_tasks=False),
        store,
        options=BenchOptions(limit=2, task_file=str(data)),
        on_progress=seen.append,
    )
    asyncio.run(bench.run())
    report = asyncio.run(build_report(store, bench.info.bench_run_id))
    assert (report.cost, report.cost_per_success) == (None, None)
    assert all(task.cost is None for task in report.tasks)
    assert report.unpriced_models == ["scripted:scripted.script.json"]
    assert "cost n/a" in report.to_markdown()
    assert seen and seen[-1].cost is None
    # each run in the index: no cost either, and the humaneval scorer's verdict as its outcome
    rows = {info.run_id: info for info in store.list_runs()}
    items = store.list_bench_items(bench.info.bench_run_id)
    assert [(rows[i.run_id].cost, rows[i.run_id].outcome) for i in items] == [(None, i.outcome) for i in items]
    assert all(i.outcome is not None for i in items)
