"""Fixtures of the benchmark tests: the real HumanEval data beside the checkout."""

from __future__ import annotations

import pytest

from agentflow.bench import Problem, checkout_problems, load_problems
from tests.support.require import require


@pytest.fixture(scope="session")
def humaneval() -> dict[str, Problem]:
    """The 164 HumanEval problems from ../shared/data/humaneval (skips, or fails under AGENTFLOW_REQUIRE_ALL=1,
    when the data is not beside the checkout)."""
    path = checkout_problems()
    require(path is not None, "no shared/data/humaneval/HumanEval.jsonl.gz beside the project's root")
    assert path is not None
    return load_problems(path)
