"""Running a benchmark: every (task, epoch) pair as a run in the store, concurrently, resumably, scored.

Each pair is an ordinary run of the workflow, tagged in its ``run_started`` (``bench``: bench run id, task id,
epoch, attempt) and in the store's bench tables, which record each attempt as it starts and again when it ends.
What that buys:

- **Concurrency**: at most ``concurrency`` runs at once (asyncio), their sandboxes lent by one warm pool per
  benchmark, reset between runs; sandboxes are started two at a time while the pool ramps up, not all at once, and
  closed as the last runs end. Runs go through their start one at a time (:class:`StartRamp`), so the first
  model call of a wave of runs is not held back by everyone else's start.
- **Errored runs** (an outage of the model provider or the sandbox, never the agent's failure) are run again as
  new attempts, up to ``retry_errored`` times, and reported apart; they are never counted as failures.
- **Resume**: ``--resume BENCH_RUN_ID`` runs only the pairs without a finished, non-errored attempt (and errored
  ones with retries left). An attempt whose bench process died is found through the run index: a run that
  finished is taken as it ended, one that did not is run again as a new attempt. So no pair is lost, and since a
  report counts one attempt per pair, none is graded twice.
- **Reproducibility**: each pair's seed is derived from the benchmark's seed, the task id and the epoch, and passed
  to every model call of its run (recorded with the run); the bench run records the agentflow version, the
  workflow's template hashes, the model settings and every seed.
- **Tasks with their own system** (Harbor directories, :class:`TaskEnvironment`): each run starts in a fresh docker
  sandbox of the task's image (built once per content hash), never pooled, since the agent and the verifier may
  change anything in the container; its ``run_started`` names the task's verifier for the outcome hook
  (``harbor_verifier``). ``oracle`` runs the built-in ``oracle.yaml`` (the task's ``solution/solve.sh``) instead
  of the benchmark's workflow, to check that the tasks can be solved.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import agentflow
from agentflow.bench._harbor import SOLUTION_DIR, PreparedEnvironment, TaskImages, open_task_sandbox
from agentflow.bench._rollouts import fork_pair
from agentflow.bench._spec import LoadedBench
from agentflow.bench._tasks import Task, TaskEnvironment, TaskProblem, read_tasks, task_inputs
from agentflow.errors import ConfigError, SandboxError, TraceError
from agentflow.routing import RoutingMode
from agentflow.runtime import (
    CompiledWorkflow,
    RunContext,
    RunPlan,
    RunResult,
    check_models,
    compile_workflow,
    run_workflow,
)
from agentflow.sandboxes import Sandbox, SandboxPool, copy_files_in, copy_folder_to, create_sandbox
from agentflow.spec import LoadedWorkflow, RewardSpec, load_workflow
from agentflow.traces import (
    BenchItem,
    BenchRunInfo,
    BenchTag,
    ErrorData,
    Event,
    EventType,
    ModelRequestData,
    ModelResponseData,
    PriceData,
    Recorder,
    RewardData,
    RunStartedData,
    Store,
    VerifierTag,
    token_cost,
)

ORACLE_WORKFLOW = Path(__file__).with_name("oracle.yaml")
"""What ``--oracle`` runs on each task: the task's ``solution/solve.sh`` instead of an agent."""

FINISHED = frozenset({"succeeded", "failed", "limit_exceeded", "errored"})
"""Statuses of an attempt that ended (``running``, ``cancelled`` and ``interrupted`` did not)."""


