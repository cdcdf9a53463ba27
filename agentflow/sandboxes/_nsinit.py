"""The launcher of every local sandbox exec, and the launch server that forks it (standard library only).

Two entry points:

* ``python -I -S _nsinit.py --serve FD HOST_PID``: the launch server, one per agentflow process. It reads requests
  from the Unix socket ``FD`` (``SOCK_SEQPACKET``, so every message arrives whole with its file descriptors) and
  forks one launcher per exec, so an exec pays a fork instead of an interpreter start-up and the import of ctypes
  (about 11 ms of the 23 an exec cost when every exec started its own interpreter). Messages, ASCII:
  ``L ID`` with five descriptors (config file, stdin, stdout, stderr, status pipe) launches; ``K ID`` kills the
  launch's process group if it has not been reaped yet; the server answers ``S ID PID`` once it forked (``F ID
  ERRNO`` when it could not fork), and ``E ID WAITSTATUS`` once it reaped the launcher and killed what was left in
  its process group. When the socket closes, or its parent dies, it kills every launch it still has and exits.
* ``python -I -S _nsinit.py`` with the config file named by ``AGENTFLOW_SANDBOX_LAUNCH``: one launch in this very
  process (the namespaces probe uses it, before any server exists).

A launch reads its config (``marshal``-encoded: the command's own argv and environment; a file, not an environment
variable, because Linux caps one environment string at 128 KiB) and then either

* ``mode == "process"``: applies resource limits, drops to the sandbox's host uid when it runs as root, and execs the
  command in place; or
* ``mode == "namespaces"``: forks a child that enters new user, mount, pid, network (unless allowed), UTS and IPC
  namespaces, has this process (still root-capable in the parent user namespace) write the child's uid and gid
  maps so the command runs as an unprivileged host uid, builds a private root (system directories and the Python
  runtime read-only, the workdir at a stable path, a private /tmp, a minimal /dev, a fresh /proc), pivots into
  it and runs the command as a child of a pid-namespace init. When that init exits, or is killed on timeout, the
  kernel kills every process left in the namespace, including ones that called ``setsid``.

It reports on ``status_fd`` (closed-on-exec, so the command never holds it) one line per event:
``setup-error MESSAGE`` when isolation could not be built, ``exec-error ERRNO MESSAGE`` when the command could not
be started, ``exit CODE`` or ``signal NUMBER`` when it ended.
"""

from __future__ import annotations

# Only modules that are cheap to import: json, contextlib, signal and typing would pull in re, enum and
# functools and double the launcher's start-up time.
import ctypes
import marshal
import os
import resource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SIGKILL = 9
SIGTERM = 15

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

