"""Copying a host folder to any absolute path of a sandbox whose system the commands may write (a task's own
image), through one ``tar -x`` exec: unlike ``copy_in``, which writes only inside the workdir."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from agentflow.errors import SandboxError
from agentflow.sandboxes._base import Sandbox


def tar_folder(source: Path) -> bytes:
    """A tar of a folder's contents (modes kept, owned by root), for ``tar -x`` in a sandbox."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(source.rglob("*")):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(source).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isfile():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return buffer.getvalue()


async def copy_folder_to(box: Sandbox, source: Path, dest: str, *, timeout: float = 120.0) -> None:
    """Replace the sandbox's absolute folder ``dest`` by a copy of the host folder ``source`` (one recorded exec
    when ``box`` records its commands).

    Raises:
        SandboxError: the copy failed in the sandbox (``dest`` not writable, no ``tar`` in the image).
    """
    result = await box.exec(
        ["sh", "-c", 'rm -rf "$1" && mkdir -p "$1" && tar -x -C "$1"', "copy", dest],
        stdin=tar_folder(source),
        timeout=timeout,
    )
    if result.exit_code != 0:
        raise SandboxError(f"could not copy {source} to {dest} in the sandbox: {result.stderr[-500:]}")
