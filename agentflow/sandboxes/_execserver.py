"""The exec server that runs inside every Docker sandbox container (standard library only, any Python 3.8+).

The host starts it once per container as the container's command (``python3 -I -S -c <this file>``) and talks to it
over the container's attached stdin and stdout, so an exec costs one message each way instead of a ``docker exec``
round trip through the engine (create, start, inspect).

Wire format, both directions: frames of ``!II`` (header length, payload length), a JSON header, raw payload bytes.
Every request header has an ``id`` and an ``op``; the response carries the same ``id``. Operations:

* ``exec``: run ``argv`` in ``cwd`` (relative to the workdir) with ``env``; payload = stdin. Reply: ``exit_code``,
  ``timed_out``, ``truncated``, ``out_len``; payload = stdout then stderr, each capped at ``cap`` bytes. It gets a new
  session and process group and a marker variable; when it exits or times out every process still carrying its marker
  (its children, grandchildren, even those that called ``setsid``) is killed, so nothing outlives an exec.
* ``kill``: kill the process tree of exec ``target`` now (the host's caller was cancelled).
* ``read`` / ``write`` / ``list`` / ``resolve``: file operations confined to the workdir, symlinks resolved inside
  the container, done as the sandbox user (the server's own uid); a path that leads out is refused with error
  ``outside``; ``read`` reads at most ``limit`` bytes and answers error ``FileTooLargeError`` for a larger file.
* ``reset``: kill every process of the sandbox user and empty the workdir, ``/tmp`` and ``/dev/shm``.

A failed request gets ``error`` (an exception class name, or ``outside``) and ``message``. When stdin closes (the
host went away, even by SIGKILL) the server kills everything and exits, which stops and removes the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from typing import Any

WORKDIR = os.environ.get("AGENTFLOW_WORKDIR", "/workspace")
SCRATCH_DIRS = ("/tmp", "/dev/shm")  # noqa: S108 - the container's own private tmpfs mounts
MARKER = "AGENTFLOW_EXEC_ID"
FRAME = struct.Struct("!II")
OUTPUT_GRACE_S = 1.0
TICK_S = 0.05

_write_lock = threading.Lock()
_running: dict[int, subprocess.Popen[bytes]] = {}
_running_lock = threading.Lock()
_session = os.urandom(6).hex()


def send(header: dict[str, Any], payload: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    head = FRAME.pack(len(encoded), len(payload)) + encoded
    with _write_lock:
        if len(payload) < 65536:
            _write_all(head + payload)  # one write for the common small reply
        else:
            _write_all(head)
            _write_all(payload)


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


def _read_exact(size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(0, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# -- process trees --------------------------------------------------------------------------------------------------


def _marked_pids(marker: bytes) -> list[int]:
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        try:
            with open("/proc/" + name + "/environ", "rb") as handle:
                environ = b"\0" + handle.read()
        except OSError:
            continue
        if marker in environ:
            found.append(int(name))
    return found


def kill_tree(proc: subprocess.Popen[bytes], marker: bytes) -> None:
    """Kill the command's process group, then every process that inherited its marker, until none is left."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    for _ in range(200):  # forks racing the kill show up on the next pass
        pids = _marked_pids(marker)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)


