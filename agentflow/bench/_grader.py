"""Grading programs in sandboxes: a pool of ``workers`` sandboxes, each running a warm grading process per batch
of samples that forks one child per sample (``_sample_runner``, whose docstring says what a sample can and cannot
do to its verdict).

Why batches: starting an isolated Python costs tens of milliseconds per exec on the local sandbox (new namespaces,
a new interpreter); a fork of a warm interpreter costs about one. One exec per batch keeps every sample in its own
process, temporary folder and process tree, with the sandbox's limits, while paying the start once per batch. The
batch's exec is an ordinary ``Sandbox.exec`` (its recording, timeout and output cap apply; ``on_exec`` sees it);
each sample's verdict carries its own duration and reason.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.bench._humaneval import Problem, Sample
from agentflow.errors import SandboxError
from agentflow.sandboxes import ExecObserver, Sandbox, SandboxLimits, SandboxPool, create_sandbox
from agentflow.sandboxes._base import ObservedSandbox

DEFAULT_TIMEOUT_S = 3.0
"""Seconds one sample may run, as in the reference harness."""

GRADING_LIMITS = SandboxLimits(file_size_mb=16)
"""The sandbox limits samples are graded under: the embedded defaults (1 GiB of memory and 128 processes per
process, 1 MB of output), with files capped at 16 MiB, which no HumanEval solution comes near."""

PRELOADED_MODULES = ("collections", "functools", "hashlib", "heapq", "itertools", "math", "random", "re", "string")
"""Imported once by each grading process, before it forks, so that samples which import them do not pay for it."""

_MAX_BATCH = 16
_BATCHES_PER_WORKER = 4  # small enough batches that one worker's slow samples do not leave the others idle
_START_SLACK_S = 10.0  # the exec's own budget beyond its samples' timeouts: the interpreter starting, imports


@dataclass(frozen=True)
class Verdict:
    """How one sample was graded: ``result`` is ``passed``, ``failed: <reason>`` or ``timed out``; ``duration_s``
    is the time from its start to the end of its last process."""

    passed: bool
    result: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "result": self.result, "duration_s": self.duration_s}


@functools.cache
def _runner_source() -> str:
    return Path(__file__).with_name("_sample_runner.py").read_text(encoding="utf-8")


class _SandboxBroke(Exception):
    """One sample's exec failed in its sandbox: the sample broke it (graded failed) or the backend is down."""

    def __init__(self, index: int, error: SandboxError) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class _Grading:
    """One call's state: the programs, the verdicts so far, the batches still to run."""

    def __init__(self, programs: Sequence[str], *, timeout: float, output_cap: int, batch_size: int) -> None:
        self.programs = programs
        self.timeout = timeout
        self.output_cap = output_cap
        self.verdicts: list[Verdict | None] = [None] * len(programs)
        indices = list(range(len(programs)))
        self.batches: deque[list[int]] = deque(
            indices[start : start + batch_size] for start in range(0, len(indices), batch_size)
        )

    async def run_batch(self, box: Sandbox, batch: list[int]) -> None:
        """Grade one batch in ``box``; what a dead grading process left ungraded goes back to the queue."""
        payload = json.dumps(
            {
                "timeout": self.timeout,
                "output_cap": self.output_cap,
                "preload": list(PRELOADED_MODULES),
                "samples": [{"index": index, "program": self.programs[index]} for index in batch],
            }
        )
        try:
            result = await box.exec(
                ["python3", "-I", "-c", _runner_source()],
                stdin=payload,
                timeout=len(batch) * (self.timeout + 2.0) + _START_SLACK_S,
            )
        except SandboxError as exc:
            if len(batch) > 1:  # find the sample that broke the sandbox: each of the batch alone
                self.batches.extend([index] for index in batch)
                return
            raise _SandboxBroke(batch[0], exc) from exc
        running: int | None = None
        for line in result.stdout.splitlines():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the output cap; its sample is graded again
            if "start" in message:
                running = message["start"]
            elif running is not None and message.get("index") == running:  # only the sample it said it started
                self.verdicts[running] = Verdict(message["passed"], message["result"], message["duration_s"])
                running = None
        if running is not None:  # the grading process ended (killed by the sample, or the exec's budget ran out)
            self.verdicts[running] = Verdict(
                False,
                "timed out"
                if result.timed_out
                else f"failed: the grading process was killed while this sample ran (exit {result.exit_code})",
                0.0,
            )
        left = [index for index in batch if self.verdicts[index] is None]
        if left and len(left) == len(batch) and running is None:
            raise SandboxError(
                f"the grading process did not start in the {box.backend} sandboxes (exit {result.exit_code}): "
                f"{result.stderr.strip()[-500:]}"
            )
        if left:
            self.batches.appendleft(left)


