"""The embedded trace store: recording, verification, crash safety, blobs, concurrency and the SQLite index."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import agentflow.traces._recorder as _recorder_module
from agentflow.errors import TraceError
from agentflow.traces import EventType, NodeStartedData, RouteData, RunStartedData, Store, TraceStore
from agentflow.traces._hashing import event_hash
from agentflow.traces._store import RunRecorder


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    return TraceStore(tmp_path / ".agentflow")


def _record_small_run(recorder: RunRecorder, *, tool_ok: bool = True, reward: float | None = 1.0) -> None:
    started = recorder.emit(EventType.RUN_STARTED, data={"workflow": "demo", "inputs": {"task": "t"}})
    node = recorder.emit(EventType.NODE_STARTED, node="code", parent=started.seq, data={"visit": 1, "attempt": 1})
    recorder.emit(EventType.MODEL_REQUEST, node="code", parent=node.seq, data={"model": "scripted:x", "messages": []})
    recorder.emit(
        EventType.MODEL_RESPONSE,
        node="code",
        parent=node.seq,
        data={"model": "scripted:x", "usage": {"input_tokens": 30, "output_tokens": 12}},
    )
    call = recorder.emit(
        EventType.TOOL_CALL, node="code", parent=node.seq, data={"tool": "read_file", "call_id": "c1", "arguments": {}}
    )
    recorder.emit(
        EventType.TOOL_RESULT, node="code", parent=call.seq, data={"tool": "read_file", "call_id": "c1", "ok": tool_ok}
    )
    if reward is not None:
        recorder.emit(
            EventType.REWARD, node="code", parent=node.seq, data={"hook": "tests_delta", "value": reward, "on": "node"}
        )
    recorder.emit(EventType.NODE_FINISHED, node="code", parent=node.seq, data={"status": "ok", "updates": {}})


def _trace_lines(store: TraceStore, run_id: str) -> list[bytes]:
    return (store.run_dir(run_id) / "trace.jsonl").read_bytes().splitlines(keepends=True)


def _rewrite_lines(store: TraceStore, run_id: str, lines: list[bytes]) -> None:
    (store.run_dir(run_id) / "trace.jsonl").write_bytes(b"".join(lines))


def test_recorded_run_loads_back_verified_and_chained(store: TraceStore) -> None:
    with store.new_run(workflow="demo") as recorder:
        _record_small_run(recorder)
        finished = recorder.finish("succeeded", final_state={"done": True})
    trace = store.load_trace(recorder.run_id)
    assert trace.ok, trace.problems
    assert [event.seq for event in trace.events] == list(range(9))
    assert trace.events[0].prev_hash is None
    for before, after in itertools.pairwise(trace.events):
        assert after.prev_hash == before.hash
    assert trace.events[-1] == finished
    assert trace.events[-1].data["final_state"] == {"done": True}
    assert trace.events[5].parent == 4  # the tool_result points at its tool_call


def test_run_ids_sort_by_start_and_are_unique(store: TraceStore) -> None:
    ids = []
    for _ in range(5):
        with store.new_run(workflow="demo") as recorder:
            ids.append(recorder.run_id)
    assert len(set(ids)) == 5
    assert all(len(run_id) == len("20250101-120000-0123abcd") for run_id in ids)
    assert all(run_id[:15] <= later[:15] for run_id, later in itertools.pairwise(ids))
    with pytest.raises(TraceError, match="already exists"):
        store.new_run(workflow="demo", run_id=ids[0])


def test_editing_one_byte_of_an_event_is_reported_as_tampered_with_its_seq(store: TraceStore) -> None:
    with store.new_run(workflow="demo", run_id="tamper") as recorder:
        _record_small_run(recorder)
        recorder.finish("succeeded")
    lines = _trace_lines(store, "tamper")
    assert b'"read_file"' in lines[4]
    lines[4] = lines[4].replace(b'"read_file"', b'"reaD_file"', 1)
    _rewrite_lines(store, "tamper", lines)

    trace = store.load_trace("tamper")
    assert [(problem.kind, problem.seq) for problem in trace.problems] == [("tampered", 4)]
    assert trace.events[4].data["tool"] == "reaD_file"  # still shown, but flagged
    with pytest.raises(TraceError, match="seq 4: tampered"):
        trace.raise_for_problems()


def test_rehashing_an_edited_event_breaks_the_chain_at_the_next_one(store: TraceStore) -> None:
    with store.new_run(workflow="demo", run_id="rehash") as recorder:
        _record_small_run(recorder)
        recorder.finish("succeeded")
    lines = _trace_lines(store, "rehash")
    forged = json.loads(lines[6])
    forged["data"]["value"] = -1.0
    forged["hash"] = event_hash(forged)
    lines[6] = json.dumps(forged).encode() + b"\n"
    _rewrite_lines(store, "rehash", lines)

    problems = store.load_trace("rehash").problems
    assert [(problem.kind, problem.seq) for problem in problems] == [("chain_broken", 7)]


def test_removed_events_are_detected_in_the_middle_and_at_the_end(store: TraceStore) -> None:
    with store.new_run(workflow="demo", run_id="removed") as recorder:
        _record_small_run(recorder)
        recorder.finish("succeeded")
    lines = _trace_lines(store, "removed")

    _rewrite_lines(store, "removed", lines[:3] + lines[4:])
    kinds = {(problem.kind, problem.seq) for problem in store.load_trace("removed").problems}
    assert {("chain_broken", 4), ("seq_gap", 4)} <= kinds

    # Dropping the last event leaves a valid chain; the index remembers how the finished trace ended.
    _rewrite_lines(store, "removed", lines[:-1])
    problems = store.load_trace("removed").problems
    assert [problem.kind for problem in problems] == ["index_mismatch"]


def test_truncated_last_line_is_skipped_and_reported(store: TraceStore) -> None:
    recorder = store.new_run(workflow="demo", run_id="cut")
    _record_small_run(recorder)
    last = recorder.emit(EventType.SANDBOX_EXEC, node="code", data={"cmd": ["pytest"], "exit_code": 0})
    # What a writer killed in the middle of its next write leaves: half a line, no newline.
    half_line = _trace_lines(store, "cut")[-1][:100]
    with (store.run_dir("cut") / "trace.jsonl").open("ab") as handle:
        handle.write(half_line)

    trace = store.load_trace("cut")
    assert trace.events[-1] == last
    assert len(trace.events) == last.seq + 1
    assert [(problem.kind, problem.line) for problem in trace.problems] == [("truncated", last.seq + 2)]
    recorder.close()


_CHILD_RECORDER = """
import sys
from agentflow.traces import EventType, NodeStartedData, RouteData, RunStartedData, Store, TraceStore

