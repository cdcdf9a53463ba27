"""Compiling and running workflows: compile to LangGraph, the run loop, node executors, limits, retries."""

from agentflow.runtime._compile import CompiledWorkflow, InstalledCheckers, compile_workflow
from agentflow.runtime._run import RunResult, run_workflow

__all__ = ["CompiledWorkflow", "InstalledCheckers", "RunResult", "compile_workflow", "run_workflow"]
