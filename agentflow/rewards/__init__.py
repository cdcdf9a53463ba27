"""Process-reward hooks: the RewardHook interface, its registry, and the built-in hooks."""

from agentflow.rewards import _builtins as _builtins  # registers the built-in hooks
from agentflow.rewards import _lsp as _lsp  # registers lsp_diagnostics (pygls loads when a hook is created)
from agentflow.rewards._base import Reward, RewardHook, StepContext, StepKind, reward_hook, reward_hooks

__all__ = ["Reward", "RewardHook", "StepContext", "StepKind", "reward_hook", "reward_hooks"]
