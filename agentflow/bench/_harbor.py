"""Harbor task directories (the Terminal-Bench 2.0 format) as a task source.

``tasks: {source: harbor, path: DIR}`` reads every directory of ``DIR`` that holds a ``task.toml``::

    DIR/hello-file/
      task.toml             # [verifier] timeout_sec, env, user; [agent] timeout_sec, user; [environment]
                            # build_timeout_sec, docker_image, cpus, memory_mb (memory), storage_mb (storage), gpus,
                            # allow_internet; [metadata] ...
      instruction.md        # the agent's input: the task field `instruction`
      environment/Dockerfile  # the task's own system, built with the Docker engine (never pulled); or a prebuilt
                              # [environment] docker_image already on the engine
      tests/test.sh         # the verifier: run after the agent, writes /logs/verifier/reward.txt or reward.json
      solution/solve.sh     # optional: the reference solution `bench run --oracle` runs instead of the agent

Each task becomes a :class:`~agentflow.bench._tasks.Task` with the fields ``instruction``, ``task_dir``, ``name``
and ``metadata``, and a :class:`~agentflow.bench._tasks.TaskEnvironment`: the runner starts each of its runs in a
fresh docker sandbox of the task's image and the ``harbor_verifier`` hook scores the run in it. A directory that
cannot be a task (no instruction, TOML that does not parse, a malformed value, a missing Dockerfile or test.sh, GPUs
asked for, a Docker Compose environment: one container per run here) is a problem named by the directory; the
other tasks run. What is read but not honoured is a warning of the task (``TaskSet.warnings``): keys this reader does
not know (Harbor adds fields over time; they are ignored, as Harbor ignores them) and ``storage_mb`` (the engine's
overlay2 storage limits a container's disk only on xfs with pquota, so the docker sandbox does not try).
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
from agentflow.sandboxes import (
    TASK_IMAGE_LABEL,
    DockerSandbox,
    Sandbox,
    SandboxLimits,
    build_context_image,
    context_hash,
    image_workdir,
)

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
        warnings: list[TaskProblem] = []
        try:
            found.tasks.append(_read_task(task_dir, warnings))
        except _BrokenTask as exc:
            found.problems.append(TaskProblem(0, str(exc), where=str(task_dir)))
        else:
            found.warnings.extend(warnings)
    return found


class _BrokenTask(Exception):
    """A task directory that cannot become a task (the message says why)."""


# The keys of task.toml this reader knows (Harbor's TaskConfig); any other key is ignored and listed as a warning of
# its task, since Harbor adds fields over time and a task written for a newer Harbor should still run here.
_KNOWN_KEYS: dict[str, frozenset[str] | None] = {
    "": frozenset(
        {"version", "schema_version", "source", "task", "metadata", "verifier", "agent", "environment", "solution"}
    ),
    "task": frozenset({"name"}),
    "metadata": None,  # free-form
    "verifier": frozenset({"timeout_sec", "env", "user"}),
    "agent": frozenset({"timeout_sec", "user"}),
    "environment": frozenset(
        {
            "build_timeout_sec",
            "docker_image",
            "cpus",
            "memory_mb",
            "memory",
            "storage_mb",
            "storage",
            "gpus",
            "gpu_types",
            "allow_internet",
        }
    ),
    "solution": frozenset(),  # Harbor's [solution] env is not passed to the oracle's solve.sh: listed as ignored
}
_COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_MB = {"": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$")


def _read_task(task_dir: Path, warnings: list[TaskProblem]) -> Task:
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
    compose = next((name for name in _COMPOSE_FILES if (context / name).is_file()), None)
    if compose is not None:
        raise _BrokenTask(
            f"environment/{compose}: multi-container tasks (a Docker Compose environment) are not supported: "
            "the docker sandbox runs each attempt in one container"
        )
    tests = task_dir / "tests"
    if not (tests / "test.sh").is_file():
        raise _BrokenTask("no tests/test.sh (the verifier)")
    verifier = _table(config, "verifier")
    agent = _table(config, "agent")
    environment = _table(config, "environment")
    docker_image = environment.get("docker_image")
    if docker_image is not None and (not isinstance(docker_image, str) or not docker_image.strip()):
        raise _BrokenTask(f"task.toml: [environment] docker_image must be an image name, not {docker_image!r}")
    if docker_image is None and not (context / "Dockerfile").is_file():
        raise _BrokenTask("no environment/Dockerfile (the task's image) and no [environment] docker_image")
    gpus = environment.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise _BrokenTask(f"task.toml: [environment] gpus must be a whole number, not {gpus!r}")
    if gpus > 0:
        raise _BrokenTask(f"task.toml: [environment] gpus = {gpus}: the docker sandbox gives a task no GPU")
    storage_mb = _size_mb(environment, "storage_mb", "storage")
    if storage_mb is not None:
        warnings.append(
            TaskProblem(
                0,
                f"task.toml: [environment] storage_mb = {storage_mb} is not enforced: the docker sandbox cannot "
                "limit a container's disk on this engine's storage (overlay2 quotas need xfs with pquota)",
                where=str(task_dir),
            )
        )
    unknown = _unknown_keys(config)
    if unknown:
        warnings.append(TaskProblem(0, f"task.toml: unknown keys ignored: {', '.join(unknown)}", where=str(task_dir)))
    solution = task_dir / "solution"
    metadata = _table(config, "metadata")
    name = str(_table(config, "task").get("name") or task_dir.name)
    memory_mb = _size_mb(environment, "memory_mb", "memory")
    env = TaskEnvironment(
        context=context,
        image=docker_image.strip() if isinstance(docker_image, str) else _image_tag(task_dir.name, context),
        prebuilt=docker_image is not None,
        cpus=_number(environment, "cpus", DEFAULT_CPUS, "environment"),
        memory_mb=memory_mb if memory_mb is not None else DEFAULT_MEMORY_MB,
        storage_mb=storage_mb,
        network=_flag(environment, "allow_internet", False, "environment"),
        build_timeout_s=_number(environment, "build_timeout_sec", DEFAULT_BUILD_TIMEOUT_S, "environment"),
        agent_timeout_s=_number(agent, "timeout_sec", DEFAULT_AGENT_TIMEOUT_S, "agent"),
        agent_user=_user(agent, "agent"),
        tests=tests,
        verifier_timeout_s=_number(verifier, "timeout_sec", DEFAULT_VERIFIER_TIMEOUT_S, "verifier"),
        verifier_env={str(key): str(value) for key, value in _table(verifier, "env").items()},
        verifier_user=_user(verifier, "verifier"),
        solution=solution if (solution / "solve.sh").is_file() else None,
    )
    fields = {
        "instruction": instruction_file.read_text(encoding="utf-8"),
        "task_dir": str(task_dir.resolve()),
        "name": name,
        "metadata": metadata,
    }
    return Task(task_dir.name, fields, 0, environment=env)


def _image_tag(task_name: str, context: Path) -> str:
    return f"{IMAGE_REPOSITORY}/{_tag_name(task_name)}:{context_hash(context)[:12]}"


def _unknown_keys(config: Mapping[str, Any]) -> list[str]:
    unknown = [key for key in config if key not in (_KNOWN_KEYS[""] or ())]
    for section, known in _KNOWN_KEYS.items():
        table = config.get(section)
        if section and known is not None and isinstance(table, Mapping):
            unknown += [f"[{section}] {key}" for key in table if key not in known]
    return unknown


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


def _flag(table: Mapping[str, Any], key: str, default: bool, section: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise _BrokenTask(f"task.toml: [{section}] {key} must be true or false, not {value!r}")
    return value


def _size_mb(table: Mapping[str, Any], key: str, legacy: str) -> int | None:
    """A size in MB: ``key`` (a number of MB) or Harbor's older ``legacy`` spelling (a string such as ``"2G"``)."""
    if key in table:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise _BrokenTask(f"task.toml: [environment] {key} must be a positive number of MB, not {value!r}")
        return int(value)
    if legacy not in table:
        return None
    value = table[legacy]
    matched = _SIZE.match(value) if isinstance(value, str) else None
    size = float(matched.group(1)) * _SIZE_MB[matched.group(2).lower()] if matched else 0.0
    if size < 1:
        raise _BrokenTask(
            f'task.toml: [environment] {legacy} must be a size such as "2G" or "512M" (at least 1M), not {value!r}'
        )
    return int(size)


