"""A `policy: qtable` router at run time: it follows each run's episode through the run's events, decides, and
learns from the episode when it reaches END.

The runtime calls :meth:`QTableRouter.decide` from the router's conditional edge with the run's events so far, and
:meth:`QTableRouter.offer_prompt` before an agent whose next stop is an ``a_priori`` router asks its model. The
table is read from the store at a run's first decision and updated in one locked transaction at its end, so
concurrent runs lose no update (see :mod:`agentflow.traces._qtable_tables`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agentflow._canonical_json import canonical_json
from agentflow.graph import _expr
from agentflow.routing._qtable import (
    Decision,
    QTable,
    Transition,
    ValueUpdate,
    available_actions,
    decide_a_priori,
    decide_greedy,
    decide_ucb,
    discretize,
    epsilon_after,
    offer,
    state_key,
    transition_reward,
    ucb_bonus,
    update_episode,
)
from agentflow.spec._loader import LoadedWorkflow
from agentflow.spec._models import END, QTableSettings
from agentflow.traces._events import Event, EventType
from agentflow.traces._qtable_tables import QTableChange, StoredQTable

RoutingMode = Literal["learn", "freeze"]
"""Overrides of a table's `learn` setting: ``learn`` updates after every episode, ``freeze`` routes greedily (ε = 0,
no cold start) and updates nothing."""

_KEPT_EPISODES = 1024  # runs followed at once; a run that never reaches END is forgotten after this many more


@runtime_checkable
class QTableStore(Protocol):
    """What a router needs of a store (both built-in stores have it)."""

    def load_qtable(self, workflow: str, router: str) -> StoredQTable | None: ...

    def update_qtable(
        self, workflow: str, router: str, template_hash: str, change: Callable[[StoredQTable], QTableChange]
    ) -> StoredQTable: ...


def offer_text(candidates: Sequence[str]) -> str:
    """What an agent's system prompt gets when an a_priori router follows it."""
    return (
        f"\n\nWhen you are done, choose who works next, one of: {', '.join(candidates)} (END finishes the task). "
        "Write it on the last line of your answer as `NEXT: <name>`."
    )


def routing_hash(loaded: LoadedWorkflow) -> str:
    """The version a Q-table is learned on: the template hash without what does not change the routing problem
    (limits, sandbox, default inputs, description and run-level rewards, which a benchmark sets over the workflow's
    own), so the table a benchmark learns serves plain runs of the same file and back."""
    content = loaded.spec.model_dump(
        mode="json",
        by_alias=True,
        exclude_defaults=True,
        exclude={"limits", "sandbox", "inputs", "description"},
    )
    content["rewards"] = [reward for reward in content.get("rewards", []) if reward.get("on") != "run"]
    return hashlib.sha256(canonical_json(content)).hexdigest()


def table_from_stored(stored: StoredQTable | None, initial: float = 0.0) -> QTable:
    """The in-memory table of a stored one (an empty table for None); ``initial`` is the Q of pairs never updated."""
    table = QTable(initial=initial)
    if stored is None:
        return table
    for (state, action), (q, updates) in stored.values.items():
        table.values.setdefault(state, {})[action] = q
        table.updates.setdefault(state, {})[action] = updates
    table.episodes, table.decisions = stored.episodes, stored.decisions
    return table


@dataclass
class _Episode:
    """One run's episode so far (a retry after an early stop starts a new one in the same run)."""

    rng: random.Random
    table: QTable
    path: list[str] = field(default_factory=lambda: [])
    transitions: list[Transition] = field(default_factory=lambda: [])
    pending: tuple[str, str, list[str]] | None = None  # (state, action, path when chosen) awaiting its reward
    total: float = 0.0
    cursor: int = 0  # the first event after the last decision
    retries: int = 0
    ignored: list[dict[str, Any]] = field(default_factory=lambda: [])
    offers: dict[str, list[str]] = field(default_factory=lambda: {})


@dataclass(frozen=True)
class RouteOutcome:
    """A decision plus what the ``route`` event records beside it."""

    decision: Decision
    record: dict[str, Any]


