"""Forked rollouts: what the shared prefix costs the continuations of a fork, against what it cost the original.

Records a 20-step run (10 model turns, each answering after LATENCY_S like a hosted model, 9 of them calling a
shell tool that takes TOOL_S, and a tool node that does too), then ``fork -n 8 --at 15``. The prefix of each
continuation is served from the tape; the sandbox at step 15 is rebuilt once (the prefix's 7 tool calls run again)
and copied for each continuation (``Sandbox.fork()``).

- ``original_prefix_s``: the original run's time from ``run_started`` to the end of its step 15.
- ``rebuild_s``: the one rebuild of the prefix's sandbox.
- ``prefixes_wall_s``: from the first continuation asking for its sandbox (a fork of the rebuilt one) until the
  last one's first live step: the K prefixes, served concurrently.
- ``prefix_ratio`` = (rebuild_s + prefixes_wall_s) / K / original_prefix_s: the prefix's cost per continuation,
  as a share of what it cost the original (the issue's target: ≤ 0.05). ``prefix_ratio_group`` is the same without
  the division by K: how long the whole group waited for its prefix, against one original prefix.

Usage: .venv/bin/python benchmarks/branching_prefix.py [--json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from agentflow.rerun import Fork, steps_of
from agentflow.runtime import run_workflow
from agentflow.traces import TraceStore

TURNS = 10  # 9 tool-calling turns and the answer, plus the tool node: 20 steps
AT = 15


def _workflow(tool_s: float) -> str:
    return f"""
name: twenty_steps
state: {{answer: {{type: str, default: ""}}}}
models: {{m: {{model: "scripted:script.yaml"}}}}
sandbox: {{backend: local, files: {{".": ws}}}}
tools: [shell]
start: work
nodes:
  work: {{kind: agent, model: m, prompt: "Append to the log.", tools: [shell], max_turns: {TURNS + 1}}}
  check:
    {{kind: tool, tool: shell, args: {{command: "sleep {tool_s} && wc -c log.txt"}}, output: {{answer: result.stdout}}}}
edges: [{{from: work, to: check}}, {{from: check, to: END}}]
limits: {{max_model_calls: {TURNS + 5}}}
"""


def _script(latency_s: float, tool_s: float) -> str:
    calls = [
        f'  - {{latency_s: {latency_s}, tool_calls: [{{name: shell, arguments: {{command: "sleep {tool_s} && '
        f'printf {i} >> log.txt"}}}}]}}'
        for i in range(TURNS - 1)
    ]
    return "responses:\n" + "\n".join([*calls, f"  - {{latency_s: {latency_s}, content: done}}"]) + "\n"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _measure(k: int, latency_s: float, tool_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "ws").mkdir()
        (folder / "script.yaml").write_text(_script(latency_s, tool_s))
        (folder / "wf.yaml").write_text(_workflow(tool_s))
        store = TraceStore(folder / "store")
        original = await run_workflow(folder / "wf.yaml", store=store)
        assert original.succeeded, original.error
        events = store.load_trace(original.run_id).events
        steps = steps_of(events)
        assert len(steps) == 2 * TURNS, len(steps)
        original_prefix_s = _ts(events[steps[AT - 1].seq].ts) - _ts(events[0].ts)

        fork = Fork.open(store, original.run_id, at=AT)
        clock = time.perf_counter()
        results = await fork.continue_runs(k)
        fork_wall_s = time.perf_counter() - clock
        assert all(result.succeeded for result in results), [result.error for result in results]
        opened = [plan.opened_at for plan in fork.plans if plan.opened_at is not None]
        live = [plan.live_at for plan in fork.plans if plan.live_at is not None]
        assert len(live) == k, "a continuation never went live"
        prefixes_wall_s = max(live) - min(opened)
        prefix_s = fork.sandboxes.prepare_s + prefixes_wall_s
        return {
            "prefix_ratio": round(prefix_s / k / original_prefix_s, 4),
            "prefix_ratio_group": round(prefix_s / original_prefix_s, 4),
            "original_prefix_s": round(original_prefix_s, 4),
            "original_run_s": round(original.duration_s, 4),
            "rebuild_s": round(fork.sandboxes.prepare_s, 4),
            "rebuilt_tool_calls": fork.sandboxes.rebuilt.tool_calls,
            "sandbox_forks": fork.sandboxes.forks,
            "prefixes_wall_s": round(prefixes_wall_s, 4),
            "fork_wall_s": round(fork_wall_s, 4),
            "continuations": k,
            "model_latency_s": latency_s,
            "tool_s": tool_s,
        }


def measure(quick: bool) -> dict[str, float]:
    """``fork -n 8 --at 15`` of a 20-step run (quick: 2 continuations, shorter latencies)."""
    if quick:
        return asyncio.run(_measure(2, 0.02, 0.01))
    return asyncio.run(_measure(8, 0.3, 0.05))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    args = parser.parse_args()
    figures = measure(args.quick)
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:22} {value}")


if __name__ == "__main__":
    main()
