"""`require`: skip a test that needs a real component this machine lacks, or fail under AGENTFLOW_REQUIRE_ALL=1."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = "AGENTFLOW_REQUIRE_ALL"


def require_all() -> bool:
    """Whether this run must have every real component (CI sets the flag on machines that offer everything)."""
    return os.environ.get(REQUIRE_ALL) == "1"


def require(condition: bool, reason: str) -> None:
    """Skip the test unless ``condition`` holds; with ``AGENTFLOW_REQUIRE_ALL=1`` fail instead of skipping."""
    if condition:
        return
    if require_all():
        pytest.fail(f"required by {REQUIRE_ALL}=1 but unavailable: {reason}")
    pytest.skip(reason)
