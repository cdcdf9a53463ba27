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

**Online and greedy.** Those (c) figures are the *online* ones: the behaviour policy while it learns, which keeps
exploring (ε never falls below the paper's floor 0.1: 4 to 5 episodes in 10 take at least one random step). The
oracle explores nothing, so the learned policy is also measured as RL reports it: every ``--eval-every`` episodes
the table learned so far routes 100 *frozen* episodes (``--freeze``: ε 0, no cold start, no update) on the same
task draws as the oracle's last 100 (``qtable_greedy`` in the table; ``greedy_vs_oracle``,
``greedy_episodes_to_95pct``, the first evaluation at 95% of the oracle, ``greedy_cost_vs_static`` and the curve
``greedy_curve``). The issue's targets are judged on the greedy figures (the policy a frozen table deploys); the
online ones are reported beside them and are lower by the exploration the paper's schedule keeps.

**Settings.** The paper's defaults unless ``--tuned``, which adds the options beyond the paper in ``TUNED`` (the
JSON's ``settings`` lists whatever differs from the defaults): UCB exploration instead of ε-random steps, optimistic
initial values, a visit-count learning rate, experience replay of 10 stored episodes after each update, backward
updates without discount, learning from episodes stopped early, and the state features ``solved`` and ``step``
(agents run so far: fewer than 5, or 5 and more); in the HumanEval world also ``ok``, whether the last agent's step
succeeded (for a coder: whether its completion passes the tests).
With ``solved`` in the state the table may end a solved episode sooner or pad an unsolved one, so it can beat the
oracle, which is the best *fixed* route (ratios above 1).

**The HumanEval world** (``humaneval`` in the JSON, the same figures): the same four policies over the first
``--humaneval-tasks`` HumanEval problems (../shared/data/humaneval), one per episode in turn, with scripted agents
of different quality: a coder writes the task's reference solution with its quality as probability, else the
solution without its last line, and each completion replaces the last; the ``tester`` succeeds only when the
current completion passes the task's tests. Whether each completion passes was graded once, for real, by
agentflow's HumanEval grader in the local sandbox (the reference harness's programs).

    python benchmarks/qtable_learning.py [--episodes 600] [--seed 7] [--tuned] [--humaneval-tasks 164] [--json]
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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class World:
    """A team to route: agents (salary, success probability), which of them write code and which test it, the
    static route, and whether a coder's code replaces the last (HumanEval) or only adds a chance (the simulation).

    ``graded`` holds, per HumanEval task, whether a good and a bad completion passed the task's tests in a real
    sandbox (None: the simulation, where a step's success is its probability alone). ``tuned_features`` are state
    features the tuned table adds in this world, for what its steps' rewards tell (the learning settings are
    ``TUNED``'s in every world).
    """

    name: str
    agents: dict[str, tuple[float, float]]
    coders: frozenset[str]
    testers: frozenset[str]
    static: list[str]
    graded: list[tuple[str, bool, bool]] | None = None
    tuned_features: tuple[dict[str, Any], ...] = ()


SIMULATION = World("simulation", AGENTS, frozenset(CODERS), frozenset(TESTERS), STATIC)


class Team:
    """The agents of a world on one task: runs one step of an agent and says whether it succeeded."""

    def __init__(self, world: World, rng: random.Random, task: int = 0) -> None:
        self.world = world
        self.rng = rng
        self.code_correct = False
        self.tested = False
        self.task = world.graded[task % len(world.graded)] if world.graded else None

    def step(self, agent: str) -> float:
        world = self.world
        succeeded = self.rng.random() < world.agents[agent][1]
        if agent in world.coders:
            if self.task is None:
                self.code_correct = self.code_correct or succeeded
            else:  # the coder's completion replaces the last; the real tests said whether each one passes
                _, good_passes, bad_passes = self.task
                self.code_correct = good_passes if succeeded else bad_passes
                succeeded = self.code_correct
            self.tested = False  # new code needs testing again
        if agent in world.testers:
            succeeded = succeeded and self.code_correct
            self.tested = self.tested or succeeded
        return 1.0 if succeeded else 0.0


