"""The warm grading process that runs inside a sandbox, one exec per batch of samples (standard library only, any
Python 3.8+, run as ``python3 -I -c <this file>``; it imports nothing from agentflow).

It reads one JSON object on stdin: ``timeout`` (seconds per sample), ``output_cap`` (bytes a sample may print),
``preload`` (modules imported once, before any fork, so that no sample pays for them) and ``samples``
(``[{"index": i, "program": text}]``). For each sample, in order, it prints ``{"start": i}``, forks a child that
runs the program, and prints ``{"index": i, "passed": ..., "result": ..., "duration_s": ...}`` once the child and
everything it started are gone. Samples never run at the same time, so whatever is alive after one belongs to it.

Each sample's child: a new session, its own empty temporary folder as working directory and ``TMPDIR``, stdin from
``/dev/null``, stdout and stderr into a pipe this process drains and counts (past ``output_cap`` bytes the sample
is killed: ``failed: printed more than N bytes``), no other file descriptor but its verdict pipe, the sandbox's
resource limits (memory, processes, file size, CPU) inherited from the exec. A timeout kills it and every process
it started (``timed out``).

The success signal. A sample passes only when its program (whose last statement is the call to ``check``) ran to
its end in the child itself: then the wrapper below writes ``P`` and a random token, drawn by this process for
this sample alone, on the verdict pipe, and exits 0. This process requires both the exact token on that pipe and
the child's exit status 0. So

* printing anything (a fake ``passed``, a fake verdict line of this process) does not pass: stdout is a different
  pipe, and this process's own stdout (where verdicts go) is not among the child's descriptors; this process is
  not dumpable (``PR_SET_DUMPABLE`` 0), so the child cannot open it through ``/proc/<pid>/fd`` or trace it either;
* ``sys.exit(0)`` or ``raise SystemExit`` (also from a ``finally``) is an exception out of the program:
  ``failed: SystemExit: 0``; ``os._exit(0)``, a signal, or killing this process (kill the parent) end the child
  before the token is written: failed (the host grades a sample during which this process died as failed);
* a process the program forked runs the same code, but the wrapper writes the token only from the child's own pid.

What remains possible is a program that deliberately reads the wrapper's frame or memory from inside its own
interpreter (``sys._getframe``, ``gc``) to find the token and the pipe: in-process execution, which the reference
harness uses too, cannot hide them from code that runs in the same interpreter. The sandbox still contains such a
program; it can only lie about its own verdict.

Everything a sample started dies with it: this process is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so
orphans, also those that called ``setsid``, become its children; after each sample it kills every descendant
(read from ``/proc``) until it has no child left, which leaves nothing to disturb the next sample.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
REASON_CHARS = 300
_VERDICT_BYTES = 1024
_READ_CHUNK = 65536


def _descendants(root: int) -> list[int]:
    """The pids of every living descendant of ``root``, read from ``/proc``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _reap_all() -> bool:
    """Reap every child that has ended; True while some child still lives."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _kill_everything_started() -> None:
    """Kill every descendant of this process and reap them, until none is left (a fork bomb forks while it dies)."""
    me = os.getpid()
    while _reap_all():
        for pid in _descendants(me):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def _reason(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except BaseException:  # noqa: BLE001 - an exception whose str() raises still fails the sample
        text = type(exc).__name__
    return text[:REASON_CHARS]


def _run_program(
    program: str,
    verdict_fd: int,
    token: bytes,
    _write: Any = os.write,
    _getpid: Any = os.getpid,
    _exit: Any = os._exit,
) -> None:
    """Run the program in this (child) process; the token goes out only if it ran to its end, here."""
    me = _getpid()
    try:
        exec(compile(program, "<sample>", "exec"), {})  # noqa: S102 - running the program is the point
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt fail the sample too
        if _getpid() == me:
            _write(verdict_fd, b"F" + _reason(exc).encode("utf-8", "replace"))
        _exit(1)
    if _getpid() == me:
        _write(verdict_fd, b"P" + token)
    _exit(0)


def _child(program: str, verdict_fd: int, output_fd: int, workdir: str, token: bytes) -> None:
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        keep = max(verdict_fd, 3)
        os.closerange(3, verdict_fd)
        os.closerange(keep + 1, 1 << 16)
        os.chdir(workdir)
        os.environ["TMPDIR"] = workdir
        tempfile.tempdir = workdir
    except BaseException:  # noqa: BLE001 - a child that cannot be set up fails its sample, never the runner
        os._exit(125)
    _run_program(program, verdict_fd, token)


class _Watch:
    """What one sample's child did, as seen from here: its verdict pipe, how much it printed, how it ended."""

    def __init__(self, pid: int, verdict_fd: int, output_fd: int) -> None:
        self.pid = pid
        self.verdict_fd = verdict_fd
        self.output_fd = output_fd
        self.exited = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None  # Linux 5.3, Python 3.9
        self.verdict = b""
        self.printed = 0
        self.status: int | None = None
        self.timed_out = False

    def wait(self, deadline: float, cap: int) -> None:
        """Drain the pipes until the child exits, prints more than ``cap`` bytes, or the deadline passes."""
        open_fds = [self.verdict_fd, self.output_fd]
        while self.status is None and self.printed <= cap:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                return
            if self.exited is not None:
                readable, _, _ = select.select([*open_fds, self.exited], [], [], remaining)
            else:  # no pidfd: look at the child every 5 ms
                readable, _, _ = select.select(open_fds, [], [], min(remaining, 0.005))
            for fd in readable:
                if fd != self.exited:
                    self._read(fd, open_fds)
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
            if reaped:
                self.status = status
                self._read_rest()

    def _read(self, fd: int, open_fds: list[int]) -> None:
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            open_fds.remove(fd)
        elif fd == self.verdict_fd:
            self.verdict += chunk[: _VERDICT_BYTES - len(self.verdict)]
        else:
            self.printed += len(chunk)

    def _read_rest(self) -> None:
        """The child wrote its verdict before it exited, so it is in the pipe now."""
        os.set_blocking(self.verdict_fd, False)
        with contextlib.suppress(BlockingIOError):
            while len(self.verdict) < _VERDICT_BYTES and (chunk := os.read(self.verdict_fd, _READ_CHUNK)):
                self.verdict += chunk

    def close(self) -> None:
        for fd in (self.verdict_fd, self.output_fd, *([self.exited] if self.exited is not None else [])):
            os.close(fd)

    def result(self, token: bytes, cap: int) -> tuple[bool, str]:
        """(passed, result): passed only with this sample's token on the verdict pipe and exit status 0."""
        if self.timed_out:
            return False, "timed out"
        if self.printed > cap:
            return False, f"failed: printed more than {cap} bytes"
        if self.verdict == b"P" + token and self.status == 0:
            return True, "passed"
        if self.verdict.startswith(b"F"):
            return False, "failed: " + self.verdict[1:].decode("utf-8", "replace")
        status = self.status if self.status is not None else 0
        if os.WIFSIGNALED(status):
            return False, f"failed: killed by {signal.Signals(os.WTERMSIG(status)).name} before check returned"
        return False, f"failed: exited with status {os.waitstatus_to_exitcode(status)} before check returned"


