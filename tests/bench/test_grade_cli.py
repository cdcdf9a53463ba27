"""`agentflow bench grade humaneval` as a user runs it: the real console script, the real data, the local sandbox."""

from __future__ import annotations

import json
from pathlib import Path

from agentflow.bench import Problem, checkout_problems
from tests.cli.test_cli import agentflow, assert_one_line_error


def _write_samples(path: Path, humaneval: dict[str, Problem]) -> None:
    problems = list(humaneval.values())
    lines = [
        json.dumps({"task_id": problems[0].task_id, "completion": problems[0].canonical_solution}),
        json.dumps({"task_id": problems[1].task_id, "completion": "    return []\n", "model": "m"}),
        "{broken",
        json.dumps({"task_id": problems[0].task_id, "completion": "    return 0\n"}),
        json.dumps({"task_id": "HumanEval/9999", "completion": "    return 0\n"}),
        json.dumps({"task_id": problems[1].task_id, "completion": problems[1].canonical_solution}),
    ]
    path.write_text("\n".join(lines) + "\n")


def test_grade_writes_results_in_input_order_and_reports_bad_lines(
    tmp_path: Path, humaneval: dict[str, Problem]
) -> None:
    samples = tmp_path / "samples.jsonl"
    _write_samples(samples, humaneval)
    result = agentflow("bench", "grade", "humaneval", "--samples", str(samples), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # two lines were skipped
    assert f"{samples}:3: skipped: not JSON" in result.stdout
    assert f"{samples}:5: skipped: unknown task id 'HumanEval/9999'" in result.stdout
    assert "graded 4 samples of 2 tasks" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [(row["completion"], row["passed"]) for row in rows] == [
        (humaneval["HumanEval/0"].canonical_solution, True),
        ("    return []\n", False),
        ("    return 0\n", False),
        (humaneval["HumanEval/1"].canonical_solution, True),
    ]
    assert rows[1]["model"] == "m"  # the sample is repeated whole
    assert rows[1]["result"].startswith("failed: AssertionError")
    assert all(row["duration_s"] > 0 for row in rows)


def test_grade_json_prints_pass_at_k_and_counts(tmp_path: Path, humaneval: dict[str, Problem]) -> None:
    samples = tmp_path / "samples.jsonl"
    _write_samples(samples, humaneval)
    out = tmp_path / "graded.jsonl"
    result = agentflow(
        "bench",
        "grade",
        "humaneval",
        "--samples",
        str(samples),
        "--out",
        str(out),
        "--timeout",
        "5",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["pass_at_k"] == {"pass@1": 0.5, "pass@2": 1.0}  # each task: 1 of 2 passed
    assert summary["counts"] == {
        "graded": 4,
        "passed": 2,
        "failed": 2,
        "timed_out": 0,
        "skipped_lines": 2,
        "tasks": 2,
        "problems": 164,
    }
    assert [entry["line"] for entry in summary["skipped"]] == [3, 5]
    assert summary["results"] == str(out) and len(out.read_text().splitlines()) == 4


def test_a_clean_file_exits_0_with_explicit_problems(tmp_path: Path, humaneval: dict[str, Problem]) -> None:
    problem = humaneval["HumanEval/2"]
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": problem.task_id, "completion": problem.canonical_solution}) + "\n")
    problems = checkout_problems()
    assert problems is not None
    result = agentflow(
        "bench", "grade", "humaneval", "--samples", str(samples), "--problems", str(problems), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "1 passed, 0 failed, 0 timed out; pass@1 1.0000" in result.stdout


def test_errors_are_one_line_with_their_exit_code(tmp_path: Path, humaneval: dict[str, Problem]) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n")
    missing = assert_one_line_error(
        agentflow("bench", "grade", "humaneval", "--samples", str(tmp_path / "none.jsonl"), cwd=tmp_path), 2
    )
    assert "none.jsonl: no such file" in missing
    bad_problems = tmp_path / "p.jsonl"
    bad_problems.write_text("[1, 2]\n")
    line = assert_one_line_error(
        agentflow(
            "bench", "grade", "humaneval", "--samples", str(samples), "--problems", str(bad_problems), cwd=tmp_path
        ),
        2,
    )
    assert "p.jsonl:1: not a HumanEval problem" in line
    assert_one_line_error(
        agentflow("bench", "grade", "humaneval", "--samples", str(samples), "--sandbox", "nowhere", cwd=tmp_path), 2
    )
    assert_one_line_error(
        agentflow("bench", "grade", "humaneval", "--samples", str(samples), "--workers", "0", cwd=tmp_path), 2
    )
