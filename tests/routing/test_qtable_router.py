"""The router over a run's events: success from the named hooks' node rewards, NaN ignored and recorded, early stop
with a restart, END after the router's last visit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from agentflow.routing import QTableRouter
from agentflow.spec import QTableSettings
from agentflow.traces import Event, EventType, TraceStore


def _router(settings: QTableSettings, store: TraceStore | None = None) -> QTableRouter:
    router = QTableRouter(
        workflow="team",
        template_hash="v1",
        name="route",
        label="route",
        settings=settings,
        candidates=["planner", "coder", "END"],
        agents=["planner", "coder"],
        start="planner",
    )
    router.store = store
    return router


def _visit(events: list[Event], agent: str, rewards: dict[str, float]) -> None:
    def emit(type_: EventType, data: dict[str, Any]) -> None:
        events.append(Event.model_construct(run_id="r", seq=len(events), type=type_, ts="", node=agent, data=data))

    emit(EventType.NODE_FINISHED, {"status": "ok", "updates": {}, "duration_s": 0.0})
    for hook, value in rewards.items():
        emit(EventType.REWARD, {"hook": hook, "on": "node", "value": value})


def test_success_comes_from_the_named_hooks_and_nan_is_ignored_and_recorded(tmp_path: Path) -> None:
    settings = QTableSettings(success=["tests_delta"], cold_start_decisions=0, epsilon=0.0, epsilon_min=0.0)
    with TraceStore(tmp_path / ".agentflow") as store:
        router = _router(settings, store)
        events: list[Event] = []
        _visit(events, "planner", {"tests_delta": 1.0, "other": -9.0})
        first = router.decide("r", 1, events, {}, lambda _name: True)
        assert first.decision.state == "planner"
        assert first.decision.choice == "coder"  # an empty table ties; seed 1 breaks the tie this way
        _visit(events, "coder", {"tests_delta": math.nan})
        second = router.decide("r", 1, events, {}, lambda name: name != "route")  # the router's last visit
        assert second.decision.choice == "END"
        assert second.record["ignored_rewards"] == [{"node": "coder", "hook": "tests_delta", "value": "nan"}]
        # planner -> coder: -2 * salary 5 + 5 * success 0 (the NaN left out); END after 2 agents: 100 - 30
        assert second.record["cumulative_reward"] == -10 + 70
        history = store.qtable_episodes("team", "route")
        assert history[0].record["ignored"] == [{"node": "coder", "hook": "tests_delta", "value": "nan"}]
        assert [t["reward"] for t in history[0].record["transitions"]] == [-10, 70]


def test_an_episode_below_the_floor_stops_and_restarts_from_start() -> None:
    settings = QTableSettings(salary={"coder": 40}, cold_start_decisions=0, epsilon=0.0, epsilon_min=0.0, max_retries=1)
    router = _router(settings)
    events: list[Event] = []
    _visit(events, "planner", {})
    outcome = router.decide("r", 2, events, {}, lambda name: name != "END")
    assert outcome.decision.choice == "coder"  # an empty table ties; seed 2 breaks the tie this way
    _visit(events, "coder", {})
    stopped = router.decide("r", 2, events, {}, lambda _name: True)
    assert (stopped.decision.choice, stopped.decision.chooser) == ("planner", "retry")
    assert stopped.record["early_stop"]["cumulative_reward"] == -80
    _visit(events, "planner", {})
    again = router.decide("r", 2, events, {}, lambda _name: True)
    assert again.record["path"] == ["planner"]  # a new episode


def test_an_episode_stopped_early_teaches_nothing_by_default_and_charges_its_actions_with_learn_stopped(
    tmp_path: Path,
) -> None:
    def stop_one_episode(settings: QTableSettings, store: TraceStore) -> None:
        router = _router(settings, store)
        events: list[Event] = []
        _visit(events, "planner", {})
        assert router.decide("r", 2, events, {}, lambda name: name != "END").decision.choice == "coder"
        _visit(events, "coder", {})
        stopped = router.decide("r", 2, events, {}, lambda _name: True)
        assert stopped.decision.chooser == "early_stop"

    base = {"salary": {"coder": 40}, "cold_start_decisions": 0, "epsilon": 0.0, "epsilon_min": 0.0, "max_retries": 0}
    with TraceStore(tmp_path / "paper" / ".agentflow") as store:
        stop_one_episode(QTableSettings(**base), store)
        assert store.load_qtable("team", "route") is None  # the paper: a stopped episode is not learned
    with TraceStore(tmp_path / "learn" / ".agentflow") as store:
        stop_one_episode(QTableSettings(**base, learn_stopped=True), store)
        stored = store.load_qtable("team", "route")
        assert stored is not None and stored.episodes == 1
        # planner -> coder: -2 * 40, the last transition of the stopped episode (terminal, no END to bootstrap)
        q, updates = stored.values[("planner", "coder")]
        assert q == pytest.approx(0.1 * (-80 + 0.01 * math.log(2))) and updates == 1
        assert store.qtable_episodes("team", "route")[0].record["stopped_early"] is True


def test_ucb_exploration_takes_no_random_step_and_records_its_bonus() -> None:
    settings = QTableSettings(exploration="ucb", cold_start_decisions=0, epsilon=1.0, epsilon_min=1.0)
    router = _router(settings)
    events: list[Event] = []
    _visit(events, "planner", {})
    outcome = router.decide("r", 3, events, {}, lambda _name: True)
    # an empty table: every action has the same bonus (0, no update yet), so the choice is a greedy tie
    assert outcome.decision.chooser == "greedy" and outcome.decision.epsilon == 0.0
    assert outcome.record["ucb_bonus"] == {"coder": 0.0, "END": 0.0}
