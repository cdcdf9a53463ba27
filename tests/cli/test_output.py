"""What the CLI prints: whole lines to pipes, a live progress line on a terminal, --quiet, --version, plain help."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from agentflow.errors import MissingExtraError
from agentflow.rewards._lsp import SERVERS
from tests.cli.test_cli import AGENTFLOW
from tests.support.require import require

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def piped(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout and stderr on pipes and no COLUMNS hint, as when a script or an editor runs it."""
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}
    return subprocess.run(
        [AGENTFLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_version(tmp_path: Path) -> None:
    import agentflow

    result = piped("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"agentflow {agentflow.__version__}"


def test_help_shows_flags_without_type_clutter(tmp_path: Path) -> None:
    result = piped("run", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "<bool>" not in result.stdout
    assert re.search(r"^\s+--resumable\s+save a LangGraph", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^\s+-q, --quiet\s+show no progress", result.stdout, re.MULTILINE), result.stdout


def test_diagnostics_of_a_long_path_stay_one_line_each(tmp_path: Path) -> None:
    folder = tmp_path / ("deeply_nested_folder_" * 4) / ("of_workflows_" * 4)
    folder.mkdir(parents=True)
    workflow = folder / "a_workflow_with_a_long_name.yaml"
    workflow.write_text("name: x\nstart: a\nnodes:\n  a: {kind: tool, tool: nope}\n  b: {kind: tool, tool: nope}\n")
    result = piped("validate", str(workflow), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) >= 3  # two unknown tools and an unreachable node at least
    for line in lines:
        assert re.fullmatch(rf"{re.escape(str(workflow))}:\d+:\d+: error \[[a-z.-]+\] .+ \(fix: .+\)", line), line


def test_inspect_table_is_not_cut_in_a_pipe(tmp_path: Path) -> None:
    condition = "state.attempts < 3 && state.report.contains('FAILED') && !state.report.contains('ERROR collecting')"
    workflow = tmp_path / "wide.yaml"
    workflow.write_text(
        "name: wide\nstate:\n  attempts: {type: int, default: 0}\n  report: {type: str, default: ''}\n"
        "tools: [list_files]\nstart: decide\nnodes:\n"
        f'  decide: {{kind: router, routes: [{{when: "{condition}", to: retry_the_tests_again}}, {{to: END}}]}}\n'
        "  retry_the_tests_again: {kind: tool, tool: list_files}\n"
        "end: [retry_the_tests_again]\n"
    )
    result = piped("inspect", str(workflow), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "decide" in line)
    assert f"retry_the_tests_again if {condition}" in row


def test_run_reports_each_finished_node_on_stderr_and_json_stays_on_stdout(examples: Path, tmp_path: Path) -> None:
    result = piped("run", str(examples / "fix_failing_test.yaml"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # stdout is the one JSON object, nothing else
    lines = result.stderr.splitlines()
    assert [line.split()[1] for line in lines] == payload["summary"]["nodes_visited"]
    assert lines[0].startswith("node plan ok in ")
    plan = payload["summary"]["nodes"]["plan"]
    assert f"model turns {plan['model_calls']}, tool calls {plan['tool_calls']}, tokens {plan['tokens']}" in lines[0]
    assert plan["model_calls"] == 5 and plan["tool_calls"] == 4 and plan["tokens"] > 0
    assert "visit 2" in lines[4]

    quiet = piped("run", str(examples / "fix_failing_test.yaml"), "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    assert "status succeeded" in quiet.stdout


def test_run_on_a_terminal_shows_live_progress(examples: Path, tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    process = subprocess.Popen(
        [AGENTFLOW, "run", str(examples / "fix_failing_test.yaml")],
        cwd=tmp_path,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process exited
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(primary)
    assert process.wait(timeout=30) == 0
    text = ANSI.sub("", output.decode(errors="replace"))
    assert re.search(r"fix_failing_test: code \(visit 2\)\s+turn \d+\s+tool calls \d+\s+tokens \d+\s+\d+\.\d s", text)
    assert "node plan ok in " in text  # a finished node leaves its line above the live one
    assert "status succeeded" in text


def test_short_run_with_a_language_server_prints_no_pygls_noise(examples: Path, tmp_path: Path) -> None:
    try:
        SERVERS["basedpyright"].resolve()
    except MissingExtraError:
        require(False, "basedpyright is not installed (pip install 'agentflow[lsp]')")
    script = examples / "fix_failing_test" / "script.yaml"
    script.write_text(script.read_text().split("  # code, visit 1")[0])  # ends in `code`, while the server warms up
    for _ in range(2):
        result = piped("run", str(examples / "fix_failing_test.yaml"), "--quiet", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr == "", result.stderr
