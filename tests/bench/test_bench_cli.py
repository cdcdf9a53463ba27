"""`agentflow bench run | report | runs` in a subprocess: a Ctrl-C or a SIGKILL of the bench process loses no pair
and grades none twice once the bench run is resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agentflow.traces import TraceStore
from tests.cli.test_cli import AGENTFLOW, agentflow, assert_one_line_error

# each run sleeps a little, so that the bench process can be stopped while runs are in flight
WORKFLOW = """
name: slow_add
state:
  a: {type: int, default: 0}
  b: {type: int, default: 0}
  answer: {type: str, default: ""}
tools: [python]
start: compute
nodes:
  compute:
    kind: tool
    tool: python
    args: {code: "import time\\ntime.sleep(0.4)\\nprint({a} + {b})"}
    output: {answer: result.stdout}
edges:
  - {from: compute, to: END}
"""

BENCH = """
name: slow_arith
workflow: slow_add.yaml
tasks: {path: tasks.jsonl}
inputs: {a: "{a}", b: "{b}", expected: "{expected}"}
outcome: {hook: outcome, options: {mode: numeric, key: answer, expected: "{expected}"}}
epochs: 2
concurrency: 2
"""


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    (tmp_path / "slow_add.yaml").write_text(
        WORKFLOW.replace("  answer:", "  expected: {type: int, default: 0}\n  answer:")
    )
    lines = [json.dumps({"id": f"t{i}", "a": i, "b": 1, "expected": i + 1 if i % 3 else 0}) for i in range(6)]
    (tmp_path / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "slow_arith.yaml").write_text(BENCH)
    return tmp_path


def _items(store_dir: Path) -> list[tuple[str, int, int, str]]:
    store = TraceStore(store_dir)
    bench_runs = store.list_bench_runs()
    if not bench_runs:
        return []
    return [(i.task_id, i.epoch, i.attempt, i.status) for i in store.list_bench_items(bench_runs[0].bench_run_id)]


def _stop_midway(bench_dir: Path, sig: signal.Signals) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [AGENTFLOW, "bench", "run", "slow_arith.yaml"],
        cwd=bench_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until some pairs finished and others are running
        items = _items(bench_dir / ".agentflow")
        if sum(status == "succeeded" for *_, status in items) >= 3 and any(s == "running" for *_, s in items):
            break
        time.sleep(0.05)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_a_stopped_bench_run_resumes_without_losing_or_regrading_a_pair(bench_dir: Path, sig: signal.Signals) -> None:
    stopped = _stop_midway(bench_dir, sig)
    store = TraceStore(bench_dir / ".agentflow")
    (bench_run,) = store.list_bench_runs()
    if sig is signal.SIGINT:
        assert stopped.returncode == 130, stderr_of(stopped)
        # one error line and nothing after it: no traceback of a transport or task the interruption left behind
        noise = [
            text
            for text in ("Traceback", "Exception ignored", "Unknown child", "was destroyed")
            if text in stopped.stderr
        ]
        assert not noise, stopped.stderr
        line = stopped.stderr.strip().splitlines()[-1]
        assert f"resume with: agentflow bench run slow_arith.yaml --resume {bench_run.bench_run_id}" in line
        assert "running" not in {status for *_, status in _items(bench_dir / ".agentflow")}  # all recorded
    else:
        assert stopped.returncode == -signal.SIGKILL
    before = _items(bench_dir / ".agentflow")
    finished_before = {(task, epoch) for task, epoch, _, status in before if status == "succeeded"}
    assert 3 <= len(finished_before) < 12

    resumed = agentflow("bench", "run", "slow_arith.yaml", "--resume", bench_run.bench_run_id, "--json", cwd=bench_dir)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert (report["pairs"], report["finished"], report["unfinished"], report["errored"]) == (12, 12, 0, 0)
    assert report["pass_at_k"] == {"pass@1": pytest.approx(4 / 6), "pass@2": pytest.approx(4 / 6)}
    after = _items(bench_dir / ".agentflow")
    # pairs that had finished were not run again; every pair has exactly one succeeded attempt
    assert [item for item in after if (item[0], item[1]) in finished_before] == [
        item for item in before if (item[0], item[1]) in finished_before
    ]
    succeeded = [(task, epoch) for task, epoch, _, status in after if status == "succeeded"]
    assert sorted(succeeded) == sorted({(f"t{i}", e) for i in range(6) for e in range(2)})
    # an attempt cut off by the stop is kept, marked, and not counted
    assert all(status in {"succeeded", "cancelled", "interrupted"} for *_, status in after)

    again = agentflow("bench", "run", "slow_arith.yaml", "--resume", bench_run.bench_run_id, "--json", cwd=bench_dir)
    assert again.returncode == 0 and _items(bench_dir / ".agentflow") == after  # nothing left to run


def stderr_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr


def test_report_formats_and_runs_listing(bench_dir: Path) -> None:
    ran = agentflow("bench", "run", "slow_arith.yaml", "--tasks", "t1,t3", "--epochs", "1", cwd=bench_dir)
    assert ran.returncode == 0, ran.stderr
    assert "| t3 | 1 | 0 | 0 | 0.000 |" in ran.stdout  # 3 + 1 is not the 0 the task expects
    listed = agentflow("bench", "runs", "--json", cwd=bench_dir)
    (bench_run,) = json.loads(listed.stdout)
    assert bench_run["config"]["task_ids"] == ["t1", "t3"]
    csv = agentflow("bench", "report", bench_run["bench_run_id"][:20], "--format", "csv", cwd=bench_dir)
    assert csv.stdout.splitlines() == [
        "task_id,samples,correct,errored,pass@1,tokens,cost",
        "t1,1,1,0,1.0,0,",
        "t3,1,0,0,0.0,0,",
    ]
    assert "unknown report format 'xml'" in assert_one_line_error(
        agentflow("bench", "report", bench_run["bench_run_id"], "--format", "xml", cwd=bench_dir), 2
    )
    assert "no bench run 'bench-zzz'" in assert_one_line_error(
        agentflow("bench", "report", "bench-zzz", cwd=bench_dir), 3
    )
    resume_with_tasks = agentflow(
        "bench", "run", "slow_arith.yaml", "--resume", bench_run["bench_run_id"], "--tasks", "t1", cwd=bench_dir
    )
    assert "--resume continues a bench run" in assert_one_line_error(resume_with_tasks, 2)


AGENT_WORKFLOW = """
name: ask
state:
  question: {type: str, default: ""}
  answer: {type: str, default: ""}
