"""agentflow: agentic computation graphs.

The names a user touches, one import away (docs/python-api.md shows them at work)::

    import agentflow

    result = agentflow.run("graphs/examples/fix_failing_test.yaml", store=agentflow.open_store("runs"))
    print(result.status, result.run_id)

- Workflows: ``load_workflow``, ``compile_workflow``, ``run`` / ``arun``, ``RunResult``.
- Traces: ``open_store``, ``Store``, ``replay``, ``resume``, ``fork``.
- Tools: ``tool``, ``ToolContext``. Rewards: ``reward_hook``, ``RewardHook``, ``Reward``, ``StepContext``.
- Sandboxes: ``sandbox``, ``Sandbox``, ``create_sandbox``. Errors: ``AgentflowError`` (the tree is in
  ``agentflow.errors``).

Each name is imported on first use, so ``import agentflow`` stays cheap and loads no vendor SDK; the subpackages
(``agentflow.spec``, ``agentflow.traces``, ...) hold the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module it comes from; `__getattr__` imports that module the first time the name is read
_EXPORTS: dict[str, str] = {
    "load_workflow": "agentflow.spec",
    "compile_workflow": "agentflow.runtime",
    "run": "agentflow._api",
    "arun": "agentflow._api",
    "RunResult": "agentflow.runtime",
    "open_store": "agentflow.traces",
    "Store": "agentflow.traces",
    "replay": "agentflow._api",
    "resume": "agentflow._api",
    "fork": "agentflow._api",
    "tool": "agentflow.tools",
    "ToolContext": "agentflow.tools",
    "reward_hook": "agentflow.rewards",
    "RewardHook": "agentflow.rewards",
    "Reward": "agentflow.rewards",
    "StepContext": "agentflow.rewards",
    "sandbox": "agentflow.sandboxes",
    "Sandbox": "agentflow.sandboxes",
    "create_sandbox": "agentflow.sandboxes",
    "AgentflowError": "agentflow.errors",
}

__all__ = [
    "AgentflowError",
    "Reward",
    "RewardHook",
    "RunResult",
    "Sandbox",
    "StepContext",
    "Store",
    "ToolContext",
    "arun",
    "compile_workflow",
    "create_sandbox",
    "fork",
    "load_workflow",
    "open_store",
    "replay",
    "resume",
    "reward_hook",
    "run",
    "sandbox",
    "tool",
]

if TYPE_CHECKING:
    from agentflow._api import arun, fork, replay, resume, run
    from agentflow.errors import AgentflowError
    from agentflow.rewards import Reward, RewardHook, StepContext, reward_hook
    from agentflow.runtime import RunResult, compile_workflow
    from agentflow.sandboxes import Sandbox, create_sandbox, sandbox
    from agentflow.spec import load_workflow
    from agentflow.tools import ToolContext, tool
    from agentflow.traces import Store, open_store


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # read once: later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
