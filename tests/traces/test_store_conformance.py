"""The Store contract, run against both stores (SQLite + JSONL, and PostgreSQL): what any store must do alike."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentflow.errors import TraceError
from agentflow.traces import EventType, PostgresStore, Store, StoredReward, TraceStore, realized_graph


def _record(store: Store, *, events: int = 3, workflow: str = "demo", run_id: str | None = None) -> str:
    with store.new_run(workflow=workflow, run_id=run_id) as recorder:
        started = recorder.emit(EventType.RUN_STARTED, data={"workflow": workflow, "inputs": {"task": "t"}})
        node = recorder.emit(EventType.NODE_STARTED, node="a", parent=started.seq, data={"visit": 1, "attempt": 1})
        for index in range(events):
            recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data={"from": "a", "to": "b", "i": index})
        recorder.emit(EventType.NODE_FINISHED, node="a", parent=node.seq, data={"status": "ok", "updates": {"x": 1}})
        recorder.finish("succeeded", final_state={"x": 1})
        return recorder.run_id


def _tamper(store: Store, run_id: str, seq: int, old: str, new: str) -> None:
    """Change one stored event's content behind the store's back."""
    if isinstance(store, TraceStore):
        path = store.run_dir(run_id) / "trace.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        assert old in lines[seq]
        lines[seq] = lines[seq].replace(old, new)
        path.write_text("".join(lines))
        return
    assert isinstance(store, PostgresStore)
    with store.connect() as connection:
        updated = connection.execute(
            "UPDATE events SET line = replace(line, %s, %s) WHERE run_id = %s AND seq = %s", (old, new, run_id, seq)
        )
        assert updated.rowcount == 1


def test_recorded_run_lists_and_loads_back_verified(any_store: Store) -> None:
    run_id = _record(any_store, events=5)
    [info] = any_store.list_runs()
    assert (info.run_id, info.workflow, info.status, info.steps) == (run_id, "demo", "succeeded", 1)
    trace = any_store.load_trace(run_id[:12])
    assert trace.ok, trace.problems
    assert [e.seq for e in trace.events] == list(range(9))
    assert trace.events[-1].type is EventType.RUN_FINISHED
    assert any_store.latest_run_id() == run_id
    assert any_store.run_ids() == [run_id]


def test_unknown_and_ambiguous_run_ids_are_clear_errors(any_store: Store) -> None:
    _record(any_store, run_id="run-alpha-1")
    _record(any_store, run_id="run-alpha-2")
    with pytest.raises(TraceError, match="ambiguous"):
        any_store.load_trace("run-alpha")
    with pytest.raises(TraceError, match="closest: run-alpha"):
        any_store.load_trace("run-alpah-1")
    with pytest.raises(TraceError, match="already exists"):
        any_store.new_run(workflow="demo", run_id="run-alpha-1")


def test_tampered_event_is_reported_with_its_seq(any_store: Store) -> None:
    run_id = _record(any_store)
    _tamper(any_store, run_id, 2, '"i":0', '"i":7')
    trace = any_store.load_trace(run_id)
    assert [(p.kind, p.seq) for p in trace.problems] == [("tampered", 2)]
    with pytest.raises(TraceError, match="tampered"):
        trace.raise_for_problems()


def test_many_concurrent_writers_lose_no_event(any_store: Store) -> None:
    """8 runs recorded by 8 threads at once, and one run shared by 4 threads: every event is there, chained."""
    per_writer = 60
    run_ids: list[str] = []
    errors: list[BaseException] = []

    def write_one_run() -> None:
        try:
            run_ids.append(_record(any_store, events=per_writer))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write_one_run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(run_ids)) == 8
    for run_id in run_ids:
        trace = any_store.load_trace(run_id)
        assert trace.ok and len(trace.events) == per_writer + 4

    with any_store.new_run(workflow="shared") as recorder:

        def emit_many(worker: int) -> None:
            for index in range(per_writer):
                recorder.emit(EventType.ROUTE, node="n", data={"worker": worker, "i": index})

        shared = [threading.Thread(target=emit_many, args=(w,)) for w in range(4)]
        for thread in shared:
            thread.start()
        for thread in shared:
            thread.join()
        recorder.finish("succeeded")
        shared_id = recorder.run_id
    trace = any_store.load_trace(shared_id)
    assert trace.ok
    seen = {(e.data["worker"], e.data["i"]) for e in trace.events if e.type is EventType.ROUTE}
    assert len(seen) == 4 * per_writer


def test_large_payloads_go_to_content_addressed_blobs(any_store: Store) -> None:
    big = "x" * 70_000 + "end"
    with any_store.new_run(workflow="blobs") as recorder:
        event = recorder.emit(EventType.TOOL_RESULT, data={"content": big, "again": big})
        recorder.finish("succeeded")
        run_id = recorder.run_id
    assert event.data["content"] == event.data["again"] and set(event.data["content"]) == {"$blob", "size"}
    trace = any_store.load_trace(run_id)
    assert trace.ok
    assert trace.resolve(trace.events[0].data)["content"] == big
    with pytest.raises(TraceError, match="missing"):
        any_store.read_blob("0" * 64)


def test_closed_without_finishing_is_interrupted(any_store: Store) -> None:
    recorder = any_store.new_run(workflow="cut")
    recorder.emit(EventType.RUN_STARTED, data={"workflow": "cut"})
    assert [r.status for r in any_store.list_runs()] == ["running"]
    recorder.close()
    assert [r.status for r in any_store.list_runs()] == ["interrupted"]
    assert any_store.load_trace(recorder.run_id).ok
    with pytest.raises(TraceError, match="closed"):
        recorder.emit(EventType.ROUTE)


def _reward(run_id: str, hook: str, value: float, pass_id: str = "") -> StoredReward:
    return StoredReward(pass_id, run_id, hook, "step", "a", 2, value, 1, "why", {"n": 1})


def test_grading_passes_append_and_overwrite_without_losing_rewards(any_store: Store) -> None:
    run_id = _record(any_store)
    first = any_store.create_grading_pass(run_ids=[run_id], hooks=["exit_code"], checkpoints=None, mode="append")
    any_store.add_rewards(first, [_reward(run_id, "exit_code", 0.5)])
    second = any_store.create_grading_pass(run_ids=[run_id], hooks=["exit_code"], checkpoints=None, mode="append")
    any_store.add_rewards(second, [_reward(run_id, "exit_code", 0.75)])
    assert first.pass_id != second.pass_id
    assert [(r.pass_id, r.value) for r in any_store.list_rewards(run_id)] == [
        (first.pass_id, 0.5),
        (second.pass_id, 0.75),
    ]
    third = any_store.create_grading_pass(
        run_ids=[run_id], hooks=["exit_code"], checkpoints="cp.yaml", mode="overwrite"
    )
    any_store.add_rewards(third, [_reward(run_id, "exit_code", 1.0)])
    current = any_store.list_rewards(run_id)
    assert [(r.pass_id, r.value, r.components) for r in current] == [(third.pass_id, 1.0, {"n": 1})]
    everything = any_store.list_rewards(run_id, include_superseded=True)
    assert [r.superseded_by for r in everything] == [third.pass_id, third.pass_id, None]
    assert [p.pass_id for p in any_store.list_grading_passes()] == [first.pass_id, second.pass_id, third.pass_id]
    assert any_store.list_grading_passes()[2].checkpoints == "cp.yaml"
    assert any_store.list_rewards(run_id, pass_id=first.pass_id, include_superseded=True)[0].value == 0.5


def test_realized_graphs_are_kept(any_store: Store) -> None:
    run_id = _record(any_store)
    graph: dict[str, Any] = realized_graph(any_store.load_trace(run_id).events)
    assert any_store.load_realized_graph(run_id) is None
    any_store.save_realized_graph(run_id, graph)
    any_store.save_realized_graph(run_id, graph)
    assert any_store.load_realized_graph(run_id) == graph
    assert graph["path"] == ["a"]


def test_opening_an_existing_store_again_keeps_everything(any_store: Store) -> None:
    run_id = _record(any_store)
    again = PostgresStore(any_store.url) if isinstance(any_store, PostgresStore) else TraceStore(any_store.root)
    try:
        assert again.load_trace(run_id).ok
        assert [r.run_id for r in again.list_runs()] == [run_id]
    finally:
        if isinstance(again, PostgresStore):
            again.close()