class QTableRouter:
    """The learned router of one router node of one compiled workflow (shared by every run of it)."""

    def __init__(
        self,
        *,
        workflow: str,
        template_hash: str,
        name: str,
        label: str,
        settings: QTableSettings,
        candidates: Sequence[str],
        agents: Sequence[str],
        start: str,
        prefix: str = "",
    ) -> None:
        self.workflow = workflow
        self.template_hash = template_hash
        self.name = name
        self.label = label
        self.settings = settings
        self.candidates = list(candidates)
        self.agents = set(agents)
        self.start = start
        self.prefix = prefix
        self.mode: RoutingMode | None = None
        self.store: QTableStore | None = None
        self._episodes: OrderedDict[str, _Episode] = OrderedDict()

    @property
    def learning(self) -> bool:
        return self.mode == "learn" or (self.mode is None and self.settings.learn)

    @property
    def frozen(self) -> bool:
        return self.mode == "freeze"

    def actions_of(self) -> dict[str, list[str]]:
        """Each state agent's actions: the candidates other than itself."""
        return {agent: [c for c in self.candidates if c != agent] for agent in [*self.candidates, "START"]}

    def load(self) -> QTable:
        """The table as the store holds it now (empty without a store, or before its first update)."""
        if self.store is None:
            return QTable(initial=self.settings.initial_q)
        stored = self.store.load_qtable(self.workflow, self.label)
        if stored is not None and stored.template_hash != self.template_hash:
            from agentflow.traces._qtable_tables import version_refused

            raise version_refused(self.workflow, self.label, stored.template_hash, self.template_hash)
        return table_from_stored(stored, self.settings.initial_q)

    def check_version(self) -> None:
        """Raise ConfigError when the store's table was learned on another template hash."""
        self.load()

    def _episode(self, run_id: str, seed: int | None) -> _Episode:
        episode = self._episodes.get(run_id)
        if episode is None:
            # Exploration, not secrecy: a seeded run routes the same way again.
            rng = random.Random(f"{seed}:{self.label}" if seed is not None else f"{run_id}:{self.label}")  # noqa: S311
            episode = _Episode(rng=rng, table=self.load())
            self._episodes[run_id] = episode
            while len(self._episodes) > _KEPT_EPISODES:
                self._episodes.popitem(last=False)
        return episode

    def _epsilon(self, table: QTable) -> float:
        return 0.0 if self.frozen else epsilon_after(self.settings, table.episodes)

    def _cold(self, episode: _Episode) -> bool:
        decided = episode.table.decisions + len(episode.transitions) + (episode.pending is not None)
        return not self.frozen and decided < self.settings.cold_start_decisions

    def _state(self, agent: str, state: Mapping[str, Any]) -> str:
        if not self.settings.features:
            return agent
        values = {
            feature.name: discretize(_expr.evaluate(feature.expr, {"state": dict(state)}), feature.bins)
            for feature in self.settings.features
        }
        return state_key(agent, values)

    def _row(self, episode: _Episode, state: str, agent: str, open_slot: Callable[[str], bool]) -> dict[str, float]:
        if not open_slot(self.name):  # the router's own last visit: whatever it chose next could not return
            return {END: episode.table.q(state, END)}
        actions = [c for c in self.candidates if c != agent and (c == END or open_slot(c))]
        if agent == "START":
            actions = [c for c in actions if c != END] or actions
        actions = available_actions(episode.table, state, actions, self.settings) if actions else [END]
        return episode.table.row(state, actions)

    # -- a priori offers ---------------------------------------------------------------------------------------

    def offer_prompt(
        self, run_id: str, seed: int | None, agent: str, state: Mapping[str, Any], open_slot: Callable[[str], bool]
    ) -> str:
        """The instruction added to ``agent``'s system prompt: the agents it may hand over to, and how to name one."""
        episode = self._episode(run_id, seed)
        key = self._state(agent, state)
        row = self._row(episode, key, agent, open_slot)
        candidates, _extra = offer(row, self._epsilon(episode.table), episode.rng, cold_start=self._cold(episode))
        episode.offers[agent] = candidates
        return offer_text(candidates)

    # -- decisions ---------------------------------------------------------------------------------------------

    def decide(
        self,
        run_id: str,
        seed: int | None,
        events: Sequence[Event],
        state: Mapping[str, Any],
        open_slot: Callable[[str], bool],
    ) -> RouteOutcome:
        """Choose the next node after the events so far; learn from the episode when the choice is END.

        ``open_slot(agent)`` says whether the agent may run again (its loop bound is not reached).
        """
        episode = self._episode(run_id, seed)
        agent, success, cost, answer = self._last_visit(episode, events)
        episode.cursor = len(events)
        if episode.pending is not None and agent is not None:
            pending_state, action, path = episode.pending
            reward = transition_reward(self.settings, action=action, path=path, success=success, cost=cost)
            episode.transitions.append(Transition(pending_state, action, reward))
            episode.total += reward
            episode.pending = None
        if agent is not None:
            episode.path.append(agent)
        record: dict[str, Any] = {"policy": "qtable", "mode": self.settings.mode, "path": list(episode.path)}
        if episode.total < self.settings.early_stop_below:
            return self._stop_early(run_id, episode, agent or "START", record)
        current = agent or "START"
        key = self._state(current, state)
        row = self._row(episode, key, current, open_slot)
        epsilon = self._epsilon(episode.table)
        cold = self._cold(episode)
        offered = episode.offers.pop(current, None)
        if self.settings.mode == "a_priori" and offered is not None:
            decision = decide_a_priori(row, offered, epsilon, answer, episode.rng, state=key, cold_start=cold)
        elif self.settings.exploration == "ucb" and not cold and not self.frozen:
            bonus = ucb_bonus(episode.table, key, row, self.settings.ucb_weight)
            decision = decide_ucb(row, bonus, episode.rng, epsilon=0.0, state=key)  # no random step
            record["ucb_bonus"] = bonus
        else:
            decision = decide_greedy(row, epsilon, episode.rng, cold_start=cold, state=key)
        if decision.choice == END:
            reward = transition_reward(self.settings, action=END, path=episode.path, success=0.0, cost=0.0)
            if self.settings.end_when is not None and not _expr.evaluate_condition(self.settings.end_when, state):
                reward = 0.0  # END without the task solved earns no bonus
                record["end_unmet"] = self.settings.end_when
            episode.transitions.append(Transition(key, END, reward))
            episode.total += reward
            record["episode"] = self._finish(run_id, episode)
        else:
            episode.pending = (key, decision.choice, list(episode.path))
        record["cumulative_reward"] = episode.total
        if episode.ignored:
            record["ignored_rewards"] = list(episode.ignored)
        return RouteOutcome(decision, record)

    def _learn(self, run_id: str, episode: _Episode, *, ended: bool) -> StoredQTable:
        """Update the stored table from the episode's transitions (``ended``: it reached END, else it stopped)."""
        assert self.store is not None
        return learn_episode(
            self.store,
            workflow=self.workflow,
            router=self.label,
            template_hash=self.template_hash,
            settings=self.settings,
            actions_of=self.actions_of(),
            transitions=episode.transitions,
            run_id=run_id,
            ignored=episode.ignored,
            ended=ended,
        )

    def _stop_early(self, run_id: str, episode: _Episode, current: str, record: dict[str, Any]) -> RouteOutcome:
        record["early_stop"] = {"cumulative_reward": episode.total, "retry": episode.retries + 1}
        record["cumulative_reward"] = episode.total
        if self.settings.learn_stopped and self.learning and self.store is not None and episode.transitions:
            # Without this, the actions that sink an episode are never charged for it (the paper's behaviour).
            stored = self._learn(run_id, episode, ended=False)
            record["early_stop"]["learned_episode"] = stored.episodes
        empty = Decision(END, "early_stop", current, {}, self._epsilon(episode.table), [])
        if episode.retries < self.settings.max_retries and self.start in self.candidates:
            # Start the episode over from the first agent (its stopped transitions teach nothing, as in the paper).
            episode.retries += 1
            episode.path, episode.transitions, episode.pending, episode.total = [], [], None, 0.0
            retry = Decision(self.start, "retry", current, {}, empty.epsilon, [self.start])
            return RouteOutcome(retry, record)
        self._episodes.pop(run_id, None)
        record["early_stop"]["gave_up"] = True
        return RouteOutcome(empty, record)

    def _last_visit(self, episode: _Episode, events: Sequence[Event]) -> tuple[str | None, float, float, str | None]:
        """The agent that ran since the last decision, its success signal, its cost and its final answer."""
        agent: str | None = None
        label: str | None = None
        for event in events[episode.cursor :]:
            if event.type is EventType.NODE_FINISHED and event.node is not None:
                name = event.node.removeprefix(self.prefix)
                if name in self.agents and event.data.get("status") == "ok":
                    agent, label = name, event.node
        if agent is None:
            return None, 0.0, 0.0, None
        successes: list[float] = []
        tokens = 0
        answer: str | None = None
        wanted = set(self.settings.success)
        for event in events[episode.cursor :]:
            if event.node != label:
                continue
            if event.type is EventType.REWARD and event.data.get("hook") in wanted:
                value = event.data.get("value")
                if value is None:
                    continue
                if not isinstance(value, int | float) or not math.isfinite(value):
                    episode.ignored.append({"node": label, "hook": event.data.get("hook"), "value": str(value)})
                    continue
                successes.append(float(value))
            elif event.type is EventType.MODEL_RESPONSE:
                usage = event.data.get("usage") or {}
                tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
                content = (event.data.get("message") or {}).get("content")
                if isinstance(content, str):
                    answer = content
        success = sum(successes) / len(successes) if successes else 0.0
        return agent, success, self._cost(agent, tokens), answer

    def _cost(self, agent: str, tokens: int) -> float:
        if agent in self.settings.salary:
            return self.settings.salary[agent]
        if self.settings.price_per_1k_tokens is not None:
            return tokens / 1000 * self.settings.price_per_1k_tokens
        return self.settings.default_salary

    # -- learning ----------------------------------------------------------------------------------------------

    def _finish(self, run_id: str, episode: _Episode) -> dict[str, Any]:
        """The episode reached END: update the stored table (when learning) and say what happened."""
        self._episodes.pop(run_id, None)
        summary: dict[str, Any] = {
            "transitions": len(episode.transitions),
            "total_reward": episode.total,
            "learned": False,
        }
        if not self.learning or self.store is None:
            return summary
        stored = self._learn(run_id, episode, ended=True)
        summary.update(learned=True, episode=stored.episodes)
        return summary


