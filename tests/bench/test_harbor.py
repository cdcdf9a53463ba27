"""Harbor task directories: read as tasks, each run in its own image, scored by the task's verifier, `--oracle`.

The tasks are written here, each with ``FROM agentflow/python:latest`` (built offline, once per content hash and
reused by every test of the module); the agent is the scripted model, which does the same on every task: it writes
``Hello, world!`` to /app/hello.txt.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentflow.bench import BenchOptions, BenchRun, load_bench, read_tasks
from agentflow.errors import ConfigError
from agentflow.sandboxes import build_context_image, context_hash
from agentflow.traces import EventType, RewardData, RunStartedData, SandboxExecData, TraceStore
from tests.cli.test_cli import agentflow
from tests.sandboxes._docker_support import require_docker

DOCKERFILE = "FROM agentflow/python:latest\nWORKDIR /app\n"
TASK_TOML = """version = "1.0"
[metadata]
difficulty = "easy"
[verifier]
timeout_sec = {verifier_timeout}
[agent]
timeout_sec = 60.0
[environment]
build_timeout_sec = 300.0
cpus = 1
memory_mb = 768
"""
REWARD_TXT = (
    '[ "$(cat /app/{file} 2>/dev/null)" = "{text}" ] && echo 1 > /logs/verifier/reward.txt '
    "|| echo 0 > /logs/verifier/reward.txt"
)
REWARD_JSON = (
    '[ "$(cat /app/{file} 2>/dev/null)" = "{text}" ] && r=1 || r=0; '
    'echo "{{\\"reward\\": $r}}" > /logs/verifier/reward.json'
)
TASKS: dict[str, dict[str, str]] = {
    # the agent's attempt solves it (reward.txt); solve.sh runs from the image's WORKDIR (a relative path)
    "hello": {
        "test": "echo checking hello; " + REWARD_TXT.format(file="hello.txt", text="Hello, world!"),
        "solve": "echo 'Hello, world!' > hello.txt",
    },
    # the agent's attempt does not (reward.json holds 0); the reference solution does
    "goodbye": {
        "test": REWARD_JSON.format(file="bye.txt", text="bye"),
        "solve": "echo bye > /app/bye.txt",
    },
    # a verifier that writes no reward at all
    "silent": {"test": "echo 'looked, decided nothing' >&2; exit 1", "solve": "true"},
    # a verifier that outlives its 1 s timeout
    "slow": {"test": "sleep 30; echo 1 > /logs/verifier/reward.txt", "solve": "true", "verifier_timeout": "1.0"},
    # a verifier under which the container dies (an outage, not the agent's failure)
    "killer": {"test": "kill -TERM 1; sleep 20", "solve": "true"},
    # no reference solution: --oracle reports it
    "nosolve": {"test": REWARD_TXT.format(file="hello.txt", text="Hello, world!")},
    # an image that does not build: its runs error (with the build's output), the other tasks run
    "unbuildable": {"test": "true", "dockerfile": DOCKERFILE + "RUN echo the build breaks here && exit 3\n"},
}

WORKFLOW = """
name: harbor_agent
state:
  instruction: {type: str, default: ""}
models:
  agent: {model: "scripted:agent.script.yaml"}
sandbox: {backend: docker}
tools: [shell]
start: work
nodes:
  work: {kind: agent, model: agent, prompt: "Do the task.", input: "{instruction}", tools: [shell], max_turns: 4}
edges:
  - {from: work, to: END}
"""
SCRIPT = """
responses:
  - tool_calls: [{name: shell, arguments: {command: "echo 'Hello, world!' > /app/hello.txt"}}]
  - content: Done.