def reward_of(world: World, settings: QTableSettings, path: list[str], successes: list[float], solved: float) -> float:
    """The total reward of a route (what the router computes, recomputed for the baselines); ``solved`` is 1 or 0
    (or the probability, for an expectation), which END's bonus is weighted by under ``end_when``."""
    from agentflow.routing import transition_reward

    total = 0.0
    for index in range(len(path)):
        total += transition_reward(
            settings,
            action=path[index],
            path=path[:index],
            success=successes[index],
            cost=world.agents[path[index]][0],
        )
    bonus = transition_reward(settings, action=END, path=path, success=0.0, cost=0.0)
    return total + (bonus if settings.end_when is None else bonus * solved)


def run_fixed(world: World, route: list[str], settings: QTableSettings, rng: random.Random, task: int) -> Episode:
    team = Team(world, rng, task)
    successes = [team.step(agent) for agent in route]
    return Episode(
        reward=reward_of(world, settings, route, successes, float(team.tested)),
        cost=sum(world.agents[a][0] for a in route),
        solved=team.tested,
        path=list(route),
    )


def run_random(world: World, settings: QTableSettings, rng: random.Random, task: int) -> Episode:
    team = Team(world, rng, task)
    path: list[str] = []
    successes: list[float] = []
    while len(path) < MAX_DECISIONS:
        choices = [a for a in world.agents if path.count(a) < MAX_VISITS] + ([END] if path else [])
        choice = rng.choice(choices)
        if choice == END:
            break
        path.append(choice)
        successes.append(team.step(choice))
    cost = sum(world.agents[a][0] for a in path)
    return Episode(reward_of(world, settings, path, successes, float(team.tested)), cost, team.tested, path)


def expected_reward(world: World, route: list[str], settings: QTableSettings) -> float:
    """A fixed route's expected reward in closed form: the chance the code is correct after each coder, and that
    correct code has been tested since the last coder ran (for HumanEval, averaged over the graded tasks)."""
    if world.graded is None:
        return _expected_reward_on(world, route, settings, None)
    values = [_expected_reward_on(world, route, settings, task) for task in world.graded]
    return statistics.fmean(values)


def _expected_reward_on(
    world: World, route: list[str], settings: QTableSettings, task: tuple[str, bool, bool] | None
) -> float:
    p_correct = 0.0
    p_tested = 0.0
    p_success: list[float] = []
    for agent in route:
        p = world.agents[agent][1]
        if agent in world.coders and task is not None:
            _, good, bad = task
            p_correct = p * good + (1 - p) * bad  # the new completion replaces the last one
            p_success.append(p_correct)
            p_tested = 0.0
            continue
        if agent in world.testers:
            p_success.append(p * p_correct)
            p_tested += (p_correct - p_tested) * p
        else:
            p_success.append(p)
        if agent in world.coders:
            p_correct = 1 - (1 - p_correct) * (1 - p)
            p_tested = 0.0
    return reward_of(world, settings, route, p_success, p_tested)


def oracle_route(world: World, settings: QTableSettings) -> list[str]:
    best: tuple[float, list[str]] = (-1e9, [])
    for length in range(1, 7):
        for route in itertools.permutations(world.agents, length):
            value = expected_reward(world, list(route), settings)
            if value > best[0]:
                best = (value, list(route))
    return best[1]


