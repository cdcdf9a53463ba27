"""The real `agentflow` console script in a subprocess: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "graphs" / "examples"
AGENTFLOW = str(Path(sys.executable).with_name("agentflow"))


def agentflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTFLOW, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("agentflow: error: ")
    return lines[0]


def test_run_json_then_runs_and_show(examples: Path, tmp_path: Path) -> None:
    result = agentflow("run", str(examples / "fix_failing_test.yaml"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded" and payload["succeeded"] is True
    run_id = payload["run_id"]
    assert (tmp_path / ".agentflow" / "runs" / run_id / "trace.jsonl").is_file()
    assert payload["summary"]["nodes_visited"] == ["plan", "code", "test", "check", "code", "test", "check"]

    listed = json.loads(agentflow("runs", "--json", cwd=tmp_path).stdout)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert listed["runs"][0]["status"] == "succeeded"

    shown = json.loads(agentflow("show", run_id[:12], "--json", cwd=tmp_path).stdout)
    assert shown["run_id"] == run_id
    assert shown["problems"] == []
    types = [e["type"] for e in shown["events"]]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert "reward" in types and "sandbox_exec" in types

    text = agentflow("show", run_id, cwd=tmp_path)
    assert text.returncode == 0
    assert "tests_passed" in text.stdout and "apply_patch" in text.stdout
    assert "aggregate tests_delta: grounded 1.250" in text.stdout  # run-level aggregates, as the workflow selects
    assert shown["aggregates"]["lsp_diagnostics"]["first_error"] == 1


def test_run_text_summary(examples: Path, tmp_path: Path) -> None:
    result = agentflow("run", str(examples / "fix_failing_test.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for expected in ("plan", "code", "test", "check", "status succeeded", "tool calls", "tokens", "trace "):
        assert expected in result.stdout


def test_run_that_fails_exits_1(examples: Path, tmp_path: Path) -> None:
    script = examples / "fix_failing_test" / "script.yaml"
    script.write_text(script.read_text().split("  # code, visit 1")[0])  # the model runs out during `code`
    result = agentflow("run", str(examples / "fix_failing_test.yaml"), "--json", cwd=tmp_path)
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["status"] == "failed"
    assert "script" in payload["error"]


def test_validate_ok_and_errors(examples: Path, tmp_path: Path) -> None:
    ok = agentflow("validate", *map(str, examples.glob("*.yaml")), cwd=tmp_path)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstart: a\nnodes:\n  a: {kind: tool, tool: nope}\n  b: {kind: tool, tool: nope}\n")
    result = agentflow("validate", str(bad), "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    codes = {d["code"] for d in report["files"][0]["diagnostics"]}
    assert {"tool.unknown", "graph.unreachable", "graph.no-end"} <= codes
    first = report["files"][0]["diagnostics"][0]
    assert first["file"] == str(bad) and first["line"] >= 1 and first["column"] >= 1 and first["fix"]


def test_malformed_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: [unclosed\n")
    line = assert_one_line_error(agentflow("run", str(bad), cwd=tmp_path), 2)
    assert f"{bad}:3:1" in line or f"{bad}:2:" in line
    assert "fix:" in line


def test_unknown_option_and_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(agentflow("run", "x.yaml", "--bogus", cwd=tmp_path), 2)
    line = assert_one_line_error(agentflow("run", "missing.yaml", cwd=tmp_path), 2)
    assert "not found" in line


def test_show_unknown_run(tmp_path: Path) -> None:
    line = assert_one_line_error(agentflow("show", "nope", cwd=tmp_path), 3)
    assert "nope" in line


def test_schema_is_json(tmp_path: Path) -> None:
    result = agentflow("schema", cwd=tmp_path)
    assert json.loads(result.stdout)["title"] == "agentflow workflow"


def test_inspect_json(examples: Path, tmp_path: Path) -> None:
    result = agentflow("inspect", str(examples / "fix_failing_test.yaml"), "--json", cwd=tmp_path)
    data = json.loads(result.stdout)
    assert data["critical_path"] == ["plan", "code", "test", "check", "END"]
    assert data["cycles"][0]["max_iterations"] == 3


def test_sandbox_exec(tmp_path: Path) -> None:
    result = agentflow(
        "sandbox",
        "exec",
        "--json",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; echo $OPENAI_API_KEY; exit 3",
        cwd=tmp_path,
        env={"OPENAI_API_KEY": "sk-host-secret"},
    )
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["exit_code"] == 3
    assert data["stdout"] == "out\n\n"
    assert data["stderr"] == "err\n"
    assert data["timed_out"] is False and data["truncated"] is False
    assert "sk-host-secret" not in result.stdout

    slow = agentflow("sandbox", "exec", "--timeout", "0.5", "--json", "--", "sleep", "10", cwd=tmp_path)
    assert json.loads(slow.stdout)["timed_out"] is True
    ok = agentflow("sandbox", "exec", "--", "echo", "hello", cwd=tmp_path)
    assert ok.returncode == 0 and "hello" in ok.stdout


def test_ctrl_c_cancels_the_run_records_it_and_exits_130(tmp_path: Path) -> None:
    workflow = tmp_path / "slow.yaml"
    workflow.write_text(
        "name: slow\ntools: [shell]\nstart: wait\n"
        "nodes:\n  wait: {kind: tool, tool: shell, args: {command: 'sleep 41.5', timeout_s: 60}}\nend: [wait]\n"
    )
    process = subprocess.Popen(
        [AGENTFLOW, "run", str(workflow)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    trace_dir = tmp_path / ".agentflow" / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        traces = list(trace_dir.glob("*/trace.jsonl"))
        if traces and '"tool_call"' in traces[0].read_text():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["agentflow: error: interrupted"]
    shown = json.loads(agentflow("show", traces[0].parent.name, "--json", cwd=tmp_path).stdout)
    assert shown["problems"] == []
    assert shown["events"][-1]["type"] == "run_finished"
    assert shown["events"][-1]["data"]["status"] == "cancelled"


def test_run_with_a_missing_tool_file_or_a_tool_raising_on_import(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text("name: t\ntools: [plugins/gone.py:f]\nstart: a\nnodes:\n  a: {kind: tool, tool: f}\nend: [a]\n")
    line = assert_one_line_error(agentflow("run", str(workflow), cwd=tmp_path), 2)
    assert f"{workflow}:2:" in line and "plugins/gone.py" in line
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "gone.py").write_text("import no_such_module_here\n\ndef f() -> int:\n    return 1\n")
    line = assert_one_line_error(agentflow("run", str(workflow), cwd=tmp_path), 2)
    assert "no_such_module_here" in line
    assert not (tmp_path / ".agentflow").exists()  # nothing ran, nothing was recorded
