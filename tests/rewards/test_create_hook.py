"""create_reward_hook: a hook by name or by path, built with its options and configured with the workflow's context."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentflow.errors import UnknownBackendError
from agentflow.rewards import HookContext, create_reward_hook
from agentflow.rewards._base import FunctionHook
from tests.rewards._support import StepEvents, step

HOOKS = '''
from agentflow.rewards import Reward, RewardHook


class Echo(RewardHook):
    """Reports what it was given: its options and the workflow's folder and models."""

    async def score(self, step):
        return Reward(
            value=float(self.options["value"]),
            components={"base_dir": str(self.base_dir), "models": dict(self.models)},
        )


def half(step):
    return step.options["scale"] / 2
'''


def _workflow_folder(root: Path) -> Path:
    folder = root / "workflow"
    (folder / "hooks").mkdir(parents=True)
    (folder / "hooks" / "mine.py").write_text(HOOKS)
    return folder


async def test_a_hook_by_name_reads_its_model_through_the_context(tmp_path: Path) -> None:
    # "judge" is a name under the workflow's models; its scripted file is relative to the workflow's folder
    script = {"responses": [{"content": '{"label": 1, "explanation": "the goal is met"}'}]}
    (tmp_path / "judge.yaml").write_text(yaml.safe_dump(script))
    context = HookContext(base_dir=tmp_path, models={"judge": "scripted:judge.yaml"})
    hook = create_reward_hook("llm_judge", {"model": "judge", "task_key": "goal"}, context)
    assert (hook.name, hook.options) == ("llm_judge", {"model": "judge", "task_key": "goal"})
    assert (hook.base_dir, hook.models) == (tmp_path, {"judge": "scripted:judge.yaml"})
    judged = await hook.score(step(StepEvents().tool("run_tests", {}, content="2 passed"), None, state={"goal": "g"}))
    assert judged is not None and (judged.value, judged.label) == (1.0, 1)
    assert judged.explanation == "the goal is met"


async def test_a_hook_class_by_path_resolves_against_the_workflow_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _workflow_folder(tmp_path)
    monkeypatch.chdir(tmp_path)  # not the workflow's folder: the path must resolve against base_dir
    context = HookContext(base_dir=folder, models={"main": "openai:gpt-4o-mini"})
    hook = create_reward_hook("hooks/mine.py:Echo", {"value": 0.25}, context)
    assert hook.name == "hooks/mine.py:Echo"
    reward = await hook.score(step([], None))
    assert reward is not None and reward.value == 0.25
    assert reward.components == {"base_dir": str(folder), "models": {"main": "openai:gpt-4o-mini"}}


async def test_a_hook_function_by_path_without_a_context_resolves_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_workflow_folder(tmp_path))
    hook = create_reward_hook("hooks/mine.py:half", {"scale": 3})
    assert isinstance(hook, FunctionHook)
    assert (hook.name, hook.options, hook.base_dir, hook.models) == ("hooks/mine.py:half", {"scale": 3}, None, {})
    reward = await hook.score(step([], None, options=hook.options))
    assert reward is not None and reward.value == 1.5


def test_an_unknown_hook_name_is_refused_with_the_choices() -> None:
    with pytest.raises(UnknownBackendError, match="exit_code"):
        create_reward_hook("exit_cod", {}, HookContext())