def pair_seed(bench_seed: int, task_id: str, epoch: int) -> int:
    """The seed of one (task, epoch) pair: a 31-bit number derived from the benchmark's seed (the same on every
    machine and Python version, unlike ``hash``)."""
    digest = hashlib.sha256(f"{bench_seed}\0{task_id}\0{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


@dataclass(frozen=True)
class BenchOptions:
    """What the command line sets over the benchmark file (None: the file's value)."""

    limit: int | None = None
    task_ids: list[str] | None = None
    epochs: int | None = None
    concurrency: int | None = None
    model: str | None = None
    sandbox: str | None = None
    seed: int | None = None
    retry_errored: int | None = None
    task_file: str | None = None  # instead of the benchmark's tasks.path
    oracle: bool = False  # run each task's reference solution instead of the workflow (tasks with a solution only)
    routing: RoutingMode | None = None  # Q-table routers: "learn" after each episode, or "freeze" (epsilon 0)
    rollouts: int = 0  # continuations per fork point of each pair's run (0: no rollout groups); see _rollouts
    fork_at: str = "first_error"  # where the pairs' runs are forked: first_error | each_step | STEP | seq:N

    def __post_init__(self) -> None:
        """Refuse a count out of range (a 0 meant the file's value before, silently).

        Raises:
            ConfigError: ``limit``, ``epochs`` or ``concurrency`` below 1, ``retry_errored`` or ``rollouts`` below 0.
        """
        for name, least in (("limit", 1), ("epochs", 1), ("concurrency", 1), ("retry_errored", 0), ("rollouts", 0)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ConfigError(f"{name} must be at least {least}, not {value}", fix=f"give {name} {least} or more")


@dataclass(frozen=True)
class Pair:
    """One (task, epoch) pair of a benchmark run."""

    task: Task
    epoch: int
    seed: int


@dataclass
class BenchProgress:
    """What a benchmark run has done so far, for a progress display (``on_progress`` gets it after each attempt).

    ``done``, ``passed`` and ``errored`` count the whole bench run, the pairs a resumed run found finished
    (``resumed``) included, so the pass rate is the bench run's; ``retried``, ``tokens`` and ``cost`` are what this
    invocation spent, and the time left is estimated from its own pace.
    """

    total: int
    done: int = 0
    passed: int = 0
    errored: int = 0
    retried: int = 0
    tokens: int = 0
    cost: float | None = None  # dollars, when the benchmark gives prices
    resumed: int = 0  # pairs finished before this invocation (counted in done, passed and errored)
    started: float = field(default_factory=time.monotonic)

    @property
    def pass_rate(self) -> float | None:
        scored = self.done - self.errored
        return self.passed / scored if scored else None

    def count(self, item: BenchItem) -> None:
        """Count a pair done, by the attempt that counts for it."""
        self.done += 1
        self.passed += item.outcome is not None and item.outcome >= 0.5 and item.status != "errored"
        self.errored += item.status == "errored"

    @property
    def eta_s(self) -> float | None:
        ran = self.done - self.resumed
        if ran <= 0 or self.done >= self.total:
            return None
        return (time.monotonic() - self.started) / ran * (self.total - self.done)


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt at a pair ended, as an executor reports it to the bench run."""

    item: BenchItem
    tokens: int = 0
    cost: float | None = None

    @property
    def abandoned(self) -> bool:
        """Whether the attempt's worker died under it (``interrupted``): the pair runs again, nothing is counted."""
        return self.item.status == "interrupted"


class BenchExecutor(Protocol):
    """Where a bench run's attempts run: in this process (:class:`LocalExecutor`) or on a cluster (``RayExecutor``).

    The bench run decides which pairs and attempts run, how many at once, and records progress; an executor runs
    one attempt and says how it ended (``interrupted``: its worker died, so the bench run tries again)."""

    async def start(self, bench: BenchRun) -> None:
        """Get ready to run ``bench``'s attempts (start workers, warm sandboxes); the bench run calls it before its
        first attempt, and calling it again does nothing."""
        ...

    async def attempt(self, bench: BenchRun, pair: Pair, attempt: int) -> AttemptResult:
        """Run one attempt at a pair, recorded in ``bench.store``."""
        ...

    async def close(self) -> None:
        """Release what the executor holds (sandbox pools, workers); called once when the bench run ends."""
        ...


class LocalExecutor:
    """Every attempt as a run in this process, sandboxes lent by the bench run's warm pool."""

    async def start(self, bench: BenchRun) -> None:
        # The pool's first sandbox before any run starts: its start probes the backend once (the local sandbox's
        # namespaces: a process), which took three times as long while the first runs' setup held the event loop,
        # and every run waits for a sandbox.
        if any(pair.task.environment is None for pair in bench.pairs):
            await bench.warm_pool()

    async def attempt(self, bench: BenchRun, pair: Pair, attempt: int) -> AttemptResult:
        item, plan = await bench.run_attempt(pair, attempt)
        return AttemptResult(item, plan.tokens, plan.cost)

    async def close(self) -> None:
        return None


class StartRamp:
    """Lets one run at a time through its start: from the attempt's beginning to its first model or tool call.

    A run's start (trace opened, index and bench rows written, sandbox lent, ``run_started`` recorded, LangGraph's
    setup) is a few milliseconds of the event loop's time, the largest share of a run's own CPU. Fifty runs
    started together take turns on one event loop, so every one of them reaches its first model call only when all
    fifty starts are done, and the waves stay in step for the rest of the bench. Passed one at a time, the first
    run is waiting on its model after one start, the next after two, and the runs spread out. (benchmarks/bench.py,
    200 runs of three 200 ms turns at concurrency 50, alternated with the code before over 24 rounds: efficiency
    0.852 mean against 0.841; the first wave's last model call still waits for all fifty starts, about 175 ms.)

    A start that waits on something outside the process instead (an image build, a sandbox the pool has not
    started yet) lets the next run through after ``hold_s`` at the latest.
    """

    def __init__(self, hold_s: float = 0.05) -> None:
        self.hold_s = hold_s
        self._turn = asyncio.Lock()

    async def enter(self) -> StartTurn:
        """Wait for this run's turn; the caller ends it (:meth:`StartTurn.end`) at its first external call."""
        await self._turn.acquire()
        return StartTurn(self._turn, self.hold_s)


class StartTurn:
    """One run's turn through the :class:`StartRamp`, ended at its first external call or after the hold time."""

    def __init__(self, turn: asyncio.Lock, hold_s: float) -> None:
        self._turn: asyncio.Lock | None = turn
        self._deadline = asyncio.get_running_loop().call_later(hold_s, self.end)

    def end(self) -> None:
        """Let the next run start (once; later calls do nothing)."""
        if self._turn is not None:
            self._deadline.cancel()
            self._turn.release()
            self._turn = None


LOST_WORKER_RETRIES = 3
"""How many times a pair runs again after its worker died under it, before the bench run gives up on it."""


@dataclass
class BenchRunOutcome:
    """How a benchmark run (or the part of it this invocation ran) ended."""

    info: BenchRunInfo
    items: list[BenchItem]
    task_problems: list[TaskProblem]
    ran: int
    skipped: int
    cancelled: bool = False
    rollout_problems: list[str] = field(default_factory=lambda: [])  # pairs' runs a rollout could not fork


_EXTERNAL_CALLS = frozenset({EventType.MODEL_REQUEST, EventType.TOOL_CALL})
"""Events recorded just before a run waits on something outside this process: its start is over."""


class BenchPlan(RunPlan):
    """The live plan with a benchmark's tags: the run's attempt is recorded as it starts, its sandbox comes from the
    benchmark's pool, its outcome reward and token use are noted as they are recorded."""

    def __init__(
        self, bench: BenchRun, pair: Pair, attempt: int, *, run_id: str | None = None, record_item: bool = True
    ) -> None:
        self.bench = bench
        self.pair = pair
        self.attempt = attempt
        self.run_id = run_id  # the run's id, when the caller chose it (an executor that records the attempt itself)
        self.record_item = record_item  # whether this plan records the attempt in the bench tables
        self.item: BenchItem | None = None
        self.outcome: float | None = None
        self.tokens = 0
        self.cost: float | None = None  # of the models the benchmark prices (None: it called none of them)
        self._requested: dict[int, str] = {}  # model_request seq -> the model asked
        self.box: Sandbox | None = None
        self.prepared: PreparedEnvironment | None = None
        self.outage: str | None = None  # the sandbox failed under the outcome hook: no verdict, the attempt errored
        self.start_turn: StartTurn | None = None  # this run's turn through the bench's start ramp (ended once)

    def check(self, compiled: CompiledWorkflow, model_override: str | None) -> None:
        return None  # checked once for the whole benchmark, when the bench run is made

    def open_recorder(self, store: Store, workflow: str) -> Recorder:
        recorder = store.new_run(workflow=workflow, run_id=self.run_id)
        self.item = BenchItem(
            bench_run_id=self.bench.info.bench_run_id,
            task_id=self.pair.task.id,
            epoch=self.pair.epoch,
            attempt=self.attempt,
            run_id=recorder.run_id,
            seed=self.pair.seed,
            status="running",
            outcome=None,
            started_at=_utc_now(),
        )
        if self.record_item:  # before the run records anything: a killed bench process loses no run
            store.start_bench_item(self.item)
        return recorder

    async def open_sandbox(self, compiled: CompiledWorkflow, backend: str, run_id: str) -> Sandbox:
        environment = self.pair.task.environment
        if environment is None:
            box = await self.bench.sandbox()
        else:
            self.prepared = await self.bench.images.prepare(environment)
            box = await self.bench.task_sandbox(environment, self.prepared, run_id)
        try:
            await copy_files_in(box, compiled.loaded.spec.sandbox.files, compiled.loaded.base_dir)
            if self.bench.oracle and environment is not None and environment.solution is not None:
                await copy_folder_to(box, environment.solution, SOLUTION_DIR)
        except BaseException:
            await box.close()
            raise
        self.box = box
        return box

    async def start(self, ctx: RunContext, compiled: CompiledWorkflow, run_started: RunStartedData) -> None:
        tagged = run_started.copy()
        if "workflow_file" in tagged:
            tagged["workflow_file"] = self.bench.recorded_path(str(tagged["workflow_file"]))
        tagged["bench"] = BenchTag(
            bench_run_id=self.bench.info.bench_run_id,
            task_id=self.pair.task.id,
            epoch=self.pair.epoch,
            attempt=self.attempt,
            outcome_hook=self.bench.outcome_hook,  # the run's outcome and cost, read from its trace alone
        )
        if self.bench.prices:
            tagged["bench"]["prices"] = {
                model: PriceData(input_per_mtok=price["input_per_mtok"], output_per_mtok=price["output_per_mtok"])
                for model, price in self.bench.prices.items()
            }
        environment = self.pair.task.environment
        if environment is not None and self.prepared is not None:
            tagged["bench"]["verifier"] = VerifierTag(
                tests_dir=self.bench.recorded_path(str(environment.tests.resolve())),
                timeout_s=environment.verifier_timeout_s,
                workdir=self.prepared.workdir,
                env=dict(environment.verifier_env),
                user=environment.verifier_user,
            )
        await super().start(ctx, compiled, tagged)

    def after_event(self, ctx: RunContext, event: Event) -> None:
        if self.start_turn is not None and event.type in _EXTERNAL_CALLS:
            self.start_turn.end()  # the run waits on its model or a tool now: the next run may start
        if event.type is EventType.MODEL_REQUEST:
            self._requested[event.seq] = event.data_as(ModelRequestData)["model"]
        elif event.type is EventType.MODEL_RESPONSE:
            usage = event.data_as(ModelResponseData)["usage"]
            self.tokens += usage["input_tokens"] + usage["output_tokens"]
            price = self.bench.prices.get(self._requested.get(event.parent or -1, ""))
            if price is not None:
                self.cost = (self.cost or 0.0) + token_cost(price, usage["input_tokens"], usage["output_tokens"])
        elif event.type is EventType.REWARD and _is_outcome(
            reward := event.data_as(RewardData), self.bench.outcome_hook
        ):
            self.outcome = _value(reward)
        elif event.type is EventType.ERROR and self.box is not None and not self.box.alive:
            error = event.data_as(ErrorData)
            if error.get("hook") == self.bench.outcome_hook and error.get("on") == "run":
                self.outage = error["message"]  # the container died under the verifier: no verdict on the agent


class BenchRun:
    """One invocation of ``agentflow bench run``: a new benchmark run, or the rest of one (``resume``)."""

    def __init__(
        self,
        loaded: LoadedBench,
        store: Store,
        *,
        options: BenchOptions | None = None,
        resume: str | None = None,
        on_progress: Callable[[BenchProgress], None] | None = None,
        executor: BenchExecutor | None = None,
        attach: BenchRunInfo | None = None,
    ) -> None:
        """Start a bench run, or continue one (``resume``: its id in ``store``).

        ``attach`` is for a worker of a distributed executor: the bench run (read by the driver) whose attempts
        this process runs through :meth:`run_attempt`, with ``options.task_file`` where the task file is here.
        """
        self.loaded = loaded
        self.store = store
        self.on_progress = on_progress
        self.executor: BenchExecutor = executor or LocalExecutor()
        self.shipped_root: Path | None = None
        """Where a worker unpacked the driver's files (their driver paths under it): runs record driver paths."""
        spec = loaded.spec
        options = options or BenchOptions()
        resumed = store.get_bench_run(resume) if resume is not None else attach
        if attach is not None and options.task_file:
            task_file = Path(options.task_file)
        elif resumed is not None:
            recorded_task_file = resumed.config.get("task_file")
            task_file = Path(str(recorded_task_file)) if recorded_task_file else loaded.resolve(spec.tasks.path)
        else:
            task_file = Path(options.task_file) if options.task_file else loaded.resolve(spec.tasks.path)
        self.task_set = read_tasks(task_file, source=spec.tasks.source, id_field=spec.tasks.id_field)
        self.oracle = bool(resumed.config.get("oracle", False)) if resumed is not None else options.oracle
        if self.oracle:
            self._keep_solvable_tasks()
        workflow_file = ORACLE_WORKFLOW if self.oracle else loaded.resolve(spec.workflow)
        self.workflow = _with_benchmark(load_workflow(workflow_file), loaded)
        self.compiled = compile_workflow(self.workflow)
        if attach is None:
            # A missing API key or model script is the user's mistake: said now, before anything is recorded, not
            # as every run of the benchmark errored (and retried) for it. (A worker's bench run was checked by its
            # driver.)
            model = resumed.config.get("model") if resumed is not None else options.model or spec.model
            check_models(self.compiled, None if model is None else str(model))
        self.routing = options.routing
        self._compiled_by_timeout: dict[float, CompiledWorkflow] = {}
        self.outcome_hook = loaded.outcome_hook
        self.images = TaskImages()
        self._task_sandbox_starts = asyncio.Semaphore(2)  # ramp up: no burst of container starts
        self._start_ramp = StartRamp()
        if resumed is not None:
            self.info = resumed
            self.config = self.info.config
            self._check_resumable()
        else:
            tasks = self.task_set.select(options.task_ids, options.limit)
            if not tasks:
                raise ConfigError(f"no task to run in {self.task_set.path}", fix="check the task file and --tasks")
            self.config = self._config(tasks, options)
            self.info = store.create_bench_run(name=spec.name, config=self.config)
        if self.routing is None:  # a resumed bench run, or a worker's copy of one, routes as it started
            recorded_routing = self.config.get("routing")
            self.routing = recorded_routing if recorded_routing in ("learn", "freeze") else None
        self.pairs = self._pairs()
        self.prices: dict[str, dict[str, float]] = dict(self.config.get("prices") or {})
        self._pool: SandboxPool | None = None
        self._pool_lock = asyncio.Lock()

    # -- configuration ------------------------------------------------------------------------------------------

    def _config(self, tasks: Sequence[Task], options: BenchOptions) -> dict[str, Any]:
        """What the bench run is run with, recorded in the store (resume reads it back)."""
        spec = self.loaded.spec
        workflow = self.workflow.spec
        seed = spec.seed if options.seed is None else options.seed
        epochs = options.epochs or spec.epochs
        model = options.model or spec.model
        return {
            "benchmark": spec.name,
            "bench_file": str(self.loaded.path.resolve()),
            "workflow_file": str(self.workflow.path.resolve()),
            "template_hash": load_workflow(self.workflow.path).template_hash,
            "bench_template_hash": self.workflow.template_hash,  # with the outcome hook and the overrides
            "agentflow_version": agentflow.__version__,
            "task_file": str(self.task_set.path.resolve()),
            "task_ids": [task.id for task in tasks],
            "epochs": epochs,
            "seed": seed,
            "seeds": {
                f"{task.id}#{epoch}": pair_seed(seed, task.id, epoch) for task in tasks for epoch in range(epochs)
            },
            "model": model,
            "models": {
                name: {**config.model_dump(mode="json", exclude_defaults=True), "model": model or config.model}
                for name, config in workflow.models.items()
            },
            "sandbox": self._backend(tasks, options),
            "concurrency": options.concurrency or spec.concurrency,
            "retry_errored": spec.retry_errored if options.retry_errored is None else options.retry_errored,
            "outcome": spec.outcome.model_dump(mode="json"),
            "prices": {name: price.model_dump() for name, price in spec.prices.items()},
            "checkpoints": str(self.loaded.resolve(spec.checkpoints).resolve()) if spec.checkpoints else None,
            "oracle": self.oracle,
            "routing": options.routing,
            "rollouts": {"k": options.rollouts, "fork_at": options.fork_at} if options.rollouts > 0 else None,
        }

    def _backend(self, tasks: Sequence[Task], options: BenchOptions) -> str:
        """The sandbox backend of the runs: docker for tasks with their own image, else as chosen."""
        chosen = options.sandbox or self.loaded.spec.sandbox.backend
        if any(task.environment is not None for task in tasks):
            if chosen not in (None, "docker"):
                raise ConfigError(
                    f"the tasks of {self.task_set.path} bring their own images: they run in docker, not {chosen!r}",
                    fix="drop --sandbox (or `sandbox.backend`) for a benchmark of task directories",
                )
            return "docker"
        return chosen or self.workflow.spec.sandbox.backend

    def _keep_solvable_tasks(self) -> None:
        """Under ``oracle``: the tasks without a reference solution become problems (reported, not run)."""
        if not any(task.environment is not None for task in self.task_set.tasks):
            raise ConfigError(
                f"--oracle runs the tasks' reference solutions, and the tasks of {self.task_set.path} have none",
                fix="--oracle works on task directories (`tasks: {source: harbor, ...}`) with solution/solve.sh",
            )
        kept: list[Task] = []
        for task in self.task_set.tasks:
            if task.environment is not None and task.environment.solution is not None:
                kept.append(task)
            else:
                where = str(task.environment.context.parent) if task.environment is not None else task.id
                self.task_set.problems.append(
                    TaskProblem(task.line, "no solution/solve.sh: --oracle cannot run it", where)
                )
        self.task_set.tasks = kept

    def _check_resumable(self) -> None:
        recorded = self.config.get("bench_template_hash")
        if recorded != self.workflow.template_hash:
            raise ConfigError(
                f"the benchmark or its workflow changed since bench run {self.info.bench_run_id} started (template "
                f"hash {str(recorded)[:12]} -> {self.workflow.template_hash[:12]}): its runs would not be comparable",
                fix="restore the files the bench run started with, or start a new bench run",
            )

    def _pairs(self) -> list[Pair]:
        tasks = {task.id: task for task in self.task_set.tasks}
        missing = [task_id for task_id in self.config["task_ids"] if task_id not in tasks]
        if missing:
            raise ConfigError(
                f"task {missing[0]!r} of bench run {self.info.bench_run_id} is no longer in {self.task_set.path}"
            )
        seed = int(self.config["seed"])
        return [
            Pair(tasks[task_id], epoch, pair_seed(seed, task_id, epoch))
            for task_id in self.config["task_ids"]
            for epoch in range(int(self.config["epochs"]))
        ]

    # -- running ------------------------------------------------------------------------------------------------

    async def run(self) -> BenchRunOutcome:
        """Run every pair that has no finished attempt (retrying errored ones); return the bench run's state.

        A cancellation (Ctrl-C) stops the runs in flight (each recorded ``cancelled``) and returns with
        ``cancelled`` set: the bench run can be resumed.
        """
        attempts = _latest_attempts(self.store.list_bench_items(self.info.bench_run_id))
        todo: list[tuple[Pair, int, int]] = []  # pair, next attempt number, errored attempts so far
        skipped = 0
        progress = BenchProgress(total=len(self.pairs))
        for pair in self.pairs:
            previous = attempts.get((pair.task.id, pair.epoch), [])
            previous = [self._settled(item) for item in previous]
            errored = sum(item.status == "errored" for item in previous)
            last = previous[-1] if previous else None
            if last is not None and last.status in FINISHED and (last.status != "errored" or errored > self._retries):
                skipped += 1
                progress.count(last)  # a resumed run's pass rate is the bench run's, not this invocation's
                continue
            todo.append((pair, len(previous) + 1, errored))
        progress.resumed = skipped
        semaphore = asyncio.Semaphore(int(self.config["concurrency"]))
        cancelled = False
        rollout_problems: list[str] = []

        waiting = len(todo)  # pairs not yet started
        running = 0

        async def one(pair: Pair, attempt: int, errored: int) -> None:
            nonlocal waiting, running
            async with semaphore:
                waiting -= 1
                running += 1
                try:
                    rollout_problems.extend(await self._settle_pair(pair, attempt, errored, progress))
                finally:
                    running -= 1
                    if waiting == 0 and self._pool is not None:
                        self._pool.shrink(running)  # the last runs are in flight: nobody else needs a sandbox

        try:
            if todo:
                await self.executor.start(self)
            await asyncio.gather(*(one(pair, attempt, errored) for pair, attempt, errored in todo))
        except asyncio.CancelledError:
            cancelled = True
        finally:
            try:
                await self.executor.close()
            finally:
                await self.close_pool()
        return BenchRunOutcome(
            info=self.info,
            items=self.store.list_bench_items(self.info.bench_run_id),
            task_problems=self.task_set.problems,
            ran=len(todo),
            skipped=skipped,
            cancelled=cancelled,
            rollout_problems=rollout_problems,
        )

    async def _settle_pair(self, pair: Pair, attempt: int, errored: int, progress: BenchProgress) -> list[str]:
        """Attempt a pair until it finished (or its errored attempts ran out) and note how it went; return the
        problems of its rollouts, if asked for."""
        lost = 0
        while True:
            result = await self.executor.attempt(self, pair, attempt)
            item = result.item
            progress.tokens += result.tokens
            if result.cost is not None:
                progress.cost = (progress.cost or 0.0) + result.cost
            if result.abandoned and lost < LOST_WORKER_RETRIES:
                lost += 1  # its worker died: kept as `interrupted`, never counted, and run again
            elif item.status != "errored" or errored >= self._retries:
                break
            else:
                errored += 1
            attempt += 1
            progress.retried += 1
        progress.count(item)
        if self.on_progress is not None:
            self.on_progress(progress)
        return await self._fork_rollouts(pair, item)

    async def _fork_rollouts(self, pair: Pair, item: BenchItem) -> list[str]:
        """The rollout groups of a pair's counted attempt (``--rollouts``; see ``bench._rollouts``), if asked for;
        returns the problems met."""
        rollouts = self.config.get("rollouts")
        if not rollouts or item.status not in FINISHED or item.status == "errored":
            return []
        if pair.task.environment is not None:
            return [
                f"{pair.task.id}#{pair.epoch}: not forked: rollouts of tasks with their own environment are not "
                "supported yet"
            ]
        return await fork_pair(
            self.store,
            self.info.bench_run_id,
            item,
            self._compiled_for(pair.task),
            k=int(rollouts["k"]),
            fork_at=str(rollouts["fork_at"]),
            concurrency=int(self.config["concurrency"]),
        )

    def recorded_path(self, path: str) -> str:
        """A path as runs record it: the driver's path of a file a worker has under :attr:`shipped_root`."""
        if self.shipped_root is not None and Path(path).is_relative_to(self.shipped_root):
            return "/" + str(Path(path).relative_to(self.shipped_root))
        return path

    async def close_pool(self) -> None:
        """Close the warm sandbox pool (its sandboxes stop); a later attempt starts a new one."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def _retries(self) -> int:
        return int(self.config["retry_errored"])

    def _settled(self, item: BenchItem) -> BenchItem:
        """An attempt as it really ended: one left ``running`` by a dead bench process is read from its run."""
        if item.status != "running":
            return item
        # the trace says how the run ended (its run_finished), whatever the bench process managed to record
        try:
            trace = self.store.load_trace(item.run_id)
        except TraceError:  # a distributed attempt whose run never reached this store (its worker or driver died)
            settled = replace(item, status="interrupted", finished_at=_utc_now())
            self.store.finish_bench_item(settled)
            return settled
        status = trace.summary().status
        if status in FINISHED:
            outcome = _outcome_of(trace.events, self.outcome_hook) if status != "errored" else None
            settled = replace(item, status=status, outcome=outcome)
        else:
            settled = replace(item, status="interrupted")
        settled = replace(settled, finished_at=_utc_now())
        self.store.finish_bench_item(settled)
        return settled

    async def run_attempt(
        self, pair: Pair, attempt: int, *, run_id: str | None = None, record_item: bool = True
    ) -> tuple[BenchItem, BenchPlan]:
        """Run one attempt at a pair here; return how it ended and its plan (the tokens and cost it noted).

        Args:
            run_id: the run's id (default: a new one).
            record_item: record the attempt in the store's bench tables as it starts and ends (False: the caller
                does, e.g. the driver of a distributed executor).
        """
        plan = BenchPlan(self, pair, attempt, run_id=run_id, record_item=record_item)
        status = "cancelled"
        compiled = self._compiled_for(pair.task)
        compiled.bind_routers(None, self.routing)
        plan.start_turn = await self._start_ramp.enter()
        try:
            result: RunResult = await run_workflow(
                compiled,
                inputs=await self._inputs(pair.task),
                model=self.config.get("model"),
                sandbox=self.config.get("sandbox"),
                store=self.store,
                seed=pair.seed,
                plan=plan,
            )
            status = result.status if plan.outage is None else "errored"
        except (SandboxError, OSError):
            if plan.item is None:  # nothing of the run was recorded: not an outage of this attempt
                raise
            status = "errored"  # its sandbox could not start (an image that does not build): the run is errored
        finally:
            if plan.start_turn is not None:
                plan.start_turn.end()  # a run that ended (or failed to start) before any external call
            if plan.item is not None:
                outcome = plan.outcome if status in FINISHED and status != "errored" else None
                finished = replace(plan.item, status=status, outcome=outcome, finished_at=_utc_now())
                if record_item:
                    self.store.finish_bench_item(finished)
                plan.item = finished
        assert plan.item is not None
        return plan.item, plan

    def _compiled_for(self, task: Task) -> CompiledWorkflow:
        """The workflow as a task runs it: a task with its own system gives the agent its ``agent_timeout_s`` as
        the run's ``timeout_s`` (when the workflow's own is not shorter); compiled once per distinct timeout."""
        if task.environment is None:
            return self.compiled
        limits = self.workflow.spec.limits
        timeout = min(limits.timeout_s or math.inf, task.environment.agent_timeout_s)
        if timeout == limits.timeout_s:
            return self.compiled
        compiled = self._compiled_by_timeout.get(timeout)
        if compiled is None:
            loaded = self.workflow
            spec = loaded.spec.model_copy(update={"limits": limits.model_copy(update={"timeout_s": timeout})})
            variant = LoadedWorkflow(
                spec, loaded.path, loaded.value_locations, loaded.key_locations, loaded.inline_scalars
            )
            compiled = self._compiled_by_timeout[timeout] = compile_workflow(variant)
        return compiled

    async def _inputs(self, task: Task) -> dict[str, Any]:
        """The run's inputs: the benchmark's mapping of the task's fields, or the oracle's (where, how long)."""
        if not self.oracle:
            return task_inputs(self.loaded.spec.inputs, task)
        assert task.environment is not None  # (oracle keeps only tasks with a solution)
        try:
            workdir = (await self.images.prepare(task.environment)).workdir
        except SandboxError:
            workdir = "/"  # the run errors opening its sandbox, with the build's error
        return {"task_workdir": workdir, "solve_timeout_s": task.environment.agent_timeout_s}

    async def task_sandbox(self, environment: TaskEnvironment, prepared: PreparedEnvironment, run_id: str) -> Sandbox:
        """A fresh sandbox of a task's own image for one run (closed by the run: never pooled, see the module)."""
        spec = self.compiled.loaded.spec
        labels = {"agentflow.run_id": run_id, "agentflow.bench_run_id": self.info.bench_run_id}
        async with self._task_sandbox_starts:
            return await open_task_sandbox(environment, prepared, spec.sandbox.limits, labels)

    async def warm_pool(self) -> None:
        """Start the benchmark's warm pool and wait for its first sandbox (or for its starts to fail: the runs then
        meet the error)."""
        await self._open_pool()
        assert self._pool is not None
        await self._pool.wait_ready()

    async def sandbox(self) -> Sandbox:
        """A sandbox for one run: from the benchmark's warm pool (created on first use, ramped up two at a time)."""
        await self._open_pool()
        assert self._pool is not None
        return await self._pool.acquire()

    async def _open_pool(self) -> None:
        async with self._pool_lock:
            if self._pool is None:
                spec = self.compiled.loaded.spec
                backend = str(self.config.get("sandbox") or spec.sandbox.backend)
                labels = {"agentflow.workflow": spec.name, "agentflow.bench_run_id": self.info.bench_run_id}

                async def fresh() -> Sandbox:
                    return await create_sandbox(
                        backend, limits=spec.sandbox.limits, image=spec.sandbox.image, labels=labels
                    )

                size = min(int(self.config["concurrency"]), len(self.pairs))
                self._pool = SandboxPool(fresh, size=size, max_size=size, acquire_timeout=3600, start_concurrency=2)
                await self._pool.start(wait=False)


