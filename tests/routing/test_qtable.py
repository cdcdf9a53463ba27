"""Q-table routing: the update rule on a hand-computed example, rewards, decisions, a-priori parsing."""

from __future__ import annotations

import math
import random

import pytest

from agentflow.routing import (
    QTable,
    Transition,
    decide_a_priori,
    decide_greedy,
    epsilon_after,
    parse_named_agent,
    transition_reward,
    update_episode,
)
from agentflow.routing._qtable import available_actions, best_groups, decide_ucb, offer, ucb_bonus
from agentflow.spec import QTableSettings

SETTINGS = QTableSettings()
ACTIONS = {"planner": ["coder", "tester", "END"], "coder": ["planner", "tester", "END"]}


def test_update_of_one_episode_matches_the_hand_computed_values() -> None:
    table = QTable()
    updates = update_episode(
        table, [Transition("planner", "coder", -5.0), Transition("coder", "END", 60.0)], SETTINGS, ACTIONS
    )
    # planner -> coder: Q = 0 + 0.1 * (-5 + 0.01 * H(uniform of 3) + 0.9 * max Q(coder, .) - 0), max Q(coder) = 0
    assert table.q("planner", "coder") == pytest.approx(0.1 * (-5 + 0.01 * math.log(3)))
    # coder -> END, the last transition: a positive reward is multiplied by 1.5; END has no row (max 0)
    assert table.q("coder", "END") == pytest.approx(0.1 * (60 * 1.5 + 0.01 * math.log(3)))
    assert [(u.state, u.action) for u in updates] == [("planner", "coder"), ("coder", "END")]
    # a second episode: the entropy of a non-uniform row and gamma times the next state's best value now count
    update_episode(table, [Transition("planner", "coder", -5.0), Transition("coder", "END", 60.0)], SETTINGS, ACTIONS)
    q_pc, q_ce = 0.1 * (-5 + 0.01 * math.log(3)), 0.1 * (90 + 0.01 * math.log(3))
    row = [q_pc, 0.0, 0.0]
    weights = [math.exp(v - max(row)) for v in row]
    entropy = -sum(w / sum(weights) * math.log(w / sum(weights)) for w in weights)
    assert table.q("planner", "coder") == pytest.approx(q_pc + 0.1 * (-5 + 0.01 * entropy + 0.9 * q_ce - q_pc))
    assert table.updates["planner"]["coder"] == 2


def test_backward_order_carries_the_terminal_reward_to_the_first_decision_in_one_episode() -> None:
    settings = QTableSettings(update_order="backward")
    table = QTable()
    updates = update_episode(
        table, [Transition("planner", "coder", -5.0), Transition("coder", "END", 60.0)], settings, ACTIONS
    )
    assert [(u.state, u.action) for u in updates] == [("coder", "END"), ("planner", "coder")]
    q_ce = 0.1 * (60 * 1.5 + 0.01 * math.log(3))
    assert table.q("coder", "END") == pytest.approx(q_ce)
    # planner -> coder already sees the updated coder -> END (forward order sees 0 there on a first episode)
    assert table.q("planner", "coder") == pytest.approx(0.1 * (-5 + 0.01 * math.log(3) + 0.9 * q_ce))


def test_an_episode_stopped_early_has_no_terminal_multiplier() -> None:
    table = QTable()
    update_episode(table, [Transition("coder", "planner", 4.0)], SETTINGS, ACTIONS, ended=False)
    assert table.q("coder", "planner") == pytest.approx(0.1 * (4.0 + 0.01 * math.log(3)))


def test_negative_terminal_reward_is_not_multiplied() -> None:
    table = QTable()
    update_episode(table, [Transition("coder", "END", -20.0)], SETTINGS, ACTIONS)
    assert table.q("coder", "END") == pytest.approx(0.1 * (-20 + 0.01 * math.log(3)))


