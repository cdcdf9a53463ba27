"""Aggregation formulas, and the reward engine: background hooks, hanging hooks, aggregate settings in YAML."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentflow.errors import ConfigError
from agentflow.rewards import Reward, RewardHook, StepContext, reward_hook
from agentflow.rewards._aggregate import (
    StepReward,
    aggregate,
    aggregate_trace,
    grounded_return,
    hybrid_rewards,
    prof_consistency,
    prof_group_consistency,
)
from agentflow.runtime import compile_workflow, run_workflow
from agentflow.traces import EventType
from agentflow.traces._summary import summarize
from tests.rewards._support import StepEvents
from tests.runtime.conftest import Workspace, agent_workflow, ws

__all__ = ["ws"]


def test_grounded_return_weights_early_steps_more() -> None:
    assert grounded_return([], 1) == 1.0  # R = F when N = 0
    assert grounded_return([1, -1], 1) == pytest.approx((1 * 2 - 1 * 1) / 4 + 1 / 2)
    assert grounded_return([-1, 1], 1) == pytest.approx((-1 * 2 + 1 * 1) / 4 + 1 / 2)
    assert grounded_return([1, 1, 1], -1) == pytest.approx((3 + 2 + 1) / 9 - 1 / 3)


def test_hybrid_and_prof() -> None:
    assert hybrid_rewards([1.0, 0.5, 0.0], 1) == [1.0, 0.5, 0.0]
    assert hybrid_rewards([1.0, 0.5, 0.0], 0) == [0.0, -0.5, -1.0]
    assert prof_consistency([1.0, 1.0], 1) == pytest.approx(1.0)  # good process, success: consistent
    assert prof_consistency([1.0, 1.0], 0) == pytest.approx(-1.0)  # good process, failure: inconsistent
    assert prof_consistency([], 1) is None
    assert prof_group_consistency([(0.9, 1), (0.1, 0)]) == pytest.approx([0.8, 0.8])


def test_aggregate_mean_min_first_error_discounted() -> None:
    rewards = [StepReward(1.0, 1), StepReward(0.5), StepReward(-0.5), StepReward(0.0, -1)]
    figures = aggregate(rewards, ["mean", "min", "first_error", "discounted"], discount=0.5)
    assert figures == {
        "mean": pytest.approx(0.25),
        "min": -0.5,
        "first_error": 2,  # unlabelled -0.5 counts as an error by its sign
        "discounted": pytest.approx(1.0 + 0.25 - 0.125 + 0.0),
    }
    assert aggregate([StepReward(1.0, 1)], ["first_error", "hybrid"]) == {"first_error": -1, "hybrid": None}


def test_aggregate_trace_orders_by_step_and_reads_the_outcome() -> None:
    events = StepEvents()
    trace = [
        events.reward("judge", -1.0, -1, target=5),  # recorded late by a background hook, about step 5
        events.reward("judge", 1.0, 1, target=1),
        events.reward("done", 1.0, 1, on="run"),
    ]
    figures = aggregate_trace(trace, "judge", ["first_error", "grounded"], outcome_hook="done")
    assert figures["first_error"] == 1 and figures["steps"] == 2
    assert figures["grounded"] == pytest.approx((1 * 2 - 1 * 1) / 4 + 1 / 2)


@reward_hook("test_slow_judge")
class SlowJudge(RewardHook):
    """Stands in for a judge model: works from events only, takes a while."""

    blocking = False

    async def score(self, step: StepContext) -> Reward | None:
        await asyncio.sleep(float(self.options.get("delay", 0.2)))
        return Reward(value=1.0, label=1, explanation="slow but sure")


SCRIPT = [
    {"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]},
    {"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]},
    {"content": "done"},
]


async def test_background_hooks_do_not_hold_the_run_and_land_before_it_ends(ws: Workspace) -> None:
    spec = agent_workflow(["list_files"])
    # the judge takes longer than the three steps take on a loaded machine: every step finishes before any reward
    spec["rewards"] = [
        {"hook": "test_slow_judge", "on": "step", "options": {"delay": 1.0}, "aggregate": ["mean", "first_error"]},
    ]
    result = await run_workflow(ws.workflow(spec, SCRIPT), store=ws.store)
    assert result.succeeded, result.error
    events = ws.store.load_trace(result.run_id).events
    rewards = [e for e in events if e.type is EventType.REWARD and not e.data.get("aggregate")]
    assert len(rewards) == 3  # two tool calls and the answer
    # the steps did not wait for the judge: every step's tool result was recorded before the first reward
    last_result = max(e.seq for e in events if e.type is EventType.TOOL_RESULT)
    assert min(e.seq for e in rewards) > last_result
    assert events[-1].type is EventType.RUN_FINISHED
    aggregate_event = next(e for e in events if e.type is EventType.REWARD and e.data.get("aggregate"))
    assert aggregate_event.data["aggregate"]["mean"] == 1.0 and aggregate_event.data["aggregate"]["steps"] == 3


async def test_a_hanging_background_hook_times_out_and_is_recorded(ws: Workspace) -> None:
    spec = agent_workflow(["list_files"])
    spec["rewards"] = [{"hook": "test_slow_judge", "on": "step", "options": {"delay": 30}, "timeout_s": 0.2}]
    result = await run_workflow(ws.workflow(spec, SCRIPT), store=ws.store)
    assert result.succeeded
    errors = [e for e in ws.store.load_trace(result.run_id).events if e.type is EventType.ERROR]
    assert len(errors) == 3 and all("timed out after 0.2s" in e.data["message"] for e in errors)


def test_aggregates_that_need_an_outcome_say_so(ws: Workspace) -> None:
    spec = agent_workflow(["list_files"])
    spec["rewards"] = [{"hook": "exit_code", "on": "step", "aggregate": ["grounded"]}]
    with pytest.raises(ConfigError, match="needs the run's outcome"):
        compile_workflow(ws.workflow(spec, SCRIPT))
    spec["rewards"][0]["outcome"] = "nothing"
    with pytest.raises(ConfigError, match="not a hook declared with `on: run`"):
        compile_workflow(ws.workflow(spec, SCRIPT))


async def test_a_subgraphs_background_rewards_land_before_the_parents_aggregate(ws: Workspace) -> None:
    child = agent_workflow(["list_files"], name="child")
    child["rewards"] = [{"hook": "test_slow_judge", "on": "step", "options": {"delay": 0.3}}]
    ws.workflow(child, SCRIPT, name="child.yaml")
    parent = {
        "name": "parent",
        "start": "inner",
        "nodes": {"inner": {"kind": "subgraph", "workflow": "child.yaml"}},
        "end": ["inner"],
        # the parent judges the whole run, and aggregates the step rewards its subgraph's binding gave
        "rewards": [{"hook": "test_slow_judge", "on": "run", "options": {"delay": 0}, "aggregate": ["mean"]}],
    }
    result = await run_workflow(ws.workflow(parent), store=ws.store)
    assert result.succeeded, result.error
    events = ws.store.load_trace(result.run_id).events
    rewards = [e for e in events if e.type is EventType.REWARD and e.data["on"] == "step"]
    aggregate_event = next(e for e in events if e.type is EventType.REWARD and e.data.get("aggregate"))
    assert len(rewards) == 3 and all(e.node == "inner/work" for e in rewards)
    assert max(e.seq for e in rewards) < aggregate_event.seq  # the child's slow rewards were waited for
    assert aggregate_event.data["aggregate"]["steps"] == 3
    by_hook = summarize(events).rewards_by_hook["test_slow_judge"]
    assert by_hook.count == 4  # three step rewards and the run's; the aggregate event is not a reward
    assert by_hook.aggregate is not None and by_hook.aggregate["mean"] == 1.0


@reward_hook("test_history_probe")
class HistoryProbe(RewardHook):
    """Reports what it saw of the run before the step, after waiting (so later steps have been recorded by then)."""

    blocking = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[tuple[int | None, list[int]]] = []  # (target seq, seqs of the history) per scored step

    async def score(self, step: StepContext) -> Reward | None:
        await asyncio.sleep(0.2)
        seqs = [event.seq for event in step.history]
        self.seen.append((step.target_seq, seqs))
        return Reward(value=0.0, components={"history_seqs": seqs, "target": step.target_seq})


async def test_hooks_see_the_run_before_their_step_and_nothing_after(ws: Workspace) -> None:
    spec = agent_workflow(["list_files"])
    spec["rewards"] = [{"hook": "test_history_probe", "on": "step"}, {"hook": "test_history_probe", "on": "node"}]
    result = await run_workflow(ws.workflow(spec, SCRIPT), store=ws.store)
    assert result.succeeded, result.error
    rewards = [e for e in ws.store.load_trace(result.run_id).events if e.type is EventType.REWARD]
    assert len(rewards) == 4  # two tool calls, the answer, the node
    for reward in rewards:
        seen = reward.data["components"]
        assert seen["history_seqs"] == list(range(seen["target"]))  # everything before the step, in order
    assert rewards[-1].data["on"] == "node"


async def test_offline_grading_gives_hooks_the_same_history(ws: Workspace) -> None:
    from agentflow.grading._regrade import HookRequest, score_trace

    result = await run_workflow(ws.workflow(agent_workflow(["list_files"]), SCRIPT), store=ws.store)
    events = ws.store.load_trace(result.run_id).events
    probe = HistoryProbe()
    rewards = await score_trace(result.run_id, events, [(HookRequest("test_history_probe"), probe)])
    assert len(rewards) == 3 and len(probe.seen) == 3
    for target, seqs in probe.seen:
        assert seqs == list(range(target))


@reward_hook("test_sandbox_probe")
class SandboxProbe(RewardHook):
    """Reports what kind of sandbox it was given (the engine's guarded view, or none)."""

    async def score(self, step: StepContext) -> Reward | None:
        return Reward(value=0.0, components={"sandbox": type(step.sandbox).__name__})


@reward_hook("test_events_only_probe")
class EventsOnlyProbe(SandboxProbe):
    """The same, but declared as scoring from the events alone."""

    uses_sandbox = False


async def test_a_hook_gets_the_guarded_sandbox_and_one_that_declares_no_use_gets_none(ws: Workspace) -> None:
    spec = agent_workflow(["list_files"])
    spec["rewards"] = [{"hook": "test_sandbox_probe", "on": "node"}, {"hook": "test_events_only_probe", "on": "node"}]
    result = await run_workflow(ws.workflow(spec, SCRIPT), store=ws.store)
    assert result.succeeded, result.error
    seen = {
        e.data["hook"]: e.data["components"]["sandbox"]
        for e in ws.store.load_trace(result.run_id).events
        if e.type is EventType.REWARD
    }
    assert seen == {"test_sandbox_probe": "HookSandbox", "test_events_only_probe": "NoneType"}
