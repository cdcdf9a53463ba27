"""Reading HumanEval problems and samples: every bad line is reported by number, the rest is kept in order."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from agentflow.bench import Problem, load_problems, read_samples
from agentflow.errors import ConfigError


def test_the_real_data_has_164_problems_and_builds_the_reference_program(humaneval: dict[str, Problem]) -> None:
    assert len(humaneval) == 164
    first = humaneval["HumanEval/0"]
    program = first.program("    return True\n")
    assert program == first.prompt + "    return True\n" + "\n" + first.test + "\n" + "check(has_close_elements)"


def test_bad_lines_are_reported_by_number_and_the_rest_is_kept(tmp_path: Path, humaneval: dict[str, Problem]) -> None:
    lines = [
        json.dumps({"task_id": "HumanEval/1", "completion": "a"}),
        "{not json",
        "",
        json.dumps(["a list"]),
        json.dumps({"task_id": "HumanEval/2"}),
        json.dumps({"task_id": 3, "completion": "x"}),
        json.dumps({"task_id": "HumanEval/999", "completion": "x"}),
        json.dumps({"task_id": "HumanEval/0", "completion": "b", "extra": 7}),
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    samples, errors = read_samples(path, humaneval)
    assert [(s.line, s.task_id, s.completion) for s in samples] == [(1, "HumanEval/1", "a"), (8, "HumanEval/0", "b")]
    assert samples[1].record == {"task_id": "HumanEval/0", "completion": "b", "extra": 7}
    assert [(e.line, e.message.split(":")[0].split(" '")[0]) for e in errors] == [
        (2, "not JSON"),
        (4, "not a JSON object but list"),
        (5, "needs a string completion"),
        (6, "needs a string task_id"),
        (7, "unknown task id"),
    ]
    assert "'HumanEval/999'" in errors[-1].message


def test_problems_from_plain_and_gzipped_jsonl(tmp_path: Path) -> None:
    record = {
        "task_id": "T/0",
        "prompt": "def f():\n",
        "test": "def check(c):\n    assert c() == 1\n",
        "entry_point": "f",
    }
    plain = tmp_path / "p.jsonl"
    plain.write_text(json.dumps(record) + "\n")
    zipped = tmp_path / "p.jsonl.gz"
    with gzip.open(zipped, "wt") as handle:
        handle.write(json.dumps(record) + "\n")
    assert (
        load_problems(plain) == load_problems(zipped) == {"T/0": Problem("T/0", record["prompt"], record["test"], "f")}
    )


def test_unusable_problem_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_problems(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"task_id": "T/0"}\n')
    with pytest.raises(ConfigError, match=r"broken.jsonl:1: not a HumanEval problem"):
        load_problems(broken)
    with pytest.raises(ConfigError, match="no such file"):
        read_samples(tmp_path / "missing.jsonl", {})
