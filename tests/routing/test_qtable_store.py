"""Q-tables in the store: round trip with history, version refusal and migration, NaN rewards, and 8 concurrent
runs updating one table without a lost update (SQLite, and PostgreSQL when there is one)."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import ConfigError
from agentflow.routing import QTable, QTableRouter, Transition, learn_episode, table_from_stored, update_episode
from agentflow.spec import QTableSettings
from agentflow.traces import Store, open_store

SETTINGS = QTableSettings()
ACTIONS = {"planner": ["coder", "tester", "END"], "coder": ["planner", "tester", "END"]}
EPISODE = [Transition("planner", "coder", -5.0), Transition("coder", "tester", -3.0), Transition("tester", "END", 70.0)]


def _learn(
    store: Any,
    transitions: list[Transition] = EPISODE,
    template_hash: str = "v1",
    run_id: str = "r",
    settings: QTableSettings = SETTINGS,
) -> Any:
    return learn_episode(
        store,
        workflow="team",
        router="route",
        template_hash=template_hash,
        settings=settings,
        actions_of=ACTIONS,
        transitions=transitions,
        run_id=run_id,
    )


def test_round_trip_keeps_values_counts_and_history(any_store: Store) -> None:
    _learn(any_store, run_id="run-1")
    _learn(any_store, run_id="run-2")
    stored = any_store.load_qtable("team", "route")  # type: ignore[attr-defined]
    expected = QTable()
    update_episode(expected, EPISODE, SETTINGS, ACTIONS)
    update_episode(expected, EPISODE, SETTINGS, ACTIONS)
    table = table_from_stored(stored)
    for state, row in expected.values.items():
        for action, q in row.items():
            assert table.q(state, action) == pytest.approx(q, abs=1e-12)
            assert table.updates[state][action] == 2
    assert (stored.episodes, stored.decisions, stored.template_hash) == (2, 6, "v1")
    history = any_store.qtable_episodes("team", "route")  # type: ignore[attr-defined]
    assert [(e.episode, e.run_id) for e in history] == [(1, "run-1"), (2, "run-2")]
    assert history[0].total_reward == pytest.approx(62.0)
    assert history[0].record["transitions"][2] == {"state": "tester", "action": "END", "reward": 70.0}
    assert history[1].record["updates"][0]["before"] == pytest.approx(history[0].record["updates"][0]["after"])
    assert any_store.reset_qtable("team") == 1  # type: ignore[attr-defined]
    assert any_store.load_qtable("team", "route") is None  # type: ignore[attr-defined]
    assert any_store.qtable_episodes("team", "route") == []  # type: ignore[attr-defined]


def test_a_table_of_another_template_version_is_refused_until_migrated(any_store: Store) -> None:
    _learn(any_store, template_hash="a" * 64)
    with pytest.raises(ConfigError, match=r"learned on template aaaaaaaaaaaa.*agentflow qtable migrate"):
        _learn(any_store, template_hash="b" * 64)
    router = QTableRouter(
        workflow="team",
        template_hash="b" * 64,
        name="route",
        label="route",
        settings=SETTINGS,
        candidates=["planner", "coder", "END"],
        agents=["planner", "coder"],
        start="planner",
    )
    router.store = any_store  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="not on this version"):
        router.load()
    kept, dropped = any_store.migrate_qtable(  # type: ignore[attr-defined]
        "team", "route", "b" * 64, lambda state, action: "tester" not in (state, action)
    )
    assert (kept, dropped) == (1, 2)  # planner->coder stays; coder->tester and tester->END go
    assert set(router.load().values) == {"planner"}
    _learn(any_store, template_hash="b" * 64)  # now accepted


def test_nan_and_infinite_rewards_are_ignored_and_recorded(any_store: Store) -> None:
    episode = [Transition("planner", "coder", math.nan), Transition("coder", "END", math.inf)]
    stored = _learn(any_store, [*episode, Transition("planner", "tester", -4.0)])
    assert set(table_from_stored(stored).values) == {"planner"}
    assert ("planner", "coder") not in stored.values
    record = any_store.qtable_episodes("team", "route")[0].record  # type: ignore[attr-defined]
    assert {(i["state"], i["action"], i["reward"]) for i in record["ignored"]} == {
        ("planner", "coder", "nan"),
        ("coder", "END", "inf"),
    }
    assert len(record["transitions"]) == 1


def _episode(number: int) -> list[Transition]:
    """An episode whose rewards differ from every other's, so which ones are replayed shows in the values."""
    return [Transition("planner", "coder", -float(number)), Transition("coder", "END", 10.0 * number)]


