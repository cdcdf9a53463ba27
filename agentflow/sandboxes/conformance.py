"""The conformance suite every sandbox backend passes, shipped in the package so a backend's author can run it.

Each check is an async function over a *factory* (``Callable[[], Awaitable[Sandbox]]``) that makes a fresh sandbox;
a check creates what it needs, closes it, and raises ``CheckFailed`` (or any exception) when the backend misbehaves,
or ``CheckSkipped`` when the backend honestly reports it does not offer what the check tests (for example network
isolation when the limits allow network). ``run_conformance`` runs them all and returns printable results::

    from agentflow.sandboxes import LocalSandbox
    from agentflow.sandboxes.conformance import run_conformance

    for result in await run_conformance(LocalSandbox.create):
        print(result)

The ``fork_*`` checks (``FORK_CHECKS``) test ``Sandbox.fork()``: the copied workdir, isolation both ways, the
limits kept, a fork outliving its parent, a closed fork gone. The checks need ``sh``, the POSIX utilities and
``python3`` inside the sandbox. To check a warm pool's reset, pass a
factory that acquires from it (``pool.acquire``): ``reset_between_uses`` then gets the same sandbox back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from agentflow._conformance import (
    CheckFailed,
    CheckRegistry,
    CheckResult,
    CheckSkipped,
    CheckStatus,
    ConformanceReport,
    run_async_check,
)
from agentflow._conformance import expect as _expect
from agentflow.errors import FileTooLargeError, PathOutsideWorkdirError, SandboxError
from agentflow.sandboxes._base import Sandbox

__all__ = [  # the check_* functions are importable too, for a suite that reuses some of them
    "CHECKS",
    "CHECK_TIMEOUT_S",
    "FORK_CHECKS",
    "Check",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "CheckStatus",
    "ConformanceReport",
    "SandboxFactory",
    "run_check",
    "run_conformance",
]

SandboxFactory = Callable[[], Awaitable[Sandbox]]
Check = Callable[[SandboxFactory], Awaitable[None]]

CHECK_TIMEOUT_S = 120.0
"""A check that has not finished by then fails: a hanging backend must not hang the suite."""


@contextlib.asynccontextmanager
async def _fresh(factory: SandboxFactory) -> AsyncIterator[Sandbox]:
    created = await factory()
    try:
        yield created
    finally:
        await created.close()


def _short(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


# -- exec -----------------------------------------------------------------------------------------------------------


async def check_exec_exit_codes(factory: SandboxFactory) -> None:
    """``exit_code`` is the command's: 0, 1 and an arbitrary code, with stdout and stderr kept apart."""
    async with _fresh(factory) as box:
        for cmd, expected in ((["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42)):
            result = await box.exec(cmd)
            _expect(result.exit_code == expected, f"{cmd} exited {result.exit_code}, expected {expected}")
        result = await box.exec(["sh", "-c", "echo out; echo err >&2"])
        _expect(result.stdout == "out\n", f"stdout {result.stdout!r}, expected 'out\\n'")
        _expect(result.stderr == "err\n", f"stderr {result.stderr!r}, expected 'err\\n'")


async def check_stdin(factory: SandboxFactory) -> None:
    """Text and bytes given as ``stdin`` reach the command intact, and the command's exit code comes back."""
    async with _fresh(factory) as box:
        result = await box.exec(["cat"], stdin="line one\nline two\n")
        _expect(result.stdout == "line one\nline two\n", f"cat echoed {result.stdout!r}")
        _expect(result.exit_code == 0, f"cat with stdin exited {result.exit_code}, expected 0")
        result = await box.exec(["wc", "-c"], stdin=b"\x00\x01\x02" * 1000)
        _expect(result.stdout.strip() == "3000", f"wc -c counted {result.stdout.strip()!r} of 3000 bytes")
        _expect(result.exit_code == 0, f"wc -c with stdin exited {result.exit_code}, expected 0")


QUICK_COMMANDS = 500
"""How many short commands ``check_quick_exit_codes`` runs."""

_QUICK_CONCURRENCY = 4
_CLOSED_STDIO = "exec >&- 2>&-; sleep {seconds}; exit 3"


@dataclass(frozen=True)
class _QuickCommand:
    label: str
    cmd: list[str]
    exit_code: int
    stdin: bytes | None = None
    stdout: str | None = None


def _quick_commands(count: int) -> list[_QuickCommand]:
    """Commands that close stdout and stderr as they exit (coreutils do), or long before (a closed-stdio sh)."""
    cycle = [
        _QuickCommand("cat with stdin", ["cat"], 0, b"quick\n", "quick\n"),
        _QuickCommand("wc -c with stdin", ["wc", "-c"], 0, b"x" * 300, "300"),
        _QuickCommand("ls", ["ls"], 0, None, "seen.txt"),
        _QuickCommand("rm -f missing", ["rm", "-f", "absent.txt"], 0, None, ""),
    ]
    commands = []
    for index in range(count - 1):
        if index % 50 == 49:  # a handful with short sleeps; the 1 s one below shows the race is gone, not just rare
            commands.append(_QuickCommand("closed-stdio sh", ["sh", "-c", _CLOSED_STDIO.format(seconds=0.05)], 3))
        else:
            commands.append(cycle[index % len(cycle)])
    commands.append(_QuickCommand("closed-stdio sh, 1 s", ["sh", "-c", _CLOSED_STDIO.format(seconds=1)], 3))
    return commands


async def check_quick_exit_codes(factory: SandboxFactory) -> None:
    """500 short commands (``cat`` and ``wc -c`` with stdin, ``ls``, ``rm -f missing``, an ``sh`` that closes
    stdout and stderr and exits 3 later, once after 1 s) each report their own exit code and output, never the -9 of
    a kill that raced their exit once their output pipes closed."""
    commands = _quick_commands(QUICK_COMMANDS)
    gate = asyncio.Semaphore(_QUICK_CONCURRENCY)
    wrong: dict[str, list[str]] = {}

    async def run(command: _QuickCommand) -> None:
        async with gate:
            result = await box.exec(command.cmd, stdin=command.stdin, timeout=30)
        problems = []
        if result.exit_code != command.exit_code or result.timed_out:
            problems.append(f"exit {result.exit_code}" + (" timed out" if result.timed_out else ""))
        if command.stdout is not None and result.stdout.strip() != command.stdout.strip():
            problems.append(f"stdout {_short(result.stdout, 40)!r}")
        if problems:
            wrong.setdefault(command.label, []).append(", ".join(problems))

    async with _fresh(factory) as box:
        await box.write_file("seen.txt", "listed by ls")
        # the 1 s command starts first and runs alongside the rest
        await asyncio.gather(*(run(command) for command in reversed(commands)))
    if wrong:
        summary = "; ".join(
            f"{label}: {len(found)} wrong (expected exit {next(c.exit_code for c in commands if c.label == label)}), "
            f"e.g. {found[0]}"
            for label, found in wrong.items()
        )
        total = sum(len(found) for found in wrong.values())
        raise CheckFailed(f"{total} of {len(commands)} short commands came back wrong: {summary}")


async def check_large_argv_and_env(factory: SandboxFactory) -> None:
    """A 1 MiB argv (16 arguments of 64 KiB) and a 512 KiB environment (8 variables of 64 KiB) reach the command
    intact (Linux caps one string at 128 KiB and all of them at a quarter of the stack limit, 2 MiB by default)."""
    piece = 64 * 1024
    argv = [f"{n:02d}" + secrets.token_hex(piece // 2)[: piece - 2] for n in range(16)]
    env = {f"AGENTFLOW_BIG_{n}": secrets.token_hex(piece // 2)[: piece - 1] for n in range(8)}
    digest_argv = (
        "import hashlib, sys\n"
        "joined = '\\0'.join(sys.argv[1:]).encode()\n"
        "print(len(sys.argv) - 1, len(joined), hashlib.sha256(joined).hexdigest())\n"
    )
    digest_env = (
        "import hashlib, os\n"
        "joined = '\\0'.join(k + '=' + v for k, v in sorted(os.environ.items()) if k.startswith('AGENTFLOW_BIG_'))\n"
        "print(len(joined), hashlib.sha256(joined.encode()).hexdigest())\n"
    )
    joined_argv = "\0".join(argv).encode()
    joined_env = "\0".join(f"{k}={v}" for k, v in sorted(env.items())).encode()
    async with _fresh(factory) as box:
        result = await box.exec(["python3", "-c", digest_argv, *argv], timeout=60)
        expected = f"{len(argv)} {len(joined_argv)} {hashlib.sha256(joined_argv).hexdigest()}"
        _expect(result.exit_code == 0, f"a 1 MiB argv: exit {result.exit_code}: {_short(result.stderr)}")
        _expect(result.stdout.strip() == expected, f"a 1 MiB argv arrived as {result.stdout.strip()!r}")
        result = await box.exec(["python3", "-c", digest_env], env=env, timeout=60)
        expected = f"{len(joined_env)} {hashlib.sha256(joined_env).hexdigest()}"
        _expect(result.exit_code == 0, f"a 512 KiB environment: exit {result.exit_code}: {_short(result.stderr)}")
        _expect(result.stdout.strip() == expected, f"a 512 KiB environment arrived as {result.stdout.strip()!r}")


async def check_env(factory: SandboxFactory) -> None:
    """Variables given to ``exec`` are visible to the command."""
    async with _fresh(factory) as box:
        result = await box.exec(["sh", "-c", 'printf %s "$AGENTFLOW_CHECK"'], env={"AGENTFLOW_CHECK": "a b=c"})
        _expect(result.stdout == "a b=c", f"the command saw {result.stdout!r}")


async def check_cwd(factory: SandboxFactory) -> None:
    """Commands start in the workdir, or in ``cwd`` (relative to it) when given."""
    async with _fresh(factory) as box:
        result = await box.exec(["pwd"])
        _expect(result.stdout.strip() == box.workdir, f"pwd is {result.stdout.strip()!r}, workdir {box.workdir!r}")
        await box.write_file("sub/dir/marker.txt", "here")
        result = await box.exec(["cat", "marker.txt"], cwd="sub/dir")
        _expect(result.stdout == "here", f"cat in cwd sub/dir gave {result.stdout!r} {result.stderr!r}")


async def check_large_output_capped(factory: SandboxFactory) -> None:
    """A 30 MB flood is capped, flagged ``truncated`` and the exec still returns the exit code."""
    async with _fresh(factory) as box:
        result = await box.exec(["sh", "-c", "head -c 30000000 /dev/zero | tr '\\0' x; echo done >&2"])
        _expect(result.truncated, "30 MB of output was not flagged truncated")
        _expect(0 < len(result.stdout) < 30_000_000, f"kept {len(result.stdout)} characters of 30 MB")
        _expect(set(result.stdout) == {"x"}, "the kept output is not the start of what was written")
        _expect(result.exit_code == 0, f"exit code {result.exit_code} after the flood")


async def check_timeout(factory: SandboxFactory) -> None:
    """A command that outlives ``timeout`` is killed, even one that ignores SIGTERM."""
    async with _fresh(factory) as box:
        # 2 s: the output must come before the kill, also when a loaded machine is slow to start the command
        result = await box.exec(["sh", "-c", "trap '' TERM; echo started; sleep 60"], timeout=2)
        _expect(result.timed_out, f"not flagged timed_out: exit {result.exit_code}")
        _expect(result.exit_code != 0, "a killed command reported exit code 0")
        _expect(result.stdout == "started\n", f"output before the timeout was lost: {result.stdout!r}")
        after = await box.exec(["echo", "alive"])
        _expect(after.stdout == "alive\n", "the sandbox does not work after a timeout")


async def _ticks(box: Sandbox, path: str) -> str:
    try:
        return (await box.read_file(path)).decode()
    except FileNotFoundError:
        return ""


async def check_kill_process_tree_on_timeout(factory: SandboxFactory) -> None:
    """On timeout, children and grandchildren die too, even one that left the process group with ``setsid``."""
    # Each tick replaces the file by a rename, so a tick killed halfway never leaves it empty; the command waits for
    # both tickers' first tick, so a slow start on a loaded machine cannot be mistaken for a ticker that never ran.
    ticker = "i=0; while true; do i=$((i+1)); echo $i > {name}.new && mv {name}.new {name}; sleep 0.1; done"
    script = (
        "trap '' TERM; "
        f"(sh -c '{ticker.format(name='child.tick')}' &); "
        f"(setsid sh -c '{ticker.format(name='escaped.tick')}' &); "
        "while [ ! -e child.tick ] || [ ! -e escaped.tick ]; do sleep 0.05; done; "
        "sleep 60"
    )
    async with _fresh(factory) as box:
        result = await box.exec(["sh", "-c", script], timeout=3)
        _expect(result.timed_out, "the command was not timed out")
        for name in ("child.tick", "escaped.tick"):
            before = await _ticks(box, name)
            _expect(before != "", f"{name}: the background process never ran")
            await asyncio.sleep(0.6)
            after = await _ticks(box, name)
            _expect(before == after, f"{name}: still running after the timeout ({before.strip()} -> {after.strip()})")


async def check_command_not_found(factory: SandboxFactory) -> None:
    """A missing program is a non-zero result with a reason, not an exception."""
    async with _fresh(factory) as box:
        result = await box.exec(["agentflow-no-such-command-" + secrets.token_hex(4)])
        _expect(result.exit_code != 0, "a missing command exited 0")
        _expect(not result.timed_out, "a missing command was reported as timed out")
        _expect(result.stderr.strip() != "", "a missing command gave no message on stderr")


async def check_binary_output(factory: SandboxFactory) -> None:
    """Bytes that are not UTF-8 come back decoded with replacement characters, the rest intact."""
    async with _fresh(factory) as box:
        result = await box.exec(["sh", "-c", "printf 'ok\\377\\376end'"])
        _expect(result.exit_code == 0, f"printf failed: {result.stderr!r}")
        _expect(result.stdout.startswith("ok") and result.stdout.endswith("end"), f"got {result.stdout!r}")
        _expect("\ufffd" in result.stdout, f"invalid UTF-8 was not replaced: {result.stdout!r}")


async def check_parallel_execs(factory: SandboxFactory) -> None:
    """Concurrent execs in one sandbox each get their own output."""
    async with _fresh(factory) as box:
        results = await asyncio.gather(
            *(box.exec(["sh", "-c", f"sleep 0.3; echo {n}"]) for n in range(6)),
        )
        for n, result in enumerate(results):
            _expect(result.stdout == f"{n}\n", f"exec {n} returned {result.stdout!r}")


# -- files ----------------------------------------------------------------------------------------------------------


async def check_files_text_and_binary(factory: SandboxFactory) -> None:
    """Text and every byte value round-trip through write_file/read_file and are visible to commands."""
    async with _fresh(factory) as box:
        await box.write_file("notes/hello.txt", "héllo\n")
        _expect(await box.read_file("notes/hello.txt") == "héllo\n".encode(), "text did not round-trip")
        shown = await box.exec(["cat", "notes/hello.txt"])
        _expect(shown.stdout == "héllo\n", f"the command read {shown.stdout!r}")
        every_byte = bytes(range(256)) * 4
        await box.write_file("blob.bin", every_byte)
        _expect(await box.read_file("blob.bin") == every_byte, "binary data did not round-trip")
        await box.exec(["sh", "-c", "printf 'from\\0cmd' > made.bin"])
        _expect(await box.read_file("made.bin") == b"from\x00cmd", "a file made by a command did not read back")
        _expect(
            await box.list_files() == ["blob.bin", "made.bin", "notes/hello.txt"],
            f"list_files gave {await box.list_files()}",
        )
        absolute = f"{box.workdir.rstrip('/')}/notes/hello.txt"
        _expect(await box.read_file(absolute) == "héllo\n".encode(), f"absolute path {absolute} inside was refused")


async def check_files_big(factory: SandboxFactory) -> None:
    """A 20 MB file round-trips (or a file of ``limits.read_bytes``, when that is smaller)."""
    async with _fresh(factory) as box:
        big = (os.urandom(1 << 20) * 20)[: min(20 << 20, box.limits.read_bytes)]
        await box.write_file("big.bin", big)
        _expect(await box.read_file("big.bin") == big, "a 20 MB file did not round-trip")
        size = await box.exec(["wc", "-c", "big.bin"])
        _expect(size.stdout.split()[0] == str(len(big)), f"the command saw {size.stdout.strip()}")
        _expect(size.exit_code == 0, f"wc -c exited {size.exit_code}")


async def check_files_missing(factory: SandboxFactory) -> None:
    """Reading or listing a missing path raises FileNotFoundError."""
    async with _fresh(factory) as box:
        for operation in (box.read_file("absent.txt"), box.list_files("absent_dir")):
            try:
                await operation
            except FileNotFoundError:
                continue
            raise CheckFailed("a missing path did not raise FileNotFoundError")


async def _expect_denied(operation: Awaitable[object], what: str) -> PermissionError:
    try:
        await operation
    except PathOutsideWorkdirError as exc:
        raise CheckFailed(f"{what} was refused as outside the workdir, not for its permissions: {exc}") from None
    except PermissionError as exc:
        return exc
    raise CheckFailed(f"{what} succeeded: file operations do not act with the sandbox user's rights")


async def check_files_respect_permissions(factory: SandboxFactory) -> None:
    """File operations act with the sandbox user's rights, as its commands do: a file a command made unreadable
    (``chmod 000``) and a file in a folder it locked are neither read nor written (PermissionError), and stay as
    they were."""
    async with _fresh(factory) as box:
        await box.write_file("locked.txt", "kept")
        await box.write_file("closed/inner.txt", "inner")
        locked = await box.exec(["sh", "-c", "chmod 000 locked.txt && chmod 000 closed"])
        _expect(locked.exit_code == 0, f"could not chmod: {locked.stderr!r}")
        try:
            await _expect_denied(box.read_file("locked.txt"), "reading a chmod 000 file")
            await _expect_denied(box.write_file("locked.txt", "overwritten"), "overwriting a chmod 000 file")
            await _expect_denied(box.read_file("closed/inner.txt"), "reading a file in a chmod 000 folder")
            await _expect_denied(box.write_file("closed/new.txt", "x"), "writing into a chmod 000 folder")
        finally:
            await box.exec(["sh", "-c", "chmod 700 closed; chmod 600 locked.txt"])
        shown = await box.exec(["sh", "-c", "cat locked.txt; ls closed"])
        _expect(shown.stdout == "keptinner.txt\n", f"the locked files changed: {shown.stdout!r}")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[\w.@+-][\w./@+-]*")


def _expect_sandbox_paths(exc: BaseException, box: Sandbox, what: str) -> None:
    message = str(exc)
    for found in _ABSOLUTE_PATH.findall(message):
        inside = found == box.workdir or found.startswith(box.workdir.rstrip("/") + "/")
        _expect(inside, f"{what}: the message names {found!r}, not a path of the sandbox: {message!r}")


async def check_file_errors_name_sandbox_paths(factory: SandboxFactory) -> None:
    """File errors (what a model reads) name paths as the sandbox shows them, never where the backend keeps them on
    the host; a directory read or written as a file says "is a directory"."""
    async with _fresh(factory) as box:
        await box.write_file("folder/file.txt", "x")
        await box.write_file("locked.txt", "x")
        await box.exec(["chmod", "000", "locked.txt"])
        operations: list[tuple[str, Callable[[], Awaitable[object]], type[BaseException]]] = [
            ("reading a missing file", lambda: box.read_file("folder/absent.txt"), FileNotFoundError),
            ("reading a missing absolute path", lambda: box.read_file(f"{box.workdir}/absent.txt"), FileNotFoundError),
            ("listing a missing folder", lambda: box.list_files("absent_dir"), FileNotFoundError),
            ("reading a folder", lambda: box.read_file("folder"), IsADirectoryError),
            ("writing a folder", lambda: box.write_file("folder", "x"), IsADirectoryError),
            ("reading a chmod 000 file", lambda: box.read_file("locked.txt"), PermissionError),
        ]
        for what, operation, expected in operations:
            try:
                await operation()
            except expected as exc:
                _expect_sandbox_paths(exc, box, what)
                if expected is IsADirectoryError:
                    _expect("is a directory" in str(exc), f"{what}: the message does not say so: {str(exc)!r}")
                continue
            except Exception as exc:  # noqa: BLE001 - the wrong kind of error is the finding
                raise CheckFailed(f"{what} raised {type(exc).__name__}: {exc}, expected {expected.__name__}") from None
            raise CheckFailed(f"{what} did not raise {expected.__name__}")
        await box.exec(["chmod", "600", "locked.txt"])


async def check_files_read_cap(factory: SandboxFactory) -> None:
    """``read_file`` returns a file of exactly ``limits.read_bytes`` and refuses a larger one with FileTooLargeError
    (an OSError) whose message names the cap and the sandbox path."""
    async with _fresh(factory) as box:
        cap = box.limits.read_bytes
        made = await box.exec(
            ["sh", "-c", f"head -c {cap} /dev/zero > at_cap.bin && head -c {cap + 1} /dev/zero > over.bin"]
        )
        _expect(made.exit_code == 0, f"could not make the files: {made.stderr!r}")
        _expect(len(await box.read_file("at_cap.bin")) == cap, f"a file of exactly {cap} bytes did not read back")
        try:
            await box.read_file("over.bin")
        except FileTooLargeError as exc:
            _expect(str(cap) in str(exc) and "over.bin" in str(exc), f"the message is unclear: {exc}")
            _expect_sandbox_paths(exc, box, "reading a file over the cap")
        else:
            raise CheckFailed(f"a file of {cap + 1} bytes was read over the read_bytes limit of {cap}")


async def _expect_refused(operation: Awaitable[object], what: str) -> None:
    try:
        await operation
    except PermissionError:
        return  # PathOutsideWorkdirError is a PermissionError
    raise CheckFailed(f"{what} was not refused with PermissionError (PathOutsideWorkdirError)")


async def check_files_outside_workdir(factory: SandboxFactory) -> None:
    """``..``, absolute paths outside the workdir and symlinks out are refused for read, write and list."""
    async with _fresh(factory) as box:
        await _expect_refused(box.read_file("../../../../etc/passwd"), "reading ../../../../etc/passwd")
        await _expect_refused(box.write_file("sub/../../escape.txt", "x"), "writing sub/../../escape.txt")
        await _expect_refused(box.read_file("/etc/passwd"), "reading /etc/passwd")
        outside = "/tmp/agentflow-escape.txt"  # noqa: S108 - a path the sandbox must refuse, never written
        await _expect_refused(box.write_file(outside, "x"), f"writing {outside}")
        await _expect_refused(box.list_files("/"), "listing /")
        linked = await box.exec(["sh", "-c", "ln -s /etc/passwd link_file && ln -s / link_root"])
        _expect(linked.exit_code == 0, f"could not make symlinks: {linked.stderr!r}")
        await _expect_refused(box.read_file("link_file"), "reading a symlink to /etc/passwd")
        await _expect_refused(box.read_file("link_root/etc/passwd"), "reading through a symlink to /")
        await _expect_refused(box.write_file("link_root/tmp/escape.txt", "x"), "writing through a symlink to /")
        _expect("link_file" not in await box.list_files(), "list_files listed a symlink out of the workdir")


async def check_fresh_sandbox_is_empty(factory: SandboxFactory) -> None:
    """A new sandbox sees neither the files of a closed one nor those of one still open."""
    first = await factory()
    marker = f"marker-{secrets.token_hex(4)}.txt"
    try:
        await first.write_file(marker, "first")
        first_path = f"{first.workdir.rstrip('/')}/{marker}"
        async with _fresh(factory) as second:
            _expect(marker not in await second.list_files(), "a second sandbox lists the first one's file")
            seen = await second.exec(["cat", first_path])
            _expect("first" not in seen.stdout, f"a second sandbox read the open first one's {first_path}")
    finally:
        await first.close()
    async with _fresh(factory) as third:
        _expect(await third.list_files() == [], f"a new sandbox is not empty: {await third.list_files()}")
        seen = await third.exec(["cat", first_path])
        _expect("first" not in seen.stdout, f"a new sandbox read a closed one's {first_path}")


async def check_reset_between_uses(factory: SandboxFactory) -> None:
    """What one user leaves behind (workdir files, even locked ones, and temp files) is gone for the next user,
    also when the backend hands the same sandbox out again (a warm pool resets it)."""
    first = await factory()
    try:
        await first.write_file("left/behind.txt", "first user")
        made = await first.exec(["sh", "-c", 'echo first > "${TMPDIR:-/tmp}/agentflow-left.txt"; chmod 000 left'])
        _expect(made.exit_code == 0, f"could not leave files behind: {made.stderr!r}")
    finally:
        await first.close()
    async with _fresh(factory) as second:
        _expect(await second.list_files() == [], f"the next user sees {await second.list_files()}")
        seen = await second.exec(["sh", "-c", 'cat "${TMPDIR:-/tmp}/agentflow-left.txt"'])
        _expect("first" not in seen.stdout, "the next user read the previous user's temp file")
        await second.write_file("left/behind.txt", "second user")
        _expect(await second.read_file("left/behind.txt") == b"second user", "the next user cannot reuse the path")


# -- fork -----------------------------------------------------------------------------------------------------------

_DESCRIBE_TREE = (
    "import os, stat\n"
    "seen = [f\". {stat.filemode(os.lstat('.').st_mode)}\"]\n"
    "for folder, dirs, files in os.walk('.'):\n"
    "    for name in dirs + files:\n"
    "        path = os.path.join(folder, name)\n"
    "        info = os.lstat(path)\n"
    "        link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ''\n"
    "        size = info.st_size if stat.S_ISREG(info.st_mode) else ''\n"
    "        seen.append(f'{path} {stat.filemode(info.st_mode)} {size} {info.st_nlink} {link}')\n"
    "print('\\n'.join(sorted(seen)))\n"
)
_LONG_PATH = "long/" + "d" * 120 + "/" + "f" * 120 + ".txt"  # past the 100 characters of a plain tar header
_MAKE_TREE = (
    "mkdir -p empty deep/er && printf '#!/bin/sh\\necho ran\\n' > deep/er/run.sh && chmod 750 deep/er/run.sh && "
    "ln -s ../notes/a.txt deep/link && ln deep/er/run.sh hard.sh && chmod 640 notes/a.txt && "
    f"mkdir -p {_LONG_PATH.rsplit('/', 1)[0]} && echo long > {_LONG_PATH}"
)


async def _describe_tree(box: Sandbox) -> str:
    """Every path of the workdir with its type, mode, size and symlink target, as the sandbox's python3 sees it."""
    shown = await box.exec(["python3", "-c", _DESCRIBE_TREE], timeout=60)
    _expect(shown.exit_code == 0, f"could not describe the workdir: {_short(shown.stderr)}")
    return shown.stdout


@contextlib.asynccontextmanager
async def _forked(box: Sandbox) -> AsyncIterator[Sandbox]:
    fork = await box.fork()
    try:
        yield fork
    finally:
        await fork.close()


async def _seeded(box: Sandbox) -> None:
    await box.write_file("notes/a.txt", "héllo\n")
    await box.write_file("blob.bin", bytes(range(256)) * 4)
    made = await box.exec(["sh", "-c", _MAKE_TREE])
    _expect(made.exit_code == 0, f"could not make the files to fork: {_short(made.stderr)}")


async def check_fork_copies_files(factory: SandboxFactory) -> None:
    """A fork's workdir is a copy of its parent's: text and every byte value, modes (an executable script, a file
    made ``640``), a relative symlink (a link, not its target), a hard link, an empty folder, nested folders, a path
    of 250 characters; the fork's commands run the copied script and its user may change the copied files."""
    async with _fresh(factory) as box:
        await _seeded(box)
        before = await _describe_tree(box)
        listed = await box.list_files()
        async with _forked(box) as fork:
            _expect(fork.forked_from is not None, "a fork does not say what it was forked from (forked_from)")
            after = await _describe_tree(fork)
            _expect(after == before, f"the fork's workdir differs:\nparent:\n{before}\nfork:\n{after}")
            _expect(await fork.list_files() == listed, f"the fork lists {await fork.list_files()}, not {listed}")
            _expect(await fork.read_file("blob.bin") == bytes(range(256)) * 4, "binary data did not survive the fork")
            _expect(await fork.read_file("deep/link") == "héllo\n".encode(), "the symlink does not lead to its file")
            ran = await fork.exec(["sh", "-c", "./deep/er/run.sh && echo more >> notes/a.txt && touch empty/new"])
            _expect(ran.stdout == "ran\n", f"the fork could not run or change the copied files: {_short(ran.stderr)}")


async def check_fork_isolated_both_ways(factory: SandboxFactory) -> None:
    """After a fork, what either side writes, changes or deletes never shows in the other."""
    async with _fresh(factory) as box:
        await _seeded(box)
        async with _forked(box) as fork:
            await fork.write_file("only_fork.txt", "fork")
            await box.write_file("only_parent.txt", "parent")
            changed = await fork.exec(["sh", "-c", "echo fork > notes/a.txt && rm blob.bin && rm -r empty"])
            _expect(changed.exit_code == 0, f"the fork could not change its files: {_short(changed.stderr)}")
            await box.write_file("deep/er/run.sh", "#!/bin/sh\necho parent\n")
            parent_files, fork_files = await box.list_files(), await fork.list_files()
            _expect("only_fork.txt" not in parent_files, "the parent lists a file written in the fork")
            _expect("only_parent.txt" not in fork_files, "the fork lists a file written in the parent")
            _expect(await box.read_file("notes/a.txt") == "héllo\n".encode(), "the fork's edit shows in the parent")
            _expect("blob.bin" in parent_files, "a file deleted in the fork is gone from the parent")
            seen = await box.exec(["test", "-d", "empty"])
            _expect(seen.exit_code == 0, "a folder removed in the fork is gone from the parent")
            ran = await fork.exec(["sh", "deep/er/run.sh"])
            _expect(ran.stdout == "ran\n", f"the parent's edit shows in the fork: {ran.stdout!r}")


async def check_fork_keeps_limits(factory: SandboxFactory) -> None:
    """A fork has its parent's backend, limits and isolation, and its commands are held to the same output cap."""
    async with _fresh(factory) as box, _forked(box) as fork:
        _expect(fork.backend == box.backend, f"the fork is a {fork.backend} sandbox, its parent {box.backend}")
        _expect(fork.limits == box.limits, f"the fork's limits {fork.limits} differ from {box.limits}")
        mine, theirs = fork.isolation(), box.isolation()
        for name in ("network_isolated", "filesystem_isolated", "pid_namespace", "resource_limits"):
            _expect(getattr(mine, name) == getattr(theirs, name), f"the fork's {name} differs from its parent's")
        cap = fork.limits.output_bytes
        flood = await fork.exec(["sh", "-c", f"head -c {cap + 100} /dev/zero | tr '\\0' x"])
        _expect(flood.truncated and len(flood.stdout) == cap, f"the fork kept {len(flood.stdout)} of a {cap} cap")


async def check_fork_survives_parent_close(factory: SandboxFactory) -> None:
    """Closing the parent leaves the fork working with its files, and the fork can fork in turn."""
    box = await factory()
    try:
        await _seeded(box)
        fork = await box.fork()
    finally:
        await box.close()
    try:
        _expect(fork.alive, "the fork is not alive once its parent closed")
        _expect(await fork.read_file("notes/a.txt") == "héllo\n".encode(), "the fork lost its files")
        ran = await fork.exec(["sh", "deep/er/run.sh"])
        _expect(ran.stdout == "ran\n", f"the fork cannot run commands once its parent closed: {_short(ran.stderr)}")
        async with _forked(fork) as grandchild:
            _expect(await grandchild.read_file("blob.bin") == bytes(range(256)) * 4, "a fork of a fork lost files")
    finally:
        await fork.close()


async def check_fork_close_cleans_up(factory: SandboxFactory) -> None:
    """A closed fork refuses commands and is not alive (closing it twice is fine); its parent keeps working with its
    own files, and forks again."""
    async with _fresh(factory) as box:
        await _seeded(box)
        fork = await box.fork()
        await fork.write_file("fork.txt", "gone with the fork")
        await fork.close()
        await fork.close()
        _expect(not fork.alive, "a closed fork is still alive")
        try:
            await fork.exec(["true"])
        except SandboxError:
            pass
        else:
            raise CheckFailed("a closed fork still runs commands")
        _expect("fork.txt" not in await box.list_files(), "the fork's file shows in the parent")
        _expect(await box.read_file("notes/a.txt") == "héllo\n".encode(), "the parent lost a file")
        async with _forked(box) as again:
            _expect("fork.txt" not in await again.list_files(), "a new fork sees a closed fork's file")


# -- isolation ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _loopback_listener() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server on the host's 127.0.0.1 that flags any connection it accepts."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    connected = threading.Event()
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            connected.set()
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], connected
    finally:
        stop.set()
        thread.join()
        server.close()


async def check_network_egress_blocked(factory: SandboxFactory) -> None:
    """With network off, a command cannot reach a server on the host's loopback (nor resolve a name)."""
    async with _fresh(factory) as box:
        if not box.isolation().network_isolated:
            raise CheckSkipped("the backend reports network access (limits.network or no isolation)")
        with _loopback_listener() as (port, connected):
            probe = (
                "import socket\n"
                "s = socket.socket(); s.settimeout(3)\n"
                f"try:\n    s.connect(('127.0.0.1', {port})); print('CONNECTED')\n"
                "except OSError as e:\n    print('BLOCKED', e)\n"
            )
            result = await box.exec(["python3", "-c", probe], timeout=20)
            _expect("BLOCKED" in result.stdout, f"the connect was not refused: {_short(result.stdout + result.stderr)}")
            _expect(not connected.is_set(), "the host's loopback server accepted a connection from the sandbox")


async def check_host_secret_env_not_visible(factory: SandboxFactory) -> None:
    """Variables of the host process (API keys) are not in a command's environment."""
    name = "AGENTFLOW_CONFORMANCE_SECRET"
    token = secrets.token_hex(16)
    previous = os.environ.get(name)
    os.environ[name] = token
    try:
        async with _fresh(factory) as box:
            result = await box.exec(["sh", "-c", "env; cat /proc/self/environ /proc/1/environ 2>/dev/null"])
            _expect(token not in result.stdout + result.stderr, f"the host's {name} is visible inside")
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _world_readable_file(directory: Path, content: str) -> Path:
    # Readable by anyone, so only isolation (not file permissions) can keep the sandbox from reading it.
    directory.chmod(0o755)
    path = directory / "host-secret.txt"
    path.write_text(content)
    path.chmod(0o644)
    return path


async def check_host_files_not_visible(factory: SandboxFactory) -> None:
    """A world-readable host file outside the sandbox cannot be read from inside."""
    async with _fresh(factory) as box:
        if not box.isolation().filesystem_isolated:
            raise CheckSkipped("the backend reports no filesystem isolation")
        with tempfile.TemporaryDirectory(prefix="agentflow-host-") as host_dir:
            token = secrets.token_hex(16)
            secret = await asyncio.to_thread(_world_readable_file, Path(host_dir), token)
            result = await box.exec(["cat", str(secret)])
            _expect(token not in result.stdout, f"the sandbox read the host file {secret}")


async def check_memory_bomb_contained(factory: SandboxFactory) -> None:
    """Allocating without bound stops at a limit well under 4 GiB; the sandbox keeps working."""
    bomb = (
        "chunks = []\n"
        "try:\n"
        "    for _ in range(64):\n"
        "        chunks.append(bytearray(64 * 1024 * 1024))\n"
        "    print('ALLOCATED 4 GiB')\n"
        "except MemoryError:\n"
        "    print('STOPPED at', len(chunks) * 64, 'MiB')\n"
    )
    async with _fresh(factory) as box:
        result = await box.exec(["python3", "-c", bomb], timeout=60)
        _expect("ALLOCATED" not in result.stdout, "4 GiB were allocated without hitting a memory limit")
        _expect(result.exit_code != 0 or "STOPPED" in result.stdout, f"unexpected result {result}")
        after = await box.exec(["echo", "alive"])
        _expect(after.stdout == "alive\n", "the sandbox does not work after the memory bomb")


async def check_fork_bomb_contained(factory: SandboxFactory) -> None:
    """Spawning processes without bound fails at a limit under 2000; the sandbox keeps working."""
    bomb = (
        "import os, time\n"
        "count = 0\n"
        "try:\n"
        "    while count < 2000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        count += 1\n"
        "    print('FORKED', count)\n"
        "except OSError as e:\n"
        "    print('STOPPED at', count, e)\n"
    )
    async with _fresh(factory) as box:
        result = await box.exec(["python3", "-c", bomb], timeout=60)
        _expect("STOPPED" in result.stdout, f"2000 processes were started: {_short(result.stdout + result.stderr)}")
        after = await box.exec(["echo", "alive"])
        _expect(after.stdout == "alive\n", "the sandbox does not work after the fork bomb")


async def check_disk_fill_bounded(factory: SandboxFactory) -> None:
    """Writing one ever-growing file stops at the file size limit, well under 2 GiB."""
    fill = (
        "import signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "block = b'x' * (1024 * 1024)\n"
        "written = 0\n"
        "try:\n"
        "    with open('fill.bin', 'wb') as f:\n"
        "        while written < 2048:\n"
        "            f.write(block); f.flush(); written += 1\n"
        "    print('WROTE 2 GiB')\n"
        "except OSError as e:\n"
        "    print('STOPPED at', written, 'MiB', e)\n"
    )
    async with _fresh(factory) as box:
        result = await box.exec(["python3", "-c", fill], timeout=90)
        _expect("WROTE" not in result.stdout, "a 2 GiB file was written without hitting a size limit")
        _expect("STOPPED" in result.stdout, f"unexpected result: {_short(result.stdout + result.stderr)}")
        await box.exec(["rm", "-f", "fill.bin"])


CHECKS: CheckRegistry[Check] = CheckRegistry(
    "conformance",
    {
        "exec_exit_codes": check_exec_exit_codes,
        "stdin": check_stdin,
        "quick_exit_codes": check_quick_exit_codes,
        "large_argv_and_env": check_large_argv_and_env,
        "env": check_env,
        "cwd": check_cwd,
        "large_output_capped": check_large_output_capped,
        "timeout": check_timeout,
        "kill_process_tree_on_timeout": check_kill_process_tree_on_timeout,
        "command_not_found": check_command_not_found,
        "binary_output": check_binary_output,
        "parallel_execs": check_parallel_execs,
        "files_text_and_binary": check_files_text_and_binary,
        "files_big": check_files_big,
        "files_missing": check_files_missing,
        "files_outside_workdir": check_files_outside_workdir,
        "files_respect_permissions": check_files_respect_permissions,
        "file_errors_name_sandbox_paths": check_file_errors_name_sandbox_paths,
        "files_read_cap": check_files_read_cap,
        "fresh_sandbox_is_empty": check_fresh_sandbox_is_empty,
        "reset_between_uses": check_reset_between_uses,
        "fork_copies_files": check_fork_copies_files,
        "fork_isolated_both_ways": check_fork_isolated_both_ways,
        "fork_keeps_limits": check_fork_keeps_limits,
        "fork_survives_parent_close": check_fork_survives_parent_close,
        "fork_close_cleans_up": check_fork_close_cleans_up,
        "network_egress_blocked": check_network_egress_blocked,
        "host_secret_env_not_visible": check_host_secret_env_not_visible,
        "host_files_not_visible": check_host_files_not_visible,
        "memory_bomb_contained": check_memory_bomb_contained,
        "fork_bomb_contained": check_fork_bomb_contained,
        "disk_fill_bounded": check_disk_fill_bounded,
    },
)
"""Every check by name, in the order ``run_conformance`` runs them."""

FORK_CHECKS = (
    "fork_copies_files",
    "fork_isolated_both_ways",
    "fork_keeps_limits",
    "fork_survives_parent_close",
    "fork_close_cleans_up",
)
"""The checks of ``Sandbox.fork()``: a backend that cannot fork (the base's ``fork``) declares these as known
failures."""


async def run_check(name: str, check: Check, factory: SandboxFactory, *, known_failure: bool = False) -> CheckResult:
    """Run one check and classify its outcome; never raises for a failing backend."""
    return await run_async_check(name, lambda: check(factory), known_failure=known_failure, timeout_s=CHECK_TIMEOUT_S)


async def run_conformance(
    factory: SandboxFactory,
    *,
    known_failures: Collection[str] | None = None,
    only: Collection[str] | None = None,
) -> list[CheckResult]:
    """Run the conformance checks against a backend, one after another.

    Args:
        factory: makes a fresh sandbox of the backend under test (``LocalSandbox.create``, a lambda around
            ``create_sandbox("docker", limits=...)``).
        known_failures: names of checks expected to fail; their failures are reported as ``known_failure``.
            When omitted, the backend's own declaration (``Sandbox.known_failures`` of a sandbox it makes) is used.
        only: run just these checks (names from ``CHECKS``).

    Returns:
        One ``CheckResult`` per check, in ``CHECKS`` order.

    Raises:
        KeyError: ``only`` or ``known_failures`` names a check that does not exist.
    """
    selected = CHECKS.select(only, known_failures or ())
    if known_failures is None:
        async with _fresh(factory) as probe:
            known_failures = probe.known_failures
    return [await run_check(name, check, factory, known_failure=name in known_failures) for name, check, _ in selected]