def test_transition_rewards_salary_success_bounce_repeat_and_end() -> None:
    assert transition_reward(SETTINGS, action="coder", path=["planner"], success=1.0, cost=5) == -10 + 5
    # straight back to the agent before (a bounce, and a repeat): -10 each
    assert transition_reward(SETTINGS, action="planner", path=["planner", "coder"], success=0.0, cost=5) == -30
    # a repeat that is not a bounce
    assert transition_reward(SETTINGS, action="planner", path=["planner", "coder", "tester"], success=0, cost=5) == -20
    assert transition_reward(SETTINGS, action="END", path=["a", "b"], success=0, cost=0) == 100 - 10 * 3
    assert transition_reward(SETTINGS, action="END", path=list("abcdef"), success=0, cost=0) == 100


def test_epsilon_decays_to_its_floor() -> None:
    assert epsilon_after(SETTINGS, 0) == 0.3
    assert epsilon_after(SETTINGS, 10) == pytest.approx(0.3 * 0.995**10)
    assert epsilon_after(SETTINGS, 10_000) == 0.1


def test_pruned_actions_are_not_offered_unless_all_are() -> None:
    table = QTable(values={"coder": {"tester": -50.0, "END": 3.0, "planner": -49.0}})
    assert available_actions(table, "coder", ["planner", "tester", "END"], SETTINGS) == ["planner", "END"]
    table.values["coder"] = {"tester": -60.0, "END": -70.0}
    assert available_actions(table, "coder", ["tester", "END"], SETTINGS) == ["tester", "END"]


def test_greedy_random_and_cold_start_choices() -> None:
    row = {"coder": 2.0, "tester": 5.0, "END": 1.0}
    greedy = decide_greedy(row, 0.0, random.Random(1), cold_start=False, state="planner")
    assert (greedy.choice, greedy.chooser) == ("tester", "greedy")
    explored = [decide_greedy(row, 1.0, random.Random(i), cold_start=False, state="p") for i in range(30)]
    assert {d.chooser for d in explored} == {"random"}
    assert {d.choice for d in explored} == set(row)
    cold = decide_greedy(row, 0.0, random.Random(3), cold_start=True, state="p")
    assert cold.chooser == "cold_start"
    assert cold.candidates == list(row)


def test_a_priori_offer_is_the_two_best_groups_plus_one_random() -> None:
    row = {"a": 3.0, "b": 3.0, "c": 1.0, "d": 0.0, "END": -2.0}
    assert best_groups(row) == ["a", "b", "c"]
    candidates, extra = offer(row, 0.0, random.Random(0), cold_start=False)
    assert (candidates, extra) == (["a", "b", "c"], None)
    offers = [offer(row, 1.0, random.Random(i), cold_start=False) for i in range(40)]
    assert any(extra in {"d", "END"} and extra in cands for cands, extra in offers)
    assert offer(row, 0.0, random.Random(0), cold_start=True) == (list(row), None)


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ("The plan is ready.\nNEXT: coder", "coder"),
        ("**Next agent:** `Tester`", "Tester"),
        ("next = reviewer\n", "reviewer"),
        ("Route to: END", "END"),
        ("next: coder ... actually NEXT: tester", "tester"),
        ("I think we are done here.", None),
    ],
)
def test_parse_named_agent(answer: str, named: str | None) -> None:
    assert parse_named_agent(answer) == named


def test_a_priori_takes_the_models_choice_and_falls_back_to_greedy() -> None:
    row = {"coder": 1.0, "tester": 4.0, "reviewer": 2.0, "END": 0.0}
    offered = ["tester", "reviewer", "coder"]
    chosen = decide_a_priori(row, offered, 0.1, "Done.\nNEXT: Coder", random.Random(0), state="p", cold_start=False)
    assert (chosen.choice, chosen.chooser, chosen.model_said) == ("coder", "model", "Coder")
    unknown = decide_a_priori(row, offered, 0.1, "NEXT: ghost", random.Random(0), state="p", cold_start=False)
    assert (unknown.choice, unknown.chooser, unknown.model_said) == ("tester", "fallback", "ghost")
    not_offered = decide_a_priori(row, offered, 0.1, "NEXT: END", random.Random(0), state="p", cold_start=False)
    assert (not_offered.choice, not_offered.chooser) == ("tester", "fallback")
    garbled = decide_a_priori(row, offered, 0.1, "who knows", random.Random(0), state="p", cold_start=False)
    assert (garbled.choice, garbled.chooser, garbled.model_said) == ("tester", "fallback", None)


