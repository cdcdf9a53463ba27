"""Best-of-N overhead: best-of-4 on the shipped fix_failing_test_best_of example against a single visit.

Both runs use the example's scripted model with a latency per answer (``latency_s`` on every response: a hosted
model's, offline), the local sandbox and the example's hooks:

- **best-of-4**: the example as shipped: ``code`` has ``best_of: {n: 4, by: tests_delta, sandbox: fork}``, so four
  candidates run concurrently, each in its own fork of the checkout, each measured by tests_delta before and scored
  after (test runs of their own);
- **single visit**: the same workflow without ``best_of``, its script holding only the kept candidate's turns (the
  longest list: three answers), so both runs wait for the model the same number of times on their longest path.

``best_of_overhead`` = wall(best-of-4) / wall(single visit), each the median of ``--repeat`` runs (target ≤ 1.5:
the candidates run concurrently, so what best-of adds is the forks and the hook's test runs, not 4× the model).

Usage: .venv/bin/python benchmarks/branching_best_of.py [--latency 0.5] [--repeat 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agentflow.runtime import compile_workflow, run_workflow
from agentflow.traces import TraceStore

EXAMPLES = Path(__file__).parents[1] / "graphs" / "examples"
EXAMPLE = "fix_failing_test_best_of"
KEPT = 1  # the candidate the example keeps (it makes every test pass)


def _with_latency(entry: Any, latency: float) -> Any:
    if isinstance(entry, str):
        entry = {"content": entry}
    if "candidates" in entry:
        return {"candidates": [[_with_latency(turn, latency) for turn in turns] for turns in entry["candidates"]]}
    return {**entry, "latency_s": latency}


def _prepare(folder: Path, latency: float) -> tuple[Path, Path]:
    """The example copied into ``folder`` twice: as shipped (best-of-4) and as a single visit, with latency."""
    shutil.copytree(EXAMPLES / "fix_failing_test", folder / "fix_failing_test")
    script = yaml.safe_load((EXAMPLES / EXAMPLE / "script.yaml").read_text())
    timed = [_with_latency(entry, latency) for entry in script["responses"]]
    single = [turn for entry in timed for turn in (entry["candidates"][KEPT] if "candidates" in entry else [entry])]
    for name, responses in (("best_of", timed), ("single", single)):
        (folder / name).mkdir()
        (folder / name / "script.yaml").write_text(yaml.safe_dump({"responses": responses}, sort_keys=False))
    # edited as text: a YAML round trip would turn the `on:` keys into booleans
    text = (EXAMPLES / f"{EXAMPLE}.yaml").read_text().replace(f"scripted:{EXAMPLE}/", "scripted:best_of/")
    best_of = folder / "best_of.yaml"
    best_of.write_text(text)
    lines = [line for line in text.splitlines() if not line.strip().startswith("best_of:")]
    single_path = folder / "single.yaml"
    single_path.write_text("\n".join(lines).replace("scripted:best_of/", "scripted:single/") + "\n")
    return best_of, single_path


async def _wall(workflow: Path, store: TraceStore, repeat: int) -> float:
    compiled = compile_workflow(workflow)
    walls: list[float] = []
    for _ in range(repeat):
        clock = time.perf_counter()
        result = await run_workflow(compiled, store=store)
        walls.append(time.perf_counter() - clock)
        if not result.final_state.get("tests_passed"):
            raise SystemExit(f"{workflow.name}: the run did not make the tests pass ({result.status}: {result.error})")
    return statistics.median(walls)


def measure(quick: bool, *, latency: float | None = None, repeat: int | None = None) -> dict[str, float]:
    """Wall times of best-of-4 and of a single visit, and ``best_of_overhead`` (their ratio)."""
    latency = latency if latency is not None else (0.05 if quick else 0.5)
    repeat = repeat if repeat is not None else (1 if quick else 3)
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-best-of-") as scratch:
        folder = Path(scratch)
        best_of, single = _prepare(folder, latency)
        store = TraceStore(folder / ".agentflow")
        asyncio.run(_wall(single, store, 1))  # warm up: imports, the first sandbox, pytest's first start
        single_s = asyncio.run(_wall(single, store, repeat))
        best_of_s = asyncio.run(_wall(best_of, store, repeat))
    return {
        "latency_s": latency,
        "single_visit_s": round(single_s, 3),
        "best_of_4_s": round(best_of_s, 3),
        "best_of_overhead": round(best_of_s / single_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=None, help="seconds per model answer (default 0.5)")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each, median taken (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a check that the benchmark runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = measure(args.quick, latency=args.latency, repeat=args.repeat)
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"single visit {figures['single_visit_s']:.2f} s, best-of-4 {figures['best_of_4_s']:.2f} s "
        f"(model latency {figures['latency_s']:g} s per answer): best_of_overhead {figures['best_of_overhead']:.2f} "
        "(target <= 1.5)"
    )


if __name__ == "__main__":
    main()
