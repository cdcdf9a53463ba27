"""Replay, re-grading and store throughput.

1. Record a 20-step run whose model answers after 100 ms (each step a model turn and a tool call), then replay it in
   tape mode: both wall times and ``replay_ratio`` = tape replay wall time / original wall time.
2. Re-grade 1,000 stored traces offline with three hooks: traces per second.
3. Event append throughput with 8 concurrent writers, SQLite (JSONL + index) vs PostgreSQL (when one is configured:
   AGENTFLOW_TEST_POSTGRES_URL or the file .ci/setup-postgres.sh writes). Each writer records one run as a run does:
   it holds its events and flushes every EVENTS_PER_FLUSH events (a run flushes before each external effect and at
   the end of each node), and each store is written the way it is deployed:
   - ``postgres_events_per_s``: 8 writer *processes*, each with the store opened on its own. On a cluster every
     bench worker is a process of its own (a Ray worker) writing its runs straight into the shared database, so
     this is the figure of the target. ``postgres_events_per_s_threads``: 8 threads of one process sharing one
     store object (one worker's concurrent runs), bound by that process's one core for Python (the GIL).
   - ``sqlite_events_per_s``: 8 threads of one process, as before: a folder store is written by one process (a
     local run, or the driver recording the events its Ray workers ship back). ``sqlite_events_per_s_processes``:
     8 processes sharing the folder, whose index writes then wait on SQLite's lock.
   - ``postgres_vs_sqlite``: ``postgres_events_per_s / sqlite_events_per_s`` (each store as deployed);
     ``postgres_vs_sqlite_threads`` compares the two thread figures (like for like in one process).
   - ``postgres_unbatched_events_per_s``: 8 processes with one committed write per event (a recorder that does not
     hold events): about the server's commit rate.

Usage: .venv/bin/python benchmarks/replay.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentflow.grading import grade_runs
from agentflow.models import Model, ModelResponse, ModelSettings, ScriptedModel, model_provider
from agentflow.rerun import replay_run
from agentflow.runtime import run_workflow
from agentflow.traces import EventType, PostgresStore, Store, TraceStore
from agentflow.traces._import import import_openai_messages

STEPS = 20
LATENCY_S = 0.1
TRACES = 1000
WRITERS = 8
EVENTS_PER_WRITER = 2000
EVENTS_PER_FLUSH = 32

WORKFLOW = f"""
name: twenty_steps
state: {{task: {{type: str, default: "read the notes"}}}}
models: {{m: {{model: "slow:script.yaml"}}}}
sandbox: {{backend: local, files: {{".": ws}}}}
tools: [read_file]
start: work
nodes:
  work: {{kind: agent, model: m, prompt: "{{task}}", tools: [read_file], max_turns: {STEPS + 1}}}
