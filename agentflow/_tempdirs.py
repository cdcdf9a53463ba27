"""Private temporary folders that name their owning process, so the ones a killed process left behind get removed.

A run killed with SIGKILL cannot clean up after itself: its sandbox workdirs and language-server mirrors would stay
in the temporary folder for good. Each folder's name carries the pid of the process that made it
(``agentflow-sandbox-<pid>-<random>``); the first folder a process makes of a kind starts a sweep, in a background
thread, of the folders of that kind whose process no longer exists and that belong to this user.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from agentflow._processes import pid_alive

_swept: set[str] = set()
_swept_lock = threading.Lock()


def owned_tempdir(prefix: str) -> Path:
    """Make a private folder ``<tmp>/<prefix><pid>-<random>``; the first call per prefix sweeps stale ones."""
    with _swept_lock:
        first = prefix not in _swept
        _swept.add(prefix)
    if first:
        threading.Thread(target=sweep_stale, args=(prefix,), name=f"sweep {prefix}", daemon=True).start()
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def sweep_stale(prefix: str, folder: str | None = None) -> list[Path]:
    """Remove the ``prefix`` folders of processes that are gone (and this user's); return what was removed."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)-")
    base = Path(folder or tempfile.gettempdir())
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            match = pattern.match(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or pid_alive(int(match.group(1))):
                    continue
                shutil.rmtree(entry.path)
                removed.append(Path(entry.path))
    return removed
