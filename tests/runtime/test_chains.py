"""Straight runs of nodes as one LangGraph node (`agentflow.runtime._chains`): the same run as one node per step."""

from __future__ import annotations

from typing import Any

from agentflow.rerun import replay_run
from agentflow.runtime import compile_workflow, run_workflow
from agentflow.runtime._chains import linear_chains
from agentflow.traces import EventType
from tests.runtime.conftest import Workspace

PLUGIN = '''
def bump(x: int) -> int:
    """Add one."""
    return x + 1


def boom(x: int) -> int:
    """Fail."""
    raise ValueError(f"boom at {x}")
'''


def _tool(tool: str, arg: str, **output: str) -> dict[str, Any]:
    return {"kind": "tool", "tool": tool, "args": {"x": arg}, "output": output, "fail_on_error": True}


def _looping_chain(**nodes: dict[str, Any]) -> dict[str, Any]:
    """a -> b -> c -> check (a router: back to a while count < 3) -> done -> END, with two reducer keys.

    Each node reads what the node before it wrote in the same pass (b reads a's count, c reads b's total), so a
    chain that handed its nodes a stale state would give other numbers.
    """
    return {
        "name": "chained",
        "state": {
            "count": {"type": "int", "default": 0},
            "total": {"type": "int", "default": 0, "reduce": "sum"},
            "notes": {"type": "list", "default": [], "reduce": "append"},
            "log": {"type": "str", "default": ""},
        },
        "tools": [{"ref": "plugins/counter.py:bump", "host": True}, {"ref": "plugins/counter.py:boom", "host": True}],
        "start": "a",
        "nodes": {
            "a": _tool("bump", "{count}", count="result", notes="'a' + string(result)"),
            "b": _tool("bump", "{count}", total="result * 10", log="state.log + 'b'"),
            "c": _tool("bump", "{total}", notes="'c' + string(result)", log="state.log + 'c'"),
            "check": {"kind": "router", "routes": [{"when": "state.count < 3", "to": "a"}, {"to": "done"}]},
            "done": _tool("bump", "{total}", log="state.log + '.'"),
            **nodes,
        },
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "check"}],
        "loops": [{"nodes": ["a", "b", "c", "check"], "max_iterations": 5}],
        "end": ["done"],
        "rewards": [{"hook": "noop", "on": "node"}],
    }


def _shape(events: list[Any]) -> list[tuple[str, str | None, Any]]:
    """What a run did, without ids, times and hashes: each event's type, node and data but durations."""
    shape = []
    for event in events:
        data = {key: value for key, value in event.data.items() if "duration" not in key and key != "started_at"}
        if event.type in (EventType.RUN_STARTED, EventType.RUN_FINISHED):
            data = {}
        shape.append((event.type.value, event.node, data))
    return shape


async def test_a_straight_run_of_nodes_is_one_langgraph_node_and_the_stepwise_graph_has_one_per_node(
    ws: Workspace,
) -> None:
    ws.file("plugins/counter.py", PLUGIN)
    compiled = compile_workflow(ws.workflow(_looping_chain()))

    assert linear_chains(compiled) == {"a": ("a", "b", "c")}  # the router, and done after it, stay on their own
    assert set(compiled.graph.nodes) - {"__start__"} == {"a", "check", "done"}
    assert set(compiled.stepwise_graph.nodes) - {"__start__"} == {"a", "b", "c", "check", "done"}


async def test_a_chained_run_records_what_the_stepwise_run_records(ws: Workspace) -> None:
    ws.file("plugins/counter.py", PLUGIN)
    path = ws.workflow(_looping_chain())
    chained = await run_workflow(compile_workflow(path), store=ws.store, inputs={"total": 7})
    stepwise_compiled = compile_workflow(path)
    stepwise_compiled.graph = stepwise_compiled.stepwise_graph
    stepwise = await run_workflow(stepwise_compiled, store=ws.store, inputs={"total": 7})

    assert chained.status == stepwise.status == "succeeded", (chained.error, stepwise.error)
    # three passes: count 1, 2, 3; total 7 + 20 + 30 + 40; every reducer contribution once, in order
    assert chained.final_state == {
        "count": 3,
        "total": 97,
        "notes": ["a1", "c28", "a2", "c58", "a3", "c98"],
        "log": "bcbcbc.",
    }
    assert chained.final_state == stepwise.final_state
    chained_events = ws.store.load_trace(chained.run_id).events
    assert _shape(chained_events) == _shape(ws.store.load_trace(stepwise.run_id).events)
    visits = [e.node for e in chained_events if e.type == EventType.NODE_STARTED]
    assert visits == ["a", "b", "c", "check"] * 3 + ["done"]
    report = await replay_run(ws.store, chained.run_id, mode="tape")
    assert report.identical, report.divergence


