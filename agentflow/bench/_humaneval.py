"""HumanEval's data: the problems (``.jsonl`` or ``.jsonl.gz``), the program a sample is graded by, and samples read
with every bad line reported by its number instead of stopping the read."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError

PROBLEM_FIELDS = ("task_id", "prompt", "test", "entry_point")


@dataclass(frozen=True)
class Problem:
    """One HumanEval problem: ``prompt`` (signature and docstring), ``test`` (defines ``check(candidate)``),
    ``entry_point`` (the function's name), and the reference ``canonical_solution`` when the file has it."""

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str = ""

    def program(self, completion: str) -> str:
        """The program that grades ``completion``, exactly as the reference harness builds it."""
        return self.prompt + completion + "\n" + self.test + "\n" + f"check({self.entry_point})"


@dataclass(frozen=True)
class Sample:
    """One sample to grade: the line it came from and its record, kept whole to be repeated in the results."""

    line: int
    task_id: str
    completion: str
    record: dict[str, Any]


@dataclass(frozen=True)
class LineError:
    """A line of the samples file that could not be graded, and why."""

    line: int
    message: str


def _text_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None


def load_problems(path: str | Path) -> dict[str, Problem]:
    """Read HumanEval problems from a ``.jsonl`` or ``.jsonl.gz`` file, keyed by task id.

    Raises:
        ConfigError: the file is missing or unreadable, or a line is not a problem (the message names the line).
    """
    path = Path(path)
    problems: dict[str, Problem] = {}
    for number, text in enumerate(_text_lines(path), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(record, dict) or any(not isinstance(record.get(key), str) for key in PROBLEM_FIELDS):
            raise ConfigError(f"{path}:{number}: not a HumanEval problem (needs string {', '.join(PROBLEM_FIELDS)})")
        problems[record["task_id"]] = Problem(
            task_id=record["task_id"],
            prompt=record["prompt"],
            test=record["test"],
            entry_point=record["entry_point"],
            canonical_solution=str(record.get("canonical_solution", "")),
        )
    if not problems:
        raise ConfigError(f"{path}: holds no problem")
    return problems


def read_samples(path: str | Path, problems: dict[str, Problem]) -> tuple[list[Sample], list[LineError]]:
    """Read ``{"task_id", "completion"}`` records, one per line, in order.

    Returns:
        The samples to grade, and the lines that are not: malformed JSON, not an object, a missing or non-string
        ``task_id`` or ``completion``, a task id that is not among ``problems``. Blank lines are neither.

    Raises:
        ConfigError: the file is missing or unreadable.
    """
    samples: list[Sample] = []
    errors: list[LineError] = []
    for number, text in enumerate(_text_lines(Path(path)), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, f"not JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(record, dict):
            errors.append(LineError(number, f"not a JSON object but {type(record).__name__}"))
            continue
        missing = [key for key in ("task_id", "completion") if not isinstance(record.get(key), str)]
        if missing:
            errors.append(LineError(number, f"needs a string {' and '.join(missing)}"))
            continue
        if record["task_id"] not in problems:
            errors.append(LineError(number, f"unknown task id {record['task_id']!r}"))
            continue
        samples.append(Sample(number, record["task_id"], record["completion"], record))
    return samples, errors


def checkout_problems() -> Path | None:
    """The HumanEval data beside this agentflow checkout, where tests and benchmarks read it:
    ``shared/data/humaneval/HumanEval.jsonl.gz`` in the nearest folder above the project's root (``../shared`` for
    the main checkout, ``../../shared`` for a worktree under a folder beside it); None when there is none (an
    installed agentflow)."""
    project = Path(__file__).resolve().parents[2]
    for folder in list(project.parents)[:2]:
        candidate = folder / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"
        if candidate.is_file():
            return candidate
    return None
