"""The viewer's pages in headless Chromium (Debian's, driven by Playwright) over real recorded runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore
from agentflow.traces.conformance import tamper_builtin
from agentflow.viewer import create_app
from tests.support.require import require
from tests.viewer.conftest import (
    ROOT,
    XSS,
    HeldStore,
    record_hostile_run,
    record_long_run,
    record_priced_run,
    record_replayed_pair,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY = "document.getElementById('page').dataset.ready === location.hash"
# wait_for_function gets a function, not an expression: an expression is eval'ed, which the page's CSP forbids.
ARTIFACTS = Path(__file__).parents[1] / "artifacts"

try:
    from playwright.sync_api import Browser, Page, sync_playwright

    HAVE_PLAYWRIGHT = True
except ImportError:  # the dev extra brings it
    HAVE_PLAYWRIGHT = False


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(HAVE_PLAYWRIGHT, "playwright is not installed (the dev extra)")
    require(Path(CHROMIUM).exists(), "no chromium (.ci/setup-chromium.sh installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@contextlib.contextmanager
def serving(store: TraceStore) -> Iterator[str]:
    """The viewer of ``store`` served by uvicorn on a free loopback port, for as long as the block runs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(create_app(store), log_level="warning")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not uvicorn_server.started:
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(recorded_store: tuple[TraceStore, dict[str, str]]) -> Iterator[str]:
    with serving(recorded_store[0]) as url:
        yield url


class Watched:
    """A page whose dialogs and console errors are collected: a hostile trace must cause neither."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def shot(self, name: str) -> None:
        if os.environ.get("CI") == "true":
            ARTIFACTS.mkdir(exist_ok=True)
            self.page.screenshot(path=str(ARTIFACTS / f"viewer-{name}.png"), full_page=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context()
    watched = Watched(context.new_page())
    yield watched
    context.close()
    assert watched.dialogs == []
    assert watched.errors == []


def test_runs_list_filters_and_sorts(page: Watched, server: str, recorded_store: Any) -> None:
    runs = recorded_store[1]
    page.page.goto(server + "/")
    page.page.wait_for_selector("#runs tbody tr")
    listed = page.page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert set(runs.values()) <= set(listed)
    page.shot("runs")
    page.page.fill("input[name=status]", "succeeded")
    page.page.click("#filters button")
    page.page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 1")
    assert page.page.locator("#runs tbody tr").get_attribute("data-run") == runs["succeeded"]
    page.page.fill("input[name=status]", "")
    page.page.click("#filters button")
    page.page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length > 1")
    page.page.click("th[data-sort=tokens]")  # descending first
    page.page.wait_for_function("() => " + READY + " && location.hash.includes('sort=tokens')")
    tokens = page.page.locator("#runs tbody td[data-column=tokens]").all_text_contents()
    assert [int(t) for t in tokens] == sorted((int(t) for t in tokens), reverse=True)
    page.page.click("th[data-sort=tokens]")
    page.page.wait_for_function("() => " + READY + " && location.hash.includes('order=asc')")
    tokens = page.page.locator("#runs tbody td[data-column=tokens]").all_text_contents()
    assert [int(t) for t in tokens] == sorted(int(t) for t in tokens)


def _column(page: Watched, column: str) -> list[tuple[str, str, str]]:
    """(run id, text, class) of each row's cell of ``column``, top to bottom."""
    found: list[list[str]] = page.page.locator(f"#runs tbody td[data-column={column}]").evaluate_all(
        "cells => cells.map(c => [c.parentElement.dataset.run, c.textContent, c.className])"
    )
    return [(run, text, kind) for run, text, kind in found]


def _sort_by(page: Watched, column: str, order: str) -> None:
    page.page.click(f"th[data-sort={column}]")
    page.page.wait_for_function(
        "([column, order]) => " + READY + " && location.hash.includes('sort=' + column)"
        " && location.hash.includes('order=' + order)",
        arg=[column, order],
    )


