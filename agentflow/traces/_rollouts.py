"""Export fork groups as rollout records for GRPO-style training: a shared prefix, K continuations, advantages.

A fork group is the runs whose ``run_started`` carries the same ``fork_group`` (written by ``agentflow fork``, with
``forked_from: {run_id, seq}`` and ``fork_index``). ``agentflow traces export ... --format rollouts`` writes one
JSON line per group::

    {"group_id": ..., "parent_run_id": ..., "fork_seq": 15, "workflow": ..., "tools": [...],
     "prefix": {"messages": [...], "step_rewards": {...}, "step_labels": {...}},
     "continuations": [{"run_id": ..., "fork_index": 0, "status": "succeeded", "prefix_messages": 6,
                        "messages": [...], "step_rewards": {...}, "step_labels": {...}, "rewards": [...],
                        "outcome": 1.0, "advantage": 0.71}, ...],
     "outcome_hook": "outcome", "mean_outcome": ..., "std_outcome": ..., "epsilon": 1e-06, "scored": 3}

- ``prefix``: the parent's conversation up to and including event ``fork_seq``, with the rewards of its messages.
- each continuation's ``messages``: its conversation after what it shares with the prefix (``prefix_messages``
  messages; whether the fork's own trace repeats the prefix or starts after it, the shared messages are left out);
  ``step_rewards`` and ``step_labels`` index the continuation's whole conversation, the prefix's messages first
  (as the openai-messages format does).
- ``outcome`` R_i: the value of the continuation's run reward of ``outcome_hook`` (``--outcome HOOK``; default
  the benchmark's outcome hook for ``--bench``, else ``outcome``). A continuation without one (errored, not
  scored) is left out of the statistics and has ``advantage`` null: an outage is never a wrong answer.
- ``advantage`` A_i = (R_i − mean R) / (std R + ε) over the scored continuations, std the population standard
  deviation (divided by n, not n − 1), ε = 1e-6; a group whose outcomes are all equal gets advantages 0.

Which groups: for run ids, every group a named run belongs to (as a continuation) or was forked into (as the
parent), in the order the runs are named, a parent's groups by fork point (then group id); a named run in no group
is refused (a run that was never forked has no rollouts). For ``--bench ID``,
every group whose parent or continuations are runs of that benchmark run (or are tagged with it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentflow.errors import TraceError
from agentflow.traces._conversation import (
    Conversation,
    Turn,
    conversation_of,
    label_of,
    load_events,
    outcome_of,
    place_rewards,
    read_conversation,
)
from agentflow.traces._events import EventType
from agentflow.traces._protocol import Store

EPSILON = 1e-6
"""The ε of the group-normalized advantage (A_i = (R_i − mean R) / (std R + ε))."""


@dataclass(frozen=True)
class ForkMember:
    """One continuation of a fork group, as its ``run_started`` names it."""

    run_id: str
    group_id: str
    parent_run_id: str
    fork_seq: int
    fork_index: int
    bench_run_id: str | None


def _fork_member(run_id: str, started: dict[str, Any]) -> ForkMember | None:
    group, origin = started.get("fork_group"), started.get("forked_from")
    if not isinstance(group, str) or not isinstance(origin, dict):
        return None
    bench = started.get("bench")
    index = started.get("fork_index")
    return ForkMember(
        run_id=run_id,
        group_id=group,
        parent_run_id=str(origin.get("run_id")),
        fork_seq=int(origin.get("seq") or 0),
        fork_index=index if isinstance(index, int) else 0,
        bench_run_id=str(bench.get("bench_run_id")) if isinstance(bench, dict) else None,
    )


def fork_members(store: Store) -> list[ForkMember]:
    """Every continuation of every fork group in the store, read from its ``run_started``.

    The runs index names the fork group of every finished run, so only the forks' traces are read (a continuation
    still running, or whose process died, is not a rollout yet).
    """
    members = []
    everything = max(1, len(store.run_ids()))
    for info in store.list_runs(limit=everything):
        if info.fork_group is None:
            continue
        trace = store.load_trace(info.run_id)
        first = trace.events[0] if trace.events else None
        if first is not None and first.type is EventType.RUN_STARTED:
            member = _fork_member(trace.run_id, dict(first.data))
            if member is not None:
                members.append(member)
    return members


def _groups(members: Sequence[ForkMember]) -> dict[str, list[ForkMember]]:
    groups: dict[str, list[ForkMember]] = {}
    for member in members:
        groups.setdefault(member.group_id, []).append(member)
    for group in groups.values():
        group.sort(key=lambda m: (m.fork_index, m.run_id))
    # groups by parent, fork point, then id: runs started in the same second have no order of their own
    ordered = sorted(groups.items(), key=lambda item: (item[1][0].parent_run_id, item[1][0].fork_seq, item[0]))
    return dict(ordered)


def groups_of_runs(store: Store, run_ids: Sequence[str]) -> list[list[ForkMember]]:
    """The fork groups the named runs belong to or were forked into, in the order the runs were named.

    Raises:
        TraceError: a run is unknown, or is in no fork group.
    """
    groups = _groups(fork_members(store))
    chosen: list[str] = []
    for run_id in run_ids:
        full_id = store.resolve_run_id(run_id)
        found = [
            group_id for group_id, group in groups.items() if any(full_id in (m.run_id, m.parent_run_id) for m in group)
        ]
        if not found:
            raise TraceError(
                f"run {full_id} is in no fork group: it was not forked and is no fork"
                " (rollouts are the continuations `agentflow fork` makes)"
            )
        chosen.extend(g for g in found if g not in chosen)
    return [groups[g] for g in chosen]


def groups_of_bench(store: Store, bench_run_id: str) -> list[list[ForkMember]]:
    """The fork groups of a benchmark run: those whose parent or continuations are its runs or tagged with it.

    Raises:
        TraceError: the benchmark run has no fork group.
    """
    bench = store.get_bench_run(bench_run_id)
    runs = {item.run_id for item in store.list_bench_items(bench.bench_run_id)}
    groups = _groups(fork_members(store))
    chosen = [
        group
        for group in groups.values()
        if any(m.run_id in runs or m.parent_run_id in runs or m.bench_run_id == bench.bench_run_id for m in group)
    ]
    if not chosen:
        raise TraceError(f"bench run {bench.bench_run_id} has no fork group (run it with --rollouts K)")
    return chosen


def _step_maps(turns: Sequence[Turn], start: int = 0) -> tuple[dict[str, Any], dict[str, int]]:
    rewards: dict[str, Any] = {}
    labels: dict[str, int] = {}
    for index, turn in enumerate(turns):
        if index < start or turn.kind != "assistant" or turn.copied:
            continue
        if turn.rewards:
            rewards[str(index)] = turn.rewards
        label = label_of(turn)
        if label is not None:
            labels[str(index)] = label
    return rewards, labels


def _prefix(store: Store, parent_run_id: str, fork_seq: int) -> Conversation:
    """The parent's conversation as its events up to and including ``fork_seq`` make it, with their rewards."""
    full_id, events = load_events(store, parent_run_id)
    if not 0 <= fork_seq < len(events):
        raise TraceError(f"fork point seq {fork_seq} is past the end of run {full_id} ({len(events)} events)")
    prefix = conversation_of(full_id, events[: fork_seq + 1])
    rewards = store.list_rewards(full_id)
    place_rewards(
        prefix, [r for r in rewards if r.kind != "run" and r.target_seq is not None and r.target_seq <= fork_seq]
    )
    return prefix