def _with_benchmark(loaded: LoadedWorkflow, bench: LoadedBench) -> LoadedWorkflow:
    """The workflow as the benchmark runs it: its outcome hook scoring every run, its limits and sandbox over the
    workflow's."""
    spec, workflow = bench.spec, loaded.spec
    outcome = RewardSpec(
        hook=bench.outcome_hook, on="run", options=spec.outcome.options, timeout_s=spec.outcome.timeout_s
    )
    rewards = list(workflow.rewards)
    if not any(r.hook == outcome.hook and r.on == "run" and r.options == outcome.options for r in rewards):
        rewards.append(outcome)
    limits = workflow.limits
    if spec.limits is not None:
        limits = limits.model_copy(update=spec.limits.model_dump(exclude_none=True))
    sandbox = workflow.sandbox
    if spec.sandbox.backend is not None or spec.sandbox.image is not None:
        sandbox = sandbox.model_copy(
            update={key: value for key, value in spec.sandbox.model_dump().items() if value is not None}
        )
    changed = workflow.model_copy(update={"rewards": rewards, "limits": limits, "sandbox": sandbox})
    return LoadedWorkflow(changed, loaded.path, loaded.value_locations, loaded.key_locations, loaded.inline_scalars)


def _latest_attempts(items: Sequence[BenchItem]) -> dict[tuple[str, int], list[BenchItem]]:
    by_pair: dict[tuple[str, int], list[BenchItem]] = {}
    for item in sorted(items, key=lambda item: item.attempt):
        by_pair.setdefault((item.task_id, item.epoch), []).append(item)
    return by_pair


