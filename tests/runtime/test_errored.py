"""Errored is not failed: an outage of the model API, a dead sandbox or a bug ends a run `errored`, exit code 3,
and scores nothing as the agent's failure; each model retry is in the trace, and a replay still matches."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentflow.errors import (
    ConfigError,
    LimitExceeded,
    ModelAPIError,
    ModelContextExceeded,
    ModelScriptExhausted,
    NodeFailed,
    NodeTimeout,
    PathOutsideWorkdirError,
    ReplayDivergence,
    RunError,
    SandboxError,
    SandboxUnavailableError,
    TraceError,
)
from agentflow.grading import grade_runs
from agentflow.models import Model, ModelResponse, ModelSettings, model_provider
from agentflow.rerun import replay_run
from agentflow.routing import ExpressionError
from agentflow.runtime import run_workflow
from agentflow.runtime._run import classify
from agentflow.spec._templating import TemplateError
from agentflow.traces import EventType, TraceStore, content_digest, summarize
from agentflow.traces._events import Event
from tests.runtime.conftest import Workspace
from tests.support.openai_server import OpenAIServer, Reply
from tests.support.require import require

AGENTFLOW = str(Path(sys.executable).with_name("agentflow"))


def scored_workflow(model: dict[str, Any], *, sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    """An agent that lists files and answers, with a run outcome and step rewards aggregated against it."""
    return {
        "name": "scored",
        "state": {"answer": {"type": "str", "default": ""}},
        "models": {"m": model},
        "tools": ["list_files", "shell"],
        "sandbox": sandbox or {"backend": "local"},
        "start": "work",
        "nodes": {
            "work": {
                "kind": "agent",
                "model": "m",
                "prompt": "do it",
                "tools": ["list_files", "shell"],
                "output": {"answer": "answer"},
            }
        },
        "end": ["work"],
        "rewards": [
            {"hook": "outcome", "on": "run", "options": {"mode": "contains", "expected": "fixed"}},
            {"hook": "exit_code", "on": "step", "aggregate": ["mean", "grounded", "hybrid"], "outcome": "outcome"},
        ],
    }


def run_rewards(events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type is EventType.REWARD and e.data["on"] == "run"]


def assert_not_scored(events: list[Event]) -> None:
    """No run-level verdict at all: each run-level hook and aggregate says "not scored: errored"."""
    rewards = run_rewards(events)
    assert {(d["hook"], d["not_scored"], d["value"], d["label"]) for d in rewards} == {
        ("outcome", "errored", None, None),
        ("exit_code", "errored", None, None),
    }
    assert not any(d.get("aggregate") for d in rewards)
    summary = summarize(events)
    assert summary.status == "errored"
    assert summary.not_scored == {"outcome": "errored", "exit_code": "errored"}
    assert summary.rewards_by_hook["outcome"].count == 0  # no reward, not even an abstention
    assert summary.rewards_by_hook["exit_code"].aggregate is None


@pytest.fixture
def server_env(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> OpenAIServer:
    for key, value in openai_server.env.items():
        monkeypatch.setenv(key, value)
    return openai_server


async def test_a_429_is_retried_after_its_retry_after_and_recorded_and_a_tape_replay_matches(
    ws: Workspace, server_env: OpenAIServer
) -> None:
    server_env.queue(
        Reply.tool_calls(("list_files", "{}")),
        Reply.error(429, "slow down", retry_after_s=None, headers={"retry-after": "1"}),
        Reply.text("fixed it"),
    )
    path = ws.workflow(scored_workflow({"model": "openai:test-model"}))
    result = await run_workflow(path, store=ws.store)
    assert result.status == "succeeded", result.error
    events = ws.store.load_trace(result.run_id).events
    responses = [e for e in events if e.type is EventType.MODEL_RESPONSE]
    assert "retries" not in responses[0].data  # a call without retries reads as before
    [retry] = responses[1].data["retries"]
    assert (retry["attempt"], retry["status_code"], retry["retry_after_s"], retry["wait_s"]) == (1, 429, 1.0, 1.0)
    assert summarize(events).model_retries == 1
    outcome = next(d for d in run_rewards(events) if d["hook"] == "outcome")
    assert (outcome["value"], outcome.get("not_scored")) == (1.0, None)  # a retried run is scored as usual

    requests_before = len(server_env.requests)
    report = await replay_run(ws.store, result.run_id, mode="tape")
    assert report.identical, report.divergence and report.divergence.diff
    assert len(server_env.requests) == requests_before  # served from the tape: no call, so no retry and no wait
    replayed = [e for e in ws.store.load_trace(report.replay_run_id).events if e.type is EventType.MODEL_RESPONSE]
    assert replayed[1].data["retries"] == [retry]


async def test_a_changed_retry_policy_still_replays_the_model_from_the_tape(ws: Workspace) -> None:
    script = [{"tool_calls": [{"name": "list_files", "arguments": {}}]}, {"content": "fixed"}]
    path = ws.workflow(scored_workflow({"model": "scripted:script.yaml"}), script)
    original = await run_workflow(path, store=ws.store)
    ws.workflow(scored_workflow({"model": "scripted:script.yaml", "max_retries": 1, "max_retry_s": 9}))
    report = await replay_run(ws.store, original.run_id, mode="tape")
    assert report.template_changed and report.divergence is not None and report.divergence.index == 0
    assert report.status == "succeeded"  # every request matched its recorded response: retries are not content
    recorded = ws.store.load_trace(original.run_id).events
    replayed = ws.store.load_trace(report.replay_run_id).events
    assert [content_digest(e) for e in recorded[1:]] == [content_digest(e) for e in replayed[1:]]


async def test_two_server_errors_then_success(ws: Workspace, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.error(500, "upstream exploded"), Reply.error(502, "bad gateway"), Reply.text("fixed"))
    result = await run_workflow(ws.workflow(scored_workflow({"model": "openai:test-model"})), store=ws.store)
    assert result.status == "succeeded", result.error
    events = ws.store.load_trace(result.run_id).events
    [response] = [e for e in events if e.type is EventType.MODEL_RESPONSE]
    assert [(r["attempt"], r["status_code"]) for r in response.data["retries"]] == [(1, 500), (2, 502)]


def test_an_outage_errors_the_run_exit_3_scores_nothing_and_runs_finds_it(
    ws: Workspace, server_env: OpenAIServer
) -> None:
    server_env.always(Reply.error(500, "the provider is down", retry_after_s=0.1))
    model = {"model": "openai:test-model", "max_retry_s": 0.5}
    path = ws.workflow(scored_workflow(model))
    env = {**os.environ, "COLUMNS": "200"}

    def agentflow(*args: str) -> subprocess.CompletedProcess[str]:
        command = [AGENTFLOW, *args, "--store", str(ws.root / ".agentflow")]
        return subprocess.run(command, cwd=ws.root, capture_output=True, text=True, timeout=120, env=env, check=False)

    ran = agentflow("run", str(path), "--json")
    assert ran.returncode == 3, ran.stderr
    payload = json.loads(ran.stdout)
    assert (payload["status"], payload["succeeded"]) == ("errored", False)
    assert "HTTP 500" in payload["error"] and "max_retry_s 0.5 reached" in payload["error"]
    assert payload["summary"]["not_scored"] == {"outcome": "errored", "exit_code": "errored"}
    events = TraceStore(ws.root / ".agentflow").load_trace(payload["run_id"]).events
    assert_not_scored(events)
    [error] = [e for e in events if e.type is EventType.ERROR]
    assert error.data["kind"] == "ModelAPIError" and error.data["status_code"] == 500
    assert len(error.data["retries"]) >= 1
    assert len(server_env.requests) == len(error.data["retries"]) + 1

    text = agentflow("run", str(path))
    assert text.returncode == 3
    assert "status errored" in text.stdout
    assert "errored: the infrastructure failed, not the agent; not scored: outcome, exit_code" in text.stdout

    listed = agentflow("runs", "--status", "errored", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["runs"]) == 2
    failed = agentflow("runs", "--status", "failed", "--json")
    assert json.loads(failed.stdout)["runs"] == []


def test_a_missing_api_key_is_said_before_the_run_in_one_line_and_records_nothing(ws: Workspace) -> None:
    path = ws.workflow(scored_workflow({"model": "openai:test-model"}))
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    store = ws.root / ".agentflow"
    ran = subprocess.run(
        [AGENTFLOW, "run", str(path), "--store", str(store)],
        cwd=ws.root,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert ran.returncode == 2, ran.stderr  # the user's configuration, not an outage: exit 2, not 3
    [line] = ran.stderr.strip().splitlines()
    assert "OPENAI_API_KEY is not set" in line and "(fix: export OPENAI_API_KEY=" in line
    assert TraceStore(store).list_runs() == []  # no errored run poisons the store


@pytest.mark.parametrize("limit", ["node", "run"])
async def test_a_timeout_that_cuts_a_call_retrying_an_outage_errors_the_run(
    ws: Workspace, server_env: OpenAIServer, limit: str
) -> None:
    import openai  # noqa: F401 - loaded before the clock starts: the first attempt must fail well within the timeout

    server_env.always(Reply.error(503, "overloaded", retry_after_s=0.2))
    spec = scored_workflow({"model": "openai:test-model", "max_retries": 1000})  # retries go on past the timeout
    if limit == "node":
        spec["nodes"]["work"]["timeout_s"] = 3.0
    else:
        spec["limits"] = {"timeout_s": 3.0}
    result = await run_workflow(ws.workflow(spec), store=ws.store)
    assert result.status == "errored", result.error
    assert result.error is not None and "while a model call retried a failing provider" in result.error
    events = ws.store.load_trace(result.run_id).events
    [error] = [e for e in events if e.type is EventType.ERROR]
    assert error.data["kind"] == "ModelAPIError" and error.data["status_code"] == 503
    assert len(error.data["retries"]) >= 1
    assert_not_scored(events)


async def test_a_timeout_of_a_slow_first_answer_stays_the_agents_limit(ws: Workspace, server_env: OpenAIServer) -> None:
    server_env.queue(Reply.text("fixed, slowly", delay_s=1.5))  # no failure: the time went into the answer
    spec = scored_workflow({"model": "openai:test-model"})
    spec["nodes"]["work"]["timeout_s"] = 0.5
    result = await run_workflow(ws.workflow(spec), store=ws.store)
    assert result.status == "limit_exceeded", result.error
    assert result.limit is not None and result.limit["name"] == "timeout_s of node 'work'"


@pytest.mark.parametrize(
    "reply",
    [
        Reply.error(400, "too many tokens", error_type="invalid_request_error", code="context_length_exceeded"),
        Reply.error(400, "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens"),
    ],
    ids=["openai-code", "vllm-message"],
)
async def test_a_conversation_past_the_context_window_is_the_agents_limit_and_scored(
    ws: Workspace, server_env: OpenAIServer, reply: Reply
) -> None:
    server_env.queue(Reply.tool_calls(("list_files", "{}")), reply)
    result = await run_workflow(ws.workflow(scored_workflow({"model": "openai:test-model"})), store=ws.store)
    assert result.status == "limit_exceeded", result.error
    assert result.limit == {"name": "context_window", "value": None, "observed": None}
    events = ws.store.load_trace(result.run_id).events
    assert [e.data["kind"] for e in events if e.type is EventType.ERROR] == ["ModelContextExceeded"]
    outcome = next(d for d in run_rewards(events) if d["hook"] == "outcome")
    assert (outcome["value"], outcome.get("not_scored")) == (0.0, None)  # scored: the agent ran out of room


async def test_a_wrong_answer_is_still_failed_by_its_outcome(ws: Workspace, server_env: OpenAIServer) -> None:
    """The other side of the line: the agent's own bad answer is scored 0 / -1 as before."""
    server_env.queue(Reply.text("I could not do it"))
    result = await run_workflow(ws.workflow(scored_workflow({"model": "openai:test-model"})), store=ws.store)
    assert result.status == "succeeded"
    outcome = next(d for d in run_rewards(ws.store.load_trace(result.run_id).events) if d["hook"] == "outcome")
    assert (outcome["value"], outcome["label"]) == (0.0, -1)


