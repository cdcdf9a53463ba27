"""Benchmark checkpoints (Agentic-MME style): predicates over a trace that a task requires.

A checkpoints file (YAML or JSON)::

    checkpoints:
      - id: read_tests                       # each tool call satisfies at most one checkpoint
        axis: process                        # pass rates are reported per axis (default: tool | answer | verifier)
        tools: [read_file, list_files]       # any of these tool names
        args: {path: {contains: tests}}      # a plain value (equals) or {equals | contains | regex |
                                             #   numeric: x, tolerance: t | keywords: [...], min_matches: n}
      - id: answer
        answer_check: {type: numeric, expected: 42, tolerance: 0.5}   # exact | contains | numeric | keyword | regex
      - id: tests_green
        verifier: {cmd: [python3, -c, "import sys; sys.exit(0 if '42' in sys.stdin.read() else 1)"]}
    ordering: [[read_tests, answer]]         # each list: its checkpoints must be met in this order
    efficiency: {reference_tool_calls: 4, penalty_per_extra_call: 0.05, max_tool_calls: 12}

Scores (DESIGN.md): ``penalty = min(1, max(0, calls − reference)·per)``, 1 above ``max_tool_calls``;
``PQS = mean(axis pass rates)·(1 − penalty)``; ``overthinking = calls / reference calls``; the ordering score is the
share of ordered pairs (consecutive checkpoints of each ``ordering`` list) whose matching events come in order.
A verifier command runs in a fresh local sandbox with the final answer on stdin; exit 0 passes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentflow.errors import ConfigError
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import ModelResponseData, RunFinishedData, ToolCallData


class Matcher(BaseModel):
    """One argument or answer matcher; exactly one kind of check."""

    model_config = ConfigDict(extra="forbid")

    equals: Any = None
    contains: str | None = None
    regex: str | None = None
    numeric: float | None = None
    tolerance: float = 0.0
    keywords: list[str] | None = None
    min_matches: int | None = None

    def matches(self, value: Any) -> bool:
        """Whether ``value`` satisfies the check."""
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if self.contains is not None:
            return self.contains.lower() in text.lower()
        if self.regex is not None:
            return re.search(self.regex, text) is not None
        if self.numeric is not None:
            number = _number(value)
            return number is not None and math.isclose(number, self.numeric, abs_tol=self.tolerance)
        if self.keywords is not None:
            found = sum(1 for keyword in self.keywords if keyword.lower() in text.lower())
            return found >= (self.min_matches if self.min_matches is not None else len(self.keywords))
        return bool(value == self.equals or (isinstance(value, str) and value.strip() == str(self.equals).strip()))


class AnswerCheck(BaseModel):
    """A check of the run's final answer."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["exact", "contains", "numeric", "keyword", "regex"]
    expected: Any = None
    tolerance: float = 0.0
    keywords: list[str] = Field(default_factory=lambda: [])
    min_matches: int = 1
    pattern: str | None = None
    case_sensitive: bool = False

    def passes(self, answer: str) -> bool:
        """Whether the answer passes."""
        fold = (lambda text: text) if self.case_sensitive else str.lower
        if self.type == "exact":
            return fold(answer.strip()) == fold(str(self.expected).strip())
        if self.type == "contains":
            return fold(str(self.expected)) in fold(answer)
        if self.type == "numeric":
            numbers = [
                float(found) for found in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", answer.replace(",", ""))
            ]
            expected = float(self.expected)
            return any(math.isclose(number, expected, abs_tol=self.tolerance) for number in numbers)
        if self.type == "keyword":
            return sum(1 for keyword in self.keywords if fold(keyword) in fold(answer)) >= self.min_matches
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return re.search(self.pattern or str(self.expected), answer, flags) is not None


class Verifier(BaseModel):
    """A command whose exit code decides the checkpoint; the final answer is its stdin."""

    model_config = ConfigDict(extra="forbid")

    cmd: list[str] = Field(min_length=1)
    expect_exit: int = 0
    timeout_s: float = 30.0


class Checkpoint(BaseModel):
    """One predicate a task requires."""

    model_config = ConfigDict(extra="forbid")

    id: str
    axis: str | None = None
    tools: list[str] = Field(default_factory=lambda: [])
    args: dict[str, Any] = Field(default_factory=lambda: {})
    answer_check: AnswerCheck | None = None
    verifier: Verifier | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Checkpoint:
        kinds = sum([bool(self.tools), self.answer_check is not None, self.verifier is not None])
        if kinds != 1:
            raise ValueError(f"checkpoint {self.id!r} needs exactly one of: tools, answer_check, verifier")
        return self

    @property
    def kind(self) -> str:
        """``tool``, ``answer`` or ``verifier``."""
        return "tool" if self.tools else ("answer" if self.answer_check is not None else "verifier")

    def arg_matchers(self) -> dict[str, Matcher]:
        """The argument matchers (a plain value means equals)."""
        return {
            key: Matcher.model_validate(value) if isinstance(value, dict) else Matcher(equals=value)
            for key, value in self.args.items()
        }


class Efficiency(BaseModel):
    """The tool-call budget of a task."""

    model_config = ConfigDict(extra="forbid")

    reference_tool_calls: int = Field(ge=1)
    penalty_per_extra_call: float = Field(default=0.0, ge=0)
    max_tool_calls: int | None = None