def _shared(prefix: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]]) -> int:
    count = 0
    for mine, theirs in zip(prefix, messages, strict=False):
        if mine != theirs:
            break
        count += 1
    return count


def group_advantages(
    outcomes: Sequence[float | None], epsilon: float = EPSILON
) -> tuple[list[float | None], float, float]:
    """Group-normalized advantages of outcomes (None: not scored, left out), with the mean and population std."""
    scored = [value for value in outcomes if value is not None]
    if not scored:
        return [None for _ in outcomes], math.nan, math.nan
    mean = sum(scored) / len(scored)
    std = math.sqrt(sum((value - mean) ** 2 for value in scored) / len(scored))
    return [None if value is None else (value - mean) / (std + epsilon) for value in outcomes], mean, std


def rollout_record(store: Store, group: Sequence[ForkMember], outcome_hook: str) -> dict[str, Any]:
    """The rollout record of one fork group (see the module docstring).

    Raises:
        TraceError: the parent or a continuation is missing or its trace is damaged.
    """
    first = group[0]
    parent = _prefix(store, first.parent_run_id, first.fork_seq)
    prefix_turns = parent.message_turns()
    prefix_messages = [turn.message for turn in prefix_turns]
    prefix_rewards, prefix_labels = _step_maps(prefix_turns)
    continuations: list[dict[str, Any]] = []
    outcomes: list[float | None] = []
    tools = list(parent.tools)
    for member in group:
        run = read_conversation(store, member.run_id)
        turns = run.message_turns()
        messages = [turn.message for turn in turns]
        shared = _shared(prefix_messages, messages)
        step_rewards, step_labels = _step_maps(turns, start=shared)
        outcome = outcome_of(run, outcome_hook) if run.status != "errored" else None
        outcomes.append(outcome)
        names = {str((t.get("function") or {}).get("name")) for t in tools}
        tools.extend(t for t in run.tools if str((t.get("function") or {}).get("name")) not in names)
        continuations.append(
            {
                "run_id": run.run_id,
                "fork_index": member.fork_index,
                "status": run.status,
                "prefix_messages": shared,
                "messages": messages[shared:],
                "step_rewards": step_rewards,
                "step_labels": step_labels,
                "rewards": run.run_rewards,
                "outcome": outcome,
            }
        )
    values, mean, std = group_advantages(outcomes)
    for continuation, advantage in zip(continuations, values, strict=True):
        continuation["advantage"] = advantage
    scored = [value for value in outcomes if value is not None]
    return {
        "group_id": first.group_id,
        "parent_run_id": parent.run_id,
        "fork_seq": first.fork_seq,
        "workflow": parent.started.get("workflow"),
        "tools": tools,
        "prefix": {"messages": prefix_messages, "step_rewards": prefix_rewards, "step_labels": prefix_labels},
        "continuations": continuations,
        "outcome_hook": outcome_hook,
        "mean_outcome": mean if scored else None,
        "std_outcome": std if scored else None,
        "epsilon": EPSILON,
        "scored": len(scored),
    }


def export_rollouts(
    store: Store, run_ids: Sequence[str] = (), *, bench_run_id: str | None = None, outcome_hook: str | None = None
) -> list[dict[str, Any]]:
    """The rollout records of the fork groups of ``run_ids``, or of the benchmark run ``bench_run_id``.

    Raises:
        TraceError: an unknown run or bench run, a run in no fork group, a bench run without one, a damaged trace.
    """
    hook = outcome_hook
    if bench_run_id is not None:
        groups = groups_of_bench(store, bench_run_id)
        if hook is None:
            outcome = store.get_bench_run(bench_run_id).config.get("outcome")
            hook = str(outcome.get("hook")) if isinstance(outcome, dict) and outcome.get("hook") else None
    else:
        groups = groups_of_runs(store, run_ids)
    return [rollout_record(store, group, hook or "outcome") for group in groups]
