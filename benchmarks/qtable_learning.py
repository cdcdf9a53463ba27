"""Q-table routing (PriorDynaFlow) learning in a seeded simulated team, against static, random and oracle routes.

**The environment.** Nine agents, each with a salary (its cost per visit) and a probability that its step succeeds
(its process reward, 1 or 0). A task is solved when a coding agent (``coder``, ``junior``) succeeded and a testing
agent (``tester``, ``checker``) ran after it and succeeded too (a tester's step succeeds only on correct code). The
static workflow is the textbook one, ``planner → architect → coder → reviewer → tester → END``, made of expensive
agents; the cheap ``junior``, ``linter``, ``checker`` and ``formatter`` do better, so the best route is not the
static default.

**The four policies**, K episodes each, same seed: (a) the static route, (b) uniform random routing (each decision
uniform over the agents not yet at their visit bound and END, END not first), (c) the Q-table router: the real
``agentflow.routing.QTableRouter`` with the paper's defaults, fed the run's events (``node_finished`` and
``reward``) exactly as the runtime feeds it and learning into a real embedded store (SQLite) after every episode,
(d) the oracle: the fixed route of highest expected reward, found by enumerating every route of up to 6 agents
with the reward model in closed form.

Per policy over the last 100 episodes: mean reward (the paper's reward: ``−2·salary + 5·success`` per transition,
−10 bounce, −10 repeat, END ``100 − 10·max(0, 5 − len)``), success rate, cost per success. ``episodes_to_95pct``:
the first episode at which (c)'s mean reward over the 50 episodes before it reaches 95% of (d)'s mean reward;
``qtable_vs_oracle``: (c)'s mean reward over (d)'s (last 100); ``cost_vs_static``: (c)'s cost per success over
(a)'s; ``decision_us``: the median time of one ``decide()`` that does not end the episode (``update_ms``: the median
time of the decision that reaches END, which writes the update in one SQLite transaction).

    python benchmarks/qtable_learning.py [--episodes 600] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentflow.routing import QTableRouter
from agentflow.spec import QTableSettings
from agentflow.traces import Event, EventType, TraceStore

END = "END"
AGENTS: dict[str, tuple[float, float]] = {  # name -> (salary, success probability)
    "planner": (8, 0.7),
    "architect": (8, 0.6),
    "coder": (9, 0.6),
    "reviewer": (7, 0.6),
    "tester": (6, 0.8),
    "junior": (2, 0.85),
    "linter": (1, 0.9),
    "checker": (1, 0.9),
    "formatter": (1, 0.9),
}
CODERS = {"coder", "junior"}
TESTERS = {"tester", "checker"}
STATIC = ["planner", "architect", "coder", "reviewer", "tester"]
MAX_VISITS = 2  # per agent and episode
MAX_DECISIONS = 8


@dataclass
class Episode:
    reward: float = 0.0
    cost: float = 0.0
    solved: bool = False
    path: list[str] = field(default_factory=lambda: [])


class Team:
    """The simulated agents: runs one step of an agent and says whether it succeeded."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.code_correct = False
        self.tested = False

    def step(self, agent: str) -> float:
        succeeded = self.rng.random() < AGENTS[agent][1]
        if agent in CODERS:
            self.code_correct = self.code_correct or succeeded
            self.tested = False  # new code needs testing again
        if agent in TESTERS:
            succeeded = succeeded and self.code_correct
            self.tested = self.tested or succeeded
        return 1.0 if succeeded else 0.0


def reward_of(settings: QTableSettings, path: list[str], successes: list[float], solved: float) -> float:
    """The total reward of a route (what the router computes, recomputed for the baselines); ``solved`` is 1 or 0
    (or the probability, for an expectation), which END's bonus is weighted by under ``end_when``."""
    from agentflow.routing import transition_reward

    total = 0.0
    for index in range(len(path)):
        total += transition_reward(
            settings, action=path[index], path=path[:index], success=successes[index], cost=AGENTS[path[index]][0]
        )
    bonus = transition_reward(settings, action=END, path=path, success=0.0, cost=0.0)
    return total + (bonus if settings.end_when is None else bonus * solved)


