"""`agentflow fork RUN_ID --at STEP -n K` through the real entry point, the model a real SDK on a loopback server.

The server sees every model call, so the test can tell that the prefix called no model and each continuation
called it only for its own steps.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentflow.traces import EventType, open_store
from tests.cli.test_cli import agentflow, assert_one_line_error
from tests.support.event_data import assert_data_declared
from tests.support.openai_server import OpenAIServer, Reply, openai_server  # noqa: F401 - the fixture

WORKFLOW = """\
name: forked
state:
  answer: {type: str, default: ""}
  seen: {type: str, default: ""}
models:
  m: {model: "openai:test-model"}
tools: [write_file, read_file, shell]
start: work
nodes:
  work:
    kind: agent
    model: m
    prompt: Write notes.txt, then answer with what it says.
    tools: [write_file, read_file, shell]
    max_turns: 5
    output: {answer: answer}
  check: {kind: tool, tool: shell, args: {command: cat notes.txt}, output: {seen: result.stdout}}
edges:
  - {from: work, to: check}
end: [check]
"""


def test_fork_serves_the_prefix_without_a_model_call_and_continues_live(
    tmp_path: Path,
    openai_server: OpenAIServer,  # noqa: F811 - the fixture imported above
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = openai_server.env
    openai_server.queue(
        Reply.tool_calls(("write_file", '{"path": "notes.txt", "content": "seven"}')),
        Reply.tool_calls(("read_file", '{"path": "notes.txt"}')),
        Reply.text("7"),
    )
    ran = agentflow("run", "wf.yaml", "--json", "-q", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    parent = json.loads(ran.stdout)["run_id"]
    assert len(openai_server.requests) == 3

    # after step 4 (the read_file): each continuation's one live turn is the parent's third, sent as it was sent
    openai_server.queue(Reply.text("seven"), Reply.text("seven"))
    forked = agentflow("fork", parent, "--at", "4", "-n", "2", "--json", cwd=tmp_path, env=env)
    assert forked.returncode == 0, forked.stderr
    payload = json.loads(forked.stdout)
    assert payload["fork_step"] == 4 and payload["sandbox"]["rebuilt_tool_calls"] == 2
    assert len(openai_server.requests) == 3 + 2  # one live turn each, none for the prefix
    assert [r["messages"] for r in openai_server.requests[3:]] == [openai_server.requests[2]["messages"]] * 2

    store = open_store(str(tmp_path / ".agentflow"))
    try:
        continuations = payload["continuations"]
        assert [c["fork_index"] for c in continuations] == [0, 1]
        for item in continuations:
            # the live `check` read the file the prefix wrote: the sandbox was rebuilt to the fork point
            assert item["status"] == "succeeded" and item["final_state"] == {"answer": "seven", "seen": "seven"}
            trace = store.load_trace(item["run_id"])
            started = trace.events[0].data
            assert started["forked_from"]["run_id"] == parent and started["fork_group"] == payload["fork_group"]
            assert EventType.RUN_STARTED in assert_data_declared(trace.events)  # fork writes only declared keys
            execs = [e for e in trace.events if e.type is EventType.SANDBOX_EXEC]
            assert [e.data["by"] for e in execs] == ["tool:shell"]  # the prefix's file tools ran no command here

            shown = agentflow("show", item["run_id"], cwd=tmp_path)
            assert shown.returncode == 0, shown.stderr
            replayed = agentflow("replay", item["run_id"], "--json", cwd=tmp_path, env=env)
            assert replayed.returncode == 0, replayed.stderr
            assert json.loads(replayed.stdout)["identical"] is True
        assert len(openai_server.requests) == 5  # replays called no model

        text = agentflow("fork", parent[:15], "--at", "seq:0", cwd=tmp_path, env=env)  # no prefix: all live
        assert text.returncode == 3  # the queue is empty: the live run errors on the model...
        assert "after step 0 (seq 0)" in text.stdout  # ...and the fork says what it did
    finally:
        store.close()


def test_bad_forks_are_refused_with_one_line_and_record_nothing(
    tmp_path: Path,
    openai_server: OpenAIServer,  # noqa: F811 - the fixture imported above
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = openai_server.env
    openai_server.queue(Reply.text("7"))
    ran = agentflow("run", "wf.yaml", "--json", "-q", cwd=tmp_path, env=env)
    parent = json.loads(ran.stdout)["run_id"]
    store = open_store(str(tmp_path / ".agentflow"))
    try:
        line = assert_one_line_error(agentflow("fork", parent, "--at", "3", cwd=tmp_path, env=env), 3)
        assert "past the end" in line and "2 steps" in line
        line = assert_one_line_error(agentflow("fork", "nope", "--at", "1", cwd=tmp_path, env=env), 3)
        assert "no run 'nope'" in line
        line = assert_one_line_error(agentflow("fork", parent, "--at", "1", "-n", "0", cwd=tmp_path, env=env), 2)
        assert "at least one continuation" in line

        path = Path(store.load_trace(parent).path)
        path.write_text(path.read_text().replace('"7"', '"8"'))  # the answer changed behind the hashes' back
        line = assert_one_line_error(agentflow("fork", parent, "--at", "1", "--json", cwd=tmp_path, env=env), 3)
        assert "hash" in line
        assert [info.run_id for info in store.list_runs()] == [parent]  # nothing recorded by any of them
        assert len(openai_server.requests) == 1
    finally:
        store.close()
