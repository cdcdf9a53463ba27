"""Q-table routers end to end through the `agentflow` console script: the dynamic_team example on the scripted
model, route events, `qtable show/reset/migrate`, validation errors, a model naming an agent that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agentflow.traces import TraceStore

AGENTFLOW = str(Path(sys.executable).with_name("agentflow"))


def agentflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTFLOW, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def _routes(store: Path) -> list[list[dict[str, object]]]:
    with TraceStore(store) as opened:
        runs = sorted(opened.run_ids())
        return [[e.data for e in opened.load_trace(r).events if e.type.value == "route"] for r in runs]


def test_dynamic_team_runs_offline_learns_and_shows_its_table(examples: Path) -> None:
    workflow = examples / "dynamic_team.yaml"
    for _ in range(2):
        result = agentflow("run", str(workflow), cwd=examples.parent)
        assert result.returncode == 0, result.stderr
        assert "planner -> team -> coder -> team -> tester -> team -> reviewer -> team" in result.stdout
    routes = _routes(examples.parent / ".agentflow")
    assert len(routes) == 2
    first = routes[0]
    assert [r["to"] for r in first] == ["coder", "tester", "reviewer", "END"]
    decision = first[0]["qtable"]
    assert isinstance(decision, dict)
    assert decision["chosen_by"] == "model"  # the scripted planner named the coder among the candidates offered
    assert decision["state"] == "planner"
    assert set(decision["candidates"]) == {"coder", "tester", "reviewer", "END"}  # cold start: every other agent
    assert decision["epsilon"] == 0.3
    assert set(decision["q_values"]) == {"coder", "tester", "reviewer", "END"}
    assert first[-1]["qtable"]["episode"]["learned"] is True  # type: ignore[index]
    # the second run saw what the first learned
    assert routes[1][0]["qtable"]["q_values"]["coder"] < 0  # type: ignore[index]

    shown = agentflow("qtable", "show", str(workflow), "--json", cwd=examples.parent)
    assert shown.returncode == 0, shown.stderr
    (report,) = json.loads(shown.stdout)
    assert report["episodes"] == 2
    assert report["updates"]["reviewer"]["END"] == 2
    assert len(report["curve"]) == 2
    # reward of each episode: planner->coder -2*5+5*1, coder->tester -2*3+5*0.8, tester->reviewer -2*4+5*0.6, END 90
    assert report["curve"][0] == -5 - 2 - 5 + 90
    text = agentflow("qtable", "show", str(workflow), "--router", "team", cwd=examples.parent)
    assert text.returncode == 0, text.stderr
    assert "pruned (Q <= -50): none" in text.stdout
    assert "reward per episode (2)" in text.stdout

    # another version of the workflow: refused with a clear message, until migrated
    workflow.write_text(workflow.read_text().replace("salary: {planner: 2,", "salary: {planner: 3,"))
    refused = agentflow("run", str(workflow), cwd=examples.parent)
    assert refused.returncode != 0
    assert "learned on template" in refused.stderr and "agentflow qtable migrate" in refused.stderr
    migrated = agentflow("qtable", "migrate", str(workflow), cwd=examples.parent)
    assert migrated.returncode == 0, migrated.stderr
    assert "router team: kept 4 values, dropped 0" in migrated.stdout
    assert agentflow("run", str(workflow), cwd=examples.parent).returncode == 0
    reset = agentflow("qtable", "reset", str(workflow), cwd=examples.parent)
    assert reset.returncode == 0 and "removed 1 Q-table" in reset.stdout
    after = json.loads(agentflow("qtable", "show", str(workflow), "--json", cwd=examples.parent).stdout)
    assert after[0]["episodes"] == 0


def test_validate_refuses_a_candidate_that_is_not_an_agent(examples: Path) -> None:
    workflow = examples / "dynamic_team.yaml"
    text = workflow.read_text()
    text = text.replace(
        "candidates: [planner, coder, tester, reviewer, END]", "candidates: [planner, lint, ghost, END]"
    )
    text = text.replace("  team:\n", "  lint: {kind: tool, tool: list_files, args: {path: .}}\n  team:\n").replace(
        "edges:\n", "edges:\n  - {from: lint, to: team}\n"
    )
    text = text.replace("models:", "tools: [list_files]\nmodels:")
    workflow.write_text(text)
    result = agentflow("validate", str(workflow), cwd=examples.parent)
    assert result.returncode != 0
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "candidates:" in row)
    column = text.splitlines()[line - 1].index("lint") + 1
    assert f"dynamic_team.yaml:{line}:{column}: error [graph.qtable-candidate]" in result.stdout + result.stderr
    assert "'lint', a tool node" in result.stdout + result.stderr
    assert "ghost" in result.stdout + result.stderr


def test_a_model_naming_an_unknown_agent_falls_back_to_greedy_and_is_recorded(examples: Path) -> None:
    script = examples / "dynamic_team" / "planner.script.yaml"
    script.write_text(script.read_text().replace("NEXT: coder", "NEXT: intern", 1))
    result = agentflow("run", str(examples / "dynamic_team.yaml"), cwd=examples.parent)
    assert result.returncode == 0, result.stderr
    route = _routes(examples.parent / ".agentflow")[0][0]
    first = route["qtable"]
    assert isinstance(first, dict)
    assert first["chosen_by"] == "fallback"
    assert first["model_said"] == "intern"
    assert set(first["q_values"].values()) == {0}  # an empty table: the greedy choice is a tie among the candidates
    assert first["candidates"] == ["coder", "tester", "reviewer", "END"]
    assert route["to"] in first["candidates"]


BENCH = """
name: team_bench
workflow: dynamic_team.yaml
tasks: {path: tasks.jsonl}
inputs: {task: "{task}"}
outcome: {hook: outcome, options: {mode: contains, key: plan, expected: "{expected}"}}
epochs: 1
concurrency: 1
"""


def test_bench_run_learn_updates_after_each_episode_and_freeze_learns_nothing(examples: Path) -> None:
    lines = [json.dumps({"id": f"t{i}", "task": f"task {i}", "expected": "plan"}) for i in range(3)]
    (examples / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (examples / "team_bench.yaml").write_text(BENCH)
    workflow = str(examples / "dynamic_team.yaml")
    bench = str(examples / "team_bench.yaml")
    assert agentflow("bench", "run", bench, "--learn", "--freeze", cwd=examples.parent).returncode == 2
    learned = agentflow("bench", "run", bench, "--learn", "-q", cwd=examples.parent)
    assert learned.returncode == 0, learned.stderr
    show = json.loads(agentflow("qtable", "show", workflow, "--json", cwd=examples.parent).stdout)
    assert show[0]["episodes"] == 3  # the table the bench learned is the one plain runs of the file use
    frozen = agentflow("bench", "run", bench, "--freeze", "-q", cwd=examples.parent)
    assert frozen.returncode == 0, frozen.stderr
    assert json.loads(agentflow("qtable", "show", workflow, "--json", cwd=examples.parent).stdout)[0]["episodes"] == 3
    routes = _routes(examples.parent / ".agentflow")
    assert len(routes) == 6
    assert {r["qtable"]["epsilon"] for run in routes[3:] for r in run} == {0.0}  # type: ignore[index]
    assert all(run[-1]["qtable"]["episode"]["learned"] is False for run in routes[3:])  # type: ignore[index]
    assert all(run[-1]["qtable"]["episode"]["learned"] is True for run in routes[:3])  # type: ignore[index]


def test_a_replay_takes_the_recorded_decisions_and_learns_nothing(examples: Path) -> None:
    workflow = str(examples / "dynamic_team.yaml")
    for _ in range(2):
        assert agentflow("run", workflow, cwd=examples.parent).returncode == 0
    with TraceStore(examples.parent / ".agentflow") as store:
        first = sorted(store.run_ids())[0]
    for mode in ("tape", "verify"):
        replay = agentflow("replay", first, "--mode", mode, cwd=examples.parent)
        assert replay.returncode == 0, replay.stdout + replay.stderr  # identical, though the table changed since
        assert "identical" in replay.stdout
    shown = json.loads(agentflow("qtable", "show", workflow, "--json", cwd=examples.parent).stdout)
    assert shown[0]["episodes"] == 2


def test_a_qtable_bench_on_ray_with_a_folder_store_is_refused_before_anything_runs(examples: Path) -> None:
    import importlib.util

    from tests.cli.test_cli import assert_one_line_error
    from tests.support.require import require

    require(importlib.util.find_spec("ray") is not None, "ray is not installed: pip install 'agentflow[ray]'")
    lines = [json.dumps({"id": "t0", "task": "task 0", "expected": "plan"})]
    (examples / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (examples / "team_bench.yaml").write_text(BENCH)
    bench = str(examples / "team_bench.yaml")
    for routing in ("--learn", "--freeze"):
        refused = agentflow("bench", "run", bench, "--executor", "ray", routing, cwd=examples.parent)
        message = assert_one_line_error(refused, 2)
        assert "Q-table router" in message and "PostgreSQL --store" in message
    assert not list((examples.parent / ".agentflow" / "runs").glob("*"))  # no run was started
