"""The Docker sandbox: start a hardened container running the exec server, and drive it through the channel."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import os
import secrets
import signal
import socket
import ssl
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentflow.errors import FileTooLargeError, PathOutsideWorkdirError, SandboxError, SandboxUnavailableError
from agentflow.sandboxes._base import (
    ExecOutput,
    ExecRequest,
    IsolationReport,
    Sandbox,
    SandboxLimits,
    file_error,
    workdir_relative,
)
from agentflow.sandboxes._docker.channel import _Channel
from agentflow.sandboxes._docker.client import (
    DEFAULT_IMAGE,
    FORK_OF_LABEL,
    IMAGE_ENV_VAR,
    LABEL,
    OWNER_LABEL,
    POOL_LABEL,
    SNAPSHOT_LABEL,
    SNAPSHOT_REPOSITORY,
    _docker,
    _install_exit_handlers,
    _owned,
    _owned_lock,
    _owner,
    _remove_container,
    _remove_snapshot_image,
    cleanup_containers,
    docker_client,
)
from agentflow.sandboxes._registry import sandbox

WORKDIR = "/workspace"
SANDBOX_USER = "1000:1000"
TASK_SYSTEM_USER = "0:0"
"""Who runs the commands in a task's own system image (``task_system``): root."""
TASK_SYSTEM_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
"""The only capabilities root keeps in a task's own system: owning and reaching the system's files (a task's setup
and verifier write files of other users, ``cp -a`` keeps owners); no setuid, network admin, mounts or ptrace."""
USER_SWITCH_CAPABILITIES = ["SETUID", "SETGID", "KILL", "SYS_PTRACE"]
"""What root keeps in addition in a task's system whose commands run as other users (``run_as``, ``commands_as``):
becoming the user (``setpriv``), and, when an exec ends or times out, killing the user's processes that carry its
marker (SYS_PTRACE: reading another user's ``/proc/<pid>/environ``). The user's commands have none of them (a
non-root uid after ``setpriv``, and no new privileges)."""
# $1 the user (`name`, `uid`, `name:group`, `uid:gid`), then the command: run it as that user with that user's
# groups (none for a uid the image does not know, whose group is then the same number).
_RUN_AS = (
    "spec=$1; shift; user=${spec%%:*}; group=${spec#*:}; groups=--init-groups; "
    'if ! id "$user" >/dev/null 2>&1; then '
    'case $user in *[!0-9]*) echo "no user $user in this image" >&2; exit 126;; esac; groups=--clear-groups; '
    '[ "$group" = "$spec" ] && group=$user; '
    'elif [ "$group" = "$spec" ]; then group=$(id -g "$user"); fi; '
    'exec setpriv --reuid "$user" --regid "$group" $groups -- "$@"'
)
_commands_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("agentflow_commands_user", default=None)


@contextlib.contextmanager
def commands_as(user: str) -> Iterator[None]:
    """Within this block, the commands of a docker sandbox started with ``switch_users`` run as ``user`` (``"0"``:
    root) instead of its ``run_as`` user; a harbor verifier stages its tests as root and runs them as its own user."""
    token = _commands_user.set(user)
    try:
        yield
    finally:
        _commands_user.reset(token)


TIMEOUT_EXIT_CODE = -signal.SIGKILL
"""``ExecResult.exit_code`` of a command killed on timeout (``timed_out`` is True): -9, as for SIGKILL."""

_SERVER_SOURCE = Path(__file__).parents[1] / "_execserver.py"
_SERVER_MEMORY_MB = 64  # headroom above limits.memory_mb for the exec server, tmpfs pages and the init process
_SERVER_PIDS = 32  # headroom above limits.pids for docker-init, the server and its threads
_READY_TIMEOUT_S = 30.0
_REPLY_GRACE_S = 15.0  # how long past an exec's own timeout the host waits before it declares the container broken
_FILE_TIMEOUT_S = 120.0


