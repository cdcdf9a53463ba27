"""The agentflow error tree.

Errors are split by who must act: a ``ConfigError`` is a mistake in what the user wrote (a workflow file,
a command-line flag, a missing extra) and is fixed by editing it; a ``RunError`` is something that went wrong
while a run executed and is recorded in the run's trace.

Expressions and templates are written in the workflow file, so their errors are ``ConfigError``s, and validation
finds most of them before a run; one that fails while a run evaluates it (an answer without the key an output
expression reads) ends the run as ``failed``: the run loop classifies it as the agent's failure, not as a
configuration mistake (see ``agentflow.runtime._run.classify``).

::

    AgentflowError
    ├── ConfigError                 the user must change a file or a flag
    │   ├── SpecError               a workflow file is malformed (file:line:col + fix)
    │   ├── GraphValidationError    the template graph breaks a static rule (carries every Diagnostic)
    │   ├── UnknownBackendError     a registry has no entry by that name (closest match, choices)
    │   ├── MissingExtraError       an optional dependency is not installed (names the extra)
    │   ├── PluginLoadError         a plugin (`file.py:name`) is missing, does not import, or lacks the name
    │   │   └── ToolLoadError       ... a tool plugin, or a tool that cannot be described to a model
    │   ├── ExpressionError         a workflow's CEL expression does not parse or fails (also a ValueError)
    │   ├── TemplateError           a `{key}` placeholder is malformed or names no state value (also a ValueError)
    │   └── MalformedRecord         an imported record breaks its format (also a ValueError)
    └── RunError                    something failed while running; recorded in the trace
        ├── SandboxError            the sandbox backend failed (not the command inside it)
        │   ├── SandboxUnavailableError   the backend cannot start here (names how to fix)
        │   ├── PathOutsideWorkdirError   a path escapes the sandbox workdir (also a PermissionError)
        │   ├── FileTooLargeError         read_file met a file over limits.read_bytes (also an OSError, EFBIG)
        │   └── PoolExhaustedError        a sandbox pool stayed fully in use for the wait (also a TimeoutError)
        ├── ModelAPIError           the model provider failed (status code and body when HTTP)
        │   ├── ModelContextExceeded      the conversation outgrew the model's context window
        │   └── ModelScriptExhausted      a scripted model ran out of responses
        ├── ToolError               a tool call failed; goes back to the model as a tool message
        ├── LimitExceeded           a declared limit (steps, model calls, tokens, time) was hit
        ├── NodeTimeout             one visit of a node ran past its timeout_s (a LimitExceeded once retries end)
        ├── RewardHookError         a reward hook failed or timed out (recorded, never fatal)
        ├── NodeFailed              a node failed after its retries
        ├── TraceError              a trace is unreadable or its hashes do not match
        └── ReplayDivergence        a replay asked for a model turn or tool result the tape does not hold

Outside the tree on purpose, because none reaches a user as itself: ``BuildError`` of ``sandboxes/images.py``
(that file imports only the standard library, so CI runs it before agentflow is installed; `agentflow sandbox
build` raises it as a ``SandboxUnavailableError``), and signals that never leave their module: the model retry
loop's ``TransientModelError``, the conformance runner's ``CheckFailed`` and ``CheckSkipped``, and the private
ones of the hashing code and of the sandbox helpers (``_UnsupportedValue``, ``SetupError``, ``Outside``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any


class AgentflowError(Exception):
    """Base class of every error agentflow raises on purpose."""


class ConfigError(AgentflowError):
    """The user must change a file or a flag; the message says what and how."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


@dataclass(frozen=True)
class SourceLocation:
    """A position in a workflow file; line and column are 1-based."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One finding of static validation."""

    code: str
    message: str
    location: SourceLocation | None
    fix: str | None = None
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{where}{self.severity} [{self.code}] {self.message}{fix}"


class SpecError(ConfigError):
    """A workflow file cannot be parsed or does not match the schema.

    ``diagnostics`` holds every problem found when there are several; the message names the first.
    """

    def __init__(
        self,
        message: str,
        *,
        location: SourceLocation | None,
        fix: str | None = None,
        diagnostics: list[Diagnostic] | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.location = location
        self.diagnostics = diagnostics or [Diagnostic("spec", message, location, fix)]

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return where + super().__str__()


class GraphValidationError(ConfigError):
    """The template graph breaks one or more static rules."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        errors = [d for d in diagnostics if d.severity == "error"]
        first = errors[0] if errors else diagnostics[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        super().__init__(str(first) + more)
        self.diagnostics = diagnostics


class UnknownBackendError(ConfigError):
    """A registry has no entry by that name."""

    def __init__(self, kind: str, name: str, choices: list[str], *, extra: str | None = None) -> None:
        import difflib

        close = difflib.get_close_matches(name, choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        choice_text = ", ".join(sorted(choices)) or "none registered"
        install = f"; or install the extra: pip install 'agentflow[{extra}]'" if extra else ""
        super().__init__(f"unknown {kind} {name!r}", fix=f"{hint}choices: {choice_text}{install}")
        self.kind = kind
        self.name = name
        self.choices = choices


class MissingExtraError(ConfigError):
    """An optional dependency is needed but not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the package {package!r}, which is not installed",
            fix=f"pip install 'agentflow[{extra}]'",
        )
        self.package = package
        self.extra = extra


