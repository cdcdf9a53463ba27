"""RelayStore (runs recorded in memory, taken elsewhere) and Recorder.append_encoded (lines appended verbatim): a
run recorded in a relay and shipped in parts is, in the real store, the trace the relay's recorder wrote."""

from __future__ import annotations

import pytest

from agentflow.errors import TraceError
from agentflow.traces import EventType, RelayStore, Store
from agentflow.traces.conformance import CHECKS, run_conformance


def _tamper_in_memory(store: Store, run_id: str, seq: int, old: str, new: str) -> None:
    assert isinstance(store, RelayStore)
    run = store._runs[run_id]  # a test changing stored bytes behind the store's back
    run.lines[seq] = run.lines[seq].replace(old.encode(), new.encode())


def test_the_relay_store_keeps_the_store_contract_in_memory() -> None:
    results = run_conformance(RelayStore, tamper=_tamper_in_memory)
    assert {result.name: result.status for result in results} == {
        **{name: "passed" for name in CHECKS},
        "opened_again": "skipped",  # by design there is no second handle: its runs live in this object only
    }


def _run_in_parts(relay: RelayStore) -> tuple[str, list[tuple[bytes, dict[str, bytes]]]]:
    """A run recorded the way the runtime records (held events, a spilled payload), taken three times."""
    recorder = relay.new_run(workflow="relayed")
    recorder.hold_events()
    takes = []
    started = recorder.emit(EventType.RUN_STARTED, data={"workflow": "relayed", "inputs": {}})
    node = recorder.emit(EventType.NODE_STARTED, node="a", parent=started.seq, data={"visit": 1, "attempt": 1})
    takes.append(relay.take(recorder.run_id))  # run_started only: node_started is held
    recorder.flush()
    takes.append(relay.take(recorder.run_id))
    big = "x" * (relay.spill_threshold + 1)
    recorder.emit(EventType.NODE_FINISHED, node="a", parent=node.seq, data={"status": "ok", "updates": {"out": big}})
    recorder.finish("succeeded", final_state={"out": "done"})
    recorder.close()
    takes.append(relay.take(recorder.run_id))
    return recorder.run_id, takes


def test_a_relayed_run_is_appended_verbatim_and_verifies(any_store: Store) -> None:
    relay = RelayStore(spill_threshold=64)
    run_id, takes = _run_in_parts(relay)
    assert [lines.count(b"\n") for lines, _ in takes] == [1, 1, 2]
    assert [len(blobs) for _, blobs in takes] == [0, 0, 1]
    recorder = any_store.new_run(workflow="relayed", run_id=run_id)
    for lines, blobs in takes:
        recorder.append_encoded(lines, blobs)
    assert recorder.finished
    recorder.close()

    trace = any_store.load_trace(run_id)
    assert trace.ok, trace.problems
    relayed = relay.load_trace(run_id)
    assert trace.events == relayed.events  # timestamps and hashes included: nothing was recorded again
    assert any_store.resolve_blobs(trace.events[2].data)["updates"]["out"] == "x" * 65
    [listed] = any_store.list_runs()
    [there] = relay.list_runs()
    assert (listed.status, listed.steps, listed.duration_s) == ("succeeded", there.steps, there.duration_s)
    relay.forget(run_id)
    assert relay.run_ids() == []
    with pytest.raises(TraceError, match="no run"):
        relay.take(run_id)


def test_lines_that_do_not_continue_the_run_are_refused(any_store: Store) -> None:
    relay = RelayStore(spill_threshold=64)
    run_id, takes = _run_in_parts(relay)
    recorder = any_store.new_run(workflow="relayed", run_id=run_id)
    with pytest.raises(TraceError, match="does not continue"):
        recorder.append_encoded(takes[1][0])  # seq 1 before seq 0
    _, other_takes = _run_in_parts(relay)
    with pytest.raises(TraceError, match="does not continue"):
        recorder.append_encoded(other_takes[0][0])  # another run's first event
    lines, blobs = takes[2]
    recorder.append_encoded(takes[0][0])
    recorder.append_encoded(takes[1][0])
    digest = next(iter(blobs))
    with pytest.raises(TraceError, match="does not match its digest"):
        recorder.append_encoded(lines, {digest: b"something else"})
    with pytest.raises(TraceError, match="newline"):
        recorder.append_encoded(lines.rstrip(b"\n"), blobs)
    recorder.append_encoded(lines, blobs)
    with pytest.raises(TraceError, match="finished"):
        recorder.append_encoded(takes[0][0])
    recorder.close()
    trace = any_store.load_trace(run_id)
    assert trace.ok, trace.problems
    assert [event.seq for event in trace.events] == [0, 1, 2, 3]  # nothing refused was written


def test_a_run_whose_relay_stopped_is_ended_here_on_its_chain(any_store: Store) -> None:
    relay = RelayStore()
    source = relay.new_run(workflow="relayed")
    source.emit(EventType.RUN_STARTED, data={"workflow": "relayed", "inputs": {}})
    source.emit(EventType.NODE_STARTED, node="a", data={"visit": 1, "attempt": 1})
    recorder = any_store.new_run(workflow="relayed", run_id=source.run_id)
    recorder.append_encoded(*relay.take(source.run_id))
    assert not recorder.finished
    recorder.emit(EventType.ERROR, data={"kind": "WorkerLost", "message": "the worker died"})
    recorder.finish("errored", error="the worker died")
    recorder.close()
    trace = any_store.load_trace(source.run_id)
    assert trace.ok, trace.problems
    assert [event.type.value for event in trace.events] == ["run_started", "node_started", "error", "run_finished"]
    assert any_store.list_runs()[0].status == "errored"
