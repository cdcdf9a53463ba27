"""`agentflow view` as a user starts it: the URL it prints, and the token it requires off loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from agentflow.traces import TraceStore

COMMAND = "import sys; from agentflow.cli import main; sys.argv[0] = 'agentflow'; main()"


@contextmanager
def serving(store: TraceStore, *args: str) -> Iterator[str]:
    with subprocess.Popen(
        [sys.executable, "-c", COMMAND, "view", "--store", str(store.root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("agentflow view: http://"), line
            yield line.split(": ", 1)[1].strip()
        finally:
            process.terminate()
            process.wait(10)


def test_loopback_needs_no_token(recorded_store: Any) -> None:
    with serving(recorded_store[0]) as url:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        assert httpx.get(url + "api/runs").json()["total"] >= 3


def test_bound_elsewhere_it_requires_the_printed_token(recorded_store: Any) -> None:
    with serving(recorded_store[0], "--host", "0.0.0.0") as url:
        assert "?token=" in url
        base, token = url.split("?token=")
        local = base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(local + "api/runs").status_code == 401
        assert httpx.get(local + "api/runs", params={"token": token + "x"}).status_code == 401
        with httpx.Client() as client:
            assert client.get(local, params={"token": token}).status_code == 200
            assert client.get(local + "api/runs").json()["total"] >= 3  # the cookie the tokened URL set


def test_export_arguments_without_export_are_refused(recorded_store: Any) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", COMMAND, "view", "--store", str(recorded_store[0].root), "some-run"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip() == "agentflow: error: run ids and --bench go with --export"
