"""Images built from a folder with a Dockerfile (a benchmark task's environment), cached by a content hash.

A task's image is built once: its tag ends with a hash of every file of the build context (names, modes and
bytes), so an unchanged folder finds its image on the engine and a changed one gets a new tag. The base image is
never pulled: a build whose ``FROM`` image is on the engine runs offline.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from agentflow.errors import SandboxError, SandboxUnavailableError
from agentflow.sandboxes._docker.client import _docker, docker_client

_build_locks: dict[str, threading.Lock] = {}
_build_locks_lock = threading.Lock()


def context_hash(context: Path) -> str:
    """The sha256 of a build context: every regular file's relative path, executable bit and bytes, in path order.

    Raises:
        OSError: a file of the folder cannot be read.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context).as_posix()
        executable = path.stat().st_mode & 0o111 != 0
        digest.update(f"{relative}\0{int(executable)}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_context_image(
    context: Path, tag: str, *, timeout_s: float = 600.0, labels: dict[str, str] | None = None
) -> tuple[str, bool]:
    """Build the Dockerfile of ``context`` as ``tag`` (with ``labels``) unless the engine already holds ``tag``.

    Returns the image's working directory (its ``WORKDIR``, ``/`` when it sets none) and whether it was built now.
    Blocking: call it in a thread. Two callers asking for the same tag at once build it once.

    Raises:
        MissingExtraError: the ``docker`` package is not installed.
        SandboxUnavailableError: the engine does not answer.
        SandboxError: the build failed (the message ends with the build's last output lines).
    """
    docker = _docker()
    client = docker_client()
    with _build_locks_lock:
        lock = _build_locks.setdefault(tag, threading.Lock())
    with lock:
        built = False
        try:
            image = client.images.get(tag)
        except docker.errors.ImageNotFound:
            image = _build(client, docker, context, tag, timeout_s=timeout_s, labels=labels or {})
            built = True
        return _workdir(image), built


def image_workdir(tag: str) -> str:
    """The working directory of an image already on the engine (a task's prebuilt ``docker_image``: never pulled).

    Raises:
        MissingExtraError: the ``docker`` package is not installed.
        SandboxUnavailableError: the engine does not answer.
        SandboxError: the engine does not hold the image.
    """
    docker = _docker()
    try:
        return _workdir(docker_client().images.get(tag))
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"the image {tag!r} is not on this Docker engine (images are never pulled: load or build it first)"
        ) from None
    except docker.errors.APIError as exc:
        raise SandboxError(f"the Docker engine could not inspect {tag!r}: {exc}") from exc
    except docker.errors.DockerException as exc:
        raise SandboxUnavailableError(f"cannot inspect {tag!r}: {exc}") from exc


def _workdir(image: Any) -> str:
    return str((image.attrs.get("Config") or {}).get("WorkingDir") or "/")


def _build(client: Any, docker: Any, context: Path, tag: str, *, timeout_s: float, labels: dict[str, str]) -> Any:
    errors = docker.errors
    try:
        image, _ = client.images.build(
            path=str(context), tag=tag, rm=True, forcerm=True, pull=False, timeout=int(timeout_s), labels=labels
        )
    except errors.BuildError as exc:
        tail = "".join(str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log)[-1500:]
        raise SandboxError(f"the image of {context} did not build: {exc.msg}\n{tail}") from None
    except errors.APIError as exc:
        raise SandboxError(f"the Docker engine refused to build {context}: {exc}") from exc
    except errors.DockerException as exc:
        raise SandboxUnavailableError(f"cannot build {context}: {exc}") from exc
    return image


TASK_IMAGE_LABEL = "agentflow.task_image"
"""The label of every image ``build_context_image`` builds for a task (its value: the task's name); cleanup removes
only images that carry it, never one agentflow did not build."""


def cleanup_task_images(repository: str, *, keep: int = 1) -> list[str]:
    """Untag the task images of ``repository`` (``<repository>/<task>:<hash>``) beyond the newest ``keep`` of each task.

    Only images built by agentflow (labelled ``TASK_IMAGE_LABEL``) are touched; ``keep=0`` removes every one. An
    image that a container still uses stays (the engine refuses), as does every tag of another repository.
    Returns the tags removed.

    Raises:
        MissingExtraError: the ``docker`` package is not installed.
        SandboxUnavailableError: the engine does not answer.
    """
    docker = _docker()
    client = docker_client()
    try:
        summaries = client.api.images(filters={"label": TASK_IMAGE_LABEL})
    except docker.errors.DockerException as exc:
        raise SandboxUnavailableError(f"cannot list the Docker engine's images: {exc}") from exc
    by_task: dict[str, list[tuple[tuple[str, int], str]]] = {}
    for summary in summaries:
        tags = [tag for tag in summary.get("RepoTags") or [] if tag.rpartition(":")[0].startswith(f"{repository}/")]
        if not tags:
            continue
        try:  # the summary's creation time is in whole seconds: two builds of a task can share one
            created = _created(client.api.inspect_image(summary["Id"]).get("Created") or "")
        except docker.errors.APIError:
            continue  # removed meanwhile
        for tag in tags:
            by_task.setdefault(tag.rpartition(":")[0], []).append((created, tag))
    removed = []
    for tags in by_task.values():
        for _, tag in sorted(tags, reverse=True)[keep:]:
            try:
                client.api.remove_image(tag)
            except docker.errors.APIError:
                continue  # a container still runs it (or another cleanup removed it first)
            removed.append(tag)
    return sorted(removed)


def _created(stamp: str) -> tuple[str, int]:
    """An engine's RFC 3339 creation time (``2026-12-01T23:11:08.1234Z``, trailing zeros of the fraction dropped)
    as a sortable (date and time to the second, nanoseconds)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    digits = "".join(ch for ch in fraction if ch.isdigit())[:9]
    return whole, int(digits.ljust(9, "0")) if digits else 0
