"""The E2B sandbox: a cloud microVM per sandbox through the official ``e2b`` SDK (``pip install 'agentflow[e2b]'``).

It keeps the Sandbox contract with the same error mapping as the other backends: commands run through
``sh -c`` with ``ulimit`` for the per-exec memory, file size and CPU limits, ``timed_out`` on timeout, output capped
here; files are confined to the workdir by resolving symlinks inside the VM before every file operation.

It needs ``E2B_API_KEY`` (and reaches the E2B service over the network), so its contract test runs only when the key
is set; it cannot run on a machine without network access to E2B, such as this project's CI.

``cleanup()`` is the base's (nothing to remove): an E2B sandbox leaves nothing on this machine, and E2B kills it an
hour after it started (``_LIFETIME_S``) even when its process died before ``close()``.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentflow.errors import (
    FileTooLargeError,
    MissingExtraError,
    PathOutsideWorkdirError,
    SandboxError,
    SandboxUnavailableError,
)
from agentflow.sandboxes._base import (
    ExecOutput,
    ExecRequest,
    IsolationReport,
    Sandbox,
    SandboxLimits,
    file_error,
    workdir_relative,
)
from agentflow.sandboxes._registry import sandbox

WORKDIR = "/home/user/workspace"
TEMPLATE_ENV_VAR = "AGENTFLOW_E2B_TEMPLATE"
TIMEOUT_EXIT_CODE = -9
# Unverified here (no E2B access): a process that calls setsid outlives the timeout of its exec until close().
_KNOWN_FAILURES = ("kill_process_tree_on_timeout",)
_LIFETIME_S = 3600  # E2B kills an idle VM after this many seconds, a backstop should close() never run


def _e2b() -> Any:
    try:
        import e2b
    except ImportError:
        raise MissingExtraError("e2b", "e2b") from None
    return e2b


def _relative(path: str) -> str:
    return workdir_relative(path, WORKDIR)


@sandbox("e2b")
class E2BSandbox(Sandbox):
    """An E2B cloud sandbox with the agentflow Sandbox contract.

    Create it with ``await E2BSandbox.create(limits)`` or ``create_sandbox("e2b")`` (``E2B_API_KEY`` must be set;
    ``AGENTFLOW_E2B_TEMPLATE`` picks a template other than E2B's default).
    """

    backend = "e2b"

    def __init__(
        self,
        *,
        limits: SandboxLimits,
        box: Any,
        template: str | None,
        api_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.limits = limits
        self._box = box
        self._template = template
        self._api_key = api_key  # what a fork is created with
        self._labels = dict(labels or {})
        self._closed = False

    @classmethod
    async def create(
        cls,
        limits: SandboxLimits | None = None,
        *,
        template: str | None = None,
        api_key: str | None = None,
        image: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> E2BSandbox:
        """Start an E2B sandbox with an empty workdir.

        ``image`` (the workflow's ``sandbox.image``) is the E2B template when ``template`` is not given; ``labels``
        become the sandbox's metadata.

        Raises:
            MissingExtraError: the ``e2b`` package is not installed.
            SandboxUnavailableError: no API key, or E2B refused it.
            SandboxError: E2B failed to start the sandbox.
        """
        e2b = _e2b()
        limits = limits or SandboxLimits()
        key = api_key or os.environ.get("E2B_API_KEY")
        if not key:
            raise SandboxUnavailableError("the e2b sandbox needs an API key: set E2B_API_KEY (from your E2B account)")
        template = template or image or os.environ.get(TEMPLATE_ENV_VAR)
        try:
            box = await e2b.AsyncSandbox.create(
                template=template,
                timeout=_LIFETIME_S,
                allow_internet_access=limits.network,
                metadata={**(labels or {}), "agentflow.sandbox": "e2b"},
                api_key=key,
            )
        except e2b.AuthenticationException as exc:
            raise SandboxUnavailableError(f"E2B refused the API key in E2B_API_KEY: {exc}") from exc
        except e2b.SandboxException as exc:
            raise SandboxError(f"E2B could not start a sandbox: {exc}") from exc
        created = cls(limits=limits, box=box, template=template, api_key=key, labels=labels)
        try:
            await created._run_raw(["mkdir", "-p", WORKDIR], timeout=60)
        except BaseException:
            await created.close()
            raise
        return created

    @property
    def workdir(self) -> str:
        """``/home/user/workspace`` inside the VM."""
        return WORKDIR

    async def _run_raw(
        self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> tuple[int, str, str, bool]:
        """Run an argv through the SDK; return (exit code, stdout, stderr, timed out)."""
        e2b = _e2b()
        try:
            result = await self._box.commands.run(shlex.join(argv), envs=dict(env or {}), timeout=timeout)
        except e2b.CommandExitException as exc:  # a non-zero exit is a result, not an error, for agentflow
            return int(exc.exit_code), str(exc.stdout), str(exc.stderr), False
        except e2b.TimeoutException:
            return TIMEOUT_EXIT_CODE, "", "", True
        except e2b.SandboxException as exc:
            raise SandboxError(f"the E2B sandbox failed: {exc}") from exc
        return int(result.exit_code), str(result.stdout), str(result.stderr), False

    async def _exec(self, request: ExecRequest) -> ExecOutput:
        """Run one command in the VM with the per-exec limits (``ulimit``); see ``Sandbox.exec``."""
        directory = posixpath.join(WORKDIR, _relative(request.cwd or "."))
        stdin_file = "/dev/null"
        if request.stdin is not None:
            stdin_file = f"/tmp/agentflow-stdin-{secrets.token_hex(8)}"  # noqa: S108 - inside the VM
            await self._write_raw(stdin_file, request.stdin)
        script = (
            f"ulimit -v {self.limits.memory_mb * 1024} -f {self.limits.file_size_mb * 2048} -t {self.limits.cpu_s}"
            ' 2>/dev/null; cd "$1" || exit 1; input="$2"; shift 2; exec "$@" < "$input"'
        )
        code, out, err, timed_out = await self._run_raw(
            ["sh", "-c", script, "sh", directory, stdin_file, *request.argv],
            timeout=request.timeout,
            env={"HOME": WORKDIR, "LANG": "C.UTF-8", **request.env},
        )
        if request.stdin is not None:
            await self._run_raw(["rm", "-f", stdin_file], timeout=30)
        # The SDK hands the whole output over as text; ``Sandbox.exec`` caps it.
        return ExecOutput(exit_code=code, stdout=out.encode(), stderr=err.encode(), timed_out=timed_out)

    async def _resolve(self, path: str) -> str:
        """The real path of ``path`` inside the VM, refused when a symlink leads it out of the workdir."""
        self._ensure_open()
        joined = posixpath.join(WORKDIR, _relative(path))
        code, out, err, _ = await self._run_raw(["realpath", "-m", "--", joined], timeout=30)
        if code != 0:
            raise SandboxError(f"could not resolve {path!r} in the E2B sandbox: {err.strip()}")
        real = out.strip()
        if real != WORKDIR and not real.startswith(WORKDIR + "/"):
            raise PathOutsideWorkdirError(f"{path!r} resolves outside the sandbox workdir {WORKDIR}")
        return real

    async def _write_raw(self, real: str, data: bytes) -> None:
        try:
            await self._box.files.write(real, data)
        except _e2b().SandboxException as exc:
            raise SandboxError(f"E2B could not write {real}: {exc}") from exc

    async def read_file(self, path: str) -> bytes:
        """Return a file's bytes; see ``Sandbox.read_file`` for the exceptions."""
        real = await self._resolve(path)
        # The SDK reads a file whole: its size, asked first, keeps a huge one from being downloaded at all.
        code, out, _, _ = await self._run_raw(["stat", "-L", "-c", "%s %F", "--", real], timeout=30)
        size, _, kind = out.strip().partition(" ")
        if code == 0 and kind == "directory":
            raise file_error(IsADirectoryError, path)
        if code == 0 and size.isdigit() and int(size) > self.limits.read_bytes:
            raise FileTooLargeError(path, self.limits.read_bytes)
        e2b = _e2b()
        try:
            data = bytes(await self._box.files.read(real, format="bytes"))
        except (e2b.NotFoundException, e2b.FileNotFoundException):
            raise file_error(FileNotFoundError, path) from None
        except e2b.InvalidArgumentException:
            raise file_error(IsADirectoryError, path) from None
        if len(data) > self.limits.read_bytes:  # it grew between the two calls
            raise FileTooLargeError(path, self.limits.read_bytes)
        return data

    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file, creating parent directories; see ``Sandbox.write_file``."""
        real = await self._resolve(path)
        code, _, _, _ = await self._run_raw(["test", "-d", real], timeout=30)
        if code == 0:
            raise file_error(IsADirectoryError, path)
        await self._write_raw(real, data.encode() if isinstance(data, str) else data)

    async def list_files(self, path: str = ".") -> list[str]:
        """Regular files under ``path``, relative to the workdir, sorted; see ``Sandbox.list_files``."""
        real = await self._resolve(path)
        code, out, err, _ = await self._run_raw(["find", real, "-type", "f", "-print0"], timeout=60)
        if code != 0:
            raise FileNotFoundError(f"{path!r} does not exist in the sandbox: {err.strip()}")
        return sorted(posixpath.relpath(name, WORKDIR) for name in out.split("\0") if name)

    async def copy_in(self, source_dir: str, dest: str = ".") -> None:
        """Copy a host directory's regular files into the workdir (one upload per file)."""
        source = Path(source_dir)
        if not await asyncio.to_thread(source.is_dir):
            raise FileNotFoundError(f"cannot copy into the sandbox: {source_dir!r} is not a directory")
        files = await asyncio.to_thread(lambda: sorted(p for p in source.rglob("*") if p.is_file()))
        base = _relative(dest)
        for file in files:
            data = await asyncio.to_thread(file.read_bytes)
            await self.write_file(posixpath.join(base, file.relative_to(source).as_posix()), data)

    async def fork(self) -> E2BSandbox:
        """A new E2B sandbox of the same template, limits and labels (plus ``agentflow.fork_of``, this sandbox's id)
        whose workdir is a copy of this one's, carried as one tar (modes, symlinks and empty folders kept): ``tar -c``
        here, downloaded, uploaded to the new sandbox and unpacked there.

        Only the workdir is copied: not ``/tmp``, the rest of the VM, or processes (E2B's own memory-snapshot fork
        would copy all of those, unlike a fork of the other backends). The copy goes through this machine, so its
        cost grows with the workdir's size. The fork is independent and never pooled; closing it kills it.

        Raises:
            SandboxError: this sandbox is closed, or packing, starting or unpacking failed.
        """
        self._ensure_open()
        archive = f"/tmp/agentflow-fork-{secrets.token_hex(8)}.tar"  # noqa: S108 - inside each VM
        code, _, err, timed_out = await self._run_raw(["tar", "-c", "-f", archive, "-C", WORKDIR, "."], timeout=300)
        try:
            if code != 0 or timed_out:
                raise SandboxError(f"could not pack the workdir to fork it: {err.strip()[-500:] or 'timed out'}")
            try:
                data = bytes(await self._box.files.read(archive, format="bytes"))
            except _e2b().SandboxException as exc:
                raise SandboxError(f"E2B could not download the workdir to fork it: {exc}") from exc
        finally:
            await self._run_raw(["rm", "-f", archive], timeout=30)
        labels = {**self._labels, "agentflow.fork_of": str(getattr(self._box, "sandbox_id", ""))}
        forked = await E2BSandbox.create(self.limits, template=self._template, api_key=self._api_key, labels=labels)
        forked.forked_from = repr(self)
        try:
            await forked._write_raw(archive, data)
            unpack = 'tar -x -p -f "$1" -C "$2"; status=$?; rm -f "$1"; exit $status'
            code, _, err, timed_out = await forked._run_raw(["sh", "-c", unpack, "sh", archive, WORKDIR], timeout=300)
            if code != 0 or timed_out:
                raise SandboxError(f"could not unpack the workdir in the fork: {err.strip()[-500:] or 'timed out'}")
        except BaseException:
            await forked.close()
            raise
        return forked

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<E2BSandbox {state} {getattr(self._box, 'sandbox_id', '?')} template={self._template or 'default'}>"

    @property
    def known_failures(self) -> tuple[str, ...]:
        """``kill_process_tree_on_timeout``: unverified here, a process that calls ``setsid`` is assumed to outlive
        the timeout of its exec until ``close()``."""
        return _KNOWN_FAILURES

    def isolation(self) -> IsolationReport:
        """Report what E2B provides (a separate microVM) and the limits applied per exec."""
        return IsolationReport(
            backend=self.backend,
            network_isolated=not self.limits.network,
            filesystem_isolated=True,
            pid_namespace=True,
            resource_limits=True,
            details={
                "sandbox_id": getattr(self._box, "sandbox_id", None),
                "template": self._template or "E2B default",
                "workdir": WORKDIR,
                "network": "allowed by limits.network" if self.limits.network else "internet access off",
                "limits": self.limits.model_dump(),
                "known_conformance_failures": list(self.known_failures),  # recorded with the run, for its reader
            },
        )

    async def close(self) -> None:
        """Kill the E2B sandbox; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._box.kill()
        except _e2b().SandboxException as exc:
            raise SandboxError(f"E2B could not kill sandbox {self._box.sandbox_id}: {exc}") from exc
