"""run_tests: real pytest and unittest runs of a tiny package inside the sandbox, parsed into counts."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.tools import ToolContext, tool_registry
from agentflow.tools._tests import parse_pytest_output, parse_unittest_output
from tests.tools._support import SandboxFiles

CALC = "def add(a, b):\n    return a + b\n"

MIXED_TESTS = """\
import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_adds(self):
        self.assertEqual(calc.add(2, 2), 4)

    def test_broken(self):
        self.assertEqual(calc.add(2, 2), 5)

    def test_crashes(self):
        raise RuntimeError("boom")
"""

GREEN_TESTS = """\
import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_adds(self):
        self.assertEqual(calc.add(2, 2), 4)

    def test_negative(self):
        self.assertEqual(calc.add(-1, 1), 0)

    @unittest.skip("not today")
    def test_skipped(self):
        raise AssertionError
"""


async def make_project(files: SandboxFiles, tests: str, *, package: bool = False) -> None:
    await files.put("calc.py", CALC)
    await files.put("tests/test_calc.py", tests)
    if package:
        await files.put("tests/__init__.py", "")


async def run_tests(ctx: ToolContext, **arguments: Any) -> dict[str, Any]:
    outcome = await tool_registry.get("run_tests").invoke(ctx, arguments)
    assert outcome.ok, outcome.content
    assert isinstance(outcome.result, dict)
    return outcome.result


async def test_pytest_run_with_a_failure_and_an_error(ctx: ToolContext, files: SandboxFiles) -> None:
    await make_project(files, MIXED_TESTS)
    report = await run_tests(ctx, framework="pytest")
    assert report["framework"] == "pytest"
    assert report["passed"] is False
    assert report["exit_code"] == 1
    # pytest counts an exception in a test body as a failure, not an error.
    assert (report["tests_run"], report["tests_passed"], report["tests_failed"], report["tests_errored"]) == (
        3,
        1,
        2,
        0,
    )
    assert report["failed_tests"] == [
        "tests/test_calc.py::CalcTest::test_broken",
        "tests/test_calc.py::CalcTest::test_crashes",
    ]
    assert "2 failed, 1 passed" in report["output"]
    assert not await files.exists(".pytest_cache/README.md")


@pytest.mark.parametrize("package", [False, True])
async def test_unittest_run_with_a_failure_and_an_error(ctx: ToolContext, files: SandboxFiles, package: bool) -> None:
    await make_project(files, MIXED_TESTS, package=package)
    report = await run_tests(ctx, framework="unittest")
    assert report["framework"] == "unittest"
    assert report["passed"] is False
    assert report["exit_code"] == 1
    assert (report["tests_run"], report["tests_passed"], report["tests_failed"], report["tests_errored"]) == (
        3,
        1,
        1,
        1,
    )
    module = "tests.test_calc" if package else "test_calc"
    assert sorted(report["failed_tests"]) == [f"{module}.CalcTest.test_broken", f"{module}.CalcTest.test_crashes"]


@pytest.mark.parametrize("framework", ["pytest", "unittest"])
async def test_all_green_run_passes(ctx: ToolContext, files: SandboxFiles, framework: str) -> None:
    await make_project(files, GREEN_TESTS)
    report = await run_tests(ctx, framework=framework)
    assert report["passed"] is True
    assert report["exit_code"] == 0
    assert report["tests_run"] == 3
    assert report["tests_passed"] == 2
    assert report["tests_skipped"] == 1
    assert report["tests_failed"] == report["tests_errored"] == 0
    assert report["failed_tests"] == []


async def test_auto_uses_pytest_when_the_sandbox_has_it(
    ctx: ToolContext, files: SandboxFiles, execs: list[list[str]]
) -> None:
    await make_project(files, GREEN_TESTS)
    report = await run_tests(ctx)
    assert report["framework"] == "pytest"
    assert report["passed"] is True
    assert ["python3", "-c", "import pytest"] in execs
    assert any(cmd[:3] == ["python3", "-m", "pytest"] for cmd in execs)


async def test_a_single_test_file_with_unittest(ctx: ToolContext, files: SandboxFiles) -> None:
    await make_project(files, GREEN_TESTS, package=True)
    report = await run_tests(ctx, path="tests/test_calc.py", framework="unittest")
    assert report["passed"] is True
    assert report["tests_passed"] == 2


async def test_collection_error_is_not_a_pass(ctx: ToolContext, files: SandboxFiles) -> None:
    await make_project(files, "import calc\nimport no_such_module\n\ndef test_x():\n    assert True\n")
    report = await run_tests(ctx, framework="pytest")
    assert report["passed"] is False
    assert report["tests_errored"] == 1
    assert report["failed_tests"] == ["tests/test_calc.py"]


@pytest.mark.parametrize("framework", ["pytest", "unittest"])
async def test_no_tests_is_not_a_pass(ctx: ToolContext, files: SandboxFiles, framework: str) -> None:
    await make_project(files, "# nothing here yet\n")
    report = await run_tests(ctx, framework=framework)
    assert report["passed"] is False
    assert report["tests_run"] == 0


async def test_timeout_is_not_a_pass(ctx: ToolContext, files: SandboxFiles) -> None:
    await make_project(files, "import time\n\ndef test_slow():\n    time.sleep(30)\n")
    report = await run_tests(ctx, framework="pytest", timeout_s=1)
    assert report["timed_out"] is True
    assert report["passed"] is False


async def test_missing_test_folder_is_an_error_the_model_can_act_on(ctx: ToolContext) -> None:
    outcome = await tool_registry.get("run_tests").invoke(ctx, {"path": "spec"})
    assert not outcome.ok
    assert "no test file or folder 'spec'" in outcome.content


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1 failed, 2 passed, 1 skipped, 1 xfailed, 3 warnings in 0.12s", (5, 2, 1, 0, 2)),
        ("========== 4 passed, 2 errors in 61.23s (0:01:01) ==========", (6, 4, 0, 2, 0)),
        ("1 passed, 1 xpassed, 5 deselected in 0.01s", (2, 2, 0, 0, 0)),
        ("no tests ran in 0.00s", (0, 0, 0, 0, 0)),
    ],
)
def test_pytest_summary_variants(line: str, expected: tuple[int, int, int, int, int]) -> None:
    counts, _ = parse_pytest_output(f"printed by a test: 3 apples in 2s\n{line}\n")
    assert counts.found_summary
    assert (counts.run, counts.passed, counts.failed, counts.errored, counts.skipped) == expected


def test_unittest_verdict_variants() -> None:
    output = (
        "FAIL: test_a (pkg.test_m.T.test_a)\n----\nERROR: test_b (pkg.test_m.T)\n----\n"
        "Ran 7 tests in 0.010s\n\nFAILED (failures=1, errors=1, skipped=2, expected failures=1)\n"
    )
    counts, failed = parse_unittest_output(output)
    assert (counts.run, counts.passed, counts.failed, counts.errored, counts.skipped) == (7, 2, 1, 1, 3)
    # Both the 3.11+ form (module.Class.method) and the older form (module.Class) give the full name.
    assert failed == ["pkg.test_m.T.test_a", "pkg.test_m.T.test_b"]


def test_output_without_a_summary_is_not_counted() -> None:
    counts, _ = parse_unittest_output("Traceback (most recent call last):\nSegmentation fault\n")
    assert not counts.found_summary
    assert counts.run == 0
