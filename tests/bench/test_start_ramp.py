"""The bench's start ramp: runs go through their start one at a time, up to their first model or tool call."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

from agentflow.bench import BenchOptions, BenchRun, load_bench
from agentflow.bench._runner import StartRamp
from agentflow.traces import EventType, TraceStore

WORKFLOW = """
name: two_turns
state:
  question: {type: str, default: ""}
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:answers.script.json"}
start: ask
nodes:
  ask: {kind: agent, model: m, prompt: "{question}", max_turns: 1}
  again: {kind: agent, model: m, prompt: "Sure?", max_turns: 1, output: {answer: answer}}
edges:
  - {from: ask, to: again}
  - {from: again, to: END}
"""

BENCH = """
name: ramp
workflow: two_turns.yaml
tasks: {path: tasks.jsonl}
inputs: {question: "{question}"}
outcome: {hook: outcome, options: {mode: exact, key: answer, expected: "42"}}
concurrency: 8
"""


def test_the_next_start_waits_for_the_turn_to_end_or_the_hold_time() -> None:
    async def scenario() -> list[str]:
        ramp = StartRamp(hold_s=60.0)
        order: list[str] = []
        first = await ramp.enter()

        async def second() -> None:
            turn = await ramp.enter()
            order.append("second in")
            turn.end()

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.01)
        order.append("first ends")
        first.end()
        first.end()  # a second end changes nothing (the next run's turn is not ended by it)
        await waiting

        held = StartRamp(hold_s=0.01)
        await held.enter()  # never ended: the next run gets in after the hold time
        late = await asyncio.wait_for(held.enter(), timeout=10)
        late.end()
        order.append("in after the hold")
        return order

    assert asyncio.run(scenario()) == ["first ends", "second in", "in after the hold"]


def test_each_run_starts_only_after_the_run_before_it_called_its_model(tmp_path: Path) -> None:
    (tmp_path / "two_turns.yaml").write_text(WORKFLOW)
    script = {"responses": [{"content": "42", "latency_s": 0.05}, {"content": "42", "latency_s": 0.05}]}
    (tmp_path / "answers.script.json").write_text(json.dumps(script))
    tasks = [json.dumps({"id": f"t{i}", "question": f"q{i}"}) for i in range(8)]
    (tmp_path / "tasks.jsonl").write_text("\n".join(tasks) + "\n")
    (tmp_path / "ramp.yaml").write_text(BENCH)
    store = TraceStore(tmp_path / "store")
    bench = BenchRun(load_bench(tmp_path / "ramp.yaml"), store, options=BenchOptions(concurrency=8))
    bench._start_ramp = StartRamp(hold_s=600.0)  # only a model call ends a turn here, however slow the machine

    outcome = asyncio.run(bench.run())

    assert outcome.ran == 8
    items = store.list_bench_items(bench.info.bench_run_id)
    assert [item.outcome for item in items] == [1.0] * 8
    starts = []
    for item in items:
        events = store.load_trace(item.run_id).events
        started = next(e.ts for e in events if e.type is EventType.RUN_STARTED)
        first_call = next(e.ts for e in events if e.type is EventType.MODEL_REQUEST)
        starts.append((started, first_call))
    starts.sort()
    # All eight were in flight together (concurrency 8, 100 ms of model time each), yet each one's start came after
    # the one before it had sent its first model request: without the ramp they all start before anyone's call.
    for (_, previous_call), (started, _) in itertools.pairwise(starts):
        assert started >= previous_call
    last_call = max(call for _, call in starts)
    first_end = min(
        e.ts for item in items for e in store.load_trace(item.run_id).events if e.type is EventType.RUN_FINISHED
    )
    assert last_call < first_end
