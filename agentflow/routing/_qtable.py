"""Q-table routing (PriorDynaFlow): the table, its update after an episode, the rewards, and each decision.

A state is the agent that just ran (optionally with discretized state features, ``coder[tests=fail]``); an
action is the next agent or END. Nothing here knows the runtime or the store: :mod:`agentflow.routing._router`
feeds it a run's events and persists what it learns.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentflow.spec._models import END, QTableSettings

Chooser = Literal["greedy", "random", "ucb", "model", "cold_start", "fallback", "early_stop", "retry"]


def state_key(agent: str, features: Mapping[str, Any] | None = None) -> str:
    """The table's name of a state: the agent, then its features in brackets (``coder[failing=true]``)."""
    if not features:
        return agent
    inner = ",".join(f"{name}={_feature_text(value)}" for name, value in features.items())
    return f"{agent}[{inner}]"


def state_agent(key: str) -> str:
    """The agent of a state key."""
    return key.split("[", 1)[0]


def _feature_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def discretize(value: Any, bins: Sequence[float] | None) -> Any:
    """A feature's value as the table keys it: the bin index of a number when ``bins`` are given."""
    if bins is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a feature with bins needs a number, got {type(value).__name__} {value!r}")
    for index, edge in enumerate(bins):
        if value < edge:
            return index
    return len(bins)


@dataclass
class QTable:
    """State → action → Q, with how often each value was updated, the episodes learned and decisions learned.

    ``initial`` is the Q of a pair never updated (``initial_q``; the paper's 0).
    """

    values: dict[str, dict[str, float]] = field(default_factory=lambda: {})
    updates: dict[str, dict[str, int]] = field(default_factory=lambda: {})
    episodes: int = 0
    decisions: int = 0
    initial: float = 0.0

    def row(self, state: str, actions: Iterable[str]) -> dict[str, float]:
        """Q(state, ·) over ``actions`` (``initial`` for a pair never updated)."""
        known = self.values.get(state, {})
        return {action: known.get(action, self.initial) for action in actions}

    def q(self, state: str, action: str) -> float:
        return self.values.get(state, {}).get(action, self.initial)

    def update_count(self, state: str, action: str) -> int:
        """How often the pair was updated from an episode of its own (replays not counted)."""
        return self.updates.get(state, {}).get(action, 0)

    def set(self, state: str, action: str, value: float, *, count: bool = True) -> None:
        """Store Q(state, action); ``count`` adds one to the pair's updates (a replayed episode does not)."""
        self.values.setdefault(state, {})[action] = value
        counts = self.updates.setdefault(state, {})
        counts[action] = counts.get(action, 0) + (1 if count else 0)


def epsilon_after(settings: QTableSettings, episodes: int) -> float:
    """ε after ``episodes`` learned episodes: ``max(floor, ε0 · decay^episodes)``."""
    return max(settings.epsilon_min, settings.epsilon * settings.epsilon_decay**episodes)


def softmax_entropy(values: Iterable[float]) -> float:
    """H(softmax(values)) in nats (0 for an empty row)."""
    row = list(values)
    if not row:
        return 0.0
    top = max(row)
    weights = [math.exp(v - top) for v in row]
    total = sum(weights)
    return -sum((w / total) * math.log(w / total) for w in weights if w > 0)


@dataclass(frozen=True)
class Transition:
    """One step of an episode: from ``state`` the router chose ``action``, which earned ``reward``."""

    state: str
    action: str
    reward: float

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "action": self.action, "reward": self.reward}


@dataclass(frozen=True)
class ValueUpdate:
    """What one transition did to the table (kept in the episode's history)."""

    state: str
    action: str
    before: float
    after: float
    target: float

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "action": self.action, "before": self.before, "after": self.after}