def run_fixed(route: list[str], settings: QTableSettings, rng: random.Random) -> Episode:
    team = Team(rng)
    successes = [team.step(agent) for agent in route]
    return Episode(
        reward=reward_of(settings, route, successes, float(team.tested)),
        cost=sum(AGENTS[a][0] for a in route),
        solved=team.tested,
        path=list(route),
    )


def run_random(settings: QTableSettings, rng: random.Random) -> Episode:
    team = Team(rng)
    path: list[str] = []
    successes: list[float] = []
    while len(path) < MAX_DECISIONS:
        choices = [a for a in AGENTS if path.count(a) < MAX_VISITS] + ([END] if path else [])
        choice = rng.choice(choices)
        if choice == END:
            break
        path.append(choice)
        successes.append(team.step(choice))
    cost = sum(AGENTS[a][0] for a in path)
    return Episode(reward_of(settings, path, successes, float(team.tested)), cost, team.tested, path)


def expected_reward(route: list[str], settings: QTableSettings) -> float:
    """A fixed route's expected reward in closed form: the chance the code is correct after each coder, and that
    correct code has been tested since the last coder ran."""
    p_correct = 0.0
    p_tested = 0.0
    p_success: list[float] = []
    for agent in route:
        p = AGENTS[agent][1]
        if agent in TESTERS:
            p_success.append(p * p_correct)
            p_tested += (p_correct - p_tested) * p
        else:
            p_success.append(p)
        if agent in CODERS:
            p_correct = 1 - (1 - p_correct) * (1 - p)
            p_tested = 0.0
    return reward_of(settings, route, p_success, p_tested)


def oracle_route(settings: QTableSettings) -> list[str]:
    best: tuple[float, list[str]] = (-1e9, [])
    for length in range(1, 7):
        for route in itertools.permutations(AGENTS, length):
            value = expected_reward(list(route), settings)
            if value > best[0]:
                best = (value, list(route))
    return best[1]


def run_qtable(router: QTableRouter, episode: int, rng: random.Random, timings: dict[str, list[float]]) -> Episode:
    """One episode through the real router: the events the runtime would record, decisions, learning at END."""
    team = Team(rng)
    run_id = f"sim-{episode}"
    events: list[Event] = []
    path: list[str] = []
    visits: dict[str, int] = {}
    decisions = 0

    def open_slot(name: str) -> bool:
        if name == router.name:
            return decisions < MAX_DECISIONS
        return visits.get(name, 0) < MAX_VISITS

    def emit(type_: EventType, node: str, data: dict[str, object]) -> None:
        events.append(Event.model_construct(run_id=run_id, seq=len(events), type=type_, ts="", node=node, data=data))

    while True:
        decisions += 1
        clock = time.perf_counter()
        outcome = router.decide(run_id, episode, events, {"solved": team.tested}, open_slot)
        elapsed = time.perf_counter() - clock
        choice = outcome.decision.choice
        timings["update" if choice == END else "decision"].append(elapsed)
        if choice == END:
            record = outcome.record
            ended = "early_stop" not in record
            reward = float(record["cumulative_reward"])
            solved = team.tested and ended
            return Episode(reward, sum(AGENTS[a][0] for a in path), solved, path)
        path.append(choice)
        visits[choice] = visits.get(choice, 0) + 1
        success = team.step(choice)
        emit(EventType.NODE_FINISHED, choice, {"status": "ok", "updates": {}, "duration_s": 0.0})
        emit(EventType.REWARD, choice, {"hook": "sim", "on": "node", "value": success})