async def test_a_node_failing_inside_a_chain_fails_the_run_with_the_state_the_chain_reached(ws: Workspace) -> None:
    ws.file("plugins/counter.py", PLUGIN)
    spec = _looping_chain(b=_tool("boom", "{count}", total="result"))
    result = await run_workflow(compile_workflow(ws.workflow(spec)), store=ws.store)

    assert result.status == "failed"
    assert "boom at 1" in (result.error or "")
    assert result.final_state["count"] == 1 and result.final_state["notes"] == ["a1"]  # a's writes, not b's
    events = ws.store.load_trace(result.run_id).events
    finished = [(e.node, e.data["status"]) for e in events if e.type == EventType.NODE_FINISHED]
    assert finished == [("a", "ok"), ("b", "failed")]
    assert events[-1].type == EventType.RUN_FINISHED


async def test_the_loop_bound_counts_every_pass_through_a_chain(ws: Workspace) -> None:
    ws.file("plugins/counter.py", PLUGIN)
    spec = _looping_chain(check={"kind": "router", "routes": [{"when": "state.count < 99", "to": "a"}, {"to": "done"}]})
    result = await run_workflow(compile_workflow(ws.workflow(spec)), store=ws.store)

    assert result.status == "limit_exceeded"
    assert result.limit is not None and "max_iterations" in result.limit["name"]
    assert result.final_state["count"] == 5  # five passes, the sixth refused at a
    visits = [e.node for e in ws.store.load_trace(result.run_id).events if e.type == EventType.NODE_STARTED]
    assert visits == ["a", "b", "c", "check"] * 5


async def test_nodes_of_parallel_branches_and_maps_never_join_a_chain(ws: Workspace) -> None:
    ws.file("plugins/counter.py", PLUGIN)
    spec = {
        "name": "branchy",
        "state": {
            "count": {"type": "int", "default": 0, "reduce": "sum"},
            "items": {"type": "list", "default": [1, 2]},
            "out": {"type": "list", "default": []},
        },
        "tools": [{"ref": "plugins/counter.py:bump", "host": True}],
        "start": "s1",
        "nodes": {
            "s1": _tool("bump", "0"),
            "s2": {**_tool("bump", "0"), "parallel": ["l1", "r1"]},
            "l1": _tool("bump", "1", count="result"),
            "l2": _tool("bump", "2", count="result"),
            "r1": _tool("bump", "3", count="result"),
            "join": {**_tool("bump", "{count}"), "after": ["l2", "r1"]},
            "each": {"kind": "map", "over": "state.items", "node": "item", "output": "out"},
            "item": _tool("bump", "{item}", value="result"),
            "t1": _tool("bump", "0"),
            "t2": _tool("bump", "0"),
        },
        "edges": [
            {"from": "s1", "to": "s2"},
            {"from": "l1", "to": "l2"},
            {"from": "join", "to": "each"},
            {"from": "each", "to": "t1"},
            {"from": "t1", "to": "t2"},
        ],
        "end": ["t2"],
    }
    compiled = compile_workflow(ws.workflow(spec))

    # s2 fans out and l1 -> l2 is a branch: their edges are LangGraph's to wire (s1 stays alone too), the join and the
    # map with its item keep their own LangGraph nodes; after the map, t1 -> t2 is a chain
    assert linear_chains(compiled) == {"t1": ("t1", "t2")}
    result = await run_workflow(compiled, store=ws.store)
    assert result.status == "succeeded", result.error
    assert result.final_state["count"] == 2 + 3 + 4
