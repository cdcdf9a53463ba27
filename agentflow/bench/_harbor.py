"""Harbor task directories (the Terminal-Bench 2.0 format) as a task source.

``tasks: {source: harbor, path: DIR}`` reads every directory of ``DIR`` that holds a ``task.toml``::

    DIR/hello-file/
      task.toml             # [verifier] timeout_sec, env; [agent] timeout_sec;
                            # [environment] build_timeout_sec, cpus, memory_mb, allow_internet; [metadata] ...
      instruction.md        # the agent's input: the task field `instruction`
      environment/Dockerfile  # the task's own system, built with the Docker engine (never pulled)
      tests/test.sh         # the verifier: run after the agent, writes /logs/verifier/reward.txt or reward.json
      solution/solve.sh     # optional: the reference solution `bench run --oracle` runs instead of the agent

Each task becomes a :class:`~agentflow.bench._tasks.Task` with the fields ``instruction``, ``task_dir``, ``name``
and ``metadata``, and a :class:`~agentflow.bench._tasks.TaskEnvironment`: the runner starts each of its runs in a
fresh docker sandbox of the task's image and the ``harbor_verifier`` hook scores the run in it. A directory that
cannot be a task (no instruction, TOML that does not parse, a missing Dockerfile or test.sh) is a problem named by
the directory; the other tasks run.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.bench._tasks import Task, TaskEnvironment, TaskProblem, TaskSet
from agentflow.errors import ConfigError
from agentflow.sandboxes import DockerSandbox, Sandbox, SandboxLimits, build_context_image, context_hash

IMAGE_REPOSITORY = "agentflow-harbor"
"""Images built from task directories are tagged ``agentflow-harbor/<task>:<hash12>``."""

# Harbor's defaults where task.toml leaves a value out
DEFAULT_AGENT_TIMEOUT_S = 600.0
DEFAULT_VERIFIER_TIMEOUT_S = 600.0
DEFAULT_BUILD_TIMEOUT_S = 600.0
DEFAULT_CPUS = 1.0
DEFAULT_MEMORY_MB = 2048

SOLUTION_DIR = "/solution"
TESTS_DIR = "/tests"
REWARD_DIR = "/logs/verifier"


def read_harbor_tasks(folder: Path) -> TaskSet:
    """The tasks of a folder of Harbor task directories, in name order; a broken directory is a problem.

    Raises:
        ConfigError: ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise ConfigError(
            f"harbor tasks: {folder} is not a folder",
            fix="`tasks.path` of a harbor benchmark names the folder holding the task directories",
        )
    found = TaskSet(folder)
    for task_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found.tasks.append(_read_task(task_dir))
        except _BrokenTask as exc:
            found.problems.append(TaskProblem(0, str(exc), where=str(task_dir)))
    return found


class _BrokenTask(Exception):
    """A task directory that cannot become a task (the message says why)."""


def _read_task(task_dir: Path) -> Task:
    config_file = task_dir / "task.toml"
    if not config_file.is_file():
        raise _BrokenTask("no task.toml")
    try:
        config = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _BrokenTask(f"task.toml is not valid TOML: {exc}") from None
    instruction_file = task_dir / "instruction.md"
    if not instruction_file.is_file():
        raise _BrokenTask("no instruction.md (the agent's instruction)")
    context = task_dir / "environment"
    if not (context / "Dockerfile").is_file():
        raise _BrokenTask("no environment/Dockerfile (the task's image)")
    tests = task_dir / "tests"
    if not (tests / "test.sh").is_file():
        raise _BrokenTask("no tests/test.sh (the verifier)")
    verifier = _table(config, "verifier")
    agent = _table(config, "agent")
    environment = _table(config, "environment")
    solution = task_dir / "solution"
    metadata = _table(config, "metadata")
    name = str(_table(config, "task").get("name") or task_dir.name)
    env = TaskEnvironment(
        context=context,
        image=f"{IMAGE_REPOSITORY}/{_tag_name(task_dir.name)}:{context_hash(context)[:12]}",
        cpus=_number(environment, "cpus", DEFAULT_CPUS, "environment"),
        memory_mb=int(_number(environment, "memory_mb", DEFAULT_MEMORY_MB, "environment")),
        network=bool(environment.get("allow_internet", False)),
        build_timeout_s=_number(environment, "build_timeout_sec", DEFAULT_BUILD_TIMEOUT_S, "environment"),
        agent_timeout_s=_number(agent, "timeout_sec", DEFAULT_AGENT_TIMEOUT_S, "agent"),
        tests=tests,
        verifier_timeout_s=_number(verifier, "timeout_sec", DEFAULT_VERIFIER_TIMEOUT_S, "verifier"),
        verifier_env={str(key): str(value) for key, value in _table(verifier, "env").items()},
        solution=solution if (solution / "solve.sh").is_file() else None,
    )
    fields = {
        "instruction": instruction_file.read_text(encoding="utf-8"),
        "task_dir": str(task_dir.resolve()),
        "name": name,
        "metadata": metadata,
    }
    return Task(task_dir.name, fields, 0, environment=env)


def _table(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key, {})
    if not isinstance(value, Mapping):
        raise _BrokenTask(f"task.toml: [{key}] is a {type(value).__name__}, not a table")
    return value


def _number(table: Mapping[str, Any], key: str, default: float, section: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _BrokenTask(f"task.toml: [{section}] {key} must be a positive number, not {value!r}")
    return float(value)


def _tag_name(name: str) -> str:
    """A task directory's name as a Docker repository path component (lower case, [a-z0-9._-])."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return cleaned or "task"


@dataclass(frozen=True)
class PreparedEnvironment:
    """A task's image, built (or found) on the engine, and its working directory (``WORKDIR``)."""

    image: str
    workdir: str


class TaskImages:
    """Builds each task's image once per process (concurrent runs of a task wait for the same build)."""

    def __init__(self) -> None:
        self._builds: dict[str, asyncio.Task[PreparedEnvironment]] = {}

    async def prepare(self, environment: TaskEnvironment) -> PreparedEnvironment:
        """The task's image, built now unless the engine holds it; a failed build fails every run of the task.

        Raises:
            SandboxError: the build failed (or the engine is unavailable: ``SandboxUnavailableError``).
        """
        build = self._builds.get(environment.image)
        if build is None:

            async def run_build() -> PreparedEnvironment:
                workdir, _ = await asyncio.to_thread(
                    build_context_image, environment.context, environment.image, timeout_s=environment.build_timeout_s
                )
                return PreparedEnvironment(environment.image, workdir)

            build = self._builds[environment.image] = asyncio.ensure_future(run_build())
        return await asyncio.shield(build)


async def open_task_sandbox(
    environment: TaskEnvironment, prepared: PreparedEnvironment, limits: SandboxLimits, labels: Mapping[str, str]
) -> Sandbox:
    """A fresh docker sandbox of the task's image, with the task's resources over the workflow's limits.

    Never pooled: the agent and the verifier may write anywhere in the container (``/app``, ``/tests``,
    ``/logs``), which a pool's reset (the workdir only) would not undo.
    """
    task_limits = limits.model_copy(update={"memory_mb": environment.memory_mb, "network": environment.network})
    return await DockerSandbox.create(
        task_limits, image=prepared.image, cpus=environment.cpus, labels=labels, task_system=True
    )
