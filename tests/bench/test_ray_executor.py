"""`--executor ray` on a real two-node local Ray cluster: the same outcomes as the local executor, traces recorded
by the driver, a worker SIGKILLed mid-task survived, Ctrl-C leaving a resumable bench run, nothing leaked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow._processes import pid_alive
from agentflow.bench import BenchRun, RayExecutor, build_report, chosen_attempts, load_bench
from agentflow.errors import SandboxError
from agentflow.rerun import replay_run
from agentflow.traces import PostgresStore, Store, TraceStore
from tests.cli.test_cli import agentflow, assert_one_line_error
from tests.support.require import require
from tests.traces.conftest import postgres_url  # noqa: F401 - the fixture of a fresh PostgreSQL schema

WORKFLOW = """
name: add
state:
  a: {type: int, default: 0}
  b: {type: int, default: 0}
  delay: {type: float, default: 0}
  expected: {type: int, default: 0}
  answer: {type: str, default: ""}
tools: [python]
start: compute
nodes:
  compute:
    kind: tool
    tool: python
    args: {code: "import time; time.sleep({delay}); print({a} + {b})"}
    output: {answer: result.stdout}
edges:
  - {from: compute, to: END}
"""

BENCH = """
name: arith
workflow: wf/add.yaml
tasks: {path: data/tasks.jsonl}
inputs: {a: "{a}", b: "{b}", delay: "{delay}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}
epochs: 2
seed: 11
concurrency: 3
"""

TASKS = [  # t3's expected answer is wrong: the workflow (which adds correctly) fails it
    '{"id": "t1", "a": 1, "b": 2, "expected": 3, "delay": 0}',
    '{"id": "t2", "a": 20, "b": 22, "expected": 42, "delay": 0}',
    '{"id": "t3", "a": 2, "b": 2, "expected": 5, "delay": 0}',
    '{"id": "t5", "a": 0, "b": 0, "expected": 0, "delay": 0}',
]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """Two small Ray nodes on this machine (one CPU each), the driver connected; shut down afterwards."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        require(False, "ray is not installed: pip install 'agentflow[ray]'")
        raise
    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**{key: value for key, value in node.items() if key != "include_dashboard"})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        _wait_until_schedulable(cpus=2)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _wait_until_schedulable(cpus: int) -> None:
    """Wait until the scheduler counts every node's CPU: a node that `wait_for_nodes` reports alive may not be in
    the scheduler's resource view yet, and the executor starts one bench worker on each node it sees."""
    import ray

    deadline = time.monotonic() + 60
    while ray.cluster_resources().get("CPU", 0) < cpus:
        assert time.monotonic() < deadline, f"the Ray cluster never showed {cpus} CPUs: {ray.cluster_resources()}"
        time.sleep(0.1)


def _bench_files(root: Path, tasks: list[str], bench: str = BENCH) -> Path:
    (root / "wf").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "wf" / "add.yaml").write_text(WORKFLOW)
    (root / "data" / "tasks.jsonl").write_text("\n".join(tasks) + "\n")
    (root / "arith.yaml").write_text(bench)
    return root / "arith.yaml"


def _outcomes(store: Store, bench_run_id: str) -> list[tuple[str, int, int | None, str, float | None]]:
    chosen = chosen_attempts(store.list_bench_items(bench_run_id)).values()
    return sorted((item.task_id, item.epoch, item.seed, item.status, item.outcome) for item in chosen)


def _leftovers(pids: set[int]) -> list[str]:
    """Folders a bench worker or its sandboxes left in the temporary folder: of these processes, or of dead ones."""
    pattern = re.compile(r"agentflow-(ray|sandbox)-(\d+)-")
    left = []
    for name in os.listdir(tempfile.gettempdir()):
        match = pattern.match(name)
        if match is None:
            continue
        pid = int(match.group(2))
        if pid in pids or (match.group(1) == "ray" and not pid_alive(pid)):
            left.append(name)
    return left


