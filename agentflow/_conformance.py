"""The runner behind every conformance suite (sandbox backends, trace stores): checks by name, outcomes, a report.

A suite keeps its checks in a ``CheckRegistry`` (the ``CHECKS`` of ``agentflow.sandboxes.conformance`` and of
``agentflow.traces.conformance``), picks what to run with ``CheckRegistry.select``, and runs each check through
``run_check`` (a synchronous check) or ``run_async_check`` (a coroutine, with a time limit). A check raises
``CheckFailed`` (or any exception) when the subject misbehaves, or ``CheckSkipped`` when the subject honestly reports
it does not offer what the check tests; the runner turns that into a ``CheckResult`` and never raises itself.
``ConformanceReport`` sums the results up for a person (``summary``) or a program (``to_dict``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

CheckStatus = Literal["passed", "failed", "known_failure", "skipped"]
CheckT = TypeVar("CheckT")

_PASSED_THOUGH_KNOWN = "(listed as a known failure, but passed)"


class CheckFailed(AssertionError):
    """The subject did not behave as the contract says; the message says what happened instead."""


class CheckSkipped(Exception):
    """The check does not apply: the subject reports it does not offer the tested property."""


def expect(condition: bool, message: str) -> None:
    """Fail the running check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, printable as one line."""

    name: str
    status: CheckStatus
    detail: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True unless the check failed without being a known failure."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values, the duration rounded to milliseconds."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 3),
        }

    def __str__(self) -> str:
        detail = f"  {self.detail}" if self.detail else ""
        return f"{self.status.upper():<13} {self.name}{detail}"


@dataclass(frozen=True)
class ConformanceReport:
    """The results of one suite run against one subject (a backend, a store)."""

    subject: str
    results: tuple[CheckResult, ...]

    @property
    def failed(self) -> list[CheckResult]:
        """The checks that failed without being known failures."""
        return [result for result in self.results if not result.ok]

    @property
    def ok(self) -> bool:
        """True when nothing failed beyond the known failures."""
        return not self.failed

    def count(self, status: CheckStatus) -> int:
        """How many checks ended with ``status``."""
        return sum(result.status == status for result in self.results)

    def summary(self) -> str:
        """One line: the subject and how many checks passed, failed, failed as known, were skipped."""
        return (
            f"{self.subject}: {self.count('passed')} passed, {self.count('failed')} failed, "
            f"{self.count('known_failure')} known failures, {self.count('skipped')} skipped"
        )

    def to_dict(self, *, subject_key: str = "subject") -> dict[str, Any]:
        """The report as JSON-ready values; ``subject_key`` names the subject's field (``backend``, ``store``)."""
        return {subject_key: self.subject, "ok": self.ok, "checks": [result.to_dict() for result in self.results]}


class CheckRegistry(Mapping[str, CheckT]):
    """A suite's checks by name, in the order the suite runs them."""

    def __init__(self, suite: str, checks: Mapping[str, CheckT] | None = None) -> None:
        self.suite = suite  # "conformance", "store conformance": how an unknown name is reported
        self._checks: dict[str, CheckT] = dict(checks or {})

    def add(self, name: str, check: CheckT) -> None:
        """Add ``check`` under ``name``, after the checks already there."""
        if name in self._checks:
            raise ValueError(f"{self.suite} check {name!r} is already registered")
        self._checks[name] = check

    def __getitem__(self, name: str) -> CheckT:
        return self._checks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._checks)

    def __len__(self) -> int:
        return len(self._checks)

    def select(
        self, only: Collection[str] | None = None, known_failures: Collection[str] = ()
    ) -> list[tuple[str, CheckT, bool]]:
        """The checks to run, in order, each with whether it is a known failure.

        Args:
            only: run just these checks; every check when None.
            known_failures: names of checks expected to fail.

        Raises:
            KeyError: ``only`` or ``known_failures`` names a check that does not exist.
        """
        unknown = sorted((set(only or ()) | set(known_failures)) - set(self._checks))
        if unknown:
            raise KeyError(f"unknown {self.suite} checks {unknown}; choices: {sorted(self._checks)}")
        return [
            (name, check, name in known_failures)
            for name, check in self._checks.items()
            if only is None or name in only
        ]


def _failure(exc: BaseException, known_failure: bool) -> tuple[CheckStatus, str]:
    status: CheckStatus = "known_failure" if known_failure else "failed"
    return status, str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"


def _passed(known_failure: bool) -> tuple[CheckStatus, str]:
    return "passed", _PASSED_THOUGH_KNOWN if known_failure else ""


def run_check(name: str, call: Callable[[], object], *, known_failure: bool = False) -> CheckResult:
    """Run one synchronous check (``call`` takes no arguments) and classify its outcome; never raises for it."""
    started = time.monotonic()
    status: CheckStatus
    try:
        call()
    except CheckSkipped as skipped:
        status, detail = "skipped", str(skipped)
    except Exception as exc:  # noqa: BLE001 - a check's failure of any kind is a result to report
        status, detail = _failure(exc, known_failure)
    else:
        status, detail = _passed(known_failure)
    return CheckResult(name, status, detail, time.monotonic() - started)


async def run_async_check(
    name: str, call: Callable[[], Awaitable[object]], *, known_failure: bool = False, timeout_s: float | None = None
) -> CheckResult:
    """Run one check coroutine and classify its outcome; never raises for it.

    A check still running after ``timeout_s`` is cancelled and fails: a hanging subject must not hang the suite.
    """
    started = time.monotonic()
    status: CheckStatus
    limit = asyncio.timeout(timeout_s)
    try:
        async with limit:
            await call()
    except CheckSkipped as skipped:
        status, detail = "skipped", str(skipped)
    except TimeoutError as exc:
        if limit.expired():
            status = "known_failure" if known_failure else "failed"
            detail = f"did not finish within {timeout_s:g} s"
        else:  # the subject's own timeout error (a pool that stayed busy) is a failure like any other
            status, detail = _failure(exc, known_failure)
    except Exception as exc:  # noqa: BLE001 - a check's failure of any kind is a result to report
        status, detail = _failure(exc, known_failure)
    else:
        status, detail = _passed(known_failure)
    return CheckResult(name, status, detail, time.monotonic() - started)
