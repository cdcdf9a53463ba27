"""Per-node overhead of agentflow over a hand-written bare LangGraph graph.

The same 50-node linear workflow (each node adds 1 to a counter) runs (a) as a bare LangGraph StateGraph written by
hand and (b) through agentflow: YAML template, validation, tool nodes calling an in-process plugin tool, output
mappings, a sandbox, a hashed trace in a store, and a no-op reward hook (`noop`: it runs and records nothing) on
every node. The benchmark measures orchestration, not isolation: its pure counter plugin is declared `host: true`,
so it runs in the agentflow process (a plugin tool runs in the run's sandbox by default, one exec per call).
Both are timed in the same process, interleaved, and the medians per node are compared.

A straight run of nodes like this one runs as one LangGraph node (one superstep for the 50 nodes, see
``agentflow/runtime/_chains.py``), which is what ``agentflow_us_per_node`` and ``ratio`` measure. The same runs with
one LangGraph node per node (the graph a ``--resumable`` run uses, and what a node costs between routers, where
every node is its own superstep) are timed too, interleaved with the others: ``stepwise_us_per_node`` and
``stepwise_ratio``.

    python benchmarks/overhead.py [--nodes 50] [--runs 30] [--json]

With --json it prints one object: bare_us_per_node, agentflow_us_per_node, ratio (target: ratio <= 1.3),
stepwise_us_per_node, stepwise_ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

import yaml
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from agentflow.runtime import compile_workflow, run_workflow
from agentflow.traces import TraceStore

PLUGIN = '''
def increment(x: int) -> int:
    """Add one."""
    return x + 1
'''


class CounterState(TypedDict):
    x: int


def bare_graph(nodes: int) -> Any:
    builder: Any = StateGraph(CounterState)

    def make(index: int) -> Any:
        async def node(state: CounterState, config: RunnableConfig) -> dict[str, int]:
            return {"x": state["x"] + 1}

        node.__name__ = f"n{index}"
        return node

    for index in range(nodes):
        builder.add_node(f"n{index}", make(index))
    builder.add_edge(START, "n0")
    for index in range(nodes - 1):
        builder.add_edge(f"n{index}", f"n{index + 1}")
    builder.add_edge(f"n{nodes - 1}", END)
    return builder.compile()


def agentflow_workflow(folder: Path, nodes: int) -> Path:
    (folder / "plugins").mkdir()
    (folder / "plugins" / "counter.py").write_text(PLUGIN)
    spec = {
        "name": "linear",
        "state": {"x": {"type": "int", "default": 0}},
        "tools": [{"ref": "plugins/counter.py:increment", "host": True}],  # orchestration only: see the docstring
        "start": "n0",
        "nodes": {
            f"n{i}": {"kind": "tool", "tool": "increment", "args": {"x": "{x}"}, "output": {"x": "result"}}
            for i in range(nodes)
        },
        "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(nodes - 1)],
        "end": [f"n{nodes - 1}"],
        "rewards": [{"hook": "noop", "on": "node"}],
    }
    path = folder / "linear.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def measure(nodes: int, runs: int) -> dict[str, Any]:
    graph = bare_graph(nodes)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = agentflow_workflow(folder, nodes)
        compiled = compile_workflow(path)
        stepwise = compile_workflow(path)
        stepwise.graph = stepwise.stepwise_graph  # one LangGraph node per node
        store = TraceStore(folder / ".agentflow")
        # warm every path (imports, caches, the sandbox probe)
        assert (await graph.ainvoke({"x": 0}))["x"] == nodes
        for workflow in (compiled, stepwise):
            warm = await run_workflow(workflow, store=store)
            assert warm.succeeded, warm.error
            assert warm.final_state["x"] == nodes
        bare_s: list[float] = []
        agentflow_s: list[float] = []
        stepwise_s: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            await graph.ainvoke({"x": 0})
            bare_s.append(time.perf_counter() - started)
            for workflow, times in ((compiled, agentflow_s), (stepwise, stepwise_s)):
                started = time.perf_counter()
                result = await run_workflow(workflow, store=store)
                times.append(time.perf_counter() - started)
                assert result.succeeded
                assert result.final_state["x"] == nodes
        events = len(store.load_trace(result.run_id).events)
    bare_us = statistics.median(bare_s) / nodes * 1e6
    agentflow_us = statistics.median(agentflow_s) / nodes * 1e6
    stepwise_us = statistics.median(stepwise_s) / nodes * 1e6
    return {
        "nodes": nodes,
        "runs": runs,
        "events_per_run": events,
        "bare_us_per_node": round(bare_us, 1),
        "agentflow_us_per_node": round(agentflow_us, 1),
        "ratio": round(agentflow_us / bare_us, 3),
        "stepwise_us_per_node": round(stepwise_us, 1),
        "stepwise_ratio": round(stepwise_us / bare_us, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.nodes, args.runs))
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{args.nodes}-node linear workflow, median of {args.runs} runs each")
        print(f"  bare LangGraph     {figures['bare_us_per_node']:9.1f} us/node")
        events = figures["events_per_run"]
        print(f"  agentflow          {figures['agentflow_us_per_node']:9.1f} us/node  ({events} events per run)")
        print(f"  ratio              {figures['ratio']:9.3f}  (target <= 1.3)")
        print(f"  stepwise           {figures['stepwise_us_per_node']:9.1f} us/node  (one LangGraph node per node)")
        print(f"  stepwise ratio     {figures['stepwise_ratio']:9.3f}")


if __name__ == "__main__":
    main()