class _BrokenModel(Model):
    provider = "test_broken"

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], settings: ModelSettings
    ) -> ModelResponse:
        raise KeyError("choices")  # a bug in a provider: not the agent's doing


@model_provider("test_broken")
def _broken_provider(name: str, *, base_dir: Path | None) -> Model:
    return _BrokenModel(name)


async def test_a_bug_errors_the_run_as_an_internal_error_and_offline_grading_does_not_score_it(
    ws: Workspace,
) -> None:
    result = await run_workflow(ws.workflow(scored_workflow({"model": "test_broken:x"})), store=ws.store)
    assert result.status == "errored"
    assert result.error is not None and result.error.startswith("internal error: node 'work' failed: KeyError")
    assert_not_scored(ws.store.load_trace(result.run_id).events)

    script = [{"tool_calls": [{"name": "list_files", "arguments": {}}]}, {"content": "fixed"}]
    scored = await run_workflow(ws.workflow(scored_workflow({"model": "scripted:script.yaml"}), script), store=ws.store)
    assert scored.status == "succeeded"
    graded = await grade_runs(ws.store, [result.run_id, scored.run_id], hooks=["exit_code:run"])
    [not_scored] = graded.rewards[result.run_id]
    assert (not_scored.value, not_scored.label, not_scored.components) == (None, None, {"not_scored": "errored"})
    [verdict] = graded.rewards[scored.run_id]
    assert verdict.value is not None


