"""Run-wide limits: counted as the run goes, checked before the work they bound."""

from __future__ import annotations

import time

from agentflow.errors import LimitExceeded
from agentflow.spec._models import LimitsSpec


class LimitTracker:
    """Counts steps, model calls and tokens of one run (shared with its subgraphs) and raises LimitExceeded."""

    def __init__(self, limits: LimitsSpec) -> None:
        self.limits = limits
        self.steps = 0
        self.model_calls = 0
        self.tokens = 0
        self.started = time.monotonic()

    def start_step(self) -> None:
        if self.limits.max_steps is not None and self.steps + 1 > self.limits.max_steps:
            raise LimitExceeded("max_steps", self.limits.max_steps, self.steps + 1)
        self.steps += 1

    def start_model_call(self) -> None:
        if self.limits.max_model_calls is not None and self.model_calls + 1 > self.limits.max_model_calls:
            raise LimitExceeded("max_model_calls", self.limits.max_model_calls, self.model_calls + 1)
        self.model_calls += 1

    def add_tokens(self, count: int) -> None:
        self.tokens += count
        if self.limits.max_tokens is not None and self.tokens > self.limits.max_tokens:
            raise LimitExceeded("max_tokens", self.limits.max_tokens, self.tokens)
