"""The conformance suite against the Docker backend: fresh containers, and a warm pool that reuses them."""

from __future__ import annotations

from agentflow.sandboxes import Sandbox, SandboxPool
from agentflow.sandboxes._docker import DockerSandbox
from agentflow.sandboxes.conformance import CHECKS, run_conformance

from ._docker_support import require_docker

DOCKER_KNOWN_FAILURES: tuple[str, ...] = ()
"""Checks the Docker backend is expected to fail: none (it declares the same as ``known_failures``)."""


async def test_docker_passes_every_check() -> None:
    require_docker()
    results = await run_conformance(DockerSandbox.create, known_failures=DOCKER_KNOWN_FAILURES)
    assert [r.name for r in results] == list(CHECKS)
    assert [str(r) for r in results if r.status != "passed"] == []


async def test_the_backend_declares_the_known_failures_the_tests_expect() -> None:
    require_docker()
    async with await DockerSandbox.create() as box:
        assert box.known_failures == DOCKER_KNOWN_FAILURES
        assert tuple(box.isolation().details["known_conformance_failures"]) == DOCKER_KNOWN_FAILURES


async def test_a_warm_pool_passes_every_check_with_reused_containers() -> None:
    require_docker()
    # max_size 2: fresh_sandbox_is_empty holds two at once; every other check gets a container someone used before.
    async with SandboxPool(DockerSandbox.create, size=2, max_size=2) as pool:
        lent: set[str] = set()

        async def acquire() -> Sandbox:
            box = await pool.acquire()
            lent.add(box.inner.container_id)  # type: ignore[attr-defined]
            return box

        results = await run_conformance(acquire, known_failures=DOCKER_KNOWN_FAILURES)
    assert [str(r) for r in results if r.status != "passed"] == []
    # the memory and fork bombs do not break a container, so a couple of containers served every check
    assert len(lent) <= 4