GONE_PLUGIN = """
from agentflow.tools import ToolContext


async def run_in_a_vanished_sandbox(ctx: ToolContext) -> str:
    \"\"\"Run a command after the sandbox went away under the run (as a killed container or launcher would).\"\"\"
    await ctx.sandbox.close()
    result = await ctx.sandbox.exec(["true"])
    return str(result.exit_code)
"""


async def test_a_sandbox_gone_under_a_tool_errors_the_run_instead_of_answering_the_model(ws: Workspace) -> None:
    ws.file("plugins/gone.py", GONE_PLUGIN)
    spec = scored_workflow({"model": "scripted:script.yaml"})
    spec["tools"] = ["plugins/gone.py:run_in_a_vanished_sandbox"]
    spec["nodes"]["work"]["tools"] = ["run_in_a_vanished_sandbox"]
    script = [{"tool_calls": [{"name": "run_in_a_vanished_sandbox", "arguments": {}}]}, {"content": "fixed"}]
    result = await run_workflow(ws.workflow(spec, script), store=ws.store)
    assert result.status == "errored", result.error
    assert result.error is not None and "SandboxError: this local sandbox is closed" in result.error
    events = ws.store.load_trace(result.run_id).events
    assert not any(e.type is EventType.TOOL_RESULT for e in events)
    assert_not_scored(events)


