"""The conformance suite every trace store passes, shipped in the package so a store's author can run it.

Each check is a function over a *factory* (``Callable[[], Store]``) that returns a store to test, empty; a check
records what it needs and raises ``CheckFailed`` (or any exception) when the store misbehaves, or ``CheckSkipped``
when it cannot run (for example, no way to change a stored event behind the store's back was given).
``run_conformance`` runs them and returns printable results::

    from agentflow.traces import TraceStore
    from agentflow.traces.conformance import run_conformance

    for result in run_conformance(lambda: TraceStore(tempfile.mkdtemp())):
        print(result)

Both stores of agentflow pass every check (``tests/traces/test_store_conformance.py``). A third-party store passes
``tamper`` (change one stored event's text, to prove tampering is detected) and ``reopen`` (a second handle on the
same data, to prove nothing lives only in memory) for the two checks that need them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

from agentflow._conformance import CheckFailed, CheckRegistry, CheckResult, CheckSkipped, ConformanceReport, run_check
from agentflow._conformance import expect as _expect
from agentflow.errors import TraceError
from agentflow.traces._events import EventType
from agentflow.traces._payloads import (
    ErrorData,
    NodeFinishedData,
    NodeStartedData,
    RewardData,
    RouteData,
    RunResumedData,
    RunStartedData,
    SandboxRestore,
    ToolCallData,
    ToolResultData,
)
from agentflow.traces._postgres import PostgresStore
from agentflow.traces._protocol import LIVE_REWARDS, Store, StoredReward
from agentflow.traces._store import TraceStore
from agentflow.traces._summary import realized_graph

__all__ = [
    "CHECKS",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "ConformanceReport",
    "Reopen",
    "StoreFactory",
    "Tamper",
    "run_conformance",
    "tamper_builtin",
]

StoreFactory = Callable[[], Store]
Tamper = Callable[[Store, str, int, str, str], None]
"""``tamper(store, run_id, seq, old, new)``: replace ``old`` by ``new`` in the stored text of one event."""
Reopen = Callable[[Store], Store]
"""``reopen(store)``: a new, independent handle on the same stored data."""


def _raises(match: str, action: Callable[[], object]) -> None:
    try:
        action()
    except TraceError as exc:
        _expect(match in str(exc), f"expected a TraceError saying {match!r}, got: {exc}")
        return
    raise CheckFailed(f"expected a TraceError saying {match!r}, nothing was raised")


def _record(store: Store, *, events: int = 3, workflow: str = "demo", run_id: str | None = None) -> str:
    with store.new_run(workflow=workflow, run_id=run_id) as recorder:
        started = recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow=workflow, inputs={"task": "t"}))
        node = recorder.emit(
            EventType.NODE_STARTED, node="a", parent=started.seq, data=NodeStartedData(visit=1, attempt=1)
        )
        for index in range(events):
            route: RouteData = {"from": "a", "to": "b", "condition": f"i == {index}"}
            recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data=route)
        finished = NodeFinishedData(status="ok", updates={"x": 1})
        recorder.emit(EventType.NODE_FINISHED, node="a", parent=node.seq, data=finished)
        recorder.finish("succeeded", final_state={"x": 1})
        return recorder.run_id


def tamper_builtin(store: Store, run_id: str, seq: int, old: str, new: str) -> None:
    """``tamper`` for agentflow's own stores: edit the JSONL line, or the ``events.line`` row in PostgreSQL."""
    if isinstance(store, TraceStore):
        path = store.run_dir(run_id) / "trace.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        _expect(old in lines[seq], f"{old!r} is not in event {seq}")
        lines[seq] = lines[seq].replace(old, new)
        path.write_text("".join(lines))
        return
    if isinstance(store, PostgresStore):
        with store.connect() as connection:
            updated = connection.execute(
                "UPDATE events SET line = replace(line, %s, %s) WHERE run_id = %s AND seq = %s", (old, new, run_id, seq)
            )
            _expect(updated.rowcount == 1, f"event {seq} of {run_id} was not found")
        return
    raise CheckSkipped(f"no way to tamper with {type(store).__name__}: pass tamper=")


