"""benchmarks/branching_fork.py still runs and prints the fork figures the branching issue names (a few forks each:
this checks the script works, never how fast a fork is)."""

from __future__ import annotations

from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available
from tests.support.require import require

from .test_benchmarks_run import run_benchmark


def test_branching_fork() -> None:
    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    figures = run_benchmark("branching_fork.py", "--quick")
    for key in ("fork_ms_local", "fork_ms_local_large", "fork_ms_docker", "fork_ms_docker_large"):
        assert {key, f"{key}_baseline", f"{key}_ratio"} <= set(figures), key
        assert isinstance(figures[key], float) and figures[key] > 0
