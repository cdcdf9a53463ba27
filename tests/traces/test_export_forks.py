"""Rollouts and ATIF exports of real forks: `agentflow fork` of an agent run, and `bench run --rollouts K`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from agentflow.rerun import fork_run
from agentflow.runtime import run_workflow
from agentflow.traces import ADVANTAGE_EPSILON, TraceStore, export_atif, export_openai_messages, export_rollouts
from tests.bench.test_rollouts import bench_file  # noqa: F401 - the fixture: a bench whose forks differ in outcome
from tests.cli.test_cli import agentflow
from tests.rerun.test_fork import workflow  # noqa: F401 - the fixture: a scripted agent that writes, reads, appends


async def test_forks_of_an_agent_run_export_the_shared_prefix_once(
    workflow: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = TraceStore(tmp_path / "store")
    parent = await run_workflow(workflow, store=store, seed=7)
    assert parent.succeeded
    continuations = await fork_run(store, parent.run_id, at=4, n=2)  # after the write and the `cat`
    [record] = export_rollouts(store, [parent.run_id])
    [whole] = export_openai_messages(store, [parent.run_id])
    prefix = record["prefix"]["messages"]
    # the prefix: the prompt (a system message), the write and its result, the cat and its result
    assert [m["role"] for m in prefix] == ["system", "assistant", "tool", "assistant", "tool"]
    assert prefix == whole["messages"][: len(prefix)]
    assert set(record["prefix"]["step_rewards"]) == {k for k in whole["step_rewards"] if int(k) < len(prefix)}
    assert [c["run_id"] for c in record["continuations"]] == [r.run_id for r in continuations]
    for continuation in record["continuations"]:
        # each fork's trace repeats the prefix (served from the tape): it is left out of its messages
        assert continuation["prefix_messages"] == len(prefix)
        assert continuation["messages"] == whole["messages"][len(prefix) :]  # the scripted rest is the same
        assert set(continuation["step_rewards"]) == {k for k in whole["step_rewards"] if int(k) >= len(prefix)}
        assert continuation["status"] == "succeeded"
    # every run of the group is a valid ATIF trajectory naming where it was forked from
    trajectories = export_atif(store, [r.run_id for r in continuations])
    assert {t["extra"]["forked_from"]["run_id"] for t in trajectories} == {parent.run_id}
    assert [t["extra"]["fork_index"] for t in trajectories] == [0, 1]


def test_the_groups_of_a_bench_run_with_rollouts(
    bench_file: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    ran = agentflow("bench", "run", str(bench_file), "--rollouts", "3", "--fork-at", "1", "--json", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    exported = agentflow("traces", "export", "--bench", report["bench_run_id"], "--format", "rollouts", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    records = {r["group_id"]: r for r in map(json.loads, exported.stdout.splitlines())}
    assert sorted(records) == sorted(g["fork_group"] for g in report["rollouts"])
    for group in report["rollouts"]:
        record = records[group["fork_group"]]
        assert record["parent_run_id"] == group["run_id"] and record["outcome_hook"] == "outcome"
        outcomes = [c["outcome"] for c in record["continuations"]]
        assert outcomes == group["outcomes"]  # what the bench report shows for the group
        assert record["mean_outcome"] == pytest.approx(statistics.fmean(outcomes))
        assert record["std_outcome"] == pytest.approx(statistics.pstdev(outcomes))
        mean, std = statistics.fmean(outcomes), statistics.pstdev(outcomes)
        assert [c["advantage"] for c in record["continuations"]] == pytest.approx(
            [(r - mean) / (std + ADVANTAGE_EPSILON) for r in outcomes]
        )