async def grade_programs(
    programs: Sequence[str],
    *,
    backend: str = "local",
    timeout: float = DEFAULT_TIMEOUT_S,
    workers: int = 4,
    limits: SandboxLimits | None = None,
    image: str | None = None,
    batch_size: int | None = None,
    on_exec: ExecObserver | None = None,
) -> list[Verdict]:
    """Run each program in a sandbox of ``backend`` and say whether it ran to its end within ``timeout`` seconds.

    Args:
        programs: Python programs, each graded alone (its own process, folder and process tree).
        backend: the sandbox backend (``local``, ``docker``...).
        timeout: wall-clock seconds per program.
        workers: sandboxes grading at the same time.
        limits: the sandboxes' limits (``GRADING_LIMITS`` when omitted, with CPU seconds raised to the timeout);
            they apply to each program's process, and ``output_bytes`` is also what one program may print.
        image: the image of container backends.
        batch_size: programs per exec of the grading process (by default a quarter of each worker's share, at
            most 16).
        on_exec: told of every exec in the sandboxes (argv, cwd, result), to record them.

    Returns:
        One verdict per program, in order.

    Raises:
        SandboxError: the sandboxes could not be created, or the grading process cannot run in them.
    """
    if not programs:
        return []
    if workers < 1 or timeout <= 0:
        raise ValueError(f"need workers >= 1 and timeout > 0 (workers {workers}, timeout {timeout})")
    # a sample's CPU time must not run out before its wall-clock timeout does (RLIMIT_CPU is per process)
    chosen = limits or GRADING_LIMITS.model_copy(update={"cpu_s": max(GRADING_LIMITS.cpu_s, math.ceil(timeout) + 1)})
    size = batch_size or max(1, min(_MAX_BATCH, math.ceil(len(programs) / (workers * _BATCHES_PER_WORKER))))
    grading = _Grading(programs, timeout=timeout, output_cap=chosen.output_bytes, batch_size=size)
    workers = min(workers, len(grading.batches))

    async def factory() -> Sandbox:
        return await create_sandbox(backend, limits=chosen, image=image)

    async def work(pool: SandboxPool) -> None:
        while grading.batches:
            batch = grading.batches.popleft()
            try:
                async with await pool.acquire() as pooled:
                    await grading.run_batch(observed(pooled), batch)
            except _SandboxBroke as broke:
                # The pool replaced the broken sandbox. If a fresh one runs Python, the sample broke its own (kill
                # -1 can end a container's exec server): graded failed. If not, the backend is down: an error, not a
                # verdict on every sample that follows.
                async with await pool.acquire() as pooled:
                    probe = await observed(pooled).exec(["python3", "-I", "-c", "pass"], timeout=_START_SLACK_S)
                if probe.exit_code != 0:
                    raise broke.error from None
                grading.verdicts[broke.index] = Verdict(False, f"failed: the sample broke its sandbox: {broke}", 0.0)

    def observed(box: Sandbox) -> Sandbox:
        return ObservedSandbox(box, on_exec) if on_exec is not None else box

    async with SandboxPool(factory, size=workers, acquire_timeout=3600.0) as pool:
        try:
            async with asyncio.TaskGroup() as group:  # one worker's error cancels the others before the pool closes
                for _ in range(workers):
                    group.create_task(work(pool))
        except ExceptionGroup as errors:  # the first worker's error, as the caller expects it
            raise errors.exceptions[0] from None
    missing = Verdict(False, "failed: not graded", 0.0)  # unreachable: every batch ends with all its verdicts
    return [verdict if verdict is not None else missing for verdict in grading.verdicts]


async def grade_samples(samples: Sequence[Sample], problems: dict[str, Problem], **options: Any) -> list[Verdict]:
    """Grade HumanEval samples (each by ``Problem.program``); ``options`` are those of ``grade_programs``."""
    return await grade_programs([problems[s.task_id].program(s.completion) for s in samples], **options)