def update_episode(
    table: QTable,
    transitions: Sequence[Transition],
    settings: QTableSettings,
    actions_of: Mapping[str, Sequence[str]],
    *,
    ended: bool = True,
    replayed: bool = False,
) -> list[ValueUpdate]:
    """Update ``table`` in place over one finished episode, in order, and return each update.

    ``Q(s,a) += lr·(r' + β·H(softmax Q(s,·)) + γ·max_a' Q(s',a') − Q(s,a))`` where ``s'`` is the next transition's
    state (END after the last, whose row is empty: max 0), and ``r'`` is ``r`` times ``terminal_multiplier`` for a
    positive reward of the last transition (``ended``: the episode reached END; one stopped early ends with no
    END reward to multiply). ``actions_of`` gives each agent's actions (the router's candidates).
    ``update_order`` backward applies the last transition first, so each update sees the one after it already
    updated. With ``lr_schedule`` visits the n-th update of a pair uses ``max(lr, 1/n)``; a ``replayed`` episode
    (one learned before, learned again) always uses ``lr`` and leaves the pairs' update counts alone, so the counts
    (and the exploration bonus read from them) stay those of real visits.
    """
    done: list[ValueUpdate] = []
    order = range(len(transitions))
    for index in reversed(order) if settings.update_order == "backward" else order:
        step = transitions[index]
        last = index == len(transitions) - 1
        next_state = END if last else transitions[index + 1].state
        reward = step.reward
        if last and ended and reward > 0:
            reward *= settings.terminal_multiplier
        row = table.row(step.state, actions_of.get(state_agent(step.state), ()))
        entropy = softmax_entropy(row.values())
        next_row = {} if next_state == END else table.row(next_state, actions_of.get(state_agent(next_state), ()))
        next_best = max(next_row.values(), default=0.0)
        before = table.q(step.state, step.action)
        target = reward + settings.entropy_weight * entropy + settings.gamma * next_best
        rate = settings.lr
        if settings.lr_schedule == "visits" and not replayed:
            rate = max(rate, 1 / (table.update_count(step.state, step.action) + 1))
        after = before + rate * (target - before)
        table.set(step.state, step.action, after, count=not replayed)
        done.append(ValueUpdate(step.state, step.action, before, after, target))
    return done


def transition_reward(
    settings: QTableSettings,
    *,
    action: str,
    path: Sequence[str],
    success: float,
    cost: float,
) -> float:
    """The reward of choosing ``action`` after the agents of ``path`` (the episode so far, the last one just ran).

    ``−salary_weight·cost + success_weight·success`` for an agent (``cost`` is its salary or its tokens' price,
    ``success`` its process reward), ``−bounce_penalty`` for going straight back to the agent before the last,
    ``−repeat_penalty`` for an agent already in the path; END earns ``end_reward − path_penalty·max(0,
    min_path_length − len(path))``.
    """
    if action == END:
        return settings.end_reward - settings.path_penalty * max(0, settings.min_path_length - len(path))
    reward = -settings.salary_weight * cost + settings.success_weight * success
    if len(path) >= 2 and path[-2] == action:
        reward -= settings.bounce_penalty
    if action in path:
        reward -= settings.repeat_penalty
    return reward


def available_actions(table: QTable, state: str, actions: Sequence[str], settings: QTableSettings) -> list[str]:
    """The actions not pruned (Q above ``prune_below``); all of them when every one is pruned."""
    kept = [a for a in actions if table.q(state, a) > settings.prune_below]
    return kept or list(actions)


def pruned_actions(table: QTable, settings: QTableSettings) -> list[tuple[str, str, float]]:
    """Every (state, action, Q) the table no longer offers."""
    return [
        (state, action, q)
        for state, row in sorted(table.values.items())
        for action, q in sorted(row.items())
        if q <= settings.prune_below
    ]


def best_groups(row: Mapping[str, float], groups: int = 2) -> list[str]:
    """The actions whose Q is one of the ``groups`` highest distinct values, best first (ties in row order)."""
    distinct = sorted(set(row.values()), reverse=True)[:groups]
    return [action for value in distinct for action in row if row[action] == value]


@dataclass(frozen=True)
class Decision:
    """One routing decision, as its ``route`` event records it."""

    choice: str
    chooser: Chooser
    state: str
    q_values: dict[str, float]
    epsilon: float
    candidates: list[str]
    model_said: str | None = None