def summary(episodes: list[Episode]) -> dict[str, float | None]:
    last = episodes[-100:]
    successes = sum(e.solved for e in last)
    return {
        "mean_reward": round(statistics.fmean(e.reward for e in last), 2),
        "success_rate": round(successes / len(last), 3),
        "cost_per_success": round(sum(e.cost for e in last) / successes, 2) if successes else None,
        "mean_cost": round(statistics.fmean(e.cost for e in last), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--paper-end",
        action="store_true",
        help="the paper's END bonus for any finished episode (default: only when the task is solved, `end_when`)",
    )
    args = parser.parse_args(argv)
    settings = QTableSettings(
        success=["sim"],
        salary={name: salary for name, (salary, _) in AGENTS.items()},
        end_when=None if args.paper_end else "state.solved",
    )
    oracle = oracle_route(settings)
    results: dict[str, list[Episode]] = {}
    results["static"] = [run_fixed(STATIC, settings, random.Random(args.seed * 1000 + i)) for i in range(args.episodes)]
    rng = random.Random(args.seed)
    results["random"] = [run_random(settings, rng) for _ in range(args.episodes)]
    results["oracle"] = [run_fixed(oracle, settings, random.Random(args.seed * 1000 + i)) for i in range(args.episodes)]
    timings: dict[str, list[float]] = {"decision": [], "update": []}
    with tempfile.TemporaryDirectory() as folder, TraceStore(Path(folder) / ".agentflow") as store:
        router = QTableRouter(
            workflow="qtable_learning",
            template_hash="simulated",
            name="route",
            label="route",
            settings=settings,
            candidates=[*AGENTS, END],
            agents=list(AGENTS),
            start="",  # no restart after an early stop: the episode ends (and teaches nothing)
        )
        router.store = store
        router.mode = "learn"
        results["qtable"] = [
            run_qtable(router, i, random.Random(args.seed * 1000 + i), timings) for i in range(args.episodes)
        ]
        learned = store.load_qtable("qtable_learning", "route")
    oracle_mean = statistics.fmean(e.reward for e in results["oracle"][-100:])
    window = 50
    reached = next(
        (
            i
            for i in range(window, args.episodes + 1)
            if statistics.fmean(e.reward for e in results["qtable"][i - window : i]) >= 0.95 * oracle_mean
        ),
        None,
    )
    table = {name: summary(episodes) for name, episodes in results.items()}
    static_cps, qtable_cps = table["static"]["cost_per_success"], table["qtable"]["cost_per_success"]
    greedy = _greedy_route(learned.values if learned else {})
    report = {
        "episodes": args.episodes,
        "seed": args.seed,
        "static_route": STATIC,
        "oracle_route": oracle,
        "learned_greedy_route": greedy,
        "policies": table,
        "episodes_to_95pct": reached,
        "qtable_vs_oracle": round(float(table["qtable"]["mean_reward"] or 0) / oracle_mean, 3),
        "cost_vs_static": round(qtable_cps / static_cps, 3) if qtable_cps and static_cps else None,
        "decision_us": round(statistics.median(timings["decision"]) * 1e6, 1),
        "update_ms": round(statistics.median(timings["update"]) * 1e3, 2),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.episodes} episodes, seed {args.seed}; last 100 episodes:")
    print(f"{'policy':8} {'mean reward':>12} {'success':>8} {'cost/success':>13}")
    for name, row in table.items():
        print(f"{name:8} {row['mean_reward']:>12} {row['success_rate']:>8} {row['cost_per_success']!s:>13}")
    print(f"oracle route: {' -> '.join(oracle)}; learned greedy route: {' -> '.join(greedy)}")
    for key in ("episodes_to_95pct", "qtable_vs_oracle", "cost_vs_static", "decision_us", "update_ms"):
        print(f"{key}: {report[key]}")
    return 0


def _greedy_route(values: dict[tuple[str, str], tuple[float, int]]) -> list[str]:
    """The route the learned table takes with epsilon 0, from START."""
    rows: dict[str, dict[str, float]] = {}
    for (state, action), (q, _) in values.items():
        rows.setdefault(state, {})[action] = q
    route, state = [], "START"
    while state in rows and len(route) < MAX_DECISIONS:
        action = max(rows[state], key=lambda a: rows[state][a])
        if action == END:
            break
        route.append(action)
        state = action
    return route


if __name__ == "__main__":
    sys.exit(main())
