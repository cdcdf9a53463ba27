"""Routers: CEL expression conditions, and learned Q-table routing between agents (PriorDynaFlow)."""

from agentflow.errors import ExpressionError
from agentflow.graph._expr import (
    check_syntax,
    evaluate,
    evaluate_condition,
    state_keys_read,
)
from agentflow.routing._admin import QTableReport, describe_qtables, migrate_qtables, reset_qtables, settings_of
from agentflow.routing._qtable import (
    Decision,
    QTable,
    Transition,
    decide_a_priori,
    decide_greedy,
    epsilon_after,
    parse_named_agent,
    transition_reward,
    update_episode,
)
from agentflow.routing._router import QTableRouter, QTableStore, RoutingMode, learn_episode, table_from_stored

__all__ = [
    "Decision",
    "ExpressionError",
    "QTable",
    "QTableReport",
    "QTableRouter",
    "QTableStore",
    "RoutingMode",
    "Transition",
    "check_syntax",
    "decide_a_priori",
    "decide_greedy",
    "describe_qtables",
    "epsilon_after",
    "evaluate",
    "evaluate_condition",
    "learn_episode",
    "migrate_qtables",
    "parse_named_agent",
    "reset_qtables",
    "settings_of",
    "state_keys_read",
    "table_from_stored",
    "transition_reward",
    "update_episode",
]
