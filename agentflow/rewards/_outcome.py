"""Outcome scorers: is the run's answer right? Declare them with ``on: run`` (or on the node that answers)."""

from __future__ import annotations

import math
import re
from typing import Any

from agentflow.errors import ConfigError, RewardHookError
from agentflow.rewards._base import Reward, RewardHook, StepContext, reward_hook
from agentflow.traces._events import EventType
from agentflow.traces._payloads import ModelResponseData

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _answer(step: StepContext, key: str | None) -> str | None:
    """The state value ``key``, else the last model answer (a response without tool calls) of the step."""
    if key is not None and key in step.state:
        value = step.state[key]
        return None if value is None else str(value)
    for event in reversed(step.events):
        if event.type is EventType.MODEL_RESPONSE:
            response = event.data_as(ModelResponseData)
            if not response.get("tool_calls"):
                return str((response.get("message") or {}).get("content") or "")
    return None


def check_answer(mode: str, answer: str, expected: Any, *, tolerance: float = 1e-6, ignore_case: bool = True) -> bool:
    """Compare an answer with the expected one: exact | contains | numeric | regex."""
    left, right = answer.strip(), str(expected).strip()
    if ignore_case and mode in ("exact", "contains"):
        left, right = left.casefold(), right.casefold()
    if mode == "exact":
        return left == right
    if mode == "contains":
        return right in left
    if mode == "numeric":
        numbers = _NUMBER.findall(answer)
        if not numbers:
            return False
        return math.isclose(float(numbers[-1]), float(expected), rel_tol=0.0, abs_tol=tolerance)
    if mode == "regex":
        return re.search(str(expected), answer, flags=re.IGNORECASE if ignore_case else 0) is not None
    raise ConfigError(f"outcome: unknown mode {mode!r}", fix="choose exact, contains, numeric or regex")


@reward_hook("outcome")
class OutcomeHook(RewardHook):
    """1 when the answer matches ``options.expected`` under ``options.mode`` (exact | contains | numeric | regex |
    tests), else 0; label +1 / −1.

    The answer is the state key ``options.key`` (default ``answer``) or the step's last model answer. ``numeric``
    compares the last number of the answer within ``options.tolerance`` (absolute). ``tests`` passes when the
    last ``run_tests`` of the run passed, or, with the sandbox, when the tests pass now (``options.path``).
    ``expected`` may be ``"{state_key}"`` to read it from the state.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.mode = str(options.get("mode", "exact"))
        if self.mode not in ("exact", "contains", "numeric", "regex", "tests"):
            raise ConfigError(f"outcome: unknown mode {self.mode!r}", fix="exact, contains, numeric, regex or tests")
        if self.mode != "tests" and "expected" not in options:
            raise ConfigError(f"outcome mode {self.mode!r} needs options.expected")

    async def score(self, step: StepContext) -> Reward | None:
        if self.mode == "tests":
            return await self._tests(step)
        answer = _answer(step, self.options.get("key", "answer"))
        if answer is None:
            return None
        expected = self.options["expected"]
        if isinstance(expected, str) and expected.startswith("{") and expected.endswith("}"):
            expected = step.state.get(expected[1:-1])
        ok = check_answer(
            self.mode,
            answer,
            expected,
            tolerance=float(self.options.get("tolerance", 1e-6)),
            ignore_case=bool(self.options.get("ignore_case", True)),
        )
        return Reward(
            value=1.0 if ok else 0.0,
            label=1 if ok else -1,
            explanation=f"{self.mode} {'matches' if ok else 'does not match'} {expected!r}: {answer[:200]!r}",
            components={"mode": self.mode},
        )

    async def _tests(self, step: StepContext) -> Reward | None:
        from agentflow.rewards._grounded import _report_from_events, _run_tests

        report = _report_from_events(step)
        if report is None and step.sandbox is not None:
            report = await _run_tests(step.sandbox, dict(self.options))
        if report is None:
            raise RewardHookError("outcome mode 'tests' found no run_tests result and has no sandbox to run them")
        ok = bool(report.get("passed"))
        return Reward(
            value=1.0 if ok else 0.0,
            label=1 if ok else -1,
            explanation=f"{report.get('tests_passed')}/{report.get('tests_run')} tests passed",
            components={"tests_run": report.get("tests_run"), "tests_passed": report.get("tests_passed")},
        )