def _raise_reply_error(header: dict[str, Any], path: str) -> None:
    error, message = header.get("error"), str(header.get("message", ""))
    if error is None:
        return
    if error == "outside":
        raise PathOutsideWorkdirError(f"{path!r} resolves outside the sandbox workdir {WORKDIR}")
    if error == "FileTooLargeError":
        raise FileTooLargeError(path, int(header["limit"]))
    builtin = {
        "FileNotFoundError": FileNotFoundError,
        "IsADirectoryError": IsADirectoryError,
        "NotADirectoryError": NotADirectoryError,
        "PermissionError": PermissionError,
        "FileExistsError": FileExistsError,
    }.get(str(error))
    if builtin is not None:
        # the server's own message names the container's paths; the caller's path is what the model knows
        raise file_error(builtin, path)
    raise SandboxError(f"the exec server failed: {error}: {message}")


def _relative(path: str) -> str:
    return workdir_relative(path, WORKDIR)


# -- container start ----------------------------------------------------------------------------------------------


def _host_config(
    client: Any,
    limits: SandboxLimits,
    cpus: float,
    workdir_mb: int,
    labels: dict[str, str],
    *,
    task_system: bool,
    switch_users: bool = False,
) -> Any:
    from docker.types import DriverConfig, Mount, Ulimit  # type: ignore[import-untyped]

    memory = f"{limits.memory_mb + _SERVER_MEMORY_MB}m"
    # The workdir is an anonymous tmpfs volume, not a plain tmpfs mount: the engine's archive API (copy_in) writes
    # into volumes of a read-only container, and auto_remove deletes the volume with the container.
    workdir = Mount(
        target=WORKDIR,
        source=None,
        type="volume",
        labels=labels,
        driver_config=DriverConfig(
            "local", {"type": "tmpfs", "device": "tmpfs", "o": f"size={workdir_mb}m,uid=1000,gid=1000,mode=0755"}
        ),
    )
    return client.api.create_host_config(
        network_mode="bridge" if limits.network else "none",
        read_only=not task_system,
        mounts=[workdir],
        tmpfs={"/tmp": "size=64m,mode=1777,nosuid,nodev"},  # noqa: S108 - the container's private /tmp
        shm_size="16m",
        cap_drop=["ALL"],
        cap_add=(TASK_SYSTEM_CAPABILITIES + (USER_SWITCH_CAPABILITIES if switch_users else []))
        if task_system
        else None,
        security_opt=["no-new-privileges"],
        init=True,
        auto_remove=True,
        mem_limit=memory,
        memswap_limit=memory,
        pids_limit=limits.pids + _SERVER_PIDS,
        nano_cpus=int(cpus * 1e9),
        ulimits=[Ulimit(name="nofile", soft=1024, hard=1024), Ulimit(name="core", soft=0, hard=0)],
    )


def _start_container(
    image: str,
    limits: SandboxLimits,
    *,
    cpus: float,
    workdir_mb: int,
    labels: dict[str, str],
    task_system: bool,
    switch_users: bool = False,
) -> tuple[str, socket.socket]:
    """Create and start a container running the exec server; return its id and a socket on its stdio."""
    docker = _docker()
    client = docker_client()
    all_labels = {LABEL: "docker", OWNER_LABEL: _owner(), **labels}
    try:
        created = client.api.create_container(
            image,
            command=["python3", "-I", "-S", "-c", _SERVER_SOURCE.read_text()],
            user=TASK_SYSTEM_USER if task_system else SANDBOX_USER,
            working_dir=WORKDIR,
            environment={"AGENTFLOW_WORKDIR": WORKDIR, "HOME": WORKDIR, "LANG": "C.UTF-8"},
            stdin_open=True,  # with detach=False this also sets StdinOnce: stdin closes when we disconnect
            hostname="sandbox",
            labels=all_labels,
            host_config=_host_config(
                client, limits, cpus, workdir_mb, all_labels, task_system=task_system, switch_users=switch_users
            ),
        )
    except docker.errors.ImageNotFound:
        raise SandboxUnavailableError(
            f"the sandbox image {image!r} is not on this Docker engine; build it with "
            f"`agentflow sandbox build python` (no registry needed) or `docker build -t {image} sandboxes/python`"
        ) from None
    except docker.errors.APIError as exc:
        raise SandboxError(f"the Docker engine refused to create the sandbox container: {exc}") from exc
    container_id: str = created["Id"]
    with _owned_lock:
        _owned.add(container_id)
    try:
        # Attach before start, so not a byte of the server's output is lost.
        attached = client.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(attached, "_sock", attached)
        if isinstance(raw, ssl.SSLSocket) or not isinstance(raw, socket.socket):
            raise SandboxUnavailableError(
                "the Docker sandbox needs the engine on a unix socket or plain TCP (DOCKER_HOST); TLS and ssh "
                "connections cannot carry its exec channel"
            )
        # Our own descriptor on the connection: the SDK's response objects may be closed or collected freely.
        own = socket.socket(fileno=os.dup(raw.fileno()))
        attached.close()
        raw.close()
        client.api.start(container_id)
    except BaseException:
        _remove_container(container_id)
        raise
    return container_id, own


