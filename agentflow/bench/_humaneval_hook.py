"""The ``humaneval`` reward hook: an agent's solution graded as ``agentflow bench grade humaneval`` grades samples.

The agent writes its solution (the whole function, with the imports it needs) to a file in the run's sandbox; the
hook reads it, appends the task's tests and ``check(entry_point)``, and grades that program in a fresh sandbox of
the run's backend with the grader's rules (it passes only if ``check`` returns normally within the timeout: see
``agentflow.bench._sample_runner``). Every command of the grading is recorded in the run's trace (``by:
hook:humaneval``, ``sandbox: fresh``). Options: ``file`` (default ``solution.py``), the state keys holding the
task's ``test`` and ``entry_point`` (``test_key``, ``entry_point_key``; default ``test``, ``entry_point``), and
``timeout_s`` (default 3, the reference harness's). With ``completion_key`` the hook grades a completion in the
state instead of a file, as HumanEval's samples are: ``prompt + completion`` (the prompt from ``prompt_key``,
default ``prompt``), then the tests.

It is registered with the reward-hook registry through the ``agentflow.reward_hook`` entry point (and when
``agentflow.bench`` is imported), so workflows and ``agentflow grade`` find it like any built-in hook.
"""

from __future__ import annotations

from typing import Any

from agentflow.bench._grader import DEFAULT_TIMEOUT_S, grade_programs
from agentflow.errors import ConfigError, RewardHookError
from agentflow.rewards import HookSandbox, Reward, RewardHook, StepContext, reward_hook


@reward_hook("humaneval")
class HumanEvalHook(RewardHook):
    """1 when the solution file passes the task's HumanEval tests in a fresh sandbox, else 0 (label +1 / −1)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.file = str(options.get("file", "solution.py"))
        self.completion_key = options.get("completion_key")
        self.prompt_key = str(options.get("prompt_key", "prompt"))
        self.test_key = str(options.get("test_key", "test"))
        self.entry_point_key = str(options.get("entry_point_key", "entry_point"))
        self.timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))
        if self.timeout_s <= 0:
            raise ConfigError(f"humaneval: timeout_s must be positive, not {self.timeout_s}")

    async def score(self, step: StepContext) -> Reward | None:
        if step.sandbox is None:
            raise RewardHookError("humaneval grades in a sandbox of the run's backend; it cannot score offline")
        test, entry_point = step.state.get(self.test_key), step.state.get(self.entry_point_key)
        if not isinstance(test, str) or not isinstance(entry_point, str) or not entry_point:
            raise RewardHookError(
                f"humaneval needs the task's tests and entry point in the state keys {self.test_key!r} and "
                f"{self.entry_point_key!r}"
            )
        if self.completion_key is not None:
            solution = f"{step.state.get(self.prompt_key) or ''}{step.state.get(str(self.completion_key)) or ''}"
        else:
            try:
                solution = (await step.sandbox.read_file(self.file)).decode("utf-8", errors="replace")
            except FileNotFoundError:
                return Reward(value=0.0, label=-1, explanation=f"no solution: {self.file} was not written")
        program = f"{solution}\n{test}\ncheck({entry_point})\n"
        observer = step.sandbox.observer(label="fresh") if isinstance(step.sandbox, HookSandbox) else None
        (verdict,) = await grade_programs(
            [program], backend=step.sandbox.backend, timeout=self.timeout_s, workers=1, on_exec=observer
        )
        return Reward(
            value=1.0 if verdict.passed else 0.0,
            label=1 if verdict.passed else -1,
            explanation=verdict.result,
            components={"duration_s": verdict.duration_s, "file": self.file},
        )
