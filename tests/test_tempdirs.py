"""Folders a SIGKILLed process left behind are swept; a living process's folders are not."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from agentflow._tempdirs import sweep_stale
from agentflow.sandboxes import LocalSandbox

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from agentflow.sandboxes import LocalSandbox

    async def main():
        box = await LocalSandbox.create()
        await box.write_file("notes.txt", "left behind")
        print(box._root, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_killed_runs_sandbox_workdir_is_swept_and_a_live_one_is_kept() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        left_behind = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert Path(left_behind).is_dir()
    async with await LocalSandbox.create() as mine:
        # the first sandbox a process makes sweeps in a background thread; this sweep may race it for the folder
        sweep_stale("agentflow-sandbox-")
        for _ in range(100):
            if not Path(left_behind).exists():
                break
            await asyncio.sleep(0.1)
        assert not Path(left_behind).exists()
        assert mine._root.is_dir()
        assert (await mine.exec(["true"])).exit_code == 0
