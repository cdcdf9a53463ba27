"""Plugin tools run inside the run's sandbox, unless declared host: a probe plugin reports what it can see."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore
from tests.support.require import require

PROBE = '''
import json
import os
import sys


def probe(host_file: str) -> dict:
    """Report where this function runs: its cwd, the files it sees, its environment."""
    print("chatter on stdout must not break the reply")
    return {
        "cwd": os.getcwd(),
        "files": sorted(os.listdir(".")),
        "sees_api_key": "OPENAI_API_KEY" in os.environ,
        "reads_host_file": os.path.exists(host_file),
    }


def fails(reason: str) -> str:
    """Always raises."""
    raise LookupError(reason)
'''


def probe_workflow(root: Path, *, host: bool, backend: str = "local") -> Path:
    (root / "tools").mkdir(exist_ok=True)
    (root / "tools" / "probe.py").write_text(PROBE)
    (root / "workspace").mkdir(exist_ok=True)
    (root / "workspace" / "data.txt").write_text("in the sandbox\n")
    ref: Any = {"ref": "tools/probe.py:probe", "host": True} if host else "tools/probe.py:probe"
    spec = {
        "name": "probe",
        "state": {"seen": {"type": "dict", "default": {}}, "listing": {"type": "list", "default": []}},
        "sandbox": {"backend": backend, "files": {".": "workspace"}},
        "tools": [ref, "tools/probe.py:fails", "list_files"],
        "start": "look",
        "nodes": {
            "look": {
                "kind": "tool",
                "tool": "probe",
                "args": {"host_file": str(root / "tools" / "probe.py")},
                "output": {"seen": "result"},
            },
            "boom": {"kind": "tool", "tool": "fails", "args": {"reason": "as designed"}},
            "after": {"kind": "tool", "tool": "list_files", "output": {"listing": "result"}},
        },
        "edges": [{"from": "look", "to": "boom"}, {"from": "boom", "to": "after"}],
        "end": ["after"],
    }
    path = root / "probe.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def run_probe(tmp_path: Path, *, host: bool, backend: str = "local") -> tuple[dict[str, Any], list[Any]]:
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(probe_workflow(tmp_path, host=host, backend=backend), store=store)
    assert result.status == "succeeded", result.error
    return dict(result.final_state), list(store.load_trace(result.run_id).events)


def tool_events(events: list[Any], tool: str) -> tuple[Any, list[Any], Any]:
    call = next(e for e in events if e.type is EventType.TOOL_CALL and e.data["tool"] == tool)
    execs = [e for e in events if e.type is EventType.SANDBOX_EXEC and e.parent == call.seq]
    result = next(e for e in events if e.type is EventType.TOOL_RESULT and e.parent == call.seq)
    return call, execs, result


async def assert_probe_sees_the_sandbox(tmp_path: Path, backend: str, workdir: str | None) -> None:
    state, events = await run_probe(tmp_path, host=False, backend=backend)
    seen = state["seen"]
    assert seen["sees_api_key"] is False, "the sandbox's environment is scrubbed"
    assert seen["reads_host_file"] is False, "host files are out of the sandbox's reach"
    assert seen["files"] == ["data.txt"], "the plugin's module is not copied into the workdir"
    if workdir is not None:
        assert seen["cwd"] == workdir
    assert seen["cwd"] != os.getcwd()
    # The agent's later view of the workdir holds nothing the plugin calls left behind.
    assert state["listing"] == ["data.txt"]

    call, execs, result = tool_events(events, "probe")
    assert "host" not in call.data, "a sandboxed call is not marked host-executed"
    assert len(execs) == 1 and execs[0].data["cmd"][0] == "python3", "one sandbox exec per call, recorded"
    assert execs[0].data["cmd"][-1] == "tools/probe.py:probe"
    assert "chatter on stdout" in execs[0].data["stderr"], "the plugin's prints go to stderr, not into its reply"
    assert result.data["ok"] is True

    _, fail_execs, failed = tool_events(events, "fails")
    assert len(fail_execs) == 1
    assert failed.data["ok"] is False
    assert failed.data["error"] == "LookupError: as designed", "the sandbox's exception comes back to the model"
    assert "Traceback" in fail_execs[0].data["stderr"], "the trace keeps the plugin's traceback"


async def test_plugin_runs_in_the_local_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    from agentflow.sandboxes import create_sandbox

    box = await create_sandbox("local")
    workdir = box.workdir if box.mode == "namespaces" else None  # type: ignore[attr-defined]
    await box.close()
    await assert_probe_sees_the_sandbox(tmp_path, "local", workdir)


async def test_plugin_runs_in_the_docker_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentflow.sandboxes._docker import DEFAULT_IMAGE, docker_available, image_available

    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(image_available(DEFAULT_IMAGE), f"image {DEFAULT_IMAGE} missing: run `agentflow sandbox build python`")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    await assert_probe_sees_the_sandbox(tmp_path, "docker", "/workspace")


async def test_host_plugin_runs_in_the_agentflow_process_and_is_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    state, events = await run_probe(tmp_path, host=True)
    seen = state["seen"]
    assert seen["cwd"] == os.getcwd()
    assert seen["sees_api_key"] is True
    assert seen["reads_host_file"] is True
    call, execs, _ = tool_events(events, "probe")
    assert call.data["host"] is True, "the trace says the call ran on the host"
    assert execs == [], "a host call executes nothing in the sandbox"


LIMITED = '''
import time


def sleepy(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "awake"


def huge(size: int) -> str:
    """A result larger than the sandbox lets out."""
    return "x" * size


def shaped(name: str, tags: list[str]) -> dict:
    """A structured result."""
    return {"name": name.upper(), "tags": sorted(tags)}
'''


async def test_a_sandboxed_plugin_keeps_the_sandbox_limits_and_returns_json(tmp_path: Path) -> None:
    from agentflow.sandboxes import SandboxLimits, create_sandbox
    from agentflow.tools import ToolContext, resolve_tool

    (tmp_path / "limited.py").write_text(LIMITED)
    box = await create_sandbox("local", limits=SandboxLimits(exec_timeout_s=2, output_bytes=10_000))
    try:
        ctx = ToolContext(sandbox=box)
        slow = await resolve_tool("limited.py:sleepy", base_dir=tmp_path).invoke(ctx, {"seconds": 30})
        assert slow.ok is False and "ran past the sandbox's time limit" in slow.content
        big = await resolve_tool("limited.py:huge", base_dir=tmp_path).invoke(ctx, {"size": 50_000})
        assert big.ok is False and "limits.output_bytes" in big.content
        shaped = await resolve_tool("limited.py:shaped", base_dir=tmp_path).invoke(
            ctx, {"name": "a", "tags": ["y", "x"]}
        )
        assert shaped.ok and shaped.result == {"name": "A", "tags": ["x", "y"]}
        assert json.loads(shaped.content) == shaped.result
        refused = await resolve_tool("limited.py:shaped", base_dir=tmp_path).invoke(ctx, {"name": 3})
        assert refused.ok is False and "tags: Field required" in refused.content, "pydantic validates on the host"
    finally:
        await box.close()


def test_tool_decorator_in_a_plugin_file_needs_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentflow.errors import ToolLoadError
    from agentflow.tools import resolve_tool, tool_registry

    monkeypatch.setattr(tool_registry, "_entries", dict(tool_registry._entries))  # the plugin's @tool entries vanish

    (tmp_path / "decorated.py").write_text(
        "from agentflow.tools import tool\n\n"
        "@tool\ndef plain(x: int) -> int:\n    '''One.'''\n    return x\n\n"
        "@tool(host=True)\ndef local(x: int) -> int:\n    '''Two.'''\n    return x\n"
    )
    with pytest.raises(ToolLoadError, match="@tool"):
        resolve_tool("decorated.py:plain", base_dir=tmp_path)
    assert resolve_tool("decorated.py:local", base_dir=tmp_path).host is True


ORCHESTRATOR = '''
from agentflow.tools import ToolContext


async def orchestrate(ctx: ToolContext, word: str) -> str:
    """Drives the sandbox itself, past ctx.exec."""
    result = await ctx.sandbox.exec(["sh", "-c", 'echo "$1" > said.txt && cat said.txt', "sh", word])
    return result.stdout.strip()
'''


async def test_a_host_tool_driving_ctx_sandbox_directly_is_still_recorded(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "orchestrator.py").write_text(ORCHESTRATOR)
    spec = {
        "name": "orchestrated",
        "state": {"said": {"type": "str", "default": ""}},
        "tools": ["tools/orchestrator.py:orchestrate"],
        "start": "drive",
        "nodes": {
            "drive": {"kind": "tool", "tool": "orchestrate", "args": {"word": "hello"}, "output": {"said": "result"}}
        },
        "end": ["drive"],
    }
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    store = TraceStore(tmp_path / ".agentflow")
    result = await run_workflow(tmp_path / "wf.yaml", store=store)
    assert result.status == "succeeded", result.error
    assert result.final_state["said"] == "hello"
    call, execs, _ = tool_events(list(store.load_trace(result.run_id).events), "orchestrate")
    assert call.data["host"] is True
    assert [(e.data["by"], e.data["exit_code"], e.data["stdout"]) for e in execs] == [
        ("tool:orchestrate", 0, "hello\n")
    ]
