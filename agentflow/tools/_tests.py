"""The built-in ``run_tests`` tool and the parsers that read pytest's and unittest's output."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agentflow.errors import PathOutsideWorkdirError, ToolError
from agentflow.tools._base import ToolContext
from agentflow.tools._exec import PYTHON, TimeoutSeconds
from agentflow.tools._files import _workdir_path
from agentflow.tools._patching import _read_optional
from agentflow.tools._registry import tool

TEST_OUTPUT_TAIL_CHARS = 8_000
"""``run_tests`` keeps this much of the end of the runner's output, where the failures and summary are."""


class RunTestsResult(BaseModel):
    """The parsed outcome of a test run."""

    passed: bool = Field(description="every collected test passed (or was skipped) and at least one passed")
    framework: Literal["pytest", "unittest"]
    exit_code: int
    timed_out: bool
    tests_run: int
    tests_passed: int
    tests_failed: int
    tests_errored: int
    tests_skipped: int
    failed_tests: list[str]
    output: str


_PYTEST_SUMMARY = re.compile(
    r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+|no tests ran) in [\d.]+s(?: \([^)]*\))?\s*=*$", re.MULTILINE
)
_PYTEST_COUNT = re.compile(r"(\d+) (\w+)")
_PYTEST_FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_VERDICT = re.compile(r"^(OK|FAILED|NO TESTS RAN)(?: \((?P<details>[^)]*)\))?\s*$", re.MULTILINE)
_UNITTEST_FAILED_LINE = re.compile(r"^(?:FAIL|ERROR|UNEXPECTED SUCCESS): (\S+) \(([^)]+)\)", re.MULTILINE)


@dataclass
class RunCounts:
    """Test counts read from a runner's output; ``found_summary`` is false when the output had no summary."""

    run: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    found_summary: bool = False


def parse_pytest_output(output: str) -> tuple[RunCounts, list[str]]:
    """Read the counts from pytest's final summary line and the failing test ids from its short summary."""
    counts = RunCounts()
    summaries = list(_PYTEST_SUMMARY.finditer(output))
    if summaries:
        counts.found_summary = True
        by_word: dict[str, int] = {}
        for number, word in _PYTEST_COUNT.findall(summaries[-1].group("body")):
            by_word[{"errors": "error", "warnings": "warning"}.get(word, word)] = int(number)
        # An xpass that is not strict counts as a pass, an xfail as a skip: pytest's exit code agrees.
        counts.passed = by_word.get("passed", 0) + by_word.get("xpassed", 0)
        counts.failed = by_word.get("failed", 0)
        counts.errored = by_word.get("error", 0)
        counts.skipped = by_word.get("skipped", 0) + by_word.get("xfailed", 0)
        counts.run = counts.passed + counts.failed + counts.errored + counts.skipped
    failed = list(dict.fromkeys(_PYTEST_FAILED_LINE.findall(output)))
    return counts, failed


def parse_unittest_output(output: str) -> tuple[RunCounts, list[str]]:
    """Read ``Ran N tests`` and the ``OK`` / ``FAILED (failures=x, errors=y)`` verdict of a unittest run."""
    counts = RunCounts()
    ran = list(_UNITTEST_RAN.finditer(output))
    verdicts = list(_UNITTEST_VERDICT.finditer(output))
    if ran and verdicts:
        counts.found_summary = True
        counts.run = int(ran[-1].group(1))
        details: dict[str, int] = {}
        for item in (verdicts[-1].group("details") or "").split(","):
            key, _, value = item.strip().partition("=")
            if value.isdigit():
                details[key] = int(value)
        counts.failed = details.get("failures", 0) + details.get("unexpected successes", 0)
        counts.errored = details.get("errors", 0)
        counts.skipped = details.get("skipped", 0) + details.get("expected failures", 0)
        counts.passed = max(counts.run - counts.failed - counts.errored - counts.skipped, 0)
    failed = []
    for method, where in _UNITTEST_FAILED_LINE.findall(output):
        # Python 3.11+ prints "(module.Class.method)", older versions "(module.Class)".
        name = where if where.endswith("." + method) else f"{where}.{method}"
        failed.append(name.removeprefix("unittest.loader._FailedTest."))
    return counts, list(dict.fromkeys(failed))