recorder = TraceStore(sys.argv[1]).new_run(workflow="looping", run_id="killed")
node = recorder.emit(EventType.NODE_STARTED, node="loop", data={"visit": 1, "attempt": 1})
payload = "x" * 4000
for index in range(1_000_000):
    data = {"tool": "t", "i": index, "p": payload}
    call = recorder.emit(EventType.TOOL_CALL, node="loop", parent=node.seq, data=data)
    recorder.emit(EventType.TOOL_RESULT, node="loop", parent=call.seq, data={"tool": "t", "ok": True})
    if index == 200:
        print("ready", flush=True)
"""


def test_held_events_are_written_only_at_a_flush(any_store: Store) -> None:
    recorder = any_store.new_run(workflow="held")
    recorder.hold_events()
    recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="held", inputs={}))
    node = recorder.emit(EventType.NODE_STARTED, node="a", data=NodeStartedData(visit=1, attempt=1))
    recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data=RouteData(**{"from": "a", "to": "b"}))
    assert [e.type for e in any_store.load_trace(recorder.run_id).events] == [EventType.RUN_STARTED]
    recorder.flush()
    loaded = any_store.load_trace(recorder.run_id)
    assert loaded.ok, loaded.problems
    assert [e.type for e in loaded.events] == [EventType.RUN_STARTED, EventType.NODE_STARTED, EventType.ROUTE]
    recorder.close()


def test_the_always_fsync_policy_holds_no_event(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "s", fsync="always")  # it promises every event on disk as soon as it is emitted
    with store.new_run(workflow="held") as recorder:
        recorder.hold_events()
        recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="held", inputs={}))
        recorder.emit(EventType.NODE_STARTED, node="a", data=NodeStartedData(visit=1, attempt=1))
        assert len(store.load_trace(recorder.run_id).events) == 2


def test_sigkilled_recorder_leaves_a_readable_trace(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_RECORDER, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n", child.stderr.read() if child.stderr else b""
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL

    store = TraceStore(root)
    trace = store.load_trace("killed")
    assert len(trace.events) > 400  # everything emitted before "ready", at least
    assert {problem.kind for problem in trace.problems} <= {"truncated"}
    assert [event.seq for event in trace.events] == list(range(len(trace.events)))
    assert trace.summary().status == "incomplete"
    # The index row stayed "running"; listing notices the process is gone.
    [info] = store.list_runs()
    assert info.status == "interrupted"
    assert info.tool_calls == trace.summary().tool_calls


def test_large_payloads_spill_to_content_addressed_blobs_and_resolve(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "s", spill_threshold=512)
    big = "print('hello')\n" * 100  # 1500 bytes
    euros = "€" * 200  # 200 characters but 600 UTF-8 bytes: the threshold is in bytes
    data = {"messages": [{"role": "tool", "content": big}, {"role": "user", "content": "short"}], "note": euros}
    with store.new_run(workflow="demo", run_id="blobs") as recorder:
        event = recorder.emit(EventType.MODEL_REQUEST, node="code", data=data)
        recorder.emit(EventType.MODEL_REQUEST, node="code", data=data)  # the same content again
        recorder.finish("succeeded")

    spilled = event.data["messages"][0]["content"]
    assert set(spilled) == {"$blob", "size"}
    assert spilled["size"] == 1500
    assert event.data["messages"][1]["content"] == "short"
    assert event.data["note"]["size"] == 600
    assert big.encode() not in (store.run_dir("blobs") / "trace.jsonl").read_bytes()
    blob_files = sorted(path for path in (store.root / "blobs").rglob("*") if path.is_file())
    assert len(blob_files) == 2  # written once each, although emitted twice
    assert store.blob_path(spilled["$blob"]) in blob_files
    assert store.blob_path(spilled["$blob"]).parent.name == spilled["$blob"][:2]

    trace = store.load_trace("blobs")
    assert trace.ok
    assert trace.resolve(trace.events[0].data) == data
    assert store.resolve_blobs(trace.events[1].data) == data

    store.blob_path(spilled["$blob"]).write_text("edited", encoding="utf-8")
    with pytest.raises(TraceError, match="modified"):
        trace.resolve(trace.events[0].data)


def test_concurrent_emits_get_unique_ordered_seqs(store: TraceStore) -> None:
    recorder = store.new_run(workflow="demo", run_id="threads")
    per_thread: dict[int, list[int]] = {}
    barrier = threading.Barrier(8)

    def emit_many(worker: int) -> None:
        barrier.wait()
        seqs = per_thread.setdefault(worker, [])
        for index in range(200):
            event = recorder.emit(EventType.TOOL_CALL, node=f"n{worker}", data={"worker": worker, "index": index})
            seqs.append(event.seq)

    threads = [threading.Thread(target=emit_many, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.finish("succeeded")
    recorder.close()

    all_seqs = sorted(seq for seqs in per_thread.values() for seq in seqs)
    assert all_seqs == list(range(1600))
    for seqs in per_thread.values():
        assert seqs == sorted(seqs)
    trace = store.load_trace("threads")
    assert trace.ok, trace.problems
    assert [event.seq for event in trace.events] == list(range(1601))
    for worker in range(8):
        indexes = [event.data["index"] for event in trace.events if event.data.get("worker") == worker]
        assert indexes == list(range(200))


def test_index_lists_runs_newest_first_with_counts_and_filters_by_status(
    store: TraceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.new_run(workflow="alpha", run_id="r1") as recorder:
        _record_small_run(recorder, reward=1.0)
        recorder.finish("succeeded")
    with store.new_run(workflow="beta", run_id="r2") as recorder:
        _record_small_run(recorder, tool_ok=False, reward=None)
        recorder.finish("failed", error="NodeFailed: boom")
    monkeypatch.setattr(_recorder_module, "INDEX_REFRESH_S", 0.0)  # refresh the row at every node
    running = store.new_run(workflow="gamma", run_id="r3")
    _record_small_run(running, reward=0.5)  # ends with node_finished, which refreshes the row

    runs = store.list_runs()
    assert [run.run_id for run in runs] == ["r3", "r2", "r1"]
    first = runs[2]
    assert (first.workflow, first.status, first.steps, first.tool_calls, first.model_calls, first.tokens) == (
        "alpha",
        "succeeded",
        1,
        1,
        1,
        42,
    )
    assert first.reward_mean == 1.0
    assert first.error is None
    assert first.finished_at is not None
    assert first.duration_s is not None
    assert runs[1].reward_mean is None
    assert runs[1].error == "NodeFailed: boom"
    assert (runs[0].status, runs[0].tool_calls, runs[0].reward_mean) == ("running", 1, 0.5)

    assert [run.run_id for run in store.list_runs(status="failed")] == ["r2"]
    assert [run.run_id for run in store.list_runs(status="running")] == ["r3"]
    assert [run.run_id for run in store.list_runs(limit=2)] == ["r3", "r2"]
    assert store.latest_run_id() == "r3"

    running.close()  # closed without finish
    assert [run.run_id for run in store.list_runs(status="interrupted")] == ["r3"]
    assert json.loads(json.dumps(runs[0].to_dict()))["run_id"] == "r3"


def test_reindex_rebuilds_rows_from_the_traces(store: TraceStore) -> None:
    with store.new_run(workflow="alpha", run_id="r1") as recorder:
        _record_small_run(recorder)
        recorder.finish("succeeded")
    with store.new_run(workflow="beta", run_id="r2") as recorder:
        _record_small_run(recorder, tool_ok=False, reward=0.25)
    before = {run.run_id: run for run in store.list_runs()}
    for path in store.root.glob("index.sqlite*"):
        path.unlink()

    assert store.list_runs() == []
    assert store.reindex() == ["r1", "r2"]
    assert store.reindex() == []
    after = {run.run_id: run for run in store.list_runs()}
    assert after["r1"].status == "succeeded"
    assert after["r2"].status == "interrupted"  # closed without finishing
    for run_id in ("r1", "r2"):
        fields = ("steps", "tool_calls", "model_calls", "tokens", "reward_mean", "duration_s", "finished_at")
        assert [getattr(after[run_id], name) for name in fields] == [getattr(before[run_id], name) for name in fields]
    assert store.load_trace("r1").ok


def test_index_uses_wal_mode(store: TraceStore) -> None:
    store.new_run(workflow="demo").close()
    with sqlite3.connect(store.index_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_unknown_run_names_the_closest_and_prefixes_resolve(store: TraceStore) -> None:
    for run_id in ("20250101-120000-aaaa1111", "20250101-120000-aaaa2222", "20250102-090000-bbbb3333"):
        with store.new_run(workflow="demo", run_id=run_id) as recorder:
            recorder.finish("succeeded")
    assert store.load_trace("20250102").run_id == "20250102-090000-bbbb3333"
    with pytest.raises(TraceError, match="ambiguous"):
        store.load_trace("20250101-120000-aaaa")
    with pytest.raises(TraceError, match=r"no run '20250102-090000-bbbb3334'.*closest: 20250102-090000-bbbb3333"):
        store.load_trace("20250102-090000-bbbb3334")
    assert TraceStore(store.root.parent / "empty").list_runs() == []
    assert TraceStore(store.root.parent / "empty").latest_run_id() is None


def test_context_manager_records_a_failure_when_the_body_raises(store: TraceStore) -> None:
    def run_that_raises() -> None:
        with store.new_run(workflow="demo", run_id="boom") as recorder:
            recorder.emit(EventType.RUN_STARTED, data={"workflow": "demo"})
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError):
        run_that_raises()
    trace = store.load_trace("boom")
    assert trace.events[-1].type is EventType.RUN_FINISHED
    assert trace.events[-1].data["status"] == "failed"
    assert trace.events[-1].data["error"] == "RuntimeError: model exploded"
    [info] = store.list_runs()
    assert (info.status, info.error) == ("failed", "RuntimeError: model exploded")


def test_recorder_rejects_misuse(store: TraceStore) -> None:
    recorder = store.new_run(workflow="demo")
    with pytest.raises(TraceError, match="unknown event type"):
        recorder.emit("tool_called")
    with pytest.raises(TraceError, match="not an earlier event"):
        recorder.emit(EventType.TOOL_CALL, parent=0)
    with pytest.raises(TraceError, match="unknown run status"):
        recorder.finish("ok")
    with pytest.raises(TraceError, match=r"type object at \$\.arguments"):
        recorder.emit(EventType.TOOL_CALL, data={"arguments": object()})
    recorder.finish("succeeded")
    with pytest.raises(TraceError, match="already finished"):
        recorder.finish("succeeded")
    recorder.close()
    with pytest.raises(TraceError, match="closed"):
        recorder.emit(EventType.ERROR)
    assert store.load_trace(recorder.run_id).ok  # the rejected emits left nothing behind


def test_non_json_values_are_normalised_before_hashing(store: TraceStore) -> None:
    with store.new_run(workflow="demo", run_id="nan") as recorder:
        event = recorder.emit(EventType.REWARD, data={"hook": "judge", "value": float("nan"), "pair": (1, 2)})
    assert event.data == {"hook": "judge", "value": "NaN", "pair": [1, 2]}
    trace = store.load_trace("nan")
    assert trace.ok
    assert trace.events[0].data == event.data


@pytest.mark.parametrize(
    ("policy", "expected_fsyncs"),
    [("never", 0), ("boundary", 2), ("always", 6)],
)
def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: Any, expected_fsyncs: int) -> None:
    store = TraceStore(tmp_path / policy, fsync=policy)
    recorder = store.new_run(workflow="demo")
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    node = recorder.emit(EventType.NODE_STARTED, node="a", data={"visit": 1, "attempt": 1})
    recorder.emit(EventType.TOOL_CALL, node="a", parent=node.seq)
    recorder.emit(EventType.TOOL_RESULT, node="a", parent=node.seq + 1, data={"ok": True})
    recorder.emit(EventType.ERROR, node="a", data={"kind": "ToolError", "message": "x"})  # boundary
    recorder.emit(EventType.NODE_FINISHED, node="a", parent=node.seq, data={"status": "ok"})  # not a boundary
    recorder.finish("succeeded")  # boundary
    recorder.close()
    store.close()  # the boundary fsyncs are a background thread's: wait for them
    assert len(synced) == expected_fsyncs


def _record_in_a_forked_child(folder: Path) -> None:
    store = TraceStore(folder)
    with store.new_run(workflow="child", run_id="child-run") as recorder:
        recorder.emit(EventType.ROUTE, node="a", data={"from": "a", "to": "b"})
        recorder.finish("succeeded")  # a boundary: fsynced by the child's own background thread
    store.close()  # waits for that fsync


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform cannot fork")
def test_a_forked_child_records_and_closes_a_store_after_its_parent_used_one(tmp_path: Path) -> None:
    import multiprocessing

    parent_store = TraceStore(tmp_path / "parent")
    with parent_store.new_run(workflow="parent") as recorder:
        recorder.finish("succeeded")  # the parent's background fsync thread is running now
    child = multiprocessing.get_context("fork").Process(target=_record_in_a_forked_child, args=(tmp_path / "child",))
    child.start()
    child.join(timeout=60)
    if child.exitcode is None:  # it waited for the parent's fsync thread, which a forked process does not have
        child.kill()
        child.join()
    assert child.exitcode == 0
    assert TraceStore(tmp_path / "child").load_trace("child-run").ok
    parent_store.close()


def test_recorders_and_the_stores_own_reads_reuse_index_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the store's reads gave connections back under a smaller cap than recorders did, so each read closed one
    # that a finished recorder had left, and every later recorder opened a connection of its own again.
    store = TraceStore(tmp_path / "store")
    opened: list[sqlite3.Connection] = []
    original = TraceStore.open_index

    def counting(self: TraceStore) -> sqlite3.Connection:
        connection = original(self)
        opened.append(connection)
        return connection

    monkeypatch.setattr(TraceStore, "open_index", counting)
    at_once = 6
    for _ in range(5):
        recorders = [store.new_run(workflow="wf") for _ in range(at_once)]
        for recorder in recorders:
            recorder.emit(EventType.RUN_STARTED, data={"workflow": "wf"})
            recorder.finish("succeeded")
            recorder.close()
            assert store.list_runs()  # a read of the store between the runs ending
    assert len(store.list_runs()) == 5 * at_once
    # the keeper, the first batch's own connections and one for the reads; every later run took a given-back one
    assert len(opened) <= at_once + 2
    store.close()