class CheckpointSpec(BaseModel):
    """A task's checkpoints file."""

    model_config = ConfigDict(extra="forbid")

    checkpoints: list[Checkpoint] = Field(min_length=1)
    ordering: list[list[str]] = Field(default_factory=lambda: [])
    efficiency: Efficiency | None = None

    @model_validator(mode="after")
    def _known_ids(self) -> CheckpointSpec:
        ids = [checkpoint.id for checkpoint in self.checkpoints]
        if len(set(ids)) != len(ids):
            raise ValueError("checkpoint ids must be unique")
        for order in self.ordering:
            unknown = [name for name in order if name not in ids]
            if unknown:
                raise ValueError(f"ordering names unknown checkpoints: {', '.join(unknown)}")
        return self


def load_checkpoints(path: str | Path) -> CheckpointSpec:
    """Load and check a checkpoints file.

    Raises:
        ConfigError: the file is missing, not YAML/JSON, or not a valid checkpoints file.
    """
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoints file {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"checkpoints file {file} is not YAML or JSON: {exc}") from None
    try:
        return CheckpointSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(
            f"checkpoints file {file}: {where}: {first['msg']}", fix="see `agentflow grade --help`"
        ) from None


@dataclass
class CheckpointResult:
    """Whether one checkpoint passed, and the event that satisfied it."""

    id: str
    axis: str
    kind: str
    passed: bool
    event_seq: int | None
    detail: str = ""


@dataclass
class CheckpointReport:
    """Per-checkpoint results and the task's scores."""

    results: list[CheckpointResult]
    axis_pass_rates: dict[str, float]
    ordering_score: float | None
    tool_calls: int
    penalty: float
    pqs: float
    overthinking: float | None
    answer: str = ""
    extra: dict[str, Any] = field(default_factory=lambda: {})

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data."""
        return asdict(self)


def final_answer(events: Sequence[Event]) -> tuple[str, int | None]:
    """The run's final answer (the last assistant message without tool calls, else ``answer`` of the final state)."""
    for event in reversed(events):
        if event.type is EventType.MODEL_RESPONSE:
            response = event.data_as(ModelResponseData)
            if not response.get("tool_calls"):
                message = response.get("message") or {}
                return str(message.get("content") or ""), event.seq
    for event in reversed(events):
        if event.type is EventType.RUN_FINISHED:
            state = event.data_as(RunFinishedData).get("final_state") or {}
            if isinstance(state, dict) and "answer" in state:
                return str(state["answer"]), event.seq
    return "", None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _arguments(call: ToolCallData) -> dict[str, Any]:
    raw: Any = call.get("arguments")  # JSON text, or already an object in a trace another tool wrote
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def evaluate_checkpoints(spec: CheckpointSpec, events: Sequence[Event]) -> CheckpointReport:
    """Evaluate a task's checkpoints over one trace."""
    calls = [(event.seq, event.data_as(ToolCallData)) for event in events if event.type is EventType.TOOL_CALL]
    used: set[int] = set()
    answer, answer_seq = final_answer(events)
    results: list[CheckpointResult] = []
    for checkpoint in spec.checkpoints:
        axis = checkpoint.axis or checkpoint.kind
        if checkpoint.kind == "tool":
            matchers = checkpoint.arg_matchers()
            match = next(
                (
                    seq
                    for seq, call in calls
                    if seq not in used
                    and call.get("tool") in checkpoint.tools
                    and all(key in _arguments(call) and m.matches(_arguments(call)[key]) for key, m in matchers.items())
                ),
                None,
            )
            if match is not None:
                used.add(match)
            results.append(CheckpointResult(checkpoint.id, axis, "tool", match is not None, match))
        elif checkpoint.answer_check is not None:
            passed = checkpoint.answer_check.passes(answer)
            results.append(CheckpointResult(checkpoint.id, axis, "answer", passed, answer_seq if passed else None))
        elif checkpoint.verifier is not None:
            passed, detail = await _run_verifier(checkpoint.verifier, answer)
            results.append(
                CheckpointResult(checkpoint.id, axis, "verifier", passed, answer_seq if passed else None, detail)
            )
    by_axis: dict[str, list[bool]] = {}
    for result in results:
        by_axis.setdefault(result.axis, []).append(result.passed)
    rates = {axis: sum(passed) / len(passed) for axis, passed in by_axis.items()}
    ordering = _ordering_score(spec, {result.id: result for result in results})
    penalty, overthinking = _efficiency(spec.efficiency, len(calls))
    pqs = (sum(rates.values()) / len(rates)) * (1 - penalty) if rates else 0.0
    return CheckpointReport(results, rates, ordering, len(calls), penalty, pqs, overthinking, answer)


def _ordering_score(spec: CheckpointSpec, results: dict[str, CheckpointResult]) -> float | None:
    pairs = [(order[i], order[i + 1]) for order in spec.ordering for i in range(len(order) - 1)]
    if not pairs:
        return None
    kept = 0
    for first, second in pairs:
        a, b = results[first].event_seq, results[second].event_seq
        kept += a is not None and b is not None and a < b
    return kept / len(pairs)


def _efficiency(efficiency: Efficiency | None, calls: int) -> tuple[float, float | None]:
    if efficiency is None:
        return 0.0, None
    reference = efficiency.reference_tool_calls
    if efficiency.max_tool_calls is not None and calls > efficiency.max_tool_calls:
        penalty = 1.0
    else:
        penalty = min(1.0, max(0, calls - reference) * efficiency.penalty_per_extra_call)
    return penalty, calls / reference


async def _run_verifier(verifier: Verifier, answer: str) -> tuple[bool, str]:
    from agentflow.sandboxes import create_sandbox

    sandbox = await create_sandbox("local")
    try:
        result = await sandbox.exec(verifier.cmd, stdin=answer, timeout=verifier.timeout_s)
    finally:
        await sandbox.close()
    detail = f"exit {result.exit_code}" + (" (timed out)" if result.timed_out else "")
    return result.exit_code == verifier.expect_exit and not result.timed_out, detail
