"""Reopening an unfinished run (what `agentflow resume` records through), against both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.errors import TraceError
from agentflow.traces import EventType, Store, TraceStore


def test_reopened_run_continues_the_hash_chain(any_store: Store) -> None:
    recorder = any_store.new_run(workflow="wf")
    recorder.emit(EventType.RUN_STARTED, data={"workflow": "wf"})
    started = recorder.emit(EventType.NODE_STARTED, node="a", data={"visit": 1, "attempt": 1})
    with pytest.raises(TraceError, match="still running"):
        any_store.reopen_run(recorder.run_id)  # its recorder (this process) is alive
    recorder.close()
    before = any_store.load_trace(recorder.run_id)

    again = any_store.reopen_run(recorder.run_id[:12])
    marker = again.emit(EventType.RUN_RESUMED, data={})
    assert marker.seq == started.seq + 1 and marker.prev_hash == started.hash
    assert [i.status for i in any_store.list_runs()] == ["running"]
    again.finish("succeeded")
    again.close()

    after = any_store.load_trace(recorder.run_id)
    assert after.problems == []
    assert [e.hash for e in after.events[: len(before.events)]] == [e.hash for e in before.events]
    assert [i.status for i in any_store.list_runs()] == ["succeeded"]
    with pytest.raises(TraceError, match="already finished"):
        any_store.reopen_run(recorder.run_id)


def test_a_partial_last_line_is_cut_off_and_kept_as_a_blob(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    recorder = store.new_run(workflow="wf")
    recorder.emit(EventType.RUN_STARTED, data={"workflow": "wf"})
    recorder.close()
    partial = b'{"run_id": "' + recorder.run_id.encode() + b'", "seq": 1, "ty'
    with recorder.trace_path.open("ab") as handle:  # what a writer killed inside write(2) can leave
        handle.write(partial)
    assert [p.kind for p in store.load_trace(recorder.run_id).problems] == ["truncated"]

    again = store.reopen_run(recorder.run_id)
    assert again.dropped_partial_line is not None
    assert store.read_blob(again.dropped_partial_line["$blob"]) == partial
    again.emit(EventType.RUN_RESUMED, data={"dropped_partial_line": again.dropped_partial_line})
    again.finish("failed", error="test")
    again.close()
    trace = store.load_trace(recorder.run_id)
    assert trace.problems == []
    assert [e.type for e in trace.events] == ["run_started", "run_resumed", "run_finished"]


def test_a_tampered_trace_is_not_reopened(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    recorder = store.new_run(workflow="wf")
    recorder.emit(EventType.RUN_STARTED, data={"workflow": "wf", "inputs": {"n": 1}})
    recorder.close()
    text = recorder.trace_path.read_text()
    recorder.trace_path.write_text(text.replace('"n":1', '"n":2').replace('"n": 1', '"n": 2'))
    with pytest.raises(TraceError, match="tampered"):
        store.reopen_run(recorder.run_id)
