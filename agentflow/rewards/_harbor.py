"""``harbor_verifier``: a Harbor task's own verifier as a run's outcome (declare it ``on: run``).

After the agent's run, in the same sandbox (the task's container): the task's ``tests/`` folder is copied to
``/tests``, ``/logs/verifier`` is emptied (and given to the verifier's user), ``bash /tests/test.sh`` runs from the
task's working directory within the task's verifier timeout, as the task's ``[verifier] user`` (root by default),
and the reward it wrote is the run's outcome: ``/logs/verifier/reward.txt`` (one number) or ``reward.json``
(``{"reward": x}``, or one number among its values; all kept as components). Every command is a ``sandbox_exec``
event of the run (``by: hook:harbor_verifier``), the verifier's stdout and stderr with it. Which verifier a run
has is in its ``run_started`` (``bench.verifier``), put there by ``bench run``.

Verdicts: the reward file's value (label +1 when >= 0.5, else -1); no reward file, or one that holds no number,
is value 0 ("the verifier wrote no reward"); a verifier that outlived its timeout is value 0 with that reason. A
sandbox that failed under the verifier (its container died) raises: the hook's failure is recorded, and the
benchmark counts the attempt as errored, never as the agent's failure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from agentflow.errors import RewardHookError, SandboxError
from agentflow.rewards._base import Reward, RewardHook, StepContext, reward_hook
from agentflow.sandboxes import commands_as
from agentflow.sandboxes._archive import tar_folder
from agentflow.sandboxes._base import ExecResult
from agentflow.traces._events import EventType
from agentflow.traces._payloads import RunStartedData, VerifierTag

TESTS_DIR = "/tests"
REWARD_DIR = "/logs/verifier"
ROOT = "0"
# $1 the tests folder, $2 the reward folder (owned by $3, the verifier's user, who writes the reward there); the
# tests come as a tar on stdin
_STAGE = (
    'rm -rf "$1" "$2" && mkdir -p "$1" "$2" && tar -x --no-same-owner -C "$1" && '
    'if [ "$3" != 0 ]; then u=${3%%:*}; g=${3#*:}; [ "$g" = "$3" ] && g=$(id -g "$u" 2>/dev/null || echo "$u"); '
    'chown "$u:$g" "$2"; fi'
)
_READ_REWARD = (
    'for name in reward.txt reward.json; do if [ -f "$1/$name" ]; then echo "$name"; cat "$1/$name"; exit 0; fi; '
    "done; exit 3"
)
_NO_REWARD_FILE = 3


@reward_hook("harbor_verifier")
class HarborVerifier(RewardHook):
    """Runs the Harbor task's ``tests/test.sh`` in the run's sandbox and gives the reward it wrote."""

    async def score(self, step: StepContext) -> Reward | None:
        if step.kind != "run":
            return None
        verifier = _verifier_of(step)
        if step.sandbox is None:
            return None  # offline grading: the container is gone, the recorded reward stands
        box = step.sandbox
        user = verifier.get("user")
        with commands_as(ROOT):  # over the agent's user: the verifier's folders are the system's
            staged = await box.exec(
                ["sh", "-c", _STAGE, "stage", TESTS_DIR, REWARD_DIR, user or ROOT],
                stdin=tar_folder(Path(verifier["tests_dir"])),
                timeout=120,
            )
        if staged.exit_code != 0:
            raise SandboxError(f"could not copy the verifier's tests to {TESTS_DIR}: {staged.stderr[-500:]}")
        timeout = float(verifier["timeout_s"])
        with commands_as(user or ROOT):
            ran = await box.exec(
                ["sh", "-c", 'cd "$1" && exec bash /tests/test.sh', "verifier", verifier["workdir"]],
                env=verifier["env"],
                timeout=timeout,
            )
        components: dict[str, Any] = {"exit_code": ran.exit_code, "verifier_s": round(ran.duration_s, 3)}
        if user is not None:
            components["user"] = user
        if ran.timed_out:
            return Reward(0.0, -1, f"the verifier timed out after {timeout:g}s", {**components, "timed_out": True})
        with commands_as(ROOT):
            found = await box.exec(["sh", "-c", _READ_REWARD, "read", REWARD_DIR], timeout=60)
        value = _reward_value(found, components)
        if value is None:
            return Reward(
                0.0, -1, f"the verifier wrote no reward (test.sh exited {ran.exit_code}){_tail(ran)}", components
            )
        return Reward(value, 1 if value >= 0.5 else -1, f"the verifier's reward: {value:g}", components)


def _verifier_of(step: StepContext) -> VerifierTag:
    for event in step.events:
        if event.type is EventType.RUN_STARTED:
            bench = event.data_as(RunStartedData).get("bench")
            if bench is not None and "verifier" in bench:
                return bench["verifier"]
            break
    raise RewardHookError(
        "harbor_verifier scores runs of a harbor benchmark: this run's run_started names no verifier "
        "(run it with `agentflow bench run` on `tasks: {source: harbor, ...}`)"
    )


def _reward_value(found: ExecResult, components: dict[str, Any]) -> float | None:
    """The number in the reward file the verifier wrote (None: no file, or no number in it)."""
    if found.exit_code == _NO_REWARD_FILE or found.exit_code != 0:
        return None
    name, _, text = found.stdout.partition("\n")
    components["reward_file"] = f"{REWARD_DIR}/{name}"
    if name == "reward.txt":
        return _number(text.strip())
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(parsed, dict):
        numbers = {str(key): value for key, value in parsed.items() if _number(value) is not None}
        components["rewards"] = numbers
        if "reward" in numbers:
            return _number(numbers["reward"])
        return _number(next(iter(numbers.values()))) if len(numbers) == 1 else None
    return _number(parsed)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _tail(result: ExecResult) -> str:
    text = (result.stderr.strip() or result.stdout.strip())[-300:]
    return f": {text}" if text else ""