def run_qtable(
    world: World,
    router: QTableRouter,
    episode: int,
    rng: random.Random,
    timings: dict[str, list[float]],
    *,
    run_id: str | None = None,
) -> Episode:
    """One episode through the real router: the events the runtime would record, decisions, learning at END."""
    team = Team(world, rng, episode)
    run_id = run_id or f"sim-{episode}"
    events: list[Event] = []
    path: list[str] = []
    visits: dict[str, int] = {}
    decisions = 0
    last_ok = False  # whether the last agent's step succeeded (its process reward), for a state feature

    def open_slot(name: str) -> bool:
        if name == router.name:
            return decisions < MAX_DECISIONS
        return visits.get(name, 0) < MAX_VISITS

    def emit(type_: EventType, node: str, data: dict[str, object]) -> None:
        events.append(Event.model_construct(run_id=run_id, seq=len(events), type=type_, ts="", node=node, data=data))

    while True:
        decisions += 1
        clock = time.perf_counter()
        state = {"solved": team.tested, "step": len(path), "last_ok": last_ok}
        outcome = router.decide(run_id, episode, events, state, open_slot)
        elapsed = time.perf_counter() - clock
        choice = outcome.decision.choice
        timings["update" if choice == END else "decision"].append(elapsed)
        if choice == END:
            record = outcome.record
            ended = "early_stop" not in record
            reward = float(record["cumulative_reward"])
            solved = team.tested and ended
            return Episode(reward, sum(world.agents[a][0] for a in path), solved, path)
        path.append(choice)
        visits[choice] = visits.get(choice, 0) + 1
        success = team.step(choice)
        last_ok = success > 0
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


HUMANEVAL_AGENTS: dict[str, tuple[float, float]] = {  # name -> (salary, chance its step is good)
    "planner": (6, 0.8),
    "senior": (9, 0.9),  # writes the reference solution 9 times in 10, else a broken one
    "junior": (3, 0.6),
    "intern": (1, 0.25),
    "reviewer": (5, 0.7),
    "tester": (1, 0.95),  # runs the task's tests: succeeds only when the current completion passes them
    "linter": (1, 0.9),
    "formatter": (1, 0.9),
}
HUMANEVAL_STATIC = ["planner", "senior", "reviewer", "tester"]


def humaneval_world(tasks: int) -> World:
    """The team on the first ``tasks`` HumanEval problems: a coder's good completion is the reference solution, its
    bad one the solution without its last line; whether each passes the task's tests is graded once, for real, in
    the local sandbox by agentflow's HumanEval grader (the reference harness's programs)."""
    import asyncio

    from agentflow.bench import checkout_problems, grade_programs, load_problems

    folder = checkout_problems()
    if folder is None:
        raise SystemExit("no ../shared/data/humaneval beside the project's root")
    problems = list(load_problems(folder).values())[:tasks]
    programs: list[str] = []
    for problem in problems:
        good = problem.canonical_solution
        lines = good.rstrip("\n").split("\n")
        bad = "\n".join(lines[:-1]) + "\n" if len(lines) > 1 else "    pass\n"
        programs += [problem.program(good), problem.program(bad)]
    verdicts = asyncio.run(grade_programs(programs, backend="local"))
    graded = [
        (problem.task_id, verdicts[2 * i].passed, verdicts[2 * i + 1].passed) for i, problem in enumerate(problems)
    ]
    return World(
        "humaneval",
        HUMANEVAL_AGENTS,
        frozenset({"senior", "junior", "intern"}),
        frozenset({"tester"}),
        HUMANEVAL_STATIC,
        graded,
        # A coder's reward here is whether its completion passes the tests (a `tests_passed` hook on the coder's
        # node): in the state, the table can send a failing completion back to a coder instead of to the tester.
        tuned_features=({"name": "ok", "expr": "state.last_ok"},),
    )


TUNED: dict[str, Any] = {  # --tuned: the options beyond the paper that this benchmark measured to help (README)
    "exploration": "ucb",
    "ucb_weight": 5.0,  # beat 10 online in both worlds and greedy on HumanEval, 48 seeds each (README)
    "initial_q": 150.0,  # above any return here: every action is tried before the table settles
    "lr": 0.05,
    "lr_schedule": "visits",
    "replay_episodes": 10,
    "update_order": "backward",
    "gamma": 1.0,
    "learn_stopped": True,
    "features": [
        {"name": "solved", "expr": "state.solved"},
        {"name": "step", "expr": "state.step", "bins": [5]},  # before or from the paper's minimum path length
    ],
}