@pytest.fixture
def docker_image() -> str:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available

    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    return DEFAULT_IMAGE


def _container_running(label: str, command: str) -> str | None:
    """The id of the container with this workflow label once ``command`` runs in it."""
    listed = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=agentflow.workflow={label}"],
        capture_output=True,
        text=True,
        check=False,
    )
    for container in listed.stdout.split():
        top = subprocess.run(["docker", "top", container], capture_output=True, text=True, check=False)
        if command in top.stdout:
            return container
    return None


async def test_a_container_killed_mid_run_errors_the_run(ws: Workspace, docker_image: str) -> None:
    label = f"errored-{uuid.uuid4().hex[:8]}"
    spec = {**scored_workflow({"model": "scripted:script.yaml"}, sandbox={"backend": "docker"}), "name": label}
    script = [
        {"tool_calls": [{"name": "shell", "arguments": {"command": "sleep 47"}}]},
        {"content": "fixed"},  # without the classification, the agent would go on and answer after the dead tool
    ]
    run = asyncio.create_task(run_workflow(ws.workflow(spec, script), store=ws.store))
    deadline = time.monotonic() + 60
    container = None
    while container is None and not run.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        container = await asyncio.to_thread(_container_running, label, "sleep 47")
    assert container is not None, "the sandbox container never ran the command"
    await asyncio.to_thread(subprocess.run, ["docker", "kill", container], capture_output=True, check=True)
    result = await asyncio.wait_for(run, 60)
    assert result.status == "errored", result.error
    assert result.error is not None and "SandboxError" in result.error
    events = ws.store.load_trace(result.run_id).events
    assert not any(e.type is EventType.TOOL_RESULT for e in events)  # the dead sandbox is not the tool's answer
    assert_not_scored(events)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ModelAPIError("HTTP 500 after 6 retries"), "errored"),
        (ModelContextExceeded("HTTP 400: maximum context length is 8192 tokens"), "limit_exceeded"),
        (SandboxUnavailableError("no Docker engine"), "errored"),
        (SandboxError("the exec server's connection closed"), "errored"),
        (TraceError("cannot write the trace: disk full"), "errored"),
        (OSError(28, "No space left on device"), "errored"),
        (KeyError("a bug"), "errored"),
        (ConfigError("the model 'openai:gpt-4o' needs an API key and OPENAI_API_KEY is not set"), "errored"),
        (ModelScriptExhausted("the script has no response 3"), "failed"),
        (ReplayDivergence("not on the tape"), "failed"),
        (PathOutsideWorkdirError("/etc/passwd"), "failed"),
        (ExpressionError("json.answer: no such key"), "failed"),
        (TemplateError("state has no value at 'plan.steps'"), "failed"),
        (RunError("no way out of node 'check' holds"), "failed"),
        (LimitExceeded("max_turns of agent 'work'", 10, 11), "limit_exceeded"),
        (NodeTimeout("node 'work' ran past its timeout of 1s"), "limit_exceeded"),
    ],
)
def test_classification_reads_through_nested_node_failures(error: Exception, status: str) -> None:
    assert classify(error)[0] == status
    nested = NodeFailed("parent", NodeFailed("child", error))  # a subgraph node around the failing node
    assert classify(nested)[0] == status
