"""The ``lsp_diagnostics`` reward hook: mirror the sandbox's workdir, score each file-editing step."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow._tempdirs import owned_tempdir
from agentflow.errors import PathOutsideWorkdirError, RewardHookError
from agentflow.rewards._base import Reward, RewardHook, StepContext, reward_hook
from agentflow.rewards._lsp.client import PYTHON_SUFFIXES, SERVERS, Diagnostic, LanguageServerSession, _require_pygls
from agentflow.rewards._lsp.edits import StepEdits, changed_lines, name_positions, parses, step_edits
from agentflow.sandboxes._base import Sandbox

CONFIG_FILES = frozenset({"pyproject.toml", "pyrightconfig.json", "setup.cfg", "ruff.toml", ".ruff.toml"})
"""Files mirrored besides Python sources, because they change what the servers report."""


def _mirrored(path: str) -> bool:
    return path.endswith(PYTHON_SUFFIXES) or posixpath.basename(path) in CONFIG_FILES


@dataclass
class _RunWorkspace:
    """One run's synced copy of the sandbox workdir and its warm language server."""

    root: Path
    files: dict[str, str]
    session: LanguageServerSession | None = None
    diagnostics: int | None = None  # D of the last scored state
    baseline: bool = False  # D_0 came from the workspace before the first step
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Task[None] | None = None


