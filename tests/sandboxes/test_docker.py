"""The Docker sandbox against the real engine: hardening, the exec server, files, faults, and no leaked containers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow.errors import PathOutsideWorkdirError, SandboxError, SandboxUnavailableError
from agentflow.sandboxes import create_sandbox
from agentflow.sandboxes._docker import DockerSandbox, docker_client

from ._docker_support import container_exists, containers_of, require_docker, wait_until_gone

ROOT = Path(__file__).parents[2]


@pytest.fixture
async def box() -> AsyncIterator[DockerSandbox]:
    require_docker()
    created = await DockerSandbox.create()
    yield created
    await created.close()


async def test_create_sandbox_by_name_gives_a_hardened_container(box: DockerSandbox) -> None:
    via_registry = await create_sandbox("docker")
    try:
        assert isinstance(via_registry, DockerSandbox)
    finally:
        await via_registry.close()
    config = docker_client().api.inspect_container(box.container_id)
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == (box.limits.memory_mb + 64) * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] == box.limits.pids + 32
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Init"] is True
    assert config["Config"]["User"] == "1000:1000"
    assert config["Config"]["Labels"]["agentflow.owner"].endswith(f":{os.getpid()}")
    inside = await box.exec(
        ["sh", "-c", "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; touch /etc/x 2>&1; cat /proc/net/dev"]
    )
    lines = inside.stdout.splitlines()
    assert lines[0] == "1000"
    assert "CapEff:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines
    assert "Read-only file system" in inside.stdout
    assert "eth0" not in inside.stdout  # only the loopback interface exists
    report = box.isolation()
    assert (report.network_isolated, report.filesystem_isolated, report.resource_limits) == (True, True, True)


async def test_execs_go_through_the_exec_server_not_docker_exec(box: DockerSandbox) -> None:
    for _ in range(5):
        assert (await box.exec(["true"])).exit_code == 0
    # `docker exec` registers an exec instance with the engine for every call; the exec server needs none.
    assert not docker_client().api.inspect_container(box.container_id)["ExecIDs"]


async def test_command_not_found_and_binary_output(box: DockerSandbox) -> None:
    missing = await box.exec(["no-such-program"])
    assert (missing.exit_code, missing.timed_out) == (127, False)
    assert "no-such-program: command not found" in missing.stderr
    not_executable = await box.exec(["/etc/passwd"])
    assert not_executable.exit_code == 126
    binary = await box.exec(["sh", "-c", "printf 'a\\000b\\377c'"])
    assert binary.stdout == "a\x00b\ufffdc"


async def test_non_utf8_file_names_round_trip(box: DockerSandbox) -> None:
    made = await box.exec(["sh", "-c", "printf latin1 > \"$(printf 'caf\\351.txt')\""])
    assert made.exit_code == 0, made.stderr
    names = await box.list_files()
    assert names == ["caf\udce9.txt"]  # undecodable bytes come back as surrogate escapes, as os.listdir gives them
    assert await box.read_file(names[0]) == b"latin1"
    await box.write_file("d\udcff/x.txt", b"y")
    shown = await box.exec(["sh", "-c", "ls d*"])
    assert shown.stdout == "x.txt\n"


async def test_a_process_ignoring_sigterm_is_killed_with_its_tree_on_timeout(box: DockerSandbox) -> None:
    script = "trap '' TERM; (trap '' TERM; sleep 60) & setsid sleep 60 & echo started; wait"
    result = await box.exec(["sh", "-c", script], timeout=1)
    assert (result.timed_out, result.exit_code, result.stdout) == (True, -9, "started\n")
    left = await box.exec(["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
    # what is left: docker-init, the exec server, and this sh with its grep (and ls)
    assert int(left.stdout) <= 5, left.stdout


async def test_background_processes_do_not_outlive_their_exec(box: DockerSandbox) -> None:
    started = await box.exec(["sh", "-c", "nohup sleep 30 >/dev/null 2>&1 & echo $!"])
    pid = started.stdout.strip()
    check = await box.exec(["sh", "-c", f"test -d /proc/{pid} && cat /proc/{pid}/comm || echo gone"])
    assert check.stdout.strip() == "gone"


async def test_output_is_capped_and_stdin_is_fed(box: DockerSandbox) -> None:
    flood = await box.exec(["sh", "-c", "head -c 5000000 /dev/zero"])
    assert flood.truncated
    assert len(flood.stdout) == box.limits.output_bytes
    echoed = await box.exec(["wc", "-c"], stdin=os.urandom(3_000_000))
    assert echoed.stdout.strip() == "3000000"


async def test_files_are_confined_to_the_workdir(box: DockerSandbox, tmp_path: Path) -> None:
    await box.exec(["ln", "-s", "/etc", "etc_link"])
    for path in ("../etc/passwd", "/etc/passwd", "etc_link/passwd"):
        with pytest.raises(PathOutsideWorkdirError):
            await box.read_file(path)
    with pytest.raises(PathOutsideWorkdirError):
        await box.write_file("etc_link/evil", "x")
    with pytest.raises(PathOutsideWorkdirError):
        await box.copy_in(str(tmp_path), "etc_link")
    with pytest.raises(PathOutsideWorkdirError):
        await box.exec(["pwd"], cwd="etc_link")
    with pytest.raises(FileNotFoundError):
        await box.exec(["pwd"], cwd="no/such/dir")
    with pytest.raises(IsADirectoryError):
        await box.read_file(".")


async def test_copy_a_directory_in_and_out_through_the_archive_api(box: DockerSandbox, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("VALUE = 41 + 1\n")
    (source / "data.bin").write_bytes(bytes(range(256)))
    (source / "link").symlink_to("pkg/mod.py")
    await box.copy_in(str(source), "project")
    ran = await box.exec(["python3", "-c", "import pkg.mod; print(pkg.mod.VALUE)"], cwd="project")
    assert ran.stdout == "42\n", ran.stderr
    assert (await box.exec(["stat", "-c", "%u", "project/pkg/mod.py"])).stdout == "1000\n"
    await box.exec(["sh", "-c", "echo made > project/pkg/new.txt"])
    out = tmp_path / "out"
    await box.copy_out("project", str(out))
    assert (out / "project" / "pkg" / "new.txt").read_text() == "made\n"
    assert (out / "project" / "data.bin").read_bytes() == bytes(range(256))
    with pytest.raises(FileNotFoundError):
        await box.copy_in(str(tmp_path / "absent"))


async def test_a_container_killed_from_outside_mid_exec_fails_clearly(box: DockerSandbox) -> None:
    running = asyncio.create_task(box.exec(["sleep", "30"]))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(docker_client().api.kill, box.container_id)
    with pytest.raises(SandboxError, match="stopped"):
        await asyncio.wait_for(running, 20)
    assert not box.alive
    with pytest.raises(SandboxError):
        await box.exec(["true"])
    assert await asyncio.to_thread(wait_until_gone, box.container_id)  # auto_remove took it


async def test_a_cancelled_exec_kills_its_process_in_the_container(box: DockerSandbox) -> None:
    running = asyncio.create_task(box.exec(["sh", "-c", "echo $$ > pid; exec sleep 30"]))
    await asyncio.sleep(0.5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    pid = (await box.read_file("pid")).decode().strip()
    for _ in range(50):
        if (await box.exec(["sh", "-c", f"test -d /proc/{pid} && echo alive || echo gone"])).stdout == "gone\n":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the cancelled exec's process still runs")


async def test_dockerd_not_running_names_how_to_start_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("docker")  # the extra is part of the suite's install; without it MissingExtraError is tested
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(SandboxUnavailableError, match="start the Docker engine") as raised:
        await create_sandbox("docker")
    assert "no-engine.sock" in str(raised.value)


async def test_a_missing_image_names_the_build_command() -> None:
    require_docker()
    with pytest.raises(SandboxUnavailableError, match="agentflow sandbox build python"):
        await DockerSandbox.create(image="agentflow/absent-image:never")
    assert containers_of(os.getpid()) == []


async def test_close_removes_the_container_and_its_volume(box: DockerSandbox) -> None:
    volumes = [m["Name"] for m in docker_client().api.inspect_container(box.container_id)["Mounts"]]
    assert len(volumes) == 1
    await box.close()
    await box.close()  # twice is fine
    assert not container_exists(box.container_id)
    assert not docker_client().api.volumes(filters={"name": volumes[0]}).get("Volumes")
    with pytest.raises(SandboxError, match="closed"):
        await box.exec(["true"])


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from agentflow.sandboxes._docker import DockerSandbox

    async def main():
        box = await DockerSandbox.create()
        print(box.container_id, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    "signum", [signal_number for signal_number in (2, 15, 9)], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_the_container_goes_when_its_owner_is_interrupted_terminated_or_killed(signum: int) -> None:
    require_docker()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None
        container_id = holder.stdout.readline().strip()
        assert container_id, holder.stderr.read() if holder.stderr else ""
        assert container_exists(container_id)
        holder.send_signal(signum)
        holder.wait(timeout=30)
        # SIGINT and SIGTERM: removed by the owner on its way out; SIGKILL: the exec server sees its stdin close
        # and exits, and the engine's auto_remove takes the container.
        assert wait_until_gone(container_id), f"container {container_id[:12]} outlived its owner"
        assert containers_of(holder.pid) == []
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()


def test_cleanup_removes_containers_of_dead_owners() -> None:
    require_docker()
    from agentflow.sandboxes._docker import LABEL, OWNER_LABEL, cleanup_containers

    api = docker_client().api
    dead_owner = f"{__import__('socket').gethostname()}:999999999"  # no such pid
    leftover = api.create_container(
        "agentflow/python:latest", command=["true"], labels={LABEL: "docker", OWNER_LABEL: dead_owner}
    )["Id"]
    elsewhere = api.create_container(
        "agentflow/python:latest", command=["true"], labels={LABEL: "docker", OWNER_LABEL: f"x:{os.getpid()}"}
    )["Id"]
    starting = api.create_container(  # created, not yet started, by a process alive here (this one)
        "agentflow/python:latest",
        command=["true"],
        labels={LABEL: "docker", OWNER_LABEL: f"{__import__('socket').gethostname()}:{os.getpid()}"},
    )["Id"]
    try:
        removed = cleanup_containers()
        assert not container_exists(leftover)
        assert any(name for name in removed)
        # created but never started by a process of another machine: abandoned, nobody here will start it
        assert not container_exists(elsewhere)
        # a live process's container may be between create and start: a cleanup beside it leaves it alone
        assert container_exists(starting)
    finally:
        for container in (leftover, elsewhere, starting):
            if container_exists(container):
                api.remove_container(container, force=True)
