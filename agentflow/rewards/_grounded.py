"""Tool-grounded step checks (GroundedPRM): a step is verified by executing something real in the sandbox.

Labels: +1 verified, −1 refuted, 0 undecided. The run-level ``R = V + F/N`` is the ``grounded`` aggregate
(:mod:`agentflow.rewards._aggregate`), selected with ``aggregate: [grounded]`` and ``outcome:`` in the YAML.
"""

from __future__ import annotations

from typing import Any

from agentflow.errors import RewardHookError
from agentflow.rewards._base import Reward, RewardHook, StepContext, reward_hook
from agentflow.rewards._sandbox import HookSandbox
from agentflow.sandboxes._base import Sandbox
from agentflow.traces._events import EventType
from agentflow.traces._payloads import ToolCallData, ToolResultData


def _report_from_events(step: StepContext) -> dict[str, Any] | None:
    for event in reversed(step.events):
        if event.type is EventType.TOOL_RESULT:
            data = event.data_as(ToolResultData)
            result = data.get("result")
            if data.get("tool") == "run_tests" and isinstance(result, dict):
                return result
    return None


async def _run_tests(sandbox: Sandbox, options: dict[str, Any]) -> dict[str, Any]:
    """Run the tests with the run_tests tool's own runner and parser (pytest or unittest)."""
    from agentflow.tools import ToolContext
    from agentflow.tools._tests import run_tests

    arguments = {"path": options.get("path", "tests"), "framework": options.get("framework", "auto")}
    outcome = await run_tests.invoke(ToolContext(sandbox=sandbox), arguments)
    if not outcome.ok or not isinstance(outcome.result, dict):
        raise RewardHookError(f"tests_delta could not run the tests: {outcome.error}")
    return outcome.result


@reward_hook("tests_delta")
class TestsDeltaHook(RewardHook):
    """The change in passing tests a step made: ``(passed_t − passed_{t−1}) / tests_run``.

    Uses the step's own ``run_tests`` result when it has one, else runs the tests in the sandbox (options ``path``,
    ``framework``). Label +1 more tests pass, −1 fewer, 0 the same. The first step compares with the tests as they
    stood when the run started. Offline it scores steps that ran the tests and skips the others.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._passed: dict[str, int] = {}

    async def start_run(self, step: StepContext) -> None:
        if step.sandbox is not None:
            self._passed[step.run_id] = int((await _run_tests(step.sandbox, dict(self.options)))["tests_passed"])

    async def finish_run(self, run_id: str) -> None:
        self._passed.pop(run_id, None)

    async def score(self, step: StepContext) -> Reward | None:
        report = _report_from_events(step)
        if report is None:
            if step.sandbox is None:
                return None
            report = await _run_tests(step.sandbox, dict(self.options))
        passed, ran = int(report.get("tests_passed") or 0), int(report.get("tests_run") or 0)
        before = self._passed.get(step.run_id, passed)
        self._passed[step.run_id] = passed
        delta = passed - before
        return Reward(
            value=delta / ran if ran else 0.0,
            label=(delta > 0) - (delta < 0),
            explanation=f"passing tests {before} -> {passed} of {ran}",
            components={"passed_before": before, "passed": passed, "tests_run": ran, "delta": delta},
        )


@reward_hook("verify_command")
class VerifyCommandHook(RewardHook):
    """Runs ``options.command`` (argv list, or a string for ``sh -c``) in the sandbox after the step.

    Exit 0 verifies (+1), an exit code in ``options.refute_exit_codes`` (default [1]) refutes (−1), anything else
    (another code, a timeout) is undecided (0). Needs the run's sandbox.
    """

    async def score(self, step: StepContext) -> Reward | None:
        command = self.options.get("command")
        if not command:
            raise RewardHookError("verify_command needs options.command")
        if step.sandbox is None:
            raise RewardHookError("verify_command runs a command in the run's sandbox; it cannot score offline")
        argv = ["sh", "-c", command] if isinstance(command, str) else [str(part) for part in command]
        result = await step.sandbox.exec(argv, timeout=self.options.get("timeout_s"))
        refute = set(self.options.get("refute_exit_codes", [1]))
        if result.exit_code == 0 and not result.timed_out:
            label = 1
        elif result.exit_code in refute and not result.timed_out:
            label = -1
        else:
            label = 0
        tail = (result.stdout + result.stderr)[-300:]
        return Reward(
            value=float(label),
            label=label,
            explanation=f"exit {result.exit_code}{' (timed out)' if result.timed_out else ''}: {tail}",
            components={"exit_code": result.exit_code, "timed_out": result.timed_out},
        )


def _comparable(data: ToolResultData | dict[str, Any]) -> Any:
    result = data.get("result")
    if isinstance(result, dict):  # structured results: compare without free text that holds timings
        return {"ok": data.get("ok"), **{k: v for k, v in result.items() if k != "output"}}
    return {"ok": data.get("ok"), "content": data.get("content")}


@reward_hook("reexecute")
class ReexecuteHook(RewardHook):
    """Re-runs the step's tool calls in a fresh sandbox holding a copy of the run's files, and compares outputs.

    Same output: +1 (reproduced); different: −1 (non-deterministic, or a recorded result the tool does not give:
    fabricated). Only tools in ``options.tools`` (default: read-only ones: read_file, list_files, run_tests) are
    re-run, since re-running an edit on the edited files proves nothing. Needs the run's sandbox (for its files and
    backend).
    """

    async def score(self, step: StepContext) -> Reward | None:
        from agentflow.sandboxes import create_sandbox
        from agentflow.tools import ToolContext
        from agentflow.tools._registry import tool_registry

        wanted = set(self.options.get("tools", ["read_file", "list_files", "run_tests"]))
        tool_calls = [e.data_as(ToolCallData) for e in step.events if e.type is EventType.TOOL_CALL]
        calls = {call.get("call_id"): call for call in tool_calls}
        results = [e.data_as(ToolResultData) for e in step.events if e.type is EventType.TOOL_RESULT]
        pairs = [
            (calls[result.get("call_id")], result)
            for result in results
            if result.get("tool") in wanted and result.get("call_id") in calls
        ]
        if not pairs:
            return None
        if step.sandbox is None:
            raise RewardHookError("reexecute needs the run's sandbox to copy its files; it cannot score offline")
        fresh: Sandbox = await create_sandbox(step.sandbox.backend)
        if isinstance(step.sandbox, HookSandbox):  # the engine's view: the fresh sandbox's commands are recorded too
            fresh = step.sandbox.recorded(fresh, label="fresh")
        try:
            for path in await step.sandbox.list_files("."):
                await fresh.write_file(path, await step.sandbox.read_file(path))
            mismatches: list[str] = []
            for call, recorded in pairs:
                tool = tool_registry.get(str(call.get("tool")))
                outcome = await tool.invoke(ToolContext(sandbox=fresh), str(call.get("arguments") or "{}"))
                again = {"ok": outcome.ok, "content": outcome.content, "result": outcome.result}
                if _comparable(again) != _comparable(recorded):
                    mismatches.append(str(call.get("tool")))
        finally:
            await fresh.close()
        label = -1 if mismatches else 1
        return Reward(
            value=float(label),
            label=label,
            explanation=f"{len(pairs) - len(mismatches)}/{len(pairs)} tool calls reproduced"
            + (f"; differ: {', '.join(mismatches)}" if mismatches else ""),
            components={"calls": len(pairs), "reproduced": len(pairs) - len(mismatches)},
        )
