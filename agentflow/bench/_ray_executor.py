"""``agentflow bench run --executor ray``: a benchmark's attempts on a Ray cluster (the ``ray`` extra).

The driver (the ``bench run`` process) decides what runs, as the local executor does: which pairs and attempts,
how many at once (``concurrency`` in total), the progress display and the report. Attempts run on the cluster's
**bench workers**, one long-lived Ray actor per node, pinned to it, which keeps the benchmark loaded and a warm
sandbox pool on its node (the local or docker backend there, reset between runs) for every attempt it runs, at most
``ceil(concurrency / nodes)`` at once (the driver gives each attempt to the worker with the fewest). The attempts
the driver starts together (as many as a message of ended runs let start) go to a worker in one call, a Ray
generator that yields each run's end as it comes: one call and a share of one message per attempt, not a call and
messages of its own. Nothing assumes the driver's filesystem: the folders of the benchmark file, its workflow and
its task file are packed once and shipped to every worker through Ray's object store, and unpacked there under a
private directory at the same relative places.

Events: with a PostgreSQL store each worker writes its runs into it directly; with the embedded folder store a
worker records its runs in memory (a :class:`~agentflow.traces.RelayStore`: each event encoded and hashed as any
store does) and ships what each run wrote (every ``STREAM_INTERVAL_S`` while it runs, the rest with its end) back to
the driver, which appends the lines as they are to its store (``Recorder.append_encoded``, which checks that they
continue the run's hash chain): the driver's trace of a run is the worker's, timestamps included. The driver
records each attempt in the bench tables before it is sent out and when it comes back.

Faults: an attempt whose worker process dies (SIGKILL, its node leaves the cluster) is marked ``interrupted`` (kept,
never counted) and runs again as a new attempt on the worker with the fewest attempts in flight, preferring another
one; Ray restarts a killed worker on its node, and a worker whose node left is given up (every attempt goes to the
workers that stay). With the folder store the abandoned attempt's run keeps what its worker had
shipped (at most ``STREAM_INTERVAL_S`` behind what the worker wrote) and ends ``errored``, with an ``error`` event
saying the worker died: the infrastructure failed, not the agent. A cancelled driver (Ctrl-C) cancels the attempts
in flight on their workers (their attempts and runs are recorded ``cancelled``), then each worker closes its sandbox
pool and removes its directory: the bench run is resumable.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import shutil
import tarfile
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentflow._tempdirs import owned_tempdir, sweep_stale
from agentflow.bench._runner import AttemptResult, BenchOptions, BenchRun, Pair
from agentflow.bench._spec import load_bench
from agentflow.errors import ConfigError, MissingExtraError, SandboxError, TraceError
from agentflow.sandboxes import sandbox_backends
from agentflow.traces import (
    BenchItem,
    BenchRunInfo,
    EventType,
    PostgresStore,
    Recorder,
    RelayStore,
    Store,
)
from agentflow.traces._base import new_run_id

__all__ = ["RayExecutor"]

MAX_BUNDLE_BYTES = 256 * 1024 * 1024
"""The most a benchmark's shipped folders may hold, packed (Ray's object store carries them to every node)."""

WORKER_DIR_PREFIX = "agentflow-ray-"
"""A bench worker's private folder on its node: ``<tmp>/agentflow-ray-<pid>-<random>``."""

_SKIPPED_NAMES = frozenset({".agentflow", ".git", "__pycache__", ".venv", "node_modules"})
_SHUTDOWN_TIMEOUT_S = 60.0
STREAM_INTERVAL_S = 0.2
"""How often a bench worker sends the driver what its runs wrote since the last time (folder store)."""
COALESCE_S = 0.005
"""How long a bench worker waits, once a run of a batch has ended, for others ending with it (one message)."""

