"""Latency of the Docker sandbox against plain Docker, measured in one run on the same engine.

(a) `docker exec` of `true` through the Docker SDK (exec_create + exec_start + exec_inspect, what harnesses do),
(b) `true` through agentflow's warm-pool sandbox (the exec server inside the container),
(c) a cold `docker run --rm` of `true` through the SDK (create, start, wait, remove),
(d) `acquire()` of a sandbox from a warm `SandboxPool` (release and reset are not counted: they happen after use),
(e) `true` in the local sandbox.

    python benchmarks/sandbox_latency.py [--runs 50] [--image agentflow/python:latest] [--json]

Targets: exec_ratio = b/a <= 0.1 and acquire_ratio = d/c <= 0.05. With --json it prints one object holding every
p50/p90 (milliseconds) and both ratios (of the p50s). Needs a running engine and the image
(`agentflow sandbox build python`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agentflow.sandboxes import LocalSandbox, SandboxPool
from agentflow.sandboxes._docker import DEFAULT_IMAGE, DockerSandbox, docker_client


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


async def timed(runs: int, action: Callable[[], Awaitable[Any]], warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        await action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def sync_timed(runs: int, action: Callable[[], Any], warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure(runs: int, image: str) -> dict[str, Any]:
    api = docker_client().api
    results: dict[str, Any] = {"runs": runs, "image": image}

    async with SandboxPool(lambda: DockerSandbox.create(image=image), size=2, max_size=2) as pool:
        box = await pool.acquire()
        container = box.inner.container_id  # type: ignore[attr-defined]

        def docker_exec() -> None:
            exec_id = api.exec_create(container, ["true"], user="1000:1000")["Id"]
            api.exec_start(exec_id)
            assert api.exec_inspect(exec_id)["ExitCode"] == 0

        async def pool_exec() -> None:
            assert (await box.exec(["true"])).exit_code == 0

        results["a_docker_exec"] = summary(await asyncio.to_thread(sync_timed, runs, docker_exec))
        results["b_pool_exec"] = summary(await timed(runs, pool_exec))
        await box.close()

        acquire_samples = []
        for _ in range(runs):
            started = time.perf_counter()
            lent = await pool.acquire()
            acquire_samples.append((time.perf_counter() - started) * 1000)
            await lent.close()  # reset happens here, outside the measured acquire
        results["d_pool_acquire"] = summary(acquire_samples)

    def cold_run() -> None:
        api_container = api.create_container(image, ["true"], host_config=api.create_host_config(network_mode="none"))
        api.start(api_container["Id"])
        assert api.wait(api_container["Id"])["StatusCode"] == 0
        api.remove_container(api_container["Id"], force=True)

    # cold starts are slow: fewer of them keep the run short without changing the median much
    results["c_docker_run"] = summary(await asyncio.to_thread(sync_timed, max(10, runs // 3), cold_run, 1))

    async with await LocalSandbox.create() as local:

        async def local_exec() -> None:
            assert (await local.exec(["true"])).exit_code == 0

        results["e_local_exec"] = summary(await timed(runs, local_exec))

    results["exec_ratio"] = round(results["b_pool_exec"]["p50_ms"] / results["a_docker_exec"]["p50_ms"], 4)
    results["acquire_ratio"] = round(results["d_pool_acquire"]["p50_ms"] / results["c_docker_run"]["p50_ms"], 6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = asyncio.run(measure(args.runs, args.image))
    if args.json:
        print(json.dumps(results))
        return
    labels = {
        "a_docker_exec": "(a) docker exec via the SDK",
        "b_pool_exec": "(b) agentflow warm-pool exec",
        "c_docker_run": "(c) cold docker run --rm",
        "d_pool_acquire": "(d) agentflow pool acquire()",
        "e_local_exec": "(e) agentflow local sandbox exec",
    }
    for key, label in labels.items():
        print(f"{label:<36} p50 {results[key]['p50_ms']:>9.3f} ms   p90 {results[key]['p90_ms']:>9.3f} ms")
    print(f"exec_ratio    (b)/(a) = {results['exec_ratio']:.4f}   (target <= 0.1)")
    print(f"acquire_ratio (d)/(c) = {results['acquire_ratio']:.6f}   (target <= 0.05)")


if __name__ == "__main__":
    main()