# statvfs f_flag bits that a bind remount inside a user namespace must keep, or the kernel refuses it (EPERM).
LOCKED_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """Isolation could not be built; reported as ``setup-error``."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)} (errno {errno})")


def _report(status_fd: int, line: str) -> None:
    try:  # noqa: SIM105 - contextlib costs start-up time
        os.write(status_fd, (line.replace("\n", " ") + "\n").encode())
    except OSError:
        pass  # the host stopped listening (killed on timeout); nothing to tell


def _closed(fd: int) -> bool:
    """Whether every writer of a pipe is gone (a read would return end-of-file at once)."""
    import select  # pid 1 of a namespace only

    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _exit_on_parent_death(_signum: int, _frame: object) -> None:
    os._exit(137)


def _signal_handler(signum: int, handler: Any) -> None:
    import signal  # only pid 1 of a namespace needs it; the other launch paths skip its import cost

    signal.signal(signum, handler)


def _die_with_parent() -> None:
    libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {source or fstype} on {target}")


def _bind(source: str, target: str, *, read_only: bool) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        locked = 0
        host_flags = os.statvfs(source).f_flag
        for stat_bit, mount_bit in LOCKED_FLAGS:
            if host_flags & stat_bit:
                locked |= mount_bit
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | locked)


def _apply_limits(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"]))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize_bytes"], limits["fsize_bytes"]))
    if limits.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))


def _drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # a non-zero uid on every slot clears every capability


def _execvpe(argv: list[str], env: dict[str, str]) -> None:
    """Search ``PATH`` like execvp(3). Not ``os.execvpe``: it imports modules lazily, which fails once this
    process runs as a uid that cannot read the Python runtime (process mode under /root)."""
    if "/" in argv[0]:
        os.execve(argv[0], argv, env)  # noqa: S606 - an argv list by design, never a shell string
    first_error: OSError | None = None
    for directory in env.get("PATH", "/usr/bin:/bin").split(":"):
        try:
            os.execve(os.path.join(directory or ".", argv[0]), argv, env)  # noqa: S606
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # not runnable here (EACCES...): keep looking, report this if nothing else runs
            if first_error is None:
                first_error = exc
    raise first_error or FileNotFoundError(2, "No such file or directory", argv[0])


def _exec_command(config: dict[str, Any], status_fd: int) -> None:
    """Exec the command in this process; on failure report and exit 127 (not found) or 126 (not runnable)."""
    argv: list[str] = config["argv"]
    env: dict[str, str] = config["env"]
    try:
        os.chdir(config["cwd"])
        _execvpe(argv, env)
    except OSError as exc:
        not_found = isinstance(exc, FileNotFoundError)
        message = "command not found" if not_found else (exc.strerror or str(exc))
        _report(status_fd, f"exec-error {exc.errno} {argv[0]}: {message}")
        os.write(2, f"agentflow sandbox: {argv[0]}: {message}\n".encode())
        os._exit(127 if not_found else 126)


def _run_plain(config: dict[str, Any], status_fd: int) -> None:
    _apply_limits(config["limits"])
    if config.get("drop_to_uid") is not None:
        parent = os.getppid()
        _drop_to(config["drop_to_uid"], config["drop_to_gid"])
        _die_with_parent()  # the uid change cleared the request; the command keeps it across its exec
        if os.getppid() != parent:
            os._exit(137)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _exec_command(config, status_fd)


def _build_root(config: dict[str, Any]) -> None:
    """Build the private root and pivot into it; runs as pid 1 of the new pid namespace.

    This process still has host uid 0 but capabilities only inside its own user namespace, where host uid 0 is
    not mapped. It opens every bind source first, while its uid still passes the host's permission checks (a
    Python runtime may live under /root), then switches its filesystem uid to the sandbox user: the kernel refuses
    to create files (EOVERFLOW) for an fsuid that has no mapping in the namespace.
    """
    mounts = config["mounts"]
    new_root = mounts["rootfs"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates back to the host
    sources: dict[str, int] = {}
    for inside, host_path in mounts["binds"].items():
        try:
            sources[inside] = os.open(host_path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
    libc.setfsuid(config["inner_uid"])
    libc.setfsgid(config["inner_uid"])
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for inside, link_target in mounts["symlinks"].items():
        os.symlink(link_target, new_root + inside)
    # Outer directories first: a runtime under /tmp (a checkout in /tmp/x/.venv) must land on the sandbox's /tmp,
    # not be hidden by it.
    for inside, fd in sorted(sources.items(), key=lambda item: item[0].rstrip("/").count("/")):
        os.makedirs(new_root + inside, exist_ok=True)
        _bind(f"/proc/self/fd/{fd}", new_root + inside, read_only=inside not in mounts["writable"])
        os.close(fd)
    dev = new_root + "/dev"
    os.makedirs(dev)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755")
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            open(dev + "/" + name, "w").close()  # an empty file is the bind mount point
            _bind("/dev/" + name, dev + "/" + name, read_only=False)
    for index, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{index}", f"{dev}/{name}")
    os.symlink("/proc/self/fd", dev + "/fd")
    os.makedirs(dev + "/shm")
    _mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.makedirs(new_root + "/proc")
    _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The directories made above belong to the sandbox user; read-only keeps it from adding files beside them.
    _mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    os.chdir(new_root)
    syscall_number = PIVOT_ROOT_SYSCALL.get(os.uname().machine)
    if syscall_number is None:
        raise SetupError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(libc.syscall(syscall_number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach the host root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    libc.sethostname(b"sandbox", 7)


def _wait_for(pid: int) -> int:
    """Reap children until ``pid`` ends; return its raw wait status (pid 1 adopts every orphan)."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if reaped == pid:
            return status


def _report_status(status_fd: int, status: int) -> None:
    if os.WIFSIGNALED(status):
        _report(status_fd, f"signal {os.WTERMSIG(status)}")
    else:
        _report(status_fd, f"exit {os.waitstatus_to_exitcode(status)}")