@dataclass(frozen=True)
class _Options:
    """How a container was asked for beyond its limits and image: what a fork repeats."""

    cpus: float = 1.0
    workdir_mb: int = 512
    labels: dict[str, str] = field(default_factory=lambda: {})
    task_system: bool = False
    run_as: str | None = None
    switch_users: bool = False


@sandbox("docker")
class DockerSandbox(Sandbox):
    """A hardened container driven by an exec server; see the package docstring for what it isolates.

    Create it with ``await DockerSandbox.create(limits)`` (or ``create_sandbox("docker")``; a warm
    ``SandboxPool`` hands them out in milliseconds). Commands see the workdir at ``/workspace``, run as uid 1000,
    and get an environment of ``PATH``, ``HOME``, ``LANG``, ``TMPDIR`` and what ``exec`` is given. A timeout kills
    the command's whole process tree and returns ``timed_out=True`` with ``exit_code`` -9; a program that cannot be
    started returns 127 (not found) or 126 with the reason on stderr.
    """

    backend = "docker"
    leftover_kind = "container"

    def __init__(
        self, *, limits: SandboxLimits, image: str, container_id: str, channel: _Channel, details: dict[str, Any]
    ) -> None:
        self.limits = limits
        self.image = image
        self.container_id = container_id
        self._channel = channel
        self._details = details
        self._closed = False
        self._options = _Options()
        self._snapshot_image: str | None = None  # the image a fork started from, removed when it closes

    @classmethod
    async def create(
        cls,
        limits: SandboxLimits | None = None,
        *,
        image: str | None = None,
        cpus: float = 1.0,
        workdir_mb: int = 512,
        labels: Mapping[str, str] | None = None,
        task_system: bool = False,
        run_as: str | None = None,
        switch_users: bool = False,
    ) -> DockerSandbox:
        """Start a hardened container and wait for its exec server.

        Args:
            limits: resource limits; the embedded defaults when omitted.
            image: an image with ``python3`` (``AGENTFLOW_DOCKER_IMAGE``, else ``agentflow/python:latest``).
            cpus: CPU cores the container may use.
            workdir_mb: size of the tmpfs workdir.
            labels: extra container labels (a run or pool id).
            task_system: the image is a task's own system (a Harbor task's environment), whose setup, agent and
                verifier write anywhere in it (``/app``, ``/tests``, ``/logs``): the root filesystem is writable
                and commands run as root with only ``TASK_SYSTEM_CAPABILITIES``, still without new privileges or
                (unless the limits allow it) network. Never pool such a container: a reset empties only the workdir.
            run_as: (task_system) the user every command runs as (``name``, ``uid``, ``name:group``; through the
                image's ``setpriv``), unless a ``commands_as`` block names another; None: root.
            switch_users: (task_system) commands may run as other users (``commands_as``): root keeps
                ``USER_SWITCH_CAPABILITIES`` too. Implied by ``run_as``.

        Raises:
            MissingExtraError: the ``docker`` package is not installed.
            SandboxUnavailableError: the engine is not running, or the image is missing (the message says how to
                start it or build it).
            SandboxError: the engine refused the container or its exec server did not start.
        """
        limits = limits or SandboxLimits()
        image = image or os.environ.get(IMAGE_ENV_VAR) or DEFAULT_IMAGE
        if (run_as is not None or switch_users) and not task_system:
            raise SandboxError("run_as and switch_users apply to a task's own system (task_system=True)")
        options = _Options(
            cpus=cpus,
            workdir_mb=workdir_mb,
            labels=dict(labels or {}),
            task_system=task_system,
            run_as=run_as,
            switch_users=switch_users or run_as is not None,
        )
        return await cls._launch(limits, image, image, options)

    @classmethod
    async def _launch(
        cls,
        limits: SandboxLimits,
        image: str,
        start_image: str,
        options: _Options,
        details: Mapping[str, Any] | None = None,
    ) -> DockerSandbox:
        """Start a container of ``start_image`` (``image``, or a fork's snapshot of its parent) and its exec server."""
        _install_exit_handlers()
        started = time.monotonic()
        container_id, own = await asyncio.to_thread(
            _start_container,
            start_image,
            limits,
            cpus=options.cpus,
            workdir_mb=options.workdir_mb,
            labels=options.labels,
            task_system=options.task_system,
            switch_users=options.switch_users,
        )
        try:
            reader, writer = await asyncio.open_connection(sock=own, limit=2**20)
            channel = _Channel(reader, writer, container_id)
            try:
                ready, _ = await asyncio.wait_for(asyncio.shield(channel.ready), _READY_TIMEOUT_S)
            except SandboxError as exc:
                raise SandboxUnavailableError(
                    f"the exec server did not start in image {image!r} (it needs python3): {exc}"
                ) from None
            except TimeoutError:
                channel.close()
                raise SandboxError(f"the exec server in {container_id[:12]} did not start in time") from None
        except BaseException:
            own.close()
            await asyncio.to_thread(_remove_container, container_id)
            raise
        report = {
            "image": image,
            "container": container_id[:12],
            "server_python": ready.get("python"),
            "start_s": round(time.monotonic() - started, 4),
            "cpus": options.cpus,
            "workdir_mb": options.workdir_mb,
            "task_system": options.task_system,
            "run_as": options.run_as,
            "switch_users": options.switch_users,
            **(details or {}),
        }
        created = cls(limits=limits, image=image, container_id=container_id, channel=channel, details=report)
        created._options = options
        return created

    # -- exec -------------------------------------------------------------------------------------------------

    @property
    def workdir(self) -> str:
        """``/workspace``, a size-limited tmpfs volume owned by the sandbox user."""
        return WORKDIR

    @property
    def alive(self) -> bool:
        """Whether the container and its exec server still answer (false once killed from outside or closed)."""
        return not self._closed and self._channel.alive

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        base = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": WORKDIR,
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",  # noqa: S108 - the container's private tmpfs
        }
        base.update(env or {})
        return base

    async def _exec(self, request: ExecRequest) -> ExecOutput:
        """Run one command through the exec server (see ``Sandbox.exec``; the program is looked up on the
        container's ``PATH``). The server kills the command's process tree on timeout and keeps at most
        ``limits.output_bytes`` of each stream, so a flood never crosses the channel.

        Raises:
            PathOutsideWorkdirError: ``cwd`` is outside the workdir.
            FileNotFoundError: ``cwd`` does not exist.
            SandboxError: the container stopped during the exec (killed from outside) or its server stopped answering.
        """
        limit = request.timeout
        argv = request.argv
        user = _commands_user.get() if self._details.get("switch_users") else None
        user = user or self._details.get("run_as")
        if user is not None and user not in ("0", "root", "0:0", "root:root"):
            argv = ["sh", "-c", _RUN_AS, "run-as", str(user), *argv]
        header = {
            "op": "exec",
            "argv": argv,
            "cwd": _relative(request.cwd or "."),
            "env": self._environment(request.env),
            "timeout": limit,
            "cap": self.limits.output_bytes,
            "stdin": request.stdin is not None,
            "rlimits": {
                "cpu": self.limits.cpu_s,
                "as": self.limits.memory_mb * 1024 * 1024,
                "fsize": self.limits.file_size_mb * 1024 * 1024,
            },
        }
        future = self._channel.send(header, request.stdin or b"")
        try:
            reply, payload = await asyncio.wait_for(asyncio.shield(future), limit + _REPLY_GRACE_S)
        except TimeoutError:
            self._channel.close()
            raise SandboxError(
                f"the exec server of container {self.container_id[:12]} did not answer within "
                f"{limit + _REPLY_GRACE_S:g} s; the sandbox is unusable"
            ) from None
        except asyncio.CancelledError:
            # Our caller gave up: the command's process tree must not keep running in the container.
            if self._channel.alive:
                self._channel.send({"op": "kill", "target": header["id"]})
            raise
        _raise_reply_error(reply, request.cwd or ".")
        out_len = int(reply["out_len"])
        return ExecOutput(
            exit_code=int(reply["exit_code"]),
            stdout=payload[:out_len],
            stderr=payload[out_len:],
            timed_out=bool(reply["timed_out"]),
            truncated=bool(reply["truncated"]),
        )

    # -- files ------------------------------------------------------------------------------------------------

    async def _file_op(self, op: str, path: str, payload: bytes = b"", **extra: Any) -> tuple[dict[str, Any], bytes]:
        self._ensure_open()
        reply, data = await self._channel.request(
            {"op": op, "path": _relative(path), **extra}, payload, timeout=_FILE_TIMEOUT_S
        )
        _raise_reply_error(reply, path)
        return reply, data

    async def read_file(self, path: str) -> bytes:
        """Return the bytes of a file inside the workdir (symlinks are resolved inside the container).

        The exec server reads at most ``limits.read_bytes`` plus one byte, as the sandbox user.

        Raises:
            PathOutsideWorkdirError: the path (or a symlink on it) leads outside the workdir.
            FileNotFoundError: no such file.
            IsADirectoryError: the path is a directory.
            PermissionError: the sandbox user may not read it.
            FileTooLargeError: the file is larger than ``limits.read_bytes``.
        """
        return (await self._file_op("read", path, limit=self.limits.read_bytes))[1]

    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file inside the workdir, creating parent directories; the sandbox user owns it.

        Raises:
            PathOutsideWorkdirError: the path (or a symlink on it) leads outside the workdir.
            IsADirectoryError: the path is a directory.
        """
        await self._file_op("write", path, data.encode() if isinstance(data, str) else data)

    async def list_files(self, path: str = ".") -> list[str]:
        """Return the regular files under ``path`` (recursive, sorted, relative to the workdir; no symlinks).

        Raises:
            PathOutsideWorkdirError: the path leads outside the workdir.
            FileNotFoundError: the path does not exist.
        """
        reply, _ = await self._file_op("list", path)
        return [str(name) for name in reply["files"]]

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        """Copy a host directory's contents into the workdir, as one tar through the engine's archive API.

        Raises:
            FileNotFoundError: ``source_dir`` is not a directory.
            PathOutsideWorkdirError: ``dest`` is outside the workdir.
        """
        archive = await asyncio.to_thread(_tar_directory, Path(source_dir))
        reply, _ = await self._file_op("resolve", dest, mkdir=True)
        await asyncio.to_thread(docker_client().api.put_archive, self.container_id, reply["path"], archive)

    async def copy_out(self, path: str, dest_dir: str) -> None:
        """Copy a directory (or file) of the workdir to a host directory, as a tar through the archive API.

        Members are extracted with the ``data`` filter: nothing lands outside ``dest_dir``, no device files.

        Raises:
            PathOutsideWorkdirError: ``path`` is outside the workdir.
            FileNotFoundError: ``path`` does not exist.
        """
        reply, _ = await self._file_op("resolve", path)
        docker = _docker()
        try:
            chunks, _ = await asyncio.to_thread(docker_client().api.get_archive, self.container_id, reply["path"])
            archive = await asyncio.to_thread(lambda: b"".join(chunks))
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{path!r} does not exist in the sandbox") from None
        await asyncio.to_thread(_untar, archive, Path(dest_dir))

    # -- fork -------------------------------------------------------------------------------------------------

    async def fork(self) -> DockerSandbox:
        """A new container with this one's limits, network setting, user, workdir size, labels (plus
        ``agentflow.fork_of``, naming this container) and options, whose files are a copy of this one's.

        Two steps, because ``docker commit`` captures the container's writable layer but neither volumes nor tmpfs
        mounts: the new container starts from a ``docker commit`` snapshot of this one (what a task's own system,
        ``task_system``, changed in its root filesystem: ``/app``, ``/tests``), and the workdir, a tmpfs volume,
        is copied over through the engine's archive API (modes, owners, symlinks and empty folders kept). A
        read-only container (the default) has no writable layer to snapshot, so its fork starts from the same
        image. ``/tmp`` and ``/dev/shm`` (tmpfs) are not copied, nor processes. The snapshot image
        (``agentflow-fork:<parent>-<random>``) is removed when the fork closes (or when a fork of the fork, built on
        it, has closed too); ``agentflow sandbox cleanup`` removes those a killed process left.

        The fork is independent (writes in either never show in the other, closing this one leaves it working)
        and never pooled.

        Raises:
            SandboxError: this sandbox is closed, or the engine failed to snapshot, start or copy.
        """
        self._ensure_open()
        snapshot: str | None = None
        if self._options.task_system:
            snapshot = await asyncio.to_thread(self._commit_snapshot)
        labels = {key: value for key, value in self._options.labels.items() if key != POOL_LABEL}
        options = replace(self._options, labels={**labels, FORK_OF_LABEL: self.container_id})
        details = {"forked_from": self.container_id[:12], "snapshot_image": snapshot}
        try:
            forked = await self._launch(self.limits, self.image, snapshot or self.image, options, details)
        except BaseException:
            if snapshot is not None:
                await asyncio.to_thread(_remove_snapshot_image, snapshot)
            raise
        forked._snapshot_image = snapshot
        forked.forked_from = repr(self)
        try:
            mode = await asyncio.to_thread(_copy_workdir, self.container_id, forked.container_id)
            if mode is not None and mode != _WORKDIR_MODE:  # the archive API leaves the target folder's own mode
                changed = await forked.exec(["chmod", f"{mode:o}", WORKDIR])
                if changed.exit_code != 0:
                    raise SandboxError(f"could not give the fork's workdir mode {mode:o}: {changed.stderr.strip()}")
        except BaseException:
            await forked.close()
            raise
        return forked

    def _commit_snapshot(self) -> str:
        """``docker commit`` this container (paused meanwhile) to a labelled snapshot image; return its id."""
        docker = _docker()
        owner = _owner()
        try:
            committed = docker_client().api.commit(
                self.container_id,
                repository=SNAPSHOT_REPOSITORY,
                tag=f"{self.container_id[:12]}-{secrets.token_hex(4)}",
                changes=[f"LABEL {SNAPSHOT_LABEL}={owner} {FORK_OF_LABEL}={self.container_id}"],
            )
        except docker.errors.APIError as exc:
            raise SandboxError(f"the Docker engine could not snapshot {self.container_id[:12]}: {exc}") from exc
        image_id: str = committed["Id"]
        return image_id

    # -- pool support, report and lifecycle -------------------------------------------------------------------

    async def reset(self, timeout: float = 15.0) -> bool:
        """Kill every process of the sandbox user and empty the workdir, ``/tmp`` and ``/dev/shm`` for reuse.

        Returns:
            True (the container was reset).

        Raises:
            SandboxError: the container did not reset (it should then be discarded).
        """
        self._ensure_open()
        reply, _ = await self._channel.request({"op": "reset"}, timeout=timeout)
        _raise_reply_error(reply, WORKDIR)
        if reply.get("left"):
            raise SandboxError(f"the workdir could not be emptied: {reply['left'][:5]} remain")
        return True

    @classmethod
    def cleanup(cls, *, everything: bool = False) -> list[str]:
        """Remove the sandbox containers (and volumes) of agentflow processes that are gone; see
        ``cleanup_containers``.

        Raises:
            MissingExtraError: the ``docker`` package is not installed.
            SandboxUnavailableError: the engine does not answer.
        """
        return cleanup_containers(everything=everything)

    def isolation(self) -> IsolationReport:
        """Report the container's hardening (all of it holds on any engine that accepts the container)."""
        task_system = bool(self._details.get("task_system"))
        user = TASK_SYSTEM_USER if task_system else SANDBOX_USER
        root = "writable (a task's own system)" if task_system else "read-only"
        caps = "+".join(TASK_SYSTEM_CAPABILITIES) if task_system else "none (cap_drop ALL)"
        if self._details.get("switch_users"):
            caps += "+" + "+".join(USER_SWITCH_CAPABILITIES)
        details: dict[str, Any] = {
            **self._details,
            "workdir": WORKDIR,
            "user": f"uid {user}, capabilities {caps}, no-new-privileges",
            "network": "allowed by limits.network (bridge)" if self.limits.network else "none (no interfaces)",
            "filesystem": f"{root} root; tmpfs {WORKDIR} ({self._details.get('workdir_mb')} MB), /tmp, /dev/shm",
            "memory": f"{self.limits.memory_mb} MB per exec (RLIMIT_AS), container cgroup "
            f"{self.limits.memory_mb + _SERVER_MEMORY_MB} MB, no swap",
            "pids": f"cgroup pids limit {self.limits.pids + _SERVER_PIDS} (limits.pids + exec server headroom)",
            "timeout_kill": "the exec's process group and every process that inherited its marker",
            "environment": "PATH, HOME, LANG, TMPDIR and the variables given to exec",
            "limits": self.limits.model_dump(),
            "known_conformance_failures": list(self.known_failures),  # recorded with the run, for its reader
        }
        return IsolationReport(
            backend=self.backend,
            network_isolated=not self.limits.network,
            filesystem_isolated=True,
            pid_namespace=True,
            resource_limits=True,
            details=details,
        )

    async def close(self) -> None:
        """Stop and remove the container (and its workdir volume); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._channel.close()
        await asyncio.to_thread(_remove_container, self.container_id)
        if self._snapshot_image is not None:
            await asyncio.to_thread(_remove_snapshot_image, self._snapshot_image)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("alive" if self.alive else "dead")
        return f"<DockerSandbox {state} {self.container_id[:12]} image={self.image}>"


def _tar_directory(source: Path) -> bytes:
    """A tar of a directory's contents, owned by the sandbox user (symlinks kept as symlinks)."""

    def as_sandbox_user(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 1000
        info.uname = info.gname = "sandbox"
        return info

    if not source.is_dir():
        raise FileNotFoundError(f"cannot copy into the sandbox: {str(source)!r} is not a directory")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for child in sorted(source.iterdir()):
            archive.add(child, arcname=child.name, filter=as_sandbox_user)
    return buffer.getvalue()


def _untar(archive: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as members:
        members.extractall(dest, filter="data")


_WORKDIR_MODE = 0o755  # as the tmpfs volume is made (see _host_config)
_SPOOL_BYTES = 64 << 20  # a workdir copy up to this size stays in memory on its way; a larger one goes to a file


def _copy_workdir(source_id: str, target_id: str) -> int | None:
    """Copy the workdir of one container into another's (empty) one, as a tar through the archive API; return the
    mode of the source workdir itself (None when the archive did not hold it), which the engine does not apply.

    ``get_archive`` names every member under ``workspace/``; ``put_archive`` must target the workdir itself (the
    volume: the root filesystem may be read-only), so the members are renamed on the way. The tar keeps modes,
    owners, symlinks and empty folders.
    """
    docker = _docker()
    client = docker_client()
    top = WORKDIR.rsplit("/", 1)[1]
    mode: int | None = None
    try:
        chunks, _ = client.api.get_archive(source_id, WORKDIR)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            with (
                tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as source,
                tarfile.open(fileobj=spool, mode="w|") as target,
            ):
                for member in source:
                    if member.name == top:
                        mode = stat.S_IMODE(member.mode)
                        continue
                    if not member.name.startswith(top + "/"):
                        continue
                    # A long or non-ASCII name also sits in the member's PAX header, which tarfile writes as it
                    # was: the renamed fields alone would not change it.
                    member.pax_headers = {
                        key: value for key, value in member.pax_headers.items() if key not in ("path", "linkpath")
                    }
                    member.name = member.name[len(top) + 1 :]
                    if member.islnk() and member.linkname.startswith(top + "/"):  # a hard link names its first path
                        member.linkname = member.linkname[len(top) + 1 :]
                    target.addfile(member, source.extractfile(member) if member.isfile() else None)
            spool.seek(0)
            client.api.put_archive(target_id, WORKDIR, spool)
    except docker.errors.APIError as exc:
        raise SandboxError(f"the Docker engine could not copy the workdir into the fork: {exc}") from exc
    return mode


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the archive API's stream), for ``tarfile`` in stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
