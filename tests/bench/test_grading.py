"""Grading HumanEval samples in real sandboxes: the canonical solutions pass, cheating never passes, faults are
contained (graded failed, the samples after them unaffected), verdicts come back in input order."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from agentflow.bench import Problem, Sample, Verdict, grade_programs, grade_samples
from agentflow.errors import SandboxError
from agentflow.sandboxes import SandboxLimits
from tests.sandboxes._docker_support import require_docker
from tests.sandboxes.conftest import require_namespaces

TASK = "HumanEval/0"  # has_close_elements


def _sample(index: int, task_id: str, completion: str) -> Sample:
    return Sample(index + 1, task_id, completion, {"task_id": task_id, "completion": completion})


def _with_canonical(problems: dict[str, Problem], module_level: str, task_id: str = TASK) -> str:
    """The task's correct body, then ``module_level`` code that runs before the test defines and calls check."""
    return problems[task_id].canonical_solution + "\n" + textwrap.dedent(module_level)


# Each of these ends with the correct function in place, and none lets `check` return, or returns it only in a
# process other than the sample's own: a grader that trusted the exit status or stdout would pass them all.
CHEATS = {
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "exit builtin": "exit(0)\n",
    "print a fake success": """
        import json, os, sys
        print("passed")
        print(json.dumps({"index": 0, "passed": True, "result": "passed", "duration_s": 0.0}))
        sys.stdout.flush()
        os._exit(0)
    """,
    "write a fake token on every descriptor": """
        import os
        for fd in range(3, 256):
            try:
                os.write(fd, b"P" + b"0" * 32)
            except OSError:
                pass
        os._exit(0)
    """,
    "forge the checker's verdicts, then kill it": """
        import json, os, signal
        lines = "".join(
            json.dumps({"index": index, "passed": True, "result": "passed", "duration_s": 0.0}) + "\\n"
            for index in range(64)
        )
        for fd in range(3):
            try:
                with open(f"/proc/{os.getppid()}/fd/{fd}", "w") as handle:
                    handle.write(lines)
            except OSError:
                pass
        os.kill(os.getppid(), signal.SIGKILL)
    """,
    "kill the checker": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "kill every process it may signal": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
    "kill the whole session": "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
    "SystemExit in a finally": "try:\n    pass\nfinally:\n    raise SystemExit(0)\n",
    # the forked copy goes on to run check (and passes it); the sample's own process exits 0 at once
    "pass in a forked copy": "import os\nif os.fork() != 0:\n    os._exit(0)\n",
}

FAULTS = {
    "fork a thousand processes": """
        import os, time
        for _ in range(1000):
            if os.fork() == 0:
                time.sleep(600)
    """,
    "allocate 10 GB": "hoard = bytearray(10 * 1024**3)\n",
    "write 5 GB": """
        with open("big", "wb") as handle:
            for _ in range(5 * 1024):
                handle.write(b"0" * 1024**2)
    """,
    "print 100 MB": "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1024**2)\n",
}

# proves that the processes a fault left are gone: with 128 processes allowed, 60 more only start if they are
FORK_SIXTY = """
    import os
    gate, release = os.pipe()
    children = []
    for _ in range(60):
        child = os.fork()
        if child == 0:  # wait until all 60 exist
            os.close(release)
            os.read(gate, 1)
            os._exit(0)
        children.append(child)
    os.close(release)
    for child in children:
        os.waitpid(child, 0)
"""


def test_every_canonical_solution_passes_on_the_local_sandbox(humaneval: dict[str, Problem]) -> None:
    samples = [_sample(i, p.task_id, p.canonical_solution) for i, p in enumerate(humaneval.values())]
    verdicts = asyncio.run(grade_samples(samples, humaneval, backend="local"))
    assert [v.result for v in verdicts] == ["passed"] * 164
    assert all(v.passed and v.duration_s > 0 for v in verdicts)


async def _grade_cheats(problems: dict[str, Problem], backend: str) -> dict[str, Verdict]:
    names = list(CHEATS)
    programs = [problems[TASK].program(_with_canonical(problems, CHEATS[name])) for name in names]
    honest = problems[TASK].program(problems[TASK].canonical_solution)
    # one batch, an honest sample after each cheat: no cheat may disturb the sample after it
    interleaved = [program for cheat in programs for program in (cheat, honest)]
    verdicts = await grade_programs(interleaved, backend=backend, workers=1, batch_size=len(interleaved))
    assert [v.result for v in verdicts[1::2]] == ["passed"] * len(names)
    return dict(zip(names, verdicts[0::2], strict=True))


