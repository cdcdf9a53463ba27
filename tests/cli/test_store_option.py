"""`--store` on `agentflow run | runs | show`: a folder (the default) or a PostgreSQL URL, against the real server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import agentflow, assert_one_line_error
from tests.traces.conftest import postgres_url  # noqa: F401 - the fixture, shared with the store tests


def test_run_runs_show_against_postgresql(examples: Path, tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    result = agentflow("run", str(examples / "fix_failing_test.yaml"), "--store", postgres_url, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded"
    run_id = payload["run_id"]
    assert not (tmp_path / ".agentflow").exists()  # nothing went to the default folder

    listed = json.loads(agentflow("runs", "--store", postgres_url, "--json", cwd=tmp_path).stdout)
    assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [(run_id, "succeeded")]
    assert listed["runs"][0]["tool_calls"] == payload["summary"]["tool_calls"]

    shown = json.loads(agentflow("show", run_id[:15], "--store", postgres_url, "--json", cwd=tmp_path).stdout)
    assert shown["run_id"] == run_id and shown["problems"] == []
    assert shown["summary"]["nodes_visited"] == payload["summary"]["nodes_visited"]
    assert [e["type"] for e in shown["events"]][-1] == "run_finished"

    text = agentflow("runs", "--store", postgres_url, cwd=tmp_path)
    assert text.returncode == 0 and run_id in text.stdout
    assert "tests_passed" in agentflow("show", run_id, "--store", postgres_url, cwd=tmp_path).stdout


def test_folder_store_option(examples: Path, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"
    result = agentflow("run", str(examples / "fix_failing_test.yaml"), "--store", str(store), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    assert (store / "runs" / run_id / "trace.jsonl").is_file()
    assert not (tmp_path / ".agentflow").exists()
    listed = json.loads(agentflow("runs", "--store", str(store), "--json", cwd=tmp_path).stdout)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]


def test_unreachable_postgresql_is_one_line_without_the_password(examples: Path, tmp_path: Path) -> None:
    # Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    url = "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"
    for args in (
        ("run", str(examples / "fix_failing_test.yaml")),
        ("runs",),
        ("show", "20260101-000000-00000000"),
    ):
        line = assert_one_line_error(agentflow(*args, "--store", url, cwd=tmp_path), 3)
        assert "postgresql://someone:***@127.0.0.1:1/nowhere" in line
        assert "s3cret-pw" not in line
    assert not (tmp_path / ".agentflow").exists()
