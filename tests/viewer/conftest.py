"""Stores of real recorded runs for the viewer's tests: the shipped example, a failed run, an errored one, and a
run whose model output is hostile markup."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentflow.rerun import replay_run
from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore, TraceVerification, VerificationProgress

ROOT = Path(__file__).parents[2]
XSS = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'


def record_hostile_run(store: TraceStore, workflow: str = "hostile") -> str:
    """A run recorded through the store's own API whose model answer and error are markup meant to run."""
    with store.new_run(workflow=workflow) as recorder:
        recorder.emit(EventType.RUN_STARTED, data={"workflow": workflow, "inputs": {"task": XSS}})
        started = recorder.emit(EventType.NODE_STARTED, node=XSS, data={"visit": 1, "attempt": 1})
        recorder.emit(
            EventType.MODEL_RESPONSE,
            node=XSS,
            parent=started.seq,
            data={"model": XSS, "message": {"role": "assistant", "content": XSS}, "tool_calls": []},
        )
        recorder.emit(EventType.ERROR, node=XSS, data={"message": XSS, "kind": "model"})
        recorder.finish("failed", error=XSS)
        return recorder.summary().run_id


def record_errored_run(store: TraceStore) -> str:
    """A run whose model provider stayed unreachable: the infrastructure failed, not the agent (status errored)."""
    with store.new_run(workflow="fix_failing_test") as recorder:
        recorder.emit(EventType.RUN_STARTED, data={"workflow": "fix_failing_test", "inputs": {}})
        started = recorder.emit(EventType.NODE_STARTED, node="plan", data={"visit": 1, "attempt": 1})
        outage = "the model API did not answer after 3 attempts: connection refused"
        recorder.emit(
            EventType.ERROR,
            node="plan",
            parent=started.seq,
            data={"kind": "ModelAPIError", "message": outage, "status_code": None},
        )
        recorder.finish("errored", error=outage)
        return recorder.summary().run_id


