"""Tool-grounded hooks, outcome scorers and LLM judges on a real local sandbox and real model providers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from agentflow.errors import ConfigError, RewardHookError
from agentflow.rewards import reward_hooks
from agentflow.rewards._outcome import check_answer
from agentflow.sandboxes import Sandbox, create_sandbox
from agentflow.traces import EventType
from tests.rewards._support import StepEvents, step
from tests.support.openai_server import OpenAIServer, Reply, openai_server

__all__ = ["openai_server"]

CODE_BAD = "def double(x):\n    return x + 1\n"
CODE_GOOD = "def double(x):\n    return x * 2  # fixed (a new size: Python cache checks mtime and size)\n"
TESTS = (
    "import unittest\nfrom calc import double\n\n"
    "class T(unittest.TestCase):\n"
    "    def test_two(self):\n        self.assertEqual(double(2), 4)\n"
    "    def test_three(self):\n        self.assertEqual(double(3), 6)\n"
)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await create_sandbox("local")
    await box.write_file("calc/__init__.py", "from calc.ops import double\n")
    await box.write_file("calc/ops.py", CODE_BAD)
    await box.write_file("tests/__init__.py", "")
    await box.write_file("tests/test_ops.py", TESTS)
    yield box
    await box.close()


async def test_tests_delta_rewards_the_change_in_passing_tests(sandbox: Sandbox) -> None:
    hook = reward_hooks.get("tests_delta")(path="tests", framework="unittest")
    events = StepEvents()
    await hook.start_run(step([], sandbox, kind="run"))  # baseline: 1 of 2 passes (double(2) == 2 + 1? no: 3)
    await sandbox.write_file("calc/ops.py", CODE_GOOD)
    reward = await hook.score(step(events.tool("write_file", {"path": "calc/ops.py"}), sandbox))
    assert reward is not None
    assert reward.components["passed_before"] == 0 and reward.components["passed"] == 2
    assert reward.value == 1.0 and reward.label == 1
    await sandbox.write_file("calc/ops.py", "def double(x):\n    return 4\n")
    worse = await hook.score(step(events.tool("write_file", {"path": "calc/ops.py"}), sandbox))
    assert worse is not None and worse.label == -1 and worse.components["delta"] == -1
    # offline: a step without a run_tests result is not scored, one with it is
    assert await hook.score(step(events.tool("read_file", {"path": "x"}), None)) is None
    report = {"tests_run": 2, "tests_passed": 2, "passed": True}
    offline = await hook.score(step(events.tool("run_tests", {}, result=report), None, run_id="other"))
    assert offline is not None and offline.components["passed"] == 2


async def test_verify_command_labels_by_exit_code(sandbox: Sandbox) -> None:
    verify = reward_hooks.get("verify_command")
    check = "import calc, sys; sys.exit(0 if calc.double(5) == 10 else 1)"
    refuted = await verify(command=["python3", "-c", check]).score(step([], sandbox))
    assert refuted is not None and refuted.label == -1
    await sandbox.write_file("calc/ops.py", CODE_GOOD)
    verified = await verify(command=["python3", "-c", check]).score(step([], sandbox))
    assert verified is not None and verified.label == 1
    undecided = await verify(command="exit 7").score(step([], sandbox))
    assert undecided is not None and undecided.label == 0
    with pytest.raises(RewardHookError, match="cannot score offline"):
        await verify(command="true").score(step([], None))


async def test_reexecute_flags_a_fabricated_tool_result(sandbox: Sandbox) -> None:
    hook = reward_hooks.get("reexecute")()
    events = StepEvents()
    honest = events.tool("read_file", {"path": "calc/ops.py"}, content=CODE_BAD)
    reward = await hook.score(step(honest, sandbox))
    assert reward is not None and reward.label == 1
    fabricated = events.tool("read_file", {"path": "calc/ops.py"}, content=CODE_GOOD)
    reward = await hook.score(step(fabricated, sandbox))
    assert reward is not None and reward.label == -1 and "differ: read_file" in reward.explanation
    assert await hook.score(step(events.tool("write_file", {"path": "a"}), sandbox)) is None


def test_outcome_modes() -> None:
    assert check_answer("exact", " Paris ", "paris")
    assert not check_answer("exact", "Paris, France", "paris")
    assert check_answer("contains", "It is Paris, France", "paris")
    assert check_answer("numeric", "the total is 41.9999", 42, tolerance=0.001)
    assert not check_answer("numeric", "the total is 41.9", 42, tolerance=0.001)
    assert not check_answer("numeric", "no number", 42)
    assert check_answer("regex", "answer: 42 apples", r"\b42\b")
    with pytest.raises(ConfigError):
        reward_hooks.get("outcome")(mode="fuzzy", expected="x")


async def test_outcome_hook_reads_the_state_and_the_tests(sandbox: Sandbox) -> None:
    hook = reward_hooks.get("outcome")(mode="numeric", expected="{target}", key="answer", tolerance=0.5)
    reward = await hook.score(step([], None, kind="run", state={"answer": "about 9.8", "target": 10}))
    assert reward is not None and reward.value == 1.0
    tests = reward_hooks.get("outcome")(mode="tests", path="tests", framework="unittest")
    failing = await tests.score(step([], sandbox, kind="run"))
    assert failing is not None and failing.value == 0.0
    with pytest.raises(RewardHookError, match="no run_tests result"):
        await tests.score(step([], None, kind="run"))


def _script(tmp_path: Path, *contents: str) -> None:
    (tmp_path / "judge.yaml").write_text(yaml.safe_dump({"responses": [{"content": c} for c in contents]}))


async def test_llm_judge_with_the_scripted_model(tmp_path: Path) -> None:
    _script(
        tmp_path, '```json\n{"label": -1, "explanation": "claims a result no tool gave"}\n```', "I think it is fine"
    )
    hook = reward_hooks.get("llm_judge")(model="scripted:judge.yaml")
    hook.base_dir = tmp_path
    events = StepEvents()
    call = events.tool("run_tests", {}, content="2 passed")
    judged = await hook.score(step(call, None, state={"task": "fix it"}))
    assert judged is not None and (judged.value, judged.label) == (-1.0, -1)
    assert judged.explanation == "claims a result no tool gave"
    unparsable = await hook.score(step(call, None))
    assert unparsable is not None
    assert (unparsable.value, unparsable.label) == (0.0, None)
    assert "unparsable judge output" in unparsable.explanation and unparsable.components["parsed"] is False


def _point_the_sdk_at(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_BASE_URL and OPENAI_API_KEY of the loopback server, for the models the hooks create."""
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)


