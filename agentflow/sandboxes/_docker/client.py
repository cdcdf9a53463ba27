"""The Docker engine client, and the removal of the sandbox containers this process owns (however it ends)."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from agentflow._processes import pid_alive
from agentflow.errors import MissingExtraError, SandboxUnavailableError

DEFAULT_IMAGE = "agentflow/python:latest"
IMAGE_ENV_VAR = "AGENTFLOW_DOCKER_IMAGE"
"""Overrides the image of ``create_sandbox("docker")`` (the image must have ``python3`` for the exec server)."""

LABEL = "agentflow.sandbox"
OWNER_LABEL = "agentflow.owner"
POOL_LABEL = "agentflow.pool"
FORK_OF_LABEL = "agentflow.fork_of"
"""On a forked sandbox's container and its snapshot image: the id of the container it was forked from."""
SNAPSHOT_LABEL = "agentflow.fork_snapshot"
"""On the image a fork's container starts from (``docker commit`` of its parent): the owner (host:pid) that made it."""
SNAPSHOT_REPOSITORY = "agentflow-fork"

_START_HINT = (
    "start the Docker engine (`sudo systemctl start docker`, or run `dockerd` in the background as root) "
    "or point DOCKER_HOST at a running one"
)


def _docker() -> Any:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        raise MissingExtraError("docker", "docker") from None
    return docker


_clients: dict[str, Any] = {}
_clients_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while the main thread holds it


def docker_client() -> Any:
    """A connected client of the engine ``DOCKER_HOST`` names (the local socket by default), made once per host.

    Raises:
        MissingExtraError: the ``docker`` package is not installed.
        SandboxUnavailableError: the engine does not answer (the message says how to start it).
    """
    docker = _docker()
    key = os.environ.get("DOCKER_HOST", "")
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        where = key or "unix:///var/run/docker.sock"
        if where.startswith("unix://"):
            # Checked here because the SDK leaks the socket of a failed unix connect (a missing socket file, or a
            # stale one that a stopped dockerd left behind).
            _check_unix_socket(where, where[len("unix://") :])
        client = None
        try:
            client = docker.from_env(timeout=120)
            client.ping()
        except docker.errors.DockerException as exc:
            if client is not None:
                client.close()  # its half-made connection must not linger
            raise SandboxUnavailableError(f"cannot reach the Docker engine at {where} ({exc}); {_START_HINT}") from exc
        _clients[key] = client
        return client


