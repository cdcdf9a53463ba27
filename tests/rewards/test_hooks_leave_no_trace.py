"""Graders must not touch what they grade: a hook's commands run on a copy of the workdir, and each is recorded.

The shipped example is run with its rewards replaced by one built-in hook at a time (scoring every step, and for
``tests_delta`` also before the first step) and with no rewards at all: the agent's observations, every tool
result, must be the same bytes in every run (test runners' timings masked).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentflow.errors import MissingExtraError, SandboxError
from agentflow.rewards import reward_hooks
from agentflow.rewards._lsp import SERVERS
from agentflow.rewards._sandbox import HookSandbox
from agentflow.runtime import run_workflow
from agentflow.sandboxes import create_sandbox
from agentflow.traces import Event, EventType, TraceStore
from tests.sandboxes._docker_support import require_docker
from tests.support.require import require

_TIMING = re.compile(r"\bin \d+(?:\.\d+)?s\b")

# Every built-in hook that uses the sandbox in a live run, with the options that make it execute or read.
SANDBOX_HOOKS: dict[str, dict[str, Any]] = {
    "tests_delta": {},
    # a command that writes bytecode, a cache and a file of its own into its working folder
    "verify_command": {"command": "python3 -m pytest -q tests; python3 -m compileall -q calc; touch graded-here"},
    "reexecute": {},
    "outcome": {"mode": "tests"},
    "lsp_diagnostics": {"server": "basedpyright"},
    # grades a file of the workdir with "tests" taken from the state (here the task's text: the program fails to
    # compile, which is still one grading in a fresh sandbox per step)
    "humaneval": {"file": "calc/stats.py", "test_key": "task", "entry_point_key": "task"},
}


# The other built-in hooks work from the trace's events alone (and a judge model); they never see the sandbox.
EVENTS_ONLY_HOOKS = {"exit_code", "tests_passed", "constant", "noop", "llm_judge", "checklist"}

# Hooks that use the sandbox only once the agent is done (`on: run`, in a benchmark task's own container): what they
# write there (harbor_verifier: /tests, /logs/verifier) no step of the agent can see; tests/bench/test_harbor.py.
AFTER_THE_AGENT_HOOKS = {"harbor_verifier"}


def test_every_built_in_hook_is_classified_here() -> None:
    # a new built-in hook is added to one of the two sets, and to the observation test if it uses the sandbox
    built_in = {name for name in reward_hooks.names() if reward_hooks.get(name).__module__.startswith("agentflow.")}
    # other tests register hooks of their own
    assert built_in == set(SANDBOX_HOOKS) | EVENTS_ONLY_HOOKS | AFTER_THE_AGENT_HOOKS


def _installed(server: str) -> bool:
    try:
        SERVERS[server].resolve()
    except MissingExtraError:
        return False
    return True


def _observations(events: list[Event]) -> list[tuple[str, str, Any]]:
    results = [e for e in events if e.type is EventType.TOOL_RESULT]
    return [
        (str(e.data["tool"]), _TIMING.sub("in <t>s", str(e.data["content"])), _masked(e.data["result"]))
        for e in results
    ]


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return _TIMING.sub("in <t>s", value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def _variant(examples: Path, name: str, rewards: list[dict[str, Any]]) -> Path:
    spec = yaml.safe_load((examples / "fix_failing_test.yaml").read_text())
    spec["rewards"] = rewards
    path = examples / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def _run(
    examples: Path, store: TraceStore, name: str, rewards: list[dict[str, Any]], backend: str | None = None
) -> list[Event]:
    result = await run_workflow(_variant(examples, name, rewards), store=store, sandbox=backend)
    assert result.status == "succeeded", result.error
    return store.load_trace(result.run_id).events


@pytest.mark.parametrize(
    ("hook", "backend"),
    [*((hook, "local") for hook in sorted(SANDBOX_HOOKS)), ("tests_delta", "docker"), ("verify_command", "docker")],
)
async def test_the_agent_sees_the_same_bytes_with_and_without_each_built_in_hook(
    hook: str, backend: str, examples: Path, tmp_path: Path
) -> None:
    if hook == "lsp_diagnostics":
        require(_installed("basedpyright"), "basedpyright is not installed (pip install 'agentflow[lsp]')")
    if backend == "docker":
        require_docker()
    store = TraceStore(tmp_path / ".agentflow")
    baseline = await _run(examples, store, "no_rewards", [], backend)
    rewards = [{"hook": hook, "on": "step", "options": SANDBOX_HOOKS[hook]}]
    graded = await _run(examples, store, hook, rewards, backend)

    errors = [e.data["message"] for e in graded if e.type is EventType.ERROR]
    assert not errors, errors
    assert any(e.type is EventType.REWARD and e.data["hook"] == hook for e in graded)
    assert _observations(graded) == _observations(baseline)
    first_listing = next(e for e in graded if e.type is EventType.TOOL_RESULT and e.data["tool"] == "list_files")
    assert "__pycache__" not in first_listing.data["content"]

    # every command in the trace names who ran it; the hook's own are there, run on a copy of the workdir
    execs = [e for e in graded if e.type is EventType.SANDBOX_EXEC]
    assert all(str(e.data.get("by", "")).startswith(("tool:", "hook:")) for e in execs), execs
    by_hook = [e for e in execs if e.data["by"] == f"hook:{hook}"]
    if hook == "lsp_diagnostics":
        assert not by_hook  # it only reads the files
    else:
        assert by_hook
        assert all(e.data.get("workdir") == "copy" or e.data.get("sandbox") == "fresh" for e in by_hook)


async def test_tests_delta_runs_the_tests_before_the_first_step_on_a_copy_and_records_it(
    examples: Path, tmp_path: Path
) -> None:
    store = TraceStore(tmp_path / ".agentflow")
    events = await _run(examples, store, "delta", [{"hook": "tests_delta", "on": "node", "nodes": ["test"]}])
    first_node = next(e.seq for e in events if e.type is EventType.NODE_STARTED)
    before = [e for e in events if e.seq < first_node and e.type is EventType.SANDBOX_EXEC]
    assert before and all(e.data["by"] == "hook:tests_delta" and e.data["workdir"] == "copy" for e in before)
    assert any("pytest" in e.data["cmd"] or "unittest" in e.data["cmd"] for e in before)
    deltas = [e for e in events if e.type is EventType.REWARD and e.data["hook"] == "tests_delta"]
    assert deltas and deltas[-1].data["components"]["passed"] > deltas[0].data["components"]["passed_before"]


@pytest.mark.parametrize("backend", ["local", "docker"])
async def test_a_hook_sandbox_runs_commands_on_a_copy_refuses_writes_and_reports_each_command(backend: str) -> None:
    if backend == "docker":
        require_docker()
    reported: list[dict[str, Any]] = []
    async with await create_sandbox(backend) as box:
        await box.write_file("pkg/mod.py", "VALUE = 1\n")
        view = HookSandbox(box, by="hook:probe", report=reported.append, scratch_prefix="probe")
        result = await view.exec(
            ["sh", "-c", "python3 -c 'import mod' && touch made-by-hook && cat mod.py && pwd"], cwd="pkg"
        )
        assert result.exit_code == 0, result.stderr
        assert "VALUE = 1" in result.stdout
        assert await box.list_files(".") == ["pkg/mod.py"]  # no __pycache__, no made-by-hook
        assert await view.read_file("pkg/mod.py") == b"VALUE = 1\n"
        with pytest.raises(PermissionError, match="hook:probe"):
            await view.write_file("pkg/mod.py", "VALUE = 2\n")
        assert await box.read_file("pkg/mod.py") == b"VALUE = 1\n"
        # the hook's own command is recorded (not the wrapper around it), then the exec that removes the copy
        assert [(r["by"], r["workdir"], r.get("cwd"), r["exit_code"]) for r in reported] == [
            ("hook:probe", "copy", "pkg", 0),
            ("hook:probe", "copy", None, 0),
        ]
        assert reported[0]["cmd"][:2] == ["sh", "-c"] and "python3 -c" in reported[0]["cmd"][2]
        assert "rm -rf" in reported[1]["cmd"][2]
        assert "agentflow-probe-1" in result.stdout

        timed_out = await view.exec(["sleep", "5"], timeout=0.5)
        assert timed_out.timed_out
        leftover = await box.exec(["sh", "-c", 'ls "${TMPDIR:-/tmp}"'])
        assert "agentflow-probe" not in leftover.stdout  # the copy a killed command left is removed
        assert [r["by"] for r in reported] == ["hook:probe"] * 4

        # the exit code is the command's own, as a direct exec on this backend reports it: a signal's too
        for command in (["sh", "-c", "kill -KILL $$"], ["sh", "-c", "exit 137"], ["sh", "-c", "exit 3"]):
            direct, through_hook = await box.exec(command), await view.exec(command)
            assert through_hook.exit_code == direct.exit_code, command
        assert direct.exit_code == 3


async def test_a_workdir_the_hook_cannot_copy_fails_the_hook_instead_of_running_on_the_agents_files() -> None:
    reported: list[dict[str, Any]] = []
    async with await create_sandbox("local") as box:
        made = await box.exec(["sh", "-c", "echo secret > locked.txt && chmod 000 locked.txt"])
        assert made.exit_code == 0, made.stderr
        view = HookSandbox(box, by="hook:probe", report=reported.append, scratch_prefix="locked")
        with pytest.raises(SandboxError, match="hook:probe could not copy the workdir"):
            await view.exec(["touch", "ran-anyway"])
        assert await box.list_files(".") == ["locked.txt"]
        assert [r["exit_code"] for r in reported] == [125, 0]  # the attempt (and the clean-up) in the trace too
