"""The language server client: start a server over stdio, keep documents in sync, pull diagnostics, resolve names.

A session is one server process for one mirrored workspace (see the package docstring for why a mirror); the
hook drives it. The client is pygls 2 with lsprotocol types, imported only when a session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import MissingExtraError, RewardHookError

logger = logging.getLogger(__name__)

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class ServerCommand:
    """How to start one language server over stdio, and what to install when it is missing."""

    name: str
    executable: str
    args: tuple[str, ...]
    install: str

    def resolve(self) -> str:
        """The executable's path: next to this Python first (a venv not on PATH), then PATH.

        Raises:
            MissingExtraError: the server is not installed; the message says what to install.
        """
        local = Path(sys.executable).parent / self.executable
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
        found = shutil.which(self.executable)
        if found is None:
            error = MissingExtraError(self.executable, "lsp")
            error.fix = self.install
            raise error
        return found


SERVERS: dict[str, ServerCommand] = {
    "basedpyright": ServerCommand(
        "basedpyright", "basedpyright-langserver", ("--stdio",), "pip install 'agentflow[lsp]'"
    ),
    "ruff": ServerCommand("ruff", "ruff", ("server",), "pip install ruff"),
    # without pyflakes, pylsp reports no diagnostics at all
    "pylsp": ServerCommand("pylsp", "pylsp", (), "pip install 'python-lsp-server[pyflakes]'"),
}
"""The language servers the hook can start, by the name `options.server` takes."""


def _drop_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve a request's outcome nobody waits for any more, so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _lenient_converter() -> Any:
    """pygls's converter, plus a hook for the notebook filters lsprotocol cannot structure (ruff announces them).

    Without it the ``initialize`` answer of ``ruff server`` fails to convert and the request never completes.
    """
    from typing import Union

    from lsprotocol import types
    from pygls.protocol import default_converter

    factory: Any = default_converter  # untyped in pygls
    converter = factory()
    union: Any = Union[  # noqa: UP007 - the exact typing object lsprotocol's annotations use
        str,
        types.NotebookDocumentFilterNotebookType,
        types.NotebookDocumentFilterScheme,
        types.NotebookDocumentFilterPattern,
        None,
    ]
    converter.register_structure_hook(union, lambda value, _type: value)
    return converter


def _require_pygls() -> None:
    try:
        import lsprotocol  # noqa: F401
        import pygls  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(exc.name or "pygls", "lsp") from None


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic, with a workspace-relative path so the same inputs give the same bundle anywhere."""

    path: str
    start: tuple[int, int]
    end: tuple[int, int]
    severity: int
    code: str | None
    source: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "range": [*self.start, *self.end],
            "severity": self.severity,
            "code": self.code,
            "source": self.source,
            "message": self.message,
        }


class _SourceLines:
    """The lines of the documents definitions point into, read once per request batch, and LSP column conversion."""

    def __init__(self, open_documents: Mapping[str, str], read_outside: Any) -> None:
        self._open = open_documents
        self._read_outside = read_outside  # uri -> lines, for stubs and installed packages
        self._lines: dict[str, list[str]] = {}

    def lines(self, uri: str) -> list[str]:
        if uri not in self._lines:
            text = self._open.get(uri)
            self._lines[uri] = text.splitlines() if text is not None else self._read_outside(uri)
        return self._lines[uri]

    def column(self, uri: str, line: int, index: int) -> int:
        """The LSP column (UTF-16 code units) of a str index on a line of a document."""
        text = self.lines(uri)
        return _to_utf16(text[line], index) if line < len(text) else index

    def starts_with(self, uri: str, target: Any, name: str) -> bool:
        """Whether the range ``target`` of a document starts with ``name`` (or is the top of a module)."""
        start, end = target.start, target.end
        if (start.line, start.character, end.line, end.character) == (0, 0, 0, 0):
            return True  # a module
        text = self.lines(uri)
        if start.line >= len(text):
            return False
        line = text[start.line]
        first = _from_utf16(line, start.character)
        # a declaration's range may cover more than the name (`values: list[float]`), but starts with it
        covered = line[first:] if end.line > start.line else line[first : _from_utf16(line, end.character)]
        return covered.startswith(name) and not covered[len(name) : len(name) + 1].isidentifier()


