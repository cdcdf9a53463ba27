"""Parallel fan-out: wall time of 8 concurrent branches against one branch, both through agentflow.

A workflow fans out (``parallel:``) into N branches whose tool node runs ``sleep 0.2`` in the run's local sandbox,
then joins them (``after:``). The baseline is the same workflow with one branch. Both run in the same process,
interleaved, ``--runs`` times each; the medians are compared:

    parallel_efficiency = wall(N branches) / wall(1 branch)      (target: <= 1.2 for N = 8)

Each run is a whole agentflow run (validation done once, sandbox started, trace recorded in a store), so the ratio
includes what the branches cost beyond their sleep: N sandbox commands at once, N times the events. The same pair
is measured with the sleep in a host plugin tool (``await asyncio.sleep(0.2)`` in the agentflow process, no sandbox
command): ``parallel_efficiency_host_tool``, what the orchestration itself costs per branch.

    python benchmarks/branching_parallel.py [--branches 8] [--runs 5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agentflow.runtime import CompiledWorkflow, compile_workflow, run_workflow
from agentflow.traces import TraceStore

SLEEP_S = 0.2

PLUGIN = f'''
import asyncio


async def nap() -> str:
    """Sleep {SLEEP_S} s."""
    await asyncio.sleep({SLEEP_S})
    return "rested"
'''


def fanout_spec(branches: int, *, host: bool = False) -> dict[str, Any]:
    """begin -> N branches (each one tool node sleeping 0.2 s) -> join; ``host``: the sleep in a host plugin."""
    names = [f"b{index}" for index in range(branches)]
    nodes: dict[str, Any] = {
        "begin": {"kind": "tool", "tool": "shell", "args": {"command": "true"}, "parallel": names},
        "join": {"kind": "tool", "tool": "shell", "args": {"command": "true"}, "after": names},
    }
    for name in names:
        nodes[name] = (
            {"kind": "tool", "tool": "nap"}
            if host
            else {"kind": "tool", "tool": "shell", "args": {"command": f"sleep {SLEEP_S}"}}
        )
    tools: list[Any] = ["shell", {"ref": "nap.py:nap", "host": True}] if host else ["shell"]
    return {"name": f"fanout_{branches}", "tools": tools, "start": "begin", "nodes": nodes, "end": ["join"]}


def _compile(folder: Path, branches: int, *, host: bool = False) -> CompiledWorkflow:
    (folder / "nap.py").write_text(PLUGIN)
    path = folder / f"fanout_{branches}{'_host' if host else ''}.yaml"
    path.write_text(yaml.safe_dump(fanout_spec(branches, host=host), sort_keys=False))
    return compile_workflow(path)


async def _wall(compiled: CompiledWorkflow, store: TraceStore) -> float:
    clock = time.perf_counter()
    result = await run_workflow(compiled, store=store)
    wall = time.perf_counter() - clock
    if result.status != "succeeded":
        raise RuntimeError(f"{compiled.name}: {result.status}: {result.error}")
    return wall


async def _pair(root: Path, store: TraceStore, branches: int, runs: int, *, host: bool) -> tuple[float, float]:
    """The median walls of the N-branch and the one-branch workflow, run interleaved."""
    wide, single = _compile(root, branches, host=host), _compile(root, 1, host=host)
    await _wall(single, store)  # warm-up: imports, the first sandbox
    wide_walls, single_walls = [], []
    for _ in range(runs):  # interleaved, so a slow moment of the machine hits both
        wide_walls.append(await _wall(wide, store))
        single_walls.append(await _wall(single, store))
    return statistics.median(wide_walls), statistics.median(single_walls)


async def _measure(branches: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store = TraceStore(root / ".agentflow")
        wide_s, single_s = await _pair(root, store, branches, runs, host=False)
        host_wide_s, host_single_s = await _pair(root, store, branches, runs, host=True)
    return {
        "branches": float(branches),
        "fanout_wall_s": round(wide_s, 4),
        "one_branch_wall_s": round(single_s, 4),
        "parallel_efficiency": round(wide_s / single_s, 3),
        "host_tool_fanout_wall_s": round(host_wide_s, 4),
        "host_tool_one_branch_wall_s": round(host_single_s, 4),
        "parallel_efficiency_host_tool": round(host_wide_s / host_single_s, 3),
    }


def measure(quick: bool) -> dict[str, float]:
    """The parallel part of benchmarks/branching.py: ``parallel_efficiency`` and the walls it compares."""
    return asyncio.run(_measure(2 if quick else 8, 1 if quick else 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (2 branches, 1 run): checks the script works")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = measure(True) if args.quick else asyncio.run(_measure(args.branches, args.runs))
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{figures['branches']:g} branches: {figures['fanout_wall_s']:.3f} s; "
        f"one branch: {figures['one_branch_wall_s']:.3f} s; "
        f"parallel_efficiency {figures['parallel_efficiency']:.3f} (target <= 1.2); with the sleep in a host tool: "
        f"{figures['parallel_efficiency_host_tool']:.3f}"
    )


if __name__ == "__main__":
    main()
