"""Routers: CEL expression conditions (and, in their own issue, learned Q-table routing)."""

from agentflow.errors import ExpressionError
from agentflow.graph._expr import (
    check_syntax,
    evaluate,
    evaluate_condition,
    state_keys_read,
)

__all__ = ["ExpressionError", "check_syntax", "evaluate", "evaluate_condition", "state_keys_read"]
