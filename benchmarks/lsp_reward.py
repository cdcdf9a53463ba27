"""Per-step LSP reward latency: the warm language server of lsp_diagnostics vs the server's CLI run cold per step.

Both sides see the same files after each step of the same edit sequence (a small package of a few modules; every
step edits one module, alternately breaking and fixing it):

- warm: ``LspDiagnosticsHook.score`` on the step (read the edited file from a real local sandbox, didChange, pull
  diagnostics for every module, resolve the names on the edited lines, hash the analysis bundle);
- cold: ``basedpyright --outputjson`` on the same files, one process per step (what a hook without a warm server
  would have to do).

Also measured: the hook engine's added latency per step with three no-op hooks bound to the step.

Usage: .venv/bin/python benchmarks/lsp_reward.py [--steps N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agentflow.rewards import StepContext
from agentflow.rewards._lsp import SERVERS, LspDiagnosticsHook
from agentflow.runtime._hooks import RewardEngine
from agentflow.sandboxes import create_sandbox
from agentflow.spec._models import WorkflowSpec
from agentflow.traces import Event, EventType

MODULES = 5
GOOD = "def f{i}(values: list[float]) -> float:\n    return sum(values) / len(values) + {i}\n"
BAD = "def f{i}(values: list[float]) -> float:\n    return sum(values) / len(valuez) + {i}\n"


def _events(seq: int, path: str, text: str) -> list[Event]:
    common = {"run_id": "bench", "ts": "2026-01-01T00:00:00.000000Z", "node": "code"}
    call = Event(
        seq=seq,
        type=EventType.TOOL_CALL,
        data={"tool": "write_file", "call_id": f"c{seq}", "arguments": json.dumps({"path": path, "content": text})},
        **common,
    )
    result = Event(
        seq=seq + 1,
        type=EventType.TOOL_RESULT,
        data={"tool": "write_file", "call_id": f"c{seq}", "ok": True, "content": "", "result": None, "error": None},
        **common,
    )
    return [call, result]


def _p50(values: list[float]) -> float:
    return statistics.median(values)


async def _warm_and_cold(steps: int) -> dict[str, Any]:
    box = await create_sandbox("local")
    mirror = Path(tempfile.mkdtemp(prefix="lsp-bench-cold-"))
    cli = str(Path(SERVERS["basedpyright"].resolve()).parent / "basedpyright")
    hook = LspDiagnosticsHook()
    try:
        for i in range(MODULES):
            await box.write_file(f"pkg/m{i}.py", GOOD.format(i=i))
            (mirror / "pkg").mkdir(exist_ok=True)
            (mirror / "pkg" / f"m{i}.py").write_text(GOOD.format(i=i))
        await box.write_file("pkg/__init__.py", "")
        (mirror / "pkg" / "__init__.py").write_text("")
        start = StepContext(run_id="bench", kind="run", node=None, events=(), state={}, sandbox=box)
        clock = time.perf_counter()
        await hook.start_run(start)
        warm, cold, rewards = [], [], []
        for n in range(steps + 1):
            i = n % MODULES
            text = (BAD if (n // MODULES) % 2 == 0 else GOOD).format(i=i)
            path = f"pkg/m{i}.py"
            await box.write_file(path, text)
            (mirror / path).write_text(text)
            step = StepContext(
                run_id="bench", kind="step", node="code", events=_events(2 * n, path, text), state={}, sandbox=box
            )
            began = time.perf_counter()
            reward = await hook.score(step)
            if n == 0:  # the first step also waits for the server to start: reported apart
                first_step_s = time.perf_counter() - clock
                continue
            warm.append(time.perf_counter() - began)
            rewards.append(reward.components["d"] if reward else None)
            began = time.perf_counter()
            # blocking on purpose: the cold baseline is timed alone, with nothing else on the loop
            done = subprocess.run(  # noqa: ASYNC221
                [cli, "--outputjson", *sorted(str(p) for p in mirror.rglob("*.py"))],  # noqa: ASYNC240
                capture_output=True,
                text=True,
                check=False,
                cwd=mirror,
            )
            cold.append(time.perf_counter() - began)
            cold_errors = json.loads(done.stdout)["summary"]["errorCount"]
            if cold_errors != rewards[-1]:
                raise SystemExit(f"warm and cold disagree at step {n}: {rewards[-1]} vs {cold_errors} errors")
        session = hook.session_of("bench")
        resolution_method = session.resolution_method if session is not None else "none"
    finally:
        await hook.finish_run("bench")
        await box.close()
    return {
        "steps": steps,
        "modules": MODULES,
        "server": "basedpyright",
        "resolution_method": resolution_method,
        "server_start_and_first_step_s": first_step_s,
        "warm_p50_ms": _p50(warm) * 1000,
        "warm_p90_ms": sorted(warm)[int(0.9 * (len(warm) - 1))] * 1000,
        "cold_p50_ms": _p50(cold) * 1000,
        "cold_p90_ms": sorted(cold)[int(0.9 * (len(cold) - 1))] * 1000,
        "warm_cold_ratio": _p50(warm) / _p50(cold),
        "target_ratio": 0.05,
    }


async def _engine_overhead(rounds: int = 2000) -> dict[str, Any]:
    spec = WorkflowSpec.model_validate(
        {
            "name": "bench",
            "start": "a",
            "nodes": {"a": {"kind": "router", "routes": [{"to": "END"}]}},
            "rewards": [{"hook": "noop", "on": "step"}] * 3,
        }
    )
    engine = RewardEngine(spec)
    # a stand-in run context: the engine alone is measured, with no recorder to flush before the hooks run
    ctx: Any = SimpleNamespace(
        run_id="bench", state={}, sandbox=None, events=[], replays_hooks=False, flush=lambda: None
    )
    events = _events(0, "a.py", "x = 1\n")
    for _ in range(100):
        await engine.score(ctx, kind="step", node="a", label="a", events=events)
    began = time.perf_counter()
    for _ in range(rounds):
        await engine.score(ctx, kind="step", node="a", label="a", events=events)
    per_step = (time.perf_counter() - began) / rounds
    return {"engine_three_noop_hooks_us_per_step": per_step * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(_warm_and_cold(args.steps))
    figures.update(asyncio.run(_engine_overhead()))
    figures["meets_target"] = figures["warm_cold_ratio"] <= figures["target_ratio"]
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"LSP reward per step over {figures['steps']} steps, {figures['modules']} modules, basedpyright "
        f"(names resolved by {figures['resolution_method']})"
    )
    print(f"  warm server : p50 {figures['warm_p50_ms']:.1f} ms  p90 {figures['warm_p90_ms']:.1f} ms")
    print(f"  cold CLI    : p50 {figures['cold_p50_ms']:.1f} ms  p90 {figures['cold_p90_ms']:.1f} ms")
    print(f"  warm/cold p50 ratio {figures['warm_cold_ratio']:.4f} (target <= {figures['target_ratio']})")
    print(f"  server start + first step {figures['server_start_and_first_step_s']:.2f} s (once per run)")
    print(f"hook engine, three no-op hooks: {figures['engine_three_noop_hooks_us_per_step']:.1f} us per step")
    sys.exit(0 if figures["meets_target"] else 1)


if __name__ == "__main__":
    main()
