"""The reward hooks that ship with the foundation: exit codes and test results of tool calls."""

from __future__ import annotations

from typing import Any

from agentflow.rewards._base import Reward, RewardHook, StepContext, reward_hook
from agentflow.traces._events import EventType, ran_by_hook
from agentflow.traces._payloads import SandboxExecData, ToolResultData


@reward_hook("exit_code")
class ExitCodeHook(RewardHook):
    """+1 when every tool call of the step succeeded and every sandbox command exited 0, else -1.

    Value is the share of successful calls and commands, so a node with one failing call of four scores 0.75.
    """

    uses_sandbox = False

    async def score(self, step: StepContext) -> Reward | None:
        outcomes: list[bool] = []
        failures: list[str] = []
        for event in step.events:
            if event.type is EventType.TOOL_RESULT:
                result = event.data_as(ToolResultData)
                ok = bool(result.get("ok"))
                outcomes.append(ok)
                if not ok:
                    failures.append(f"{result.get('tool')}: {result.get('error')}")
            elif event.type is EventType.SANDBOX_EXEC and not ran_by_hook(event):  # the agent's commands only
                command = event.data_as(SandboxExecData)
                ok = command.get("exit_code") == 0 and not command.get("timed_out")
                outcomes.append(ok)
                if not ok:
                    failures.append(f"exit {command.get('exit_code')}: {' '.join(command.get('cmd', []))}")
        if not outcomes:
            return None
        share = sum(outcomes) / len(outcomes)
        return Reward(
            value=share,
            label=1 if share == 1 else -1,
            explanation="all succeeded" if not failures else "; ".join(failures)[:500],
            components={"succeeded": sum(outcomes), "total": len(outcomes)},
        )


def _test_report(step: StepContext) -> dict[str, Any] | None:
    """The last run_tests result in the step, if any."""
    for event in reversed(step.events):
        if event.type is EventType.TOOL_RESULT:
            data = event.data_as(ToolResultData)
            result = data.get("result")
            if data.get("tool") == "run_tests" and isinstance(result, dict):
                return result
    return None


@reward_hook("tests_passed")
class TestsPassedHook(RewardHook):
    """The share of tests that passed in the step's last `run_tests` call; label +1 all green, -1 otherwise."""

    uses_sandbox = False

    async def score(self, step: StepContext) -> Reward | None:
        report = _test_report(step)
        if report is None:
            return None
        ran = int(report.get("tests_run") or 0)
        passed = int(report.get("tests_passed") or 0)
        all_green = bool(report.get("passed"))
        value = passed / ran if ran else 0.0
        return Reward(
            value=value,
            label=1 if all_green else -1,
            explanation=f"{passed}/{ran} tests passed" + ("" if ran else " (no test ran)"),
            components={"tests_run": ran, "tests_passed": passed, "tests_failed": report.get("tests_failed", 0)},
        )


@reward_hook("constant")
class ConstantHook(RewardHook):
    """Gives `options.value` (default 0) to every step: a no-op baseline for benchmarks and tests."""

    uses_sandbox = False

    async def score(self, step: StepContext) -> Reward | None:
        return Reward(value=float(self.options.get("value", 0.0)), explanation="constant")


@reward_hook("noop")
class NoopHook(RewardHook):
    """Scores nothing (records no reward): measures what the hook engine itself costs per step."""

    uses_sandbox = False

    async def score(self, step: StepContext) -> Reward | None:
        return None
