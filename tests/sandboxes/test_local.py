"""The local sandbox against the real kernel: isolation, limits, output, timeouts and path confinement."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from agentflow.errors import PathOutsideWorkdirError, SandboxError, UnknownBackendError
from agentflow.sandboxes import LocalSandbox, SandboxLimits, create_sandbox, exec_once
from agentflow.sandboxes._local import TIMEOUT_EXIT_CODE, WORKSPACE

from .conftest import LoopbackServer, require_namespaces

PROJECT_DIR = Path(__file__).resolve().parents[2]

CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(3)\n"
    "try:\n"
    "    s.connect(('127.0.0.1', int(sys.argv[1]))); print('CONNECTED')\n"
    "except OSError as e:\n"
    "    print('BLOCKED', e)\n"
)

TICKER = "i=0; while true; do i=$((i+1)); echo $i > {name}; sleep 0.1; done"


async def test_host_openai_key_is_not_visible_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-do-not-leak")
    async with await LocalSandbox.create() as box:
        result = await box.exec(["python3", "-c", "import json, os; print(json.dumps(sorted(os.environ)))"])
        shell = await box.exec(["sh", "-c", "env"])
    assert result.exit_code == 0, result.stderr
    assert "OPENAI_API_KEY" not in result.stdout
    assert "sk-host-secret" not in shell.stdout
    assert json.loads(result.stdout) == ["HOME", "LANG", "PATH", "TMPDIR"]


async def test_exec_env_is_added_to_the_scrubbed_environment(sandbox: LocalSandbox) -> None:
    result = await sandbox.exec(["sh", "-c", 'echo "$GREETING $HOME"'], env={"GREETING": "hi"})
    assert result.stdout == f"hi {sandbox.workdir}\n"


async def test_project_home_and_cwd_are_not_visible(namespaced: LocalSandbox) -> None:
    # The Python runtime the project runs on is visible (it may live inside the project, as a venv) ...
    python = await namespaced.exec(["python", "-c", "import sys; print(sys.version_info[:2])"])
    assert python.exit_code == 0, python.stderr
    # ... but nothing else of the project, the home directory or the host's working directory.
    for host_file in (PROJECT_DIR / "pyproject.toml", PROJECT_DIR / "agentflow" / "errors.py", Path(__file__)):
        assert host_file.exists()
        seen = await namespaced.exec(["cat", str(host_file)])
        assert seen.exit_code != 0, f"{host_file} is visible inside"
    listing = await namespaced.exec(["sh", "-c", f"ls -A {Path.home()} {os.getcwd()} 2>&1"])
    assert "pyproject.toml" not in listing.stdout
    assert ".bashrc" not in listing.stdout


async def test_another_sandboxs_workdir_is_not_visible(namespaced: LocalSandbox) -> None:
    async with await LocalSandbox.create(mode="namespaces") as other:
        await other.write_file("private.txt", "other's data")
        host_path = other._host_workdir / "private.txt"  # the host path, which a command might guess
        seen = await namespaced.exec(["cat", str(host_path)])
    assert seen.exit_code != 0
    assert "other's data" not in seen.stdout


async def test_network_is_blocked(namespaced: LocalSandbox, loopback_server: LoopbackServer) -> None:
    result = await namespaced.exec(["python", "-c", CONNECT, str(loopback_server.port)])
    assert "BLOCKED" in result.stdout, result.stdout + result.stderr
    assert loopback_server.accepted == 0


async def test_network_flag_allows_the_host_loopback(loopback_server: LoopbackServer) -> None:
    require_namespaces()
    async with await LocalSandbox.create(SandboxLimits(network=True), mode="namespaces") as box:
        result = await box.exec(["python", "-c", CONNECT, str(loopback_server.port)])
        report = box.isolation()
    assert "CONNECTED" in result.stdout, result.stdout + result.stderr
    assert report.network_isolated is False
    assert report.filesystem_isolated is True


async def test_output_flood_is_capped_and_the_exec_returns() -> None:
    async with await LocalSandbox.create(SandboxLimits(output_bytes=10_000)) as box:
        bounded = await box.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' y; echo tail >&2"])
        endless = await box.exec(["yes"], timeout=1.5)
    assert bounded.exit_code == 0
    assert bounded.truncated
    assert bounded.stdout == "y" * 10_000
    assert bounded.stderr == "tail\n"
    assert endless.timed_out
    assert endless.truncated
    assert len(endless.stdout) == 10_000


async def _ticks(box: LocalSandbox, name: str) -> str:
    try:
        return (await box.read_file(name)).decode()
    except FileNotFoundError:
        return ""


async def _assert_stopped(box: LocalSandbox, name: str) -> None:
    before = await _ticks(box, name)
    assert before, f"{name} never ran"
    await asyncio.sleep(0.5)
    assert await _ticks(box, name) == before, f"{name} still runs after the timeout"


async def test_timeout_kills_a_sigterm_ignoring_tree_including_setsid(namespaced: LocalSandbox) -> None:
    script = (
        "trap '' TERM; "
        f"(trap '' TERM; {TICKER.format(name='child')}) & "
        f"setsid sh -c '{TICKER.format(name='escaped')}' & "
        "sleep 60"
    )
    result = await namespaced.exec(["sh", "-c", script], timeout=1.5)
    assert result.timed_out
    assert result.exit_code == TIMEOUT_EXIT_CODE
    await _assert_stopped(namespaced, "child")
    await _assert_stopped(namespaced, "escaped")


async def test_timeout_in_process_mode_kills_the_process_group(process_mode: LocalSandbox) -> None:
    script = f"trap '' TERM; (trap '' TERM; {TICKER.format(name='child')}) & sleep 60"
    result = await process_mode.exec(["sh", "-c", script], timeout=1.5)
    assert result.timed_out
    assert result.exit_code == TIMEOUT_EXIT_CODE
    await _assert_stopped(process_mode, "child")


async def test_background_processes_end_with_the_exec(namespaced: LocalSandbox) -> None:
    started = await namespaced.exec(["sh", "-c", f"({TICKER.format(name='bg')}) > /dev/null 2>&1 & sleep 0.3"])
    assert started.exit_code == 0
    assert not started.timed_out
    await _assert_stopped(namespaced, "bg")


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "a/../../outside.txt", "/etc/passwd", "/tmp/outside.txt", f"{WORKSPACE}/../etc/passwd"],
)
async def test_paths_outside_the_workdir_are_refused(sandbox: LocalSandbox, path: str) -> None:
    with pytest.raises(PathOutsideWorkdirError):
        await sandbox.read_file(path)
    with pytest.raises(PathOutsideWorkdirError):
        await sandbox.write_file(path, "x")
    with pytest.raises(PermissionError):  # PathOutsideWorkdirError is also a PermissionError
        await sandbox.list_files(path)


async def test_symlinks_out_of_the_workdir_are_refused(sandbox: LocalSandbox, tmp_path: Path) -> None:
    target = tmp_path / "host.txt"
    target.write_text("host data")
    made = await sandbox.exec(["sh", "-c", f"ln -s {target} out && ln -s / root && ln -s inside.txt ok"])
    assert made.exit_code == 0, made.stderr
    await sandbox.write_file("inside.txt", "fine")
    with pytest.raises(PathOutsideWorkdirError):
        await sandbox.read_file("out")
    with pytest.raises(PathOutsideWorkdirError):
        await sandbox.write_file("root/tmp/escape.txt", "x")
    assert await sandbox.read_file("ok") == b"fine"  # a symlink that stays inside is followed
    assert await sandbox.list_files() == ["inside.txt"]
    assert target.read_text() == "host data"


async def test_file_operations(sandbox: LocalSandbox, tmp_path: Path) -> None:
    await sandbox.write_file("src/pkg/mod.py", "x = 1\n")
    await sandbox.write_file(f"{WORKSPACE}/data.bin", b"\x00\xff")
    assert await sandbox.read_file("src/pkg/mod.py") == b"x = 1\n"
    assert await sandbox.read_file("data.bin") == b"\x00\xff"
    assert await sandbox.list_files() == ["data.bin", "src/pkg/mod.py"]
    assert await sandbox.list_files("src") == ["src/pkg/mod.py"]
    with pytest.raises(FileNotFoundError):
        await sandbox.read_file("missing.txt")
    with pytest.raises(IsADirectoryError):
        await sandbox.read_file("src")
    # What write_file made belongs to the sandbox's user: commands may change it and add files beside it.
    edited = await sandbox.exec(["sh", "-c", "echo 'y = 2' >> src/pkg/mod.py && touch src/pkg/new.py"])
    assert edited.exit_code == 0, edited.stderr
    assert await sandbox.read_file("src/pkg/mod.py") == b"x = 1\ny = 2\n"


async def test_cwd_is_confined(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("sub/file.txt", "")
    result = await sandbox.exec(["pwd"], cwd="sub")
    assert result.stdout.strip() == f"{sandbox.workdir}/sub"
    with pytest.raises(PathOutsideWorkdirError):
        await sandbox.exec(["pwd"], cwd="/")
    with pytest.raises(FileNotFoundError):
        await sandbox.exec(["pwd"], cwd="nope")


async def test_exit_codes_signals_and_missing_commands(sandbox: LocalSandbox) -> None:
    assert (await sandbox.exec(["sh", "-c", "exit 7"])).exit_code == 7
    killed = await sandbox.exec(["sh", "-c", "kill -KILL $$"])
    assert killed.exit_code == -9
    assert not killed.timed_out
    missing = await sandbox.exec(["no-such-program-here"])
    assert missing.exit_code == 127
    assert "command not found" in missing.stderr
    with pytest.raises(ValueError, match="empty"):
        await sandbox.exec([])


async def test_stdin_is_empty_unless_given(sandbox: LocalSandbox) -> None:
    assert (await sandbox.exec(["cat"])).stdout == ""
    assert (await sandbox.exec(["cat"], stdin=b"bytes\n")).stdout == "bytes\n"


async def test_pids_limit_stops_a_fork_bomb() -> None:
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 500:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(20); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    async with await LocalSandbox.create(SandboxLimits(pids=20)) as box:
        result = await box.exec(["python3", "-c", bomb], timeout=30)
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) < 20


async def test_memory_limit_stops_an_allocation() -> None:
    grab = "b = bytearray(400 * 1024 * 1024); print('GOT IT')"
    async with await LocalSandbox.create(SandboxLimits(memory_mb=200)) as box:
        result = await box.exec(["python3", "-c", grab])
    assert "GOT IT" not in result.stdout
    assert "MemoryError" in result.stderr


async def test_file_size_limit_bounds_a_disk_fill() -> None:
    fill = "head -c 20000000 /dev/zero > fill.bin"
    async with await LocalSandbox.create(SandboxLimits(file_size_mb=5)) as box:
        result = await box.exec(["sh", "-c", fill])
        size = len(await box.read_file("fill.bin"))
    assert result.exit_code != 0
    assert size == 5 * 1024 * 1024


async def test_cpu_limit_stops_a_busy_loop() -> None:
    async with await LocalSandbox.create(SandboxLimits(cpu_s=1)) as box:
        result = await box.exec(["python3", "-c", "while True: pass"], timeout=30)
    assert not result.timed_out
    assert result.exit_code in (-24, -9)  # SIGXCPU at the soft limit, SIGKILL at the hard one


async def test_isolation_report_matches_namespaces(namespaced: LocalSandbox) -> None:
    report = namespaced.isolation()
    assert (report.network_isolated, report.filesystem_isolated, report.pid_namespace) == (True, True, True)
    assert report.details["mode"] == "namespaces"
    assert namespaced.known_failures == () and report.details["known_conformance_failures"] == []
    assert namespaced.workdir == WORKSPACE
    # Each claim holds: the command is pid 2 (after the namespace's init), sees no interface but lo, and
    # runs as an unprivileged uid.
    probe = await namespaced.exec(["sh", "-c", "echo $$; ls /sys/class/net 2>/dev/null; cat /proc/net/dev; id -u"])
    lines = probe.stdout.split("\n")
    assert lines[0] == "2"
    assert "eth0" not in probe.stdout
    assert lines[-2] != "0"


async def test_isolation_report_matches_process_mode(process_mode: LocalSandbox) -> None:
    report = process_mode.isolation()
    assert (report.network_isolated, report.filesystem_isolated, report.pid_namespace) == (False, False, False)
    assert report.resource_limits
    assert report.details["mode"] == "process"
    assert process_mode.known_failures == ("kill_process_tree_on_timeout",)
    assert report.details["known_conformance_failures"] == ["kill_process_tree_on_timeout"]  # recorded with the run
    # The report is honest: in process mode the host's files really are visible.
    seen = await process_mode.exec(["cat", "/etc/hostname"])
    assert seen.stdout == Path("/etc/hostname").read_text()
    assert process_mode.workdir == str(process_mode._host_workdir)


async def test_close_removes_everything_and_is_idempotent() -> None:
    box = await LocalSandbox.create()
    await box.write_file("a.txt", "x")
    root = box._root
    assert root.exists()
    await box.close()
    await box.close()
    assert not root.exists()
    with pytest.raises(SandboxError):
        await box.exec(["true"])


async def test_create_makes_its_folders_off_the_event_loop_and_leaves_none_when_it_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A warm pool starts its sandboxes while the runs already lent one go on: the folders' system calls (0.8 ms a
    # mkdir in /tmp on our CI machines) must not hold the event loop.
    import agentflow.sandboxes._local as local

    made_in: list[threading.Thread] = []
    roots: list[Path] = []
    real_owned_tempdir = local.owned_tempdir

    def recording_owned_tempdir(prefix: str) -> Path:
        made_in.append(threading.current_thread())
        roots.append(real_owned_tempdir(prefix))
        return roots[-1]

    monkeypatch.setattr(local, "owned_tempdir", recording_owned_tempdir)
    box = await LocalSandbox.create()
    await box.close()
    assert made_in and made_in[0] is not threading.main_thread()

    def refused(self: Path, mode: int = 0o777, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "refused", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(PermissionError):
        await LocalSandbox.create()
    assert len(roots) == 2 and not roots[1].exists()  # the half-made sandbox's root is gone


async def test_create_sandbox_copies_files_relative_to_base_dir(tmp_path: Path) -> None:
    workspace = tmp_path / "fixture" / "workspace"
    (workspace / "tests").mkdir(parents=True)
    (workspace / "tests" / "test_x.py").write_text("def test_x():\n    assert True\n")
    (workspace / "README").write_text("hello")
    box = await create_sandbox("local", files={WORKSPACE: "fixture/workspace", "copy": "fixture"}, base_dir=tmp_path)
    async with box:
        assert await box.list_files() == [
            "README",
            "copy/workspace/README",
            "copy/workspace/tests/test_x.py",
            "tests/test_x.py",
        ]
        result = await box.exec(["cat", "README"])
    assert result.stdout == "hello"


async def test_create_sandbox_missing_source_fails_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await create_sandbox("local", files={".": "absent"}, base_dir=tmp_path)


async def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(UnknownBackendError, match="local") as unknown:
        await create_sandbox("lcoal")
    assert "did you mean 'local'" in str(unknown.value)


async def test_exec_once_runs_in_a_fresh_sandbox() -> None:
    result, report = await exec_once(["sh", "-c", "ls -A; echo made > f"], timeout=10)
    again, _ = await exec_once(["ls", "-A"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert again.stdout == ""  # the first sandbox's file is gone with it
    assert report.backend == "local"


async def test_forced_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_LOCAL_SANDBOX_MODE", "process")
    async with await LocalSandbox.create() as box:
        assert box.isolation().details["mode"] == "process"
    monkeypatch.setenv("AGENTFLOW_LOCAL_SANDBOX_MODE", "containers")
    with pytest.raises(SandboxError, match="not a local sandbox mode"):
        await LocalSandbox.create()


async def test_a_python_runtime_under_tmp_stays_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout in /tmp (CI clones there) keeps its .venv visible although the sandbox has its own /tmp."""
    require_namespaces()
    import tempfile

    from agentflow.sandboxes import _local

    runtime = Path(tempfile.mkdtemp(prefix="agentflow-runtime-", dir="/tmp"))
    try:
        (runtime / "marker").write_text("runtime files\n")
        runtime.chmod(0o755)
        (runtime / "marker").chmod(0o644)
        symlinks, binds = _local._system_layout()
        monkeypatch.setattr(_local, "_system_layout", lambda: (symlinks, {**binds, str(runtime): str(runtime)}))
        async with await LocalSandbox.create(mode="namespaces") as box:
            seen = await box.exec(["cat", str(runtime / "marker")])
            tmp_is_private = await box.exec(["sh", "-c", "ls /tmp"])
        assert seen.exit_code == 0, seen.stderr
        assert seen.stdout == "runtime files\n"
        assert "agentflow-sandbox-" not in tmp_is_private.stdout  # other sandboxes' dirs stay hidden
    finally:
        import shutil

        shutil.rmtree(runtime)


async def test_reset_empties_the_workdir_and_tmp_and_an_untouched_sandbox_resets_without_a_thread(
    namespaced: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await namespaced.write_file("notes/a.txt", "left by the last run")
    made = await namespaced.exec(["sh", "-c", "mkdir -p d && echo 1 > d/f && echo 2 > /tmp/t && chmod 000 d"])
    assert made.exit_code == 0, made.stderr
    assert await namespaced.reset() is True
    assert await namespaced.list_files(".") == []
    # (the file itself, not an empty /tmp: a project kept under /tmp shows its mount point there)
    left = await namespaced.exec(["sh", "-c", "ls -A .; ls -A /tmp | grep -x t"])
    assert (left.exit_code, left.stdout) == (1, "")  # grep found nothing

    # Nothing to remove now: the reset is done in place, without a hop to a worker thread (which, under a
    # benchmark's load, keeps the run waiting for the event loop and the thread pool). Not when the project lives
    # under /tmp: its mount point stays in the sandbox's /tmp, and every reset takes the thread.
    def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a reset with nothing to remove went to a thread")

    if namespaced._private_dirs_empty():
        monkeypatch.setattr(asyncio, "to_thread", no_thread)
        assert await namespaced.reset() is True
