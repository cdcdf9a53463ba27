"""Grading a real run from the CLI: the workflow's own rewards, failed hooks, passes in `show`, replays in `runs`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentflow.cli import run_cli
from agentflow.rerun import replay_run
from agentflow.runtime import run_workflow
from agentflow.traces import LIVE_REWARDS, EventType, TraceStore

REWARDS: list[dict[str, Any]] = [
    {"hook": "exit_code", "on": "step", "nodes": ["plan"]},
    {"hook": "tests_passed", "on": "node", "nodes": ["test"]},
    {"hook": "outcome", "on": "run", "options": {"mode": "tests"}},
]


def _workflow(examples: Path, name: str, rewards: list[dict[str, Any]]) -> Path:
    spec = yaml.safe_load((examples / "fix_failing_test.yaml").read_text())
    spec["rewards"] = rewards
    path = examples / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _recorded(examples: Path, store: TraceStore, name: str, rewards: list[dict[str, Any]]) -> str:
    # the CLI runs its own event loop, so these tests are synchronous and run the workflow in one too
    result = asyncio.run(run_workflow(_workflow(examples, name, rewards), store=store))
    assert result.status == "succeeded", result.error
    return result.run_id


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_grade_without_hooks_uses_the_workflows_rewards_and_show_lists_the_pass(
    examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    run_id = _recorded(examples, store, "own", REWARDS)
    live = store.list_rewards(run_id)
    trace_rewards = [e for e in store.load_trace(run_id).events if e.type is EventType.REWARD]
    assert [(r.pass_id, r.hook, r.target_seq, r.value) for r in live] == [
        (LIVE_REWARDS, e.data["hook"], e.data["target_seq"], e.data["value"]) for e in trace_rewards
    ]

    assert run_cli(["grade", run_id, "--store", str(store.root), "--json"]) == 0
    graded = _json(capsys)
    assert graded["hooks"] == ["exit_code:step", "tests_passed:node", "outcome:run"]
    assert graded["hook_failures"] == 0
    offline = graded["runs"][run_id]["rewards"]
    assert {r["node"] for r in offline if r["hook"] == "exit_code"} == {"plan"}  # the declared nodes only
    # the same rewards the hooks gave while the run went, now as a grading pass
    assert sorted((r["hook"], r["target_seq"], r["value"]) for r in offline) == sorted(
        (r.hook, r.target_seq, r.value) for r in live
    )
    passes = {r.pass_id for r in store.list_rewards(run_id)}
    assert passes == {LIVE_REWARDS, graded["pass_id"]}

    assert run_cli(["show", run_id, "--store", str(store.root), "--json"]) == 0
    [shown] = _json(capsys)["grading_passes"]
    assert (shown["pass_id"], shown["rewards"], shown["hook_failures"]) == (graded["pass_id"], len(offline), 0)
    assert run_cli(["show", run_id, "--store", str(store.root)]) == 0
    assert f"grading pass {graded['pass_id']} (append" in capsys.readouterr().out


def test_a_pass_in_which_hooks_failed_says_how_many_and_exits_1(
    examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    # verify_command needs the run's sandbox: offline it fails on each of the test node's two visits
    rewards = [*REWARDS, {"hook": "verify_command", "on": "node", "nodes": ["test"], "options": {"command": "true"}}]
    run_id = _recorded(examples, store, "failing", rewards)

    assert run_cli(["grade", run_id, "--store", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert "2 hook failures in this pass" in out
    assert run_cli(["show", run_id, "--store", str(store.root), "--json"]) == 0
    [shown] = _json(capsys)["grading_passes"]
    assert shown["hook_failures"] == 2


def test_runs_marks_replays(
    examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: one line per run
    store = TraceStore(tmp_path / ".agentflow")
    run_id = _recorded(examples, store, "replayed", REWARDS)
    report = asyncio.run(replay_run(store, run_id, mode="tape"))
    assert report.identical, report.divergence

    assert run_cli(["runs", "--store", str(store.root), "--json"]) == 0
    listed = {row["run_id"]: row["replay_of"] for row in _json(capsys)["runs"]}
    assert listed == {run_id: None, report.replay_run_id: run_id}
    assert run_cli(["runs", "--store", str(store.root)]) == 0
    table = capsys.readouterr().out
    assert "replay of" in table
    assert next(line for line in table.splitlines() if report.replay_run_id in line).rstrip().endswith(run_id)