edges: [{{from: work, to: END}}]
limits: {{max_model_calls: {STEPS + 5}, max_steps: 5}}
"""


class SlowModel(Model):
    """A scripted model that takes LATENCY_S per answer, like a fast hosted model."""

    provider = "slow"

    def __init__(self, inner: ScriptedModel) -> None:
        super().__init__(inner.name)
        self.inner = inner

    async def complete(self, messages: list[Any], tools: list[Any], settings: ModelSettings) -> ModelResponse:
        await asyncio.sleep(LATENCY_S)
        return await self.inner.complete(messages, tools, settings)


@model_provider("slow")
def _slow(name: str, *, base_dir: Path | None) -> Model:
    from agentflow.models import create_model

    inner = create_model(f"scripted:{name}", base_dir=base_dir)
    assert isinstance(inner, ScriptedModel)
    return SlowModel(inner)


async def bench_replay(root: Path) -> dict[str, float]:
    folder = root / "wf"
    (folder / "ws").mkdir(parents=True)
    (folder / "ws" / "notes.txt").write_text("remember the milk\n")
    turns = [{"tool_calls": [{"name": "read_file", "arguments": {"path": "notes.txt"}}]} for _ in range(STEPS)]
    (folder / "script.yaml").write_text(json.dumps({"responses": [*turns, {"content": "done"}]}))
    (folder / "wf.yaml").write_text(WORKFLOW)
    store = TraceStore(root / "store")
    clock = time.perf_counter()
    original = await run_workflow(folder / "wf.yaml", store=store)
    original_wall = time.perf_counter() - clock
    assert original.succeeded, original.error
    clock = time.perf_counter()
    report = await replay_run(store, original.run_id, mode="tape")
    replay_wall = time.perf_counter() - clock
    assert report.identical, report.divergence
    assert report.sandbox_execs == 0
    return {
        "original_wall_s": round(original_wall, 4),
        "replay_wall_s": round(replay_wall, 4),
        "replay_ratio": round(replay_wall / original_wall, 4),
    }


async def bench_regrade(root: Path) -> dict[str, float]:
    record = {
        "messages": [
            {"role": "user", "content": "6*7?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "python", "arguments": '{"code": "6*7"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "42"},
        ]
    }
    source = root / "traces.jsonl"
    source.write_text((json.dumps(record) + "\n") * TRACES)
    store = TraceStore(root / "grading-store")
    run_ids = import_openai_messages(store, source).run_ids
    clock = time.perf_counter()
    result = await grade_runs(store, run_ids, hooks=["exit_code", "tests_passed:node", "constant:run"])
    elapsed = time.perf_counter() - clock
    assert len(result.rewards) == TRACES
    assert not result.failures
    return {
        "regrade_traces": TRACES,
        "regrade_s": round(elapsed, 4),
        "regrade_traces_per_s": round(TRACES / elapsed, 1),
    }


def write_run(store: Store, events_per_flush: int | None) -> None:
    """One writer: a run of EVENTS_PER_WRITER events (and run_finished), flushed every ``events_per_flush``."""
    with store.new_run(workflow="bench") as recorder:
        if events_per_flush is not None:
            recorder.hold_events()
        for index in range(EVENTS_PER_WRITER):
            recorder.emit(EventType.ROUTE, node="n", data={"from": "a", "to": "b", "i": index})
            if events_per_flush is not None and (index + 1) % events_per_flush == 0:
                recorder.flush()
        recorder.finish("succeeded")


def append_threads(store: Store, *, events_per_flush: int | None = EVENTS_PER_FLUSH) -> float:
    """Events/s of WRITERS threads writing one run each into one store object."""
    threads = [threading.Thread(target=write_run, args=(store, events_per_flush)) for _ in range(WRITERS)]
    clock = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return WRITERS * (EVENTS_PER_WRITER + 1) / (time.perf_counter() - clock)


def _writer_process(
    open_store: Callable[[], Store], events_per_flush: int | None, ready: Any, start: Any, done: Any
) -> None:
    try:
        store = open_store()
        try:
            ready.put(None)
            start.wait()
            write_run(store, events_per_flush)
        finally:
            store.close()
    except BaseException as exc:
        done.put(f"{type(exc).__name__}: {exc}")
        raise
    done.put(None)


def append_processes(open_store: Callable[[], Store], *, events_per_flush: int | None = EVENTS_PER_FLUSH) -> float:
    """Events/s of WRITERS processes writing one run each, each into the store it opened (``open_store``).

    The clock runs from when all of them have opened the store until all have closed their runs, as the threads'
    does from their start (the store is open) to their end.
    """
    context = multiprocessing.get_context("fork")  # the writers inherit what this process imported
    ready, done, start = context.Queue(), context.Queue(), context.Event()
    writers = [
        context.Process(target=_writer_process, args=(open_store, events_per_flush, ready, start, done))
        for _ in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    try:
        for _ in writers:
            ready.get(timeout=60)
        clock = time.perf_counter()
        start.set()
        failures = [failure for failure in (done.get(timeout=300) for _ in writers) if failure is not None]
        elapsed = time.perf_counter() - clock
    finally:
        start.set()
        for writer in writers:
            writer.join(timeout=60)
    if failures:
        raise RuntimeError(f"{len(failures)} writer(s) failed: {failures[0]}")
    return WRITERS * (EVENTS_PER_WRITER + 1) / elapsed


def postgres_url() -> str | None:
    url = os.environ.get("AGENTFLOW_TEST_POSTGRES_URL")
    marker = Path("/var/tmp/agentflow-test-postgres-url")
    if not url and marker.is_file():
        url = marker.read_text().strip()
    return url or None


def bench_stores(root: Path) -> dict[str, Any]:
    sqlite_rate = append_threads(TraceStore(root / "append-store"))
    TraceStore(root / "append-store-processes").close()  # created once: the writers only open it
    sqlite_processes_rate = append_processes(lambda: TraceStore(root / "append-store-processes"))
    figures: dict[str, Any] = {
        "writers": WRITERS,
        "events_per_flush": EVENTS_PER_FLUSH,
        "sqlite_events_per_s": round(sqlite_rate),
        "sqlite_events_per_s_processes": round(sqlite_processes_rate),
        "postgres_events_per_s": None,
        "postgres_events_per_s_threads": None,
        "postgres_unbatched_events_per_s": None,
        "postgres_vs_sqlite": None,
        "postgres_vs_sqlite_threads": None,
    }
    url = postgres_url()
    if url is None:
        return figures
    import psycopg

    schema = f"bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        schema_url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
        PostgresStore(schema_url).close()  # migrated once: the writers only open it
        postgres_rate = append_processes(lambda: PostgresStore(schema_url))
        unbatched_rate = append_processes(lambda: PostgresStore(schema_url), events_per_flush=None)
        store = PostgresStore(schema_url)
        postgres_threads_rate = append_threads(store)
        store.close()
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    figures["postgres_events_per_s"] = round(postgres_rate)
    figures["postgres_events_per_s_threads"] = round(postgres_threads_rate)
    figures["postgres_unbatched_events_per_s"] = round(unbatched_rate)
    figures["postgres_vs_sqlite"] = round(postgres_rate / sqlite_rate, 3)
    figures["postgres_vs_sqlite_threads"] = round(postgres_threads_rate / sqlite_rate, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        figures = {**asyncio.run(bench_replay(root)), **asyncio.run(bench_regrade(root)), **bench_stores(root)}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{STEPS}-step run, model latency {LATENCY_S * 1000:.0f} ms:")
    print(f"  original {figures['original_wall_s']:.3f} s, tape replay {figures['replay_wall_s']:.3f} s")
    print(f"  replay_ratio {figures['replay_ratio']:.3f}")
    print(f"re-grade {TRACES} traces with 3 hooks: {figures['regrade_traces_per_s']:.0f} traces/s")
    print(f"event appends, {WRITERS} concurrent writers, a flush every {EVENTS_PER_FLUSH} events:")
    print(f"  SQLite, threads of one process: {figures['sqlite_events_per_s']} events/s", end="")
    print(f" ({figures['sqlite_events_per_s_processes']} with {WRITERS} processes)")
    if figures["postgres_events_per_s"] is None:
        print("  PostgreSQL not configured")
        return
    print(f"  PostgreSQL, processes: {figures['postgres_events_per_s']} events/s (x{figures['postgres_vs_sqlite']})")
    print(f"  PostgreSQL, threads of one process: {figures['postgres_events_per_s_threads']} events/s", end="")
    print(f" (x{figures['postgres_vs_sqlite_threads']})")
    print(f"  PostgreSQL with one commit per event, processes: {figures['postgres_unbatched_events_per_s']} events/s")


if __name__ == "__main__":
    main()
