"""`agentflow bench run` on a small arithmetic benchmark: every pair a tagged run, scored, reported, resumable."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agentflow.bench import BenchOptions, BenchProgress, BenchRun, build_report, load_bench, pair_seed
from agentflow.errors import ConfigError, SpecError
from agentflow.traces import EventType, TraceStore
from tests.support.event_data import assert_data_declared

WORKFLOW = """
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

BENCH = """
name: arith
workflow: add.yaml
tasks: {path: tasks.jsonl}
inputs: {a: "{a}", b: "{b}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}
epochs: 2
seed: 11
concurrency: 3
"""

# t3's expected answer is wrong, so the workflow (which adds correctly) fails it; line 4 is broken
TASKS = [
    '{"id": "t1", "a": 1, "b": 2, "expected": 3}',
    '{"id": "t2", "a": 20, "b": 22, "expected": 42}',
    '{"id": "t3", "a": 2, "b": 2, "expected": 5}',
    '{"id": "t4", "a": 1,',
    '{"id": "t5", "a": 0, "b": 0, "expected": 0}',
]


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    (tmp_path / "add.yaml").write_text(WORKFLOW)
    (tmp_path / "tasks.jsonl").write_text("\n".join(TASKS) + "\n")
    path = tmp_path / "arith.yaml"
    path.write_text(BENCH)
    return path


