"""Per-node overhead of agentflow over a hand-written bare LangGraph graph.

The same 50-node linear workflow (each node adds 1 to a counter) runs (a) as a bare LangGraph StateGraph written by
hand and (b) through agentflow: YAML template, validation, tool nodes calling an in-process plugin tool, output
mappings, a sandbox, a hashed trace in a store, and a no-op reward hook (`noop`: it runs and records nothing) on
every node. The benchmark measures orchestration, not isolation: its pure counter plugin is declared `host: true`,
so it runs in the agentflow process (a plugin tool runs in the run's sandbox by default, one exec per call).
Both are timed in the same process, interleaved, and the medians per node are compared.

    python benchmarks/overhead.py [--nodes 50] [--runs 30] [--json]

With --json it prints one object: bare_us_per_node, agentflow_us_per_node, ratio (target: ratio <= 1.3).
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
        compiled = compile_workflow(agentflow_workflow(folder, nodes))
        store = TraceStore(folder / ".agentflow")
        # warm both paths (imports, caches, the sandbox probe)
        assert (await graph.ainvoke({"x": 0}))["x"] == nodes
        warm = await run_workflow(compiled, store=store)
        assert warm.succeeded, warm.error
        assert warm.final_state["x"] == nodes
        bare_s: list[float] = []
        agentflow_s: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            await graph.ainvoke({"x": 0})
            bare_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = await run_workflow(compiled, store=store)
            agentflow_s.append(time.perf_counter() - started)
            assert result.succeeded
        events = len(store.load_trace(result.run_id).events)
    bare_us = statistics.median(bare_s) / nodes * 1e6
    agentflow_us = statistics.median(agentflow_s) / nodes * 1e6
    return {
        "nodes": nodes,
        "runs": runs,
        "events_per_run": events,
        "bare_us_per_node": round(bare_us, 1),
        "agentflow_us_per_node": round(agentflow_us, 1),
        "ratio": round(agentflow_us / bare_us, 3),
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


if __name__ == "__main__":
    main()
