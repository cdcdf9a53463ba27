"""Harbor task.toml's [environment], [agent] and [verifier] settings on the docker sandbox, and task image cleanup.

Every task image here is ``FROM agentflow/python:latest`` (built offline) or that image itself (``docker_image``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from agentflow.bench import read_tasks
from agentflow.sandboxes import TASK_IMAGE_LABEL, build_context_image, cleanup_task_images
from agentflow.sandboxes._docker import docker_client
from agentflow.traces import EventType, RewardData, RunStartedData, SandboxExecData, TraceStore
from tests.cli.test_cli import agentflow
from tests.sandboxes._docker_support import require_docker

DOCKERFILE = "FROM agentflow/python:latest\nUSER root\nRUN useradd --create-home tester\nWORKDIR /app\n"
# The verifier reads the container's own cgroup limits (v2, else v1) and who it runs as, and who the agent was.
LIMITS_TEST = r"""
mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) \
$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)")
echo "memory $mem cpu $cpu verifier $(id -un) agent $(cat /tmp/agent_user)"
[ "$mem" = "{memory}" ] && [ "$cpu" = "50000 100000" ] && [ "$(id -un)" = tester ] \
  && [ "$(cat /tmp/agent_user)" = nobody ] && r=1 || r=0
echo $r > /logs/verifier/reward.txt
"""
TASKS = {
    # 300 MB and half a core, the agent as nobody, the verifier as tester (a user of the image)
    "limits": {
        "toml": '[agent]\nuser = "nobody"\n[verifier]\nuser = "tester"\n[environment]\ncpus = 0.5\nmemory_mb = 300\n',
        "test": LIMITS_TEST.replace("{memory}", str((300 + 64) * 1024 * 1024)),
    },
    # Harbor's older spelling of the memory ("1G"), a storage request and keys from a newer Harbor: warned about
    "legacy": {
        "toml": '[environment]\nmemory = "1G"\nstorage = "10G"\nfuture_option = 3\n[verifier]\nfancy = true\n'
        '[solution]\nenv = {A = "1"}\n[checks]\nx = 1\n',
        "test": '[ "$(id -u)" = 0 ] && echo 1 > /logs/verifier/reward.txt',
    },
    # a prebuilt image (no Dockerfile): used as it is
    "prebuilt": {
        "toml": '[environment]\ndocker_image = "agentflow/python:latest"\n',
        "test": "python3 -c 'print(1)' > /logs/verifier/reward.txt",
        "dockerfile": "",
    },
    # a prebuilt image the engine does not hold: never pulled, the task's run errors
    "unpulled": {
        "toml": '[environment]\ndocker_image = "agentflow-test/never-built:nope"\n',
        "test": "echo 1 > /logs/verifier/reward.txt",
        "dockerfile": "",
    },
    # a verifier running as another user that outlives its timeout: still killed
    "slow-user": {
        "toml": '[verifier]\nuser = "tester"\ntimeout_sec = 1.0\n',
        "test": "sleep 60; echo 1 > /logs/verifier/reward.txt",
    },
}
BROKEN = {
    "compose": ("environment/docker-compose.yaml", "services:\n  main: {build: .}\n", ""),
    "bad-memory": ("", "", '[environment]\nmemory = "lots"\n'),
    "bad-cpus": ("", "", "[environment]\ncpus = -1\n"),
    "bad-internet": ("", "", '[environment]\nallow_internet = "yes"\n'),
    "bad-user": ("", "", '[verifier]\nuser = "no body!"\n'),
    "gpu": ("", "", "[environment]\ngpus = 1\n"),
}
WORKFLOW = """
name: harbor_env_agent
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
  - tool_calls: [{name: shell, arguments: {command: "id -un > /tmp/agent_user"}}]
  - content: Done.