def _check_unix_socket(where: str, path: str) -> None:
    if not os.path.exists(path):
        raise SandboxUnavailableError(f"cannot reach the Docker engine: {where} does not exist; {_START_HINT}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError as exc:
            raise SandboxUnavailableError(
                f"cannot reach the Docker engine at {where} ({exc.strerror or exc}); {_START_HINT}"
            ) from None


def docker_available() -> tuple[bool, str]:
    """Whether a Docker engine answers here, and why not (for tests and ``agentflow sandbox check``)."""
    try:
        docker_client()
    except (MissingExtraError, SandboxUnavailableError) as exc:
        return False, str(exc)
    return True, "the Docker engine answers"


def image_available(image: str = DEFAULT_IMAGE) -> bool:
    """Whether the engine holds ``image`` (no pull is attempted: there may be no registry)."""
    try:
        docker_client().images.get(image)
    except (MissingExtraError, SandboxUnavailableError):
        return False
    except _docker().errors.ImageNotFound:
        return False
    return True


# -- containers this process owns, removed however it ends --------------------------------------------------------

_owned: set[str] = set()
_owned_lock = threading.RLock()  # re-entrant, for the same reason
_handlers_installed = False


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_REMOVAL_WAIT_S = 10.0


def _remove_container(container_id: str) -> None:
    """Force-remove a container and its anonymous volumes; gone already is fine."""
    docker = _docker()
    try:
        docker_client().api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        # 409: the engine is already removing it (auto_remove, once the exec server saw its stdin close); wait for
        # that to finish, so that a closed sandbox is gone, not going
        deadline = time.monotonic() + _REMOVAL_WAIT_S
        while time.monotonic() < deadline:
            try:
                docker_client().api.inspect_container(container_id)
            except docker.errors.NotFound:
                break
            time.sleep(0.05)
    finally:
        with _owned_lock:
            _owned.discard(container_id)


# Snapshot images of this process's forks still to remove: one whose removal met a conflict (a fork of the fork
# was committed on top of it, or its container is not gone yet) waits here and is tried again after each removal.
_owned_images: set[str] = set()
_snapshot_removal_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while a removal holds it


def _remove_snapshot_image(image_id: str) -> None:
    """Remove a fork's snapshot image once nothing needs it, then any left waiting that can now go; never raises
    for an image in use (it stays owned: the next removal, exit or ``agentflow sandbox cleanup`` takes it)."""
    with _owned_lock:
        _owned_images.add(image_id)
    _remove_free_snapshots()


def _remove_free_snapshots() -> None:
    docker = _docker()
    with _snapshot_removal_lock:  # forks closing at once: one removes an image, not two racing for it
        progress = True
        while progress:
            progress = False
            with _owned_lock:
                waiting = list(_owned_images)
            for image_id in waiting:
                try:
                    docker_client().api.remove_image(image_id, noprune=False)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code == 409:  # still used by a container or a child image: tried again later
                        continue
                    if not _image_gone(image_id):
                        raise
                with _owned_lock:
                    _owned_images.discard(image_id)
                progress = True


def _image_gone(image_id: str) -> bool:
    """Whether the engine no longer holds an image (its removal may answer 500 when another removal won the race)."""
    try:
        docker_client().api.inspect_image(image_id)
    except _docker().errors.NotFound:
        return True
    return False


def _remove_owned() -> None:
    with _owned_lock:
        leftover = list(_owned)
    for container_id in leftover:
        with contextlib.suppress(Exception):
            _remove_container(container_id)
    with contextlib.suppress(Exception):
        _remove_free_snapshots()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _remove_owned()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # die of SIGTERM as the sender expects, containers gone


def _install_exit_handlers() -> None:
    """Remove this process's containers at interpreter exit and on SIGTERM (whose default skips ``atexit``)."""
    global _handlers_installed  # noqa: PLW0603 - once per process
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_remove_owned)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def cleanup_containers(*, everything: bool = False) -> list[str]:
    """Remove agentflow sandbox containers left behind by processes that are gone, and the snapshot images their
    forks started from (``agentflow-fork:<parent>-<random>``).

    A container of a process alive on this machine is never touched (without ``everything``), whatever its state: a
    "created" one may be starting this moment (a benchmark task's container between create and start, removed under
    it by a cleanup run beside it). Created, exited or dead containers of another machine's processes, or of none
    named, are taken as abandoned.

    Args:
        everything: remove every agentflow sandbox container and fork snapshot image on the engine, also those of
            running processes.

    Returns:
        The names of the containers and images removed.
    """
    client = docker_client()
    host = socket.gethostname()
    removed = []
    for summary in client.api.containers(all=True, filters={"label": LABEL}):
        owner = summary.get("Labels", {}).get(OWNER_LABEL, "")
        owner_host, _, owner_pid = owner.rpartition(":")
        if owner_host == host and owner_pid.isdigit():
            abandoned = not pid_alive(int(owner_pid))
        else:
            abandoned = summary.get("State") in ("created", "exited", "dead")
        if everything or abandoned:
            _remove_container(summary["Id"])
            removed.append(summary["Names"][0].lstrip("/") if summary.get("Names") else summary["Id"][:12])
    for volume in client.api.volumes(filters={"label": LABEL, "dangling": True}).get("Volumes") or []:
        with contextlib.suppress(_docker().errors.APIError):
            client.api.remove_volume(volume["Name"])
    removed.extend(_cleanup_snapshots(client, host, everything=everything))
    return removed


def _cleanup_snapshots(client: Any, host: str, *, everything: bool) -> list[str]:
    """Remove the fork snapshot images of processes that are gone (all of them with ``everything``), newest first:
    a fork of a fork was committed on top of its parent's snapshot, which can go only after it."""
    removed = []
    images = client.api.images(filters={"label": SNAPSHOT_LABEL})
    for summary in sorted(images, key=lambda image: image.get("Created", 0), reverse=True):
        owner = (summary.get("Labels") or {}).get(SNAPSHOT_LABEL, "")
        owner_host, _, owner_pid = owner.rpartition(":")
        # another host's process may still run: only --all removes its snapshots
        abandoned = owner_host == host and owner_pid.isdigit() and not pid_alive(int(owner_pid))
        if not (everything or abandoned):
            continue
        try:
            client.api.remove_image(summary["Id"])
        except _docker().errors.NotFound:
            continue
        except _docker().errors.APIError:
            continue  # in use by a container still running (another host's, or one kept): left for a later run
        tags = [tag for tag in summary.get("RepoTags") or [] if tag != "<none>:<none>"]
        removed.append(tags[0] if tags else summary["Id"].removeprefix("sha256:")[:12])
        with _owned_lock:
            _owned_images.discard(summary["Id"])
    return removed


def new_pool_id() -> str:
    """A short random id for the ``agentflow.pool`` label."""
    return secrets.token_hex(6)
