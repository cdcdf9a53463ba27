"""Cost of ``Sandbox.fork()`` (a branch with ``sandbox: fork``) on the local and Docker sandboxes, each beside a
baseline measured in the same run on the same workdir.

Two workdirs: the shipped ``graphs/examples/fix_failing_test/workspace`` (``small``) and a generated one of 200 files,
5 MB in all, in 10 folders (``large``).

* local: ``LocalSandbox.fork()`` (a new sandbox: private folders, a uid of its own as root, ``cp -a --reflink=auto``
  of the workdir, owners handed over) against a plain ``cp -a`` of the same workdir to a new folder.
* docker: ``DockerSandbox.fork()`` (a new hardened container with the parent's settings and its exec server ready,
  the workdir copied through the archive API) against the raw Docker SDK doing what a harness would: ``commit`` of
  the parent container, ``create_container`` + ``start`` from the snapshot, and the workdir (a volume, which commit
  does not capture) copied with ``get_archive`` + ``put_archive``. ``fork_ms_docker_task_system`` is the fork of a
  task's own system (writable root), which commits a snapshot as well.

The time of a fork is that of the ``fork()`` call (or of the baseline's steps): removing the copy afterwards is not
counted. Keys: ``fork_ms_local``, ``fork_ms_docker`` (small workdir, mean ms), ``*_large``, each with ``*_baseline``
and ``*_ratio`` (fork / baseline). The Docker figures are left out, with a note on stderr, when no engine answers.

    python benchmarks/branching_fork.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentflow.sandboxes import LocalSandbox, Sandbox
from agentflow.sandboxes._docker import DEFAULT_IMAGE, DockerSandbox, docker_available, docker_client, image_available

SMALL_WORKDIR = Path(__file__).resolve().parents[1] / "graphs" / "examples" / "fix_failing_test" / "workspace"
LARGE_FILES, LARGE_BYTES, LARGE_FOLDERS = 200, 5 * 1024 * 1024, 10


def make_large_workdir(root: Path) -> Path:
    """200 files of random bytes (5 MB in all) in 10 folders."""
    size = LARGE_BYTES // LARGE_FILES
    for index in range(LARGE_FILES):
        folder = root / f"pkg{index % LARGE_FOLDERS}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"module{index}.py").write_bytes(os.urandom(size))
    return root


async def mean_ms(runs: int, action: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]) -> float:
    """Mean ms of ``action`` (after one warm-up); each returns its undo, run untimed."""
    samples = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        undo = await action()
        elapsed = (time.perf_counter() - started) * 1000
        await undo()
        if attempt:
            samples.append(elapsed)
    return round(statistics.mean(samples), 3)


def _closer(box: Sandbox) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        await box.close()

    return close


async def measure_local(workdir: Path, runs: int) -> tuple[float, float]:
    """(fork ms, cp -a ms) for a local sandbox holding a copy of ``workdir``."""
    parent = await LocalSandbox.create()
    try:
        await parent.copy_in(str(workdir))
        source = parent._host_workdir

        async def fork() -> Callable[[], Awaitable[None]]:
            return _closer(await parent.fork())

        async def plain_copy() -> Callable[[], Awaitable[None]]:
            target = Path(tempfile.mkdtemp(prefix="agentflow-bench-cp-")) / "work"
            await asyncio.to_thread(subprocess.run, ["cp", "-a", str(source), str(target)], check=True)

            async def remove() -> None:
                shutil.rmtree(target.parent)

            return remove

        return await mean_ms(runs, fork), await mean_ms(runs, plain_copy)
    finally:
        await parent.close()


def _raw_docker_fork(parent_id: str) -> tuple[str, str]:
    """What a harness does with the SDK alone: commit, create and start from the snapshot, copy the workdir volume."""
    from docker.types import DriverConfig, Mount  # type: ignore[import-untyped]

    api = docker_client().api
    image = api.commit(parent_id)["Id"]
    volume = Mount(
        target="/workspace",
        source=None,
        type="volume",
        driver_config=DriverConfig("local", {"type": "tmpfs", "device": "tmpfs", "o": "size=512m,uid=1000,gid=1000"}),
    )
    created = api.create_container(
        image, command=["sleep", "600"], host_config=api.create_host_config(mounts=[volume], network_mode="none")
    )["Id"]
    api.start(created)
    chunks, _ = api.get_archive(parent_id, "/workspace")
    api.put_archive(created, "/", b"".join(chunks))
    return created, image


async def measure_docker(workdir: Path, runs: int, *, task_system: bool = False) -> tuple[float, float]:
    """(fork ms, raw SDK ms) for a Docker sandbox holding a copy of ``workdir``."""
    parent = await DockerSandbox.create(task_system=task_system)
    try:
        await parent.copy_in(str(workdir))

        async def fork() -> Callable[[], Awaitable[None]]:
            return _closer(await parent.fork())

        async def raw() -> Callable[[], Awaitable[None]]:
            container, image = await asyncio.to_thread(_raw_docker_fork, parent.container_id)

            async def remove() -> None:
                api = docker_client().api
                await asyncio.to_thread(api.remove_container, container, force=True, v=True)
                await asyncio.to_thread(api.remove_image, image)

            return remove

        listed = await parent.list_files()
        container, image = await asyncio.to_thread(_raw_docker_fork, parent.container_id)  # the baseline copies all
        try:
            copied = docker_client().api.exec_create(container, ["find", "/workspace", "-type", "f"])
            found = docker_client().api.exec_start(copied["Id"]).decode().split()
            assert len(found) == len(listed), f"the baseline copied {len(found)} of {len(listed)} files"
        finally:
            docker_client().api.remove_container(container, force=True, v=True)
            docker_client().api.remove_image(image)
        return await mean_ms(runs, fork), await mean_ms(runs, raw)
    finally:
        await parent.close()


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("nan")


async def _measure(quick: bool) -> dict[str, float]:
    local_runs, docker_runs = (3, 2) if quick else (30, 8)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-fork-") as scratch:
        large = make_large_workdir(Path(scratch) / "large")
        workdirs = {"": SMALL_WORKDIR, "_large": large}
        for suffix, workdir in workdirs.items():
            fork_ms, baseline_ms = await measure_local(workdir, local_runs)
            figures[f"fork_ms_local{suffix}"] = fork_ms
            figures[f"fork_ms_local{suffix}_baseline"] = baseline_ms
            figures[f"fork_ms_local{suffix}_ratio"] = _ratio(fork_ms, baseline_ms)
        available, reason = docker_available()
        if not (available and image_available(DEFAULT_IMAGE)):
            missing = reason if not available else f"{DEFAULT_IMAGE} is missing"
            print(f"docker figures left out: {missing}", file=sys.stderr)
            return figures
        for suffix, workdir in workdirs.items():
            fork_ms, baseline_ms = await measure_docker(workdir, docker_runs)
            figures[f"fork_ms_docker{suffix}"] = fork_ms
            figures[f"fork_ms_docker{suffix}_baseline"] = baseline_ms
            figures[f"fork_ms_docker{suffix}_ratio"] = _ratio(fork_ms, baseline_ms)
        fork_ms, baseline_ms = await measure_docker(SMALL_WORKDIR, docker_runs, task_system=True)
        figures["fork_ms_docker_task_system"] = fork_ms
        figures["fork_ms_docker_task_system_baseline"] = baseline_ms
        figures["fork_ms_docker_task_system_ratio"] = _ratio(fork_ms, baseline_ms)
    return figures


def measure(quick: bool) -> dict[str, float]:
    """The fork figures (see the module docstring); ``quick``: a few forks each, for tests."""
    return asyncio.run(_measure(quick))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few forks each (for tests)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args(argv)
    figures: dict[str, Any] = measure(options.quick)
    if options.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
