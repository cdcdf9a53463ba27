"""Workflow templates: the pydantic models of the YAML, the loader with source positions, the JSON Schema."""

from agentflow.spec._loader import LoadedWorkflow, load_workflow, workflow_json_schema
from agentflow.spec._models import (
    END,
    AgentNode,
    EdgeSpec,
    LimitsSpec,
    LoopSpec,
    ModelConfig,
    NodeSpec,
    RetryPolicy,
    RewardSpec,
    Route,
    RouterNode,
    SandboxSpec,
    StateKey,
    SubgraphNode,
    ToolNode,
    WorkflowSpec,
)

__all__ = [
    "END",
    "AgentNode",
    "EdgeSpec",
    "LimitsSpec",
    "LoadedWorkflow",
    "LoopSpec",
    "ModelConfig",
    "NodeSpec",
    "RetryPolicy",
    "RewardSpec",
    "Route",
    "RouterNode",
    "SandboxSpec",
    "StateKey",
    "SubgraphNode",
    "ToolNode",
    "WorkflowSpec",
    "load_workflow",
    "workflow_json_schema",
]
