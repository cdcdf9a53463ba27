"""The RewardHook contract and its registry."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from agentflow._plugins import is_plugin_ref, load_plugin
from agentflow._registry import Registry
from agentflow.errors import PluginLoadError
from agentflow.sandboxes._base import Sandbox
from agentflow.traces._events import Event

StepKind = Literal["step", "node", "run"]


@dataclass(frozen=True)
class StepContext:
    """What a hook sees of the step it scores.

    ``events`` are the trace events of the step: for ``step`` one tool call and its result (and the sandbox execs in
    between), for ``node`` everything between node_started and node_finished, for ``run`` the whole trace.
    ``history`` is the run's events before the step (empty for ``run``), for hooks that judge a step in the light
    of what came before it (a judge applying error propagation, or spotting a redundant step).
    ``sandbox`` is None when grading offline, where hooks must work from the events alone. In a run it is the run's
    sandbox as the engine lets a hook use it (:class:`~agentflow.rewards._sandbox.HookSandbox`): reads as they are,
    no writes, each command recorded and run on a copy of the workdir, so grading never changes what the agent sees.
    """

    run_id: str
    kind: StepKind
    node: str | None
    events: Sequence[Event]
    state: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=lambda: {})
    sandbox: Sandbox | None = None
    history: Sequence[Event] = ()

    @property
    def target_seq(self) -> int | None:
        """The seq of the event the reward is attached to (the step's first event)."""
        return self.events[0].seq if self.events else None


@dataclass(frozen=True)
class Reward:
    """A hook's score of one step; ``label`` is the ternary +1 / 0 / -1 when the hook gives one."""

    value: float
    label: int | None = None
    explanation: str = ""
    components: Mapping[str, Any] = field(default_factory=lambda: {})


class RewardHook(abc.ABC):
    """Scores steps. ``score`` returns None when the step is not one the hook judges (no reward is recorded).

    A hook that reads the sandbox must see it as the step left it, so by default the engine awaits ``score`` before
    the next step starts. A hook that works from the events alone (a judge model, a re-execution in a fresh
    sandbox) sets ``blocking = False``: the engine then scores in the background and the run goes on; every
    background reward is recorded before the run ends.

    ``start_run`` and ``finish_run`` bracket one run (the LSP hook keeps a warm language server per run between
    them); both do nothing by default, and offline grading never calls them, so ``score`` must not depend on them.
    """

    name: str = "abstract"
    version: str = "1"
    blocking: ClassVar[bool] = True
    uses_sandbox: ClassVar[bool] = True
    """False for a hook that scores from the events and state alone: it gets ``StepContext.sandbox`` None, and the
    engine spends nothing on guarding the sandbox for it (see ``HookSandbox``)."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.base_dir: Path | None = None  # the workflow's folder, for relative paths in options (from its context)
        self.models: Mapping[str, str] = {}  # the workflow's model names -> provider:model (from its context)

    @abc.abstractmethod
    async def score(self, step: StepContext) -> Reward | None:
        """Score one step."""

    async def start_run(self, step: StepContext) -> None:  # noqa: B027 - optional, most hooks keep no run state
        """Called once when a run starts (``step.kind == "run"``, no events yet), before its first step."""

    async def finish_run(self, run_id: str) -> None:  # noqa: B027 - optional, most hooks keep no run state
        """Called once when a run ends, after its last reward; release what ``start_run`` or ``score`` kept."""


HookFactory = Callable[..., RewardHook]
reward_hooks: Registry[HookFactory] = Registry("reward_hook", extras={"lsp_diagnostics": "lsp"})


def reward_hook(name: str) -> Callable[[type[RewardHook]], type[RewardHook]]:
    """Register a RewardHook class under ``name``."""

    def decorate(cls: type[RewardHook]) -> type[RewardHook]:
        cls.name = name
        reward_hooks.add(name, cls)
        return cls

    return decorate


HookFunction = Callable[[StepContext], Any]
"""A reward hook written as a function: ``fn(step) -> Reward | float | None`` (or a coroutine function)."""


class FunctionHook(RewardHook):
    """A plain (async) function used as a reward hook: a float becomes ``Reward(value)``, None scores nothing.

    Its options reach it as ``step.options``.
    """

    def __init__(self, fn: HookFunction, name: str, **options: Any) -> None:
        super().__init__(**options)
        self.fn = fn
        self.name = name

    async def score(self, step: StepContext) -> Reward | None:
        value = self.fn(step)
        if inspect.isawaitable(value):
            value = await value
        if value is None or isinstance(value, Reward):
            return value
        if isinstance(value, int | float):
            return Reward(value=float(value))
        raise TypeError(f"reward hook {self.name} returned a {type(value).__name__}; return a Reward, a float or None")


def resolve_reward_hook(name: str, *, base_dir: Path) -> HookFactory:
    """The factory of a hook a workflow names: a registered name, or a plugin by path like a tool.

    ``hooks/mine.py:answer_has_number`` (relative to ``base_dir``, the workflow file's folder) names a `RewardHook`
    subclass or a plain (async) function ``fn(step) -> Reward | float | None``. Hooks run in the agentflow process
    (they score the step and get its `StepContext`, sandbox included), never inside the sandbox.

    Raises:
        UnknownBackendError: a name no registry entry has.
        PluginLoadError: the plugin file is missing, does not import, lacks the name, or names something else.
    """
    if not is_plugin_ref(name):
        return reward_hooks.get(name)
    value = load_plugin(name, base_dir=base_dir, kind="reward hook").value
    if inspect.isclass(value) and issubclass(value, RewardHook):
        hook_class: type[RewardHook] = value

        def build_class(**options: Any) -> RewardHook:
            hook = hook_class(**options)
            hook.name = name
            return hook

        return build_class
    if callable(value) and not inspect.isclass(value):
        function: HookFunction = value

        def build_function(**options: Any) -> RewardHook:
            return FunctionHook(function, name, **options)

        return build_function
    raise PluginLoadError(
        f"reward hook {name!r} is a {type(value).__name__}, not a RewardHook subclass or a function",
        fix="point it at `class MyHook(RewardHook)` or at `def my_hook(step) -> float | Reward | None`",
    )


@dataclass(frozen=True)
class HookContext:
    """What a hook knows of the workflow that declares it, given once when the hook is created.

    ``base_dir`` is the workflow file's folder: a hook by path, and relative paths in a hook's options, resolve
    against it; None for a hook named on the command line, which resolves against the current folder (as any path
    there does). ``models`` maps the workflow's model names to ``provider:model``, so a judge can name a model as
    the workflow's nodes do.
    """

    base_dir: Path | None = None
    models: Mapping[str, str] = field(default_factory=lambda: {})


def create_reward_hook(
    name_or_path: str, options: Mapping[str, Any] | None = None, context: HookContext | None = None
) -> RewardHook:
    """The hook a workflow (or ``agentflow grade``) names, built with its options and configured with its context.

    Args:
        name_or_path: a registered hook (``exit_code``) or a plugin by path (``hooks/mine.py:answer_has_number``,
            relative to ``context.base_dir``, or to the current folder without one); see ``resolve_reward_hook``.
        options: the hook's options, as its ``rewards:`` entry gives them.
        context: the declaring workflow's folder and models; none for a hook named on its own.

    Raises:
        UnknownBackendError: a name no registry entry has.
        PluginLoadError: the plugin file is missing, does not import, lacks the name, or names something else.
    """
    context = context if context is not None else HookContext()
    factory = resolve_reward_hook(name_or_path, base_dir=context.base_dir or Path.cwd())
    hook = factory(**dict(options or {}))
    hook.base_dir = context.base_dir
    hook.models = dict(context.models)
    return hook
