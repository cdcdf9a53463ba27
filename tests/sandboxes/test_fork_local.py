"""Sandbox.fork() on the local sandbox: a copied workdir, independent of its parent, never pooled."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentflow.errors import SandboxError
from agentflow.sandboxes import LocalSandbox, SandboxLimits, SandboxPool
from agentflow.sandboxes._base import ObservedSandbox

from .conftest import require_namespaces

# A workdir with what a plain file copy tends to lose: an executable mode, a relative symlink, an empty folder,
# a hard link, a locked (chmod 000) folder, bytes of every value.
MAKE_TREE = (
    "mkdir -p src/pkg empty locked && printf 'print(1)\\n' > src/pkg/run.py && chmod 755 src/pkg/run.py && "
    "ln -s pkg/run.py src/link.py && ln src/pkg/run.py hard.py && echo secret > locked/inner.txt && "
    "chmod 000 locked && chmod 640 hard.py"
)
DESCRIBE = "find . -printf '%p %y %m %l %n\\n' | sort"


async def _modes(box: LocalSandbox) -> str:
    shown = await box.exec(["sh", "-c", DESCRIBE])
    assert shown.exit_code == 0, shown.stderr
    return shown.stdout


@pytest.mark.parametrize("mode", ["namespaces", "process"])
async def test_a_fork_copies_the_workdir_exactly_and_is_independent(mode: str) -> None:
    if mode == "namespaces":
        require_namespaces()
    limits = SandboxLimits(output_bytes=4096, exec_timeout_s=17)
    parent = await LocalSandbox.create(limits, mode=mode)  # type: ignore[arg-type]
    made = await parent.exec(["sh", "-c", MAKE_TREE])
    assert made.exit_code == 0, made.stderr
    await parent.write_file("blob.bin", bytes(range(256)))
    before = await _modes(parent)
    fork = await parent.fork()
    try:
        assert fork.forked_from == repr(parent)
        assert (fork.mode, fork.limits) == (parent.mode, parent.limits)
        assert (fork.workdir == parent.workdir) == (mode == "namespaces")  # process mode shows each host folder
        assert await _modes(fork) == before  # modes, symlink targets, empty folder, hard link count
        assert await fork.read_file("blob.bin") == bytes(range(256))
        assert (await fork.exec(["python3", "src/link.py"])).stdout == "1\n"
        # the fork's user owns its copy: it can unlock and change what the parent's user made
        unlocked = await fork.exec(["sh", "-c", "chmod 700 locked && cat locked/inner.txt && echo x >> hard.py"])
        assert (unlocked.exit_code, unlocked.stdout) == (0, "secret\n"), unlocked.stderr
        # independent both ways
        await fork.write_file("only_fork.txt", "f")
        await parent.write_file("only_parent.txt", "p")
        await fork.exec(["rm", "blob.bin"])
        assert "only_fork.txt" not in await parent.list_files()
        assert "only_parent.txt" not in await fork.list_files()
        assert await parent.read_file("blob.bin") == bytes(range(256))
        assert await parent.read_file("src/pkg/run.py") == b"print(1)\n"  # the hard link was not shared
        # the same limits hold: the output cap of the parent's limits
        flood = await fork.exec(["sh", "-c", "head -c 10000 /dev/zero"])
        assert flood.truncated and len(flood.stdout) == 4096
        # closing the parent leaves the fork working
        await parent.close()
        assert (await fork.exec(["cat", "only_fork.txt"])).stdout == "f"
    finally:
        await parent.close()
        await fork.close()
    assert not fork._root.exists()  # closing the fork removed its private folder
    with pytest.raises(SandboxError, match="closed"):
        await fork.exec(["true"])


async def test_as_root_the_fork_has_its_own_uid_that_owns_the_copy(sandbox: LocalSandbox) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root gives each sandbox its own uid")
    await sandbox.write_file("a/b.txt", "x")
    await sandbox.exec(["sh", "-c", "touch a/setgid && chmod 2755 a/setgid"])
    async with await sandbox.fork() as fork:
        assert fork._sandbox_uid != sandbox._sandbox_uid
        for path in (fork._host_workdir, fork._host_workdir / "a", fork._host_workdir / "a" / "b.txt"):
            assert path.lstat().st_uid == fork._sandbox_uid
        copied = (fork._host_workdir / "a" / "setgid").lstat()
        assert stat.S_IMODE(copied.st_mode) == 0o2755  # the mode chown would clear was restored


async def test_process_mode_repoints_absolute_symlinks_into_the_parents_workdir(process_mode: LocalSandbox) -> None:
    await process_mode.write_file("data.txt", "mine")
    await process_mode.exec(["ln", "-s", f"{process_mode.workdir}/data.txt", "abs_link"])
    async with await process_mode.fork() as fork:
        assert os.readlink(Path(fork.workdir) / "abs_link") == f"{fork.workdir}/data.txt"
        await fork.write_file("data.txt", "forked")
        assert (await fork.exec(["cat", "abs_link"])).stdout == "forked"
        assert await fork.read_file("abs_link") == b"forked"
    assert await process_mode.read_file("abs_link") == b"mine"


async def test_a_fork_of_a_lent_or_observed_sandbox_is_the_backends_and_never_pooled() -> None:
    async with SandboxPool(LocalSandbox.create, size=1) as pool:
        lent = await pool.acquire()
        await lent.write_file("x.txt", "lent")
        seen: list[list[str]] = []
        observed = ObservedSandbox(lent, lambda cmd, cwd, result: seen.append(cmd))
        fork = await observed.fork()
        assert isinstance(fork, LocalSandbox) and fork.forked_from is not None
        assert ObservedSandbox(fork, None).forked_from == fork.forked_from
        assert await fork.read_file("x.txt") == b"lent"
        with pytest.raises(SandboxError, match="never handed back to a pool"):
            await pool.release(fork)
        await lent.close()  # back to the pool (a local sandbox is discarded and replaced)
        assert await fork.read_file("x.txt") == b"lent"
        await fork.close()
        assert not fork._root.exists()
        assert pool.stats()["in_use"] == 0


async def test_a_pool_whose_factory_forks_discards_each_fork_on_release(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("seed.txt", "seed")
    async with SandboxPool(sandbox.fork, size=1) as pool:
        lent = await pool.acquire()
        inner = lent.inner
        assert await lent.read_file("seed.txt") == b"seed"
        await lent.close()
        await pool.start()
        again = await pool.acquire()
        assert again.inner is not inner  # the fork was closed, a new one made in its place
        assert isinstance(inner, LocalSandbox) and not inner._root.exists()
        await again.close()


async def test_a_closed_sandbox_cannot_fork() -> None:
    box = await LocalSandbox.create()
    await box.close()
    with pytest.raises(SandboxError, match="closed"):
        await box.fork()