models:
  m: {model: "scripted:answers.script.yaml"}
start: ask
nodes:
  ask: {kind: agent, model: m, prompt: "{question}", max_turns: 1, output: {answer: answer}}
edges:
  - {from: ask, to: END}
"""

AGENT_BENCH = """
name: questions
workflow: ask.yaml
tasks: {path: tasks.jsonl}
inputs: {question: "{question}"}
outcome: {hook: outcome, options: {mode: exact, key: answer, expected: "{expected}"}}
"""


@pytest.mark.parametrize("mistake", ["no API key", "no script"])
def test_a_model_that_cannot_be_built_is_reported_before_any_pair_runs(tmp_path: Path, mistake: str) -> None:
    # Every run would error on it (and be retried): the user's mistake is said once, up front, and nothing is kept.
    (tmp_path / "ask.yaml").write_text(AGENT_WORKFLOW)
    (tmp_path / "tasks.jsonl").write_text(json.dumps({"id": "q1", "question": "2+2?", "expected": "4"}) + "\n")
    (tmp_path / "questions.yaml").write_text(AGENT_BENCH)
    args = ["bench", "run", "questions.yaml", "--store", "store"]
    if mistake == "no API key":
        (tmp_path / "answers.script.yaml").write_text('responses: ["4"]\n')
        args += ["--model", "openai:gpt-4o-mini"]
    result = agentflow(*args, cwd=tmp_path, env={"OPENAI_API_KEY": ""})
    line = assert_one_line_error(result, 2)
    assert ("OPENAI_API_KEY" if mistake == "no API key" else "answers.script.yaml") in line
    assert TraceStore(tmp_path / "store").list_bench_runs() == []
    assert not (tmp_path / "store" / "runs").exists()


@pytest.mark.parametrize(
    "flag",
    [["--concurrency", "0"], ["--epochs", "0"], ["--limit", "0"], ["--retry-errored", "-1"], ["--tasks", " , "]],
)
def test_a_flag_out_of_range_is_a_usage_error(bench_dir: Path, flag: list[str]) -> None:
    # (an empty --tasks is not "every task": a real model's bill for the whole task set)
    result = agentflow("bench", "run", "slow_arith.yaml", "--store", "store", *flag, cwd=bench_dir)
    assert flag[0] in assert_one_line_error(result, 2)
    assert not (bench_dir / "store" / "runs").exists()


def test_bench_runs_on_a_store_without_any_says_so(tmp_path: Path) -> None:
    listed = agentflow("bench", "runs", "--store", "store", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no bench runs in store yet: `agentflow bench run BENCH.yaml` starts one"
    assert json.loads(agentflow("bench", "runs", "--store", "store", "--json", cwd=tmp_path).stdout) == []