def _is_outcome(reward: RewardData, hook: str) -> bool:
    """Whether a reward is the benchmark's outcome: its outcome hook's run-level reward."""
    return reward.get("on") == "run" and reward["hook"] == hook


def _value(reward: RewardData) -> float | None:
    """A reward's value (None: the hook gave no verdict, e.g. the run errored)."""
    value = reward["value"]
    return float(value) if isinstance(value, int | float) else None


def _outcome_of(events: Sequence[Event], hook: str) -> float | None:
    """The outcome of a recorded run: its outcome hook's run-level reward (None when there is none)."""
    for event in reversed(events):
        if event.type is EventType.REWARD and _is_outcome(reward := event.data_as(RewardData), hook):
            return _value(reward)
    return None


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chosen_attempts(items: Sequence[BenchItem]) -> dict[tuple[str, int], BenchItem]:
    """The one attempt of each pair that a report counts: the last that finished, else the last one.

    Errored attempts are kept only when every attempt of the pair errored (the pair then counts as errored).
    """
    chosen: dict[tuple[str, int], BenchItem] = {}
    for pair, attempts in _latest_attempts(items).items():
        finished = [item for item in attempts if item.status in FINISHED and item.status != "errored"]
        chosen[pair] = finished[-1] if finished else attempts[-1]
    return chosen