@pytest.mark.namespaces
async def test_cheating_never_passes_on_the_local_sandbox(humaneval: dict[str, Problem]) -> None:
    require_namespaces()
    verdicts = await _grade_cheats(humaneval, "local")
    assert {name: v.passed for name, v in verdicts.items()} == dict.fromkeys(CHEATS, False)
    assert verdicts["sys.exit(0)"].result == "failed: SystemExit: 0"
    assert verdicts["SystemExit in a finally"].result == "failed: SystemExit: 0"
    assert verdicts["os._exit(0)"].result == "failed: exited with status 0 before check returned"
    assert verdicts["print a fake success"].result == "failed: exited with status 0 before check returned"
    assert verdicts["kill the checker"].result.startswith("failed: the grading process was killed")


async def test_cheating_never_passes_on_docker(humaneval: dict[str, Problem]) -> None:
    require_docker()
    verdicts = await _grade_cheats(humaneval, "docker")
    assert {name: v.passed for name, v in verdicts.items()} == dict.fromkeys(CHEATS, False)


@pytest.mark.parametrize("backend", ["local", "docker"])
async def test_faults_are_contained_and_graded_failed(humaneval: dict[str, Problem], backend: str) -> None:
    if backend == "local":
        require_namespaces()
    else:
        require_docker()
    problem = humaneval[TASK]
    honest = problem.program(problem.canonical_solution)
    after = problem.program(_with_canonical(humaneval, FORK_SIXTY))
    programs: list[str] = []
    for fault in FAULTS.values():
        programs += [problem.program(_with_canonical(humaneval, fault)), after, honest]
    verdicts = await grade_programs(programs, backend=backend, workers=1, batch_size=len(programs), timeout=10)
    faults = dict(zip(FAULTS, verdicts[0::3], strict=True))
    assert {name: v.passed for name, v in faults.items()} == dict.fromkeys(FAULTS, False)
    assert faults["fork a thousand processes"].result.startswith("failed: BlockingIOError")  # the pids limit
    assert faults["allocate 10 GB"].result == "failed: MemoryError"  # the memory limit
    assert faults["write 5 GB"].result.startswith("failed: OSError: [Errno 27] File too large")  # the file size limit
    assert faults["print 100 MB"].result == "failed: printed more than 1000000 bytes"  # the output cap
    # what each fault left behind is gone: the next sample starts 60 processes, the one after passes as ever
    assert [v.result for v in verdicts[1::3]] == ["passed"] * len(FAULTS)
    assert [v.result for v in verdicts[2::3]] == ["passed"] * len(FAULTS)


async def test_an_infinite_loop_times_out_with_its_children_and_the_rest_is_graded(
    humaneval: dict[str, Problem],
) -> None:
    problem = humaneval[TASK]
    spinner = _with_canonical(humaneval, "import os\nos.fork()\nwhile True:\n    pass\n")
    programs = [problem.program(spinner), problem.program(problem.canonical_solution)]
    verdicts = await grade_programs(programs, backend="local", workers=1, batch_size=2, timeout=1.0)
    assert verdicts[0] == Verdict(False, "timed out", verdicts[0].duration_s)
    assert 1.0 <= verdicts[0].duration_s < 5.0
    assert verdicts[1].result == "passed"


async def test_verdicts_come_back_in_input_order_across_batches_and_workers(humaneval: dict[str, Problem]) -> None:
    problems = list(humaneval.values())[:12]
    samples: list[Sample] = []
    expected: list[bool] = []
    for index, problem in enumerate(problems * 2):
        right = (index % 3) != 0
        completion = problem.canonical_solution if right else "    raise ValueError('wrong on purpose')\n"
        samples.append(_sample(index, problem.task_id, completion))
        expected.append(right)
    verdicts = await grade_samples(samples, humaneval, backend="local", workers=3, batch_size=2)
    assert [v.passed for v in verdicts] == expected
    assert {v.result for v, ok in zip(verdicts, expected, strict=True) if not ok} == {
        "failed: ValueError: wrong on purpose"
    }


async def test_observer_sees_every_exec(humaneval: dict[str, Problem]) -> None:
    problem = humaneval[TASK]
    seen: list[list[str]] = []
    programs = [problem.program(problem.canonical_solution)] * 5
    await grade_programs(programs, batch_size=2, workers=2, on_exec=lambda argv, _cwd, _result: seen.append(argv))
    assert len(seen) == 3  # batches of 2, 2 and 1
    assert all(argv[:3] == ["python3", "-I", "-c"] for argv in seen)


async def test_a_long_timeout_is_not_cut_short_by_the_cpu_limit() -> None:
    program = "import resource\nassert resource.getrlimit(resource.RLIMIT_CPU)[0] >= 121, resource.getrlimit(0)\n"
    (verdict,) = await grade_programs([program], timeout=120.0)
    assert verdict.result == "passed"


async def test_a_sandbox_where_the_grader_cannot_run_is_an_error_not_failed_samples() -> None:
    with pytest.raises(SandboxError, match="the grading process did not start in the local sandboxes"):
        await grade_programs(["pass", "pass"], limits=SandboxLimits(memory_mb=8))  # too little for Python
