"""The local sandbox: the embedded default, a child process in a private workdir on this machine.

Two modes, chosen once per process by a probe and reported by ``isolation()``:

* ``namespaces`` (Linux with user namespaces): every exec runs in fresh user, mount, pid, network, UTS and IPC
  namespaces as an unprivileged uid; it sees the system directories and the Python runtime read-only, its workdir
  at ``/workspace``, a private ``/tmp``, and nothing else of the host (no home directories, no project, no other
  sandbox). A timeout kills the pid namespace, so no process of the exec survives it.
* ``process`` (anything else, or ``AGENTFLOW_LOCAL_SANDBOX_MODE=process``): a plain child process in its own
  process group with the same resource limits and a scrubbed environment; when agentflow runs as root the command
  still drops to a per-sandbox unprivileged uid. The network and the host's files stay reachable, and a process
  that leaves the process group (``setsid``) survives a timeout until ``close()``.

Every exec's launcher (``_nsinit.py``) is forked by this process's launch server (``_launch_server.py``), a warm
interpreter, so a command costs a fork and the namespace setup rather than an interpreter start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import marshal
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from agentflow._tempdirs import owned_tempdir, sweep_stale
from agentflow.errors import FileTooLargeError, PathOutsideWorkdirError, SandboxError, SandboxUnavailableError
from agentflow.sandboxes._base import ExecOutput, ExecRequest, IsolationReport, Sandbox, SandboxLimits, file_error
from agentflow.sandboxes._launch_server import LAUNCHER, Launch, LaunchServer, launch_server
from agentflow.sandboxes._registry import sandbox

LocalMode = Literal["auto", "namespaces", "process"]

MODE_ENV_VAR = "AGENTFLOW_LOCAL_SANDBOX_MODE"
WORKSPACE = "/workspace"
"""Where commands see the workdir in namespaces mode; file operations accept it as the workdir in every mode."""

TIMEOUT_EXIT_CODE = -signal.SIGKILL
"""``ExecResult.exit_code`` of a command killed on timeout (``timed_out`` is True): -9, as for SIGKILL."""

_CONFIG_ENV_VAR = "AGENTFLOW_SANDBOX_LAUNCH"
_INNER_UID = 1000
_SANDBOX_UID_BASE = 1_600_000_000  # far above any real account, below the 32-bit "no uid" value
_SANDBOX_UID_SPAN = 100_000_000
_OUTPUT_GRACE_S = 1.0  # how long output may still flow once the command has ended or was killed
_CLOSE_WAIT_S = 10.0  # how long close() waits for the exit of an exec it killed
_READ_CHUNK = 65536
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_PROCESS_KNOWN_FAILURES = ("kill_process_tree_on_timeout",)
_ROOT_PREFIX = "agentflow-sandbox-"  # a sandbox's private folder: <tmp>/agentflow-sandbox-<pid>-<random>


@dataclass(frozen=True)
class _Probe:
    """What this machine allows, found once per process."""

    namespaces: bool
    reason: str


_probe_lock = threading.Lock()
_probe_result: _Probe | None = None


@functools.cache  # the host's layout does not change while agentflow runs; every exec and report asks
def _python_paths() -> list[str]:
    """The directories of the Python runtime that runs agentflow, so ``python`` works inside the sandbox."""
    paths = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)}
    return sorted(p for p in paths if not any(p == d or p.startswith(d + "/") for d in _SYSTEM_DIRS))


@functools.cache
def _system_layout() -> tuple[dict[str, str], dict[str, str]]:
    """Return (symlinks, read-only binds) that give the sandbox the host's system directories."""
    symlinks: dict[str, str] = {}
    binds: dict[str, str] = {}
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            symlinks[path] = os.readlink(path)  # merged /usr: /bin -> usr/bin; the target is bound itself
        elif os.path.isdir(path):
            binds[path] = path
    for path in _python_paths():
        binds[path] = path
    return symlinks, binds


