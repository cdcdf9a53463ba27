"""Sandbox.fork() on the Docker sandbox against the real engine: a new container with the parent's settings, its
workdir (a tmpfs volume, which ``docker commit`` does not capture) copied, a task system's root filesystem through a
``docker commit`` snapshot, and no image or container left behind."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentflow.errors import SandboxError
from agentflow.sandboxes import SandboxLimits
from agentflow.sandboxes._docker import DockerSandbox, docker_client
from agentflow.sandboxes._docker.client import FORK_OF_LABEL, SNAPSHOT_LABEL

from ._docker_support import container_exists, require_docker
from .test_sandbox_cli import agentflow

ROOT = Path(__file__).parents[2]
DESCRIBE = "find . -printf '%p %y %m %u %l %n\\n' | sort; stat -c 'root %a %u' ."
MAKE_TREE = (
    "mkdir -p src/pkg empty && printf 'print(1)\\n' > src/pkg/run.py && chmod 750 src/pkg/run.py && "
    "ln -s pkg/run.py src/link.py && ln src/pkg/run.py hard.py && mkfifo pipe && "
    "printf x > \"$(printf 'caf\\351')\" && chmod 711 ."  # a FIFO, a name that is not UTF-8
)


def _snapshots() -> list[str]:
    return [image["Id"] for image in docker_client().api.images(filters={"label": SNAPSHOT_LABEL})]


def _image_exists(image_id: str) -> bool:
    return image_id in _snapshots()


async def test_a_fork_is_a_new_container_with_the_parents_settings_and_a_copy_of_its_workdir() -> None:
    require_docker()
    limits = SandboxLimits(output_bytes=2048, memory_mb=256, pids=64, network=False)
    parent = await DockerSandbox.create(limits, labels={"agentflow.run_id": "run-1"}, workdir_mb=64)
    try:
        made = await parent.exec(["sh", "-c", MAKE_TREE])
        assert made.exit_code == 0, made.stderr
        await parent.write_file("blob.bin", bytes(range(256)) * 100)
        before = (await parent.exec(["sh", "-c", DESCRIBE])).stdout
        fork = await parent.fork()
    except BaseException:
        await parent.close()
        raise
    try:
        assert fork.container_id != parent.container_id and fork.forked_from == repr(parent)
        assert (await fork.exec(["sh", "-c", DESCRIBE])).stdout == before  # modes, owners, links, empty folder
        assert await fork.read_file("blob.bin") == bytes(range(256)) * 100
        assert (await fork.exec(["python3", "src/link.py"])).stdout == "1\n"
        # the same container settings
        mine, theirs = (docker_client().api.inspect_container(box.container_id) for box in (fork, parent))
        for key in ("Memory", "PidsLimit", "NanoCpus", "NetworkMode", "ReadonlyRootfs", "CapDrop", "SecurityOpt"):
            assert mine["HostConfig"][key] == theirs["HostConfig"][key], key
        assert (mine["Config"]["User"], mine["Config"]["WorkingDir"]) == ("1000:1000", "/workspace")
        labels = mine["Config"]["Labels"]
        assert labels["agentflow.run_id"] == "run-1" and labels[FORK_OF_LABEL] == parent.container_id
        assert fork.limits == parent.limits
        assert fork.isolation().details["forked_from"] == parent.container_id[:12]
        assert fork.isolation().details["snapshot_image"] is None  # a read-only root has no layer to snapshot
        assert (await fork.exec(["sh", "-c", "head -c 5000 /dev/zero"])).truncated
        # independent both ways
        await fork.write_file("only_fork.txt", "f")
        await parent.write_file("only_parent.txt", "p")
        await fork.exec(["sh", "-c", "rm blob.bin && echo changed >> hard.py"])
        assert "only_fork.txt" not in await parent.list_files()
        assert "only_parent.txt" not in await fork.list_files()
        assert "blob.bin" in await parent.list_files()
        assert await parent.read_file("hard.py") == b"print(1)\n"  # the hard link was copied, not shared
        assert await fork.read_file("src/pkg/run.py") == b"print(1)\nchanged\n"  # and is a hard link in the fork
        # the parent's close leaves the fork working
        await parent.close()
        assert not container_exists(parent.container_id)
        assert (await fork.exec(["cat", "only_fork.txt"])).stdout == "f"
    finally:
        await parent.close()
        await fork.close()
    assert not container_exists(fork.container_id)
    with pytest.raises(SandboxError, match="closed"):
        await fork.fork()


async def test_a_task_system_fork_gets_the_root_filesystem_through_a_snapshot_removed_at_close() -> None:
    require_docker()
    parent = await DockerSandbox.create(task_system=True)
    try:
        await parent.exec(["sh", "-c", "mkdir -p /app && echo system > /app/state && echo work > notes.txt"])
        fork = await parent.fork()
        snapshot = fork.isolation().details["snapshot_image"]
        assert snapshot is not None and _image_exists(snapshot)
        labels = docker_client().api.inspect_image(snapshot)["Config"]["Labels"]
        assert labels[SNAPSHOT_LABEL] == f"{socket.gethostname()}:{os.getpid()}"
        shown = await fork.exec(["sh", "-c", "cat /app/state notes.txt; id -u"])
        assert shown.stdout == "system\nwork\n0\n", shown.stderr
        # a fork of the fork is committed on top of the first snapshot: that one goes once both forks closed
        grandchild = await fork.fork()
        second = grandchild.isolation().details["snapshot_image"]
        await fork.exec(["sh", "-c", "echo changed > /app/state"])
        assert (await grandchild.exec(["cat", "/app/state"])).stdout == "system\n"
        assert (await parent.exec(["cat", "/app/state"])).stdout == "system\n"
        await fork.close()
        assert _image_exists(snapshot)  # still the base of the grandchild's snapshot
        await grandchild.close()
        assert not _image_exists(second) and not _image_exists(snapshot)
    finally:
        await parent.close()


async def test_a_fork_that_cannot_start_removes_its_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    require_docker()
    async with await DockerSandbox.create(task_system=True) as parent:
        before = set(_snapshots())

        async def refuse(*args: object, **kwargs: object) -> DockerSandbox:
            raise SandboxError("the engine refused")

        monkeypatch.setattr(DockerSandbox, "_launch", refuse)
        with pytest.raises(SandboxError, match="refused"):
            await parent.fork()
        assert set(_snapshots()) == before


_KILLED_OWNER = textwrap.dedent(
    """
    import asyncio, os
    from agentflow.sandboxes._docker import DockerSandbox

    async def main():
        box = await DockerSandbox.create(task_system=True)
        fork = await box.fork()
        print(fork.container_id, fork.isolation().details["snapshot_image"], flush=True)
        os.kill(os.getpid(), 9)

    asyncio.run(main())
    """
)


def test_sandbox_cleanup_removes_the_snapshot_images_of_a_killed_process(tmp_path: Path) -> None:
    require_docker()
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_OWNER], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert killed.returncode == -9, killed.stderr
    container_id, snapshot = killed.stdout.split()
    assert _image_exists(snapshot)  # SIGKILL: nothing of the process could remove it
    # the containers of the dead process go first (the engine may be removing them already), then their snapshot
    cleaned = agentflow("sandbox", "cleanup", "--json", cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    removed = json.loads(cleaned.stdout)["removed"]
    assert not _image_exists(snapshot), removed
    assert any(name.startswith("agentflow-fork:") for name in removed)
    assert not container_exists(container_id)


async def test_several_forks_at_once_of_a_task_system_each_get_their_own_snapshot_and_copy() -> None:
    require_docker()  # best-of-N forks its candidates concurrently
    async with await DockerSandbox.create(task_system=True) as parent:
        await parent.exec(["sh", "-c", "mkdir -p /app && echo base > /app/state && echo base > notes.txt"])
        forks = await asyncio.gather(*(parent.fork() for _ in range(3)))
        try:
            snapshots = {fork.isolation().details["snapshot_image"] for fork in forks}
            assert len(snapshots) == 3
            for index, fork in enumerate(forks):
                await fork.exec(["sh", "-c", f"echo {index} > /app/state && echo {index} > notes.txt"])
            for index, fork in enumerate(forks):
                shown = await fork.exec(["cat", "/app/state", "notes.txt"])
                assert shown.stdout == f"{index}\n{index}\n"
        finally:
            await asyncio.gather(*(fork.close() for fork in forks))
        assert not snapshots & set(_snapshots())
