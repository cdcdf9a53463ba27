"""`agentflow bench run --executor ray` measured against the local executor when runs are latency-bound.

400 tasks, each a run of one model turn against a scripted model that answers after 200 ms, at concurrency 50 in
total, with (a) the local executor, (b) Ray with one node, (c) Ray with two nodes, both on this machine (started
with ``ray.cluster_utils.Cluster``, one CPU each). Each figure is ``BenchRun.run()`` once the executor is started
(``ray_workers_start_s``: starting the bench workers, one process per node that imports agentflow and unpacks the
benchmark, paid once per bench run; the local executor's start is its warm pool's first sandbox); for Ray it
includes the driver appending every run the workers ship back (the embedded folder store). ``ray_vs_local`` =
ray2_runs_per_s / local_runs_per_s (target >= 0.9). ``ray_overhead_ms_per_task``: 20 tasks without latency one at a
time, (Ray two nodes wall - local wall) / 20, what the round trip to a worker adds to one attempt.

    python benchmarks/distributed.py [--tasks 400] [--concurrency 50] [--latency 0.2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from agentflow.bench import BenchExecutor, BenchOptions, BenchRun, LocalExecutor, RayExecutor, load_bench
from agentflow.traces import TraceStore

WORKFLOW = """
name: one_turn
state:
  question: {type: str, default: ""}
  expected: {type: str, default: ""}
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:answers.script.yaml"}
start: ask
nodes:
  ask: {kind: agent, model: m, prompt: "{question}", max_turns: 1, output: {answer: answer}}
edges:
  - {from: ask, to: END}
"""

BENCH = """
name: distributed
workflow: one_turn.yaml
tasks: {path: tasks.jsonl}
inputs: {question: "{question}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: exact, key: answer, expected: "{expected}"}}
"""

SERIAL_TASKS = 20
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


def _write(folder: Path, tasks: int, latency: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "one_turn.yaml").write_text(WORKFLOW)
    (folder / "answers.script.yaml").write_text(json.dumps({"responses": [{"content": "42", "latency_s": latency}]}))
    lines = [json.dumps({"id": f"t{i}", "question": f"q{i}", "expected": "42"}) for i in range(tasks)]
    (folder / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "bench.yaml").write_text(BENCH)
    return folder / "bench.yaml"


def _wall(bench_file: Path, store: Path, executor: BenchExecutor, concurrency: int) -> tuple[float, float]:
    """The wall time of the bench run once its workers are up, and the time they took to start."""
    bench = BenchRun(
        load_bench(bench_file), TraceStore(store), options=BenchOptions(concurrency=concurrency), executor=executor
    )

    async def timed() -> tuple[float, float]:
        clock = time.perf_counter()
        await executor.start(bench)  # Ray: its workers; local: the warm pool's first sandbox
        started = time.perf_counter()
        outcome = await bench.run()
        statuses = {item.status for item in outcome.items}
        assert statuses == {"succeeded"}, statuses
        return time.perf_counter() - started, started - clock

    return asyncio.run(timed())


def _on_cluster(nodes: int, measure: Any) -> Any:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        return measure()
    finally:
        ray.shutdown()
        cluster.shutdown()


def run(tasks: int, concurrency: int, latency: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentflow-distributed-") as folder:
        root = Path(folder)
        main = _write(root / "main", tasks, latency)
        serial = _write(root / "serial", SERIAL_TASKS, 0.0)
        local_wall, _ = _wall(main, root / "local", LocalExecutor(), concurrency)
        local_serial, _ = _wall(serial, root / "local-serial", LocalExecutor(), 1)
        ray1_wall, _ = _on_cluster(1, lambda: _wall(main, root / "ray1", RayExecutor(), concurrency))

        def two_nodes() -> tuple[tuple[float, float], float]:
            measured = _wall(main, root / "ray2", RayExecutor(), concurrency)
            return measured, _wall(serial, root / "ray2-serial", RayExecutor(), 1)[0]

        (ray2_wall, startup), ray2_serial = _on_cluster(2, two_nodes)
    local_rate, ray2_rate = tasks / local_wall, tasks / ray2_wall
    return {
        "tasks": tasks,
        "concurrency": concurrency,
        "latency_s": latency,
        "ideal_s": round(tasks * latency / concurrency, 3),
        "local_wall_s": round(local_wall, 3),
        "ray1_wall_s": round(ray1_wall, 3),
        "ray2_wall_s": round(ray2_wall, 3),
        "local_runs_per_s": round(local_rate, 1),
        "ray1_runs_per_s": round(tasks / ray1_wall, 1),
        "ray2_runs_per_s": round(ray2_rate, 1),
        "ray_vs_local": round(ray2_rate / local_rate, 3),
        "ray_workers_start_s": round(startup, 3),
        "ray_overhead_ms_per_task": round((ray2_serial - local_serial) / SERIAL_TASKS * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = run(args.tasks, args.concurrency, args.latency)
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{figures['tasks']} tasks, model latency {figures['latency_s'] * 1000:.0f} ms, concurrency {args.concurrency}"
    )
    print(f"  ideal {figures['ideal_s']} s")
    for key in ("local", "ray1", "ray2"):
        print(f"  {key}: {figures[f'{key}_wall_s']} s, {figures[f'{key}_runs_per_s']} runs/s")
    print(f"  ray_vs_local {figures['ray_vs_local']}, overhead {figures['ray_overhead_ms_per_task']} ms per task")


if __name__ == "__main__":
    main()
