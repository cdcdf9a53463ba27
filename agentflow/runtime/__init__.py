"""Running compiled workflows: the run loop, node executors, limits, retries."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentflow.runtime._run import RunResult, run_workflow

__all__ = ["RunResult", "run_workflow"]


def __getattr__(name: str) -> Any:
    # Imported on first use: graph/_compile imports runtime's node executors, and runtime's run loop imports
    # graph/_compile, so neither package may import the other eagerly at package import time.
    if name in __all__:
        from agentflow.runtime import _run

        return getattr(_run, name)
    raise AttributeError(name)
