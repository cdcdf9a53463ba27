"""`agentflow view` measured in headless Chromium over a large store.

The store holds 100,000 runs in its index (written in bulk through the store's own index connection: rows as the
recorder would leave them, all finished) and one real 50,000-event trace recorded through the store's recorder.
In Debian's chromium (Playwright, executable_path=/usr/bin/chromium), against the viewer served by uvicorn:

- runs_list_ms: from navigation to the first page of the runs list drawn (filters, sort and paging are in SQL);
- run_page_ms: from navigation to the 50,000-event run's page first drawn: its header, its graph and the first rows
  of its timeline. The server answers a run page once the trace's first 500 lines are verified (each event's hash
  and its link to the one before) and verifies the rest in the background, so this first render is drawn from those
  verified events (the graph and path they cover, the rows) and the index's status, and says, on the page, that
  the trace is still being verified; it is not an empty shell;
- scroll_end_ms: from scrolling the timeline to its end to the last event's row drawn (rows the verification has
  not reached yet are drawn marked unverified);
- verified_ms: from navigation to the page saying the whole trace is verified, drawn again from all its events
  (the server's background verification; no target);
- run_page_mb: the page's JS heap after that (Chromium's JSHeapUsedSize metric).

Targets: runs_list_ms and run_page_ms < 1000 ms, run_page_mb < 300.

    python benchmarks/viewer.py [--runs 100000] [--events 50000] [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import sync_playwright

from agentflow.traces import EventType, TraceStore
from agentflow.viewer import create_app

CHROMIUM = "/usr/bin/chromium"


def fill_index(store: TraceStore, runs: int) -> None:
    """``runs`` finished runs in the index, in one transaction (outcome and cost too: the list draws them)."""
    statuses = ["succeeded", "failed", "error", "succeeded"]
    rows = [
        (
            f"20260101-{index // 3600 % 24:02d}{index // 60 % 60:02d}{index % 60:02d}-{index:08x}",
            f"workflow_{index % 7}",
            statuses[index % 4],
            f"2026-01-{1 + index % 28:02d}T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z",
            None,
            (index % 997) / 10,
            index % 40,
            index % 13,
            index % 17,
            index * 37 % 100_000,
            (index % 101) / 100 if index % 5 else None,
            "boom" if index % 4 == 2 else None,
            float(index % 3 == 0) if index % 6 else None,  # outcome: passed, failed, or not scored
            index * 37 % 100_000 * 2e-6 if index % 2 else None,  # cost: half the runs priced
        )
        for index in range(runs)
    ]
    connection = store.open_index()
    try:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO runs (run_id, workflow, status, started_at, finished_at, duration_s, steps, tool_calls,"
            " model_calls, tokens, reward_mean, error, outcome, cost)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


def record_long_run(store: TraceStore, events: int) -> str:
    """A finished run of ``events`` events: nodes, tool calls and results, recorded through the recorder."""
    with store.new_run(workflow="long") as recorder:
        recorder.hold_events()
        recorder.emit(EventType.RUN_STARTED, data={"workflow": "long", "inputs": {}})
        visit, written = 0, 1
        while written < events - 1:
            visit += 1
            node = ("plan", "code", "test")[visit % 3]
            started = recorder.emit(EventType.NODE_STARTED, node=node, data={"visit": visit, "attempt": 1})
            call = recorder.emit(
                EventType.TOOL_CALL, node=node, parent=started.seq, data={"tool": "read_file", "args": {"p": "a"}}
            )
            recorder.emit(
                EventType.TOOL_RESULT, node=node, parent=call.seq, data={"tool": "read_file", "ok": True, "output": "x"}
            )
            recorder.emit(EventType.NODE_FINISHED, node=node, parent=started.seq, data={"visit": visit})
            written += 4
        recorder.flush()
        recorder.finish("succeeded")
        return recorder.summary().run_id


def measure(runs: int, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        store = TraceStore(Path(folder) / "store")
        started = time.perf_counter()
        long_run = record_long_run(store, events)
        fill_index(store, runs)
        setup_s = time.perf_counter() - started
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page()
                page.goto(base + "/favicon.svg")  # the browser is warm; the measured loads are the viewer's
                started = time.perf_counter()
                page.goto(base + "/")
                page.wait_for_selector("#runs tbody tr")
                runs_list_ms = (time.perf_counter() - started) * 1000
                total = page.text_content("#pager")
                opened = time.perf_counter()
                page.goto(base + f"/#/run/{long_run}")
                page.wait_for_selector("#timeline .row[data-seq='0']")
                page.wait_for_selector("#graph g.node")
                page.wait_for_selector("#run-status")
                run_page_ms = (time.perf_counter() - opened) * 1000
                last = page.evaluate("() => Number(document.getElementById('count').textContent.split(' ')[0]) - 1")
                started = time.perf_counter()
                page.evaluate("() => { const t = document.getElementById('timeline'); t.scrollTop = t.scrollHeight; }")
                page.wait_for_selector(f"#timeline .row[data-seq='{last}']")
                scroll_end_ms = (time.perf_counter() - started) * 1000
                page.wait_for_selector("#verification[data-state=verified]", timeout=120_000)
                verified_ms = (time.perf_counter() - opened) * 1000
                session = page.context.new_cdp_session(page)
                session.send("Performance.enable")
                metrics = {m["name"]: m["value"] for m in session.send("Performance.getMetrics")["metrics"]}
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
    return {
        "runs": runs,
        "events": last + 1,
        "setup_s": round(setup_s, 1),
        "runs_list_ms": round(runs_list_ms, 1),
        "runs_listed": (total or "").split(" ")[0],
        "run_page_ms": round(run_page_ms, 1),
        "scroll_end_ms": round(scroll_end_ms, 1),
        "verified_ms": round(verified_ms, 1),
        "run_page_mb": round(metrics["JSHeapUsedSize"] / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.runs, args.events)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:15} {value}")


if __name__ == "__main__":
    main()