def _reopen_builtin(store: Store) -> Store:
    if isinstance(store, PostgresStore):
        return PostgresStore(store.url)
    if isinstance(store, TraceStore):
        return TraceStore(store.root)
    raise CheckSkipped(f"no way to open {type(store).__name__} again: pass reopen=")


def check_record_list_load(store: Store) -> None:
    """A recorded run is listed with its counts (its row also by its id) and loads back verified, by id or unique
    prefix."""
    run_id = _record(store, events=5)
    infos = store.list_runs()
    _expect(len(infos) == 1, f"one run recorded, {len(infos)} listed")
    info = infos[0]
    got = (info.run_id, info.workflow, info.status, info.steps)
    _expect(got == (run_id, "demo", "succeeded", 1), f"listed as {got}")
    _expect(store.run_info(run_id) == info, f"its row by id is {store.run_info(run_id)}, listed as {info}")
    _expect(store.run_info(run_id + "-other") is None, "a run never recorded has a row")
    trace = store.load_trace(run_id[:12])
    _expect(trace.ok, f"problems: {trace.problems}")
    _expect([e.seq for e in trace.events] == list(range(9)), "events are not seq 0..8")
    _expect(trace.events[-1].type is EventType.RUN_FINISHED, "the last event is not run_finished")
    _expect(store.latest_run_id() == run_id, "latest_run_id is not the run")
    _expect(store.run_ids() == [run_id], f"run_ids gives {store.run_ids()}")


def check_run_id_errors(store: Store) -> None:
    """Unknown, ambiguous and duplicate run ids are clear errors."""
    _record(store, run_id="run-alpha-1")
    _record(store, run_id="run-alpha-2")
    _raises("ambiguous", lambda: store.load_trace("run-alpha"))
    _raises("closest: run-alpha", lambda: store.load_trace("run-alpah-1"))
    _raises("already exists", lambda: store.new_run(workflow="demo", run_id="run-alpha-1"))


