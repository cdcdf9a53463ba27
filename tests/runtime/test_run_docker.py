"""`agentflow run` on the Docker backend: the workflow's image and the run's labels reach the container."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agentflow.runtime import run_workflow
from agentflow.traces import VOLATILE_TEXT, EventType, TraceStore
from tests.runtime.conftest import Workspace
from tests.support.require import require

PLUGIN = '''
from agentflow.tools import ToolContext


def containers_of_this_run(ctx: ToolContext) -> int:
    """How many containers carry this run's id label."""
    import docker

    client = docker.from_env()
    try:
        return len(client.containers.list(filters={"label": f"agentflow.run_id={ctx.run_id}"}))
    finally:
        client.close()
'''


def docker_workflow(image: str) -> dict[str, object]:
    return {
        "name": "in_docker",
        "state": {"labelled": {"type": "int", "default": 0}, "os": {"type": "str", "default": ""}},
        "sandbox": {"backend": "docker", "image": image},
        "tools": ["shell", "plugins/labels.py:containers_of_this_run"],
        "start": "look",
        "nodes": {
            "look": {
                "kind": "tool",
                "tool": "shell",
                "args": {"command": "cat /etc/os-release"},
                "output": {"os": "result.stdout"},
            },
            "count": {"kind": "tool", "tool": "containers_of_this_run", "output": {"labelled": "result"}},
        },
        "edges": [{"from": "look", "to": "count"}],
        "end": ["count"],
    }


@pytest.fixture
def docker_ready() -> str:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available

    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    return DEFAULT_IMAGE


async def test_run_uses_the_workflow_image_and_labels_its_container(ws: Workspace, docker_ready: str) -> None:
    ws.file("plugins/labels.py", PLUGIN)
    result = await run_workflow(ws.workflow(docker_workflow(docker_ready)), store=ws.store)
    assert result.status == "succeeded", result.error
    assert "debian" in result.final_state["os"].lower()
    assert result.final_state["labelled"] == 1
    started = ws.store.load_trace(result.run_id).events[0]
    assert started.type is EventType.RUN_STARTED
    assert started.data["sandbox"]["backend"] == "docker"


async def test_a_missing_workflow_image_names_the_build_command(ws: Workspace, docker_ready: str) -> None:
    ws.file("plugins/labels.py", PLUGIN)
    with pytest.raises(Exception, match="agentflow sandbox build") as caught:
        await run_workflow(ws.workflow(docker_workflow("agentflow/no-such-image:0")), store=ws.store)
    assert "no-such-image" in str(caught.value)
    run = ws.store.list_runs()[0]
    assert run.status == "errored"  # the sandbox could not start: nothing the agent did
    assert Path(ws.store.root).exists()


EXAMPLE = Path(__file__).parents[2] / "graphs" / "examples" / "fix_failing_test.yaml"
# Where a local sandbox in process mode keeps its workdir (namespaces mode and docker show /workspace).
_HOST_WORKDIR = re.compile(r"/tmp/agentflow-sandbox-[^/\s'\"]+/work")
# Test runners' timings, and the pytest version in bytecode file names (x.cpython-311-pytest-7.2.1.pyc)
_VOLATILE = re.compile("|".join([*VOLATILE_TEXT, r"pytest-\d+(?:\.\d+)+"]))


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        return _VOLATILE.sub("<volatile>", _HOST_WORKDIR.sub("/workspace", value))
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items() if key != "duration_s"}
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


def _tool_results(store: TraceStore, run_id: str) -> list[Any]:
    return [_comparable(e.data) for e in store.load_trace(run_id).events if e.type is EventType.TOOL_RESULT]


async def test_the_shipped_example_gives_the_same_tool_results_on_local_and_docker(
    ws: Workspace, docker_ready: str
) -> None:
    results: dict[str, list[Any]] = {}
    for backend in ("local", "docker"):
        result = await run_workflow(EXAMPLE, sandbox=backend, store=ws.store)
        assert result.status == "succeeded", (backend, result.error)
        results[backend] = _tool_results(ws.store, result.run_id)
    test_runs = [r["result"] for r in results["docker"] if r["tool"] == "run_tests"]
    assert test_runs, "the example ran no tests"
    assert {run["framework"] for run in test_runs} == {"pytest"}, "run_tests fell back to unittest in the image"
    assert len(results["docker"]) == len(results["local"])
    for local, docker in zip(results["local"], results["docker"], strict=True):
        assert docker == local