def _user(table: Mapping[str, Any], section: str) -> str | None:
    """Who runs the agent's (or the verifier's) commands: a user name or uid, optionally ``:group``."""
    value = table.get("user")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not _USER.match(value):
        raise _BrokenTask(
            f"task.toml: [{section}] user must be a user name or uid (`name`, `1000:1000`), not {value!r}"
        )
    return value


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
                if environment.prebuilt:
                    return PreparedEnvironment(
                        environment.image, await asyncio.to_thread(image_workdir, environment.image)
                    )
                workdir, _ = await asyncio.to_thread(
                    build_context_image,
                    environment.context,
                    environment.image,
                    timeout_s=environment.build_timeout_s,
                    labels={TASK_IMAGE_LABEL: environment.context.parent.name},
                )
                return PreparedEnvironment(environment.image, workdir)

            build = self._builds[environment.image] = asyncio.ensure_future(run_build())
        return await asyncio.shield(build)


async def open_task_sandbox(
    environment: TaskEnvironment, prepared: PreparedEnvironment, limits: SandboxLimits, labels: Mapping[str, str]
) -> Sandbox:
    """A fresh docker sandbox of the task's image, with the task's resources over the workflow's limits.

    Never pooled: the agent and the verifier may write anywhere in the container (``/app``, ``/tests``,
    ``/logs``), which a pool's reset (the workdir only) would not undo. The agent's commands run as the task's
    ``[agent] user`` (root when it names none); the verifier's as its ``[verifier] user``.
    """
    task_limits = limits.model_copy(update={"memory_mb": environment.memory_mb, "network": environment.network})
    return await DockerSandbox.create(
        task_limits,
        image=prepared.image,
        cpus=environment.cpus,
        labels=labels,
        task_system=True,
        run_as=environment.agent_user,
        switch_users=environment.verifier_user is not None,
    )