class PluginLoadError(ConfigError):
    """A plugin named by path (a tool or a reward hook) cannot be loaded: missing file, import failure, no such name.

    ``plugin_location`` is the place in the plugin's own file that failed (a syntax error's file:line:col), if any;
    ``suggestion`` the existing name closest to a mistyped one.
    """

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        plugin_location: SourceLocation | None = None,
        suggestion: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.plugin_location = plugin_location
        self.suggestion = suggestion


class ToolLoadError(PluginLoadError):
    """A tool plugin cannot be loaded (missing file, import failure, not a function)."""


class ExpressionError(ConfigError, ValueError):
    """An expression does not parse, or fails when evaluated; ``offset`` is where (0-based), when known.

    Validation reports the ones it can find before a run as diagnostics; one raised while a run evaluates the
    expression on the agent's output ends the run as ``failed``.
    """

    def __init__(self, message: str, *, offset: int | None = None, expected: str | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.expected = expected


class TemplateError(ConfigError, ValueError):
    """A placeholder is malformed or names a missing state key (at run time: the run ``failed``)."""


class MalformedRecord(ConfigError, ValueError):
    """A record of an imported file does not follow its format (``openai-messages``); the import skips it."""


class RunError(AgentflowError):
    """Something failed while a run executed."""


class SandboxError(RunError):
    """The sandbox backend itself failed (not the command that ran inside it)."""


class SandboxUnavailableError(SandboxError):
    """The sandbox backend cannot run on this machine; the message says how to make it available."""


class PathOutsideWorkdirError(SandboxError, PermissionError):
    """A path would escape the sandbox workdir (absolute, ``..`` or a symlink out)."""


class FileTooLargeError(SandboxError, OSError):
    """``read_file`` refused a file larger than the sandbox's ``limits.read_bytes``; nothing was read past the cap."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(errno.EFBIG, f"{path!r} is larger than the read limit of {limit} bytes (limits.read_bytes)")
        self.path = path
        self.limit = limit

    def __str__(self) -> str:
        return str(self.strerror)


class PoolExhaustedError(SandboxError, TimeoutError):
    """Every sandbox of a pool stayed in use for the whole acquire timeout."""


class ModelAPIError(RunError):
    """A model provider call failed; ``retries`` lists the failed attempts retried before (as trace data)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        retries: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.retries: list[dict[str, Any]] = retries or []


class ModelContextExceeded(ModelAPIError):
    """The provider refused the conversation as longer than the model's context window: a limit the agent hit."""


class ModelScriptExhausted(ModelAPIError):
    """A scripted model was asked for more responses than its script holds."""


class ToolError(RunError):
    """A tool call failed; the message goes back to the model as the tool's result."""


class LimitExceeded(RunError):
    """A declared limit was reached; the run stops and the trace records which."""

    def __init__(self, limit: str, value: float, observed: float) -> None:
        super().__init__(f"limit {limit} = {value:g} exceeded (observed {observed:g})")
        self.limit = limit
        self.value = value
        self.observed = observed


class NodeTimeout(RunError):
    """One visit of a node ran past its wall-clock limit (``timeout_s``).

    Not a ``LimitExceeded`` itself: the node's retry policy may try the visit again; once no retry is left, the
    node raises ``LimitExceeded`` from it, and the run ends ``limit_exceeded``.
    """


class RewardHookError(RunError):
    """A reward hook failed or timed out."""


class NodeFailed(RunError):
    """A node failed after all of its retries."""

    def __init__(self, node: str, cause: BaseException) -> None:
        super().__init__(f"node {node!r} failed: {type(cause).__name__}: {cause}")
        self.node = node
        self.cause = cause


class TraceError(RunError):
    """A stored trace is unreadable, truncated or tampered with."""


class ReplayDivergence(RunError):
    """A replayed run asked for a model response or a tool result that the recorded tape does not hold."""