def check_many_concurrent_writers(store: Store) -> None:
    """8 runs recorded by 8 threads at once, and one run shared by 4 threads: every event is there, chained."""
    per_writer = 60
    run_ids: list[str] = []
    errors: list[BaseException] = []

    def write_one_run() -> None:
        try:
            run_ids.append(_record(store, events=per_writer))
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it is
            errors.append(exc)

    threads = [threading.Thread(target=write_one_run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _expect(not errors, f"writers failed: {errors}")
    _expect(len(set(run_ids)) == 8, "8 writers did not get 8 runs")
    for run_id in run_ids:
        trace = store.load_trace(run_id)
        _expect(trace.ok and len(trace.events) == per_writer + 4, f"run {run_id} lost events: {trace.problems}")
    with store.new_run(workflow="shared") as recorder:

        def emit_many(worker: int) -> None:
            for index in range(per_writer):
                route: RouteData = {"from": f"worker{worker}", "to": f"n{index}", "condition": None}
                recorder.emit(EventType.ROUTE, node="n", data=route)

        shared = [threading.Thread(target=emit_many, args=(w,)) for w in range(4)]
        for thread in shared:
            thread.start()
        for thread in shared:
            thread.join()
        recorder.finish("succeeded")
        shared_id = recorder.run_id
    trace = store.load_trace(shared_id)
    _expect(trace.ok, f"shared run: {trace.problems}")
    routes = [e.data_as(RouteData) for e in trace.events if e.type is EventType.ROUTE]
    seen = {(route["from"], route["to"]) for route in routes}
    _expect(len(seen) == 4 * per_writer, f"shared run kept {len(seen)} of {4 * per_writer} events")


def check_large_payloads_in_blobs(store: Store) -> None:
    """Payloads over the spill threshold go to content-addressed blobs and resolve back."""
    big = "x" * 70_000 + "end"
    with store.new_run(workflow="blobs") as recorder:
        data = ToolResultData(tool="t", call_id="c", ok=True, content=big, result=big, error=None)
        event = recorder.emit(EventType.TOOL_RESULT, data=data)
        recorder.finish("succeeded")
        run_id = recorder.run_id
    content: Any = event.data["content"]  # a blob reference, where the types say str (see traces/_payloads.py)
    _expect(isinstance(content, dict) and set(content) == {"$blob", "size"}, "a 70 kB payload was not spilled")
    _expect(content == event.data["result"], "the same payload got two blob references")
    trace = store.load_trace(run_id)
    _expect(trace.ok, f"problems: {trace.problems}")
    _expect(trace.resolve(trace.events[0].data)["content"] == big, "the blob does not resolve to the payload")
    _raises("missing", lambda: store.read_blob("0" * 64))


def check_interrupted_and_reopened(store: Store) -> None:
    """A run closed without finishing is interrupted; reopened, it continues its hash chain and can finish."""
    recorder = store.new_run(workflow="cut")
    started = recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="cut", inputs={}))
    _expect([r.status for r in store.list_runs()] == ["running"], "a run in progress is not listed as running")
    recorder.close()
    _expect([r.status for r in store.list_runs()] == ["interrupted"], "a closed unfinished run is not interrupted")
    _expect(store.load_trace(recorder.run_id).ok, "an interrupted run's trace does not verify")
    _raises("closed", lambda: recorder.emit(EventType.ROUTE))
    again = store.reopen_run(recorder.run_id)
    marker = again.emit(EventType.RUN_RESUMED, data=_resumed_marker(started.seq))
    _expect(marker.seq == started.seq + 1 and marker.prev_hash == started.hash, "the reopened run broke its chain")
    again.finish("succeeded")
    again.close()
    _expect(store.load_trace(recorder.run_id).ok, "the resumed run's trace does not verify")
    _expect([r.status for r in store.list_runs()] == ["succeeded"], "the resumed run is not listed as succeeded")
    _raises("already finished", lambda: store.reopen_run(recorder.run_id))


def check_held_events(store: Store) -> None:
    """Held events reach the store at ``flush``, ``error``, ``finish`` or ``close``, in order, never out of it.

    A store may write a held event early (one promising every event durable as emitted), never late: what a reader
    loads is always a verified prefix of what was emitted, and after each of those points all of it.
    """
    recorder = store.new_run(workflow="held")
    recorder.hold_events()
    emitted = [recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="held", inputs={}))]

    def stored() -> list[str]:
        trace = store.load_trace(recorder.run_id)
        _expect(trace.ok, f"a run with held events does not verify: {trace.problems}")
        hashes = [event.hash for event in trace.events]
        _expect(hashes == [event.hash for event in emitted[: len(hashes)]], "the store holds other events")
        return hashes

    def everything_stored(after: str) -> None:
        _expect(stored() == [event.hash for event in emitted], f"events emitted before {after} are missing")

    everything_stored("run_started")  # how a run starts is written at once
    node = recorder.emit(EventType.NODE_STARTED, node="a", data=NodeStartedData(visit=1, attempt=1))
    emitted.append(node)
    route = RouteData(**{"from": "a", "to": "b", "condition": None})
    emitted.append(recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data=route))
    stored()
    recorder.flush()
    everything_stored("flush()")
    recorder.flush()  # nothing held: nothing written twice
    everything_stored("a second flush()")
    emitted.append(recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data=route))
    emitted.append(recorder.emit(EventType.ERROR, node="a", data=ErrorData(kind="Boom", message="reported")))
    everything_stored("an error event")
    emitted.append(recorder.emit(EventType.ROUTE, node="a", parent=node.seq, data=route))
    emitted.append(recorder.finish("failed", error="boom"))
    everything_stored("finish()")
    recorder.close()
    cut = store.new_run(workflow="held")
    cut.hold_events()
    emitted = [cut.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="held", inputs={}))]
    emitted.append(cut.emit(EventType.ROUTE, node="a", data=route))
    cut.close()
    _expect(
        [e.hash for e in store.load_trace(cut.run_id).events] == [e.hash for e in emitted],
        "events held when the recorder was closed are missing",
    )
    _expect({r.run_id: r.status for r in store.list_runs()}[cut.run_id] == "interrupted", "not interrupted")


