"""Compiling and running workflows: compile to LangGraph, the run loop, run plans, node executors, limits."""

from agentflow.runtime._compile import CompiledWorkflow, InstalledCheckers, compile_workflow
from agentflow.runtime._context import RunContext
from agentflow.runtime._plan import RunPlan, ServedTool, check_models
from agentflow.runtime._run import RunResult, run_workflow

__all__ = [
    "CompiledWorkflow",
    "InstalledCheckers",
    "RunContext",
    "RunPlan",
    "RunResult",
    "ServedTool",
    "check_models",
    "compile_workflow",
    "run_workflow",
]
