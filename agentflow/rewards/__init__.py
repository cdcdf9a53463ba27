"""Process-reward hooks: the RewardHook interface, its registry, and the built-in hooks."""

from agentflow.rewards import _builtins as _builtins  # registers the built-in hooks
from agentflow.rewards import _grounded as _grounded  # tests_delta, verify_command, reexecute
from agentflow.rewards import _harbor as _harbor  # harbor_verifier
from agentflow.rewards import _judge as _judge  # llm_judge, checklist
from agentflow.rewards import _lsp as _lsp  # registers lsp_diagnostics (pygls loads when a hook is created)
from agentflow.rewards import _outcome as _outcome  # outcome
from agentflow.rewards._aggregate import describe_aggregates
from agentflow.rewards._base import (
    HookContext,
    Reward,
    RewardHook,
    StepContext,
    StepKind,
    create_reward_hook,
    reward_hook,
    reward_hooks,
)
from agentflow.rewards._sandbox import HookSandbox

__all__ = [
    "HookContext",
    "HookSandbox",
    "Reward",
    "RewardHook",
    "StepContext",
    "StepKind",
    "create_reward_hook",
    "describe_aggregates",
    "reward_hook",
    "reward_hooks",
]