def test_replay_learns_again_from_stored_episodes_of_the_same_version_only(any_store: Store) -> None:
    _learn(any_store, _episode(1), template_hash="a" * 64)
    any_store.migrate_qtable("team", "route", "b" * 64, lambda state, action: True)  # type: ignore[attr-defined]
    for number in range(2, 7):
        _learn(any_store, _episode(number), template_hash="b" * 64, run_id=f"run-{number}")
    replaying = QTableSettings(replay_episodes=3, replay_window=10)
    before = table_from_stored(any_store.load_qtable("team", "route"))  # type: ignore[attr-defined]

    _learn(any_store, _episode(7), template_hash="b" * 64, run_id="run-7", settings=replaying)

    record = any_store.qtable_episodes("team", "route")[-1].record  # type: ignore[attr-defined]
    replayed = record["replay"]["episodes"]
    # 3 of episodes 1-6 drawn, without replacement; episode 1 was learned on the old version and is never replayed
    assert len(set(replayed)) == len(replayed) and set(replayed) <= {2, 3, 4, 5, 6}
    assert len(replayed) >= 2
    expected = before
    update_episode(expected, _episode(7), replaying, ACTIONS)
    for number in replayed:
        update_episode(expected, _episode(number), replaying, ACTIONS, replayed=True)
    assert record["replay"]["updates"] == 2 * len(replayed)
    stored = table_from_stored(any_store.load_qtable("team", "route"))  # type: ignore[attr-defined]
    for state, row in expected.values.items():
        for action, q in row.items():
            assert stored.q(state, action) == pytest.approx(q, abs=1e-12)
    # replays count no visit: each pair was updated once per episode it was really in (7)
    assert stored.update_count("planner", "coder") == 7 and stored.update_count("coder", "END") == 7

    narrow = QTableSettings(replay_episodes=5, replay_window=2)
    _learn(any_store, _episode(8), template_hash="b" * 64, run_id="run-8", settings=narrow)
    record = any_store.qtable_episodes("team", "route")[-1].record  # type: ignore[attr-defined]
    assert sorted(record["replay"]["episodes"]) == [6, 7]  # only the window's two, however many are asked for


def _learn_in_process(location: str, index: int) -> None:
    store = open_store(location)
    try:
        _learn(store, run_id=f"run-{index}")
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_eight_concurrent_processes_lose_no_update(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = str(tmp_path / ".agentflow") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    open_store(location).close()  # migrated once, before the race (the race is on the table, not the schema)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_learn_in_process, args=(location, i)) for i in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    store = open_store(location)
    try:
        stored = store.load_qtable("team", "route")  # type: ignore[attr-defined]
        history = store.qtable_episodes("team", "route")  # type: ignore[attr-defined]
    finally:
        store.close()
    assert stored.episodes == 8
    assert sorted(e.run_id for e in history) == sorted(f"run-{i}" for i in range(8))
    assert sum(updates for _q, updates in stored.values.values()) == 8 * len(EPISODE)
    # every update read the values the one before wrote: replaying the history in its order gives the table exactly
    replay = QTable()
    for _ in history:
        update_episode(replay, EPISODE, SETTINGS, ACTIONS)
    for (state, action), (q, _updates) in stored.values.items():
        assert q == pytest.approx(replay.q(state, action), abs=1e-9)