def check_grading_passes(store: Store) -> None:
    """Grading passes append, or overwrite by marking older rewards superseded; nothing is deleted."""
    run_id = _record(store)

    def reward(value: float) -> StoredReward:
        return StoredReward("", run_id, "exit_code", "step", "a", 2, value, 1, "why", {"n": 1})

    first = store.create_grading_pass(run_ids=[run_id], hooks=["exit_code"], checkpoints=None, mode="append")
    store.add_rewards(first, [reward(0.5)])
    second = store.create_grading_pass(run_ids=[run_id], hooks=["exit_code"], checkpoints=None, mode="append")
    store.add_rewards(second, [reward(0.75)])
    _expect(first.pass_id != second.pass_id, "two passes got the same id")
    got = [(r.pass_id, r.value) for r in store.list_rewards(run_id)]
    _expect(got == [(first.pass_id, 0.5), (second.pass_id, 0.75)], f"appended rewards: {got}")
    third = store.create_grading_pass(run_ids=[run_id], hooks=["exit_code"], checkpoints="cp.yaml", mode="overwrite")
    store.add_rewards(third, [reward(1.0)])
    current = [(r.pass_id, r.value, r.components) for r in store.list_rewards(run_id)]
    _expect(current == [(third.pass_id, 1.0, {"n": 1})], f"current rewards after overwrite: {current}")
    everything = [r.superseded_by for r in store.list_rewards(run_id, include_superseded=True)]
    _expect(everything == [third.pass_id, third.pass_id, None], f"superseded_by: {everything}")
    passes = store.list_grading_passes()
    _expect([p.pass_id for p in passes] == [first.pass_id, second.pass_id, third.pass_id], "passes out of order")
    _expect(passes[2].checkpoints == "cp.yaml", "the checkpoints file of a pass was not kept")
    old = store.list_rewards(run_id, pass_id=first.pass_id, include_superseded=True)
    _expect([r.value for r in old] == [0.5], "a superseded reward was lost")


