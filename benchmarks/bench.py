"""Benchmark runs under model latency: how close `agentflow bench run` comes to the ideal wall time.

200 tasks, each a run of three model turns (three agent nodes in a row) against a scripted model that takes 200 ms
per answer, at concurrency 50. With nothing but the model's latency the bench would take
`tasks × turns × latency / concurrency` = 2.4 s; `efficiency` is that ideal over the measured wall time (target
>= 0.9). Everything else of a run is in the measured time: the run's trace hashed and written event by event, the
store's index and the bench tables updated per attempt, a sandbox lent from the warm pool for each run, the
outcome hook scoring each run.

    python benchmarks/bench.py [--tasks 200] [--concurrency 50] [--latency 0.2] [--json]

With --json it prints one object: tasks, turns, concurrency, latency_s, ideal_s, wall_s, runs_per_s, efficiency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from agentflow.bench import BenchOptions, BenchRun, build_report, load_bench
from agentflow.traces import TraceStore

TURNS = 3

WORKFLOW = """
name: three_turns
state:
  question: {type: str, default: ""}
  expected: {type: str, default: ""}
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:answers.script.yaml"}
start: one
nodes:
  one: {kind: agent, model: m, prompt: "{question}", max_turns: 1}
  two: {kind: agent, model: m, prompt: "Check it.", max_turns: 1}
  three: {kind: agent, model: m, prompt: "Answer.", max_turns: 1, output: {answer: answer}}
edges:
  - {from: one, to: two}
  - {from: two, to: three}
  - {from: three, to: END}
"""

BENCH = """
name: latency
workflow: three_turns.yaml
tasks: {path: tasks.jsonl}
inputs: {question: "{question}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: exact, key: answer, expected: "{expected}"}}
"""


def _write(folder: Path, tasks: int, latency: float) -> Path:
    (folder / "three_turns.yaml").write_text(WORKFLOW)
    script = {"responses": [{"content": "42", "latency_s": latency} for _ in range(TURNS)]}
    (folder / "answers.script.yaml").write_text(json.dumps(script))
    lines = [json.dumps({"id": f"t{i}", "question": f"q{i}", "expected": "42"}) for i in range(tasks)]
    (folder / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "latency.yaml").write_text(BENCH)
    return folder / "latency.yaml"


async def measure(tasks: int, concurrency: int, latency: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-") as tmp:
        bench_file = _write(Path(tmp), tasks, latency)
        store = TraceStore(Path(tmp) / "store")
        bench = BenchRun(load_bench(bench_file), store, options=BenchOptions(concurrency=concurrency))
        clock = time.perf_counter()
        outcome = await bench.run()
        wall = time.perf_counter() - clock
        report = await build_report(store, bench.info.bench_run_id)
        if report.correct != tasks or outcome.ran != tasks:
            raise SystemExit(f"the benchmark went wrong: {report.correct} of {tasks} correct")
    ideal = tasks * TURNS * latency / concurrency
    return {
        "tasks": tasks,
        "turns": TURNS,
        "concurrency": concurrency,
        "latency_s": latency,
        "ideal_s": round(ideal, 3),
        "wall_s": round(wall, 3),
        "runs_per_s": round(tasks / wall, 2),
        "efficiency": round(ideal / wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.tasks, args.concurrency, args.latency))
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['tasks']} tasks × {TURNS} turns at {args.latency * 1000:.0f} ms, concurrency "
            f"{args.concurrency}: {figures['wall_s']:.2f} s against an ideal {figures['ideal_s']:.2f} s, "
            f"{figures['runs_per_s']:.1f} runs/s, efficiency {figures['efficiency']:.1%} (target 90%)"
        )


if __name__ == "__main__":
    main()