@pytest.fixture(params=["folder", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The embedded store (the workers ship their runs back), then PostgreSQL (the workers write to it)."""
    if request.param == "folder":
        yield TraceStore(tmp_path / "store")
        return
    postgres = PostgresStore(request.getfixturevalue("postgres_url"))
    try:
        yield postgres
    finally:
        postgres.close()


def test_ray_runs_give_the_local_outcomes_and_verifiable_traces(ray_cluster: Any, store: Store, tmp_path: Path) -> None:
    bench_file = _bench_files(tmp_path / "bench", TASKS)
    local_store = store  # both bench runs in one store
    local = BenchRun(load_bench(bench_file), store)
    asyncio.run(local.run())

    url = store.url if isinstance(store, PostgresStore) else None
    bench = BenchRun(load_bench(bench_file), store, executor=RayExecutor(store_url=url))
    outcome = asyncio.run(bench.run())
    assert (outcome.ran, outcome.cancelled) == (8, False)
    assert _outcomes(store, bench.info.bench_run_id) == _outcomes(local_store, local.info.bench_run_id)
    assert [o[3:] for o in _outcomes(store, bench.info.bench_run_id)].count(("succeeded", 1.0)) == 6

    # the workers shipped their runs back: the driver's store holds each as a verified hash-chained trace
    divergences: list[tuple[bool, int | None]] = []
    for item in store.list_bench_items(bench.info.bench_run_id):
        trace = store.load_trace(item.run_id)
        assert trace.ok, trace.problems
        assert trace.summary().status == "succeeded"
        assert trace.events[0].data["bench"]["task_id"] == item.task_id
        assert trace.events[0].data["seed"] == item.seed
        assert trace.events[0].data["workflow_file"] == str(bench_file.parent / "wf" / "add.yaml")  # the driver's
    # each pair's run has the events of its local run: same types, nodes, parents, rewards
    local_runs = {(i.task_id, i.epoch): i.run_id for i in local_store.list_bench_items(local.info.bench_run_id)}
    for item in store.list_bench_items(bench.info.bench_run_id):
        shipped = store.load_trace(item.run_id).events
        here = local_store.load_trace(local_runs[(item.task_id, item.epoch)]).events
        assert [(e.type, e.node, e.parent) for e in shipped] == [(e.type, e.node, e.parent) for e in here]
        rewards = [[{**e.data, "duration_s": None} for e in run if e.type == "reward"] for run in (shipped, here)]
        assert rewards[0] == rewards[1]
    # a tape replay of a shipped run diverges exactly where one of a local run does (a replay is no bench attempt)
    for run_store, run in ((store, bench), (local_store, local)):
        first = min(run_store.list_bench_items(run.info.bench_run_id), key=lambda item: (item.task_id, item.epoch))
        replayed = asyncio.run(replay_run(run_store, first.run_id, mode="tape"))
        divergences.append((replayed.identical, replayed.divergence.index if replayed.divergence else None))
    assert divergences[0] == divergences[1], divergences
    report = asyncio.run(build_report(store, bench.info.bench_run_id))
    assert report.pass_at_k == {1: 0.75, 2: 0.75}
    assert _leftovers(set()) == []


def test_a_worker_killed_mid_task_has_its_task_run_again_on_another(ray_cluster: Any, tmp_path: Path) -> None:
    slow = '{"id": "slow", "a": 4, "b": 5, "expected": 9, "delay": 6}'
    bench_file = _bench_files(tmp_path / "bench", [*TASKS[:2], slow], BENCH.replace("epochs: 2", "epochs: 1"))
    store = TraceStore(tmp_path / "ray")
    executor = RayExecutor()
    bench = BenchRun(load_bench(bench_file), store, executor=executor)
    progress: list[int] = []
    bench.on_progress = lambda state: progress.append(state.retried)
    killed: dict[int, int] = {}

    async def run_and_kill() -> None:
        running = asyncio.create_task(bench.run())
        while True:  # until only the slow task is in flight, on one worker
            await asyncio.sleep(0.2)
            items = store.list_bench_items(bench.info.bench_run_id)
            done = {item.task_id for item in items if item.status == "succeeded"}
            if done == {"t1", "t2"} and any(item.task_id == "slow" for item in items):
                break
        await asyncio.sleep(1.0)  # the slow run is well into its sandbox command
        killed.update(await executor.worker_pids())
        [busy] = [pid for pid, calls in killed.items() if calls]
        os.kill(busy, signal.SIGKILL)
        await running

    asyncio.run(run_and_kill())
    attempts = sorted(
        (item.attempt, item.status, item.outcome)
        for item in store.list_bench_items(bench.info.bench_run_id)
        if item.task_id == "slow"
    )
    assert attempts == [(1, "interrupted", None), (2, "succeeded", 1.0)]  # the abandoned attempt is kept, marked
    # ... and so is its run, with what its worker had streamed to the driver before it died, ending errored
    [abandoned] = [
        item.run_id
        for item in store.list_bench_items(bench.info.bench_run_id)
        if item.task_id == "slow" and item.status == "interrupted"
    ]
    trace = store.load_trace(abandoned)
    assert trace.ok, trace.problems
    types = [event.type.value for event in trace.events]
    assert types[:2] == ["run_started", "node_started"] and "tool_call" in types  # written before the command ran
    assert types[-2:] == ["error", "run_finished"]
    assert "bench worker" in trace.events[-2].data["message"]
    assert trace.events[-1].data["status"] == "errored"  # the infrastructure failed, not the agent
    assert progress[-1] == 1  # the retry is counted as one
    report = asyncio.run(build_report(store, bench.info.bench_run_id))
    assert (report.pairs, report.scored, report.correct, report.errored) == (3, 3, 3, 0)  # and counted once
    assert _leftovers(set(killed)) == []


def test_a_worker_killed_with_several_attempts_has_each_run_again(ray_cluster: Any, tmp_path: Path) -> None:
    tasks = [task.replace('"delay": 0', '"delay": 4') for task in (TASKS[0], TASKS[1], TASKS[3])]
    bench_file = _bench_files(tmp_path / "bench", tasks, BENCH.replace("epochs: 2", "epochs: 1"))
    store = TraceStore(tmp_path / "ray")
    executor = RayExecutor()
    bench = BenchRun(load_bench(bench_file), store, executor=executor)
    killed: dict[int, int] = {}

    async def run_and_kill() -> None:
        running = asyncio.create_task(bench.run())
        while sum(item.status == "running" for item in store.list_bench_items(bench.info.bench_run_id)) < 3:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # each attempt in its sandbox command, two of them on one worker
        killed.update(await executor.worker_pids())
        [busiest] = [pid for pid, calls in killed.items() if calls == 2]
        os.kill(busiest, signal.SIGKILL)
        await running

    asyncio.run(run_and_kill())
    attempts: dict[str, list[str]] = {}
    items = sorted(store.list_bench_items(bench.info.bench_run_id), key=lambda item: item.attempt)
    for item in items:
        attempts.setdefault(item.task_id, []).append(item.status)
    assert sorted(attempts.values()) == [["interrupted", "succeeded"], ["interrupted", "succeeded"], ["succeeded"]]
    for item in items:  # each abandoned run ends errored after what its worker had shipped; every run verifies
        trace = store.load_trace(item.run_id)
        assert trace.ok, trace.problems
        ended = trace.events[-1].data["status"]
        assert ended == ("errored" if item.status == "interrupted" else "succeeded")
    assert [o[3:] for o in _outcomes(store, bench.info.bench_run_id)] == [("succeeded", 1.0)] * 3
    assert _leftovers(set(killed)) == []


def test_a_cancelled_driver_leaves_a_resumable_bench_run(ray_cluster: Any, tmp_path: Path) -> None:
    tasks = [task.replace('"delay": 0', '"delay": 3') for task in TASKS]
    bench_file = _bench_files(tmp_path / "bench", tasks, BENCH.replace("epochs: 2", "epochs: 1"))
    store = TraceStore(tmp_path / "ray")
    bench = BenchRun(load_bench(bench_file), store, executor=RayExecutor())

    async def cancel_midway() -> bool:
        running = asyncio.create_task(bench.run())
        while not any(item.status == "running" for item in store.list_bench_items(bench.info.bench_run_id)):
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        running.cancel()  # what Ctrl-C does to the CLI's asyncio.run
        try:
            return (await running).cancelled
        except asyncio.CancelledError:
            return True

    assert asyncio.run(cancel_midway())
    statuses = {item.status for item in store.list_bench_items(bench.info.bench_run_id)}
    assert "running" not in statuses
    assert "cancelled" in statuses
    resumed = BenchRun(load_bench(bench_file), store, resume=bench.info.bench_run_id, executor=RayExecutor())
    outcome = asyncio.run(resumed.run())
    assert not outcome.cancelled
    assert [o[3:] for o in _outcomes(store, bench.info.bench_run_id)] == [
        ("succeeded", 1.0),
        ("succeeded", 1.0),
        ("succeeded", 0.0),
        ("succeeded", 1.0),
    ]
    assert _leftovers(set()) == []


def test_the_cli_runs_a_benchmark_on_the_cluster_and_show_verifies_its_runs(ray_cluster: Any, tmp_path: Path) -> None:
    bench_file = _bench_files(tmp_path / "bench", TASKS)
    store = str(tmp_path / "store")
    address = ray_cluster.address
    result = agentflow(
        "bench", "run", str(bench_file), "--executor", "ray", "--ray-address", address, "--store", store, "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["pairs"], report["finished"], report["errored"]) == (8, 8, 0)
    assert report["pass_at_k"] == {"pass@1": pytest.approx(0.75), "pass@2": pytest.approx(0.75)}
    for item in TraceStore(tmp_path / "store").list_bench_items(report["bench_run_id"]):
        shown = json.loads(agentflow("show", item.run_id, "--store", store, "--json", cwd=tmp_path).stdout)
        assert shown["problems"] == []
        assert [e["type"] for e in shown["events"]][-1] == "run_finished"

    wrong = agentflow("bench", "run", str(bench_file), "--ray-address", address, "--store", store, cwd=tmp_path)
    assert "--ray-address is for --executor ray" in assert_one_line_error(wrong, 2)


def test_a_node_that_leaves_has_its_tasks_run_again_on_the_others(ray_cluster: Any, tmp_path: Path) -> None:
    extra = ray_cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    ray_cluster.wait_for_nodes()
    _wait_until_schedulable(cpus=3)
    tasks = [task.replace('"delay": 0', '"delay": 4') for task in TASKS[:3]]
    bench_file = _bench_files(tmp_path / "bench", tasks, BENCH.replace("epochs: 2", "epochs: 1"))
    store = TraceStore(tmp_path / "ray")
    executor = RayExecutor()
    bench = BenchRun(load_bench(bench_file), store, executor=executor)
    pids: set[int] = set()

    async def run_and_remove_the_node() -> None:
        await executor.start(bench)
        pids.update(await executor.worker_pids())
        placed = await executor.worker_nodes()
        assert extra.node_id in placed and len(set(placed)) == 3  # one worker per node, the new one's too
        running = asyncio.create_task(bench.run())
        while sum(item.status == "running" for item in store.list_bench_items(bench.info.bench_run_id)) < 3:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # one attempt per node, each in its sandbox command
        assert sorted((await executor.worker_pids()).values()) == [1, 1, 1]  # no worker waits for the others
        ray_cluster.remove_node(extra, allow_graceful=False)
        await running

    asyncio.run(run_and_remove_the_node())
    attempts: dict[str, list[str]] = {}
    for item in sorted(store.list_bench_items(bench.info.bench_run_id), key=lambda item: item.attempt):
        attempts.setdefault(item.task_id, []).append(item.status)
    assert sorted(attempts.values()) == [["interrupted", "succeeded"], ["succeeded"], ["succeeded"]]
    assert [o[3] for o in _outcomes(store, bench.info.bench_run_id)] == ["succeeded"] * 3
    # what the lost node's worker left in its temporary folder goes with the next bench worker there (here: the
    # same machine), as a killed run's sandbox workdirs go with the next sandbox

    async def start_and_stop() -> None:
        again = RayExecutor()
        await again.start(BenchRun(load_bench(bench_file), store, executor=again))
        await again.close()

    asyncio.run(start_and_stop())
    assert _leftovers(pids) == []


def test_a_worker_whose_node_left_is_never_picked_again_and_none_left_is_an_outage() -> None:
    # (no cluster needed: the choice of a worker is the executor's own bookkeeping)
    executor = RayExecutor()
    executor._workers = [object(), object(), object()]
    executor._in_flight = [3, 0, 1]
    executor._gone = {1}  # the idle worker's node left: Ray cannot restart it there
    assert executor._pick(None) == 2
    assert executor._pick(2) == 0  # the pair's last attempt died on 2: another worker, if one stays
    executor._gone = {0, 2}
    assert executor._pick(1) == 1  # the only worker left, even for the pair that died on it
    executor._gone = {0, 1, 2}
    with pytest.raises(SandboxError, match="left the Ray cluster"):
        executor._pick(None)