def check_live_rewards(store: Store) -> None:
    """``list_rewards`` gives the rewards the run recorded while it ran (pass ``live``) before the grading passes'."""
    with store.new_run(workflow="demo") as recorder:
        started = recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="demo", inputs={}))
        call_data = ToolCallData(tool="t", call_id="c", arguments="{}")
        call = recorder.emit(EventType.TOOL_CALL, node="a", parent=started.seq, data=call_data)
        step = _reward("exit_code", "step", 1.0, 1, target_seq=call.seq)
        recorder.emit(EventType.REWARD, node="a", parent=call.seq, data=step)
        aggregate = _reward("exit_code", "run", None, None, target_seq=None, explanation="aggregates")
        aggregate["aggregate"] = {"mean": 1.0}
        recorder.emit(EventType.REWARD, data=aggregate)
        recorder.emit(EventType.REWARD, data=_reward("outcome", "run", 1.0, 1, target_seq=None))
        recorder.finish("succeeded")
        run_id = recorder.run_id
    live = store.list_rewards(run_id)
    got = [(r.pass_id, r.hook, r.kind, r.node, r.target_seq, r.value, r.label) for r in live]
    _expect(
        got
        == [
            ("live", "exit_code", "step", "a", call.seq, 1.0, 1),
            ("live", "exit_code", "run", None, None, None, None),
            ("live", "outcome", "run", None, None, 1.0, 1),
        ],
        f"live rewards: {got}",
    )
    _expect(live[1].components.get("aggregate") == {"mean": 1.0}, f"an aggregate lost its figures: {live[1]}")
    graded = store.create_grading_pass(run_ids=[run_id], hooks=["exit_code:step"], checkpoints=None, mode="overwrite")
    store.add_rewards(graded, [StoredReward("", run_id, "exit_code", "step", "a", call.seq, 0.5, -1, "regraded")])
    current = [(r.pass_id, r.hook, r.value) for r in store.list_rewards(run_id)]
    _expect(
        current == [("live", "outcome", 1.0), (graded.pass_id, "exit_code", 0.5)],
        f"an overwrite pass did not supersede the live rewards of its hook: {current}",
    )
    kept = [r.superseded_by for r in store.list_rewards(run_id, include_superseded=True)]
    _expect(kept == [graded.pass_id, graded.pass_id, None, None], f"superseded live rewards: {kept}")
    only_live = [r.hook for r in store.list_rewards(run_id, pass_id=LIVE_REWARDS, include_superseded=True)]
    _expect(only_live == ["exit_code", "exit_code", "outcome"], f"pass_id='live': {only_live}")
    only_pass = [r.pass_id for r in store.list_rewards(run_id, pass_id=graded.pass_id)]
    _expect(only_pass == [graded.pass_id], f"pass_id of a grading pass listed {only_pass}")


def _reward(
    hook: str, on: str, value: float | None, label: int | None, *, target_seq: int | None, explanation: str = "ok"
) -> RewardData:
    return RewardData(
        hook=hook,
        hook_version="1",
        on=on,
        value=value,
        label=label,
        explanation=explanation,
        components={},
        target_seq=target_seq,
        duration_s=0.0,
    )


def _resumed_marker(after_seq: int) -> RunResumedData:
    return RunResumedData(
        checkpoint_id="checkpoint",
        checkpoint_step=0,
        resumed_after_seq=after_seq,
        abandoned_events=0,
        model_responses_on_tape=0,
        sandbox_restored=SandboxRestore(tool_calls=0, differed=[]),
        dropped_partial_line=None,
        agentflow_version="conformance",
    )


def check_replays_marked(store: Store) -> None:
    """``list_runs`` names the run a replay replays (``replay_of`` of its run_started), and None for other runs."""
    original = _record(store)
    with store.new_run(workflow="demo") as recorder:
        started = RunStartedData(workflow="demo", inputs={}, replay_of=original, replay_mode="tape")
        recorder.emit(EventType.RUN_STARTED, data=started)
        recorder.finish("succeeded")
        replay = recorder.run_id
    listed = {info.run_id: info.replay_of for info in store.list_runs()}
    _expect(listed == {original: None, replay: original}, f"replay_of in the run list: {listed}")


def check_forks_marked(store: Store) -> None:
    """``list_runs`` names a forked run's parent and group (from its run_started) and lists a group or a parent's
    continuations alone."""
    parent = _record(store)
    forks = []
    for index in range(2):
        with store.new_run(workflow="demo") as recorder:
            started = RunStartedData(
                workflow="demo", inputs={}, forked_from={"run_id": parent, "seq": 3}, fork_group="g1", fork_index=index
            )
            recorder.emit(EventType.RUN_STARTED, data=started)
            recorder.finish("succeeded")
            forks.append(recorder.run_id)
    listed = {info.run_id: (info.forked_from, info.fork_group) for info in store.list_runs()}
    expected = {parent: (None, None), **{run_id: (parent, "g1") for run_id in forks}}
    _expect(listed == expected, f"forked_from and fork_group in the run list: {listed}")
    group = sorted(info.run_id for info in store.list_runs(fork_group="g1"))
    _expect(group == sorted(forks), f"the runs of fork group g1: {group}")
    children = sorted(info.run_id for info in store.list_runs(forked_from=parent))
    _expect(children == sorted(forks), f"the runs forked from {parent}: {children}")
    _expect(store.list_runs(fork_group="nope") == [], "an unknown fork group lists runs")


