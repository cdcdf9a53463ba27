"""The Sandbox contract every backend keeps."""

from __future__ import annotations

import abc
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentflow.errors import PathOutsideWorkdirError, SandboxError
from agentflow.spec import SandboxLimits as SandboxLimits  # noqa: PLC0414 (defined in spec; re-exported with the contract that takes it)


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


@dataclass(frozen=True)
class ExecRequest:
    """One command as a backend's ``_exec`` receives it, already checked and completed by ``Sandbox.exec``.

    ``argv`` is never empty, ``stdin`` is bytes (None: no input, the command reads end of file), ``timeout`` is the
    wall-clock limit in seconds (the caller's, else ``limits.exec_timeout_s``), ``env`` holds only the variables
    the caller gave (the backend adds its own base environment), ``cwd`` is as the caller gave it (None: the
    workdir; the backend maps and checks it).
    """

    argv: list[str]
    stdin: bytes | None
    cwd: str | None
    env: Mapping[str, str]
    timeout: float


@dataclass(frozen=True)
class ExecOutput:
    """What a backend's ``_exec`` returns: the command's raw output, which ``Sandbox.exec`` caps and decodes.

    ``truncated`` says the backend itself dropped output past ``limits.output_bytes`` while reading it (it must keep
    at least that many bytes of each stream, and may stop there so a flood does not fill memory).
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False


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

    A backend implements ``_exec`` (``exec`` does the rest once for every backend: the closed check, refusing an
    empty command, the timeout default, encoding ``stdin``, capping and decoding the output, timing it), sets
    ``_closed`` in ``close()``, and overrides ``reset``, ``alive``, ``known_failures`` and ``cleanup`` where it has
    them. A view over another sandbox (``ObservedSandbox``, a pool's handle) overrides ``exec`` itself and delegates
    to the other sandbox's ``exec``, so the contract is applied once, by the backend underneath, and a view's own
    limits (or their absence) cannot apply a second timeout default or cap.
    """

    backend: str = "abstract"
    limits: SandboxLimits
    """The limits the sandbox was created with (every backend sets it)."""
    leftover_kind: ClassVar[str] = "leftover"
    """What ``cleanup()`` removes, in words (``container``, ``workdir``), for ``agentflow sandbox cleanup``."""
    forked_from: str | None = None
    """What this sandbox is a fork of (the parent as ``repr`` shows it), None for a sandbox made fresh. A fork is
    never pooled: ``SandboxPool.release`` refuses one."""
    _closed: bool = False
    """Set by the backend's ``close()``; ``exec`` (and the backend's file operations, through ``_ensure_open``) then
    refuse."""

    def _ensure_open(self) -> None:
        """Raise ``SandboxError`` once the sandbox is closed."""
        if self._closed:
            raise SandboxError(f"this {self.backend} sandbox is closed")

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``cmd`` (an argv list, no shell) and return what it did.

        Args:
            cmd: the program and its arguments, looked up on the sandbox's ``PATH``.
            stdin: text (sent as UTF-8) or bytes fed to the command's standard input (empty input when omitted).
            cwd: working directory, relative to the workdir or absolute inside it.
            env: variables added to the sandbox's base environment.
            timeout: wall-clock seconds; ``limits.exec_timeout_s`` when omitted.

        Each of stdout and stderr keeps at most ``limits.output_bytes`` bytes (``truncated`` says some were cut),
        decoded as UTF-8 with undecodable bytes replaced.

        Raises:
            ValueError: ``cmd`` is empty.
            PathOutsideWorkdirError: ``cwd`` is outside the workdir.
            FileNotFoundError: ``cwd`` does not exist.
            SandboxError: the sandbox is closed, or the backend failed to run the command.
        """
        self._ensure_open()
        if not cmd:
            raise ValueError("exec needs a command: cmd is an empty list")
        request = ExecRequest(
            argv=list(cmd),
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            cwd=cwd,
            env=dict(env or {}),
            timeout=timeout or self.limits.exec_timeout_s,
        )
        started = time.monotonic()
        output = await self._exec(request)
        duration = time.monotonic() - started
        cap = self.limits.output_bytes
        return ExecResult(
            exit_code=output.exit_code,
            stdout=output.stdout[:cap].decode("utf-8", errors="replace"),
            stderr=output.stderr[:cap].decode("utf-8", errors="replace"),
            timed_out=output.timed_out,
            truncated=output.truncated or len(output.stdout) > cap or len(output.stderr) > cap,
            duration_s=duration,
        )

    async def _exec(self, request: ExecRequest) -> ExecOutput:
        """Run one checked, completed command (see ``ExecRequest``) within ``request.timeout``; every backend
        implements it.

        Not abstract only so that a view, which overrides ``exec`` and never reaches this, need not define it.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither _exec (a backend) nor exec (a view)")

    async def reset(self) -> bool:
        """Make the sandbox as fresh as a new one for its next user: no process of the last user left, the workdir
        and temporary folders empty.

        Returns:
            True when it was reset; False when this backend cannot reset (the default): a pool then discards the
            sandbox and starts a fresh one. False rather than ``NotImplementedError``, because not resetting is an
            ordinary capability of a backend, not a mistake of the caller.

        Raises:
            SandboxError: a reset was attempted and failed; the sandbox should be discarded.
        """
        return False

    async def fork(self) -> Sandbox:
        """A new, independent sandbox of the same backend and limits whose workdir is a copy of this one's (the
        branches of a workflow with ``sandbox: fork``, best-of-N candidates, forked rollouts).

        What runs in the copy never shows in this sandbox, nor the reverse; the caller closes the copy, and closing
        this sandbox leaves the copy working. Processes are not copied, only files (what a command left running
        here is not running there). The copy is never pooled (closing it destroys it), and it has ``forked_from``
        set.

        Raises:
            SandboxError: this backend cannot fork (the default), or the copy failed.
        """
        raise SandboxError(f"a {type(self).__name__} cannot fork its workdir")

    @property
    def alive(self) -> bool:
        """Whether the sandbox still works: False once closed, or when its backend lost it (a container killed
        from outside)."""
        return not self._closed

    @property
    def known_failures(self) -> tuple[str, ...]:
        """The conformance checks (names in ``agentflow.sandboxes.conformance.CHECKS``) this sandbox is known to
        fail, as its backend declares them; the conformance runner reports those as ``known_failure``."""
        return ()

    @classmethod
    def cleanup(cls, *, everything: bool = False) -> list[str]:
        """Remove what sandboxes of this backend left behind when their process died without closing them.

        Args:
            everything: also remove what belongs to agentflow processes still running (where the backend can
                tell; a backend may ignore it).

        Returns:
            The names of what was removed; the default backend leaves nothing behind and removes nothing.
        """
        return []

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
    this view, so no command of theirs can run without a ``sandbox_exec`` event in the trace. A view: ``exec``
    delegates to the inner sandbox's ``exec``, which applies the contract (timeout default, output cap) once.
    ``before`` is called before every command, file write, copy and reset (the runtime writes the events its
    recorder holds, so that what the trace recorded before an effect on the sandbox survives the process).
    """

    def __init__(
        self, inner: Sandbox, observer: ExecObserver | None, *, before: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.limits = inner.limits
        self.forked_from = inner.forked_from
        self._observer = observer
        self._before = before

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        if self._before is not None:
            self._before()
        result = await self.inner.exec(cmd, stdin=stdin, cwd=cwd, env=env, timeout=timeout)
        if self._observer is not None:
            self._observer(cmd, cwd, result)
        return result

    async def read_file(self, path: str) -> bytes:
        return await self.inner.read_file(path)

    async def write_file(self, path: str, data: str | bytes) -> None:
        if self._before is not None:
            self._before()
        await self.inner.write_file(path, data)

    async def list_files(self, path: str = ".") -> list[str]:
        return await self.inner.list_files(path)

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        if self._before is not None:
            self._before()
        await self.inner.copy_in(source_dir, dest)

    def isolation(self) -> IsolationReport:
        return self.inner.isolation()

    async def reset(self) -> bool:
        if self._before is not None:
            self._before()
        return await self.inner.reset()

    async def fork(self) -> Sandbox:
        """A fork of the inner sandbox (the copy is not observed: its owner wraps it in its own view)."""
        if self._before is not None:
            self._before()
        return await self.inner.fork()

    @property
    def alive(self) -> bool:
        return self.inner.alive

    @property
    def known_failures(self) -> tuple[str, ...]:
        return self.inner.known_failures

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
