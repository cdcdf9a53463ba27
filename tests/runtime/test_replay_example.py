"""Tape replay of the shipped example, whose reward hooks need the sandbox and a language server."""

from __future__ import annotations

from pathlib import Path

from agentflow.rerun import replay_run
from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore


async def test_tape_replay_of_the_example_is_identical_and_touches_nothing(tmp_path: Path, examples: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    recorded = await run_workflow(examples / "fix_failing_test.yaml", store=store)
    assert recorded.status == "succeeded", recorded.error
    rewards = [e for e in store.load_trace(recorded.run_id).events if e.type is EventType.REWARD]
    assert {e.data["hook"] for e in rewards} >= {"lsp_diagnostics", "tests_delta", "exit_code"}

    report = await replay_run(store, recorded.run_id, mode="tape")

    assert report.identical, report.divergence
    assert report.sandbox_execs == 0
    assert report.events_actual == report.events_expected
    replayed = store.load_trace(report.replay_run_id)
    replayed_rewards = [e for e in replayed.events if e.type is EventType.REWARD]
    assert [(e.data["hook"], e.data["value"]) for e in replayed_rewards] == [
        (e.data["hook"], e.data["value"]) for e in rewards
    ]
