"""A store written before the store base (issue 9) still loads, verifies, lists and continues, in both stores.

``fixtures/store-before-i9`` holds what the embedded store wrote then (its ``runs/`` and ``blobs/``; the index is
derived and rebuilt): a finished run with a spilled payload and a live reward, and an interrupted run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agentflow.traces import EventType, PostgresStore, Store, TraceStore

FIXTURE = Path(__file__).parent / "fixtures" / "store-before-i9"
FINISHED = "20261201-170000-f1x7ure0"
INTERRUPTED = "20261201-170100-1nterr00"
NOTES = "line of notes\n" * 40


def _check_the_recorded_runs(store: Store) -> None:
    assert {info.run_id: info.status for info in store.list_runs()} == {
        FINISHED: "succeeded",
        INTERRUPTED: "interrupted",
    }
    trace = store.load_trace(FINISHED)
    assert trace.ok, trace.problems
    assert [event.type for event in trace.events][-1] is EventType.RUN_FINISHED
    result = next(event for event in trace.events if event.type is EventType.TOOL_RESULT)
    assert set(result.data["content"]) == {"$blob", "size"}
    assert trace.resolve(result.data)["content"] == NOTES
    assert [(r.pass_id, r.hook, r.value) for r in store.list_rewards(FINISHED)] == [("live", "exit_code", 1.0)]
    cut = store.load_trace(INTERRUPTED)
    assert cut.ok, cut.problems
    with store.reopen_run(INTERRUPTED) as recorder:
        marker = recorder.emit(EventType.RUN_RESUMED, data={})
        recorder.finish("succeeded")
    assert marker.prev_hash == cut.events[-1].hash
    assert store.load_trace(INTERRUPTED).ok


def test_the_folder_store_reads_and_continues_a_store_written_before(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "store")
    store = TraceStore(tmp_path / "store")
    assert store.list_runs() == []  # no index yet: it is derived from the traces
    assert store.reindex() == [FINISHED, INTERRUPTED]
    _check_the_recorded_runs(store)


def test_postgres_reads_and_continues_the_same_lines(postgres_url: str) -> None:
    # PostgreSQL keeps each event as the exact line the folder store writes (events.line): load the fixture's lines
    # and blobs as the store would have written them, with the index counts each run ended with.
    with PostgresStore(postgres_url) as store, store.connect() as connection:
        for run_id, status in [(FINISHED, "succeeded"), (INTERRUPTED, "interrupted")]:
            lines = (FIXTURE / "runs" / run_id / "trace.jsonl").read_text().splitlines(keepends=True)
            trace = TraceStore(FIXTURE).load_trace(run_id)
            connection.execute(
                "INSERT INTO runs (run_id, workflow, status, started_at, events, last_hash) VALUES (%s, %s, %s, %s,"
                " %s, %s)",
                (run_id, "fixture", status, trace.events[0].ts, len(lines), trace.events[-1].hash),
            )
            for event, line in zip(trace.events, lines, strict=True):
                connection.execute(
                    "INSERT INTO events (run_id, seq, type, node, hash, line) VALUES (%s, %s, %s, %s, %s, %s)",
                    (run_id, event.seq, str(event.type), event.node, event.hash, line),
                )
        for blob in (FIXTURE / "blobs").glob("*/*"):
            content = blob.read_bytes()
            connection.execute(
                "INSERT INTO blobs (digest, size, content) VALUES (%s, %s, %s)", (blob.name, len(content), content)
            )
        _check_the_recorded_runs(store)
