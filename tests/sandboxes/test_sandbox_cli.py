"""`agentflow sandbox exec|check|build|cleanup` through the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._docker_support import require_docker

AGENTFLOW = str(Path(sys.executable).with_name("agentflow"))


def agentflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTFLOW, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_check_runs_the_conformance_suite_against_a_backend(tmp_path: Path) -> None:
    result = agentflow("sandbox", "check", "local", "--only", "stdin", "--only", "env", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [(c["name"], c["status"]) for c in report["checks"]] == [("stdin", "passed"), ("env", "passed")]


def test_check_and_build_refuse_unknown_names(tmp_path: Path) -> None:
    assert "did you mean 'docker'" in one_line_error(agentflow("sandbox", "check", "dokcer", cwd=tmp_path), 2)
    assert "no_such_check" in one_line_error(
        agentflow("sandbox", "check", "local", "--only", "no_such_check", cwd=tmp_path), 2
    )
    assert "choices: python" in one_line_error(agentflow("sandbox", "build", "ruby", cwd=tmp_path), 2)


def test_docker_unreachable_is_one_line_exit_3(tmp_path: Path) -> None:
    result = agentflow(
        "sandbox", "exec", "--backend", "docker", "--", "true", cwd=tmp_path, env={"DOCKER_HOST": "unix:///absent.sock"}
    )
    assert "start the Docker engine" in one_line_error(result, 3)


def test_exec_check_and_cleanup_with_docker(tmp_path: Path, machine_wide_cleanup: None) -> None:
    require_docker()
    ran = agentflow("sandbox", "exec", "--backend", "docker", "--json", "--", "sh", "-c", "id -u; exit 3", cwd=tmp_path)
    assert ran.returncode == 1
    shown = json.loads(ran.stdout)
    assert (shown["exit_code"], shown["stdout"], shown["isolation"]["backend"]) == (3, "1000\n", "docker")
    missing = agentflow("sandbox", "exec", "--backend", "docker", "--image", "absent/img:x", "--", "true", cwd=tmp_path)
    assert "agentflow sandbox build python" in one_line_error(missing, 3)
    checked = agentflow("sandbox", "check", "docker", "--only", "timeout", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASSED        timeout" in checked.stdout
    cleaned = agentflow("sandbox", "cleanup", "--json", cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    assert isinstance(json.loads(cleaned.stdout)["removed"], list)
    named = agentflow("sandbox", "cleanup", "--backend", "docker", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith("removed ") and " sandbox container" in named.stdout


HOLD_A_SANDBOX = """
import asyncio
from agentflow.sandboxes import LocalSandbox

async def main():
    box = await LocalSandbox.create()
    print(box._root, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def _hold_a_sandbox(env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    """A process that made a local sandbox and keeps it open; returns it and the sandbox's private folder."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SANDBOX], stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    assert holder.stdout is not None
    return holder, Path(holder.stdout.readline().strip())


def _end(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()


def test_cleanup_of_the_local_backend_removes_the_workdirs_of_dead_processes_only(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}  # the sandboxes' folders, and the sweep, stay inside this test's folder
    live, kept = _hold_a_sandbox(env)  # first: the dead one's folder must not be swept by this one's start
    try:
        dead, left_behind = _hold_a_sandbox(env)
        _end(dead)  # SIGKILL: its sandbox was never closed
        assert left_behind.is_dir() and kept.is_dir()
        cleaned = agentflow("sandbox", "cleanup", "--backend", "local", "--json", cwd=tmp_path, env=env)
        assert cleaned.returncode == 0, cleaned.stderr
        assert json.loads(cleaned.stdout) == {"removed": [str(left_behind)]}
        assert not left_behind.exists()
        assert kept.is_dir()
        again = agentflow("sandbox", "cleanup", "--backend", "local", cwd=tmp_path, env=env)
        assert again.stdout.strip() == "removed 0 sandbox workdirs"
    finally:
        _end(live)


def test_cleanup_of_e2b_needs_no_key_and_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    e2b = agentflow("sandbox", "cleanup", "--backend", "e2b", cwd=tmp_path, env={"E2B_API_KEY": ""})
    assert (e2b.returncode, e2b.stdout.strip()) == (0, "removed 0 sandbox leftovers")
    assert "did you mean 'docker'" in one_line_error(
        agentflow("sandbox", "cleanup", "--backend", "dokcer", cwd=tmp_path), 2
    )


def test_run_a_workflow_with_the_docker_sandbox(examples: Path, tmp_path: Path) -> None:
    require_docker()
    result = agentflow("run", str(examples / "fix_failing_test.yaml"), "--sandbox", "docker", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded"
    assert run["final_state"]["tests_passed"] is True
    trace = (tmp_path / run["trace"]).read_text()
    assert '"backend":"docker"' in trace.replace(" ", "")