class LanguageServerSession:
    """One language server process over stdio, with the workspace's documents open in it.

    A request that fails because the server died restarts it once (re-opening every document) and retries; a
    second death raises ``RewardHookError``, which the engine records as the hook's failure.
    """

    def __init__(self, server: ServerCommand, root: Path, *, request_timeout_s: float = 30.0) -> None:
        _require_pygls()
        self.server = server
        self.executable = server.resolve()
        self.root = root
        self.request_timeout_s = request_timeout_s
        self.server_name = server.name
        self.server_version = "unknown"
        self.restarts = 0
        self._client: Any = None
        self._documents: dict[str, tuple[int, str]] = {}  # relative path -> (version, text)
        # Pull is tried first whatever the server announced (basedpyright announces it later, dynamically); a
        # server that does not know the request (pylsp) answers MethodNotFound and is then awaited for pushes.
        self._pull = True
        self._pushed: dict[str, tuple[int | None, list[Any]]] = {}
        self._pushed_event = asyncio.Event()
        self._semantic_tokens = False  # announced by the server, statically or by registration
        self._restart_lock = asyncio.Lock()
        self._outside: dict[str, list[str]] = {}  # lines of files outside the workspace that definitions point to

    @property
    def pid(self) -> int | None:
        """The server's process id (None before start); it leads its own process group.

        The group matters because a server may be a launcher: ``basedpyright-langserver`` is a Python script that
        runs node as a child, so stopping only the launcher would leave node running.
        """
        server = getattr(self._client, "_server", None)
        return None if server is None else int(server.pid)

    @property
    def alive(self) -> bool:
        server = getattr(self._client, "_server", None)
        return server is not None and server.returncode is None and not self._client.stopped

    def uri(self, relative: str) -> str:
        return (self.root / relative).as_uri()

    async def start(self) -> None:
        """Start the server and run the initialize handshake."""
        from lsprotocol import types
        from pygls.lsp.client import LanguageClient

        client = LanguageClient("agentflow", "1", converter_factory=_lenient_converter)

        def _configuration(params: types.ConfigurationParams) -> list[Any]:
            return [None for _ in params.items]  # the servers' defaults, plus the workspace's own config files

        def _published(params: types.PublishDiagnosticsParams) -> None:
            self._pushed[params.uri] = (params.version, list(params.diagnostics))
            self._pushed_event.set()

        def _register(params: types.RegistrationParams) -> None:
            # accepted: basedpyright serves pull diagnostics only once it registered them dynamically
            if any(r.method == types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL for r in params.registrations):
                self._semantic_tokens = True

        client.feature(types.WORKSPACE_CONFIGURATION)(_configuration)
        client.feature(types.CLIENT_REGISTER_CAPABILITY)(_register)
        # requests a server may send that need an answer and nothing else (an error answer can kill basedpyright)
        for request in (
            types.WORKSPACE_DIAGNOSTIC_REFRESH,
            types.WINDOW_WORK_DONE_PROGRESS_CREATE,
            types.CLIENT_UNREGISTER_CAPABILITY,
            types.WORKSPACE_SEMANTIC_TOKENS_REFRESH,
            types.WORKSPACE_INLAY_HINT_REFRESH,
        ):
            client.feature(request)(lambda *_args: None)
        client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(_published)

        for method in (types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE, "pyright/beginProgress"):
            client.feature(method)(lambda *_args: None)
        for method in ("pyright/reportProgress", "pyright/endProgress", types.TELEMETRY_EVENT):
            client.feature(method)(lambda *_args: None)

        await client.start_io(self.executable, *self.server.args, cwd=str(self.root), start_new_session=True)
        self._client = client
        root_uri = self.root.as_uri()
        capabilities = types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                diagnostic=types.DiagnosticClientCapabilities(dynamic_registration=True),
                publish_diagnostics=types.PublishDiagnosticsClientCapabilities(version_support=True),
                synchronization=types.TextDocumentSyncClientCapabilities(),
                # only which names carry a token is read, so every type and modifier is accepted
                semantic_tokens=types.SemanticTokensClientCapabilities(
                    requests=types.ClientSemanticTokensRequestOptions(full=True),
                    token_types=[t.value for t in types.SemanticTokenTypes],
                    token_modifiers=[m.value for m in types.SemanticTokenModifiers],
                    formats=[types.TokenFormat.Relative],
                ),
            ),
            workspace=types.WorkspaceClientCapabilities(configuration=True, workspace_folders=True),
        )
        params = types.InitializeParams(
            process_id=os.getpid(),
            root_uri=root_uri,
            capabilities=capabilities,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name=self.root.name)],
        )
        result = await self._request(client.initialize_async(params))
        self._semantic_tokens = self._semantic_tokens or result.capabilities.semantic_tokens_provider is not None
        if result.server_info is not None:
            self.server_name = result.server_info.name or self.server.name
            self.server_version = result.server_info.version or self._package_version()
        else:
            self.server_version = self._package_version()
        client.initialized(types.InitializedParams())
        for relative, (version, text) in self._documents.items():  # after a restart: the same documents again
            self._open(relative, version, text)

    def _package_version(self) -> str:
        from importlib import metadata

        package = {"basedpyright": "basedpyright", "ruff": "ruff", "pylsp": "python-lsp-server"}[self.server.name]
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "unknown"

    async def _request(self, awaitable: Any) -> Any:
        # Giving up on a request (its timeout, or the run ending while the server warms up) must leave pygls's own
        # future alone: cancelled, it makes pygls log "Unable to handle message ... CANCELLED" with a traceback when
        # the server's answer arrives anyway. So the wait is shielded, and a late outcome is taken and dropped.
        future = asyncio.ensure_future(awaitable)
        future.add_done_callback(_drop_outcome)
        async with asyncio.timeout(self.request_timeout_s):
            return await asyncio.shield(future)

    def _open(self, relative: str, version: int, text: str) -> None:
        from lsprotocol import types

        language = "python" if relative.endswith(PYTHON_SUFFIXES) else "plaintext"
        item = types.TextDocumentItem(uri=self.uri(relative), language_id=language, version=version, text=text)
        self._client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    def sync(self, files: Mapping[str, str | None]) -> None:
        """Tell the server about changed documents: didOpen, didChange (whole text) or didClose (None = deleted).

        The documents are remembered even when the server is down, so a restart re-opens them as they are now.
        """
        from lsprotocol import types

        send = self.alive
        for relative, text in files.items():
            known = self._documents.get(relative)
            if text is None:
                if known is not None:
                    del self._documents[relative]
                    if send:
                        identifier = types.TextDocumentIdentifier(uri=self.uri(relative))
                        self._client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=identifier))
                continue
            if known is None:
                self._documents[relative] = (1, text)
                if send:
                    self._open(relative, 1, text)
            elif known[1] != text:
                version = known[0] + 1
                self._documents[relative] = (version, text)
                if send:
                    change = types.TextDocumentContentChangeWholeDocument(text=text)
                    document = types.VersionedTextDocumentIdentifier(uri=self.uri(relative), version=version)
                    self._client.text_document_did_change(
                        types.DidChangeTextDocumentParams(text_document=document, content_changes=[change])
                    )

    async def _with_restart(self, operation: Any) -> Any:
        """Run ``operation()`` (a coroutine factory); if the server died, restart it once and retry.

        Requests run concurrently (diagnostics and definitions), so several may see the same death: the first
        restarts the server under a lock, the others notice the new client and just retry.
        """
        client = self._client
        try:
            if not self.alive:
                raise ConnectionError("the language server is not running")
            return await operation()
        except (RuntimeError, ConnectionError, BrokenPipeError, ConnectionResetError) as exc:
            if self.alive and self._client is client:
                raise
            async with self._restart_lock:
                if self._client is client or not self.alive:  # nobody restarted it yet
                    if self.restarts >= 1:
                        raise RewardHookError(
                            f"language server {self.server.name} died again after a restart ({exc}); giving up"
                        ) from exc
                    self.restarts += 1
                    logger.warning("language server %s died (%s); restarting it once", self.server.name, exc)
                    await self._stop_client()
                    await self.start()
            return await operation()

    async def diagnostics(self, paths: Sequence[str]) -> dict[str, list[Any]]:
        """The current diagnostics of each open document in ``paths`` (lsprotocol Diagnostic objects)."""

        async def pull_all() -> dict[str, list[Any]]:
            if self._pull:
                from pygls.exceptions import JsonRpcMethodNotFound

                try:
                    reports = await asyncio.gather(*(self._pull_one(p) for p in paths))
                    return dict(zip(paths, reports, strict=True))
                except JsonRpcMethodNotFound:
                    self._pull = False
            return await self._await_pushed(paths)

        result: dict[str, list[Any]] = await self._with_restart(pull_all)
        return result

    async def _pull_one(self, relative: str) -> list[Any]:
        from lsprotocol import types

        params = types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=self.uri(relative)))
        report = await self._request(self._client.text_document_diagnostic_async(params))
        return list(getattr(report, "items", None) or [])

    async def _await_pushed(self, paths: Sequence[str]) -> dict[str, list[Any]]:
        """Wait until the server published diagnostics for the current version of each document."""

        def current(relative: str) -> bool:
            pushed = self._pushed.get(self.uri(relative))
            version = self._documents[relative][0]
            return pushed is not None and (pushed[0] is None or pushed[0] >= version)

        async with asyncio.timeout(self.request_timeout_s):
            while not all(current(p) for p in paths):
                if not self.alive:
                    raise ConnectionError("the language server exited")
                self._pushed_event.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._pushed_event.wait()
        return {p: self._pushed[self.uri(p)][1] for p in paths}

    @property
    def resolution_method(self) -> str:
        """How ``resolves`` decides: semantic tokens first, or one definition request per name."""
        return "semanticTokens+definition" if self._semantic_tokens else "definition"

    async def resolves(self, relative: str, names: Sequence[tuple[int, int, str]]) -> list[bool]:
        """Whether the server resolves each name (line, start character, name) of a document to a declaration.

        With semantic tokens, a name that carries a token is resolved (the server classified it by its declaration);
        a name without one, and every name on a server without tokens, is asked with ``textDocument/definition``.
        """
        sources = _SourceLines(
            {self.uri(path): text for path, (_version, text) in self._documents.items()}, self._outside_lines
        )
        uri = self.uri(relative)

        async def ask_all() -> list[bool]:
            tokens = await self._token_starts(relative) if self._semantic_tokens else set()
            answers = [(line, sources.column(uri, line, character)) in tokens for line, character, _name in names]
            unsure = [index for index, resolved in enumerate(answers) if not resolved]
            defined = await asyncio.gather(*(self._defined(sources, uri, *names[index]) for index in unsure))
            for index, resolved in zip(unsure, defined, strict=True):
                answers[index] = resolved
            return answers

        answers: list[bool] = await self._with_restart(ask_all)
        return answers

    async def _defined(self, sources: _SourceLines, uri: str, line: int, character: int, name: str) -> bool:
        """Whether ``textDocument/definition`` on a name answers with a location that starts with that name.

        The location's text is checked because servers answer something for unknown names too: basedpyright falls
        back to the enclosing call's function (``len(nowhere)`` -> ``len``). The top of a module counts (an imported
        module's file).
        """
        from lsprotocol import types

        params = types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=sources.column(uri, line, character + len(name) // 2)),
        )
        found = await self._request(self._client.text_document_definition_async(params))
        locations = found if isinstance(found, list) else [found] if found else []
        for location in locations:
            if isinstance(location, types.LocationLink):
                if sources.starts_with(location.target_uri, location.target_selection_range, name):
                    return True
            elif sources.starts_with(location.uri, location.range, name):
                return True
        return False

    async def _token_starts(self, relative: str) -> set[tuple[int, int]]:
        """(line, UTF-16 column) where the server's semantic tokens of a document start."""
        from lsprotocol import types
        from pygls.exceptions import JsonRpcMethodNotFound

        params = types.SemanticTokensParams(text_document=types.TextDocumentIdentifier(uri=self.uri(relative)))
        try:
            answer = await self._request(self._client.text_document_semantic_tokens_full_async(params))
        except JsonRpcMethodNotFound:
            self._semantic_tokens = False
            return set()
        starts: set[tuple[int, int]] = set()
        line = character = 0
        data = list(answer.data) if answer is not None else []
        for index in range(0, len(data) - 4, 5):  # relative encoding: Δline, Δstart (or start on a new line), ...
            delta_line, delta_start = data[index], data[index + 1]
            character = delta_start if delta_line else character + delta_start
            line += delta_line
            starts.add((line, character))
        return starts

    def _outside_lines(self, uri: str) -> list[str]:
        if uri not in self._outside:
            try:
                text = Path(_uri_path(uri)).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._outside[uri] = text.splitlines()
        return self._outside[uri]

    @property
    def supports_definition(self) -> bool:
        return self.server.name != "ruff"  # ruff server lints and formats; it resolves no symbols

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        process = getattr(client, "_server", None)
        if process is not None and process.returncode is None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.shutdown_async(None)
                    client.exit(None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await process.wait()
        if process is not None:
            # the whole group: a launcher's children (basedpyright's node) would outlive the launcher otherwise
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await client.stop()
        # pygls leaves the pipes of a server that died open; asyncio keeps them on the process's transport
        transport = getattr(process, "_transport", None)
        if transport is not None:
            transport.close()

    async def close(self) -> None:
        """Shut the server down (kill it if it does not exit)."""
        await self._stop_client()


def _uri_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)


def _to_utf16(line: str, index: int) -> int:
    """The LSP column (UTF-16 code units, the protocol's default) of a str index in ``line``."""
    return len(line[:index].encode("utf-16-le")) // 2


def _from_utf16(line: str, column: int) -> int:
    """The str index in ``line`` of an LSP column in UTF-16 code units."""
    if line.isascii():
        return column
    units = 0
    for index, char in enumerate(line):
        if units >= column:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(line)
