"""The template graph: build it from a spec, validate it, measure it (compiling it is the runtime's job)."""

from agentflow.graph._build import TemplateGraph, Transition, build_template_graph
from agentflow.graph._metrics import CycleInfo, GraphMetrics, compute_metrics
from agentflow.graph._validate import Checkers, check_run_files, validate_template

__all__ = [
    "Checkers",
    "CycleInfo",
    "GraphMetrics",
    "TemplateGraph",
    "Transition",
    "build_template_graph",
    "check_run_files",
    "compute_metrics",
    "validate_template",
]