def test_ucb_bonus_from_the_update_counts_sends_the_router_to_the_action_tried_least() -> None:
    table = QTable(
        values={"coder": {"tester": 10.0, "END": 4.0}},
        updates={"coder": {"tester": 8, "END": 1}},
    )
    bonus = ucb_bonus(table, "coder", ["tester", "END", "planner"], 20.0)
    # N(coder) = 9 updates: weight * sqrt(ln 10 / (1 + n))
    assert bonus["tester"] == pytest.approx(20 * math.sqrt(math.log(10) / 9))
    assert bonus["END"] == pytest.approx(20 * math.sqrt(math.log(10) / 2))
    assert bonus["planner"] == pytest.approx(20 * math.sqrt(math.log(10)))  # never tried: the largest bonus
    row = table.row("coder", ["tester", "END", "planner"])
    explored = decide_ucb(row, bonus, random.Random(0), epsilon=0.0, state="coder")
    assert (explored.choice, explored.chooser) == ("planner", "ucb")
    greedy = decide_ucb(row, ucb_bonus(table, "coder", row, 0.0), random.Random(0), epsilon=0.0, state="coder")
    assert (greedy.choice, greedy.chooser) == ("tester", "greedy")


def test_optimistic_initial_values_and_the_visit_count_learning_rate() -> None:
    settings = QTableSettings(initial_q=150.0, lr_schedule="visits")
    table = QTable(initial=settings.initial_q)
    assert table.row("planner", ACTIONS["planner"]) == {"coder": 150.0, "tester": 150.0, "END": 150.0}
    episode = [Transition("planner", "coder", -5.0), Transition("coder", "END", 60.0)]
    update_episode(table, episode, settings, ACTIONS)
    # a first update takes rate 1/1: Q becomes its target; the next state's untried actions bootstrap at 150
    first_pc = -5 + 0.01 * math.log(3) + 0.9 * 150.0
    assert table.q("planner", "coder") == pytest.approx(first_pc)
    assert table.q("coder", "END") == pytest.approx(60 * 1.5 + 0.01 * math.log(3))
    assert table.q("planner", "tester") == 150.0  # never updated: still the initial value
    # the second update of a pair takes rate max(lr, 1/2): the mean of its two targets
    row = [first_pc, 150.0, 150.0]
    weights = [math.exp(v - max(row)) for v in row]
    entropy = -sum(w / sum(weights) * math.log(w / sum(weights)) for w in weights)
    second_target = -5 + 0.01 * entropy + 0.9 * 150.0  # coder's best is still an untried action at 150
    update_episode(table, episode, settings, ACTIONS)
    assert table.q("planner", "coder") == pytest.approx(first_pc + 0.5 * (second_target - first_pc))
    assert table.update_count("planner", "coder") == 2
    # the rate never falls below lr: after many updates it is lr itself
    table.updates["planner"]["coder"] = 99
    before = table.q("planner", "coder")
    update = update_episode(table, episode[:1], settings, ACTIONS, ended=False)[0]
    assert update.after == pytest.approx(before + 0.1 * (update.target - before))


def test_a_replayed_episode_learns_at_lr_and_counts_no_visit() -> None:
    settings = QTableSettings(lr_schedule="visits", lr=0.1)
    table = QTable()
    episode = [Transition("planner", "coder", -5.0), Transition("coder", "END", 60.0)]
    update_episode(table, episode, settings, ACTIONS, replayed=True)
    assert table.q("coder", "END") == pytest.approx(0.1 * (60 * 1.5 + 0.01 * math.log(3)))  # lr, not 1/1
    assert table.update_count("coder", "END") == 0
    assert table.update_count("planner", "coder") == 0
    update_episode(table, episode, settings, ACTIONS)
    assert table.update_count("coder", "END") == 1