def offer(
    row: Mapping[str, float], epsilon: float, rng: random.Random, *, cold_start: bool
) -> tuple[list[str], str | None]:
    """The candidates a priori: every action during the cold start, else the two best Q groups plus, with
    probability ε, one random action; and that random action (None when there is none)."""
    actions = list(row)
    if cold_start:
        return actions, None
    candidates = best_groups(row)
    extra = rng.choice(actions) if actions and rng.random() < epsilon else None
    if extra is not None and extra not in candidates:
        candidates.append(extra)
    return candidates, extra


def decide_greedy(
    row: Mapping[str, float], epsilon: float, rng: random.Random, *, cold_start: bool, state: str
) -> Decision:
    """ε-greedy over ``row``; during the cold start a uniform choice among all actions. Ties go to a random best."""
    actions = list(row)
    if cold_start:
        return Decision(rng.choice(actions), "cold_start", state, dict(row), epsilon, actions)
    if epsilon > 0 and rng.random() < epsilon:
        return Decision(rng.choice(actions), "random", state, dict(row), epsilon, actions)
    return Decision(_greedy(row, rng), "greedy", state, dict(row), epsilon, actions)


def ucb_bonus(table: QTable, state: str, actions: Iterable[str], weight: float) -> dict[str, float]:
    """Each action's exploration bonus ``weight·sqrt(ln(1 + N(s)) / (1 + n(s,a)))`` from the table's update counts."""
    counts = table.updates.get(state, {})
    chosen = list(actions)
    visits = sum(counts.get(action, 0) for action in chosen)
    return {action: weight * math.sqrt(math.log(1 + visits) / (1 + counts.get(action, 0))) for action in chosen}


def decide_ucb(
    row: Mapping[str, float], bonus: Mapping[str, float], rng: random.Random, *, epsilon: float, state: str
) -> Decision:
    """The best ``Q + bonus`` (ties to a random one); chooser ``ucb`` when the bonus changed the greedy choice."""
    scored = {action: q + bonus.get(action, 0.0) for action, q in row.items()}
    choice = _greedy(scored, rng)
    chooser: Chooser = "greedy" if row[choice] == max(row.values()) else "ucb"
    return Decision(choice, chooser, state, dict(row), epsilon, list(row))


def _greedy(row: Mapping[str, float], rng: random.Random) -> str:
    top = max(row.values())
    return rng.choice([action for action, q in row.items() if q == top])


_NEXT_LINE = re.compile(
    r"(?:next(?:[ _-]?agent)?|route(?:[ _-]?to)?|hand(?:[ _-]?off)?(?:[ _-]?to)?)"  # the label: NEXT, route to, ...
    r"[\s*_`]*[:=\-]+[\s*_`\"']*"  # then a separator, with any markdown or quotes around it
    r"([A-Za-z_][A-Za-z0-9_]*)",  # then the name
    re.IGNORECASE,
)


def parse_named_agent(answer: str) -> str | None:
    """The agent a model named as next in its answer: the last ``NEXT: name`` (also ``next agent = name``,
    ``route to: name``, markdown or quotes around the name); None when the answer names none."""
    found = _NEXT_LINE.findall(answer)
    return found[-1] if found else None


def decide_a_priori(
    row: Mapping[str, float],
    candidates: Sequence[str],
    epsilon: float,
    answer: str | None,
    rng: random.Random,
    *,
    state: str,
    cold_start: bool,
) -> Decision:
    """The model's choice among the offered ``candidates``; an unparsable, unknown or not-offered name falls back to
    the greedy choice among the candidates (chooser ``fallback``, the name kept as ``model_said``)."""
    said = parse_named_agent(answer or "")
    lookup = {name.lower(): name for name in candidates}
    if said is not None and said.lower() in lookup:
        return Decision(lookup[said.lower()], "model", state, dict(row), epsilon, list(candidates), said)
    offered = {action: row[action] for action in candidates if action in row} or dict(row)
    del cold_start  # the cold start already widened the offer; the fallback is greedy either way
    return Decision(_greedy(offered, rng), "fallback", state, dict(row), epsilon, list(candidates), said)


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
