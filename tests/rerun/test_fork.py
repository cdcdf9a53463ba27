"""Forked runs: the prefix comes from the parent's tape, the sandbox is rebuilt to it, the rest runs live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentflow.errors import SandboxError, TraceError
from agentflow.rerun import Fork, first_error_step, fork_run, replay_run, steps_of
from agentflow.runtime import run_workflow
from agentflow.sandboxes import create_sandbox
from agentflow.traces import Event, EventType, TraceStore, content_digest

WORKFLOW = """
name: forkable
state:
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:fork.script.yaml"}
sandbox: {backend: local, files: {".": ws}}
tools: [read_file, write_file, shell]
start: work
nodes:
  work:
    kind: agent
    model: m
    prompt: "Write a file, look at it, add to it."
    tools: [read_file, write_file, shell]
    max_turns: 6
  check: {kind: tool, tool: read_file, args: {path: out.txt}, output: {answer: result}}
edges:
  - {from: work, to: check}
  - {from: check, to: END}
rewards:
  - {hook: exit_code, on: step, nodes: [work]}
"""

# steps: 1 turn, 2 write_file, 3 turn, 4 shell cat, 5 turn, 6 shell append, 7 turn (done), 8 check's read_file
SCRIPT = """
responses:
  - tool_calls: [{name: write_file, arguments: {path: out.txt, content: one}}]
  - tool_calls: [{name: shell, arguments: {command: "cat out.txt"}}]
  - tool_calls: [{name: shell, arguments: {command: "printf two >> out.txt"}}]
  - content: done
"""


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    folder = tmp_path / "wf"
    (folder / "ws").mkdir(parents=True)
    (folder / "ws" / "keep.txt").write_text("kept\n")
    (folder / "fork.script.yaml").write_text(SCRIPT)
    path = folder / "forkable.yaml"
    path.write_text(WORKFLOW)
    return path


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    return TraceStore(tmp_path / "store")


async def _local_sandbox_forks() -> bool:
    box = await create_sandbox("local")
    try:
        copy = await box.fork()
    except SandboxError:
        return False
    finally:
        await box.close()
    await copy.close()
    return True


def _served(events: list[Event], cut: int) -> list[str]:
    """The digests of what a prefix serves: responses, tool results, their commands and the hooks' rewards."""
    kinds = {EventType.MODEL_RESPONSE, EventType.TOOL_CALL, EventType.TOOL_RESULT, EventType.SANDBOX_EXEC}
    return [content_digest(e) for e in events if e.seq <= cut and (e.type in kinds or e.type is EventType.REWARD)]


async def test_fork_mid_node_serves_the_prefix_rebuilds_the_sandbox_and_replays_identically(
    workflow: Path, store: TraceStore
) -> None:
    parent = await run_workflow(workflow, store=store, seed=7)
    assert parent.succeeded and parent.final_state["answer"] == "onetwo"
    parent_events = store.load_trace(parent.run_id).resolved_events()
    assert [s.kind for s in steps_of(parent_events)] == ["model_turn", "tool_call"] * 4

    fork = Fork.open(store, parent.run_id, at=4)  # inside `work`, after the `cat`
    results = await fork.continue_runs(3)
    cut = fork.point.cut_seq
    assert cut == steps_of(parent_events)[3].seq + 1  # the `cat`'s result and its step reward
    forks = await _local_sandbox_forks()
    assert (fork.sandboxes.rebuilt.tool_calls, fork.sandboxes.forks) == (2, 3 if forks else 0)
    seeds = set()
    for index, result in enumerate(results):
        # the live part appended to the file the prefix wrote: the sandbox held the prefix's workspace
        assert result.succeeded and result.final_state["answer"] == "onetwo", result.error
        trace = store.load_trace(result.run_id)
        assert trace.problems == []
        started = trace.events[0].data
        assert started["forked_from"] == {"run_id": parent.run_id, "seq": cut}
        assert (started["fork_group"], started["fork_index"], started["fork_step"]) == (fork.group, index, 4)
        assert started["fork_sandbox"] == {"forked": forks, "rebuilt_tool_calls": 2, "differed": []}
        seeds.add(started["seed"])
        events = trace.resolved_events()
        # the prefix is the parent's: same responses, results, commands (served, not run again) and rewards
        assert _served(events, cut) == _served(parent_events, cut)
        live_execs = [e for e in events if e.seq > cut and e.type is EventType.SANDBOX_EXEC]
        assert [e.data["cmd"][-1] for e in live_execs] == ["printf two >> out.txt"]
        requests = [e for e in events if e.type is EventType.MODEL_REQUEST]
        assert {r.data["settings"]["seed"] for r in requests} == {started["seed"]}  # its own seed, prefix included

        report = await replay_run(store, result.run_id, mode="tape")
        assert report.identical, report.divergence
        assert (report.model_calls_served, report.sandbox_execs) == (4, 0)
    assert len(seeds) == 3  # each continuation samples with its own seed