AttemptOrder = tuple[str, int, int, str]
"""An attempt as the driver sends it to a worker: task id, epoch, attempt number, run id."""
AttemptEnd = tuple[BenchItem, int, float | None] | Exception
"""How an attempt ended on a worker: its bench item, tokens and cost; or what it raised."""
RunShipment = tuple[str, bytes | None, dict[str, bytes] | None, AttemptEnd | None]
"""A run's message to the driver: its id, the lines and blobs it wrote since the last one (None with a shared
store), and how the attempt ended (None while it runs)."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray") from exc
    return ray


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shipped_roots(bench: BenchRun) -> list[Path]:
    """The folders a worker needs: those of the benchmark file, its workflow and its task file (none inside
    another)."""
    folders = {
        bench.loaded.path.resolve().parent,
        bench.workflow.path.resolve().parent,
        bench.task_set.path.resolve().parent,
    }
    return sorted(folder for folder in folders if not any(other in folder.parents for other in folders))


def pack(roots: list[Path]) -> bytes:
    """A gzipped tar of ``roots`` under their absolute paths (without stores, VCS and cache folders).

    Raises:
        ConfigError: the packed folders are over :data:`MAX_BUNDLE_BYTES`.
    """
    buffer = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if Path(info.name).name in _SKIPPED_NAMES else info

    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for root in roots:
            archive.add(root, arcname=str(root).lstrip("/"), filter=keep)
    if buffer.tell() > MAX_BUNDLE_BYTES:
        raise ConfigError(
            f"the folders shipped to the Ray workers ({', '.join(map(str, roots))}) hold "
            f"{buffer.tell() // 2**20} MiB packed, over {MAX_BUNDLE_BYTES // 2**20} MiB",
            fix="keep the benchmark, its workflow and its task file in folders without large unrelated files",
        )
    return buffer.getvalue()


class BenchWorker:
    """One node's bench worker (a Ray actor): the benchmark unpacked and loaded once, a warm sandbox pool."""

    def __init__(
        self, bundle: bytes, bench_file: str, task_file: str, info: BenchRunInfo, store_url: str | None
    ) -> None:
        self._root = owned_tempdir(WORKER_DIR_PREFIX)
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as archive:
            archive.extractall(self._root / "files", filter="data")
        self._bench_file = self._here(bench_file)
        self._task_file = self._here(task_file)
        self._info = info
        self._store_url = store_url
        self._bench: BenchRun | None = None
        self._pairs: dict[tuple[str, int], Pair] = {}
        self._running: dict[str, asyncio.Task[AttemptEnd]] = {}
        sweep_stale(WORKER_DIR_PREFIX)  # a killed worker's folder on this node (its sandboxes go in _loaded)
        self._loaded()

    def _here(self, path: str) -> Path:
        return self._root / "files" / path.lstrip("/")

    def pid(self) -> tuple[int, str]:
        """The worker's process id and its node's id (for diagnostics and tests)."""
        return os.getpid(), str(_ray().get_runtime_context().get_node_id())

    def _loaded(self) -> BenchRun:
        if self._bench is None:
            # without a shared store, runs are kept in memory and their lines shipped to the driver's store
            store: Store = PostgresStore(self._store_url) if self._store_url else RelayStore()
            options = BenchOptions(task_file=str(self._task_file))
            self._bench = BenchRun(
                load_bench(self._bench_file, check_tasks=False), store, options=options, attach=self._info
            )
            self._bench.shipped_root = self._root / "files"
            self._pairs = {(pair.task.id, pair.epoch): pair for pair in self._bench.pairs}
            # what a worker killed on this node left behind (its sandboxes' workdirs or containers) goes now
            backend = str(self._bench.config.get("sandbox") or self._bench.compiled.loaded.spec.sandbox.backend)
            sandbox_backends.get(backend).cleanup()
        return self._bench

    async def run_batch(self, attempts: list[AttemptOrder]) -> AsyncIterator[list[RunShipment]]:
        """Run attempts together (a Ray generator), yielding their shipments (see :data:`RunShipment`): a run's
        last one as soon as it ends, with any other run ending in the next ``COALESCE_S``; with a store of its own,
        every ``STREAM_INTERVAL_S`` what each run still going wrote since its last one."""
        bench = self._loaded()
        relay = bench.store if isinstance(bench.store, RelayStore) else None
        running = {
            asyncio.create_task(self._attempt(bench, task_id, epoch, attempt, run_id)): run_id
            for task_id, epoch, attempt, run_id in attempts
        }
        self._running.update({run_id: task for task, run_id in running.items()})
        loop = asyncio.get_running_loop()
        pending = set(running)
        shipped_at = loop.time()
        try:
            while pending:
                wait = max(0.0, shipped_at + STREAM_INTERVAL_S - loop.time())
                done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if done and pending and COALESCE_S:
                    await asyncio.sleep(COALESCE_S)
                    also = {task for task in pending if task.done()}
                    done, pending = done | also, pending - also
                shipments: list[RunShipment] = []
                for task in done:
                    run_id = running[task]
                    if not task.cancelled():  # (a cancelled run's driver has stopped listening)
                        shipments.append((run_id, *self._taken(relay, run_id), task.result()))
                    self._running.pop(run_id, None)
                    if relay is not None:  # the run is the driver's now (or abandoned): forget it here
                        relay.forget(run_id)
                if relay is not None and loop.time() >= shipped_at + STREAM_INTERVAL_S:
                    shipped_at = loop.time()
                    for task in pending:
                        lines, blobs = self._taken(relay, running[task])
                        if lines:
                            shipments.append((running[task], lines, blobs, None))
                if shipments:
                    yield shipments
        finally:
            for task in pending:  # the driver cancelled the call
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for run_id in running.values():
                self._running.pop(run_id, None)
                if relay is not None:
                    relay.forget(run_id)

    async def _attempt(self, bench: BenchRun, task_id: str, epoch: int, attempt: int, run_id: str) -> AttemptEnd:
        pair = self._pairs[(task_id, epoch)]
        try:
            item, plan = await bench.run_attempt(pair, attempt, run_id=run_id, record_item=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an agentflow bug or a broken store: the driver raises it
            return exc
        return item, plan.tokens, plan.cost

    async def cancel_runs(self, run_ids: list[str]) -> None:
        """Cancel attempts of the batches running here (each run records its cancellation; the driver has
        stopped listening to them)."""
        for run_id in run_ids:
            task = self._running.get(run_id)
            if task is not None:
                task.cancel()

    @staticmethod
    def _taken(relay: RelayStore | None, run_id: str) -> tuple[bytes | None, dict[str, bytes] | None]:
        """What the run wrote since the last take (None with a shared store, which has it already)."""
        if relay is None:
            return None, None
        try:
            return relay.take(run_id)
        except TraceError:  # not started yet
            return b"", {}

    async def shutdown(self) -> None:
        """Close the sandbox pool and the store, remove the worker's directory."""
        try:
            if self._bench is not None:
                await self._bench.close_pool()
                self._bench.store.close()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


class ShippedRun:
    """The driver's recording of a run a worker records elsewhere: its lines appended as they arrive."""

    def __init__(self, store: Store, workflow: str, run_id: str) -> None:
        self.store = store
        self.workflow = workflow
        self.run_id = run_id
        self._recorder: Recorder | None = None

    def record(self, lines: bytes | None, blobs: dict[str, bytes] | None) -> None:
        """Append the next lines of the run (and the blobs they spilled), as the worker's recorder wrote them."""
        if not lines:
            return
        if self._recorder is None:
            self._recorder = self.store.new_run(workflow=self.workflow, run_id=self.run_id)
        self._recorder.append_encoded(lines, blobs)

    def abandon(self, status: str, reason: str) -> None:
        """End a run whose worker stopped before it did (kept with what arrived, and why it ends here)."""
        if self._recorder is None or self._recorder.finished:
            return
        self._recorder.emit(EventType.ERROR, data={"kind": "BenchWorkerLost", "message": reason})
        self._recorder.finish(status, error=reason)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()


class _WorkerLost(Exception):
    """The bench worker running an attempt died (its process was killed, its node left the cluster)."""


@dataclass
class _Sent:
    """An attempt sent to a bench worker: what was sent, the driver's recording of its run, and its end."""

    order: AttemptOrder
    shipped: ShippedRun
    ended: asyncio.Future[AttemptEnd]


async def _quietly(reference: Any) -> None:
    """Wait for a call whose failure changes nothing (a cancellation sent to a worker that died meanwhile)."""
    with contextlib.suppress(Exception):
        await reference


def _refuse_qtables_without_a_shared_store(bench: BenchRun) -> None:
    """Q-table routers read (and learn) their table in the run's store; each worker's folder store is its own, so
    a worker would route by an empty table and its learning would be lost.

    Raises:
        ConfigError: the workflow (or a subgraph) has a ``policy: qtable`` router.
    """
    pending, routers = [bench.compiled], []
    while pending:
        compiled = pending.pop()
        pending.extend(compiled.children.values())
        routers += [compiled.prefix + name for name in compiled.routers]
    if routers:
        raise ConfigError(
            f"Q-table router {', '.join(sorted(routers))} needs the store its table is in, and the Ray workers of a "
            "folder store each record into their own",
            fix="give the bench run a shared PostgreSQL --store (postgresql://...), or run it with --executor local",
        )


class RayExecutor:
    """Runs a bench run's attempts on a Ray cluster, one bench worker per node (see the module).

    Args:
        address: the cluster (``auto``: the one ``ray start`` runs on this machine; an ``ip:port`` or
            ``ray://`` address); None starts a local Ray instance for this process.
        store_url: the PostgreSQL URL the workers write to; None: they ship their runs back to the driver.
    """

    def __init__(self, address: str | None = None, *, store_url: str | None = None) -> None:
        self.address = address
        self.store_url = store_url
        self._workers: list[Any] = []
        self._in_flight: list[int] = []  # attempts per worker
        self._queued: list[list[_Sent]] = []  # per worker: attempts to send in its next batch
        self._cancelling: list[list[str]] = []  # per worker: runs to cancel in its next call
        self._receiving: set[asyncio.Task[None]] = set()  # one per batch in flight
        self._cancellations: set[asyncio.Task[None]] = set()  # on their way to the workers
        self._lost_on: dict[tuple[str, int], int] = {}  # pair -> the worker that died under its last attempt
        self._nodes: list[str] = []  # the node each worker is pinned to
        self._gone: set[int] = set()  # workers whose node left the cluster: never sent an attempt again
        self._started = False
        self._start_lock = asyncio.Lock()
        self._we_initialised = False
        self._bundle: Any = None

    async def start(self, bench: BenchRun) -> None:
        """Start the bench workers for ``bench`` and wait until each is ready (the first attempt does it
        otherwise)."""
        await self._start(bench)
        ready = await asyncio.gather(*(worker.pid.remote() for worker in self._workers), return_exceptions=True)
        for index, answer in enumerate(ready):
            if isinstance(answer, Exception):
                if self._nodes[index] in self._alive_nodes():
                    raise answer  # the worker itself failed to start (its constructor raised)
                self._gone.add(index)  # its node left before the worker started
        if len(self._gone) == len(self._workers):
            raise SandboxError("every node the bench workers were started on left the Ray cluster")

    async def _start(self, bench: BenchRun) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self.store_url is None:
                _refuse_qtables_without_a_shared_store(bench)
            ray = _ray()
            if not ray.is_initialized():
                ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
                self._we_initialised = True
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
            per_node = max(1, math.ceil(int(bench.config["concurrency"]) / len(nodes)))
            info = replace(bench.info, config={**bench.info.config, "concurrency": per_node})
            # held while the workers live: a restarted worker gets its constructor's arguments again
            self._bundle = bundle = ray.put(pack(shipped_roots(bench)))
            actor = ray.remote(BenchWorker)

            def worker_on(node: str) -> Any:
                # Pinned to its node, hard: a soft affinity was seen to start a worker on another node more often
                # than not, even on a quiet machine, and each try again cost a worker start (about six seconds).
                # A killed worker is restarted on its node; one whose node left cannot be, and is given up (see
                # `attempt`). No CPU claimed, since its runs wait on models and sandboxes, and its calls at once are
                # capped instead: a batch call per attempt at most, and two calls more (its pid, cancellation and
                # shutdown calls never wait behind its batches).
                strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
                options = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0, "max_concurrency": per_node + 2}
                return actor.options(scheduling_strategy=strategy, **options).remote(
                    bundle, str(bench.loaded.path.resolve()), str(bench.task_set.path.resolve()), info, self.store_url
                )

            self._nodes = nodes
            self._workers = [worker_on(node) for node in nodes]
            self._in_flight = [0] * len(self._workers)
            self._queued = [[] for _ in self._workers]
            self._cancelling = [[] for _ in self._workers]
            self._started = True

    async def worker_pids(self) -> dict[int, int]:
        """Each bench worker's process id and how many calls it has in flight (for diagnostics and tests)."""
        pids = await asyncio.gather(*(worker.pid.remote() for worker in self._workers))
        return {int(pid): self._in_flight[index] for index, (pid, _) in enumerate(pids)}

    async def worker_nodes(self) -> list[str]:
        """The node id of each bench worker."""
        return [node for _, node in await asyncio.gather(*(worker.pid.remote() for worker in self._workers))]

    @staticmethod
    def _alive_nodes() -> set[str]:
        return {str(node["NodeID"]) for node in _ray().nodes() if node.get("Alive")}

    def _pick(self, avoid: int | None) -> int:
        """The worker with the fewest attempts in flight, not ``avoid`` (the one a pair's last attempt died on)
        when there is another, never one whose node left.

        Raises:
            SandboxError: every worker's node left the cluster (the bench run can be resumed on another one).
        """
        staying = [index for index in range(len(self._workers)) if index not in self._gone]
        if not staying:
            raise SandboxError("every node the bench workers ran on left the Ray cluster")
        candidates = [index for index in staying if index != avoid] or staying
        return min(candidates, key=lambda index: self._in_flight[index])

    async def attempt(self, bench: BenchRun, pair: Pair, attempt: int) -> AttemptResult:
        await self._start(bench)
        item = BenchItem(
            bench_run_id=bench.info.bench_run_id,
            task_id=pair.task.id,
            epoch=pair.epoch,
            attempt=attempt,
            run_id=new_run_id(),
            seed=pair.seed,
            status="running",
            outcome=None,
            started_at=_utc_now(),
        )
        bench.store.start_bench_item(item)  # before it is sent out: a killed driver loses no attempt
        index = self._pick(self._lost_on.get((pair.task.id, pair.epoch)))
        self._in_flight[index] += 1
        sent = _Sent(
            (pair.task.id, pair.epoch, attempt, item.run_id),
            ShippedRun(bench.store, bench.workflow.spec.name, item.run_id),
            asyncio.get_running_loop().create_future(),
        )
        self._send(index, sent)
        try:
            end = await sent.ended
        except asyncio.CancelledError:
            self._cancel(index, item.run_id)
            sent.shipped.abandon("cancelled", "the bench run was cancelled while this attempt ran")
            bench.store.finish_bench_item(replace(item, status="cancelled", finished_at=_utc_now()))
            raise
        except _WorkerLost as lost:
            sent.shipped.abandon("errored", f"the bench worker running this attempt died ({lost})")
            abandoned = replace(item, status="interrupted", finished_at=_utc_now())
            bench.store.finish_bench_item(abandoned)  # kept, marked, never counted: the bench run tries again
            self._lost_on[(pair.task.id, pair.epoch)] = index  # its retry goes to another worker
            if self._nodes[index] not in self._alive_nodes():
                self._gone.add(index)  # its node left: Ray cannot restart it there, and nothing is sent to it again
            return AttemptResult(abandoned)
        finally:
            self._in_flight[index] -= 1
            sent.shipped.close()
        if isinstance(end, Exception):
            raise end
        finished, tokens, cost = end
        bench.store.finish_bench_item(finished)
        return AttemptResult(finished, tokens, cost)

    def _send(self, index: int, sent: _Sent) -> None:
        """Queue an attempt for a worker; the attempts queued by the time the event loop gets to it go in one call
        (attempts start in bursts: each message that ends some lets as many others start)."""
        queue = self._queued[index]
        queue.append(sent)
        if len(queue) == 1:
            asyncio.get_running_loop().call_soon(self._send_queued, index)

    def _send_queued(self, index: int) -> None:
        batch, self._queued[index] = self._queued[index], []
        try:
            calls = self._workers[index].run_batch.options(num_returns="streaming")
            stream = calls.remote([sent.order for sent in batch])
        except Exception as exc:  # noqa: BLE001 - (called by the event loop) each attempt of the batch raises it
            for sent in batch:
                if not sent.ended.done():
                    sent.ended.set_exception(exc)
            return
        self._background(self._receiving, self._receive(stream, {sent.order[3]: sent for sent in batch}))

    async def _receive(self, stream: Any, batch: dict[str, _Sent]) -> None:
        """Record what a batch's runs ship as it arrives, and end each attempt with its run."""
        ray = _ray()
        died: str | None = None
        closing = False
        failure: Exception = TraceError("the bench worker ended a batch before all of its attempts")
        try:
            async for reference in stream:
                shipments: list[RunShipment] = await reference
                for run_id, lines, blobs, end in shipments:
                    sent = batch[run_id]
                    if sent.ended.done():  # cancelled
                        continue
                    try:
                        sent.shipped.record(lines, blobs)
                    except TraceError as exc:  # the driver's store failed: this attempt fails with it
                        sent.ended.set_exception(exc)
                        continue
                    if end is not None:
                        sent.ended.set_result(end)
        except asyncio.CancelledError:  # the executor is closing: the attempts still waiting are cancelled
            closing = True
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            died = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - raised by each attempt still waiting (below)
            failure = exc
        finally:
            for sent in batch.values():
                if sent.ended.done():
                    continue
                if closing:
                    sent.ended.cancel()
                elif died is not None:
                    sent.ended.set_exception(_WorkerLost(died))
                else:
                    sent.ended.set_exception(failure)

    def _cancel(self, index: int, run_id: str) -> None:
        queue = self._cancelling[index]
        queue.append(run_id)
        if len(queue) == 1:
            asyncio.get_running_loop().call_soon(self._cancel_queued, index)

    def _cancel_queued(self, index: int) -> None:
        run_ids, self._cancelling[index] = self._cancelling[index], []
        if not run_ids:
            return
        self._background(self._cancellations, _quietly(self._workers[index].cancel_runs.remote(run_ids)))

    @staticmethod
    def _background(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close(self) -> None:
        """Let every worker close its sandbox pool and remove its directory, then stop the workers."""
        if not self._started:
            return
        ray = _ray()
        for index, cancelling in enumerate(self._cancelling):
            if cancelling:  # cancellations the event loop has not sent yet
                self._cancel_queued(index)
        for receiving in self._receiving:  # batches no attempt waits for any more
            receiving.cancel()
        if self._receiving or self._cancellations:  # (a worker restarting may answer late, or never)
            await asyncio.wait({*self._receiving, *self._cancellations}, timeout=_SHUTDOWN_TIMEOUT_S)
        closing = [worker.shutdown.remote() for worker in self._workers]
        try:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), _SHUTDOWN_TIMEOUT_S)
        finally:
            for worker in self._workers:
                ray.kill(worker, no_restart=True)
            self._workers.clear()
            self._bundle = None
            self._started = False
            if self._we_initialised:
                ray.shutdown()