def _router(world: World, settings: QTableSettings, store: TraceStore, mode: str) -> QTableRouter:
    router = QTableRouter(
        workflow="qtable_learning",
        template_hash="simulated",
        name="route",
        label="route",
        settings=settings,
        candidates=[*world.agents, END],
        agents=list(world.agents),
        start="",  # no restart after an early stop: the episode ends
    )
    router.store = store
    router.mode = "learn" if mode == "learn" else "freeze"
    return router


def measure_world(
    world: World, *, episodes: int, seed: int, paper_end: bool, tuned: bool = False, eval_every: int = 25
) -> dict[str, Any]:
    """The four policies on ``world``, ``episodes`` each, and the figures the issue names; every ``eval_every``
    episodes the table learned so far also routes 100 frozen episodes (ε 0, no update: ``--freeze``) on the tasks
    of the oracle's last 100."""
    base = QTableSettings(
        success=["sim"],
        salary={name: salary for name, (salary, _) in world.agents.items()},
        end_when=None if paper_end else "state.solved",
    )
    tuned_settings = {**TUNED, "features": [*TUNED["features"], *world.tuned_features]}
    settings = QTableSettings.model_validate({**base.model_dump(), **tuned_settings}) if tuned else base
    oracle = oracle_route(world, base)
    results: dict[str, list[Episode]] = {}

    def fixed(route: list[str]) -> list[Episode]:
        return [run_fixed(world, route, base, random.Random(seed * 1000 + i), i) for i in range(episodes)]

    results["static"] = fixed(world.static)
    rng = random.Random(seed)
    results["random"] = [run_random(world, base, rng, i) for i in range(episodes)]
    results["oracle"] = fixed(oracle)
    timings: dict[str, list[float]] = {"decision": [], "update": []}
    evaluation_tasks = range(max(0, episodes - 100), episodes)  # the oracle's last 100: the same draws
    greedy_curve: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as folder, TraceStore(Path(folder) / ".agentflow") as store:
        router = _router(world, settings, store, "learn")
        frozen = _router(world, settings, store, "freeze")

        def evaluate() -> list[Episode]:
            unused: dict[str, list[float]] = {"decision": [], "update": []}
            return [
                run_qtable(world, frozen, i, random.Random(seed * 1000 + i), unused, run_id=f"eval-{i}")
                for i in evaluation_tasks
            ]

        results["qtable"] = []
        for i in range(episodes):
            results["qtable"].append(run_qtable(world, router, i, random.Random(seed * 1000 + i), timings))
            if (i + 1) % eval_every == 0 or i + 1 == episodes:
                greedy = evaluate()
                greedy_curve.append((i + 1, statistics.fmean(e.reward for e in greedy)))
        results["qtable_greedy"] = greedy
    oracle_mean = statistics.fmean(e.reward for e in results["oracle"][-100:])
    greedy_reached = next((n for n, mean in greedy_curve if mean >= 0.95 * oracle_mean), None)
    routes = Counter(" -> ".join(e.path) for e in results["qtable_greedy"])
    window = 50
    reached = next(
        (
            i
            for i in range(window, episodes + 1)
            if statistics.fmean(e.reward for e in results["qtable"][i - window : i]) >= 0.95 * oracle_mean
        ),
        None,
    )
    table = {name: summary(run) for name, run in results.items()}
    static_cps = table["static"]["cost_per_success"]
    qtable_cps, greedy_cps = table["qtable"]["cost_per_success"], table["qtable_greedy"]["cost_per_success"]
    report: dict[str, Any] = {
        "world": world.name,
        "episodes": episodes,
        "seed": seed,
        "settings": settings.model_dump(exclude_defaults=True, exclude={"success", "salary", "end_when"}),
        "end_when": settings.end_when,
        "static_route": world.static,
        "oracle_route": oracle,
        "learned_greedy_route": routes.most_common(1)[0][0].split(" -> ") if routes else [],
        "greedy_routes": len(routes),
        "policies": table,
        "episodes_to_95pct": reached,
        "qtable_vs_oracle": round(float(table["qtable"]["mean_reward"] or 0) / oracle_mean, 3),
        "cost_vs_static": round(qtable_cps / static_cps, 3) if qtable_cps and static_cps else None,
        "greedy_episodes_to_95pct": greedy_reached,
        "greedy_vs_oracle": round(float(table["qtable_greedy"]["mean_reward"] or 0) / oracle_mean, 3),
        "greedy_cost_vs_static": round(greedy_cps / static_cps, 3) if greedy_cps and static_cps else None,
        "greedy_curve": [(n, round(mean / oracle_mean, 3)) for n, mean in greedy_curve],
        "decision_us": round(statistics.median(timings["decision"]) * 1e6, 1),
        "update_ms": round(statistics.median(timings["update"]) * 1e3, 2),
    }
    if world.graded is not None:
        report["humaneval_tasks"] = len(world.graded)
        report["good_completions_passing"] = sum(good for _, good, _ in world.graded)
        report["bad_completions_passing"] = sum(bad for _, _, bad in world.graded)
    return report


