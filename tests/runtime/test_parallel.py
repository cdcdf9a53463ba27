"""Parallel fan-out/fan-in and map nodes, run for real: local sandbox, scripted models, the trace store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import TraceError
from agentflow.rerun import replay_run, resume_run
from agentflow.runtime import run_workflow
from agentflow.traces import Event, EventType, TraceStore, realized_graph
from tests.runtime.conftest import Workspace
from tests.support.require import require


def _fanout(branches: dict[str, dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """start -> parallel branches -> join (a shell tool node) -> END; every branch a single node."""
    spec: dict[str, Any] = {
        "name": "fan",
        "state": {
            "notes": {"type": "list", "default": [], "reduce": "append"},
            "total": {"type": "int", "default": 0, "reduce": "sum"},
            "seen": {"type": "str", "default": ""},
        },
        "tools": ["shell", "read_file"],
        "start": "begin",
        "nodes": {
            "begin": {"kind": "tool", "tool": "shell", "args": {"command": "true"}, "parallel": list(branches)},
            **branches,
            "join": {
                "kind": "tool",
                "tool": "shell",
                "args": {"command": "ls"},
                "after": list(branches),
                "output": {"seen": "result.stdout"},
            },
        },
        "end": ["join"],
    }
    spec.update(overrides)
    return spec


def _shell(command: str, **output: str) -> dict[str, Any]:
    return {"kind": "tool", "tool": "shell", "args": {"command": command}, "output": output, "fail_on_error": True}


def _fail() -> dict[str, Any]:
    return {"kind": "tool", "tool": "read_file", "args": {"path": "missing.txt"}, "fail_on_error": True}


def _events(store: TraceStore, run_id: str) -> list[Event]:
    return store.load_trace(run_id).events


async def test_the_example_runs_its_branches_in_one_superstep_and_joins_their_findings(
    tmp_path: Path, examples: Path
) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(examples / "parallel_review.yaml", store=store)

    assert result.status == "succeeded", result.error
    events = _events(store, result.run_id)
    branch_nodes = {"style", "docs", "tests"}
    starts = [e.seq for e in events if e.type is EventType.NODE_STARTED and e.node in branch_nodes]
    finishes = [e.seq for e in events if e.type is EventType.NODE_FINISHED and e.node in branch_nodes]
    assert len(starts) == 3 and max(starts) < min(finishes)  # all three started before any finished
    for event in events:
        if event.node in branch_nodes:
            assert event.data["branch"] == event.node
    join = next(e for e in events if e.type is EventType.NODE_STARTED and e.node == "summarize")
    assert join.seq > max(finishes) and "branch" not in join.data
    # the reducer (extend) kept every branch's findings; the map kept item order
    assert sorted(result.final_state["findings"]) == [
        "docs: price_of has no docstring",
        "docs: shop/prices.py has no module docstring",
        "style: most_expensive in shop/cart.py has no docstring",
    ]
    files = result.final_state["files"]
    assert [count["file"] for count in result.final_state["line_counts"]] == files
    assert {e.data["branch"] for e in events if e.node == "count_lines"} == {f"measure[{i}]" for i in range(3)}
    realized = realized_graph(events)
    assert realized["branches"]["style"] == ["style"]
    edges = {(edge["from"], edge["to"]): edge["count"] for edge in realized["edges"]}
    assert edges[("inventory", "style")] == 1 and edges[("tests", "summarize")] == 1
    assert edges[("summarize", "count_lines")] == 3 and edges[("count_lines", "measure")] == 3


async def test_tape_and_verify_replays_of_a_parallel_run_are_identical(tmp_path: Path, examples: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    recorded = await run_workflow(examples / "parallel_review.yaml", store=store)
    assert recorded.status == "succeeded", recorded.error

    tape = await replay_run(store, recorded.run_id, mode="tape")
    verify = await replay_run(store, recorded.run_id, mode="verify")

    assert tape.identical, tape.divergence
    assert tape.sandbox_execs == 0 and tape.model_calls_served == 5
    assert verify.identical, verify.divergence
    replayed = store.load_trace(tape.replay_run_id).events
    assert replayed[-1].data["final_state"] == _events(store, recorded.run_id)[-1].data["final_state"]


async def test_replay_serves_each_branch_its_own_responses_to_identical_requests(ws: Workspace) -> None:
    # Both branches send the same requests to one model. The first asker's answer comes slowly, so the other branch
    # sends the (identical) second request first and gets the third response; the first asker gets the fourth. A
    # tape replay answers at once, so the first asker also asks second first: matched by request hash alone it
    # would get the other branch's answer (and the same tool call id in both branches, the other's tool result).
    call = {"id": "t", "name": "shell", "arguments": {"command": "true"}}
    script = [{"tool_calls": [call], "latency_s": 0.3}, {"tool_calls": [call]}, "answered first", "answered second"]
    agent = {"kind": "agent", "model": "m", "prompt": "same prompt", "tools": ["shell"], "output": {"notes": "answer"}}
    spec = _fanout({"left": agent, "right": agent}, models={"m": {"model": "scripted:script.yaml"}})
    recorded = await run_workflow(ws.workflow(spec, script), store=ws.store)
    assert recorded.status == "succeeded", recorded.error
    assert sorted(recorded.final_state["notes"]) == ["answered first", "answered second"]

    report = await replay_run(ws.store, recorded.run_id, mode="tape")

    assert report.identical, report.divergence


async def test_reducers_combine_the_writes_of_every_branch(ws: Workspace) -> None:
    spec = _fanout(
        {
            "a": _shell("printf 2", total="int(result.stdout)", notes="'a'"),
            "b": _shell("printf 3", total="int(result.stdout)", notes="'b'"),
            "c": _shell("printf 5", total="int(result.stdout)", notes="'c'"),
        }
    )
    result = await run_workflow(ws.workflow(spec), store=ws.store, inputs={"total": 10})

    assert result.status == "succeeded", result.error
    assert result.final_state["total"] == 20  # the input, then every branch's contribution
    assert sorted(result.final_state["notes"]) == ["a", "b", "c"]


async def test_limits_count_the_model_calls_of_every_branch(ws: Workspace) -> None:
    for name in ("left", "right"):
        ws.file(
            f"{name}.yaml",
            "responses:\n  - tool_calls: [{name: shell, arguments: {command: 'sleep 0.05'}}]\n  - done\n",
        )
    agent = {"kind": "agent", "prompt": "go", "tools": ["shell"], "output": {"notes": "answer"}}
    spec = _fanout(
        {"left": {**agent, "model": "left"}, "right": {**agent, "model": "right"}},
        models={"left": {"model": "scripted:left.yaml"}, "right": {"model": "scripted:right.yaml"}},
        limits={"max_model_calls": 3},  # each branch alone needs 2, both 4
    )
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "limit_exceeded"
    assert result.limit is not None and result.limit["name"] == "max_model_calls"


async def test_a_failing_branch_fails_the_join(ws: Workspace) -> None:
    spec = _fanout({"good": _shell("true"), "bad": _fail()})
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "failed"
    events = _events(ws.store, result.run_id)
    assert not any(e.node == "join" for e in events)
    failed = [e for e in events if e.type is EventType.NODE_FINISHED and e.data["status"] == "failed"]
    assert [(e.node, e.data["branch"]) for e in failed] == [("bad", "bad")]


async def test_on_branch_error_continue_runs_the_join_and_records_which_branches_failed(ws: Workspace) -> None:
    spec = _fanout(
        {
            "good": _shell("printf 1", total="int(result.stdout)"),
            "bad": _fail(),
            "bad2": _shell("printf 1", total="int(result.stdout)"),
        },
        edges=[{"from": "bad", "to": "bad2"}],
    )
    spec["nodes"]["begin"]["parallel"] = ["good", "bad"]
    spec["nodes"]["join"].update(
        after=["good", "bad2"], on_branch_error="continue", args={"command": "echo {failed_branches}"}
    )
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["total"] == 1  # bad2 never ran: its branch had failed
    assert "bad" in result.final_state["seen"]
    events = _events(ws.store, result.run_id)
    assert not any(e.node == "bad2" for e in events)
    recorded = [e for e in events if e.type is EventType.ERROR and e.data["kind"] == "BranchesFailed"]
    assert len(recorded) == 1 and recorded[0].node == "join" and "bad" in recorded[0].data["message"]


async def test_forked_branches_work_in_their_own_copy_of_the_workdir(ws: Workspace) -> None:
    ws.file("files/base.txt", "base\n")
    spec = _fanout(
        {
            "a": _shell("echo a > mine.txt && sleep 0.1 && cat mine.txt && ls", notes="result.stdout"),
            "b": _shell("echo b > mine.txt && sleep 0.1 && cat mine.txt && ls", notes="result.stdout"),
        },
        sandbox={"backend": "local", "files": {".": "files"}},
    )
    spec["nodes"]["begin"]["sandbox"] = "fork"
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert sorted(result.final_state["notes"]) == ["a\nbase.txt\nmine.txt\n", "b\nbase.txt\nmine.txt\n"]
    assert "mine.txt" not in result.final_state["seen"]  # the forks were discarded; the run's sandbox is as it was

    shared = await run_workflow(
        ws.workflow({**spec, "nodes": {**spec["nodes"], "begin": {**spec["nodes"]["begin"], "sandbox": "shared"}}}),
        store=ws.store,
    )
    assert shared.status == "succeeded", shared.error
    assert "mine.txt" in shared.final_state["seen"]  # shared: like threads in one working copy


async def test_node_hooks_score_only_their_own_branch(ws: Workspace) -> None:
    spec = _fanout(
        {"ok": _shell("sleep 0.05; true"), "broken": {**_shell("exit 1"), "fail_on_error": False}},
        rewards=[{"hook": "exit_code", "on": "node", "nodes": ["ok", "broken"]}],
    )
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    rewards = {e.node: e.data["value"] for e in _events(ws.store, result.run_id) if e.type is EventType.REWARD}
    # the failed command halves the broken node's share of successes; the other node's is whole
    assert rewards == {"ok": 1.0, "broken": 0.5}


async def test_a_map_over_a_non_list_fails_the_run_with_the_error_in_the_trace(ws: Workspace) -> None:
    spec = {
        "name": "bad_map",
        "state": {"files": {"type": "any", "default": "not a list"}, "out": {"type": "list", "default": []}},
        "tools": ["shell"],
        "start": "each",
        "nodes": {
            "each": {"kind": "map", "over": "state.files", "node": "item", "output": "out"},
            "item": _shell("echo {item}", text="result.stdout"),
        },
        "end": ["each"],
    }
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "failed"  # the workflow's failure, not the infrastructure's
    errors = [e for e in _events(ws.store, result.run_id) if e.type is EventType.ERROR]
    assert [(e.node, e.data["kind"]) for e in errors] == [("each", "MapOverError")]
    assert "gave str, not a list" in errors[0].data["message"]


async def test_a_map_runs_at_most_max_concurrency_items_at_once_and_keeps_item_order(ws: Workspace) -> None:
    spec = {
        "name": "map",
        "state": {"words": {"type": "list", "default": ["c", "a", "d", "b"]}, "out": {"type": "list", "default": []}},
        "tools": ["shell"],
        "start": "each",
        "nodes": {
            "each": {"kind": "map", "over": "state.words", "node": "upper", "output": "out", "max_concurrency": 2},
            "upper": _shell("sleep 0.05; printf %s {item} | tr a-z A-Z", text="result.stdout"),
        },
        "end": ["each"],
    }
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["out"] == ["C", "A", "D", "B"]
    running, most = 0, 0
    for event in _events(ws.store, result.run_id):
        if event.node == "upper" and event.type is EventType.NODE_STARTED:
            running += 1
            most = max(most, running)
        elif event.node == "upper" and event.type is EventType.NODE_FINISHED:
            running -= 1
    assert most == 2
    finished = next(
        e for e in _events(ws.store, result.run_id) if e.node == "each" and e.type is EventType.NODE_FINISHED
    )
    assert finished.data["updates"] == {"out": ["C", "A", "D", "B"]}


async def test_resume_refuses_a_run_with_parallel_branches(ws: Workspace) -> None:
    spec = _fanout({"a": _shell("true"), "b": _shell("true")})
    result = await run_workflow(ws.workflow(spec), store=ws.store, resumable=True)
    assert result.status == "succeeded", result.error
    with pytest.raises(TraceError, match="concurrent branches"):
        await resume_run(ws.store, result.run_id)
    resumed = subprocess.run(
        [str(Path(sys.executable).with_name("agentflow")), "resume", result.run_id],
        cwd=ws.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert resumed.returncode == 3, resumed.stderr  # refused: an error outside the workflow, said in one line
    assert len(resumed.stderr.strip().splitlines()) == 1 and "cannot be resumed" in resumed.stderr


async def test_the_state_of_a_run_that_fails_after_the_join_follows_the_reducers(ws: Workspace) -> None:
    spec = _fanout(
        {"a": _shell("printf 4", total="int(result.stdout)"), "b": _shell("printf 6", total="int(result.stdout)")}
    )
    spec["nodes"]["join"] = {**_fail(), "after": ["a", "b"]}
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "failed"
    assert result.final_state["total"] == 10  # both contributions, summed, though LangGraph never returned a state
    recorded = _events(ws.store, result.run_id)[-1]
    assert recorded.type is EventType.RUN_FINISHED and recorded.data["final_state"]["total"] == 10


async def test_nested_fanouts_nest_their_branch_ids(ws: Workspace) -> None:
    spec = _fanout({"a": _shell("true"), "b": _shell("true", notes="'b'")})
    spec["nodes"]["a"] = {**_shell("true"), "parallel": ["a1", "a2"]}
    spec["nodes"]["a1"] = _shell("true", notes="'a1'")
    spec["nodes"]["a2"] = _shell("true", notes="'a2'")
    spec["nodes"]["a_join"] = {**_shell("true"), "after": ["a1", "a2"]}
    spec["nodes"]["join"]["after"] = ["a_join", "b"]
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert sorted(result.final_state["notes"]) == ["a1", "a2", "b"]
    branches = {
        e.node: e.data.get("branch") for e in _events(ws.store, result.run_id) if e.type is EventType.NODE_STARTED
    }
    assert branches == {"begin": None, "a": "a", "b": "b", "a1": "a/a1", "a2": "a/a2", "a_join": "a", "join": None}
    report = await replay_run(ws.store, result.run_id, mode="tape")
    assert report.identical, report.divergence


async def test_forked_map_items_each_work_in_their_own_workdir(ws: Workspace) -> None:
    ws.file("files/keep.txt", "kept\n")
    spec = {
        "name": "forked_map",
        "state": {"words": {"type": "list", "default": ["x", "y"]}, "out": {"type": "list", "default": []}},
        "tools": ["shell"],
        "sandbox": {"backend": "local", "files": {".": "files"}},
        "start": "each",
        "nodes": {
            "each": {"kind": "map", "over": "state.words", "node": "touch", "output": "out", "sandbox": "fork"},
            "touch": _shell("touch {item}.txt && ls | tr '\\n' ' '", listing="result.stdout"),
            "after": _shell("ls | tr '\\n' ' '", seen="result.stdout"),
        },
        "edges": [{"from": "each", "to": "after"}],
        "end": ["after"],
    }
    spec["state"]["seen"] = {"type": "str", "default": ""}
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["out"] == ["keep.txt x.txt ", "keep.txt y.txt "]
    assert result.final_state["seen"] == "keep.txt "


async def test_agentflow_show_prints_the_branch_of_each_event(tmp_path: Path, examples: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(examples / "parallel_review.yaml", store=store)
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("agentflow")), "show", result.run_id],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).parents[2])},
    )

    assert shown.returncode == 0, shown.stderr
    assert any(line.split()[:3] == ["seq", "branch", "node"] for line in shown.stdout.splitlines())  # the header
    assert "branch measure[2]: count_lines" in shown.stdout
    assert any(line.split()[1:3] == ["style", "style"] for line in shown.stdout.splitlines() if line.split())


@pytest.mark.parametrize(
    ("limits", "name"),
    [({"max_steps": 3}, "max_steps"), ({"max_tokens": 400}, "max_tokens"), ({"timeout_s": 0.3}, "timeout_s")],
)
async def test_steps_tokens_and_wall_time_count_every_branch(ws: Workspace, limits: dict[str, Any], name: str) -> None:
    # begin + two branches + the join = 4 steps (one branch: 3); one branch's two model calls use 329 tokens (both:
    # 658); a branch still running when the run's timeout_s passes stops the run
    for branch in ("left", "right"):
        ws.file(
            f"{branch}.yaml",
            "responses:\n  - tool_calls: [{name: shell, arguments: {command: 'sleep 0.2'}}]\n  - done\n",
        )
    agent = {"kind": "agent", "prompt": "go", "tools": ["shell"], "output": {"notes": "answer"}}
    spec = _fanout(
        {"left": {**agent, "model": "left"}, "right": {**agent, "model": "right"}},
        models={"left": {"model": "scripted:left.yaml"}, "right": {"model": "scripted:right.yaml"}},
        limits=limits,
    )
    if name == "timeout_s":
        ws.file("left.yaml", "responses:\n  - tool_calls: [{name: shell, arguments: {command: 'sleep 1'}}]\n  - done\n")
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "limit_exceeded", result.error
    assert result.limit is not None and result.limit["name"] == name


async def test_several_unconditional_edges_from_a_node_fan_out(ws: Workspace) -> None:
    spec = _fanout(
        {"a": _shell("printf 1", total="int(result.stdout)"), "b": _shell("printf 2", total="int(result.stdout)")}
    )
    del spec["nodes"]["begin"]["parallel"]
    spec["edges"] = [{"from": "begin", "to": "a"}, {"from": "begin", "to": "b"}]
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["total"] == 3
    events = _events(ws.store, result.run_id)
    assert {e.node: e.data["branch"] for e in events if e.type is EventType.NODE_STARTED and e.node in "ab"} == {
        "a": "a",
        "b": "b",
    }


async def test_forked_branches_on_docker_work_in_their_own_container(ws: Workspace) -> None:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available

    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    ws.file("files/base.txt", "base\n")
    spec = _fanout(
        {
            "a": _shell("echo a > mine.txt && sleep 0.2 && cat mine.txt && ls", notes="result.stdout"),
            "b": _shell("echo b > mine.txt && sleep 0.2 && cat mine.txt && ls", notes="result.stdout"),
        },
        sandbox={"backend": "docker", "image": DEFAULT_IMAGE, "files": {".": "files"}},
    )
    spec["nodes"]["begin"]["sandbox"] = "fork"
    result = await run_workflow(ws.workflow(spec), store=ws.store)

    assert result.status == "succeeded", result.error
    assert sorted(result.final_state["notes"]) == ["a\nbase.txt\nmine.txt\n", "b\nbase.txt\nmine.txt\n"]
    assert "mine.txt" not in result.final_state["seen"]
    import docker

    client = docker.from_env()
    try:  # the forks' containers were removed when their branches ended, the run's when it ended
        left = client.containers.list(all=True, filters={"label": f"agentflow.run_id={result.run_id}"})
    finally:
        client.close()
    assert left == []


def _map_spec(node: dict[str, Any], **map_options: Any) -> dict[str, Any]:
    return {
        "name": "mapped",
        "state": {
            "words": {"type": "list", "default": ["ok", "missing", "fine"]},
            "out": {"type": "list", "default": []},
        },
        "tools": ["shell", "read_file"],
        "start": "each",
        "nodes": {
            "each": {"kind": "map", "over": "state.words", "node": "item", "output": "out", **map_options},
            "item": node,
        },
        "end": ["each"],
    }


async def test_a_failing_map_item_fails_the_run_unless_the_map_continues(ws: Workspace) -> None:
    ws.file("files/ok.txt", "OK")
    ws.file("files/fine.txt", "FINE")
    item = {"kind": "tool", "tool": "read_file", "args": {"path": "{item}.txt"}, "output": {"text": "result"}}
    item["fail_on_error"] = True
    failing = _map_spec(item)
    failing["sandbox"] = {"backend": "local", "files": {".": "files"}}
    result = await run_workflow(ws.workflow(failing), store=ws.store)
    assert result.status == "failed"
    assert "each[1]" in {e.data.get("branch") for e in _events(ws.store, result.run_id) if e.type is EventType.ERROR}

    continuing = {
        **failing,
        "nodes": {**failing["nodes"], "each": {**failing["nodes"]["each"], "on_branch_error": "continue"}},
    }
    result = await run_workflow(ws.workflow(continuing), store=ws.store)
    assert result.status == "succeeded", result.error
    assert result.final_state["out"] == ["OK", None, "FINE"]
    failed = [e for e in _events(ws.store, result.run_id) if e.type is EventType.ERROR and e.node == "each"]
    assert len(failed) == 1 and "each[1]" in failed[0].data["message"]


async def test_a_map_runs_a_subgraph_per_item(ws: Workspace) -> None:
    ws.file(
        "child.yaml",
        "name: child\nstate:\n  word: {type: str, default: ''}\n  shout: {type: str, default: ''}\ntools: [shell]\n"
        "start: up\nnodes:\n  up: {kind: tool, tool: shell, args: {command: 'printf %s {word} | tr a-z A-Z'},"
        " output: {shout: result.stdout}}\nend: [up]\n",
    )
    item = {
        "kind": "subgraph",
        "workflow": "child.yaml",
        "inputs": {"word": "state.item"},
        "outputs": {"loud": "state.shout"},
    }
    result = await run_workflow(ws.workflow(_map_spec(item)), store=ws.store)

    assert result.status == "succeeded", result.error
    assert result.final_state["out"] == ["OK", "MISSING", "FINE"]
    inner = {e.data.get("branch") for e in _events(ws.store, result.run_id) if e.node == "item/up"}
    assert inner == {"each[0]", "each[1]", "each[2]"}