def test_every_pair_runs_tagged_scored_and_reported(bench_file: Path, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    bench = BenchRun(load_bench(bench_file), store)
    assert [str(problem) for problem in bench.task_set.problems] == [
        "line 4: not JSON: Expecting property name enclosed in double quotes at column 21"
    ]
    outcome = asyncio.run(bench.run())
    assert (outcome.ran, outcome.skipped, outcome.cancelled) == (8, 0, False)
    items = store.list_bench_items(bench.info.bench_run_id)
    assert sorted((item.task_id, item.epoch, item.status, item.outcome) for item in items) == [
        ("t1", 0, "succeeded", 1.0),
        ("t1", 1, "succeeded", 1.0),
        ("t2", 0, "succeeded", 1.0),
        ("t2", 1, "succeeded", 1.0),
        ("t3", 0, "succeeded", 0.0),
        ("t3", 1, "succeeded", 0.0),
        ("t5", 0, "succeeded", 1.0),
        ("t5", 1, "succeeded", 1.0),
    ]
    # each run says in its trace which bench run, task, epoch and attempt it is, and which hook is its outcome (the
    # benchmark prices no model: no prices), and got its pair's seed
    rows = {info.run_id: info for info in store.list_runs()}
    for item in items:
        started = store.load_trace(item.run_id).events[0]
        assert started.data["bench"] == {
            "bench_run_id": bench.info.bench_run_id,
            "task_id": item.task_id,
            "epoch": item.epoch,
            "attempt": 1,
            "outcome_hook": "outcome",
        }
        assert (rows[item.run_id].outcome, rows[item.run_id].cost) == (item.outcome, None)
        assert started.data["seed"] == item.seed == pair_seed(11, item.task_id, item.epoch)
        assert started.data["inputs"]["a"] == json.loads(TASKS[int(item.task_id[1]) - 1])["a"]
        assert_data_declared(store.load_trace(item.run_id).events)  # the bench tag and seed are declared data
    report = asyncio.run(build_report(store, bench.info.bench_run_id))
    assert report.pass_at_k == {1: 0.75, 2: 0.75}
    assert (report.pairs, report.finished, report.scored, report.correct, report.errored) == (8, 8, 8, 6, 0)
    assert [task.task_id for task in report.tasks] == ["t1", "t2", "t3", "t5"]
    assert report.structure["common_paths"] == [("compute", 8)]
    assert "| t3 | 2 | 0 | 0 | 0.000 |" in report.to_markdown()
    assert report.to_csv().splitlines()[0] == "task_id,samples,correct,errored,pass@1,pass@2,tokens,cost"


def test_resume_runs_only_what_did_not_finish(bench_file: Path, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    loaded = load_bench(bench_file)
    first = BenchRun(loaded, store, options=BenchOptions(task_ids=["t1", "t2"], epochs=1))
    asyncio.run(first.run())
    # the bench process dies while t2's run is recorded as running: its attempt stays `running`, its run unfinished
    item = next(item for item in store.list_bench_items(first.info.bench_run_id) if item.task_id == "t2")
    from dataclasses import replace

    recorder = store.new_run(workflow="add")
    store.finish_bench_item(replace(item, status="running", outcome=None, finished_at=None))
    broken = replace(item, attempt=2, run_id=recorder.run_id, status="running")
    store.start_bench_item(broken)
    store.finish_bench_item(replace(item, status="cancelled"))
    seen: list[BenchProgress] = []
    again = BenchRun(loaded, store, resume=first.info.bench_run_id[:20], on_progress=seen.append)
    assert again.info.bench_run_id == first.info.bench_run_id
    outcome = asyncio.run(again.run())
    assert (outcome.ran, outcome.skipped) == (1, 1)
    # the progress of the bench run as a whole: t1, finished before, counts as done and passed
    last = seen[-1]
    assert (last.total, last.done, last.passed, last.errored, last.resumed) == (2, 2, 2, 0, 1)
    assert last.pass_rate == 1.0
    attempts = [(i.task_id, i.attempt, i.status) for i in store.list_bench_items(first.info.bench_run_id)]
    assert attempts == [
        ("t1", 1, "succeeded"),
        ("t2", 1, "cancelled"),
        ("t2", 2, "interrupted"),
        ("t2", 3, "succeeded"),
    ]
    report = asyncio.run(build_report(store, first.info.bench_run_id))
    assert report.pass_at_k == {1: 1.0}
    assert report.retried == 2


def test_time_left_of_a_resumed_run_comes_from_its_own_pace() -> None:
    # 4 pairs finished before, 2 in this invocation's 2 s: 4 left at 1 s each (not 2 s / 6 done per pair)
    progress = BenchProgress(total=10, done=6, resumed=4, started=time.monotonic() - 2.0)
    assert progress.eta_s is not None and 3.9 < progress.eta_s < 4.5
    assert BenchProgress(total=10, done=4, resumed=4).eta_s is None  # nothing ran yet: no pace to go by


def test_bench_file_mistakes_name_the_line(tmp_path: Path, bench_file: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BENCH.replace("epochs: 2", "epoch: 2"))
    with pytest.raises(SpecError) as caught:
        load_bench(bad)
    assert caught.value.location is not None and (caught.value.location.line, caught.value.location.column) == (7, 1)
    assert "did you mean 'epochs'" in str(caught.value.fix)
    missing = tmp_path / "missing.yaml"
    missing.write_text(BENCH.replace("tasks.jsonl", "nope.jsonl"))
    with pytest.raises(SpecError, match=r"tasks\.path: nope\.jsonl does not exist"):
        load_bench(missing)
    with pytest.raises(ConfigError, match="no task 'zz'"):
        BenchRun(load_bench(bench_file), TraceStore(tmp_path / "s"), options=BenchOptions(task_ids=["zz"]))


def test_the_outcome_hook_is_recorded_in_every_run(bench_file: Path, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    bench = BenchRun(load_bench(bench_file), store, options=BenchOptions(task_ids=["t3"], epochs=1))
    asyncio.run(bench.run())
    (item,) = store.list_bench_items(bench.info.bench_run_id)
    rewards = [e for e in store.load_trace(item.run_id).events if e.type is EventType.REWARD]
    assert [(r.data["hook"], r.data["on"], r.data["value"]) for r in rewards] == [("outcome", "run", 0)]


def test_compare_pairs_tasks_and_bootstraps_the_pass_at_1_difference(bench_file: Path, tmp_path: Path) -> None:
    from agentflow.bench import compare_reports, paired_bootstrap

    store = TraceStore(tmp_path / "store")
    loaded = load_bench(bench_file)
    first = BenchRun(loaded, store, options=BenchOptions(epochs=1))
    asyncio.run(first.run())
    # the same benchmark with t3 expecting the right answer: B solves it, A did not
    (tmp_path / "tasks.jsonl").write_text(
        "\n".join([*TASKS[:2], TASKS[2].replace('"expected": 5', '"expected": 4'), TASKS[4]]) + "\n"
    )
    second = BenchRun(load_bench(bench_file), store, options=BenchOptions(epochs=1))
    asyncio.run(second.run())
    report_a = asyncio.run(build_report(store, first.info.bench_run_id))
    report_b = asyncio.run(build_report(store, second.info.bench_run_id))
    comparison = compare_reports(report_a, report_b)
    assert (comparison.pass_at_1_a, comparison.pass_at_1_b, comparison.pass_at_1_delta) == (0.75, 1.0, 0.25)
    assert [(d.task_id, d.delta) for d in comparison.tasks if d.delta] == [("t3", 1.0)]
    assert comparison.interval is not None
    low, high = comparison.interval
    assert 0.0 <= low <= 0.25 <= high <= 1.0  # resampling 4 tasks of which one moved: means in {0, .25, .5, ...}
    assert comparison.interval == compare_reports(report_a, report_b).interval  # a fixed seed: the same interval
    assert paired_bootstrap([]) is None
    assert paired_bootstrap([0.5, 0.5, 0.5]) == (0.5, 0.5)
    markdown = comparison.to_markdown()
    assert "| t3 | 0.000 | 1.000 | +1.000 |" in markdown
    # the headline names which run is A and which is B, as the figures below it use them
    assert markdown.splitlines()[0] == f"# B {second.info.bench_run_id} against A {first.info.bench_run_id}"


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    from math import comb

    from agentflow.bench import pass_at_k

    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - comb(197, 100) / comb(200, 100), rel=1e-9)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


SCRIPTED_WORKFLOW = """
name: scripted_add
state:
  a: {type: int, default: 0}
  b: {type: int, default: 0}
  expected: {type: int, default: 0}
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:add.script.yaml", temperature: 0.7}
tools: [python]
start: think
nodes:
  think: {kind: agent, model: m, prompt: "Add {a} and {b}.", tools: [python], max_turns: 3, output: {answer: answer}}
edges:
  - {from: think, to: END}
"""

SCRIPT = """
responses:
  - tool_calls: [{name: python, arguments: {code: "print(20 + 22)"}}]
  - content: "42"
"""


def test_the_same_seed_gives_the_same_runs_and_another_seed_other_seeds(tmp_path: Path) -> None:
    from agentflow.traces import content_digest

    (tmp_path / "add.yaml").write_text(SCRIPTED_WORKFLOW)
    (tmp_path / "add.script.yaml").write_text(SCRIPT)
    (tmp_path / "tasks.jsonl").write_text("\n".join(TASKS) + "\n")
    (tmp_path / "arith.yaml").write_text(BENCH.replace("concurrency: 3", "concurrency: 2"))
    store = TraceStore(tmp_path / "store")
    loaded = load_bench(tmp_path / "arith.yaml")
    runs = []
    for seed in (5, 5, 6):
        bench = BenchRun(loaded, store, options=BenchOptions(seed=seed, task_ids=["t2", "t3"]))
        asyncio.run(bench.run())
        items = sorted(store.list_bench_items(bench.info.bench_run_id), key=lambda i: (i.task_id, i.epoch))
        runs.append([(i, store.load_trace(i.run_id).events) for i in items])
    first, again, other = runs
    outcomes = [(i.task_id, i.epoch, i.outcome) for i, _ in first]
    assert outcomes == [("t2", 0, 1.0), ("t2", 1, 1.0), ("t3", 0, 0.0), ("t3", 1, 0.0)]
    assert [(i.task_id, i.epoch, i.outcome) for i, _ in again] == outcomes
    for (item_a, events_a), (item_b, events_b) in zip(first, again, strict=True):
        assert item_a.seed == item_b.seed
        # everything after run_started (which names its bench run) is the same content, event for event
        assert [content_digest(e) for e in events_a[1:]] == [content_digest(e) for e in events_b[1:]]
        requests = [e for e in events_a if e.type is EventType.MODEL_REQUEST]
        assert requests and {e.data["settings"]["seed"] for e in requests} == {item_a.seed}
        assert {e.data["settings"]["temperature"] for e in requests} == {0.7}  # the workflow's settings stay
    assert [i.seed for i, _ in other] != [i.seed for i, _ in first]
    assert len({i.seed for i, _ in first}) == 4  # every (task, epoch) pair its own seed


def test_an_outcome_hook_that_does_not_exist_is_the_bench_files_mistake(bench_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad_hook.yaml"
    bad.write_text(BENCH.replace("outcome: {hook: outcome,", "outcome: {hook: outcom,"))
    with pytest.raises(SpecError) as caught:
        load_bench(bad)
    assert "outcome: unknown reward_hook 'outcom'" in str(caught.value)
    assert "did you mean 'outcome'" in str(caught.value.fix)
    assert caught.value.location is not None and caught.value.location.line == 6
    bad.write_text(BENCH.replace("mode: numeric", "mode: sideways"))
    with pytest.raises(SpecError, match="unknown mode 'sideways'"):
        load_bench(bad)


def test_an_outcome_hook_by_path_is_found_next_to_the_bench_file(bench_file: Path, tmp_path: Path) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "score.py").write_text(
        "def exact(step):\n"
        "    answer, expected = str(step.state.get('answer')).strip(), str(step.state.get('expected'))\n"
        "    return 1.0 if answer == expected else 0.0\n"
    )
    path_hook = tmp_path / "by_path.yaml"
    path_hook.write_text(
        BENCH.replace(
            'outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}',
            "outcome: {hook: hooks/score.py:exact}",
        )
    )
    store = TraceStore(tmp_path / "store")
    bench = BenchRun(load_bench(path_hook), store, options=BenchOptions(task_ids=["t1", "t3"], epochs=1))
    asyncio.run(bench.run())
    outcomes = {i.task_id: i.outcome for i in store.list_bench_items(bench.info.bench_run_id)}
    assert outcomes == {"t1": 1.0, "t3": 0.0}


@pytest.mark.parametrize(
    ("option", "value"), [("limit", 0), ("epochs", 0), ("concurrency", 0), ("retry_errored", -1), ("rollouts", -1)]
)
def test_a_count_out_of_range_is_refused_not_taken_for_the_files_value(option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be at least"):
        BenchOptions(**{option: value})
    BenchOptions(**{option: value + 1})  # the least value is fine