def _namespace_init(config: dict[str, Any], status_fd: int, parent_alive: int) -> None:
    """Pid 1 of the sandbox: build the root, start the command, relay how it ended."""
    try:
        _build_root(config)
    except (SetupError, OSError) as exc:
        _report(status_fd, f"setup-error {exc}")
        os._exit(125)
    # The kernel drops signals to a pid namespace's init that it has no handler for, SIGKILL from its parent's
    # death included. So init asks for SIGTERM on that death and handles it by exiting, which makes the kernel
    # kill everything in the namespace: nothing outlives an agentflow process that was killed. Asked only now:
    # _build_root changes the filesystem uid, and any credential change clears the request.
    _signal_handler(SIGTERM, _exit_on_parent_death)
    libc.prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0)
    if _closed(parent_alive):  # the parent died before the request was in place
        os._exit(137)
    os.close(parent_alive)
    command_pid = os.fork()
    if command_pid == 0:
        try:
            _apply_limits(config["limits"])
            # Root inside the namespace is unmapped, so this leaves no uid that could regain its capabilities,
            # and execve as a non-root uid clears every capability the namespace gave.
            _drop_to(config["inner_uid"], config["inner_uid"])
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        except OSError as exc:
            _report(status_fd, f"setup-error limits or uid drop: {exc}")
            os._exit(125)
        _exec_command(config, status_fd)
    for fd in (0, 1, 2):
        os.close(fd)  # only the command holds the pipes, so its output ends when it does
    _report_status(status_fd, _wait_for(command_pid))
    os._exit(0)


def _run_in_namespaces(config: dict[str, Any], status_fd: int) -> None:
    child_ready_read, child_ready_write = os.pipe()
    maps_written_read, maps_written_write = os.pipe()
    launcher = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with_parent()
        if os.getppid() != launcher:
            os._exit(137)  # the launcher is already gone
        os.close(child_ready_read)
        os.close(maps_written_write)
        flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
        if not config["network"]:
            flags |= CLONE_NEWNET
        if libc.unshare(flags) != 0:
            errno = ctypes.get_errno()
            _report(status_fd, f"setup-error unshare: {os.strerror(errno)} (errno {errno})")
            os._exit(125)
        os.write(child_ready_write, b"u")
        if os.read(maps_written_read, 1) != b"m":
            os._exit(125)
        # Held open by this process only: pid 1 sees end-of-file on it once this process is gone.
        parent_alive_read, parent_alive_write = os.pipe()
        init = os.fork()  # the first child after unshare(CLONE_NEWPID) is pid 1 of the new namespace
        if init == 0:
            os.close(parent_alive_write)
            _namespace_init(config, status_fd, parent_alive_read)
        os.close(parent_alive_read)
        _, status = os.waitpid(init, 0)
        os._exit(os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 125)
    os.close(child_ready_write)
    os.close(maps_written_read)
    if os.read(child_ready_read, 1) != b"u":
        os.waitpid(child, 0)
        os._exit(125)
    # The launcher stays root in the host user namespace, where it may write the child's maps (gid map included).
    inner = config["inner_uid"]
    try:
        with open(f"/proc/{child}/uid_map", "w") as uid_map:
            uid_map.write(f"{inner} {config['host_uid']} 1\n")
        with open(f"/proc/{child}/gid_map", "w") as gid_map:
            gid_map.write(f"{inner} {config['host_gid']} 1\n")
    except OSError as exc:
        _report(status_fd, f"setup-error uid/gid map: {exc}")
        os.kill(child, SIGKILL)
        os.waitpid(child, 0)
        os._exit(125)
    os.write(maps_written_write, b"m")
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 125)


def _read_config(fd: int) -> dict[str, Any]:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    os.close(fd)  # the command must not inherit it (nor see its own config)
    config: dict[str, Any] = marshal.loads(b"".join(chunks))  # noqa: S302 - written by our parent process
    return config


def _launch(config: dict[str, Any]) -> None:
    """Run one launch in this process, which the host (script mode) or the launch server (a fork) started."""
    status_fd: int = config["status_fd"]
    os.set_blocking(status_fd, True)
    os.set_inheritable(status_fd, False)  # the command must not hold the status pipe: exec closes it
    try:
        if config["mode"] == "process":
            _run_plain(config, status_fd)
        else:
            _run_in_namespaces(config, status_fd)
    except Exception as exc:  # noqa: BLE001 - any failure before the command runs is a setup error to report
        _report(status_fd, f"setup-error {type(exc).__name__}: {exc}")
        os._exit(125)