def check_realized_graphs(store: Store) -> None:
    """A realized graph is kept, and saving it again replaces it."""
    run_id = _record(store)
    graph: dict[str, Any] = realized_graph(store.load_trace(run_id).events)
    _expect(store.load_realized_graph(run_id) is None, "a graph exists before one was saved")
    store.save_realized_graph(run_id, graph)
    store.save_realized_graph(run_id, graph)
    _expect(store.load_realized_graph(run_id) == graph, "the saved graph does not load back")


def check_tampered_event_reported(store: Store, tamper: Tamper) -> None:
    """An event changed behind the store's back is reported as tampered, with its seq."""
    run_id = _record(store)
    tamper(store, run_id, 2, '"i == 0"', '"i == 7"')
    trace = store.load_trace(run_id)
    got = [(p.kind, p.seq) for p in trace.problems]
    _expect(got == [("tampered", 2)], f"problems after tampering with event 2: {got}")
    _raises("tampered", trace.raise_for_problems)


def check_verified_in_steps(store: Store, tamper: Tamper) -> None:
    """A trace verified a few lines at a time (``verify_in_steps``, how a viewer shows a long trace's start before
    its end is checked): after each step the verified events are a prefix of the chain and the rest unverified; at
    the end the events and problems are those ``load_trace`` finds. An event changed behind the store's back ends
    the verified prefix: neither it nor any event after it is ever verified."""
    intact = _record(store, events=8)  # 12 events: run_started, node_started, 8 routes, node_finished, run_finished
    verification = store.verify_in_steps(intact)
    first = verification.advance(5)
    _expect((first.lines, first.checked, first.verified, first.done) == (12, 5, 5, False), f"after 5 lines: {first}")
    verified, unverified = verification.events(3, 8)
    seqs = ([e.seq for e in verified], [e.seq for e in unverified])
    _expect(seqs == ([3, 4], [5, 6, 7]), f"events 3 to 8 after 5 lines: verified, unverified {seqs}")
    while not verification.advance(5).done:
        pass
    end = verification.progress()
    _expect((end.verified, end.problems) == (12, ()), f"an intact trace verified in steps: {end}")
    loaded = store.load_trace(intact)
    _expect([e.hash for e in verification.trace().events] == [e.hash for e in loaded.events], "steps and load differ")
    damaged = _record(store, events=8)
    tamper(store, damaged, 6, '"i == 4"', '"i == 9"')
    verification = store.verify_in_steps(damaged)
    before = verification.advance(4)
    _expect((before.verified, before.problems) == (4, ()), f"before the changed event: {before}")
    found = verification.advance(4)
    got = [(p.kind, p.seq) for p in found.problems]
    _expect((found.checked, found.verified, got) == (8, 6, [("tampered", 6)]), f"past the changed event: {found}")
    verified, unverified = verification.events(0, 12)
    seqs = ([e.seq for e in verified], [e.seq for e in unverified])
    _expect(seqs == ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]), f"events of the damaged trace: {seqs}")
    last = verification.advance()
    _expect(last.done and last.verified == 6, f"the damaged trace verified to its end: {last}")
    _expect(list(last.problems) == store.load_trace(damaged).problems, "steps and load find different problems")