def test_runs_list_shows_sorts_and_filters_outcome_and_cost(page: Watched, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    cheap_pass = record_priced_run(store, tokens_in=1000, tokens_out=0, outcome=1.0)  # $0.002
    dear_fail = record_priced_run(store, tokens_in=1000, tokens_out=500, outcome=0.0)  # $0.006
    tiny = record_priced_run(store, tokens_in=3, tokens_out=0, outcome=None)  # $0.000006, not scored
    unpriced = record_hostile_run(store)  # a model no price covers: no cost, which is not a cost of 0
    with serving(store) as url:
        page.page.goto(url + "/")
        page.page.wait_for_selector("#runs tbody tr")
        _sort_by(page, "cost", "desc")  # descending first
        assert _column(page, "cost") == [
            (dear_fail, "$0.0060", ""),
            (cheap_pass, "$0.0020", ""),
            (tiny, "$0.000006", ""),
            (unpriced, "n/a", ""),
        ]
        _sort_by(page, "cost", "asc")
        assert [run for run, _, _ in _column(page, "cost")] == [tiny, cheap_pass, dear_fail, unpriced]
        _sort_by(page, "outcome", "desc")
        cells = _column(page, "outcome")
        assert cells[:2] == [(cheap_pass, "1", "passed"), (dear_fail, "0", "unsolved")]
        assert sorted(cells[2:]) == sorted([(tiny, "", ""), (unpriced, "", "")])  # no outcome: last, blank
        page.shot("runs-outcome-cost")
        page.page.select_option("select[name=outcome]", "failed")
        page.page.click("#filters button")
        page.page.wait_for_function("() => " + READY + " && location.hash.includes('outcome=failed')")
        assert _column(page, "outcome") == [(dear_fail, "0", "unsolved")]
        assert page.page.input_value("select[name=outcome]") == "failed"  # the form shows the filter in force
        page.page.click(f"#runs a[href='#/run/{dear_fail}']")
        page.page.wait_for_selector("#run-cost")
        assert (page.page.text_content("#run-outcome"), page.page.text_content("#run-cost")) == ("0", "$0.0060")


def test_recorded_runs_show_their_outcome_and_no_cost(page: Watched, server: str, recorded_store: Any) -> None:
    runs = recorded_store[1]
    page.page.goto(server + "/#/?sort=outcome&order=desc")
    page.page.wait_for_function("() => " + READY + " && document.querySelectorAll('#runs tbody tr').length > 1")
    outcomes = {run: (text, kind) for run, text, kind in _column(page, "outcome")}
    # the example's outcome hook (tests pass) scored the succeeded run 1 and the one its script cut short 0
    assert outcomes[runs["succeeded"]] == ("1", "passed")
    assert outcomes[runs["failed"]] == ("0", "unsolved")
    assert outcomes[runs["errored"]] == ("", "")  # not scored: the infrastructure failed
    assert [run for run, _, _ in _column(page, "outcome")][:2] == [runs["succeeded"], runs["failed"]]
    # a run outside a benchmark has no prices: its cost is unknown
    assert {text for _, text, _ in _column(page, "cost")} == {"n/a"}
    page.page.click(f"#runs a[href='#/run/{runs['succeeded']}']")
    page.page.wait_for_selector("#run-outcome.passed")
    assert page.page.text_content("#run-outcome") == "1" and page.page.locator("#run-cost").count() == 0


def test_run_page_draws_the_realized_path_and_opens_a_step(page: Watched, server: str, recorded_store: Any) -> None:
    run_id = recorded_store[1]["succeeded"]
    page.page.goto(server + "/")
    page.page.click(f"#runs a[href='#/run/{run_id}']")
    page.page.wait_for_selector("#graph g.node")
    assert page.page.text_content("#path") == "path: plan → code → test → check → code → test → check"
    assert page.page.get_attribute("g.node[data-node=code]", "data-visits") == "2"
    fills = page.page.locator("g.node rect").evaluate_all("rects => rects.map(r => r.getAttribute('fill'))")
    assert any(fill.startswith("hsl(") for fill in fills)  # visited nodes coloured by their reward
    assert page.page.locator("path.taken").count() >= 4
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    page.page.click("#timeline .row[data-seq='1']")
    assert '"seq": 1' in (page.page.text_content("#step") or "")
    page.shot("run")
    # the step a reward scored shows the reward, its components and explanation
    reward_seq = page.page.evaluate(
        "fetch('api/runs/" + run_id + "').then(r => r.json()).then(d => d.rewards.find(x => x.target_seq !== null)"
        ".target_seq)"
    )
    page.page.evaluate(f"document.getElementById('timeline').scrollTop = {reward_seq} * 22")
    page.page.wait_for_selector(f"#timeline .row[data-seq='{reward_seq}']")
    page.page.click(f"#timeline .row[data-seq='{reward_seq}']")
    assert page.page.locator("#detail .reward").count() >= 1


def test_compare_page_shows_the_first_divergence(page: Watched, server: str, recorded_store: Any) -> None:
    runs = recorded_store[1]
    page.page.goto(server + "/")
    page.page.wait_for_selector("#cmp-a")
    page.page.fill("#cmp-a", runs["succeeded"])
    page.page.fill("#cmp-b", runs["failed"])
    page.page.click("#cmp-go")
    page.page.wait_for_selector("#divergence")
    assert "first difference at event" in (page.page.text_content("#divergence") or "")
    # both realized graphs, side by side, each with its visited nodes
    for side in ("a", "b"):
        assert page.page.locator(f"#graph-{side} g.node[data-visits]:not([data-visits='0'])").count() >= 1
    # rewards per node: a row per visited node, with both runs' values where they have one
    rows = page.page.locator("#compare-rewards tr[data-node]")
    assert rows.count() >= 3
    api = page.page.evaluate(f"fetch('api/compare?a={runs['succeeded']}&b={runs['failed']}').then(r => r.json())")
    visited = set(api["a"]["realized"]["nodes"]) | set(api["b"]["realized"]["nodes"])
    assert {rows.nth(i).get_attribute("data-node") for i in range(rows.count())} == visited
    page.shot("compare")


def test_hostile_model_output_runs_nothing(page: Watched, server: str, recorded_store: Any) -> None:
    run_id = recorded_store[1]["hostile"]
    page.page.goto(server + "/#/?text=onerror")
    page.page.wait_for_selector("#runs tbody tr")
    page.page.goto(server + f"/#/run/{run_id}")
    page.page.wait_for_selector("#timeline .row[data-seq='2']")
    page.page.click("#timeline .row[data-seq='2']")
    assert "<script>alert(1)</script>" in (page.page.text_content("#step") or "")
    assert page.page.locator("#page script, #page img, #page a[href^=javascript]").count() == 0
    page.page.wait_for_timeout(300)  # an onerror would have fired by now
    page.shot("hostile")


def test_a_live_run_grows_on_its_page(page: Watched, server: str, recorded_store: Any) -> None:
    store: TraceStore = recorded_store[0]
    # Written through a second store object, as `agentflow run` in another process would.
    writer = TraceStore(store.root)
    recorder = writer.new_run(workflow="live")
    recorder.emit(EventType.RUN_STARTED, data={"workflow": "live", "inputs": {}})
    run_id = recorder.summary().run_id
    page.page.goto(server + f"/#/run/{run_id}")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    recorder.emit(EventType.NODE_STARTED, node="work", data={"visit": 1, "attempt": 1})
    page.page.wait_for_selector("#timeline .row[data-seq='1']", timeout=15_000)
    recorder.finish("succeeded")
    recorder.close()
    page.page.wait_for_function(
        "() => document.getElementById('run-status').textContent === 'finished'", timeout=15_000
    )
    assert page.page.locator("#timeline .row").count() >= 3


def test_a_run_of_agentflow_run_in_another_process_is_tailed_live(page: Watched, tmp_path: Path) -> None:
    store = TraceStore(tmp_path / ".agentflow")  # its own store: the shared one's run counts stay as they are
    # The shipped example with a model that takes 0.4 s per answer, run by the CLI in its own process.
    shutil.copytree(ROOT / "graphs" / "examples", tmp_path / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "graphs" / "examples" / "fix_failing_test" / "script.yaml"
    document = yaml.safe_load(script.read_text())
    document["responses"] = [{**response, "latency_s": 0.4} for response in document["responses"]]
    script.write_text(yaml.safe_dump(document))
    before = set(store.run_ids())
    command = "import sys; from agentflow.cli import main; sys.argv[0] = 'agentflow'; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "run", "graphs/examples/fix_failing_test.yaml", "--store", str(store.root)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    with serving(store) as server:
        try:
            run_id = _wait_for_new_run(store, before, page)
            page.page.goto(server + f"/#/run/{run_id}")
            page.page.wait_for_selector("#timeline .row[data-seq='0']")
            assert process.poll() is None  # the page opened while the run was still going
            shown_early = page.page.locator("#timeline .row").count()
            page.page.wait_for_function(
                "() => document.getElementById('run-status').textContent === 'finished'", timeout=60_000
            )
        finally:
            _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()[-2000:]
        total = len(store.load_trace(run_id).events)
        assert total > shown_early  # events arrived after the page was drawn
        assert page.page.text_content("#count") == f"{total} events"
        assert (page.page.text_content("#problems") or "") == ""  # every event arrived verified


def _wait_for_new_run(store: TraceStore, before: set[str], page: Watched) -> str:
    """The id of the run another process starts in ``store`` (up to 15 s)."""
    for _ in range(300):  # the run appears in the store once the process has started it
        new = set(store.run_ids()) - before
        if new:
            return new.pop()
        page.page.wait_for_timeout(50)
    raise AssertionError("agentflow run never started its run")


def _row(page: Watched, seq: int) -> tuple[str, str]:
    """The class of the timeline's row of event ``seq`` (scrolled to it) and the mark it carries, if any."""
    page.page.evaluate(f"document.getElementById('timeline').scrollTop = {seq} * 22")
    row = page.page.wait_for_selector(f"#timeline .row[data-seq='{seq}']")
    assert row is not None
    found: list[str] = row.evaluate("r => [r.className, r.querySelector('.mark')?.textContent ?? '']")
    return found[0], found[1]


def _open_held_run(page: Watched, url: str, run_id: str) -> None:
    """Open a run page whose trace is held after its first lines: it is drawn from them, and says so."""
    page.page.goto(url + f"/#/run/{run_id}")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    page.page.wait_for_selector("#graph g.node")
    assert page.page.get_attribute("#verification", "data-state") == "verifying"
    assert page.page.text_content("#verification") == "verifying the trace: 500 / 3,002 events checked"


def test_a_long_trace_is_drawn_from_its_first_events_verified_then_verified_whole(
    page: Watched, tmp_path: Path
) -> None:
    store = HeldStore(tmp_path / "store")
    run_id = record_long_run(store, 750)  # 3,002 events: the first 500 are verified before the page is answered
    with serving(store) as url:
        _open_held_run(page, url, run_id)
        partial = page.page.text_content("#partial") or ""
        assert "of the first 500 events, the ones verified so far" in partial
        assert page.page.get_attribute("#run-status", "class") == "succeeded from-index"  # the index's, said so
        assert page.page.get_attribute("g.node[data-node=plan]", "data-visits") == "42"  # in the first 500 events
        assert _row(page, 0) == ("row", "")
        assert _row(page, 2000) == ("row unverified", "unverified")  # fetched before it was checked: marked
        page.page.click("#timeline .row[data-seq='2000']")
        assert "not verified yet" in (page.page.text_content("#step-unverified") or "")
        page.shot("run-verifying")
        store.released.set()
        page.page.wait_for_selector("#verification[data-state=verified]", timeout=30_000)
        assert page.page.text_content("#verification") == "trace verified: 3,002 events"
        assert _row(page, 2000) == ("row", "")
        # the step shown is drawn again, verified
        page.page.wait_for_selector("#step-unverified", state="detached", timeout=10_000)
        assert page.page.text_content("#partial") == "" and page.page.text_content("#problems") == ""
        assert page.page.get_attribute("g.node[data-node=plan]", "data-visits") == "250"
        assert page.page.get_attribute("#run-status", "class") == "succeeded"
        assert page.page.text_content("#count") == "3002 events"


def _ends_damaged_at(page: Watched, seq: int, *, total: int) -> None:
    """Wait for the verification to end and check it names the tampered event and the verified prefix before it."""
    page.page.wait_for_selector("#verification[data-state=damaged]", timeout=30_000)
    assert f"line {seq + 1}, seq {seq}: tampered" in (page.page.text_content("#problems") or "")
    assert page.page.text_content("#verification") == (
        f"trace damaged: only its first {seq:,} of {total:,} events are verified"
    )


def test_a_trace_tampered_in_the_middle_ends_with_the_damage_banner(page: Watched, tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "store")
    run_id = record_long_run(store, 750)
    tamper_builtin(store, run_id, 1503, '"output":"x"', '"output":"tampered"')  # a tool result, its hash kept
    with serving(store) as url:
        _open_held_run(page, url, run_id)
        assert page.page.text_content("#problems") == ""
        assert _row(page, 1503) == ("row unverified", "unverified")
        store.released.set()
        _ends_damaged_at(page, 1503, total=3002)
        assert "of the first 1,503 events, the ones before the damage" in (page.page.text_content("#partial") or "")
        assert _row(page, 1502) == ("row", "")
        assert _row(page, 1504) == ("row unverified", "unverified")  # nor is any event after it
        assert _row(page, 1503) == ("row unverified", "damaged")  # never shown as verified, then or now
        page.page.click("#timeline .row[data-seq='1503']")
        assert "failed verification" in (page.page.text_content("#step-unverified") or "")
        assert '"output": "tampered"' in (page.page.text_content("#step") or "")
        page.shot("run-damaged")


def test_a_trace_tampered_at_its_end_ends_with_the_damage_banner(page: Watched, tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "store")
    run_id = record_long_run(store, 750)
    tamper_builtin(store, run_id, 3001, '"status":"succeeded"', '"status":"failed"')  # run_finished, its hash kept
    with serving(store) as url:
        _open_held_run(page, url, run_id)
        store.released.set()
        _ends_damaged_at(page, 3001, total=3002)
        # the changed run_finished tells nothing: the status shown is still the index's, said so
        assert page.page.get_attribute("#run-status", "class") == "succeeded from-index"
        assert _row(page, 3000) == ("row", "")
        assert _row(page, 3001) == ("row unverified", "damaged")


def test_exported_site_opens_from_file(page: Watched, recorded_store: Any, tmp_path: Path) -> None:
    store, runs = recorded_store
    site = tmp_path / "site"
    # By the CLI, in its own process (Playwright's sync API holds this thread's event loop).
    command = "import sys; from agentflow.cli import main; sys.argv[0] = 'agentflow'; main()"
    exported = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            "view",
            "--store",
            str(store.root),
            "--export",
            str(site),
            runs["succeeded"],
            runs["failed"],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 runs" in exported.stdout
    page.page.goto((site / "index.html").as_uri())
    page.page.wait_for_selector("#runs tbody tr")
    assert sorted(page.page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")) == sorted(
        [runs["succeeded"], runs["failed"]]
    )
    page.page.click(f"#runs a[href='#/run/{runs['succeeded']}']")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    assert page.page.get_attribute("g.node[data-node=code]", "data-visits") == "2"
    page.page.goto((site / "index.html").as_uri() + f"#/compare/{runs['succeeded']}/{runs['failed']}")
    page.page.wait_for_selector("#divergence")
    page.shot("export")


@pytest.fixture(scope="module")
def bench_server(bench_store: tuple[TraceStore, dict[str, str]]) -> Iterator[str]:
    with serving(bench_store[0]) as url:
        yield url


def _bench_report(store: TraceStore, bench_run_id: str) -> dict[str, Any]:
    from agentflow.bench import build_report

    # in a thread of its own: Playwright's sync API holds this thread's event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        report: dict[str, Any] = pool.submit(lambda: asyncio.run(build_report(store, bench_run_id))).result().to_dict()
    return report


def _figures(page: Watched) -> dict[str, tuple[str, str | None]]:
    """The bench page's header figures: name -> (text shown, exact value)."""
    rows: list[list[Any]] = page.page.locator("#bench-figures tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.figure, r.querySelector('td').textContent, r.dataset.value ?? null])"
    )
    return {name: (text, value) for name, text, value in rows}


def _check_team_page(page: Watched, store: TraceStore, bench_run_id: str) -> None:
    """The Q-table benchmark's page shows its report's figures, one row per task with a link to each of its runs,
    a histogram of the outcomes and of the process rewards, and the learning curve of its router."""
    report = _bench_report(store, bench_run_id)
    figures = _figures(page)
    for k, value in report["pass_at_k"].items():
        assert figures[k] == (f"{value:.3f}", repr(value))
    assert figures["tasks"][0] == str(len(report["tasks"])) == "5"
    assert figures["epochs"][0] == "2"
    assert (figures["errored"][0], figures["retried"][0]) == (str(report["errored"]), str(report["retried"]))
    assert (figures["tokens"][0], figures["model calls"][0]) == (str(report["tokens"]), str(report["model_calls"]))
    assert figures["cost"][0] == f"${report['cost']:.4f}"
    assert figures["cost per success"][0] == f"${report['cost_per_success']:.4f}"
    assert figures["routing"][0] == "learn"
    rows = page.page.locator("#bench-tasks tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.task, r.querySelector('[data-column=\"pass@1\"]').textContent,"
        " [...r.querySelectorAll('[data-column=runs] a')].map(a => a.dataset.run)])"
    )
    assert rows == [
        [task["task_id"], f"{task['pass_at_k']['pass@1']:.3f}", task["run_ids"]] for task in report["tasks"]
    ]
    bars = page.page.locator("#bench-rewards .distribution[data-hook=outcome] rect.bar").evaluate_all(
        "bars => bars.map(b => Number(b.dataset.count))"
    )
    assert sum(bars) == report["scored"] and sum(1 for count in bars if count) == 2  # solved ones and unsolved ones
    assert page.page.locator("#bench-rewards .distribution[data-hook=constant] rect.bar[data-count='10']").count() == 1
    assert page.page.locator(".learning[data-router=team] circle.episode").count() == report["scored"]
    average = page.page.get_attribute(".learning[data-router=team] polyline.moving-average", "points") or ""
    assert len(average.split()) == report["scored"]


def test_bench_page_shows_pass_at_k_the_tasks_runs_rewards_and_the_learning_curve(
    page: Watched, bench_server: str, bench_store: Any
) -> None:
    store, benches = bench_store
    page.page.goto(bench_server + "/#/bench")
    page.page.wait_for_selector("#bench-runs tbody tr")
    page.page.click(f"#bench-runs a[href='#/bench/{benches['team']}']")
    page.page.wait_for_selector("#bench-figures")
    _check_team_page(page, store, benches["team"])
    page.shot("bench")
    # sorted by pass@1, best first, then back
    page.page.click("#bench-tasks th[data-key='pass@1']")
    passes = page.page.locator("#bench-tasks td[data-column='pass@1']").all_text_contents()
    assert passes == sorted(passes, reverse=True) and passes[0] != passes[-1]
    page.page.click("#bench-tasks th[data-key='pass@1']")
    assert page.page.locator("#bench-tasks td[data-column='pass@1']").all_text_contents() == sorted(passes)
    # a task's run opens its run page
    run_id = page.page.get_attribute("#bench-tasks tbody tr td[data-column=runs] a", "data-run")
    page.page.click(f"#bench-tasks a[data-run='{run_id}']")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    assert run_id in (page.page.text_content("#run-title") or "")


def test_bench_page_of_an_unpriced_benchmark_without_a_qtable(
    page: Watched, bench_server: str, bench_store: Any
) -> None:
    store, benches = bench_store
    report = _bench_report(store, benches["arith"])
    page.page.goto(bench_server + f"/#/bench/{benches['arith']}")
    page.page.wait_for_selector("#bench-figures")
    figures = _figures(page)
    assert (figures["cost"][0], figures["cost per success"][0]) == ("n/a", "n/a")  # no price: unknown, not $0
    assert figures["pass@3"] == (f"{report['pass_at_k']['pass@3']:.3f}", repr(report["pass_at_k"]["pass@3"]))
    assert page.page.locator("#bench-learning").count() == 0
    assert page.page.locator("#bench-rewards .distribution").count() == 1  # the outcome only: no process reward
    costs = page.page.locator("#bench-tasks td[data-column=cost]").all_text_contents()
    assert costs == ["n/a"] * 4
    # the task whose id is markup: shown as its text, run nowhere
    assert page.page.locator("#bench-tasks td[data-column=task]").all_text_contents()[-1] == "add-3" + XSS
    assert page.page.locator("#page script, #page img, #page a[href^=javascript]").count() == 0
    assert page.page.text_content("#bench-paths") == "12 × compute"
    page.shot("bench-unpriced")
    page.page.click("#bench-runs-link")  # the runs list, filtered to the benchmark's runs
    page.page.wait_for_function("() => " + READY + " && location.hash.startsWith('#/?bench=')")
    listed = page.page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert sorted(listed) == sorted(run for task in report["tasks"] for run in task["run_ids"])


def test_exported_bench_page_opens_from_file(page: Watched, bench_store: Any, tmp_path: Path) -> None:
    store, benches = bench_store
    site = tmp_path / "site"
    command = "import sys; from agentflow.cli import main; sys.argv[0] = 'agentflow'; main()"
    exported = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            "view",
            "--store",
            str(store.root),
            "--export",
            str(site),
            "--bench",
            benches["team"],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    page.page.goto((site / "index.html").as_uri() + "#/bench")
    page.page.wait_for_selector("#bench-runs tbody tr")
    assert page.page.locator("#bench-runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.bench)") == [
        benches["team"]
    ]
    page.page.click(f"#bench-runs a[href='#/bench/{benches['team']}']")
    page.page.wait_for_selector("#bench-figures")
    _check_team_page(page, store, benches["team"])
    page.shot("bench-export")
    run_id = page.page.get_attribute("#bench-tasks tbody tr:last-child td[data-column=runs] a", "data-run")
    page.page.click(f"#bench-tasks a[data-run='{run_id}']")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    assert run_id in (page.page.text_content("#run-title") or "")


def test_a_replay_links_its_report(page: Watched, tmp_path: Path) -> None:
    # recorded in a thread of its own: Playwright's sync API keeps an event loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        store, original, replay = pool.submit(record_replayed_pair, tmp_path, "date +%s%N", "verify").result()
    with serving(store) as url:
        page.page.goto(url + f"/#/run/{replay}")
        page.page.wait_for_selector("#replay-report")
        page.page.click("#replay-report")
        page.page.wait_for_selector("#divergence")
        assert f"{replay} replays {original}" in (page.page.text_content("h2") or "")
        assert "node second" in (page.page.text_content("#divergence") or "")
        page.shot("replay-report")


def test_a_step_shows_its_messages_its_command_and_the_diff_it_made(
    page: Watched, server: str, recorded_store: Any
) -> None:
    run_id = recorded_store[1]["succeeded"]
    trace = recorded_store[0].load_trace(run_id).events
    first = {}
    for event in trace:
        key = "patch" if event.type is EventType.TOOL_CALL and event.data.get("tool") == "apply_patch" else event.type
        first.setdefault(key, event.seq)
    page.page.goto(server + f"/#/run/{run_id}")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")

    def open_step(seq: int) -> None:
        page.page.evaluate(f"document.getElementById('timeline').scrollTop = {seq} * 22")
        page.page.wait_for_selector(f"#timeline .row[data-seq='{seq}']")
        page.page.click(f"#timeline .row[data-seq='{seq}']")
        page.page.wait_for_selector(f"#detail h3:text-matches('^#{seq} ')")

    open_step(first[EventType.MODEL_REQUEST])
    assert page.page.locator("#detail .message.system, #detail .message.user").count() >= 1
    open_step(first[EventType.SANDBOX_EXEC])
    assert (page.page.text_content("#detail pre.command") or "").startswith("$ ")
    open_step(first["patch"])
    page.page.wait_for_selector("#detail pre.diff")
    assert page.page.locator("#detail pre.diff span.added, #detail pre.diff span.removed").count() >= 1
    page.shot("step-diff")


def _record_example(folder: Path, name: str) -> tuple[TraceStore, str]:
    shutil.copytree(ROOT / "graphs" / "examples", folder / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", folder / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    store = TraceStore(folder / ".agentflow")
    result = asyncio.run(run_workflow(folder / "graphs" / "examples" / f"{name}.yaml", store=store))
    assert result.status == "succeeded", result.error
    return store, result.run_id


def test_parallel_branches_are_drawn_side_by_side_between_fan_out_and_join(page: Watched, tmp_path: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs a loop in this thread
        store, run_id = pool.submit(_record_example, tmp_path, "parallel_review").result()
    with serving(store) as url:
        page.page.goto(url + f"/#/run/{run_id}")
        page.page.wait_for_selector("#graph g.node")
        place = {
            name: (
                int(page.page.get_attribute(f"g.node[data-node={name}]", "data-column") or -1),
                int(page.page.get_attribute(f"g.node[data-node={name}]", "data-row") or -1),
            )
            for name in ("inventory", "style", "docs", "tests", "summarize")
        }
        branches = [place[name] for name in ("style", "docs", "tests")]
        assert {column for column, _ in branches} == {place["inventory"][0] + 1}  # one column after the fan-out
        assert len({row for _, row in branches}) == 3  # each branch in its own row: side by side
        assert place["summarize"][0] == place["inventory"][0] + 2  # the join after them
        assert page.page.locator("path.taken[data-kind=parallel]").count() == 3
        assert page.page.locator("path.taken[data-kind=join]").count() == 3
        page.shot("parallel-run")


def test_a_step_scored_by_the_language_server_shows_its_analysis_bundle(
    page: Watched, server: str, recorded_store: Any
) -> None:
    run_id = recorded_store[1]["succeeded"]
    store = recorded_store[0]
    rewards = [
        e
        for e in store.load_trace(run_id).events
        if e.type is EventType.REWARD and e.data.get("hook") == "lsp_diagnostics"
    ]
    scored = next(e for e in rewards if e.data.get("target_seq") is not None)
    bundle = scored.data["components"]["bundle"]
    page.page.goto(server + f"/#/run/{run_id}")
    page.page.wait_for_selector("#timeline .row[data-seq='0']")
    seq = scored.data["target_seq"]
    page.page.evaluate(f"document.getElementById('timeline').scrollTop = {seq} * 22")
    page.page.wait_for_selector(f"#timeline .row[data-seq='{seq}']")
    page.page.click(f"#timeline .row[data-seq='{seq}']")
    page.page.wait_for_selector("#detail .lsp-bundle")
    header = page.page.text_content("#detail .lsp-bundle h4") or ""
    assert bundle["server"]["name"] in header
    shown = page.page.locator(
        f"#detail .lsp-bundle[data-bundle='{scored.data['components']['bundle_id']}'] tr.diagnostic"
    )
    assert shown.count() == len(bundle["diagnostics"])
    page.shot("lsp-bundle")