def record_long_run(store: TraceStore, visits: int) -> str:
    """A finished run of ``4 * visits + 2`` events recorded through the store's recorder: run_started at seq 0, then
    per visit of plan, code or test (in turn) node_started, tool_call, tool_result (seq ``4 * i + 3``, its output
    ``"x"``) and node_finished, and run_finished (succeeded) last."""
    with store.new_run(workflow="long") as recorder:
        recorder.hold_events()
        recorder.emit(EventType.RUN_STARTED, data={"workflow": "long", "inputs": {}})
        for visit in range(visits):
            node = ("plan", "code", "test")[visit % 3]
            started = recorder.emit(EventType.NODE_STARTED, node=node, data={"visit": visit // 3 + 1, "attempt": 1})
            call = recorder.emit(
                EventType.TOOL_CALL, node=node, parent=started.seq, data={"tool": "read_file", "args": {"p": "a"}}
            )
            recorder.emit(
                EventType.TOOL_RESULT, node=node, parent=call.seq, data={"tool": "read_file", "ok": True, "output": "x"}
            )
            recorder.emit(EventType.NODE_FINISHED, node=node, parent=started.seq, data={"visit": visit // 3 + 1})
        recorder.flush()
        recorder.finish("succeeded")
        return recorder.summary().run_id


class HeldStore(TraceStore):
    """A folder store whose traces verify past their first lines only once the test says so (``released.set()``):
    what a page shows of a long trace still being verified, without racing the thread that verifies it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.released = threading.Event()

    def verify_in_steps(self, run_id: str) -> TraceVerification:
        verification = super().verify_in_steps(run_id)
        advance = verification.advance

        def held(lines: int | None = None) -> VerificationProgress:
            if verification.progress().checked:  # the first lines, verified as the page is answered, are not held
                self.released.wait(60)
            return advance(lines)

        verification.advance = held  # type: ignore[method-assign]
        return verification


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    """Wait for ``condition()`` to be true (the background verification of a trace to end, say)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout} s")
        time.sleep(0.02)


PRICED_MODEL = "openai:priced-model"
PRICES = {PRICED_MODEL: {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}


def record_priced_run(store: TraceStore, *, tokens_in: int, tokens_out: int, outcome: float | None) -> str:
    """A benchmark attempt recorded through the store's API: its run_started carries the benchmark's outcome hook
    and prices, one model call answers with the given tokens, and the outcome hook scores the run (None: no reward)."""
    with store.new_run(workflow="priced") as recorder:
        bench = {"bench_run_id": "b1", "task_id": "t1", "epoch": 0, "attempt": 1, "outcome_hook": "outcome"}
        recorder.emit(
            EventType.RUN_STARTED, data={"workflow": "priced", "inputs": {}, "bench": {**bench, "prices": PRICES}}
        )
        started = recorder.emit(EventType.NODE_STARTED, node="solve", data={"visit": 1, "attempt": 1})
        request = recorder.emit(
            EventType.MODEL_REQUEST,
            node="solve",
            parent=started.seq,
            data={"model": PRICED_MODEL, "messages": [], "tools": []},
        )
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        recorder.emit(
            EventType.MODEL_RESPONSE,
            node="solve",
            parent=request.seq,
            data={"model": PRICED_MODEL, "message": {"role": "assistant", "content": "done"}, "usage": usage},
        )
        recorder.emit(EventType.NODE_FINISHED, node="solve", parent=started.seq, data={"visit": 1, "status": "ok"})
        if outcome is not None:
            recorder.emit(EventType.REWARD, data={"hook": "outcome", "on": "run", "value": outcome, "label": None})
        recorder.finish("succeeded")
        return recorder.summary().run_id


@pytest.fixture(scope="session")
def recorded_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceStore, dict[str, str]]:
    """A store holding a succeeded run of graphs/examples/fix_failing_test.yaml, a failed one, an errored one and a
    hostile one."""
    base = tmp_path_factory.mktemp("viewer")
    shutil.copytree(ROOT / "graphs" / "examples", base / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", base / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    store = TraceStore(base / ".agentflow")
    example = base / "graphs" / "examples" / "fix_failing_test.yaml"
    succeeded = asyncio.run(run_workflow(example, store=store))
    assert succeeded.status == "succeeded", succeeded.error
    # The same example with its scripted model cut short after three answers: the script runs out, the run fails.
    script = base / "graphs" / "examples" / "fix_failing_test" / "script.yaml"
    document = yaml.safe_load(script.read_text())
    script.write_text(yaml.safe_dump({"responses": document["responses"][:3]}))
    failed = asyncio.run(run_workflow(example, store=store))
    assert failed.status != "succeeded"
    runs = {"succeeded": succeeded.run_id, "failed": failed.run_id}
    runs["hostile"] = record_hostile_run(store)
    runs["errored"] = record_errored_run(store)
    return store, runs


TEAM_BENCH = """
name: team_bench
workflow: dynamic_team.yaml
tasks: {path: team_tasks.jsonl}
inputs: {task: "{task}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: contains, key: plan, expected: "{expected}"}}
epochs: 2
concurrency: 1
prices:
  "scripted:dynamic_team/planner.script.yaml": {input_per_mtok: 1.0, output_per_mtok: 2.0}
"""

ARITH_WORKFLOW = """
name: add
state:
  a: {type: int, default: 0}
  b: {type: int, default: 0}
  expected: {type: int, default: 0}
  answer: {type: str, default: ""}
tools: [python]
start: compute
nodes:
  compute: {kind: tool, tool: python, args: {code: "print({a} + {b})"}, output: {answer: result.stdout}}
edges:
  - {from: compute, to: END}
"""

ARITH_BENCH = """
name: arith
workflow: add.yaml
tasks: {path: arith_tasks.jsonl}
inputs: {a: "{a}", b: "{b}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}
epochs: 3
concurrency: 2
"""


@pytest.fixture(scope="session")
def bench_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceStore, dict[str, str]]:
    """A store of two benchmark runs on scripted and tool-only workflows: ``team``, graphs/examples/dynamic_team.yaml
    learning its Q-table (``bench run --learn``) over 5 tasks x 2 epochs, 2 of the tasks unsolvable, one model
    priced; and ``arith``, a python tool adding numbers over 4 tasks x 3 epochs, one task's answer wrong, one task's id
    hostile markup, no prices and no Q-table."""
    from agentflow.bench import BenchOptions, BenchRun, load_bench

    base = tmp_path_factory.mktemp("bench")
    shutil.copytree(ROOT / "graphs" / "examples", base / "examples")
    examples = base / "examples"
    team = examples / "dynamic_team.yaml"  # with a state key for what the plan of each task should say
    team.write_text(
        team.read_text().replace("  task: {type: str}\n", "  task: {type: str}\n  expected: {type: str}\n", 1)
    )
    # the planner's first answer says "reverse": a task expecting it is solved, one expecting "nowhere" is not
    team_tasks = [
        {"id": f"team-{i}", "task": f"task {i}", "expected": "nowhere" if i in (1, 3) else "reverse"} for i in range(5)
    ]
    (examples / "team_tasks.jsonl").write_text("".join(json.dumps(task) + "\n" for task in team_tasks))
    (examples / "team_bench.yaml").write_text(TEAM_BENCH)
    arith_tasks = [{"id": f"add-{i}", "a": i, "b": 2 * i, "expected": 3 * i + (i == 2)} for i in range(4)]
    arith_tasks[3]["id"] = "add-3" + XSS  # a task file is input too: its ids are shown as text
    (examples / "arith_tasks.jsonl").write_text("".join(json.dumps(task) + "\n" for task in arith_tasks))
    (examples / "add.yaml").write_text(ARITH_WORKFLOW)
    (examples / "arith.yaml").write_text(ARITH_BENCH)
    store = TraceStore(base / ".agentflow")
    benches = {}
    for name, file, options in (
        ("team", "team_bench.yaml", BenchOptions(routing="learn")),
        ("arith", "arith.yaml", BenchOptions()),
    ):
        bench = BenchRun(load_bench(examples / file), store, options=options)
        # in a thread of its own: a browser test may ask for this store while Playwright holds this thread's loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(asyncio.run, bench.run()).result()
        assert outcome.ran == len(outcome.items), outcome
        benches[name] = bench.info.bench_run_id
    return store, benches


def record_replayed_pair(folder: Path, command: str, mode: str) -> tuple[TraceStore, str, str]:
    """A store with a run of two shell nodes (the second runs ``command``; exit_code scores each node) and its
    replay in ``mode`` (``tape`` or ``verify``): returns the store, the original's id and the replay's."""
    workflow = folder / "two.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {
                "name": "two",
                "tools": ["shell"],
                "start": "first",
                "nodes": {
                    "first": {"kind": "tool", "tool": "shell", "args": {"command": "echo one"}},
                    "second": {"kind": "tool", "tool": "shell", "args": {"command": command}},
                },
                "edges": [{"from": "first", "to": "second"}],
                "end": ["second"],
                "rewards": [{"hook": "exit_code", "on": "node"}],
            }
        )
    )
    store = TraceStore(folder / "store")
    original = asyncio.run(run_workflow(workflow, store=store))
    assert original.status == "succeeded", original.error
    report = asyncio.run(replay_run(store, original.run_id, mode=mode))  # type: ignore[arg-type]
    return store, original.run_id, report.replay_run_id