"""
BENCH = """
name: harbor_env_test
workflow: agent.yaml
tasks: {source: harbor, path: tasks}
inputs: {instruction: "{instruction}"}
outcome: {hook: harbor_verifier, timeout_s: 120}
concurrency: 2
retry_errored: 0
"""


def write_task(root: Path, toml: str, test: str, dockerfile: str = DOCKERFILE) -> None:
    (root / "environment").mkdir(parents=True)
    (root / "tests").mkdir()
    if dockerfile:
        (root / "environment" / "Dockerfile").write_text(dockerfile)
    (root / "task.toml").write_text('version = "1.0"\n' + toml)
    (root / "instruction.md").write_text("Say who you are.\n")
    (root / "tests" / "test.sh").write_text("#!/bin/bash\n" + test + "\n")


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("harbor_env")
    for name, task in TASKS.items():
        write_task(root / "tasks" / name, task["toml"], task["test"], task.get("dockerfile", DOCKERFILE))
    for name, (extra_file, extra_text, toml) in BROKEN.items():
        write_task(root / "tasks" / name, toml, "true")
        if extra_file:
            (root / "tasks" / name / extra_file).write_text(extra_text)
    (root / "agent.yaml").write_text(WORKFLOW)
    (root / "agent.script.yaml").write_text(SCRIPT)
    (root / "bench.yaml").write_text(BENCH)
    return root


def test_environment_settings_are_read_and_malformed_ones_name_the_task_directory(bench_folder: Path) -> None:
    folder = bench_folder / "tasks"
    found = read_tasks(folder, source="harbor")
    assert [task.id for task in found.tasks] == sorted(TASKS)
    envs = {task.id: task.environment for task in found.tasks}
    limits, legacy, prebuilt = envs["limits"], envs["legacy"], envs["prebuilt"]
    assert limits is not None and legacy is not None and prebuilt is not None
    assert (limits.cpus, limits.memory_mb, limits.agent_user, limits.verifier_user) == (0.5, 300, "nobody", "tester")
    assert (legacy.memory_mb, legacy.storage_mb, legacy.agent_user) == (1024, 10240, None)
    assert (prebuilt.image, prebuilt.prebuilt) == ("agentflow/python:latest", True)
    assert sorted(str(problem) for problem in found.problems) == sorted(
        [
            f"{folder / 'bad-cpus'}: task.toml: [environment] cpus must be a positive number, not -1",
            f"{folder / 'bad-internet'}: task.toml: [environment] allow_internet must be true or false, not 'yes'",
            f'{folder / "bad-memory"}: task.toml: [environment] memory must be a size such as "2G" or "512M" '
            "(at least 1M), not 'lots'",
            f"{folder / 'bad-user'}: task.toml: [verifier] user must be a user name or uid (`name`, `1000:1000`), "
            "not 'no body!'",
            f"{folder / 'compose'}: environment/docker-compose.yaml: multi-container tasks (a Docker Compose "
            "environment) are not supported: the docker sandbox runs each attempt in one container",
            f"{folder / 'gpu'}: task.toml: [environment] gpus = 1: the docker sandbox gives a task no GPU",
        ]
    )
    assert [str(warning) for warning in found.warnings] == [
        f"{folder / 'legacy'}: task.toml: [environment] storage_mb = 10240 is not enforced: the docker sandbox "
        "cannot limit a container's disk on this engine's storage (overlay2 quotas need xfs with pquota)",
        f"{folder / 'legacy'}: task.toml: unknown keys ignored: checks, [verifier] fancy, [environment] future_option, "
        "[solution] env",
    ]


def test_resources_users_and_prebuilt_images_hold_in_the_tasks_container(bench_folder: Path) -> None:
    require_docker()
    ran = agentflow("bench", "run", "bench.yaml", "--json", cwd=bench_folder)
    assert ran.returncode == 3, ran.stderr  # 3: a run errored (the image that is never pulled)
    assert "tasks/compose: skipped: environment/docker-compose.yaml: multi-container tasks" in ran.stderr
    assert "tasks/legacy: warning: task.toml: [environment] storage_mb = 10240 is not enforced" in ran.stderr
    assert "tasks/legacy: warning: task.toml: unknown keys ignored" in ran.stderr
    report = json.loads(ran.stdout)
    rows = {row["task_id"]: row for row in report["tasks"]}
    assert {task_id: row["correct"] for task_id, row in rows.items() if task_id != "unpulled"} == {
        "limits": 1,
        "legacy": 1,
        "prebuilt": 1,
        "slow-user": 0,
    }
    store = TraceStore(bench_folder / ".agentflow")
    (bench_run,) = store.list_bench_runs()
    items = {item.task_id: item for item in store.list_bench_items(bench_run.bench_run_id)}
    assert items["unpulled"].status == "errored"
    unpulled = store.load_trace(items["unpulled"].run_id).summary()
    assert "'agentflow-test/never-built:nope' is not on this Docker engine" in str(unpulled.error)

    def verifier_of(task_id: str) -> tuple[RewardData, list[SandboxExecData]]:
        events = store.load_trace(items[task_id].run_id).events
        (reward,) = [e.data_as(RewardData) for e in events if e.type is EventType.REWARD]
        execs = [e.data_as(SandboxExecData) for e in events if e.type is EventType.SANDBOX_EXEC]
        return reward, execs

    reward, execs = verifier_of("limits")
    (test_run,) = [data for data in execs if "/tests/test.sh" in " ".join(data["cmd"])]
    assert test_run["stdout"] == f"memory {(300 + 64) * 1024 * 1024} cpu 50000 100000 verifier tester agent nobody\n"
    assert reward["components"]["user"] == "tester"
    started = store.load_trace(items["limits"].run_id).events[0].data_as(RunStartedData)
    assert started["bench"]["verifier"]["user"] == "tester"
    assert started["sandbox"]["isolation"]["details"]["run_as"] == "nobody"
    slow, _ = verifier_of("slow-user")
    assert slow["explanation"] == "the verifier timed out after 1s"


def test_cleanup_keeps_each_tasks_newest_image_and_never_touches_other_images(tmp_path: Path) -> None:
    require_docker()
    client = docker_client()
    repository = f"agentflow-harbor-test-{secrets.token_hex(4)}"
    built: dict[str, list[str]] = {"alpha": [], "beta": []}
    for task, versions in (("alpha", 3), ("beta", 1)):
        for version in range(versions):
            context = tmp_path / f"{task}{version}"
            context.mkdir()
            (context / "Dockerfile").write_text(f"FROM agentflow/python:latest\nLABEL test.version={version}\n")
            tag = f"{repository}/{task}:v{version}"
            build_context_image(context, tag, labels={TASK_IMAGE_LABEL: task})
            built[task].append(tag)
    foreign = f"{repository}/foreign:v0"  # in the repository but not built for a task (no label): never removed
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "Dockerfile").write_text("FROM agentflow/python:latest\nLABEL test.foreign=1\n")
    build_context_image(tmp_path / "foreign", foreign)
    (tmp_path / "foreign2").mkdir()
    (tmp_path / "foreign2" / "Dockerfile").write_text("FROM agentflow/python:latest\nLABEL test.foreign=2\n")
    build_context_image(tmp_path / "foreign2", f"{repository}/foreign:v1")

    def tags() -> set[str]:
        return {tag for image in client.images.list() for tag in image.tags if tag.startswith(f"{repository}/")}

    try:
        assert cleanup_task_images(repository) == built["alpha"][:2]  # alpha's two older builds
        assert tags() == {built["alpha"][2], built["beta"][0], foreign, f"{repository}/foreign:v1"}
        assert cleanup_task_images(repository) == []
        assert cleanup_task_images(repository, keep=0) == sorted([built["alpha"][2], built["beta"][0]])
        assert tags() == {foreign, f"{repository}/foreign:v1"}
        assert "agentflow/python:latest" in {tag for image in client.images.list() for tag in image.tags}
    finally:
        for tag in tags():
            client.images.remove(tag)


def test_sandbox_cleanup_lists_the_task_images_it_removed(tmp_path: Path, machine_wide_cleanup: None) -> None:
    require_docker()
    client = docker_client()
    task = f"cleanup-cli-{secrets.token_hex(4)}"
    tags = []
    for version in range(2):
        context = tmp_path / f"v{version}"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM agentflow/python:latest\nLABEL test.version={version}\n")
        tags.append(f"agentflow-harbor/{task}:v{version}")
        build_context_image(context, tags[-1], labels={TASK_IMAGE_LABEL: task})
    try:
        ran = agentflow("sandbox", "cleanup", "--json", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert tags[0] in json.loads(ran.stdout)["images"] and tags[1] not in json.loads(ran.stdout)["images"]
        remaining = {tag for image in client.images.list() for tag in image.tags}
        assert tags[0] not in remaining and tags[1] in remaining
    finally:
        for tag in tags:
            if any(tag in image.tags for image in client.images.list()):
                client.images.remove(tag)


def test_commands_of_a_named_user_have_no_capability_and_die_with_their_timed_out_exec() -> None:
    require_docker()
    from agentflow.sandboxes import DockerSandbox, SandboxLimits, commands_as

    async def probe() -> tuple[str, str, str, str]:
        box = await DockerSandbox.create(SandboxLimits(), task_system=True, run_as="nobody")
        try:
            who = await box.exec(["sh", "-c", "id -un; grep CapEff /proc/self/status | cut -f2"])
            # a process that left the exec's session and process group (setsid) is still the exec's
            timed = await box.exec(["sh", "-c", "(setsid sleep 300 &); sleep 301"], timeout=1)
            with commands_as("0"):
                root = await box.exec(["id", "-un"])
                left = await box.exec(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -o 'sleep 30[0-9]'"])
            return who.stdout, str(timed.timed_out), root.stdout, left.stdout
        finally:
            await box.close()

    assert asyncio.run(probe()) == ("nobody\n0000000000000000\n", "True", "root\n", "")


def test_sandbox_cleanup_harbor_images_removes_every_task_image_but_no_other(tmp_path: Path) -> None:
    require_docker()
    client = docker_client()
    task = f"cleanup-all-{secrets.token_hex(4)}"
    ours, foreign = f"agentflow-harbor/{task}:v0", f"agentflow-harbor/{task}-foreign:v0"
    for tag, labels in ((ours, {TASK_IMAGE_LABEL: task}), (foreign, None)):
        context = tmp_path / tag.replace("/", "_").replace(":", "_")
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM agentflow/python:latest\nLABEL test.tag={tag}\n")
        build_context_image(context, tag, labels=labels)
    try:
        ran = agentflow("sandbox", "cleanup", "--harbor-images", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert f"\n  {ours}" in ran.stdout and "task image" in ran.stdout
        remaining = {tag for image in client.images.list() for tag in image.tags}
        assert ours not in remaining and foreign in remaining and "agentflow/python:latest" in remaining
    finally:
        for tag in (ours, foreign):
            if any(tag in image.tags for image in client.images.list()):
                client.images.remove(tag)
