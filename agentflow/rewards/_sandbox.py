"""The run's sandbox as a reward hook sees it: every exec recorded, run on a throwaway copy of the workdir.

A hook grades what the agent did, so it must not change what the agent sees next: a test run in the agent's own
workdir leaves ``__pycache__`` folders (and whatever the tests write) that the agent's next ``list_files`` shows.
:class:`HookSandbox` is what the hook engine hands a hook as ``StepContext.sandbox``:

* ``read_file`` and ``list_files`` read the agent's workdir as it is;
* ``write_file`` and ``copy_in`` are refused (``PermissionError``): a grader never edits what it grades;
* ``exec`` runs the command on a fresh copy of the workdir in the sandbox's own temporary folder, removed when the
  command ends, and reports it to the engine, which records a ``sandbox_exec`` event naming the hook
  (``by: "hook:<name>"``, ``workdir: "copy"``).

Why a copy, on every backend, rather than a read-only run with ``PYTHONDONTWRITEBYTECODE=1`` and
``-p no:cacheprovider``: those flags stop Python's and pytest's own caches, but not a test, a build or a
``verify_command`` that writes files, and a hook's command is arbitrary. Every backend has a temporary folder
outside the workdir that only this sandbox sees (local: a private ``/tmp`` in namespaces mode, the sandbox's own
``TMPDIR`` in process mode; docker: the container's ``/tmp``; e2b: the VM's ``/tmp``), so the copy is made by the
sandbox's ``cp -a`` where the files are, with no round trip through the host; the cost is one copy of the workdir
per hook command. A command that writes outside its working folder by absolute path (``/workspace/...``) still
reaches the agent's workdir: the copy protects what a command does relative to where it runs.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping

from agentflow.errors import SandboxError
from agentflow.sandboxes._base import (
    ExecObserver,
    ExecResult,
    IsolationReport,
    ObservedSandbox,
    Sandbox,
    workdir_relative,
)
from agentflow.traces._payloads import SandboxExecData, sandbox_exec_data

ExecReport = Callable[[SandboxExecData], None]
"""Receives the data of one ``sandbox_exec`` event (``cmd``, ``by``, the result fields, ...) to record."""


COPY_FAILED_EXIT = 125
_COPY_FAILED = "agentflow: could not copy the workdir for a reward hook"
# $1 the workdir, $2 the scratch folder's name, $3 the working folder inside the copy, then the command. The shell
# makes the copy and then becomes the command (`exec`), so its exit code is the command's own, a signal's negative
# code included; the copy is removed by a second exec once the command has ended.
_COPY_THEN_RUN = (
    'workdir=$1 scratch="${TMPDIR:-/tmp}/$2" where=$3; shift 3; '
    f'rm -rf "$scratch" && mkdir -p "$scratch" && cp -a "$workdir/." "$scratch/" || {{ echo "{_COPY_FAILED}" >&2; '
    f'rm -rf "$scratch"; exit {COPY_FAILED_EXIT}; }}; '
    'cd "$scratch/$where" && exec "$@"'
)
_REMOVE_COPY = 'rm -rf "${TMPDIR:-/tmp}/$1"'


class HookSandbox(Sandbox):
    """The run's sandbox for one reward hook: reads pass through, writes are refused, execs run on a copy.

    Args:
        inner: the run's sandbox.
        by: who runs the commands, recorded with each (``hook:tests_delta``).
        report: called with each command's ``sandbox_exec`` data after it ran (the engine records it).
        scratch_prefix: the start of the scratch folders' names; the engine makes it unique per hook and step
            (``hook-tests_delta-12``) and deterministic, so a ``verify`` replay's test output names the same paths.
    """

    def __init__(self, inner: Sandbox, *, by: str, report: ExecReport, scratch_prefix: str) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.by = by
        self._report = report
        self._prefix = scratch_prefix  # made safe for a file name at the first exec: most hooks never exec
        self._count = 0

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``cmd`` on a fresh copy of the workdir (``cwd`` is taken inside the copy) and record it.

        ``timeout`` covers the copy too. The exit code is the command's own (a signal's negative code too); a second,
        recorded exec removes the copy afterwards.

        Raises:
            PathOutsideWorkdirError: ``cwd`` is outside the workdir.
            SandboxError: the workdir could not be copied (the command did not run).
        """
        where = workdir_relative(cwd or ".", self.inner.workdir)
        self._count += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self._prefix)
        scratch = f"agentflow-{safe}-{self._count}"
        wrapped = ["sh", "-c", _COPY_THEN_RUN, "agentflow-hook", self.inner.workdir, scratch, where, *cmd]
        result = await self.inner.exec(wrapped, stdin=stdin, env=env, timeout=timeout)
        self._record(cmd, cwd, result)
        cleanup = ["sh", "-c", _REMOVE_COPY, "agentflow-hook", scratch]
        self._record(cleanup, None, await self.inner.exec(cleanup, env=env))
        if result.exit_code == COPY_FAILED_EXIT and _COPY_FAILED in result.stderr:
            raise SandboxError(f"{self.by} could not copy the workdir to run {cmd!r}: {result.stderr[-500:]}")
        return result

    def _record(self, cmd: list[str], cwd: str | None, result: ExecResult) -> None:
        data = sandbox_exec_data(cmd, self.by, result)
        data["workdir"] = "copy"
        if cwd is not None:
            data["cwd"] = cwd
        self._report(data)

    async def read_file(self, path: str) -> bytes:
        return await self.inner.read_file(path)

    async def list_files(self, path: str = ".") -> list[str]:
        return await self.inner.list_files(path)

    async def write_file(self, path: str, data: str | bytes) -> None:
        raise PermissionError(f"{self.by} may not write {path!r}: a reward hook never changes the agent's files")

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        raise PermissionError(f"{self.by} may not copy files into the workdir: it never changes the agent's files")

    def isolation(self) -> IsolationReport:
        return self.inner.isolation()

    @property
    def workdir(self) -> str:
        return self.inner.workdir

    async def close(self) -> None:
        """Nothing to release: the run owns the sandbox and closes it when the run ends."""

    def recorded(self, sandbox: Sandbox, *, label: str) -> Sandbox:
        """``sandbox`` (another one the hook made, e.g. a fresh sandbox to re-execute in), its execs recorded too.

        The data names that sandbox (``sandbox: "fresh"``) so a reader can tell these commands from the agent's.
        """
        return ObservedSandbox(sandbox, self.observer(label=label))

    def observer(self, *, label: str) -> ExecObserver:
        """What records the execs of sandboxes the hook's code creates itself (``label`` names them), for code that
        takes an exec observer rather than a sandbox (a grader with a pool of its own)."""

        def record(cmd: list[str], cwd: str | None, result: ExecResult) -> None:
            data = sandbox_exec_data(cmd, self.by, result)
            data["sandbox"] = label
            if cwd is not None:
                data["cwd"] = posixpath.normpath(cwd)
            self._report(data)

        return record