def grade_one(program: str, timeout: float, cap: int) -> tuple[bool, str, float]:
    """Run one program in a forked child; return (passed, result, seconds)."""
    verdict_read, verdict_write = os.pipe()
    output_read, output_write = os.pipe()
    token = os.urandom(16).hex().encode()
    workdir = tempfile.mkdtemp(prefix="sample-")
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(verdict_read)
        os.close(output_read)
        _child(program, verdict_write, output_write, workdir, token)
    os.close(verdict_write)
    os.close(output_write)
    watch = _Watch(pid, verdict_read, output_read)
    try:
        watch.wait(started + timeout, cap)
    finally:
        _kill_everything_started()
        watch.close()
    duration = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    passed, result = watch.result(token, cap)
    return passed, result, duration


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()  # before the next fork, so a child inherits no buffered verdicts


def main() -> None:
    config = json.loads(sys.stdin.buffer.read())
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for module in config.get("preload", []):
        with contextlib.suppress(ImportError):
            __import__(module)
    for sample in config["samples"]:
        _emit({"start": sample["index"]})
        passed, result, duration = grade_one(sample["program"], config["timeout"], config["output_cap"])
        _emit({"index": sample["index"], "passed": passed, "result": result, "duration_s": round(duration, 4)})


if __name__ == "__main__":
    main()
