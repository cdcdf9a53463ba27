"""Fixtures shared by every test folder."""

from __future__ import annotations

import fcntl
import gc
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.require import REQUIRE_ALL, require_all

ROOT = Path(__file__).parents[1]


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of graphs/examples (with the tools/ plugins they load by relative path), safe to modify."""
    shutil.copytree(ROOT / "graphs" / "examples", tmp_path / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "graphs" / "examples"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Under AGENTFLOW_REQUIRE_ALL=1 every skip is a failure, however the test skipped: nothing silently stops
    being tested in CI."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and require_all() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but {REQUIRE_ALL}=1 requires every test to run: {reason}"
    return None


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage after each test, so a leaked socket or transport fails the test that leaked it (warnings
    are errors) instead of whichever test happens to run when the collector does."""
    yield
    gc.collect()


@pytest.fixture
def machine_wide_cleanup() -> Iterator[None]:
    """Held by a test that runs `agentflow sandbox cleanup` over the whole machine (or sets up what it removes):
    the suite's worker processes run test files side by side, and one's cleanup would remove another's images."""
    with open(Path(tempfile.gettempdir()) / "agentflow-tests-machine-wide-cleanup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