def _print_report(report: dict[str, Any]) -> None:
    print(f"{report['world']}: {report['episodes']} episodes, seed {report['seed']}; last 100 episodes:")
    if "humaneval_tasks" in report:
        print(
            f"  {report['humaneval_tasks']} HumanEval tasks graded in the local sandbox: good completions passing "
            f"{report['good_completions_passing']}, bad ones passing {report['bad_completions_passing']}"
        )
    print(f"{'policy':13} {'mean reward':>12} {'success':>8} {'cost/success':>13}")
    for name, row in report["policies"].items():
        print(f"{name:13} {row['mean_reward']:>12} {row['success_rate']:>8} {row['cost_per_success']!s:>13}")
    print(
        f"oracle route: {' -> '.join(report['oracle_route'])}; "
        f"learned greedy route: {' -> '.join(report['learned_greedy_route'])}"
    )
    print(f"settings beyond the defaults: {report['settings'] or 'none (the paper)'}; end_when: {report['end_when']}")
    keys = ("episodes_to_95pct", "qtable_vs_oracle", "cost_vs_static")
    print("online (the exploring policy): " + ", ".join(f"{key} {report[key]}" for key in keys))
    keys = ("greedy_episodes_to_95pct", "greedy_vs_oracle", "greedy_cost_vs_static")
    print("greedy (the frozen table): " + ", ".join(f"{key} {report[key]}" for key in keys))
    print(f"decision_us {report['decision_us']}, update_ms {report['update_ms']}")


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
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="the table with the options beyond the paper this benchmark measured to help (TUNED; default: the paper)",
    )
    parser.add_argument("--eval-every", type=int, default=25, help="episodes between greedy evaluations")
    parser.add_argument(
        "--humaneval-tasks",
        type=int,
        default=164,
        help="HumanEval problems of the second world (0 leaves it out)",
    )
    args = parser.parse_args(argv)
    options = {"paper_end": args.paper_end, "tuned": args.tuned, "eval_every": args.eval_every}
    report = measure_world(SIMULATION, episodes=args.episodes, seed=args.seed, **options)
    if args.humaneval_tasks > 0:
        world = humaneval_world(args.humaneval_tasks)
        report["humaneval"] = measure_world(world, episodes=args.episodes, seed=args.seed, **options)
    if args.json:
        print(json.dumps(report))
        return 0
    _print_report(report)
    if "humaneval" in report:
        print()
        _print_report(report["humaneval"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
