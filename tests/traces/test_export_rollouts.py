"""`agentflow traces export --format rollouts`: one record per fork group (the runs whose run_started names the same
`fork_group`), with the shared prefix, each continuation's steps and rewards, and group-normalized advantages."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from agentflow.cli import run_cli
from agentflow.errors import TraceError
from agentflow.traces import (
    ADVANTAGE_EPSILON,
    BenchItem,
    EventType,
    TraceStore,
    export_rollouts,
    group_advantages,
)
from tests.traces.export_support import SYSTEM, USER, call, record_run

PREFIX = [
    SYSTEM,
    USER,
    {"role": "assistant", "content": "", "tool_calls": [call("c1", "ls")]},
    {"role": "tool", "tool_call_id": "c1", "content": "out:ls"},
]


def _fork(parent: str, seq: int, group: str, index: int) -> dict[str, Any]:
    return {"forked_from": {"run_id": parent, "seq": seq}, "fork_group": group, "fork_index": index}


@pytest.fixture
def forked(tmp_path: Path) -> tuple[TraceStore, str, int, list[str]]:
    """A parent run forked after its first tool call into four continuations (one errored), and a second group."""
    store = TraceStore(tmp_path / "store")
    parent = record_run(store, [("ls", "c1", 1.0), ("cat", "c2", 1.0), ("done", None, 0)], outcome=1.0)
    # fork after the first step's reward: the prefix is the system and user messages, the call of ls and its result
    seq = next(e.seq for e in store.load_trace(parent).events if e.type is EventType.REWARD)
    continuations = [
        # a continuation whose trace starts after the prefix: its first request sends the prefix conversation
        record_run(
            store, [("make", "c9", 1.0), ("fixed", None, 0)], conversation=PREFIX, outcome=1.0,
            started_extra=_fork(parent, seq, "g1", 0),
        ),
        record_run(
            store, [("rm", "c9", 0.0), ("broke it", None, 0)], conversation=PREFIX, outcome=0.0,
            started_extra=_fork(parent, seq, "g1", 1), status="failed",
        ),
        # one whose trace repeats the prefix (served from the tape) before it goes on
        record_run(
            store, [("ls", "c1", 1.0), ("make", "c9", 1.0), ("fixed", None, 0)], outcome=1.0,
            started_extra=_fork(parent, seq, "g1", 2),
        ),
        # the infrastructure failed: no outcome, no verdict
        record_run(
            store, [("make", "c9", 1.0)], conversation=PREFIX, started_extra=_fork(parent, seq, "g1", 3),
            status="errored",
        ),
    ]  # fmt: skip
    for index in range(2):
        record_run(
            store, [("x", None, 0)], conversation=PREFIX, outcome=1.0, started_extra=_fork(parent, 2, "g2", index)
        )
    return store, parent, seq, continuations


def test_a_fork_group_exports_its_prefix_continuations_and_advantages(
    forked: tuple[TraceStore, str, int, list[str]],
) -> None:
    store, parent, seq, continuations = forked
    [record] = export_rollouts(store, [continuations[1]])
    assert (record["group_id"], record["parent_run_id"], record["fork_seq"]) == ("g1", parent, seq)
    assert record["prefix"]["messages"] == PREFIX
    assert record["prefix"]["step_labels"] == {"2": 1}
    assert record["prefix"]["step_rewards"]["2"][0]["hook"] == "exit_code"
    assert [c["run_id"] for c in record["continuations"]] == continuations
    assert [c["fork_index"] for c in record["continuations"]] == [0, 1, 2, 3]
    assert [c["prefix_messages"] for c in record["continuations"]] == [4, 4, 4, 4]
    first = record["continuations"][0]
    assert [m["role"] for m in first["messages"]] == ["assistant", "tool", "assistant"]
    assert first["messages"][1] == {"role": "tool", "tool_call_id": "c9", "content": "out:make"}
    # step indexes count from the start of the prefix; the prefix's own rewards are not repeated
    assert first["step_labels"] == {"4": 1}
    assert record["continuations"][1]["step_labels"] == {"4": -1}
    assert record["continuations"][2]["step_labels"] == {"4": 1}  # its repeated prefix left out
    assert record["continuations"][2]["messages"] == first["messages"]
    outcomes = [c["outcome"] for c in record["continuations"]]
    assert outcomes == [1.0, 0.0, 1.0, None]
    mean, std = statistics.mean([1.0, 0.0, 1.0]), statistics.pstdev([1.0, 0.0, 1.0])
    assert record["mean_outcome"] == pytest.approx(mean) and record["std_outcome"] == pytest.approx(std)
    expected = [(r - mean) / (std + ADVANTAGE_EPSILON) for r in (1.0, 0.0, 1.0)]
    advantages = [c["advantage"] for c in record["continuations"]]
    assert advantages[:3] == pytest.approx(expected) and advantages[3] is None
    assert advantages[0] == pytest.approx(math.sqrt(2) / 2, rel=1e-5)
    assert (record["scored"], record["epsilon"], record["outcome_hook"]) == (3, 1e-6, "outcome")
    assert [c["status"] for c in record["continuations"]] == ["succeeded", "failed", "succeeded", "errored"]


def test_the_parent_names_every_group_forked_from_it(forked: tuple[TraceStore, str, int, list[str]]) -> None:
    store, parent, _, _ = forked
    records = export_rollouts(store, [parent])
    assert [r["group_id"] for r in records] == ["g2", "g1"]  # by fork point
    equal = records[0]
    assert [c["advantage"] for c in equal["continuations"]] == [0.0, 0.0]  # all outcomes equal: no preference
    assert equal["prefix"]["messages"] == PREFIX[:2]  # forked at seq 2, its first request: before the first answer
    assert [c["prefix_messages"] for c in equal["continuations"]] == [2, 2]


def test_group_advantages_use_the_population_std_and_leave_unscored_runs_out() -> None:
    values, mean, std = group_advantages([2.0, None, 4.0, 6.0])
    assert (mean, std) == (4.0, pytest.approx(statistics.pstdev([2.0, 4.0, 6.0])))
    assert values[1] is None
    assert values[0] == pytest.approx(-2.0 / (std + ADVANTAGE_EPSILON))
    assert group_advantages([None, None])[0] == [None, None]
    assert group_advantages([1.0]) == ([0.0], 1.0, 0.0)


def test_the_cli_writes_groups_of_a_bench_run_and_refuses_runs_in_no_group(
    forked: tuple[TraceStore, str, int, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, parent, _, continuations = forked
    folder = str(store.root)
    out = tmp_path / "rollouts.jsonl"
    assert (
        run_cli(["traces", "export", continuations[0], "--format", "rollouts", "-o", str(out), "--store", folder]) == 0
    )
    assert [json.loads(line)["group_id"] for line in out.read_text().splitlines()] == ["g1"]
    bench = store.create_bench_run(name="fixers", config={"outcome": {"hook": "exit_code"}})
    store.start_bench_item(BenchItem(bench.bench_run_id, "t1", 0, 1, parent, 7, "succeeded", 1.0, "2026-12-02T00:00Z"))
    capsys.readouterr()
    assert run_cli(["traces", "export", "--bench", bench.bench_run_id, "--format", "rollouts", "--store", folder]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["group_id"] for r in records] == ["g2", "g1"]
    assert records[1]["outcome_hook"] == "exit_code"  # the bench's outcome hook: no run reward of it here
    assert [c["advantage"] for c in records[1]["continuations"]] == [None] * 4
    code = run_cli(
        ["traces", "export", continuations[0], "--format", "rollouts", "--outcome", "outcome", "--store", folder]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["scored"] == 3
    alone = record_run(store, [("ls", None, 0)])
    assert run_cli(["traces", "export", alone, "--format", "rollouts", "--store", folder]) == 3
    assert f"run {alone} is in no fork group" in capsys.readouterr().err
    empty = store.create_bench_run(name="plain", config={})
    assert run_cli(["traces", "export", "--bench", empty.bench_run_id, "--format", "rollouts", "--store", folder]) == 3
    assert "has no fork group" in capsys.readouterr().err


def test_a_fork_point_past_the_parents_end_is_refused(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    parent = record_run(store, [("ls", None, 0)])
    record_run(store, [("x", None, 0)], started_extra=_fork(parent, 999, "g", 0))
    with pytest.raises(TraceError, match="seq 999 is past the end of run"):
        export_rollouts(store, [parent])
