"""Reward hooks by path (`hooks/mine.py:fn`), like tools: one resolver for validate, run, replay and grade."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.cli.test_cli import agentflow

HOOKS = '''
import re

from agentflow.rewards import Reward, RewardHook, StepContext


def _answer(step: StepContext) -> str:
    for event in reversed(step.events):
        if event.type == "model_response" and not event.data.get("tool_calls"):
            return str(event.data["message"].get("content") or "")
    return ""


def answer_has_number(step: StepContext) -> float:
    """1 when the final answer holds a number."""
    return 1.0 if re.search(r"[0-9]", _answer(step)) else 0.0


class AnswerLength(RewardHook):
    """The final answer's length in words, as a value and a label."""

    async def score(self, step: StepContext) -> Reward | None:
        words = len(_answer(step).split())
        if not words:
            return None
        return Reward(value=float(words), label=1 if words <= self.options.get("max_words", 10) else -1)
'''


def write_workflow(root: Path, hooks: list[dict[str, object]]) -> Path:
    (root / "hooks").mkdir(exist_ok=True)
    (root / "hooks" / "mine.py").write_text(HOOKS)
    (root / "script.yaml").write_text(yaml.safe_dump({"responses": [{"content": "The answer is 42."}]}))
    spec = {
        "name": "answers",
        "models": {"m": {"model": "scripted:script.yaml"}},
        "start": "answer",
        "nodes": {"answer": {"kind": "agent", "model": "m", "prompt": "answer", "max_turns": 1}},
        "end": ["answer"],
        "rewards": hooks,
    }
    path = root / "wf.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def rewards_of(root: Path, run_id: str) -> list[tuple[str, float]]:
    shown = json.loads(agentflow("show", run_id, "--json", cwd=root).stdout)
    return [(e["data"]["hook"], e["data"]["value"]) for e in shown["events"] if e["type"] == "reward"]


def test_a_hook_by_path_works_in_validate_run_replay_and_grade(tmp_path: Path) -> None:
    workflow = write_workflow(
        tmp_path,
        [
            {"hook": "hooks/mine.py:answer_has_number", "on": "run"},
            {"hook": "hooks/mine.py:AnswerLength", "on": "step", "options": {"max_words": 3}},
        ],
    )
    validated = agentflow("validate", str(workflow), cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    ran = agentflow("run", str(workflow), "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    live = rewards_of(tmp_path, run_id)
    assert ("hooks/mine.py:answer_has_number", 1.0) in live
    assert ("hooks/mine.py:AnswerLength", 4.0) in live

    replayed = agentflow("replay", run_id, "--mode", "tape", "--json", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    report = json.loads(replayed.stdout)
    assert report["identical"] is True
    assert sorted(rewards_of(tmp_path, report["replay_run_id"])) == sorted(live)

    graded = agentflow("grade", run_id, "--hooks", "hooks/mine.py:answer_has_number:run", "--json", cwd=tmp_path)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    stored = json.loads(graded.stdout)["runs"][run_id]["rewards"]
    assert [(r["hook"], r["value"]) for r in stored] == [("hooks/mine.py:answer_has_number", 1.0)]


def test_a_mistyped_hook_function_is_caught_by_validate_with_the_existing_name(tmp_path: Path) -> None:
    workflow = write_workflow(tmp_path, [{"hook": "hooks/mine.py:answer_has_numbr", "on": "run"}])
    validated = agentflow("validate", str(workflow), "--json", cwd=tmp_path)
    assert validated.returncode == 1
    [found] = [d for d in json.loads(validated.stdout)["files"][0]["diagnostics"] if d["code"] == "reward.plugin"]
    assert (found["file"], found["line"]) == (str(workflow), 15), "the workflow line that names the hook"
    assert "no function 'answer_has_numbr'" in found["message"]
    assert found["fix"].startswith("did you mean 'answer_has_number'?")