"""
BENCH = """
name: harbor_test
workflow: agent.yaml
tasks: {source: harbor, path: tasks}
inputs: {instruction: "{instruction}"}
outcome: {hook: harbor_verifier, timeout_s: 120}
concurrency: 3
retry_errored: 0
"""


def write_tasks(folder: Path, names: list[str]) -> None:
    for name in names:
        task = TASKS[name]
        root = folder / name
        (root / "environment").mkdir(parents=True)
        (root / "tests").mkdir()
        (root / "environment" / "Dockerfile").write_text(task.get("dockerfile", DOCKERFILE))
        (root / "task.toml").write_text(TASK_TOML.format(verifier_timeout=task.get("verifier_timeout", "60.0")))
        (root / "instruction.md").write_text(f"Task {name}: write the files its verifier expects under /app.\n")
        (root / "tests" / "test.sh").write_text("#!/bin/bash\n" + task["test"] + "\n")
        if "solve" in task:
            (root / "solution").mkdir()
            (root / "solution" / "solve.sh").write_text("#!/bin/bash\n" + task["solve"] + "\n")
    # broken directories: reported by name, the others still run
    (folder / "no-instruction" / "environment").mkdir(parents=True)
    (folder / "no-instruction" / "task.toml").write_text('version = "1.0"\n')
    (folder / "bad-toml").mkdir()
    (folder / "bad-toml" / "task.toml").write_text("[verifier\ntimeout_sec = 1\n")
    (folder / "bad-toml" / "instruction.md").write_text("x\n")


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("harbor")
    write_tasks(root / "tasks", ["hello", "goodbye", "silent", "slow", "killer", "nosolve", "unbuildable"])
    (root / "agent.yaml").write_text(WORKFLOW)
    (root / "agent.script.yaml").write_text(SCRIPT)
    (root / "bench.yaml").write_text(BENCH)
    return root / "bench.yaml"


def test_task_directories_become_tasks_and_broken_ones_are_reported_by_directory(bench_file: Path) -> None:
    folder = bench_file.parent / "tasks"
    found = read_tasks(folder, source="harbor")
    assert [task.id for task in found.tasks] == [
        "goodbye",
        "hello",
        "killer",
        "nosolve",
        "silent",
        "slow",
        "unbuildable",
    ]
    assert sorted(str(problem) for problem in found.problems) == [
        f"{folder / 'bad-toml'}: task.toml is not valid TOML: Expected ']' at the end of a table declaration "
        "(at line 1, column 10)",
        f"{folder / 'no-instruction'}: no instruction.md (the agent's instruction)",
    ]
    slow = next(task for task in found.tasks if task.id == "slow")
    assert slow.fields["instruction"] == "Task slow: write the files its verifier expects under /app.\n"
    assert slow.fields["metadata"] == {"difficulty": "easy"}
    env = slow.environment
    assert env is not None
    assert (env.verifier_timeout_s, env.agent_timeout_s, env.cpus, env.memory_mb) == (1.0, 60.0, 1.0, 768)
    assert env.image == f"agentflow-harbor/slow:{context_hash(folder / 'slow' / 'environment')[:12]}"
    assert env.solution == folder / "slow" / "solution"
    assert next(task for task in found.tasks if task.id == "nosolve").environment.solution is None  # type: ignore[union-attr]


def test_each_run_is_scored_by_its_tasks_verifier_in_its_own_container(bench_file: Path, tmp_path: Path) -> None:
    require_docker()
    store = TraceStore(tmp_path / "store")
    bench = BenchRun(load_bench(bench_file), store)
    assert len(bench.task_set.problems) == 2
    outcome = asyncio.run(bench.run())
    items = {item.task_id: item for item in outcome.items}
    assert {task_id: (item.status, item.outcome) for task_id, item in items.items()} == {
        "hello": ("succeeded", 1.0),
        "goodbye": ("succeeded", 0.0),
        "silent": ("succeeded", 0.0),
        "slow": ("succeeded", 0.0),
        "killer": ("errored", None),  # the container died under the verifier: no verdict on the agent
        "nosolve": ("succeeded", 1.0),
        "unbuildable": ("errored", None),
    }
    unbuildable = store.load_trace(items["unbuildable"].run_id).summary()
    assert "did not build" in str(unbuildable.error) and "the build breaks here" in str(unbuildable.error)
    assert bench.config["sandbox"] == "docker"

    def outcome_reward(task_id: str) -> RewardData:
        events = store.load_trace(items[task_id].run_id).events
        (reward,) = [e.data_as(RewardData) for e in events if e.type is EventType.REWARD]
        assert reward["hook"] == "harbor_verifier" and reward["on"] == "run"
        return reward

    assert outcome_reward("silent")["explanation"] == (
        "the verifier wrote no reward (test.sh exited 1): looked, decided nothing"
    )
    assert outcome_reward("slow")["explanation"] == "the verifier timed out after 1s"
    assert outcome_reward("goodbye")["components"]["rewards"] == {"reward": 0}

    # the run's trace: the agent's command ran as root in the task's image, the verifier's commands are
    # sandbox_exec events of the hook with their output, and run_started names the verifier
    events = store.load_trace(items["hello"].run_id).events
    started = events[0].data_as(RunStartedData)
    assert started["bench"]["verifier"]["workdir"] == "/app"
    assert started["bench"]["verifier"]["tests_dir"] == str((bench_file.parent / "tasks" / "hello" / "tests").resolve())
    assert started["sandbox"]["isolation"]["details"]["image"].startswith("agentflow-harbor/hello:")
    execs = [e.data_as(SandboxExecData) for e in events if e.type is EventType.SANDBOX_EXEC]
    verifier_runs = [
        data for data in execs if data["by"] == "hook:harbor_verifier" and "/tests/test.sh" in data["cmd"][2]
    ]
    assert [(data["exit_code"], data["stdout"]) for data in verifier_runs] == [(0, "checking hello\n")]

    # the images were built once, by content hash: asking again builds nothing
    hello = next(task for task in bench.task_set.tasks if task.id == "hello").environment
    assert hello is not None
    assert build_context_image(hello.context, hello.image) == ("/app", False)


def test_oracle_runs_each_tasks_solution_through_the_cli(tmp_path: Path) -> None:
    require_docker()
    write_tasks(tmp_path / "tasks", ["hello", "goodbye", "silent", "nosolve"])
    (tmp_path / "agent.yaml").write_text(WORKFLOW)
    (tmp_path / "agent.script.yaml").write_text(SCRIPT)
    (tmp_path / "bench.yaml").write_text(BENCH)
    ran = agentflow("bench", "run", "bench.yaml", "--oracle", "--json", cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr  # 1: task directories were skipped, the others ran
    assert "tasks/nosolve: skipped: no solution/solve.sh: --oracle cannot run it" in ran.stderr
    assert "tasks/bad-toml: skipped: task.toml is not valid TOML" in ran.stderr
    report = json.loads(ran.stdout)
    assert {row["task_id"]: row["correct"] for row in report["tasks"]} == {"goodbye": 1, "hello": 1, "silent": 0}
    # each oracle run is a recorded run of the built-in oracle workflow, solve.sh its one tool call
    store = TraceStore(tmp_path / ".agentflow")
    (bench_run,) = store.list_bench_runs()
    assert bench_run.config["oracle"] is True
    for item in store.list_bench_items(bench_run.bench_run_id):
        trace = store.load_trace(item.run_id)
        assert trace.summary().workflow == "oracle"
        commands = [e.data_as(SandboxExecData)["cmd"] for e in trace.events if e.type is EventType.SANDBOX_EXEC]
        assert commands[0] == ["sh", "-c", "cd /app && bash /solution/solve.sh"]


def test_oracle_needs_task_directories(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(WORKFLOW)
    (tmp_path / "agent.script.yaml").write_text(SCRIPT)
    (tmp_path / "tasks.jsonl").write_text('{"id": "t1", "instruction": "x"}\n')
    (tmp_path / "bench.yaml").write_text(BENCH.replace("{source: harbor, path: tasks}", "{path: tasks.jsonl}"))
    with pytest.raises(ConfigError, match="--oracle runs the tasks' reference solutions"):
        BenchRun(load_bench(tmp_path / "bench.yaml"), TraceStore(tmp_path / "store"), options=BenchOptions(oracle=True))


def test_the_tasks_agent_timeout_limits_the_run_and_the_verifier_still_scores_it(tmp_path: Path) -> None:
    require_docker()
    write_tasks(tmp_path / "tasks", ["hello"])
    toml = tmp_path / "tasks" / "hello" / "task.toml"
    toml.write_text(toml.read_text().replace("[agent]\ntimeout_sec = 60.0", "[agent]\ntimeout_sec = 1.0"))
    (tmp_path / "agent.yaml").write_text(WORKFLOW)
    (tmp_path / "agent.script.yaml").write_text(
        SCRIPT.replace("echo 'Hello, world!'", "sleep 20; echo 'Hello, world!'")
    )
    (tmp_path / "bench.yaml").write_text(BENCH)
    store = TraceStore(tmp_path / "store")
    outcome = asyncio.run(BenchRun(load_bench(tmp_path / "bench.yaml"), store).run())
    (item,) = outcome.items
    assert (item.status, item.outcome) == ("limit_exceeded", 0.0)  # the agent ran out of time; hello.txt is missing
    trace = store.load_trace(item.run_id)
    assert trace.events[0].data_as(RunStartedData)["limits"]["timeout_s"] == 1.0


def test_the_shipped_demo_runs_offline_with_the_scripted_agent_and_the_oracle(tmp_path: Path) -> None:
    require_docker()
    demo = load_bench(Path(__file__).parents[2] / "graphs" / "bench" / "harbor_demo.yaml")
    store = TraceStore(tmp_path / "store")
    results = {}
    for oracle in (False, True):
        outcome = asyncio.run(BenchRun(demo, store, options=BenchOptions(oracle=oracle)).run())
        assert outcome.task_problems == []
        results[oracle] = {item.task_id: (item.status, item.outcome) for item in outcome.items}
    assert results == {
        False: {"hello-file": ("succeeded", 1.0), "word-count": ("succeeded", 0.0)},
        True: {"hello-file": ("succeeded", 1.0), "word-count": ("succeeded", 1.0)},
    }


def test_a_task_system_container_is_root_on_a_writable_system_with_three_capabilities_and_no_network() -> None:
    require_docker()
    from agentflow.sandboxes import DockerSandbox, SandboxLimits

    async def probe() -> list[str]:
        box = await DockerSandbox.create(SandboxLimits(), task_system=True)
        try:
            script = (
                "id -u; touch /etc/written && echo wrote /etc; grep CapEff /proc/self/status | cut -f2; "
                "ls /sys/class/net | tr '\\n' ' '"
            )
            result = await box.exec(["sh", "-c", script])
            return result.stdout.split("\n")
        finally:
            await box.close()

    uid, wrote, capabilities, interfaces = asyncio.run(probe())
    assert (uid, wrote, interfaces.strip()) == ("0", "wrote /etc", "lo")
    assert int(capabilities, 16) == (1 << 0) | (1 << 1) | (1 << 3)  # CHOWN, DAC_OVERRIDE, FOWNER
