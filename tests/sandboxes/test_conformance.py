"""The conformance suite, run against the local sandbox, and shown able to catch a backend that breaks the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.errors import PathOutsideWorkdirError
from agentflow.sandboxes import ExecResult, LocalSandbox, Sandbox, SandboxPool
from agentflow.sandboxes.conformance import CHECKS, FORK_CHECKS, CheckResult, run_check, run_conformance

from .conftest import require_namespaces


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


async def test_local_namespaces_passes_every_check() -> None:
    require_namespaces()
    results = await run_conformance(lambda: LocalSandbox.create(mode="namespaces"))
    assert [r.name for r in results] == list(CHECKS)
    not_passed = [str(r) for r in results if r.status != "passed"]
    assert not_passed == []


async def test_a_warm_local_pool_passes_every_check_with_reused_sandboxes() -> None:
    require_namespaces()
    async with SandboxPool(lambda: LocalSandbox.create(mode="namespaces"), size=2, max_size=2) as pool:
        results = await run_conformance(pool.acquire)
    not_passed = [str(r) for r in results if r.status != "passed"]
    assert not_passed == []


async def test_local_process_mode_fails_only_what_it_declares() -> None:
    results = _by_name(await run_conformance(lambda: LocalSandbox.create(mode="process")))
    assert results["kill_process_tree_on_timeout"].status == "known_failure"
    assert "escaped.tick" in results["kill_process_tree_on_timeout"].detail
    assert results["network_egress_blocked"].status == "skipped"
    assert results["host_files_not_visible"].status == "skipped"
    assert [str(r) for r in results.values() if r.status == "failed"] == []


class _LeakySandbox(LocalSandbox):
    """A broken backend: it follows paths out of the workdir and hands the host environment to commands."""

    def _host_path(self, path: str) -> Path:
        try:
            return super()._host_path(path)
        except PathOutsideWorkdirError:
            return Path(path) if path.startswith("/") else self._host_workdir / path

    async def exec(self, cmd: list[str], **kwargs: object) -> ExecResult:
        import os

        leaked = dict(os.environ)
        leaked.update(kwargs.pop("env", None) or {})  # type: ignore[arg-type]
        return await super().exec(cmd, env=leaked, **kwargs)  # type: ignore[arg-type]


async def _leaky() -> Sandbox:
    return await _LeakySandbox.create(mode="process")


async def test_the_suite_catches_a_backend_that_breaks_the_rules() -> None:
    results = _by_name(
        await run_conformance(_leaky, known_failures=(), only=["files_outside_workdir", "host_secret_env_not_visible"])
    )
    assert results["files_outside_workdir"].status == "failed"
    assert "was not refused" in results["files_outside_workdir"].detail
    assert results["host_secret_env_not_visible"].status == "failed"
    assert "visible inside" in results["host_secret_env_not_visible"].detail


async def test_a_check_that_raises_or_hangs_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    async def crashes(factory: object) -> None:
        raise RuntimeError("backend exploded")

    async def hangs(factory: object) -> None:
        import asyncio

        await asyncio.sleep(60)

    monkeypatch.setattr("agentflow.sandboxes.conformance.CHECK_TIMEOUT_S", 0.2)
    crashed = await run_check("crashes", crashes, LocalSandbox.create)
    hung = await run_check("hangs", hangs, LocalSandbox.create, known_failure=True)
    assert (crashed.status, crashed.detail) == ("failed", "RuntimeError: backend exploded")
    assert hung.status == "known_failure"
    assert "did not finish" in hung.detail
    assert str(crashed).startswith("FAILED")
    assert not crashed.ok
    assert hung.ok


async def test_unknown_check_names_are_rejected() -> None:
    with pytest.raises(KeyError, match="no_such_check"):
        await run_conformance(LocalSandbox.create, only=["no_such_check"])


async def _shared_fork() -> Sandbox:
    """A broken fork: a second sandbox over the same workdir instead of a copy (threads in one checkout)."""
    box = await LocalSandbox.create(mode="process")

    async def fork() -> Sandbox:
        view = await LocalSandbox.create(mode="process")
        view._host_workdir = box._host_workdir
        view._sandbox_uid, view._sandbox_gid = box._sandbox_uid, box._sandbox_gid
        view.forked_from = repr(box)
        return view

    box.fork = fork  # type: ignore[method-assign]
    return box


async def _cannot_fork() -> Sandbox:
    """A backend that keeps the base's fork(), which refuses."""
    box = await LocalSandbox.create(mode="process")
    box.fork = lambda: Sandbox.fork(box)  # type: ignore[method-assign]
    return box


async def test_the_fork_checks_catch_a_shared_workdir_and_a_backend_that_cannot_fork() -> None:
    assert all(name in CHECKS for name in FORK_CHECKS) and len(FORK_CHECKS) == 5
    shared = _by_name(await run_conformance(_shared_fork, known_failures=(), only=["fork_isolated_both_ways"]))
    assert shared["fork_isolated_both_ways"].status == "failed"
    assert "written in the fork" in shared["fork_isolated_both_ways"].detail
    # a backend that cannot fork declares the fork checks as known failures
    refused = _by_name(await run_conformance(_cannot_fork, known_failures=FORK_CHECKS, only=FORK_CHECKS))
    assert {result.status for result in refused.values()} == {"known_failure"}
    assert "cannot fork" in refused["fork_copies_files"].detail