@reward_hook("lsp_diagnostics")
class LspDiagnosticsHook(RewardHook):
    """``r_t = a·(D_{t−1} − D_t) + b·S_t − c·(1 − conf_t)`` from a real language server (see the module docstring).

    Options: ``server`` (basedpyright | ruff | pylsp), ``a``, ``b``, ``c`` (0.5, 0.4, 0.1), ``include_warnings``
    (false), ``max_files`` (500 Python files mirrored), ``max_symbols`` (20 definition requests per step),
    ``request_timeout_s`` (30).

    Label: −1 when the step made things worse (more diagnostics, or a safety check failed), +1 when it removed
    diagnostics, 0 otherwise. Returns None for a step that edited no file and for a workspace without Python
    files. Needs the run's sandbox: offline (``sandbox=None``) it raises a clear error.
    """

    version = "2"  # 2: names resolved by semantic tokens first; LSP columns in UTF-16

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        server = str(options.get("server", "basedpyright"))
        if server not in SERVERS:
            from agentflow.errors import ConfigError

            raise ConfigError(
                f"lsp_diagnostics: unknown server {server!r}", fix=f"choose one of {', '.join(sorted(SERVERS))}"
            )
        self.server = SERVERS[server]
        _require_pygls()
        self.server.resolve()  # a missing server fails when the workflow compiles, with the install hint
        self.a = float(options.get("a", 0.5))
        self.b = float(options.get("b", 0.4))
        self.c = float(options.get("c", 0.1))
        self.include_warnings = bool(options.get("include_warnings", False))
        self.max_files = int(options.get("max_files", 500))
        self.max_symbols = int(options.get("max_symbols", 20))
        self.request_timeout_s = float(options.get("request_timeout_s", 30.0))
        self._runs: dict[str, _RunWorkspace] = {}

    # -- run lifecycle ----------------------------------------------------------------------------------------

    async def start_run(self, step: StepContext) -> None:
        """Snapshot the workdir before the first step (D_0), and warm the server up in the background."""
        if step.sandbox is None:
            return
        state = await self._open_workspace(step.run_id, step.sandbox, baseline=True)
        if state is not None:
            state.ready = asyncio.create_task(self._warm(state))

    async def finish_run(self, run_id: str) -> None:
        state = self._runs.pop(run_id, None)
        if state is None:
            return
        if state.ready is not None and not state.ready.done():
            state.ready.cancel()
            with contextlib.suppress(BaseException):
                await state.ready
        if state.session is not None:
            await state.session.close()
        shutil.rmtree(state.root, ignore_errors=True)

    def session_of(self, run_id: str) -> LanguageServerSession | None:
        """The warm server of a run (tests use it to kill the server mid-run)."""
        state = self._runs.get(run_id)
        return None if state is None else state.session

    async def _open_workspace(self, run_id: str, sandbox: Sandbox, *, baseline: bool) -> _RunWorkspace | None:
        files = await self._read_all(sandbox)
        if not any(path.endswith(PYTHON_SUFFIXES) for path in files):
            return None  # not a Python workspace: nothing for a Python language server to say
        root = owned_tempdir("agentflow-lsp-")
        for relative, text in files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        state = _RunWorkspace(root=root, files=files, baseline=baseline)
        self._runs[run_id] = state
        return state

    async def _read_all(self, sandbox: Sandbox) -> dict[str, str]:
        try:
            listed = await sandbox.list_files(".")
        except FileNotFoundError:
            return {}
        files: dict[str, str] = {}
        python_count = 0
        for relative in listed:
            if not _mirrored(relative) or "/." in f"/{relative}" or "__pycache__" in relative:
                continue
            if relative.endswith(PYTHON_SUFFIXES):
                python_count += 1
                if python_count > self.max_files:
                    continue
            text = await _read_text(sandbox, relative)
            if text is not None:
                files[relative] = text
        return files

    async def _warm(self, state: _RunWorkspace) -> None:
        session = LanguageServerSession(self.server, state.root, request_timeout_s=self.request_timeout_s)
        await session.start()
        state.session = session
        session.sync(state.files)
        state.diagnostics = self._count(await self._diagnose(state))

    # -- scoring ----------------------------------------------------------------------------------------------

    async def score(self, step: StepContext) -> Reward | None:
        edits = step_edits(step.events, step.sandbox.workdir if step.sandbox else None)
        if not edits.any:
            return None
        if step.sandbox is None:
            raise RewardHookError(
                "lsp_diagnostics needs the run's sandbox to read the edited files; it cannot score a trace offline"
            )
        state = self._runs.get(step.run_id)
        if state is None:  # no start_run (a direct call): the state after this step is its own baseline
            state = await self._open_workspace(step.run_id, step.sandbox, baseline=False)
            if state is None:
                return None
            state.ready = asyncio.create_task(self._warm(state))
        async with state.lock:
            if state.ready is not None:
                await state.ready  # the server's start and D_0 (raises if the server could not start)
            return await self._score_locked(step, edits, state)

    async def _score_locked(self, step: StepContext, edits: StepEdits, state: _RunWorkspace) -> Reward | None:
        assert step.sandbox is not None
        assert state.session is not None
        previous = dict(state.files)
        changed = await self._sync(step.sandbox, edits, state)
        python_changed = [p for p in changed if p.endswith(PYTHON_SUFFIXES)]
        parse_failures = [p for p in python_changed if state.files.get(p) is not None and not parses(p, state.files[p])]
        safety = {
            "applied": not edits.failed,
            "inside_workspace": not edits.outside,
            "parses": not parse_failures,
        }
        s_t = int(all(safety.values()))
        d_prev = state.diagnostics if state.diagnostics is not None else 0
        # diagnostics and symbol resolution are independent requests: the server answers them together
        diagnostics, (queried, resolved) = await asyncio.gather(
            self._diagnose(state), self._confidence(state, previous, python_changed)
        )
        d_t = self._count(diagnostics)
        if not state.baseline:  # the first step without a snapshot from before it: no change to measure
            d_prev, state.baseline = d_t, True
        state.diagnostics = d_t
        conf = resolved / queried if queried else 1.0
        delta = d_prev - d_t
        value = self.a * delta + self.b * s_t - self.c * (1 - conf)
        label = -1 if (delta < 0 or not s_t) else (1 if delta > 0 else 0)
        weights = {"a": self.a, "b": self.b, "c": self.c}
        bundle = {
            "server": {"name": state.session.server_name, "version": state.session.server_version},
            "weights": weights,
            "include_warnings": self.include_warnings,
            "diagnostics": [d.to_dict() for d in diagnostics],
            "d_prev": d_prev,
            "d": d_t,
            "safety": safety,
            "symbols": {"queried": queried, "resolved": resolved, "method": state.session.resolution_method},
        }
        from agentflow.traces._hashing import canonical_json

        bundle_id = hashlib.sha256(canonical_json(bundle)).hexdigest()
        problems = [k for k, ok in safety.items() if not ok]
        explanation = (
            f"diagnostics {d_prev} -> {d_t}; safety {'ok' if s_t else 'failed: ' + ', '.join(problems)}; "
            f"resolved {resolved}/{queried} names on edited lines"
        )
        if parse_failures:
            explanation += f"; does not parse: {', '.join(parse_failures)}"
        return Reward(
            value=value,
            label=label,
            explanation=explanation,
            components={
                "delta_d": delta,
                "d_prev": d_prev,
                "d": d_t,
                "s": s_t,
                "conf": conf,
                **weights,
                "changed_files": sorted(changed),
                "bundle_id": bundle_id,
                "bundle": bundle,
            },
        )

    async def _sync(self, sandbox: Sandbox, edits: StepEdits, state: _RunWorkspace) -> list[str]:
        """Read what the step changed from the sandbox into the mirror and the server; return the changed paths."""
        if edits.rescan:
            current = await self._read_all(sandbox)
            candidates = set(current) | set(state.files)
            fresh: dict[str, str | None] = {p: current.get(p) for p in candidates}
        else:
            fresh = {}
            for relative in sorted(p for p in edits.paths if _mirrored(p)):
                fresh[relative] = await _read_text(sandbox, relative)
        changed: dict[str, str | None] = {p: t for p, t in fresh.items() if state.files.get(p) != t}
        for relative, text in changed.items():
            target = state.root / relative
            if text is None:
                state.files.pop(relative, None)
                target.unlink(missing_ok=True)
            else:
                state.files[relative] = text
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        assert state.session is not None
        state.session.sync(changed)
        return sorted(changed)

    async def _diagnose(self, state: _RunWorkspace) -> list[Diagnostic]:
        assert state.session is not None
        paths = sorted(p for p in state.files if p.endswith(PYTHON_SUFFIXES))
        raw = await state.session.diagnostics(paths)
        root_text = str(state.root)
        found: list[Diagnostic] = []
        for relative, items in raw.items():
            for item in items:
                code = item.code
                found.append(
                    Diagnostic(
                        path=relative,
                        start=(item.range.start.line, item.range.start.character),
                        end=(item.range.end.line, item.range.end.character),
                        severity=int(item.severity or 1),
                        code=None if code is None else str(code),
                        source=item.source,
                        message=str(item.message).replace(root_text + "/", "").replace(root_text, "."),
                    )
                )
        found.sort(key=lambda d: (d.path, d.start, d.end, d.severity, d.message))
        return found

    def _count(self, diagnostics: Sequence[Diagnostic]) -> int:
        worst = 2 if self.include_warnings else 1  # LSP severities: 1 error, 2 warning, 3 information, 4 hint
        return sum(1 for d in diagnostics if d.severity <= worst)

    async def _confidence(
        self, state: _RunWorkspace, previous: Mapping[str, str], paths: Sequence[str]
    ) -> tuple[int, int]:
        assert state.session is not None
        if not state.session.supports_definition:
            return 0, 0
        queried = resolved = 0
        budget = self.max_symbols
        for relative in paths:
            text = state.files.get(relative)
            if text is None or budget <= 0:
                continue
            positions = name_positions(text, changed_lines(previous.get(relative, ""), text), budget)
            if not positions:
                continue
            budget -= len(positions)
            answers = await state.session.resolves(relative, positions)
            queried += len(answers)
            resolved += sum(answers)
        return queried, resolved


async def _read_text(sandbox: Sandbox, relative: str) -> str | None:
    try:
        data = await sandbox.read_file(relative)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PathOutsideWorkdirError):
        return None
    return data.decode("utf-8", errors="replace")
