"""`agentflow run --resumable` killed with SIGKILL mid-step, then `agentflow resume`: the same run finishes.

The model is the real OpenAI SDK talking to a loopback server (tests/support/openai_server.py), so the test sees
every model call the resumed run makes; the store is a folder, then the real PostgreSQL of this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentflow.traces import EventType, Store, open_store
from tests.cli.test_cli import AGENTFLOW, agentflow, assert_one_line_error
from tests.support.event_data import assert_data_declared
from tests.support.openai_server import OpenAIServer, Reply, openai_server  # noqa: F401 - the fixture
from tests.traces.conftest import postgres_url  # noqa: F401 - the fixture

WORKFLOW = """\
name: resumable
state:
  answer: {type: str, default: ""}
  seen: {type: str, default: ""}
models:
  m: {model: "openai:test-model"}
tools: [write_file, read_file, shell]
start: prepare
nodes:
  prepare: {kind: tool, tool: shell, args: {command: printf seven > notes.txt}}
  think:
    kind: agent
    model: m
    prompt: Read notes.txt and answer with the number it names.
    tools: [read_file]
    max_turns: 4
    output: {answer: answer}
  check: {kind: tool, tool: shell, args: {command: cat notes.txt}, output: {seen: result.stdout}}
edges:
  - {from: prepare, to: think}
  - {from: think, to: check}
end: [check]
"""


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _model_requests(store: Store) -> int:
    run_id = store.latest_run_id()
    if run_id is None:
        return 0
    return sum(event.type == "model_request" for event in store.load_trace(run_id).events)


@pytest.mark.parametrize("store_kind", ["folder", "postgresql"])
def test_sigkill_mid_step_then_resume_finishes_the_same_run(
    store_kind: str,
    tmp_path: Path,
    openai_server: OpenAIServer,  # noqa: F811 - the fixture imported above
    request: pytest.FixtureRequest,
) -> None:
    store_arg = str(tmp_path / "store") if store_kind == "folder" else request.getfixturevalue("postgres_url")
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = {**os.environ, **openai_server.env, "COLUMNS": "200"}
    # The first turn asks for the file; the second hangs, and the run is killed while it waits for it.
    openai_server.queue(Reply.tool_calls(("read_file", '{"path": "notes.txt"}')), Reply.text("too late", delay_s=20))
    process = subprocess.Popen(
        [AGENTFLOW, "run", "wf.yaml", "--resumable", "--store", store_arg, "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = open_store(store_arg)
    try:
        _wait_for(lambda: len(openai_server.requests) == 2 and _model_requests(store) == 2, "the second model call")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        run_id = store.latest_run_id()
        assert run_id is not None
        killed = store.load_trace(run_id)
        assert killed.problems == []  # readable and verified up to the last event the process wrote
        assert killed.events[-1].type == "model_request"
        assert [i.status for i in store.list_runs()] == ["interrupted"]

        openai_server.queue(Reply.text("7"))
        resumed = agentflow("resume", run_id[:15], "--store", store_arg, "--json", cwd=tmp_path, env=openai_server.env)
        assert resumed.returncode == 0, resumed.stderr
        # progress on stderr, as for `run`: a line per node finished after the checkpoint (prepare finished before)
        finished = [line.split()[1] for line in resumed.stderr.splitlines() if line.startswith("node ")]
        assert finished == ["think", "check"], resumed.stderr
        payload = json.loads(resumed.stdout)
        assert payload["run_id"] == run_id and payload["status"] == "succeeded"
        assert payload["final_state"] == {"answer": "7", "seen": "seven"}  # the sandbox held prepare's file
        # The answered turn came from the trace: one new call, the one the killed process never got an answer to.
        assert len(openai_server.requests) == 3
        assert openai_server.requests[2]["messages"] == openai_server.requests[1]["messages"]

        trace = store.load_trace(run_id)
        assert trace.problems == []
        assert [e.hash for e in trace.events[: len(killed.events)]] == [e.hash for e in killed.events]
        marker = trace.events[len(killed.events)]
        assert marker.type == "run_resumed" and marker.prev_hash == killed.events[-1].hash
        assert marker.data["checkpoint_step"] == 1  # prepare had completed
        assert marker.data["sandbox_restored"] == {"tool_calls": 1, "differed": []}
        # the rebuild's command is recorded right after the marker, naming who ran it, under the call it repeats
        rebuilt = trace.events[len(killed.events) + 1]
        assert (rebuilt.type, rebuilt.data["by"], rebuilt.data["cmd"][-1]) == (
            "sandbox_exec",
            "resume",
            "printf seven > notes.txt",
        )
        assert killed.events[rebuilt.parent].type == "tool_call"
        assert marker.data["model_responses_on_tape"] == 1
        assert trace.events[-1].type == "run_finished" and trace.events[-1].data["status"] == "succeeded"
        assert EventType.RUN_RESUMED in assert_data_declared(trace.events)  # resume writes only declared keys
        summary = trace.summary()
        assert summary.nodes_visited == ["prepare", "think", "check"]  # the re-run visit of think is the same visit
        assert [(i.run_id, i.status) for i in store.list_runs()] == [(run_id, "succeeded")]

        # it replays like a run that was never interrupted: the abandoned visit and run_resumed are left out
        replay = agentflow("replay", run_id, "--store", store_arg, "--json", cwd=tmp_path, env=openai_server.env)
        assert replay.returncode == 0, replay.stderr
        report = json.loads(replay.stdout)
        assert report["identical"] is True, report["divergence"]
        assert report["events_expected"] == len(trace.events) - 2 - marker.data["abandoned_events"]
        assert report["model_calls_served"] == 2 and len(openai_server.requests) == 3  # no new model call

        again = agentflow("resume", run_id, "--store", store_arg, cwd=tmp_path, env=openai_server.env)
        assert "already finished (succeeded)" in assert_one_line_error(again, 3)
    finally:
        if process.poll() is None:
            process.kill()
        store.close()


def test_a_run_started_without_resumable_cannot_be_resumed(
    tmp_path: Path,
    openai_server: OpenAIServer,  # noqa: F811 - the fixture imported above
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    openai_server.queue(Reply.text("later", delay_s=20))
    process = subprocess.Popen(
        [AGENTFLOW, "run", "wf.yaml"],
        cwd=tmp_path,
        env={**os.environ, **openai_server.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = open_store(str(tmp_path / ".agentflow"))
    try:
        _wait_for(lambda: len(openai_server.requests) == 1 and _model_requests(store) == 1, "the model call")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    run_id = store.latest_run_id()
    assert run_id is not None
    line = assert_one_line_error(agentflow("resume", run_id, cwd=tmp_path, env=openai_server.env), 3)
    assert "no LangGraph checkpoint" in line and "--resumable" in line
    assert store.load_trace(run_id).problems == []  # refusing changed nothing


def test_resume_of_an_unknown_run(tmp_path: Path) -> None:
    line = assert_one_line_error(agentflow("resume", "nope", cwd=tmp_path), 3)
    assert "no run 'nope'" in line