async def _require_test_path(ctx: ToolContext, target: str) -> None:
    """Refuse a missing path with a message the model can act on, instead of a runner's usage error."""
    try:
        await ctx.sandbox.read_file(target)
    except IsADirectoryError:
        return
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(
            f"no test file or folder {target!r} in the workdir; call list_files to find the tests"
        ) from None
    except PathOutsideWorkdirError as exc:
        raise ToolError(f"path {target!r} is outside the workdir: {exc}") from None


async def _pytest_available(ctx: ToolContext) -> bool:
    probe = await ctx.exec([PYTHON, "-c", "import pytest"])
    return probe.exit_code == 0


def _test_command(framework: str, target: str, is_package: bool) -> list[str]:
    if framework == "pytest":
        # -rfE lists failures and errors by test id; no cache dir so a run leaves the workdir as it found it.
        return [PYTHON, "-m", "pytest", "-q", "-rfE", "--color=no", "-p", "no:cacheprovider", "--", target]
    if target.endswith(".py"):
        return [PYTHON, "-m", "unittest", "-v", target]
    # With a package (tests/__init__.py) the workdir is the top level, so tests import as tests.test_x.
    top_level = ["-t", "."] if is_package else []
    return [PYTHON, "-m", "unittest", "discover", "-v", "-s", target, *top_level]


@tool("run_tests")
async def run_tests(
    ctx: ToolContext,
    path: Annotated[str, Field(description="test folder or file relative to the workdir")] = "tests",
    framework: Annotated[
        Literal["pytest", "unittest", "auto"],
        Field(description="'auto' uses pytest when it is installed in the sandbox, else unittest"),
    ] = "auto",
    timeout_s: TimeoutSeconds = None,
    plugins: Annotated[
        bool,
        Field(
            description="let pytest load every installed plugin package (slower; plugins named in conftest load anyway)"
        ),
    ] = False,
) -> RunTestsResult:
    """Run the project's tests in the sandbox and report how many passed and which failed.

    ``passed`` is true only when every test that ran passed (skips allowed) and at least one test ran.
    """
    target = _workdir_path(ctx, path)
    await _require_test_path(ctx, target.split("::", 1)[0])
    chosen = framework
    if framework != "unittest":
        has_pytest = await _pytest_available(ctx)
        if framework == "pytest" and not has_pytest:
            raise ToolError("pytest is not installed in the sandbox; use framework='unittest' or 'auto'")
        chosen = "pytest" if has_pytest else "unittest"
    is_package = False
    if chosen == "unittest" and not target.endswith(".py"):
        is_package = await _read_optional(ctx, posixpath.join(target, "__init__.py")) is not None
    # Installed plugin packages (langsmith, anyio, ...) cost seconds of start-up per run and make results depend on
    # whatever the environment holds; conftest's `pytest_plugins` still load.
    env = {} if plugins else {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = await ctx.exec(_test_command(chosen, target, is_package), env=env, timeout=timeout_s)
    output = result.stdout + ("\n" if result.stdout and result.stderr else "") + result.stderr
    counts, failed_tests = parse_pytest_output(output) if chosen == "pytest" else parse_unittest_output(output)
    all_green = counts.failed == 0 and counts.errored == 0 and counts.passed > 0
    tail = output[-TEST_OUTPUT_TAIL_CHARS:]
    if not counts.found_summary and not result.timed_out:
        tail = f"[no {chosen} summary found in the output; the run may have crashed]\n{tail}"
    return RunTestsResult(
        passed=all_green and counts.found_summary and result.exit_code == 0 and not result.timed_out,
        framework="pytest" if chosen == "pytest" else "unittest",
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        tests_run=counts.run,
        tests_passed=counts.passed,
        tests_failed=counts.failed,
        tests_errored=counts.errored,
        tests_skipped=counts.skipped,
        failed_tests=failed_tests,
        output=tail,
    )