def check_trace_followed(store: Store, tamper: Tamper) -> None:
    """A run followed while it records: each poll gives exactly the events appended since the last, in order,
    verified as they arrive (an event changed before it was read is reported); ``finished`` after run_finished."""
    recorder = store.new_run(workflow="followed")
    try:
        started = recorder.emit(EventType.RUN_STARTED, data=RunStartedData(workflow="followed", inputs={}))
        follower = store.follow_trace(recorder.run_id)
        first = follower.poll()
        _expect([e.seq for e in first] == [0], f"the first poll gave seqs {[e.seq for e in first]}")
        _expect(follower.poll() == [], "a poll with nothing new gave events")
        for index in range(3):
            route: RouteData = {"from": "a", "to": "b", "condition": f"i == {index}"}
            recorder.emit(EventType.ROUTE, node="a", parent=started.seq, data=route)
        recorder.flush()
        tamper(store, recorder.run_id, 2, '"i == 1"', '"i == 8"')
        appended = follower.poll()
        _expect([e.seq for e in appended] == [1, 2, 3], f"the second poll gave seqs {[e.seq for e in appended]}")
        got = [(p.kind, p.seq) for p in follower.problems]
        _expect(got == [("tampered", 2)], f"problems of the followed run: {got}")
        _expect(not follower.finished, "finished before run_finished")
        recorder.finish("succeeded")
    finally:
        recorder.close()
    last = follower.poll()
    _expect([e.type for e in last] == [EventType.RUN_FINISHED], f"the last poll gave {[e.type for e in last]}")
    _expect(follower.finished, "not finished after run_finished")


def check_opened_again(store: Store, reopen: Reopen) -> None:
    """A second handle on the same data sees every run: nothing lives only in one handle's memory."""
    run_id = _record(store)
    again = reopen(store)
    try:
        _expect(again.load_trace(run_id).ok, "the run does not verify through a new handle")
        _expect([r.run_id for r in again.list_runs()] == [run_id], "a new handle lists other runs")
    finally:
        again.close()


CHECKS: CheckRegistry[Callable[..., None]] = CheckRegistry(
    "store conformance",
    {
        "record_list_load": check_record_list_load,
        "run_id_errors": check_run_id_errors,
        "many_concurrent_writers": check_many_concurrent_writers,
        "large_payloads_in_blobs": check_large_payloads_in_blobs,
        "interrupted_and_reopened": check_interrupted_and_reopened,
        "held_events": check_held_events,
        "grading_passes": check_grading_passes,
        "live_rewards": check_live_rewards,
        "replays_marked": check_replays_marked,
        "forks_marked": check_forks_marked,
        "realized_graphs": check_realized_graphs,
        "tampered_event_reported": check_tampered_event_reported,
        "trace_followed": check_trace_followed,
        "verified_in_steps": check_verified_in_steps,
        "opened_again": check_opened_again,
    },
)


def run_conformance(
    factory: StoreFactory,
    *,
    tamper: Tamper | None = None,
    reopen: Reopen | None = None,
    known_failures: Collection[str] = (),
    only: Collection[str] | None = None,
) -> list[CheckResult]:
    """Run the store checks, each on a store from ``factory`` (which must be empty).

    Args:
        factory: returns the store to test, empty, once per check.
        tamper: changes one stored event's text; agentflow's own stores need none (``tamper_builtin``).
        reopen: opens a second handle on a store's data; agentflow's own stores need none.
        known_failures: names of checks expected to fail; their failures are reported as ``known_failure``.
        only: run just these checks (names from ``CHECKS``).

    Returns:
        One ``CheckResult`` per check, in ``CHECKS`` order.

    Raises:
        KeyError: ``only`` or ``known_failures`` names a check that does not exist.
    """
    selected = CHECKS.select(only, known_failures)
    extras: dict[str, tuple[Any, ...]] = {
        "tampered_event_reported": (tamper or tamper_builtin,),
        "trace_followed": (tamper or tamper_builtin,),
        "verified_in_steps": (tamper or tamper_builtin,),
        "opened_again": (reopen or _reopen_builtin,),
    }

    def on_a_fresh_store(check: Callable[..., None], name: str) -> Callable[[], None]:
        return lambda: check(factory(), *extras.get(name, ()))

    return [run_check(name, on_a_fresh_store(check, name), known_failure=known) for name, check, known in selected]