def _kill_everything_else() -> None:
    """SIGKILL every process this user may signal (all but PID 1 and the server), and wait until they are gone."""
    me = os.getpid()
    for _ in range(200):
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # Linux: every process we may signal except init and ourselves
        alive = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in (1, me):
                try:
                    with open("/proc/" + name + "/stat", "rb") as handle:
                        state = handle.read().rsplit(b")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state not in (b"Z", b"X"):
                    alive.append(name)
        if not alive:
            return
        time.sleep(0.005)


def _limit(pid: int, rlimits: dict[str, int]) -> None:
    """Apply the per-exec rlimits to a just-started command.

    Set from outside right after the spawn instead of in a ``preexec_fn``: that would force fork() of the server
    and cost about 2 ms per exec against 0.1 ms. In the microseconds before this runs the command is bounded by the
    container's cgroup (memory, pids) and its tmpfs sizes, which hold anyway; CPU time counts from the start.
    """
    for name, value in rlimits.items():
        with contextlib.suppress(OSError):  # the command already exited
            resource.prlimit(pid, getattr(resource, "RLIMIT_" + name.upper()), (value, value))


def _cap_read(fd: int, buffer: bytearray, cap: int) -> tuple[bool, bool]:
    """Read one chunk into ``buffer`` up to ``cap``; return (eof, dropped bytes)."""
    chunk = os.read(fd, 65536)
    if not chunk:
        return True, False
    room = cap - len(buffer)
    if room > 0:
        buffer += chunk[:room]
    return False, len(chunk) > room


def _feed(stream: Any, data: bytes) -> None:
    try:
        stream.write(data)
    except OSError:
        pass  # the command exited or closed stdin without reading everything
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def do_exec(req: dict[str, Any], payload: bytes) -> None:
    rid = int(req["id"])
    argv = [str(a) for a in req["argv"]]
    marker_value = _session + "-" + str(rid)
    env = {str(k): str(v) for k, v in req["env"].items()}
    env[MARKER] = marker_value
    marker = ("\0" + MARKER + "=" + marker_value + "\0").encode()
    rlimits = req.get("rlimits") or {}
    started = time.monotonic()
    cwd = resolve(str(req.get("cwd") or "."))
    if not os.path.isdir(cwd):
        raise FileNotFoundError("working directory " + repr(req.get("cwd")) + " does not exist in the sandbox")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if req.get("stdin") else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        reason = "command not found" if code == 127 else exc.strerror or str(exc)
        message = ("agentflow sandbox: " + argv[0] + ": " + reason + "\n").encode()
        send({"id": rid, "exit_code": code, "timed_out": False, "truncated": False, "out_len": 0}, message)
        return
    _limit(proc.pid, rlimits)
    with _running_lock:
        _running[rid] = proc
    try:
        timed_out, truncated, out, err = _collect(proc, marker, payload if req.get("stdin") else None, req)
    finally:
        with _running_lock:
            _running.pop(rid, None)
    code = proc.wait()
    send(
        {
            "id": rid,
            "exit_code": -signal.SIGKILL if timed_out else code,
            "timed_out": timed_out,
            "truncated": truncated,
            "out_len": len(out),
            "duration_s": time.monotonic() - started,
        },
        bytes(out) + bytes(err),
    )


def _collect(
    proc: subprocess.Popen[bytes], marker: bytes, stdin: bytes | None, req: dict[str, Any]
) -> tuple[bool, bool, bytearray, bytearray]:
    """Drain stdout and stderr (capped) until both close, the timeout passes, or the command ended while something
    it left behind still holds the pipes; wait for the command's own exit (within the timeout), then kill whatever
    is left of its tree."""
    cap = int(req["cap"])
    deadline = time.monotonic() + float(req["timeout"])
    if stdin is not None and proc.stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    assert proc.stdout is not None
    assert proc.stderr is not None
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    timed_out = truncated = killed = False
    drain_until = 0.0
    try:
        while selector.get_map():
            now = time.monotonic()
            if not killed and (now >= deadline or proc.poll() is not None):
                # Timed out, or the command ended but something it started still holds the pipes.
                timed_out = now >= deadline and proc.poll() is None
                kill_tree(proc, marker)
                killed, drain_until = True, now + OUTPUT_GRACE_S
            if killed and now >= drain_until:
                break
            wait = (drain_until - now) if killed else min(TICK_S, deadline - now)
            for key, _ in selector.select(max(wait, 0.0)):
                eof, dropped = _cap_read(key.fd, buffers[key.fd], cap)
                truncated = truncated or dropped
                if eof:
                    selector.unregister(key.fd)
    finally:
        selector.close()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if not killed:
        # Both pipes closed, but that is not the end of the command: coreutils close stdout and stderr just before
        # they exit, a script may `exec >&- 2>&-` and go on. Its own exit (within the timeout) gives the exit code;
        # killing the tree first would report -9 for a command that was about to exit normally.
        timed_out = not _wait_exit(proc, max(deadline - time.monotonic(), 0.0))
    kill_tree(proc, marker)  # what detached from the pipes (nohup ... &) does not outlive the exec either
    out, err = buffers.values()
    return timed_out, truncated, out, err


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the command exits within ``timeout``; a pidfd wakes us at its exit (Popen.wait polls with sleeps)."""
    if proc.poll() is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return proc.poll() is not None


def do_kill(req: dict[str, Any]) -> None:
    target = int(req["target"])
    with _running_lock:
        proc = _running.get(target)
    if proc is not None:
        kill_tree(proc, ("\0" + MARKER + "=" + _session + "-" + str(target) + "\0").encode())
    send({"id": int(req["id"])})


# -- files ----------------------------------------------------------------------------------------------------------


class Outside(Exception):
    pass


def _inside(path: str) -> bool:
    return path == WORKDIR or path.startswith(WORKDIR.rstrip("/") + "/")


def resolve(relative: str, *, make_parents: bool = False, make_dir: bool = False) -> str:
    """Resolve a workdir-relative path with symlinks followed, refusing anything that lands outside the workdir."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Outside(relative)
    current = WORKDIR
    for index, part in enumerate(parts):
        candidate = os.path.realpath(os.path.join(current, part))
        if not _inside(candidate):
            raise Outside(relative)
        last = index == len(parts) - 1
        if (make_parents and not last) or (make_dir and last):
            if not os.path.lexists(candidate):
                os.mkdir(candidate)
            elif not os.path.isdir(candidate):
                raise NotADirectoryError(relative)
        current = candidate
    return current


def do_file(req: dict[str, Any], payload: bytes) -> None:
    rid = int(req["id"])
    op = req["op"]
    path = str(req.get("path", "."))
    if op == "read":
        limit = int(req["limit"])
        data = _read_capped(resolve(path), path, limit)
        if data is None:
            send({"id": rid, "error": "FileTooLargeError", "message": path, "limit": limit})
        else:
            send({"id": rid}, data)
    elif op == "write":
        target = resolve(path, make_parents=True)
        if os.path.isdir(target):
            raise IsADirectoryError(path)
        # O_NOFOLLOW: a symlink put in place after the check is refused, not followed out of the workdir
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        send({"id": rid})
    elif op == "list":
        send({"id": rid, "files": _list(path)})
    elif op == "resolve":
        send({"id": rid, "path": resolve(path, make_parents=True, make_dir=bool(req.get("mkdir")))})
    else:
        raise ValueError("unknown operation " + str(op))


def _read_capped(target: str, path: str, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit``: never more than ``limit + 1`` bytes are read, so
    a huge or ever-growing file cannot fill the server's memory. O_NONBLOCK: a FIFO with no writer reads as empty
    instead of hanging the request."""
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(path)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        chunks, size = [], 0
        while size <= limit:
            chunk = handle.read(min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return None if size > limit else b"".join(chunks)


def _list(path: str) -> list[str]:
    target = resolve(path)
    if not os.path.lexists(target):
        raise FileNotFoundError(path)
    root = os.path.realpath(WORKDIR)
    if os.path.isfile(target):
        return [os.path.relpath(target, root)]
    found = []
    for directory, _, files in os.walk(target):
        for name in files:
            candidate = os.path.join(directory, name)
            if stat.S_ISREG(os.lstat(candidate).st_mode):
                found.append(os.path.relpath(candidate, root))
    return sorted(found)


def _wipe(directory: str) -> None:
    def unlock(function: object, path: str, _exc: object) -> None:
        # a command may have taken away its own permissions (chmod 000); the owner can give them back
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
        except OSError:
            pass
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)

    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=unlock)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def do_reset(req: dict[str, Any]) -> None:
    _kill_everything_else()
    with _running_lock:
        _running.clear()
    for directory in (WORKDIR, *SCRATCH_DIRS):
        _wipe(directory)
    left = os.listdir(WORKDIR)
    send({"id": int(req["id"]), "left": left})


# -- main loop ------------------------------------------------------------------------------------------------------


def handle(req: dict[str, Any], payload: bytes) -> None:
    try:
        op = req["op"]
        if op == "exec":
            do_exec(req, payload)
        elif op == "reset":
            do_reset(req)
        else:
            do_file(req, payload)
    except Outside as exc:
        send({"id": req.get("id"), "error": "outside", "message": str(exc)})
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the host as an error reply
        send({"id": req.get("id"), "error": type(exc).__name__, "message": str(exc)})


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    send({"id": 0, "ready": True, "pid": os.getpid(), "python": sys.version.split()[0]})
    try:
        while True:
            header_len, payload_len = FRAME.unpack(_read_exact(FRAME.size))
            req = json.loads(_read_exact(header_len))
            payload = _read_exact(payload_len) if payload_len else b""
            if req.get("op") == "kill":
                do_kill(req)
            elif req.get("op") == "ping":
                send({"id": req["id"], "pong": True})
            else:
                threading.Thread(target=handle, args=(req, payload), daemon=True).start()
    except EOFError:
        pass
    finally:
        # The host is gone (or closed us): nothing of this sandbox may keep running.
        _kill_everything_else()
        os._exit(0)


if __name__ == "__main__":
    main()