def learn_episode(
    store: QTableStore,
    *,
    workflow: str,
    router: str,
    template_hash: str,
    settings: QTableSettings,
    actions_of: Mapping[str, Sequence[str]],
    transitions: Sequence[Transition],
    run_id: str | None,
    ignored: Sequence[dict[str, Any]] = (),
    ended: bool = True,
) -> StoredQTable:
    """Apply one episode's update to the stored table, atomically; non-finite rewards are left out and recorded
    (``ended`` False: the episode was stopped early, see :func:`update_episode`)."""
    finite = [t for t in transitions if math.isfinite(t.reward)]
    skipped = [{"state": t.state, "action": t.action, "reward": str(t.reward)} for t in transitions if t not in finite]

    def change(stored: StoredQTable) -> QTableChange:
        table = table_from_stored(stored, settings.initial_q)
        updates = update_episode(table, finite, settings, actions_of, ended=ended)
        touched = {(u.state, u.action) for u in updates}
        record: dict[str, Any] = {
            "transitions": [t.to_dict() for t in finite],
            "updates": [u.to_dict() for u in updates],
            "ignored": [*ignored, *skipped],
            **({} if ended else {"stopped_early": True}),
        }
        if settings.replay_episodes > 0:
            replayed, replay_updates = replay_earlier(table, stored, settings, actions_of, run_id)
            touched |= {(u.state, u.action) for u in replay_updates}
            record["replay"] = {"episodes": replayed, "updates": len(replay_updates)}
        values = {pair: (table.values[pair[0]][pair[1]], table.updates[pair[0]][pair[1]]) for pair in touched}
        total = sum(t.reward for t in finite)
        epsilon = epsilon_after(settings, stored.episodes)
        return QTableChange(values, len(finite), run_id, total, epsilon, record)

    return store.update_qtable(workflow, router, template_hash, change)


