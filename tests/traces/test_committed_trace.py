"""A trace recorded by an earlier agentflow still loads, verifies and replays identically from the tape."""

from __future__ import annotations

import shutil
from pathlib import Path

from agentflow.rerun import replay_run
from agentflow.traces import EventType, TraceStore

FIXTURE = Path(__file__).parent / "fixtures" / "fix_failing_test-0.1"
EXAMPLE = Path(__file__).parents[2] / "graphs" / "examples" / "fix_failing_test.yaml"


def _store(tmp_path: Path) -> tuple[TraceStore, str]:
    shutil.copytree(FIXTURE, tmp_path / "store")
    store = TraceStore(tmp_path / "store")
    [run_id] = store.reindex()
    return store, run_id


def test_the_committed_trace_loads_and_verifies(tmp_path: Path) -> None:
    store, run_id = _store(tmp_path)
    trace = store.load_trace(run_id)
    trace.raise_for_problems()  # the hash chain of every line, as written then
    assert trace.events[0].type is EventType.RUN_STARTED and trace.events[-1].type is EventType.RUN_FINISHED
    assert trace.events[-1].data["status"] == "succeeded"
    assert [info.status for info in store.list_runs()] == ["succeeded"]


async def test_the_committed_trace_replays_identically_from_the_tape(tmp_path: Path) -> None:
    store, run_id = _store(tmp_path)
    report = await replay_run(store, run_id, mode="tape", workflow=EXAMPLE)
    assert report.recorded_template_hash == report.current_template_hash, "the example changed: see fixtures/README"
    assert report.identical, report.first_divergence
    assert report.sandbox_execs == 0  # nothing ran: every model response, tool result and reward came from the tape
