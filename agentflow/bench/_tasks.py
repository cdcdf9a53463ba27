"""Task sources: the tasks of a benchmark, read from a file, with every unreadable record reported by its line.

A task is one record of the task file (its ``fields``), with an id; the benchmark's ``inputs`` map its fields to
the workflow's inputs. ``jsonl`` reads one JSON object per line (plain or gzip-compressed), ids in ``id`` unless the
benchmark names another field; ``humaneval`` reads HumanEval's data file (ids in ``task_id``). A broken line, a
record without an id or a second record with the same id is a problem of that line: the other tasks still run.
``harbor`` reads a folder of Harbor task directories (see ``agentflow.bench._harbor``): each task brings its own
system (a :class:`TaskEnvironment`), and a broken directory is a problem of that directory.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agentflow.errors import ConfigError, TemplateError
from agentflow.spec._templating import render_value, value_placeholders

DEFAULT_ID_FIELDS = {"jsonl": "id", "humaneval": "task_id"}


@dataclass(frozen=True)
class TaskEnvironment:
    """The system a task brings along (a Harbor task's): the image its runs' sandboxes start from, their resources,
    and the verifier that scores a run in the same container once the agent is done.

    Attributes:
        context: the folder holding the Dockerfile (the image's build context).
        image: the tag of its image, ending in a hash of the folder's content (built once, reused while unchanged).
        prebuilt: ``image`` is the task's ``docker_image`` (used as it is, never built nor pulled), not a build of
            ``context``.
        cpus, memory_mb, network: the container's resources (``network`` False unless the task allows internet).
        storage_mb: the disk the task asks for (None: not said); not enforced (the reader warns).
        build_timeout_s: how long the image may take to build.
        agent_timeout_s: how long the task gives the agent (the oracle's ``solve.sh`` gets as long).
        agent_user: who runs the agent's commands (a user of the image, ``name`` or ``uid[:gid]``); None: root.
        tests: the verifier's folder, copied into the sandbox as ``/tests`` after the agent's run.
        verifier_timeout_s: how long ``bash /tests/test.sh`` may run.
        verifier_env: environment variables of the verifier.
        verifier_user: who runs ``test.sh`` (as ``agent_user``); None: root.
        solution: the reference solution's folder (with ``solve.sh``), None when the task has none.
    """

    context: Path
    image: str
    cpus: float
    memory_mb: int
    network: bool
    build_timeout_s: float
    agent_timeout_s: float
    tests: Path
    verifier_timeout_s: float
    verifier_env: Mapping[str, str] = field(default_factory=lambda: {})
    solution: Path | None = None
    prebuilt: bool = False
    storage_mb: int | None = None
    agent_user: str | None = None
    verifier_user: str | None = None


@dataclass(frozen=True)
class Task:
    """One task of a benchmark: its id and its record (and, for a task with its own system, its environment)."""

    id: str
    fields: Mapping[str, Any]
    line: int  # where it is in the task file, for messages (0 for a task directory)
    environment: TaskEnvironment | None = None


@dataclass(frozen=True)
class TaskProblem:
    """A record of the task file (or a task directory: ``where``) that could not become a task."""

    line: int
    message: str
    where: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else f"line {self.line}: {self.message}"

    def located(self, task_file: Path) -> str:
        """Where the problem is, for a message: ``tasks.jsonl:4`` or the task directory."""
        return self.where or f"{task_file}:{self.line}"


@dataclass
class TaskSet:
    """The tasks read from a task file, in file order, the records that could not be read, and what was read but
    not honoured (``warnings``: a task directory's unknown keys, a resource the sandbox cannot enforce)."""

    path: Path
    tasks: list[Task] = field(default_factory=lambda: [])
    problems: list[TaskProblem] = field(default_factory=lambda: [])
    warnings: list[TaskProblem] = field(default_factory=lambda: [])

    def select(self, ids: list[str] | None = None, limit: int | None = None) -> list[Task]:
        """The tasks named by ``ids`` (in the file's order), or all of them; the first ``limit``.

        Raises:
            ConfigError: an id names no task.
        """
        chosen = self.tasks
        if ids is not None:
            known = {task.id for task in self.tasks}
            unknown = [task_id for task_id in ids if task_id not in known]
            if unknown:
                raise ConfigError(
                    f"no task {unknown[0]!r} in {self.path}",
                    fix="`--tasks` takes ids of the task file, comma-separated",
                )
            wanted = set(ids)
            chosen = [task for task in self.tasks if task.id in wanted]
        return chosen[:limit] if limit is not None else chosen


def read_tasks(path: Path, *, source: str, id_field: str | None = None) -> TaskSet:
    """Read a task file; a record that cannot be read is a problem of its line, the rest are tasks.

    Raises:
        ConfigError: the file cannot be read at all (missing, not gzip when named .gz, not UTF-8), or the harbor
            folder is not a folder.
    """
    if source == "harbor":
        from agentflow.bench._harbor import read_harbor_tasks  # the same package: harbor builds on these types

        return read_harbor_tasks(path)
    key = id_field or DEFAULT_ID_FIELDS.get(source, "id")
    found = TaskSet(path)
    seen: dict[str, int] = {}
    for line_number, text in _lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            found.problems.append(TaskProblem(line_number, f"not JSON: {exc.msg} at column {exc.pos + 1}"))
            continue
        if not isinstance(record, dict):
            found.problems.append(TaskProblem(line_number, f"a task is a JSON object, not {type(record).__name__}"))
            continue
        task_id = record.get(key)
        if not isinstance(task_id, str | int) or isinstance(task_id, bool) or str(task_id) == "":
            found.problems.append(
                TaskProblem(line_number, f"no task id: {key!r} must be a non-empty string or a number")
            )
            continue
        task_id = str(task_id)
        if task_id in seen:
            found.problems.append(TaskProblem(line_number, f"task {task_id!r} again (first on line {seen[task_id]})"))
            continue
        seen[task_id] = line_number
        found.tasks.append(Task(task_id, record, line_number))
    return found


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(path) as lines:
            yield from enumerate(lines, start=1)
    except FileNotFoundError:
        fix = "check `tasks.path` (relative to the benchmark file)"
        raise ConfigError(f"task file not found: {path}", fix=fix) from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ConfigError(f"cannot read task file {path}: {exc}") from None


def _open_text(path: Path) -> IO[str]:
    """The file as text lines, decompressed when it is gzip (``.gz``)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def task_inputs(mapping: Mapping[str, Any], task: Task) -> dict[str, Any]:
    """The workflow inputs of a task: each value of the benchmark's ``inputs`` with its ``{field}`` placeholders
    filled from the task's record (a value that is exactly one placeholder passes the field's value itself).

    Raises:
        ConfigError: a placeholder names a field the task does not have.
    """
    record = dict(task.fields)
    inputs: dict[str, Any] = {}
    for key, template in mapping.items():
        missing = [name for name in value_placeholders(template) if name.split(".")[0] not in record]
        if missing:
            raise ConfigError(
                f"task {task.id!r} (line {task.line}) has no field {missing[0]!r} for input {key!r}",
                fix=f"the task's fields: {', '.join(sorted(record))}",
            )
        try:
            inputs[key] = render_value(template, record)
        except TemplateError as exc:
            raise ConfigError(f"input {key!r} of task {task.id!r}: {exc}") from None
    return inputs