def _reachable_by_others(path: str) -> bool:
    """Whether a uid that owns nothing on the way (the sandbox uid) can reach ``path``: every directory o+x."""
    current = Path(path)
    for directory in [current, *current.parents]:
        try:
            if not directory.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _config_fd(config: dict[str, Any]) -> int:
    """An anonymous file holding the launch config, read from its start by the launcher that inherits it.

    A file, not an environment variable or a pipe: Linux caps one environment string at 128 KiB (a config holds the
    command's whole argv and environment), and a pipe holds 64 KiB until someone reads it. marshal, because the
    launcher decodes it without importing json (and re, which json needs).
    """
    data = marshal.dumps(config)
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("agentflow-launch", os.MFD_CLOEXEC)
    else:
        with tempfile.TemporaryFile() as handle:  # already unlinked; the duplicate keeps it alive
            fd = os.dup(handle.fileno())
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _search_path() -> str:
    return ":".join([str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"])


class _LaunchFailed(Exception):
    pass


def _run_probe() -> _Probe:
    if not sys.platform.startswith("linux"):
        return _Probe(False, f"Linux namespaces are not available on {sys.platform}")
    root = Path(tempfile.mkdtemp(prefix="agentflow-probe-"))
    try:
        sandbox = LocalSandbox(_root=root, _mode="namespaces", limits=SandboxLimits())
        config = sandbox._launch_config(["true"], cwd=WORKSPACE, env=None)
        status_read, status_write = os.pipe()
        config["status_fd"] = status_write
        config_fd = _config_fd(config)
        try:
            completed = subprocess.run(
                [sys.executable, "-I", "-S", LAUNCHER],
                env={_CONFIG_ENV_VAR: str(config_fd)},
                pass_fds=(status_write, config_fd),
                capture_output=True,
                timeout=30,
                check=False,
            )
        finally:
            os.close(status_write)
            os.close(config_fd)
        status = _read_status(status_read)
        if status.setup_error:
            return _Probe(False, status.setup_error)
        if status.exit_code != 0:
            return _Probe(False, f"a trial command exited {status.exit_code}: {completed.stderr.decode()[-300:]}")
        return _Probe(True, "user, mount, pid, network, UTS and IPC namespaces work")
    except (OSError, subprocess.SubprocessError) as exc:
        return _Probe(False, f"namespaces probe failed: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def probe_namespaces() -> tuple[bool, str]:
    """Whether the local sandbox can use Linux namespaces here, and why (probed once per process).

    Returns:
        ``(available, reason)``.
    """
    global _probe_result  # noqa: PLW0603 - one probe per process, shared by every sandbox
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _run_probe()
        return _probe_result.namespaces, _probe_result.reason


@dataclass
class _Status:
    setup_error: str | None = None
    exec_error: str | None = None
    exit_code: int | None = None


def _read_status(status_read: int) -> _Status:
    """Parse the launcher's status lines; every writer has exited, so this reads to end of file."""
    chunks = []
    try:
        os.set_blocking(status_read, False)
        while True:
            try:
                chunk = os.read(status_read, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(status_read)
    status = _Status()
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "setup-error":
            status.setup_error = rest
        elif kind == "exec-error":
            status.exec_error = rest.partition(" ")[2]
        elif kind == "exit":
            status.exit_code = int(rest)
        elif kind == "signal":
            status.exit_code = -int(rest)
    return status


class _CappedBuffer:
    """Keeps the first ``cap`` bytes of a stream and drops the rest, so a flood neither hangs nor eats memory."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True


class _PipeEnd:
    """Our end of one of an exec's pipes, served by the event loop with no transport: closing it is ``os.close``,
    so nothing is left for the garbage collector to clean up on a loop that has closed (Ctrl-C)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        os.close(self.fd)
        self.fd = -1
        if not self.done.done():
            self.done.set_result(None)


class _OutputReader(_PipeEnd):
    """Drains stdout or stderr into a capped buffer until end of file."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int) -> None:
        super().__init__(loop, fd)
        self.buffer = _CappedBuffer(cap)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.buffer.add(chunk)
        else:
            self.close()


class _InputWriter(_PipeEnd):
    """Feeds stdin, then closes it; a command that exits or closes stdin early is not an error of the sandbox."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
        super().__init__(loop, fd)
        self.rest = memoryview(data)
        if self.rest:
            loop.add_writer(fd, self._writable)
        else:
            self.close()

    def _writable(self) -> None:
        try:
            self.rest = self.rest[os.write(self.fd, self.rest[:_READ_CHUNK]) :]
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the reader is gone
            self.rest = memoryview(b"")
        if not self.rest:
            self.close()


@functools.cache
def _fs_credentials() -> tuple[Any, Any] | None:
    """libc's ``setfsuid`` and ``setfsgid`` (Linux), or None where they do not exist."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.setfsuid, libc.setfsgid
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def _filesystem_identity(uid: int, gid: int) -> Iterator[None]:
    """Make this thread's file access checks those of ``uid``/``gid``, and restore root's afterwards.

    The filesystem uid is per thread (glibc does not broadcast setfsuid to the other threads), so a worker thread
    can act as the sandbox user while the rest of the process stays root; a non-zero fsuid also drops the
    capabilities that let root ignore permissions (CAP_DAC_OVERRIDE and the like) for as long as it is set.
    """
    calls = _fs_credentials()
    if calls is None:
        raise SandboxError("cannot act as the sandbox user for file operations: setfsuid is not available here")
    setfsuid, setfsgid = calls
    previous_gid = setfsgid(gid)
    previous_uid = setfsuid(uid)
    try:
        if setfsuid(-1) != uid or setfsgid(-1) != gid:  # -1 changes nothing and returns the current value
            raise SandboxError(f"could not switch file operations to the sandbox user (uid {uid})")
        yield
    finally:
        setfsuid(previous_uid)
        setfsgid(previous_gid)


def _file_error_for(exc: OSError, path: str) -> OSError:
    """The exception to raise for a failed host file operation, naming the sandbox path instead of the host's."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return file_error(type(exc), path)
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink put in place after the path was checked
        return PathOutsideWorkdirError(f"{path!r} is a symlink that appeared while it was opened")
    return OSError(exc.errno, f"{path!r}: {exc.strerror}")


def _unlock_tree(top: str) -> None:
    """Give the owner back every directory under ``top`` (a command may have locked one with ``chmod 000``), so that
    it can be removed without root's override; symlinks are never followed."""
    with contextlib.suppress(OSError):
        os.chmod(top, 0o700)
    for folder, directories, _ in os.walk(top):
        for name in directories:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_uid(uid: int) -> None:
    """Kill every process of a sandbox uid (process mode as root: catches what left the process group)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
                break


@sandbox("local")
class LocalSandbox(Sandbox):
    """A sandbox made of child processes on this machine; see the module docstring for what each mode isolates.

    Create it with ``await LocalSandbox.create(limits)`` (or ``create_sandbox("local")``), which probes what the
    kernel allows. Commands see the workdir at ``/workspace`` in namespaces mode and at its host path otherwise
    (``workdir`` says which); their environment holds only ``PATH`` (the Python runtime's ``bin`` first),
    ``HOME`` (the workdir), ``LANG``, ``TMPDIR`` and what ``exec`` is given. A timeout kills the command and
    returns ``timed_out=True`` with ``exit_code`` -9 (``TIMEOUT_EXIT_CODE``); a command that cannot be started
    returns exit code 127 (not found) or 126 (not executable) with the reason on stderr. File operations check
    permissions as the sandbox's uid (as root, through this thread's filesystem uid), so they may do exactly what the
    sandbox's own commands may.
    """

    backend = "local"
    leftover_kind = "workdir"

    def __init__(self, *, limits: SandboxLimits, _root: Path, _mode: Literal["namespaces", "process"]) -> None:
        self.limits = limits
        self.mode = _mode
        self._root = _root
        self._host_workdir = _root / "work"
        self._host_tmp = _root / "tmp"
        self._rootfs = _root / "rootfs"
        self._is_root = os.geteuid() == 0
        # As root every sandbox gets its own unprivileged host uid: its files and processes are its own, and
        # RLIMIT_NPROC (which the kernel does not apply to root) limits it.
        self._sandbox_uid = _SANDBOX_UID_BASE + secrets.randbelow(_SANDBOX_UID_SPAN) if self._is_root else os.getuid()
        self._sandbox_gid = self._sandbox_uid if self._is_root else os.getgid()
        self._probe_reason = ""
        self._running: dict[int, tuple[LaunchServer, Launch]] = {}  # execs in flight (close() kills them)
        self._closed = False
        for directory in (self._host_workdir, self._host_tmp, self._rootfs):
            directory.mkdir(mode=0o700)
        # The sandbox uid must traverse the root to reach its workdir; nobody else may list or read it.
        _root.chmod(0o711)
        self._give_to_sandbox(self._host_workdir)
        self._give_to_sandbox(self._host_tmp)

    @classmethod
    async def create(
        cls,
        limits: SandboxLimits | None = None,
        *,
        mode: LocalMode | None = None,
        image: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> LocalSandbox:
        """Create a sandbox with a fresh private workdir.

        Args:
            limits: resource limits; the embedded defaults when omitted.
            image: ignored: the local sandbox runs the host's own system (part of the backend protocol).
            labels: ignored: nothing the local sandbox creates outlives its process tree and workdir.
            mode: ``"auto"`` (namespaces when the probe succeeds), ``"namespaces"`` (fail when unavailable) or
                ``"process"``; defaults to the ``AGENTFLOW_LOCAL_SANDBOX_MODE`` environment variable, else auto.

        Raises:
            SandboxUnavailableError: ``mode="namespaces"`` was asked for and the kernel does not allow it.
        """
        requested = mode or os.environ.get(MODE_ENV_VAR, "auto")
        if requested not in ("auto", "namespaces", "process"):
            raise SandboxUnavailableError(
                f"{MODE_ENV_VAR}={requested!r} is not a local sandbox mode; use auto, namespaces or process"
            )
        available, reason = (False, "process mode was requested")
        if requested != "process":
            # The probe runs once per process; after that the answer is at hand, with no thread hop.
            cached = _probe_result
            if cached is not None:
                available, reason = cached.namespaces, cached.reason
            else:
                available, reason = await asyncio.to_thread(probe_namespaces)
            if requested == "namespaces" and not available:
                raise SandboxUnavailableError(
                    f"the local sandbox cannot use Linux namespaces here: {reason}; enable unprivileged user "
                    f"namespaces (sysctl kernel.unprivileged_userns_clone=1) or use mode 'process'"
                )
        # Its folders are made on a worker thread: four mkdirs cost up to a few milliseconds where the temp folder's
        # filesystem is slow to allocate (0.8 ms each in /tmp on our CI machines), and a warm pool starting fifty
        # sandboxes on the event loop held back the runs already lent one.
        sandbox = await asyncio.to_thread(
            cls._in_new_root, limits or SandboxLimits(), "namespaces" if available else "process"
        )
        sandbox._probe_reason = reason
        return sandbox

    @classmethod
    def _in_new_root(cls, limits: SandboxLimits, mode: Literal["namespaces", "process"]) -> LocalSandbox:
        root = owned_tempdir(_ROOT_PREFIX)  # removed by a later run if this process is killed
        try:
            return cls(limits=limits, _root=root, _mode=mode)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    # -- what commands see ------------------------------------------------------------------------------------

    @property
    def workdir(self) -> str:
        """The workdir as commands see it: ``/workspace`` in namespaces mode, the host path otherwise."""
        return WORKSPACE if self.mode == "namespaces" else str(self._host_workdir)

    def _give_to_sandbox(self, path: Path) -> None:
        if self._is_root:
            os.chown(path, self._sandbox_uid, self._sandbox_gid, follow_symlinks=False)

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        scrubbed = {
            "PATH": _search_path(),
            "HOME": self.workdir,
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp" if self.mode == "namespaces" else str(self._host_tmp),  # noqa: S108 - private /tmp
        }
        scrubbed.update(env or {})
        return scrubbed

    def _limits_for_launcher(self) -> dict[str, int]:
        # In namespaces mode every exec has its own user namespace, where the kernel counts processes per
        # (namespace, uid): the pids limit holds per exec. In process mode it needs a uid of our own (as root).
        enforce_pids = self.mode == "namespaces" or self._is_root
        return {
            "cpu_s": self.limits.cpu_s,
            "memory_bytes": self.limits.memory_mb * 1024 * 1024,
            "fsize_bytes": self.limits.file_size_mb * 1024 * 1024,
            "nproc": self.limits.pids if enforce_pids else 0,
        }

    def _launch_config(self, cmd: list[str], *, cwd: str, env: Mapping[str, str] | None) -> dict[str, Any]:
        config: dict[str, Any] = {
            "parent_pid": os.getpid(),
            "mode": self.mode,
            "argv": list(cmd),
            "env": self._environment(env),
            "cwd": cwd,
            "limits": self._limits_for_launcher(),
            "network": self.limits.network,
        }
        if self.mode == "namespaces":
            symlinks, system_binds = _system_layout()
            # a copy: the layout is cached and shared by every sandbox
            binds = {**system_binds, WORKSPACE: str(self._host_workdir), "/tmp": str(self._host_tmp)}  # noqa: S108
            config.update(
                inner_uid=_INNER_UID,
                host_uid=self._sandbox_uid,
                host_gid=self._sandbox_gid,
                mounts={
                    "rootfs": str(self._rootfs),
                    "symlinks": symlinks,
                    "binds": binds,
                    "writable": [WORKSPACE, "/tmp"],  # noqa: S108
                },
            )
        elif self._is_root:
            config.update(drop_to_uid=self._sandbox_uid, drop_to_gid=self._sandbox_gid)
        return config

    # -- exec -------------------------------------------------------------------------------------------------

    def _command_cwd(self, cwd: str | None) -> str:
        if cwd is None:
            return self.workdir
        host = self._host_path(cwd)
        if not host.is_dir():
            raise FileNotFoundError(f"working directory {cwd!r} does not exist in the sandbox")
        relative = host.relative_to(self._host_workdir.resolve())
        return str(PurePosixPath(self.workdir) / relative)

    async def _exec(self, request: ExecRequest) -> ExecOutput:
        """Run one command through a launcher forked by the launch server (see ``Sandbox.exec``; the program is
        looked up on the sandbox's ``PATH``, ``env`` is added to the scrubbed environment).

        Raises:
            PathOutsideWorkdirError: ``cwd`` is outside the workdir.
            FileNotFoundError: ``cwd`` does not exist.
            SandboxError: isolation could not be set up for this command, or the launch server stopped under it.
        """
        config = self._launch_config(request.argv, cwd=self._command_cwd(request.cwd), env=request.env)
        server = await launch_server()
        loop = asyncio.get_running_loop()
        # Theirs (the launcher's, closed here once the server holds them) and ours (served on the loop).
        stdin_theirs, stdin_ours = os.pipe() if request.stdin is not None else (os.open(os.devnull, os.O_RDONLY), -1)
        stdout_ours, stdout_theirs = os.pipe()
        stderr_ours, stderr_theirs = os.pipe()
        status_read, status_write = os.pipe()
        config_fd = _config_fd(config)
        ours: list[_PipeEnd] = []
        try:
            ours = [
                _OutputReader(loop, stdout_ours, self.limits.output_bytes),
                _OutputReader(loop, stderr_ours, self.limits.output_bytes),
            ]
            if stdin_ours >= 0:
                ours.append(_InputWriter(loop, stdin_ours, request.stdin or b""))
            launch = await server.launch(
                config_fd=config_fd, stdio=(stdin_theirs, stdout_theirs, stderr_theirs), status_fd=status_write
            )
        except BaseException:
            for end in ours:
                end.close()
            for fd in (stdout_ours, stderr_ours, stdin_ours)[len(ours) :]:
                if fd >= 0:
                    os.close(fd)
            os.close(status_read)
            raise
        finally:
            for fd in (stdin_theirs, stdout_theirs, stderr_theirs, status_write, config_fd):
                os.close(fd)
        self._running[launch.ident] = (server, launch)
        try:
            timed_out, wait_status = await self._collect(server, launch, ours, request.timeout)
        finally:
            del self._running[launch.ident]
            for end in ours:
                end.close()
            status = _read_status(status_read)
        if wait_status is None:
            raise SandboxError("the local sandbox's launch server stopped while the command ran; its result is unknown")
        if status.setup_error and not timed_out:
            raise SandboxError(f"the local sandbox could not isolate the command: {status.setup_error}")
        if timed_out:
            exit_code = TIMEOUT_EXIT_CODE
        elif status.exit_code is not None:
            exit_code = status.exit_code
        else:  # process mode: the launcher became the command
            exit_code = os.waitstatus_to_exitcode(wait_status)
        stdout, stderr = (end.buffer for end in ours[:2] if isinstance(end, _OutputReader))
        return ExecOutput(
            exit_code=exit_code,
            stdout=bytes(stdout.data),
            stderr=bytes(stderr.data),
            timed_out=timed_out,
            truncated=stdout.truncated or stderr.truncated,
        )

    async def _collect(
        self, server: LaunchServer, launch: Launch, ours: list[_PipeEnd], timeout: float
    ) -> tuple[bool, int | None]:
        """Wait for the launcher within the timeout (killing its processes on expiry), then for the output to end.

        Returns whether it timed out, and the launcher's raw wait status (None: the server stopped first).
        """
        try:
            done, _ = await asyncio.wait({launch.exited}, timeout=timeout)
            timed_out = not done
            if timed_out:
                server.kill(launch)
            wait_status = await launch.exited
            # In namespaces mode the launcher's exit ended the pid namespace, and in process mode the server has
            # killed what the command left in its process group: only a process that escaped the group (process
            # mode) can still hold the pipes, and it gets no longer than this.
            await asyncio.wait([end.done for end in ours], timeout=_OUTPUT_GRACE_S)
        except BaseException:
            server.kill(launch)
            raise
        return timed_out, wait_status

    # -- files ------------------------------------------------------------------------------------------------

    def _host_path(self, path: str) -> Path:
        """Map a sandbox path to the host, refusing anything that resolves outside the workdir."""
        root = self._host_workdir.resolve()
        pure = PurePosixPath(path or ".")
        if pure.is_absolute():
            for base in (self.workdir, WORKSPACE, str(self._host_workdir), str(root)):
                if pure == PurePosixPath(base) or PurePosixPath(base) in pure.parents:
                    pure = pure.relative_to(base)
                    break
            else:
                raise PathOutsideWorkdirError(f"{path!r} is outside the sandbox workdir {self.workdir}")
        resolved = Path(os.path.realpath(root / pure))
        if resolved != root and root not in resolved.parents:
            raise PathOutsideWorkdirError(f"{path!r} resolves outside the sandbox workdir {self.workdir}")
        return resolved

    def _relative(self, host: Path) -> str:
        return host.relative_to(self._host_workdir.resolve()).as_posix()

    @contextlib.contextmanager
    def _as_sandbox_user(self) -> Iterator[None]:
        """File operations check permissions as the sandbox's own uid, as its commands do (only root differs)."""
        if not self._is_root:
            yield
            return
        with _filesystem_identity(self._sandbox_uid, self._sandbox_gid):
            yield

    async def read_file(self, path: str) -> bytes:
        """Return the bytes of a file inside the workdir, read with the sandbox user's rights.

        At most ``limits.read_bytes`` plus one byte is read, so a huge or growing file cannot fill memory.

        Raises:
            PathOutsideWorkdirError: the path (or a symlink on it) leads outside the workdir.
            FileNotFoundError: no such file.
            IsADirectoryError: the path is a directory.
            PermissionError: the sandbox user may not read it.
            FileTooLargeError: the file is larger than ``limits.read_bytes``.
        """
        self._ensure_open()
        host = self._host_path(path)
        return await asyncio.to_thread(self._read_host_file, host, path)

    def _read_host_file(self, host: Path, path: str) -> bytes:
        limit = self.limits.read_bytes
        chunks: list[bytes] = []
        size = 0
        with self._as_sandbox_user():
            try:
                # O_NONBLOCK: a FIFO with no writer reads as empty instead of hanging the call
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                raise _file_error_for(exc, path) from None
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise file_error(IsADirectoryError, path)
            with os.fdopen(fd, "rb", buffering=0) as handle:
                while size <= limit:
                    chunk = handle.read(min(limit + 1 - size, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        if size > limit:
            raise FileTooLargeError(path, limit)
        return b"".join(chunks)

    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file inside the workdir with the sandbox user's rights, creating parent directories; the
        sandbox's user owns what is made.

        Raises:
            PathOutsideWorkdirError: the path (or a symlink on it) leads outside the workdir.
            IsADirectoryError: the path is a directory.
            PermissionError: the sandbox user may not write it (or create it in its folder).
        """
        self._ensure_open()
        host = self._host_path(path)
        payload = data.encode() if isinstance(data, str) else data
        await asyncio.to_thread(self._write_host_file, host, path, payload)

    def _write_host_file(self, host: Path, path: str, payload: bytes) -> None:
        root = self._host_workdir.resolve()
        # As the sandbox uid (fsuid and fsgid), what is created belongs to the sandbox with no chown.
        with self._as_sandbox_user():
            try:
                directory = root
                for part in host.parent.relative_to(root).parts:
                    directory = directory / part
                    if not directory.exists():
                        directory.mkdir()
                if host.is_dir():
                    raise file_error(IsADirectoryError, path)
                # O_NOFOLLOW: a symlink put in place after the path was checked is refused, not followed out.
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:  # also the IsADirectoryError above: the same wording comes back
                raise _file_error_for(exc, path) from None
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)

    async def list_files(self, path: str = ".") -> list[str]:
        """Return the regular files under ``path``, recursively, as sorted paths relative to the workdir; folders
        the sandbox user may not read are left out, as its own ``find`` would.

        Symlinks are not followed and not listed.

        Raises:
            PathOutsideWorkdirError: the path leads outside the workdir.
            FileNotFoundError: the path does not exist.
        """
        self._ensure_open()
        host = self._host_path(path)
        return await asyncio.to_thread(self._list_host_files, host, path)

    def _list_host_files(self, host: Path, path: str) -> list[str]:
        found: list[str] = []
        with self._as_sandbox_user():
            try:
                if not host.exists():
                    raise file_error(FileNotFoundError, path)
                if host.is_file():
                    return [self._relative(host)]
            except PermissionError as exc:
                raise _file_error_for(exc, path) from None
            for directory, _, files in os.walk(host):
                for name in files:
                    candidate = Path(directory) / name
                    with contextlib.suppress(OSError):  # lstat: a symlink is neither followed nor listed
                        if stat.S_ISREG(candidate.lstat().st_mode):
                            found.append(self._relative(candidate))
        return sorted(found)

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        """Copy a host directory's contents into the workdir (symlinks are copied as symlinks).

        Raises:
            FileNotFoundError: ``source_dir`` is not a directory.
            PathOutsideWorkdirError: ``dest`` is outside the workdir.
        """
        self._ensure_open()
        target = self._host_path(dest)
        await asyncio.to_thread(self._copy_tree, Path(source_dir), target)

    def _copy_tree(self, source: Path, target: Path) -> None:
        if not source.is_dir():
            raise FileNotFoundError(f"cannot copy into the sandbox: {str(source)!r} is not a directory")
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        self._give_to_sandbox(target)
        for directory, dirs, files in os.walk(target):
            for name in [*dirs, *files]:
                self._give_to_sandbox(Path(directory) / name)

    # -- fork -------------------------------------------------------------------------------------------------

    async def fork(self) -> LocalSandbox:
        """A new local sandbox with the same limits and mode whose workdir is a copy of this one's.

        The copy is ``cp -a --reflink=auto`` of the workdir (copy-on-write where the filesystem offers it): file
        modes, empty folders, hard links and symlinks are kept (a symlink is copied as the link, not followed; an
        absolute one into this sandbox's host workdir, which process mode shows, is pointed at the fork's). As
        root, the fork has its own sandbox uid, and what this sandbox's uid owned the fork's uid owns. The private
        ``/tmp`` is not copied, nor are processes. Files a command changes during the copy may be copied half
        way: fork between commands.

        The fork is independent: writes in either never show in the other, closing this sandbox leaves the fork
        working, and closing the fork removes its workdir. It is never pooled, even when this sandbox came from a
        pool.

        Raises:
            SandboxError: this sandbox is closed, or the copy failed (as a non-root user, a folder a command made
                unreadable with ``chmod`` cannot be copied).
        """
        self._ensure_open()
        forked = LocalSandbox(limits=self.limits, _root=owned_tempdir(_ROOT_PREFIX), _mode=self.mode)
        forked._probe_reason = self._probe_reason
        forked.forked_from = repr(self)
        try:
            await asyncio.to_thread(self._copy_workdir_to, forked)
        except BaseException:
            await forked.close()
            raise
        return forked

    def _copy_workdir_to(self, forked: LocalSandbox) -> None:
        source, target = self._host_workdir, forked._host_workdir
        if sys.platform.startswith("linux") and shutil.which("cp"):
            # "source/." copies the folder's contents and its own mode onto the existing target folder.
            completed = subprocess.run(
                ["cp", "-a", "--reflink=auto", "--", f"{source}/.", f"{target}/"],
                capture_output=True,
                check=False,
            )
            if completed.returncode != 0:
                error = completed.stderr.decode(errors="replace").replace(str(source), self.workdir)
                raise SandboxError(f"could not fork the workdir: {error.strip()[-500:]}")
        else:
            try:
                shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
                shutil.copystat(source, target)
            except OSError as exc:
                raise SandboxError(f"could not fork the workdir: {exc}") from None
        self._hand_over_copy(forked)

    def _hand_over_copy(self, forked: LocalSandbox) -> None:
        """Give the fork's uid what this sandbox's uid owned, and repoint absolute symlinks into this workdir."""
        repoint = self.mode == "process"
        if not (self._is_root or repoint):
            return
        self._hand_over_entry(forked._host_workdir, forked, repoint=False)
        for directory, dirs, files in os.walk(forked._host_workdir):
            for name in [*dirs, *files]:
                self._hand_over_entry(Path(directory) / name, forked, repoint=repoint)

    def _hand_over_entry(self, path: Path, forked: LocalSandbox, *, repoint: bool) -> None:
        info = path.lstat()
        if repoint and stat.S_ISLNK(info.st_mode):
            old_prefix, target = str(self._host_workdir), os.readlink(path)
            if target == old_prefix or target.startswith(old_prefix + "/"):
                path.unlink()
                path.symlink_to(str(forked._host_workdir) + target[len(old_prefix) :])
                if self._is_root:  # the new link is root's until handed over below
                    os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)
        if not self._is_root:
            return
        uid = forked._sandbox_uid if info.st_uid == self._sandbox_uid else info.st_uid
        gid = forked._sandbox_gid if info.st_gid == self._sandbox_gid else info.st_gid
        if (uid, gid) == (info.st_uid, info.st_gid):
            return
        os.chown(path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(info.st_mode))  # chown cleared them; the fork's uid owns the file now

    # -- report and lifecycle ---------------------------------------------------------------------------------

    @property
    def known_failures(self) -> tuple[str, ...]:
        """None in namespaces mode; in process mode ``kill_process_tree_on_timeout`` (a process that calls
        ``setsid`` leaves the process group and survives a timeout until ``close()``)."""
        return () if self.mode == "namespaces" else _PROCESS_KNOWN_FAILURES

    @classmethod
    def cleanup(cls, *, everything: bool = False) -> list[str]:
        """Remove the private folders (workdir, ``/tmp``) of local sandboxes whose process is gone (killed before
        ``close()``), as the first sandbox a process creates does in the background.

        Args:
            everything: ignored: a running process's sandbox folders are never removed, its commands run in them.

        Returns:
            The paths of the folders removed.
        """
        return [str(path) for path in sweep_stale(_ROOT_PREFIX)]

    def isolation(self) -> IsolationReport:
        """Report what this sandbox obtained on this machine, and why not the rest."""
        namespaces = self.mode == "namespaces"
        details: dict[str, Any] = {
            "mode": self.mode,
            "probe": self._probe_reason,
            "workdir": self.workdir,
            "limits": self.limits.model_dump(),
            "environment": "scrubbed: PATH, HOME, LANG, TMPDIR and the variables given to exec",
            "known_conformance_failures": list(self.known_failures),  # recorded with the run, for its reader
        }
        if self._is_root:
            details["user"] = f"commands run as unprivileged host uid {self._sandbox_uid}" + (
                f" (uid {_INNER_UID} inside its user namespace)" if namespaces else ""
            )
        else:
            details["user"] = f"commands run as the calling user (uid {os.getuid()})"
        if namespaces:
            details["network"] = (
                "allowed by limits.network" if self.limits.network else "private network namespace, no interfaces up"
            )
            details["filesystem"] = (
                f"private mount namespace: read-only {', '.join(_system_layout()[1])}; workdir at {WORKSPACE}; "
                "private /tmp and /dev; nothing else of the host"
            )
            details["pids"] = f"RLIMIT_NPROC {self.limits.pids} per exec (counted in the exec's user namespace)"
            details["timeout_kill"] = "the exec's pid namespace: every process it started"
        else:
            details["network"] = "not isolated: " + self._probe_reason
            details["filesystem"] = "not isolated: the command can read whatever its uid may read on the host"
            details["pids"] = (
                f"RLIMIT_NPROC {self.limits.pids} for the sandbox uid"
                if self._is_root
                else "not enforced: RLIMIT_NPROC would count every process of the calling user"
            )
            details["timeout_kill"] = (
                "the process group only: a process that calls setsid survives a timeout until close()"
            )
            unreachable = [p for p in _python_paths() if self._is_root and not _reachable_by_others(p)]
            if unreachable:
                details["python_runtime"] = (
                    f"not reachable by the sandbox uid ({', '.join(unreachable)} is in a directory others may not "
                    "enter); commands fall back to the python3 on the system PATH, if any"
                )
        return IsolationReport(
            backend=self.backend,
            network_isolated=namespaces and not self.limits.network,
            filesystem_isolated=namespaces,
            pid_namespace=namespaces,
            resource_limits=True,
            details=details,
        )

    async def reset(self) -> bool:
        """Make the sandbox as new for a pool's next user: no process of it left, the workdir and ``/tmp`` empty.

        Nothing an exec started outlives it in namespaces mode (its pid namespace ends with it); in process mode as
        root every process of the sandbox's own uid is killed. In process mode without root a process that left its
        process group cannot be found, so this returns False and a pool starts a fresh sandbox instead.

        Raises:
            SandboxError: the sandbox is closed, or something could not be removed.
        """
        self._ensure_open()
        if self.mode == "process" and not self._is_root:
            return False
        await self._kill_running()
        if self.mode == "process":
            await asyncio.to_thread(_kill_uid, self._sandbox_uid)
        if self._private_dirs_empty():
            # Nothing to remove (a run that never wrote a file): no thread hop, which under a benchmark's load waits
            # for a turn of the event loop and of the thread pool while the run still holds its slot.
            return True
        left = await asyncio.to_thread(self._empty_private_dirs)
        if left:
            raise SandboxError(f"the local sandbox could not be emptied for reuse: {left[:5]} remain")
        return True

    def _private_dirs_empty(self) -> bool:
        for directory in (self._host_workdir, self._host_tmp):
            with os.scandir(directory) as entries:
                if next(entries, None) is not None:
                    return False
        return True

    def _empty_private_dirs(self) -> list[str]:
        """Remove everything in the workdir and the private ``/tmp``, even what a user locked (``chmod 000``)."""

        for directory in (self._host_workdir, self._host_tmp):
            for entry in os.scandir(directory):
                if entry.is_dir(follow_symlinks=False):
                    _unlock_tree(entry.path)
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        return [entry.name for directory in (self._host_workdir, self._host_tmp) for entry in os.scandir(directory)]

    async def _kill_running(self) -> None:
        """Kill the execs still in flight (a caller cancelled) and wait, bounded, for their exits."""
        running = list(self._running.values())
        for server, launch in running:
            server.kill(launch)
        for _, launch in running:  # killed: their exits come within moments (bounded: a stuck one is left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(launch.exited), _CLOSE_WAIT_S)

    async def close(self) -> None:
        """Kill whatever still runs and remove the workdir; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._kill_running()
        if self.mode == "process" and self._is_root:
            await asyncio.to_thread(_kill_uid, self._sandbox_uid)
        await asyncio.to_thread(shutil.rmtree, self._root, True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.mode
        return f"<LocalSandbox {state} workdir={self.workdir} host={self._host_workdir}>"