def main() -> None:
    config = _read_config(int(os.environ.pop("AGENTFLOW_SANDBOX_LAUNCH")))
    _die_with_parent()
    if os.getppid() != config.get("parent_pid", os.getppid()):
        os._exit(137)  # agentflow died while this interpreter started, before the request above was in place
    _launch(config)


def _forked_launch(server_pid: int, closed_in_child: list[int], fds: list[int]) -> None:
    """The launcher in a child of the launch server: its own session, the request's pipes as stdio, then the launch."""
    import signal

    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the launch waits for its own children
        os.setsid()  # its own process group, which a kill request ends whole, and no terminal's Ctrl-C
        _die_with_parent()
        if os.getppid() != server_pid:
            os._exit(137)  # the server died before the request above was in place
        for fd in closed_in_child:
            os.close(fd)
        config_fd, stdin_fd, stdout_fd, stderr_fd, status_fd = fds
        for target, fd in enumerate((stdin_fd, stdout_fd, stderr_fd)):
            os.dup2(fd, target)  # inheritable: the command's stdio
            os.close(fd)
        config = _read_config(config_fd)
        config["status_fd"] = status_fd
    except Exception as exc:  # noqa: BLE001 - reported like any other failure to set up the launch
        _report(fds[-1], f"setup-error launch server: {type(exc).__name__}: {exc}")
        os._exit(125)
    _launch(config)
    os._exit(125)  # not reached: a launch execs the command or exits


class _LaunchServer:
    """The launch server's state: its socket, its wake-up pipe for SIGCHLD, and the launches not reaped yet."""

    def __init__(self, socket_fd: int) -> None:
        import signal
        import socket

        self.socket = socket
        self.channel = socket.socket(fileno=socket_fd)
        self.pid = os.getpid()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)  # set_wakeup_fd needs a Python-level handler
        signal.set_wakeup_fd(self.wake_write)
        self.launches: dict[int, bytes] = {}  # pid -> request id, until reaped
        self.pids: dict[bytes, int] = {}  # request id -> pid, until reaped

    def run(self) -> None:
        import select

        try:
            while True:
                readable, _, _ = select.select([self.channel.fileno(), self.wake_read], [], [])
                if self.wake_read in readable:
                    self.drain_wakeups()
                if self.channel.fileno() in readable and not self.handle_request():
                    return  # the host closed its end (or died)
                self.reap()
        finally:
            for pid in self.launches:
                _kill_group_of(pid)

    def drain_wakeups(self) -> None:
        while True:
            try:
                if not os.read(self.wake_read, 512):
                    return
            except BlockingIOError:
                return

    def handle_request(self) -> bool:
        message, fds, _, _ = self.socket.recv_fds(self.channel, 256, 8)
        if not message:
            return False
        kind, _, ident = message.partition(b" ")
        if kind == b"L" and len(fds) == 5:
            try:
                pid = os.fork()
            except OSError as exc:  # out of processes or memory: this launch fails, the server goes on
                self.channel.send(b"F " + ident + b" " + str(exc.errno or 0).encode())
                for fd in fds:
                    os.close(fd)
                return True
            if pid == 0:
                _forked_launch(self.pid, [self.channel.fileno(), self.wake_read, self.wake_write], fds)
            self.launches[pid] = ident
            self.pids[ident] = pid
            self.channel.send(b"S " + ident + b" " + str(pid).encode())
        elif kind == b"K" and ident in self.pids:  # unreaped, so the pid and its group are still this launch's
            _kill_group_of(self.pids[ident])
        for fd in fds:
            os.close(fd)  # the launcher has its own copies
        return True

    def reap(self) -> None:
        while self.launches:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _kill_group_of(pid)  # what the command left in its process group (process mode) goes with it
            ident = self.launches.pop(pid, None)
            if ident is not None:
                del self.pids[ident]
                self.channel.send(b"E " + ident + b" " + str(status).encode())


def serve(socket_fd: int, host_pid: int) -> None:
    """Run the launch server (see the module docstring) until its socket closes or its parent dies."""
    _die_with_parent()
    if os.getppid() != host_pid:
        return  # agentflow died while this interpreter started
    _LaunchServer(socket_fd).run()


def _kill_group_of(pid: int) -> None:
    try:  # noqa: SIM105 - contextlib costs start-up time
        os.killpg(pid, SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