async def test_judge_and_checklist_over_the_openai_sdk(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_the_sdk_at(openai_server, monkeypatch)
    openai_server.queue(
        Reply.text('{"label": 1, "explanation": "ran the tests"}'),
        Reply.text('{"questions": ["Did it run the tests?", "Did all tests pass?", "Were tests left unedited?"]}'),
        Reply.text('{"answers": ["yes", "no", "yes"]}'),
    )
    events = StepEvents()
    call = events.tool("run_tests", {"path": "tests"}, content="1 failed, 1 passed")
    judge = reward_hooks.get("llm_judge")(model="judge")
    judge.models = {"judge": "openai:gpt-4o-mini"}  # a name under the workflow's `models`
    judged = await judge.score(step(call, None, state={"task": "make the tests pass"}))
    await judge.finish_run("run-test")  # closes the SDK's connection
    assert judged is not None and judged.label == 1
    assert "Labels:" in openai_server.requests[0]["messages"][0]["content"]
    checklist = reward_hooks.get("checklist")(model="openai:gpt-4o-mini")
    scored = await checklist.score(step(call, None, state={"task": "make the tests pass"}))
    await checklist.finish_run("run-test")
    assert scored is not None and scored.value == pytest.approx(2 / 3)
    assert scored.components["answers"] == [True, False, True]
    assert "make the tests pass" in openai_server.requests[1]["messages"][1]["content"]


async def test_the_judge_reads_the_earlier_steps_for_error_propagation(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_the_sdk_at(openai_server, monkeypatch)
    openai_server.queue(
        Reply.text('{"label": -1, "explanation": "builds on the wrong edit of the step before"}'),
        Reply.text('{"label": 1, "explanation": "fine"}'),
    )
    events = StepEvents()
    earlier = events.tool("write_file", {"path": "calc.py", "content": "def add(a, b): return a - b"}, content="ok")
    current = events.tool("run_tests", {"path": "tests"}, content="1 failed")
    judge = reward_hooks.get("llm_judge")(model="openai:gpt-4o-mini")
    judged = await judge.score(step(current, None, state={"task": "fix add"}, history=earlier))
    blind = reward_hooks.get("llm_judge")(model="openai:gpt-4o-mini", history_chars=0)
    await blind.score(step(current, None, state={"task": "fix add"}, history=earlier))
    await judge.finish_run("run-test")
    await blind.finish_run("run-test")
    assert judged is not None and judged.label == -1
    shown = openai_server.requests[0]["messages"][1]["content"]
    assert shown.index("Earlier steps:") < shown.index("return a - b") < shown.index("Step:\nTOOL CALL run_tests")
    assert "Earlier steps:" not in openai_server.requests[1]["messages"][1]["content"]


def test_step_events_helper_types() -> None:
    events = StepEvents()
    assert [e.type for e in events.tool("x", {})] == [EventType.TOOL_CALL, EventType.TOOL_RESULT]
