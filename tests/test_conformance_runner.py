"""The conformance runner both suites share (agentflow._conformance): selection, outcomes, the report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from agentflow import _conformance
from agentflow._conformance import (
    CheckFailed,
    CheckRegistry,
    CheckResult,
    CheckSkipped,
    ConformanceReport,
    expect,
    run_async_check,
    run_check,
)
from agentflow.sandboxes import LocalSandbox
from agentflow.sandboxes import conformance as sandbox_suite
from agentflow.traces import conformance as store_suite


def _noop() -> None:
    pass


def test_select_keeps_the_registry_order_and_marks_known_failures() -> None:
    checks: CheckRegistry[Callable[[], None]] = CheckRegistry("demo", {"first": _noop, "second": _noop})
    checks.add("third", _noop)
    assert list(checks) == ["first", "second", "third"]
    chosen = checks.select(only=["third", "first"], known_failures=["third"])
    assert [(name, known) for name, _, known in chosen] == [("first", False), ("third", True)]
    assert [name for name, _, _ in checks.select()] == ["first", "second", "third"]
    with pytest.raises(KeyError, match=r"unknown demo checks \['nope'\]; choices: \['first', 'second', 'third'\]"):
        checks.select(known_failures=["nope"])
    with pytest.raises(ValueError, match="already registered"):
        checks.add("first", _noop)


def test_each_outcome_of_a_synchronous_check() -> None:
    def fails() -> None:
        expect(1 + 1 == 3, "arithmetic broke")

    def crashes() -> None:
        raise RuntimeError("store exploded")

    def skips() -> None:
        raise CheckSkipped("not offered")

    got = [
        run_check("passes", _noop),
        run_check("passes_though_known", _noop, known_failure=True),
        run_check("fails", fails),
        run_check("crashes_known", crashes, known_failure=True),
        run_check("skips", skips, known_failure=True),
    ]
    assert [(r.status, r.detail, r.ok) for r in got] == [
        ("passed", "", True),
        ("passed", "(listed as a known failure, but passed)", True),
        ("failed", "arithmetic broke", False),
        ("known_failure", "RuntimeError: store exploded", True),
        ("skipped", "not offered", True),
    ]
    assert all(r.duration_s >= 0 for r in got)


async def test_an_async_check_past_its_limit_fails_but_its_own_timeout_error_says_what_it_was() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    async def pool_stays_busy(factory: object) -> None:
        raise TimeoutError("no sandbox came free in 5 s")  # as PoolExhaustedError, a TimeoutError, says

    async def fails() -> None:
        raise CheckFailed("wrong exit code")

    hung = await run_async_check("hangs", hangs, timeout_s=0.1)
    busy = await sandbox_suite.run_check("busy", pool_stays_busy, LocalSandbox.create)
    failed = await run_async_check("fails", fails, known_failure=True)
    assert (hung.status, hung.detail) == ("failed", "did not finish within 0.1 s")
    assert (busy.status, busy.detail) == ("failed", "TimeoutError: no sandbox came free in 5 s")
    assert (failed.status, failed.detail) == ("known_failure", "wrong exit code")


def test_the_report_sums_up_and_serialises() -> None:
    results = (
        CheckResult("a", "passed", duration_s=0.12345),
        CheckResult("b", "failed", "broke", 1.0),
        CheckResult("c", "known_failure", "as declared"),
        CheckResult("d", "skipped", "n/a"),
        CheckResult("e", "passed"),
    )
    report = ConformanceReport("local", results)
    assert not report.ok
    assert [r.name for r in report.failed] == ["b"]
    assert report.summary() == "local: 2 passed, 1 failed, 1 known failures, 1 skipped"
    shown = json.loads(json.dumps(report.to_dict(subject_key="backend")))
    assert shown["backend"] == "local" and shown["ok"] is False
    assert shown["checks"][0] == {"name": "a", "status": "passed", "detail": "", "duration_s": 0.123}
    assert ConformanceReport("pg", results[2:]).ok
    assert str(results[1]) == "FAILED        b  broke"


def test_both_suites_share_the_runner() -> None:
    for suite in (sandbox_suite, store_suite):
        assert isinstance(suite.CHECKS, CheckRegistry)
        assert suite.CheckFailed is _conformance.CheckFailed
        assert suite.CheckSkipped is _conformance.CheckSkipped
        assert suite.CheckResult is _conformance.CheckResult