async def test_fork_at_an_event_seq_and_at_the_start(workflow: Path, store: TraceStore) -> None:
    parent = await run_workflow(workflow, store=store)
    steps = steps_of(store.load_trace(parent.run_id).resolved_events())
    # seq:N counts the steps that ended at or before N: one before the third step's end is two steps
    at_seq = Fork.open(store, parent.run_id, at=f"seq:{steps[2].seq - 1}")
    assert at_seq.point.steps == 2
    [whole] = await fork_run(store, parent.run_id, at=0)  # no prefix: a new run of the same inputs
    assert whole.succeeded
    started = store.load_trace(whole.run_id).events[0].data
    assert (started["fork_step"], started["forked_from"]["seq"]) == (0, 0)


@pytest.mark.parametrize("at", ["9", "-1", "seq:10000", "soon"])
async def test_fork_past_the_end_or_malformed_is_refused_before_anything_is_recorded(
    workflow: Path, store: TraceStore, at: str
) -> None:
    parent = await run_workflow(workflow, store=store)
    with pytest.raises(TraceError, match=r"past the end|neither a step number"):
        await fork_run(store, parent.run_id, at=at, n=2)
    assert [info.run_id for info in store.list_runs()] == [parent.run_id]


async def test_fork_of_a_run_with_branches_is_refused(workflow: Path, store: TraceStore) -> None:
    parent = await run_workflow(workflow, store=store)
    started = store.load_trace(parent.run_id).events[0].data
    recorder = store.new_run(workflow="forkable")  # a run of the same workflow whose tool call ran in a branch
    recorder.emit(EventType.RUN_STARTED, data=dict(started))  # type: ignore[arg-type]
    node = recorder.emit(EventType.NODE_STARTED, node="work", data={"visit": 1, "attempt": 1, "branch": "work#0"})
    call = recorder.emit(
        EventType.TOOL_CALL,
        node="work",
        parent=node.seq,
        data={"tool": "shell", "call_id": "c1", "arguments": "{}", "branch": "work#0"},
    )
    recorder.emit(
        EventType.TOOL_RESULT,
        node="work",
        parent=call.seq,
        data={"tool": "shell", "call_id": "c1", "ok": True, "content": "", "result": None, "error": None},
    )
    recorder.finish("succeeded", final_state={}, error=None, duration_s=0.1)
    recorder.close()
    with pytest.raises(TraceError, match=r"branches .* not supported yet"):
        await fork_run(store, recorder.run_id, at=1)


def test_first_error_names_the_turn_before_the_failing_call() -> None:
    def event(seq: int, type: EventType, parent: int | None = None, **data: object) -> Event:
        return Event(run_id="r", seq=seq, ts="2026-01-01T00:00:00Z", type=type, parent=parent, data=data)

    events = [
        event(0, EventType.RUN_STARTED),
        event(1, EventType.MODEL_REQUEST),
        event(2, EventType.MODEL_RESPONSE, 1),  # step 1
        event(3, EventType.TOOL_CALL, 2),
        event(4, EventType.TOOL_RESULT, 3, ok=True),  # step 2
        event(5, EventType.MODEL_REQUEST),
        event(6, EventType.MODEL_RESPONSE, 5),  # step 3: asks for the failing call
        event(7, EventType.TOOL_CALL, 6),
        event(8, EventType.TOOL_RESULT, 7, ok=False),  # step 4 fails
    ]
    assert first_error_step(events) == 2  # the prefix stops before the turn that asked for it
    assert first_error_step(events[:5]) is None
    scored = [*events[:5], event(5, EventType.REWARD, 4, on="step", value=-0.5, target_seq=4)]
    assert first_error_step(scored) == 0  # the call of step 2 was scored negative; turn 1 asked for it


async def test_a_docker_run_is_forked_from_one_rebuilt_container(workflow: Path, store: TraceStore) -> None:
    from tests.sandboxes._docker_support import containers_of, require_docker

    require_docker()
    parent = await run_workflow(workflow, store=store, sandbox="docker")
    assert parent.succeeded and parent.isolation["backend"] == "docker", parent.error
    fork = Fork.open(store, parent.run_id, at=4)
    results = await fork.continue_runs(2)
    # the prefix's container was rebuilt once (2 tool calls) and each continuation worked in a fork of it
    assert (fork.sandboxes.rebuilt.tool_calls, fork.sandboxes.forks) == (2, 2)
    for result in results:
        assert result.succeeded and result.final_state["answer"] == "onetwo", result.error
        started = store.load_trace(result.run_id).events[0].data
        assert started["sandbox"]["backend"] == "docker"
        assert started["fork_sandbox"] == {"forked": True, "rebuilt_tool_calls": 2, "differed": []}
    assert containers_of(os.getpid()) == []  # the rebuilt container and the forks are gone