def replay_earlier(
    table: QTable,
    stored: StoredQTable,
    settings: QTableSettings,
    actions_of: Mapping[str, Sequence[str]],
    run_id: str | None,
) -> tuple[list[int], list[ValueUpdate]]:
    """Experience replay: learn again, in ``table``, from ``replay_episodes`` earlier episodes of the stored table.

    They are drawn without replacement from the last ``replay_window`` episodes before this one, seeded by the
    table's episode count and the run, so a rerun of the same episodes replays the same ones; episodes learned on
    another template hash are not recalled (:attr:`StoredQTable.recall`). Returns the episode numbers replayed, in
    order, and their updates.
    """
    if stored.recall is None or stored.episodes == 0:
        return [], []
    window = range(max(1, stored.episodes - settings.replay_window + 1), stored.episodes + 1)
    # Sampling, not secrecy: the draw must repeat for the same table and run.
    rng = random.Random(f"{stored.episodes}:{run_id}")  # noqa: S311
    drawn = rng.sample(window, min(settings.replay_episodes, len(window)))
    records = stored.recall(drawn)
    replayed: list[int] = []
    done: list[ValueUpdate] = []
    for number in drawn:
        record = records.get(number)
        if record is None:  # learned on another version of the workflow
            continue
        transitions = [Transition(t["state"], t["action"], float(t["reward"])) for t in record["transitions"]]
        ended = not record.get("stopped_early", False)
        done += update_episode(table, transitions, settings, actions_of, ended=ended, replayed=True)
        replayed.append(number)
    return replayed, done
