"""The Sandbox contract every backend keeps."""

from __future__ import annotations

import abc
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SandboxLimits(BaseModel):
    """Resource limits of one sandbox; the defaults are the embedded defaults."""

    model_config = ConfigDict(extra="forbid")

    exec_timeout_s: float = Field(default=30.0, gt=0, description="wall-clock limit of one exec")
    cpu_s: int = Field(default=60, gt=0, description="CPU seconds of one exec (RLIMIT_CPU)")
    memory_mb: int = Field(default=1024, gt=0, description="address-space limit of one exec")
    pids: int = Field(default=128, gt=0, description="processes/threads the sandbox user may run")
    file_size_mb: int = Field(default=256, gt=0, description="largest file one exec may write (RLIMIT_FSIZE)")
    output_bytes: int = Field(default=1_000_000, gt=0, description="cap on stdout and on stderr, each")
    read_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="largest file read_file returns; a larger one raises FileTooLargeError, read no further",
    )
    network: bool = Field(default=False, description="allow network access")


@dataclass(frozen=True)
class ExecResult:
    """What one command did inside a sandbox.

    ``exit_code`` is the command's own: its exit status, or minus the signal number when a signal killed it (as
    ``subprocess`` reports it: ``-9`` for SIGKILL, ``-15`` for SIGTERM; a shell's ``128 + n`` is a command that
    exited with that status). A command killed for its timeout has ``timed_out`` set (and usually ``-9``).
    """

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "timed_out": self.timed_out,
            "truncated": self.truncated,
            "duration_s": round(self.duration_s, 4),  # 0.1 ms, as seconds_since() records durations
        }


@dataclass(frozen=True)
class IsolationReport:
    """The isolation a sandbox actually obtained, recorded in the trace."""

    backend: str
    network_isolated: bool
    filesystem_isolated: bool
    pid_namespace: bool
    resource_limits: bool
    details: dict[str, Any] = field(default_factory=lambda: {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "network_isolated": self.network_isolated,
            "filesystem_isolated": self.filesystem_isolated,
            "pid_namespace": self.pid_namespace,
            "resource_limits": self.resource_limits,
            "details": self.details,
        }


class Sandbox(abc.ABC):
    """An isolated place to run commands and keep files.

    Every path argument is relative to the sandbox workdir (or absolute inside it, as the backend shows it);
    a path that escapes the workdir raises ``PathOutsideWorkdirError``.

    Implementations raise the built-in ``FileNotFoundError`` for a missing file, ``PermissionError``
    (``PathOutsideWorkdirError``) for a path outside the workdir and for a file the sandbox user may not read or
    write (file operations act with that user's rights, as its commands do), ``IsADirectoryError`` when a file was
    expected, ``FileTooLargeError`` (an ``OSError``) when ``read_file`` meets a file over ``limits.read_bytes``, and
    a ``SandboxError`` subclass when the backend itself fails. Messages name paths as the sandbox shows them, never
    where the backend keeps them on the host. A command that fails or times out is not an
    exception: it is an ``ExecResult`` with its exit code or ``timed_out``.
    """

    backend: str = "abstract"
    limits: SandboxLimits
    """The limits the sandbox was created with (every backend sets it)."""

    @abc.abstractmethod
    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``cmd`` (an argv list, no shell) and return what it did."""

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """Return the bytes of a file inside the workdir, at most ``limits.read_bytes`` of them.

        A larger file raises ``FileTooLargeError`` rather than coming back cut: a truncated file written back
        would silently lose its end. Backends stop reading at the cap, so memory stays bounded.
        """

    @abc.abstractmethod
    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file inside the workdir, creating parent directories."""

    @abc.abstractmethod
    async def list_files(self, path: str = ".") -> list[str]:
        """Return the relative paths of the regular files under ``path`` (recursive, sorted)."""

    @abc.abstractmethod
    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        """Copy a host directory's contents into the workdir."""

    @abc.abstractmethod
    def isolation(self) -> IsolationReport:
        """Report the isolation actually obtained on this machine."""

    @property
    @abc.abstractmethod
    def workdir(self) -> str:
        """The workdir path as commands inside the sandbox see it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource (processes, files); safe to call twice."""

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


ExecObserver = Callable[[list[str], "str | None", ExecResult], None]
"""Told of each command an observed sandbox ran: its argv, its ``cwd`` (None: the workdir) and its result."""


class ObservedSandbox(Sandbox):
    """Another sandbox, unchanged, except that every command it runs is reported to ``observer`` after it ends.

    Whoever is handed a sandbox (a tool through ``ToolContext``, a reward hook its fresh sandbox) gets it through
    this view, so no command of theirs can run without a ``sandbox_exec`` event in the trace.
    """

    def __init__(self, inner: Sandbox, observer: ExecObserver) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.limits = inner.limits
        self._observer = observer

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        result = await self.inner.exec(cmd, stdin=stdin, cwd=cwd, env=env, timeout=timeout)
        self._observer(cmd, cwd, result)
        return result

    async def read_file(self, path: str) -> bytes:
        return await self.inner.read_file(path)

    async def write_file(self, path: str, data: str | bytes) -> None:
        await self.inner.write_file(path, data)

    async def list_files(self, path: str = ".") -> list[str]:
        return await self.inner.list_files(path)

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        await self.inner.copy_in(source_dir, dest)

    def isolation(self) -> IsolationReport:
        return self.inner.isolation()

    @property
    def workdir(self) -> str:
        return self.inner.workdir

    async def close(self) -> None:
        await self.inner.close()


def workdir_relative(path: str, workdir: str) -> str:
    """``path`` relative to a sandbox's ``workdir`` as commands see it, refused when it lexically leaves the workdir.

    For backends that check paths on the host side before a remote call; symlinks are the backend's to check where
    the files live.

    Raises:
        PathOutsideWorkdirError: ``path`` is absolute outside the workdir, or climbs out of it with ``..``.
    """
    from agentflow.errors import PathOutsideWorkdirError

    pure = posixpath.normpath(path or ".")
    if pure.startswith("/"):
        if pure == workdir:
            return "."
        if not pure.startswith(workdir + "/"):
            raise PathOutsideWorkdirError(f"{path!r} is outside the sandbox workdir {workdir}")
        pure = pure[len(workdir) + 1 :]
    if pure == ".." or pure.startswith("../"):
        raise PathOutsideWorkdirError(f"{path!r} resolves outside the sandbox workdir {workdir}")
    return pure


_FILE_ERROR_WORDS: dict[type[OSError], str] = {
    FileNotFoundError: "does not exist in the sandbox",
    IsADirectoryError: "is a directory",
    NotADirectoryError: "is not a directory (or a folder on its way is a file)",
    PermissionError: "is not accessible: permission denied to the sandbox user",
    FileExistsError: "already exists",
}


def file_error(kind: type[OSError], path: str) -> OSError:
    """The built-in exception for a file operation on ``path`` that failed, worded the same by every backend.

    ``path`` is the path as the caller gave it (a sandbox path): the message a model reads never names where the
    backend keeps the file on the host.
    """
    words = next((text for base, text in _FILE_ERROR_WORDS.items() if issubclass(kind, base)), "failed")
    return kind(f"{path!r} {words}")
