"""The viewer's run page of a best-of run: every candidate, its score and the kept one beside the realized path."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from agentflow.runtime import run_workflow
from agentflow.traces import TraceStore
from agentflow.viewer import create_app
from tests.viewer.test_browser import Watched, browser, page

__all__ = ["browser", "page"]  # the browser fixtures, shared with the other viewer pages' tests

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def best_of_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    base = tmp_path_factory.mktemp("viewer-best-of")
    shutil.copytree(ROOT / "graphs" / "examples", base / "examples")
    store = TraceStore(base / ".agentflow")
    # in a thread of its own: Playwright's sync API may already run an event loop in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        workflow = base / "examples" / "fix_failing_test_best_of.yaml"
        result = pool.submit(asyncio.run, run_workflow(workflow, store=store)).result()
    assert result.status == "succeeded", result.error
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", result.run_id
    server.should_exit = True
    thread.join(10)


def test_run_page_lists_the_candidates_and_the_kept_one(page: Watched, best_of_server: tuple[str, str]) -> None:
    url, run_id = best_of_server
    page.page.goto(f"{url}/#/run/{run_id}")
    page.page.wait_for_selector("#graph g.node")

    assert page.page.text_content("#path") == "path: plan → code → test"
    assert page.page.text_content("p.best-of") == (
        "best of code by tests_delta: code#0 0.250 · code#1 0.500 (kept) · code#2 0 · code#3 0.250"
    )
