"""The Tool contract: a typed Python function, validated by pydantic, run with a ToolContext."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from agentflow.errors import PathOutsideWorkdirError, SandboxError, ToolError
from agentflow.sandboxes._base import ExecObserver, ExecResult, ObservedSandbox, Sandbox
from agentflow.spec._templating import Quoting


@dataclass
class ToolContext:
    """What a tool may touch: the run's sandbox and a read-only view of the state."""

    sandbox: Sandbox
    run_id: str = ""
    node: str = ""
    state: Mapping[str, Any] = field(default_factory=lambda: {})
    # Called after every sandbox exec a tool makes, so the trace records a sandbox_exec event.
    on_exec: ExecObserver | None = None
    # Called before every exec, file write, copy or reset of the sandbox: the runtime writes the events it holds.
    before_effect: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        # The tool sees the sandbox through an observed view, so a tool that calls `ctx.sandbox.exec` directly
        # (a host plugin orchestrating the sandbox) is recorded just as one that calls `ctx.exec`.
        if self.on_exec is not None or self.before_effect is not None:
            self.sandbox = ObservedSandbox(self.sandbox, self.on_exec, before=self.before_effect)

    async def exec(
        self,
        cmd: list[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a command in the sandbox (reported to the recorder like every exec through ``sandbox``)."""
        return await self.sandbox.exec(cmd, stdin=stdin, env=env, timeout=timeout)


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one tool call: ``content`` is what the model reads; ``result`` is JSON for state and trace."""

    ok: bool
    content: str
    result: Any = None
    error: str | None = None


class Tool:
    """A function exposed to models and tool nodes.

    The function's parameters (except a leading ``ctx: ToolContext``) become a pydantic model; its JSON Schema is
    sent to the model, and arguments are validated against it before the function runs. The first paragraph of the
    docstring is the description; a parameter's description comes from ``Annotated[..., Field(description=...)]``
    or else from the docstring's ``Args:`` (Google) or ``Parameters`` (NumPy) section.

    ``host`` is True for a plugin whose own code runs in the agentflow process (declared ``host``, or taking a
    ``ToolContext``); the trace marks its calls. Built-in tools are agentflow's code and act only through the
    sandbox. ``quoting`` says how a tool node's ``{placeholders}`` are written into a parameter (the ``python``
    tool's ``code`` gets Python literals, the ``shell`` tool's ``command`` shell-quoted words).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        host: bool = False,
        quoting: Mapping[str, Quoting] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        self.description = description or doc.split("\n\n")[0].strip() or self.name
        self.quoting: Mapping[str, Quoting] = dict(quoting or {})
        documented = _documented_parameters(doc)
        hints = get_type_hints(fn, include_extras=True)  # keep Annotated[..., Field(...)] descriptions
        params = list(inspect.signature(fn).parameters.values())
        self.takes_context = bool(params) and hints.get(params[0].name) is ToolContext
        # A function given the ToolContext drives the sandbox from this process: it cannot run inside the sandbox.
        self.host = host or (self.takes_context and not _is_builtin(fn))
        if self.takes_context:
            params = params[1:]
        fields: dict[str, Any] = {}
        for param in params:
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise TypeError(f"tool {self.name}: *args/**kwargs cannot be described to a model")
            annotation = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            text = documented.get(param.name)
            if text and not _has_description(annotation):
                annotation = Annotated[annotation, Field(description=" ".join(text.split()))]
            fields[param.name] = (annotation, default)
        self.arguments_model: type[BaseModel] = create_model(
            f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI function-tool schema of this tool."""
        parameters = self.arguments_model.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }

    async def invoke(self, ctx: ToolContext, arguments: str | Mapping[str, Any]) -> ToolOutcome:
        """Validate ``arguments`` (JSON text or a mapping) and run the tool; never raises for bad input.

        Raises:
            SandboxError: the sandbox backend failed (its process or container died); every other failure of the
                tool, a path outside the workdir included, is returned as an error outcome for the model.
        """
        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else dict(arguments)
        except json.JSONDecodeError as exc:
            return _failure(f"arguments are not valid JSON ({exc.msg} at position {exc.pos}); send a JSON object")
        if not isinstance(raw, dict):
            return _failure("arguments must be a JSON object of named parameters")
        try:
            parsed = self.arguments_model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            return _failure(f"invalid arguments for {self.name}: {problems}")
        try:
            value = await self.call(ctx, parsed)
        except (ToolError, PathOutsideWorkdirError) as exc:
            return _failure(str(exc))
        except SandboxError:
            raise  # not the tool's failure: the sandbox itself is gone or broken, and the run errors
        except Exception as exc:  # noqa: BLE001 - any failure of tool code goes back to the model, never up
            return _failure(f"{type(exc).__name__}: {exc}")
        return ToolOutcome(ok=True, content=_render(value), result=_jsonable(value))

    async def call(self, ctx: ToolContext, arguments: BaseModel) -> Any:
        """Run the function on validated arguments; a subclass runs it elsewhere (in the sandbox)."""
        kwargs = dict(arguments)  # the validated fields by name (pydantic iterates them in order)
        value = self.fn(ctx, **kwargs) if self.takes_context else self.fn(**kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value


def _documented_parameters(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-, NumPy- or reST-style docstring; none from one the parser rejects."""
    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return {}
    return {param.arg_name: param.description for param in parsed.params if param.description}


def _is_builtin(fn: Callable[..., Any]) -> bool:
    return str(getattr(fn, "__module__", "")).startswith("agentflow.")


def _has_description(annotation: Any) -> bool:
    if get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(meta, FieldInfo) and meta.description for meta in get_args(annotation)[1:])


def _failure(message: str) -> ToolOutcome:
    return ToolOutcome(ok=False, content=f"error: {message}", error=message)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, ExecResult):
        return value.to_dict()
    return value


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value) is int:  # what json.dumps writes for an int (not a bool), without its encoder
        return str(value)
    return json.dumps(_jsonable(value), ensure_ascii=False, default=str)


ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]
