"""ATIF (Harbor's Agent Trajectory Interchange Format): our exports validate against Harbor's own trajectory models,
`traces import --format atif` reads them (and other agents' trajectories) back, and an invalid file is reported by
field path.

Harbor needs Python >= 3.12: its models run in a venv of their own (``.ci/setup-harbor.sh`` makes it, at
``/var/tmp/agentflow-harbor-venv``, or ``AGENTFLOW_TEST_HARBOR_PYTHON`` names its interpreter), in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentflow.cli import run_cli
from agentflow.errors import MalformedRecord
from agentflow.traces import (
    EventType,
    Store,
    TraceStore,
    export_atif,
    import_atif,
    import_openai_messages,
    validate_atif,
)
from tests.support.event_data import assert_data_declared
from tests.support.require import require
from tests.traces.export_support import EXAMPLE_RUN, example_store, record_run
from tests.traces.test_export_messages import AGENTPROCESSBENCH_RECORD

HARBOR_ENV = "AGENTFLOW_TEST_HARBOR_PYTHON"
HARBOR_VENV_PYTHON = Path("/var/tmp/agentflow-harbor-venv/bin/python")

# Validates each JSON line of a file with Harbor's Trajectory model; prints one verdict per line.
_VALIDATE = """
import json, sys
from pydantic import ValidationError
from harbor.models.trajectories import Trajectory
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        trajectory = Trajectory.model_validate_json(line)
        print(json.dumps({"ok": True, "steps": len(trajectory.steps), "version": trajectory.schema_version}))
    except ValidationError as exc:
        print(json.dumps({"ok": False, "errors": [".".join(map(str, e["loc"])) for e in exc.errors()]}))
