"""Best-of-N on agent nodes: candidates as branches, scored by a hook, the best kept (state, sandbox), replayed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import GraphValidationError, SpecError, TraceError
from agentflow.rerun import replay_run, resume_run
from agentflow.runtime import compile_workflow, run_workflow
from agentflow.traces import Event, EventType, TraceStore, realized_graph
from tests.cli.test_cli import agentflow, assert_one_line_error
from tests.runtime.conftest import Workspace
from tests.support.require import require

SANDBOX_DIRS = f"agentflow-sandbox-{os.getpid()}-"


def _sandbox_dirs() -> set[str]:
    """The local sandboxes' private folders this process has open (a closed sandbox removes its folder)."""
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith(SANDBOX_DIRS)}


def _choice(events: list[Event], node: str = "code") -> dict[str, Any]:
    finished = [e for e in events if e.type is EventType.NODE_FINISHED and e.node == node and "best_of" in e.data]
    assert len(finished) == 1
    return dict(finished[0].data["best_of"])


def _by_branch(events: list[Event], type_: EventType) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.type is type_ and "branch" in event.data:
            found.setdefault(event.data["branch"], []).append(dict(event.data))
    return found


async def test_the_example_keeps_the_candidate_that_makes_the_tests_pass_and_leaks_no_sandbox(
    tmp_path: Path, examples: Path
) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    before = _sandbox_dirs()

    result = await run_workflow(examples / "fix_failing_test_best_of.yaml", store=store)

    assert result.status == "succeeded", result.error
    assert result.final_state["tests_passed"] is True  # `test` ran in the kept candidate's sandbox
    assert result.final_state["change"] == "Fixed mean() and median()."
    assert _sandbox_dirs() == before  # the run's first sandbox, the losing forks and the kept one: all closed
    events = store.load_trace(result.run_id).events
    choice = _choice(events)
    assert choice["by"] == "tests_delta" and choice["sandbox"] == "fork" and choice["vary"] == "seed"
    assert choice["chosen"] == "code#1"
    assert [(c["branch"], c["score"], c["error"], c["seed"]) for c in choice["candidates"]] == [
        ("code#0", 0.25, None, 0),
        ("code#1", 0.5, None, 1),
        ("code#2", 0.0, None, 2),
        ("code#3", 0.25, None, 3),
    ]
    # every candidate's events carry its branch: its requests (with its own seed), its tool calls, its score
    requests = _by_branch(events, EventType.MODEL_REQUEST)
    assert {branch: {r["settings"]["seed"] for r in data} for branch, data in requests.items()} == {
        "code#0": {0},
        "code#1": {1},
        "code#2": {2},
        "code#3": {3},
    }
    assert [len(_by_branch(events, EventType.TOOL_CALL)[f"code#{i}"]) for i in range(4)] == [1, 2, 1, 1]
    scores = _by_branch(events, EventType.REWARD)
    assert [[r["value"] for r in scores[f"code#{i}"] if r["hook"] == "tests_delta"] for i in range(4)] == [
        [0.25],
        [0.5],
        [0.0],
        [0.25],
    ]
    # the realized graph: one visit of code on the path, its candidates beside it
    graph = realized_graph(events)
    assert graph["path"] == ["plan", "code", "test"]
    assert [entry["chosen"] for entry in graph["best_of"]] == ["code#1"]
    # the run's limits counted every candidate: 4 + 9 model calls
    assert sum(1 for e in events if e.type is EventType.MODEL_REQUEST) == 13

    report = await replay_run(store, result.run_id, mode="tape")

    assert report.identical, report.divergence
    assert report.status == "succeeded" and report.sandbox_execs == 0
    replayed = store.load_trace(report.replay_run_id).events
    assert _choice(replayed) == choice

    # each candidate was served its own responses, whatever order the candidates ran in
    def answers(trace: list[Event]) -> dict[str, list[Any]]:
        return {b: [r["message"] for r in data] for b, data in _by_branch(trace, EventType.MODEL_RESPONSE).items()}

    assert answers(replayed) == answers(events)
    assert len(answers(events)) == 4
    # verify mode runs the tools and the hook again, in new forks: the same commands, scores and choice
    verified = await replay_run(store, result.run_id, mode="verify")
    assert verified.identical, verified.divergence
    assert _choice(store.load_trace(verified.replay_run_id).events) == choice
    assert _sandbox_dirs() == before


