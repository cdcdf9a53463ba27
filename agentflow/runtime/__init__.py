"""Compiling and running workflows: compile to LangGraph, the run loop, node executors, limits, retries."""

from agentflow.runtime._compile import CompiledWorkflow, compile_workflow
from agentflow.runtime._run import RunResult, run_workflow

__all__ = ["CompiledWorkflow", "RunResult", "compile_workflow", "run_workflow"]
