"""`agentflow bench run` measured: throughput under model latency, and HumanEval against inspect_ai.

**Throughput under latency.**
200 tasks, each a run of three model turns (three agent nodes in a row) against a scripted model that takes 200 ms
per answer, at concurrency 50. With nothing but the model's latency the bench would take
`tasks × turns × latency / concurrency` = 2.4 s; `efficiency` is that ideal over the measured wall time (target
>= 0.9). Everything else of a run is in the measured time: the run's trace hashed and written event by event, the
store's index and the bench tables updated per attempt, a sandbox lent from the warm pool for each run, the
outcome hook scoring each run.

**Against inspect_ai on the same work.** HumanEval's 164 tasks, each answered with its canonical solution at no
latency (our scripted model; inspect_ai: a solver that sets the completion, with its mockllm model), scored by
running `prompt + completion + test + check(entry_point)` in a sandbox: ours the local sandbox (namespaces:
isolated), inspect_ai's its `local` sandbox (a plain subprocess: not isolated), both at 8 at a time.
`vs_inspect_ratio` = agentflow's wall time over inspect_ai's (target <= 1.0). inspect_ai is installed for this
benchmark only (`pip install 'agentflow[compare]'`), never imported by agentflow.

    python benchmarks/bench.py [--tasks 200] [--concurrency 50] [--latency 0.2] [--humaneval-limit N] [--json]

With --json it prints one object: tasks, turns, concurrency, latency_s, ideal_s, wall_s, runs_per_s, efficiency,
and humaneval_tasks, agentflow_s, inspect_s, vs_inspect_ratio (null, with inspect_skipped saying why, when
inspect_ai or the HumanEval data is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
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


HUMANEVAL_WORKFLOW = """
name: humaneval_complete
state:
  prompt: {type: str, default: ""}
  test: {type: str, default: ""}
  entry_point: {type: str, default: ""}
  completion: {type: str, default: ""}
models:
  m: {model: "scripted:canonical.script.json"}
start: complete
nodes:
  complete: {kind: agent, model: m, prompt: "{prompt}", max_turns: 1, output: {completion: answer}}
edges:
  - {from: complete, to: END}
"""

HUMANEVAL_BENCH = """
name: humaneval_completions
workflow: complete.yaml
tasks: {source: humaneval, path: HumanEval.jsonl}
inputs: {prompt: "{prompt}", test: "{test}", entry_point: "{entry_point}"}
outcome: {hook: humaneval, options: {completion_key: completion}}
concurrency: 8
"""


def _humaneval_tasks(limit: int | None) -> list[dict[str, str]] | None:
    from agentflow.bench import checkout_problems

    data = checkout_problems()
    if data is None:
        return None
    with gzip.open(data, "rt", encoding="utf-8") as lines:
        tasks = [json.loads(line) for line in lines if line.strip()]
    return tasks[:limit] if limit else tasks


async def measure_agentflow_humaneval(tasks: list[dict[str, str]]) -> float:
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-he-") as tmp:
        folder = Path(tmp)
        (folder / "complete.yaml").write_text(HUMANEVAL_WORKFLOW)
        answers = [{"when": t["prompt"], "responses": [{"content": t["canonical_solution"]}]} for t in tasks]
        (folder / "canonical.script.json").write_text(json.dumps({"conversations": answers}))
        (folder / "HumanEval.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
        (folder / "he.yaml").write_text(HUMANEVAL_BENCH)
        store = TraceStore(folder / "store")
        bench = BenchRun(load_bench(folder / "he.yaml"), store)
        clock = time.perf_counter()
        await bench.run()
        wall = time.perf_counter() - clock
        report = await build_report(store, bench.info.bench_run_id)
        if report.correct != len(tasks):
            raise SystemExit(f"agentflow graded {report.correct} of {len(tasks)} canonical solutions correct")
    return wall


def measure_inspect_humaneval(tasks: list[dict[str, str]]) -> float:
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
    from inspect_ai.solver import Generate, TaskState, solver
    from inspect_ai.util import sandbox

    @solver
    def canonical() -> Any:
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            state.output.completion = state.metadata["canonical_solution"]
            return state

        return solve

    @scorer(metrics=[accuracy()])
    def run_tests() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            task = state.metadata
            program = f"{task['prompt']}{state.output.completion}\n{task['test']}\ncheck({task['entry_point']})"
            try:
                passed = (await sandbox().exec(["python3", "-c", program], timeout=3)).success
            except TimeoutError:
                passed = False
            return Score(value=CORRECT if passed else INCORRECT)

        return score

    samples = [Sample(id=t["task_id"], input=t["prompt"], metadata=t) for t in tasks]
    task = Task(dataset=samples, solver=canonical(), scorer=run_tests(), sandbox="local")
    with tempfile.TemporaryDirectory(prefix="inspect-logs-") as logs:
        clock = time.perf_counter()
        (log,) = inspect_eval(task, model="mockllm/model", display="none", log_dir=logs, max_samples=8)
        wall = time.perf_counter() - clock
    accuracy_value = log.results.scores[0].metrics["accuracy"].value if log.results else None
    if accuracy_value != 1.0:
        raise SystemExit(f"inspect_ai graded the canonical solutions at accuracy {accuracy_value}")
    return wall


def compare_with_inspect(limit: int | None) -> dict[str, Any]:
    import importlib.util

    tasks = _humaneval_tasks(limit)
    skipped = (
        "no shared/data/humaneval beside the checkout"
        if tasks is None
        else "inspect_ai is not installed (pip install 'agentflow[compare]')"
        if importlib.util.find_spec("inspect_ai") is None
        else None
    )
    if skipped is not None or tasks is None:
        return {
            "humaneval_tasks": 0,
            "agentflow_s": None,
            "inspect_s": None,
            "vs_inspect_ratio": None,
            "inspect_skipped": skipped,
        }
    ours = asyncio.run(measure_agentflow_humaneval(tasks))
    theirs = measure_inspect_humaneval(tasks)
    return {
        "humaneval_tasks": len(tasks),
        "agentflow_s": round(ours, 3),
        "inspect_s": round(theirs, 3),
        "vs_inspect_ratio": round(ours / theirs, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--humaneval-limit", type=int, default=None, help="only the first N HumanEval tasks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.tasks, args.concurrency, args.latency))
    figures.update(compare_with_inspect(args.humaneval_limit))
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['tasks']} tasks × {TURNS} turns at {args.latency * 1000:.0f} ms, concurrency "
            f"{args.concurrency}: {figures['wall_s']:.2f} s against an ideal {figures['ideal_s']:.2f} s, "
            f"{figures['runs_per_s']:.1f} runs/s, efficiency {figures['efficiency']:.1%} (target 90%)"
        )
        if figures["vs_inspect_ratio"] is None:
            print(f"against inspect_ai: skipped ({figures['inspect_skipped']})")
        else:
            print(
                f"HumanEval {figures['humaneval_tasks']} tasks, canonical answers, graded in a sandbox: agentflow "
                f"{figures['agentflow_s']:.2f} s (isolated), inspect_ai {figures['inspect_s']:.2f} s (its local "
                f"sandbox), ratio {figures['vs_inspect_ratio']:.2f} (target 1.0)"
            )


if __name__ == "__main__":
    main()