"""


@pytest.fixture(scope="session")
def harbor_python() -> str:
    """The interpreter of a venv that has the `harbor` package (its ATIF models)."""
    python = os.environ.get(HARBOR_ENV) or str(HARBOR_VENV_PYTHON)
    require(Path(python).is_file(), f"no Python with harbor at {python}: run .ci/setup-harbor.sh (or set {HARBOR_ENV})")
    probe = subprocess.run(
        [python, "-c", "import harbor.models.trajectories"], capture_output=True, text=True, timeout=120, check=False
    )
    require(probe.returncode == 0, f"{python} cannot import harbor's trajectory models: run .ci/setup-harbor.sh")
    return python


def harbor_verdicts(python: str, trajectories: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    """Harbor's verdict on each trajectory."""
    file = tmp_path / "harbor-check.jsonl"
    file.write_text("".join(json.dumps(t) + "\n" for t in trajectories))
    result = subprocess.run(
        [python, "-c", _VALIDATE, str(file)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _without_times(trajectory: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in step.items() if k != "timestamp"} for step in trajectory["steps"]]


def other_agents_trajectory() -> dict[str, Any]:
    """A trajectory as another agent writes it (ATIF-v1.4): content parts, cached tokens, an untied observation."""
    return {
        "schema_version": "ATIF-v1.4",
        "session_id": "other-agent-session-1",
        "agent": {"name": "terminus", "version": "2.0", "model_name": "openai/gpt-4o-mini"},
        "steps": [
            {"step_id": 1, "source": "system", "message": "You are a shell agent."},
            {"step_id": 2, "source": "user", "message": [{"type": "text", "text": "List the files."}]},
            {
                "step_id": 3,
                "timestamp": "2026-11-30T10:00:00Z",
                "source": "agent",
                "message": "I will list them.",
                "reasoning_content": "ls shows files",
                "tool_calls": [{"tool_call_id": "t1", "function_name": "bash", "arguments": {"cmd": "ls"}}],
                "observation": {
                    "results": [
                        {"source_call_id": "t1", "content": "a.txt\nb.txt"},
                        {"content": "the terminal beeped"},
                    ]
                },
                "metrics": {"prompt_tokens": 120, "completion_tokens": 12, "cached_tokens": 100, "cost_usd": 0.001},
            },
            {"step_id": 4, "source": "agent", "message": "Two files: a.txt and b.txt."},
        ],
        "final_metrics": {"total_prompt_tokens": 240, "total_completion_tokens": 20, "total_steps": 4},
    }


def _runs_of_every_kind(store: Store, tmp_path: Path) -> list[str]:
    recorded = record_run(store, [("ls", "c1", 1.0), ("cat x", "c2", 0.0), ("done", None, 0)], outcome=1.0)
    source = tmp_path / "apb.jsonl"
    source.write_text(json.dumps(AGENTPROCESSBENCH_RECORD) + "\n")
    [from_messages] = import_openai_messages(store, source).run_ids
    other = tmp_path / "other.json"
    other.write_text(json.dumps(other_agents_trajectory(), indent=2))
    [from_atif] = import_atif(store, other).run_ids
    return [recorded, from_messages, from_atif]


def test_exports_validate_against_harbors_own_models(tmp_path: Path, harbor_python: str) -> None:
    store = example_store(tmp_path)
    run_ids = [EXAMPLE_RUN, *_runs_of_every_kind(store, tmp_path)]
    trajectories = export_atif(store, run_ids)
    verdicts = harbor_verdicts(harbor_python, [*trajectories, other_agents_trajectory()], tmp_path)
    assert verdicts == [
        {"ok": True, "steps": len(t["steps"]), "version": t["schema_version"]}
        for t in [*trajectories, other_agents_trajectory()]
    ]
    example = trajectories[0]
    assert example["schema_version"] == "ATIF-v1.7" and example["session_id"] == EXAMPLE_RUN
    assert example["agent"]["name"] == "agentflow" and len(example["agent"]["tool_definitions"]) == 5
    sources = [s["source"] for s in example["steps"]]
    assert sources[:3] == ["system", "user", "agent"] and sources.count("system") == 3
    # the tool node `test` ran run_tests twice without a model: deterministic agent steps
    tool_node_steps = [s for s in example["steps"] if s.get("llm_call_count") == 0]
    assert [s["extra"]["node"] for s in tool_node_steps] == ["test", "test"]
    assert all(s["tool_calls"][0]["function_name"] == "run_tests" and "metrics" not in s for s in tool_node_steps)
    assert {r["hook"] for s in tool_node_steps for r in s["extra"]["rewards"]} == {"tests_passed", "tests_delta"}
    calls = [s for s in example["steps"] if s.get("tool_calls") and s.get("llm_call_count") == 1]
    assert all(s["observation"]["results"][0]["source_call_id"] == s["tool_calls"][0]["tool_call_id"] for s in calls)
    assert all(s["metrics"]["prompt_tokens"] > 0 for s in calls)
    assert all(s["extra"]["label"] == min(r["label"] for r in s["extra"]["rewards"]) for s in calls)
    assert example["final_metrics"]["extra"]["rewards"][0]["hook"] == "outcome"
    assert example["final_metrics"]["total_steps"] == len(example["steps"])


def test_export_import_export_keeps_every_step_and_reward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = example_store(tmp_path)
    out = tmp_path / "trajectory.json"
    code = run_cli(["traces", "export", EXAMPLE_RUN, "--format", "atif", "-o", str(out), "--store", str(store.root)])
    assert code == 0
    capsys.readouterr()
    assert run_cli(["traces", "import", str(out), "--format", "atif", "--store", str(store.root), "--json"]) == 0
    [imported] = json.loads(capsys.readouterr().out)["run_ids"]
    assert store.load_trace(imported).summary().status == "imported"
    [first, again] = export_atif(store, [EXAMPLE_RUN, imported])
    assert _without_times(again) == _without_times(first)
    assert again["agent"] == first["agent"]
    assert again["final_metrics"]["extra"]["rewards"] == first["final_metrics"]["extra"]["rewards"]
    for key in ("total_prompt_tokens", "total_completion_tokens", "total_steps"):
        assert again["final_metrics"][key] == first["final_metrics"][key]
    assert again["extra"]["inputs"] == first["extra"]["inputs"]
    assert again["extra"]["final_state"] == first["extra"]["final_state"]


def test_another_agents_trajectory_imports_as_a_run(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    source = tmp_path / "trajectory.json"
    source.write_text(json.dumps(other_agents_trajectory(), indent=2))  # pretty-printed: one document
    report = import_atif(store, source)
    assert report.skipped == []
    [run_id] = report.run_ids
    events = store.load_trace(run_id).events
    assert store.load_trace(run_id).summary().status == "imported"
    requests = [e.data for e in events if e.type is EventType.MODEL_REQUEST]
    responses = [e.data for e in events if e.type is EventType.MODEL_RESPONSE]
    assert [r["model"] for r in responses] == ["openai/gpt-4o-mini", "openai/gpt-4o-mini"]
    assert requests[0]["messages"] == [
        {"role": "system", "content": "You are a shell agent."},
        {"role": "user", "content": "List the files."},
    ]
    # the result of t1 answers the call; the untied observation joins the conversation as a user message
    assert requests[1]["messages"][-2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "a.txt\nb.txt"},
        {"role": "user", "content": "the terminal beeped"},
    ]
    assert responses[0]["message"]["reasoning_content"] == "ls shows files"
    assert responses[0]["usage"] == {"input_tokens": 120, "output_tokens": 12}
    [result] = [e.data for e in events if e.type is EventType.TOOL_RESULT]
    assert (result["tool"], result["ok"], result["content"]) == ("bash", True, "a.txt\nb.txt")
    assert_data_declared(events)  # an ATIF import writes what the event types declare, like any run
    [exported] = export_atif(store, [run_id])
    assert exported["agent"]["name"] == "terminus"  # the agent that made the trajectory, not agentflow
    assert [s["source"] for s in exported["steps"]] == ["system", "user", "agent", "user", "agent"]


def test_an_invalid_trajectory_is_reported_by_field_path_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = TraceStore(tmp_path / "store")
    good = export_atif(store, [record_run(store, [("ls", "c1", 1.0), ("cat", "c2", 1.0), ("done", None, 0)])])[0]
    broken = json.loads(json.dumps(good))
    del broken["steps"][3]["tool_calls"][0]["function_name"]
    wrong_source = json.loads(json.dumps(good))
    wrong_source["steps"][0]["source"] = "robot"
    wrong_source["steps"][1]["step_id"] = 7
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join([json.dumps(good), json.dumps(broken), "{not json", json.dumps(wrong_source)]) + "\n")
    code = run_cli(["traces", "import", str(source), "--format", "atif", "--store", str(store.root)])
    assert code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"imported 1 runs from {source}"
    assert out[1] == f"  {source}:2: skipped: steps[3].tool_calls[0].function_name: field required"
    assert out[2].startswith(f"  {source}:3: skipped: ")
    assert out[3].startswith(f"  {source}:4: skipped: steps[0].source: input should be 'system', 'user' or 'agent'")
    with pytest.raises(MalformedRecord, match=r"steps\[3\]\.tool_calls\[0\]\.function_name: field required"):
        validate_atif(broken)
    observation_elsewhere = json.loads(json.dumps(good))
    observation_elsewhere["steps"][3]["observation"]["results"][0]["source_call_id"] = "nowhere"
    with pytest.raises(MalformedRecord, match="'nowhere', no tool call of the step"):
        validate_atif(observation_elsewhere)
    user_with_tools = json.loads(json.dumps(good))
    user_with_tools["steps"][1]["tool_calls"] = []
    with pytest.raises(MalformedRecord, match=r"steps\[1\]: tool_calls is only allowed on agent steps"):
        validate_atif(user_with_tools)


def test_harbor_rejects_the_trajectories_we_reject(tmp_path: Path, harbor_python: str) -> None:
    store = TraceStore(tmp_path / "store")
    good = export_atif(store, [record_run(store, [("ls", "c1", 1.0), ("cat", "c2", 1.0), ("done", None, 0)])])[0]
    broken = json.loads(json.dumps(good))
    del broken["steps"][3]["tool_calls"][0]["function_name"]
    unordered = json.loads(json.dumps(good))
    unordered["steps"][1]["step_id"] = 5
    user_with_metrics = json.loads(json.dumps(good))
    user_with_metrics["steps"][1]["metrics"] = {"prompt_tokens": 1}
    verdicts = harbor_verdicts(harbor_python, [broken, unordered, user_with_metrics], tmp_path)
    assert [v["ok"] for v in verdicts] == [False, False, False]
    assert "steps.3.tool_calls.0.function_name" in verdicts[0]["errors"]
    for trajectory in (broken, unordered, user_with_metrics):
        with pytest.raises(MalformedRecord):
            validate_atif(trajectory)