def test_show_lists_the_candidates_their_scores_and_the_kept_one(examples: Path, tmp_path: Path) -> None:
    ran = agentflow("run", str(examples / "fix_failing_test_best_of.yaml"), "--json", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]

    shown = agentflow("show", run_id, cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert "best of code by tests_delta: code#0 0.25; code#1 0.50 (kept); code#2 0.00; code#3 0.25" in shown.stdout
    # each candidate's events name its branch, in the branch column beside the node
    assert any(line.split()[1:3] == ["code#2", "code"] for line in shown.stdout.splitlines() if len(line.split()) > 3)
    payload = json.loads(agentflow("show", run_id, "--json", cwd=tmp_path).stdout)
    assert payload["best_of"][0]["chosen"] == "code#1"


def _best_of_workflow(ws: Workspace, best_of: dict[str, Any], script: list[Any], **overrides: Any) -> Path:
    """One agent node `work` with best_of, whose answer goes to state `answer`."""
    spec: dict[str, Any] = {
        "name": "best_of_only",
        "state": {"answer": {"type": "str", "default": ""}},
        "models": {"m": {"model": "scripted:script.yaml", "temperature": 0.2}},
        "tools": ["list_files"],
        "start": "work",
        "nodes": {
            "work": {
                "kind": "agent",
                "model": "m",
                "prompt": "do it",
                "tools": ["list_files"],
                "max_turns": 2,
                "output": {"answer": "answer"},
                "best_of": best_of,
            }
        },
        "end": ["work"],
    }
    spec.update(overrides)
    return ws.workflow(spec, script)


LONGEST_ANSWER = """\
from agentflow.traces import EventType


def longest(step):
    answers = [e.data["message"]["content"] or "" for e in step.events if e.type is EventType.MODEL_RESPONSE]
    return float(len(answers[-1]))


def broken(step):
    raise RuntimeError("the judge is down")
"""


async def test_vary_temperature_spreads_to_one_and_the_best_score_wins(ws: Workspace) -> None:
    ws.file("hooks.py", LONGEST_ANSWER)
    script = [{"candidates": [["short"], ["the longest one"], ["medium one"]]}]
    workflow = _best_of_workflow(ws, {"n": 3, "by": "hooks.py:longest", "vary": "temperature"}, script)

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["answer"] == "the longest one"
    events = ws.store.load_trace(result.run_id).events
    choice = _choice(events, "work")
    assert choice["chosen"] == "work#1"
    assert [(c["temperature"], c["score"]) for c in choice["candidates"]] == [(0.2, 5.0), (0.6, 15.0), (1.0, 10.0)]
    requests = _by_branch(events, EventType.MODEL_REQUEST)
    assert [requests[f"work#{i}"][0]["settings"]["temperature"] for i in range(3)] == [0.2, 0.6, 1.0]


async def test_a_tie_keeps_the_lowest_index_and_a_failed_candidate_is_never_kept(ws: Workspace) -> None:
    # candidate 0 runs out of turns (it keeps calling tools); 1 and 2 tie on the constant hook
    looping = {"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]}
    script = [{"candidates": [[looping, looping], ["one"], ["two"]]}]
    workflow = _best_of_workflow(ws, {"n": 3, "by": "constant", "options": {"value": 1}}, script)

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["answer"] == "one"
    choice = _choice(ws.store.load_trace(result.run_id).events, "work")
    assert choice["chosen"] == "work#1"
    first = choice["candidates"][0]
    assert first["score"] is None and "max_turns" in first["error"]
    assert [c["score"] for c in choice["candidates"][1:]] == [1.0, 1.0]


async def test_a_hook_failing_on_every_candidate_is_recorded_and_the_first_candidate_kept(ws: Workspace) -> None:
    ws.file("hooks.py", LONGEST_ANSWER)
    script = [{"candidates": [["first"], ["second, longer"]]}]
    workflow = _best_of_workflow(ws, {"n": 2, "by": "hooks.py:broken"}, script)

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["answer"] == "first"
    events = ws.store.load_trace(result.run_id).events
    choice = _choice(events, "work")
    assert choice["chosen"] == "work#0"
    assert all(c["score"] is None and "the judge is down" in c["error"] for c in choice["candidates"])
    failures = [e for e in events if e.type is EventType.ERROR and e.data.get("hook") == "hooks.py:broken"]
    assert sorted(e.data["branch"] for e in failures) == ["work#0", "work#1"]


async def test_every_candidate_failing_fails_the_node_with_the_first_error(ws: Workspace) -> None:
    looping = {"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]}
    script = [{"candidates": [[looping, looping]]}]  # every candidate takes this one list
    workflow = _best_of_workflow(ws, {"n": 2, "by": "constant", "sandbox": "fork"}, script)
    before = _sandbox_dirs()

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "limit_exceeded"
    assert "max_turns" in (result.error or "")
    assert _sandbox_dirs() == before
    choice = _choice(ws.store.load_trace(result.run_id).events, "work")
    assert choice["chosen"] is None and len(choice["candidates"]) == 2


async def test_the_runs_limits_count_every_candidate_and_stop_them_all(ws: Workspace) -> None:
    # two candidates of two turns each would make four model calls: the run allows three
    turns = [{"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]}, "done"]
    workflow = _best_of_workflow(
        ws, {"n": 2, "by": "constant", "sandbox": "fork"}, [{"candidates": [turns]}], limits={"max_model_calls": 3}
    )
    before = _sandbox_dirs()

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "limit_exceeded"
    assert result.limit is not None and result.limit["name"] == "max_model_calls"
    assert _sandbox_dirs() == before
    requests = [e for e in ws.store.load_trace(result.run_id).events if e.type is EventType.MODEL_REQUEST]
    assert len(requests) == 3


async def test_each_candidate_beyond_the_first_is_a_step_of_the_run(ws: Workspace) -> None:
    workflow = _best_of_workflow(ws, {"n": 3, "by": "constant"}, ["done"], limits={"max_steps": 2})

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "limit_exceeded"
    assert result.limit is not None and result.limit["name"] == "max_steps"


async def test_shared_candidates_work_in_the_runs_sandbox_and_the_script_goes_on_from_the_kept_one(
    ws: Workspace,
) -> None:
    ws.file("hooks.py", LONGEST_ANSWER)
    script = [{"candidates": [["a"], ["bbb", "unused"], ["cc"]]}, "after"]
    spec_path = _best_of_workflow(ws, {"n": 3, "by": "hooks.py:longest"}, script)
    spec = compile_workflow(spec_path).loaded.spec.model_dump(by_alias=True, exclude_none=True)
    # a second agent after the best-of node: it gets the entry after the `candidates`
    spec["state"]["after"] = {"type": "str", "default": ""}
    spec["nodes"]["next"] = {"kind": "agent", "model": "m", "prompt": "go on", "output": {"after": "answer"}}
    spec["end"], spec["edges"] = ["next"], [{"from": "work", "to": "next"}]
    workflow = ws.workflow(spec, name="two.yaml")

    result = await run_workflow(workflow, store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state == {"answer": "bbb", "after": "after"}
    assert _choice(ws.store.load_trace(result.run_id).events, "work")["sandbox"] == "shared"


def test_best_of_naming_an_unknown_hook_is_refused_at_its_line(ws: Workspace) -> None:
    workflow = _best_of_workflow(ws, {"n": 2, "by": "tests_delt"}, ["done"])
    line = next(n for n, text in enumerate(workflow.read_text().splitlines(), 1) if "tests_delt" in text)

    with pytest.raises(GraphValidationError) as caught:
        compile_workflow(workflow)

    [diagnostic] = caught.value.diagnostics
    assert diagnostic.code == "best_of.unknown-hook"
    assert diagnostic.location is not None and diagnostic.location.line == line
    assert "did you mean 'tests_delta'" in (diagnostic.fix or "")
    ran = agentflow("run", str(workflow), cwd=ws.root)
    message = assert_one_line_error(ran, 2)  # a mistake in the workflow: EXIT_CONFIG
    assert f"wf.yaml:{line}:{diagnostic.location.column}" in message and "tests_delt" in message


def test_best_of_naming_a_missing_hook_file_is_refused(ws: Workspace) -> None:
    workflow = _best_of_workflow(ws, {"n": 2, "by": "hooks/none.py:score"}, ["done"])

    with pytest.raises(GraphValidationError) as caught:
        compile_workflow(workflow)

    assert [d.code for d in caught.value.diagnostics] == ["best_of.missing-file"]


@pytest.mark.parametrize(
    ("best_of", "problem"),
    [
        ({"n": 1, "by": "constant"}, "greater than or equal to 2"),
        ({"n": 2, "by": "constant", "temperatures": [0.1, 0.2]}, "needs `vary: temperature`"),
        ({"n": 2, "by": "constant", "vary": "temperature", "temperatures": [0.1]}, "lists 1 values for n = 2"),
        ({"n": 2, "by": "constant", "vary": "temperature", "temperatures": [0.5, 0.5]}, "repeats a value"),
        ({"n": 2, "by": "constant", "sandbox": "copy"}, "'copy' is not one of shared, fork"),
    ],
)
def test_a_malformed_best_of_is_a_spec_error_at_its_place(ws: Workspace, best_of: dict[str, Any], problem: str) -> None:
    workflow = _best_of_workflow(ws, best_of, ["done"])

    with pytest.raises(SpecError) as caught:
        compile_workflow(workflow)

    assert problem in str(caught.value)
    assert caught.value.location is not None and caught.value.location.line > 1


async def test_on_docker_the_kept_fork_becomes_the_runs_sandbox_and_no_container_or_snapshot_is_left(
    tmp_path: Path, examples: Path
) -> None:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, docker_client, image_available
    from agentflow.sandboxes._docker.client import OWNER_LABEL, SNAPSHOT_LABEL, _owner

    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    store = TraceStore(tmp_path / ".agentflow")

    result = await run_workflow(examples / "fix_failing_test_best_of.yaml", sandbox="docker", store=store)

    assert result.status == "succeeded", result.error
    assert result.final_state["tests_passed"] is True
    assert _choice(store.load_trace(result.run_id).events)["chosen"] == "code#1"
    client = docker_client()
    owned = {"label": f"{OWNER_LABEL}={_owner()}"}
    assert client.containers.list(all=True, filters=owned) == []
    assert client.api.images(filters={"label": f"{SNAPSHOT_LABEL}={_owner()}"}) == []


def test_the_worst_case_node_executions_count_every_candidate(examples: Path) -> None:
    from agentflow.graph import build_template_graph, compute_metrics
    from agentflow.spec import load_workflow

    metrics = compute_metrics(build_template_graph(load_workflow(examples / "fix_failing_test_best_of.yaml")))

    assert metrics.max_steps == 1 + 4 + 1  # plan, the four candidates of code, test


LOOPING = {"tool_calls": [{"name": "list_files", "arguments": {}}]}


@pytest.mark.parametrize(
    ("by", "script"),
    [
        ("hooks.py:broken", [{"candidates": [["first"], ["second, longer"]]}]),  # no score anywhere: the first kept
        ("hooks.py:longest", [{"candidates": [[LOOPING, LOOPING, LOOPING], ["b"]]}]),  # the first runs out of turns
    ],
    ids=["hook-fails-everywhere", "a-candidate-fails"],
)
async def test_a_tape_replay_makes_the_recorded_choice_again(ws: Workspace, by: str, script: list[Any]) -> None:
    ws.file("hooks.py", LONGEST_ANSWER)
    workflow = _best_of_workflow(ws, {"n": 2, "by": by, "sandbox": "fork"}, script)
    recorded = await run_workflow(workflow, store=ws.store)
    assert recorded.status == "succeeded", recorded.error

    report = await replay_run(ws.store, recorded.run_id, mode="tape")

    assert report.identical, report.divergence
    choice = _choice(ws.store.load_trace(recorded.run_id).events, "work")
    assert _choice(ws.store.load_trace(report.replay_run_id).events, "work") == choice


async def test_resume_refuses_a_run_whose_best_of_candidates_ran(ws: Workspace) -> None:
    # Candidates are concurrent branches with forked sandboxes and per-branch responses, which resume does not
    # restore: a run that visited a best-of node is refused, not resumed into a half-restored state.
    script = [{"candidates": [["short"], ["the longest one"]]}]
    ws.file("hooks.py", LONGEST_ANSWER)
    workflow = _best_of_workflow(ws, {"n": 2, "by": "hooks.py:longest"}, script)
    result = await run_workflow(workflow, store=ws.store, resumable=True)
    assert result.status == "succeeded", result.error
    with pytest.raises(TraceError, match="concurrent branches"):
        await resume_run(ws.store, result.run_id)
