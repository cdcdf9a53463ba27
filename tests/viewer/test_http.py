"""The viewer's HTTP side over a real store: pagination, filters, sort, events paging, token and headers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agentflow.bench import build_report
from agentflow.traces import BenchItem, EventType, TraceStore, realized_graph
from agentflow.traces.conformance import tamper_builtin
from agentflow.viewer import CSP, create_app
from agentflow.viewer._queries import RunsQuery, _generic_page
from tests.viewer.conftest import (
    PRICES,
    XSS,
    HeldStore,
    record_errored_run,
    record_hostile_run,
    record_long_run,
    record_priced_run,
    record_replayed_pair,
    wait_until,
)


@pytest.fixture
def client(recorded_store: tuple[TraceStore, dict[str, str]]) -> TestClient:
    return TestClient(create_app(recorded_store[0]))


def test_runs_list_pages_filters_and_sorts(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    ids = [record_hostile_run(store, workflow="a" if index % 2 else "b") for index in range(7)]
    client = TestClient(create_app(store))
    first = client.get("/api/runs", params={"limit": 3}).json()
    second = client.get("/api/runs", params={"limit": 3, "offset": 3}).json()
    third = client.get("/api/runs", params={"limit": 3, "offset": 6}).json()
    assert first["total"] == 7
    listed = [run["run_id"] for page in (first, second, third) for run in page["runs"]]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 7  # no run twice, none left out
    only_a = client.get("/api/runs", params={"workflow": "a"}).json()
    assert only_a["total"] == 3 and {run["workflow"] for run in only_a["runs"]} == {"a"}
    ascending = client.get("/api/runs", params={"sort": "started_at", "order": "asc", "limit": 50}).json()
    starts = [run["started_at"] for run in ascending["runs"]]
    assert starts == sorted(starts)
    assert client.get("/api/runs", params={"status": "succeeded"}).json()["total"] == 0
    assert client.get("/api/runs", params={"text": "onerror"}).json()["total"] == 7
    bad = client.get("/api/runs", params={"sort": "run_id; DROP TABLE runs"})
    assert bad.status_code == 400 and "unknown sort column" in bad.json()["error"]


def test_run_page_has_the_template_and_realized_path(
    client: TestClient, recorded_store: tuple[TraceStore, dict[str, str]]
) -> None:
    run_id = recorded_store[1]["succeeded"]
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["summary"]["status"] == "succeeded"
    assert run["realized"]["path"] == ["plan", "code", "test", "check", "code", "test", "check"]
    assert run["realized"]["nodes"]["code"]["visits"] == 2
    assert set(run["template"]["nodes"]) >= {"plan", "code", "test", "check"}
    assert any(reward["hook"] == "tests_passed" for reward in run["rewards"])
    # read from the trace the page already loaded, and the same as the store's own list
    assert run["rewards"] == [reward.to_dict() for reward in recorded_store[0].list_rewards(run_id)]


def test_events_are_paged_by_seq(client: TestClient, recorded_store: tuple[TraceStore, dict[str, str]]) -> None:
    run_id = recorded_store[1]["succeeded"]
    total = client.get(f"/api/runs/{run_id}").json()["events"]
    page = client.get(f"/api/runs/{run_id}/events", params={"from": 5, "limit": 4}).json()
    assert page["total"] == total
    assert [event["seq"] for event in page["events"]] == [5, 6, 7, 8]
    assert client.get(f"/api/runs/{run_id}/events", params={"from": total}).json()["events"] == []


def _seqs(page: dict[str, Any]) -> tuple[list[int], list[int]]:
    return [event["seq"] for event in page["events"]], [event["seq"] for event in page["unverified"]]


def test_a_long_trace_is_answered_from_its_first_lines_verified_then_verified_in_the_background(
    tmp_path: Path,
) -> None:
    store = HeldStore(tmp_path / "store")
    run_id = record_long_run(store, 750)  # 3,002 events
    client = TestClient(create_app(store))
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["verification"] == {
        "state": "verifying",
        "verified": 500,
        "checked": 500,
        "total": 3002,
        "problems": [],
        "problem_seqs": [],
    }
    assert (run["events"], run["covers"], run["problems"]) == (3002, 500, [])
    # what the first 500 events tell (125 visits), and what only the whole trace can: the index's, said so
    assert len(run["realized"]["path"]) == 125 and run["realized"]["nodes"]["plan"]["visits"] == 42
    assert run["summary"]["status"] == "succeeded" and run["from_index"] == ["status", "outcome", "cost"]
    page = client.get(f"/api/runs/{run_id}/events", params={"from": 495, "limit": 10}).json()
    assert _seqs(page) == ([495, 496, 497, 498, 499], [500, 501, 502, 503, 504])  # beyond the verified: marked
    assert page["total"] == 3002
    store.released.set()
    wait_until(lambda: client.get(f"/api/runs/{run_id}/verification").json()["state"] != "verifying", "verified")
    assert client.get(f"/api/runs/{run_id}/verification").json()["state"] == "verified"
    page = client.get(f"/api/runs/{run_id}/events", params={"from": 495, "limit": 10}).json()
    assert _seqs(page) == (list(range(495, 505)), [])
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["covers"], run["from_index"], len(run["realized"]["path"])) == (3002, [], 750)
    assert run["realized"] == realized_graph(store.load_trace(run_id).events)


def test_a_trace_tampered_in_the_middle_is_verified_up_to_the_changed_event_only(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    run_id = record_long_run(store, 750)
    tamper_builtin(store, run_id, 1503, '"output":"x"', '"output":"tampered"')  # a tool result, its hash kept
    client = TestClient(create_app(store))
    assert client.get(f"/api/runs/{run_id}").json()["verification"]["state"] == "verifying"
    wait_until(lambda: client.get(f"/api/runs/{run_id}/verification").json()["state"] != "verifying", "verified")
    status = client.get(f"/api/runs/{run_id}/verification").json()
    assert (status["state"], status["verified"], status["problem_seqs"]) == ("damaged", 1503, [1503])
    assert "tampered" in status["problems"][0]
    page = client.get(f"/api/runs/{run_id}/events", params={"from": 1500, "limit": 6}).json()
    assert _seqs(page) == ([1500, 1501, 1502], [1503, 1504, 1505])  # the changed event and all after it
    assert page["unverified"][0]["data"]["output"] == "tampered"  # shown as it is, but never as verified
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["problems"] == status["problems"] and run["verification"]["state"] == "damaged"


def test_damage_in_the_first_lines_is_in_the_first_answer(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "store")
    run_id = record_long_run(store, 750)
    tamper_builtin(store, run_id, 3, '"output":"x"', '"output":"tampered"')
    client = TestClient(create_app(store))
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["verification"]["state"] == "verifying"  # the rest is still to be checked
    assert (run["verification"]["verified"], run["covers"]) == (3, 3) and "tampered" in run["problems"][0]
    assert len(run["realized"]["path"]) == 1  # drawn from the three events before the damage only
    page = client.get(f"/api/runs/{run_id}/events", params={"from": 0, "limit": 6}).json()
    assert _seqs(page) == ([0, 1, 2], [3, 4, 5])
    store.released.set()


def test_compare_names_the_first_divergence(
    client: TestClient, recorded_store: tuple[TraceStore, dict[str, str]]
) -> None:
    runs = recorded_store[1]
    same = client.get("/api/compare", params={"a": runs["succeeded"], "b": runs["succeeded"]}).json()
    assert same["divergence"] is None
    different = client.get("/api/compare", params={"a": runs["succeeded"], "b": runs["failed"]}).json()
    assert different["divergence"] is not None and different["divergence"]["index"] > 0
    assert different["b"]["summary"]["status"] != "succeeded"


def test_every_response_carries_a_strict_csp(client: TestClient) -> None:
    for path in ("/", "/app.js", "/api/runs", "/api/runs/no-such-run"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert client.get("/api/runs/no-such-run").status_code == 404


def test_hostile_text_comes_back_as_data(client: TestClient, recorded_store: tuple[TraceStore, dict[str, str]]) -> None:
    response = client.get("/api/runs", params={"text": "onerror"})
    assert response.headers["content-type"].startswith("application/json")
    assert XSS in {run["error"] for run in response.json()["runs"]}
    page = client.get("/")
    assert '<script src="app.js" defer></script>' in page.text  # the one script, from the page's origin
    script = client.get("/app.js").text
    assert ".innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script


def test_a_token_guards_every_request(recorded_store: tuple[TraceStore, dict[str, str]]) -> None:
    client = TestClient(create_app(recorded_store[0], token="s3cret"))
    assert client.get("/api/runs").status_code == 401
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    assert client.get("/", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/runs").status_code == 200  # the cookie set by the tokened URL


def test_live_stream_sends_events_after_the_given_seq(
    client: TestClient, recorded_store: tuple[TraceStore, dict[str, str]]
) -> None:
    run_id = recorded_store[1]["hostile"]
    with client.stream("GET", f"/api/runs/{run_id}/live", params={"after": 2}) as response:
        body = "".join(response.iter_text())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "id: 3\n" in body and "id: 2\n" not in body
    assert body.rstrip().endswith("event: finished\ndata: {}")


def _run_with(store: TraceStore, *, answer: str, rewards: list[tuple[float, int | None]], error: bool) -> str:
    """A finished run recorded through the store's API: one model answer, then the given rewards (value, label)."""
    with store.new_run(workflow="scored") as recorder:
        recorder.emit(EventType.RUN_STARTED, data={"workflow": "scored", "inputs": {}})
        started = recorder.emit(EventType.NODE_STARTED, node="solve", data={"visit": 1, "attempt": 1})
        recorder.emit(
            EventType.MODEL_RESPONSE,
            node="solve",
            parent=started.seq,
            data={"model": "m", "message": {"role": "assistant", "content": answer}, "tool_calls": []},
        )
        for value, label in rewards:
            recorder.emit(
                EventType.REWARD, node="solve", data={"hook": "h", "on": "node", "value": value, "label": label}
            )
        if error:
            recorder.emit(EventType.ERROR, node="solve", data={"message": "tool crashed", "kind": "ToolError"})
        recorder.finish("succeeded")
        return recorder.summary().run_id


def test_runs_list_sorts_by_lowest_reward_and_first_error_and_finds_text_in_the_final_answer(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    low = _run_with(store, answer="The answer is 42", rewards=[(0.9, 1), (-0.5, -1)], error=False)
    high = _run_with(store, answer="I could not find it", rewards=[(0.7, 1), (0.8, 1)], error=True)
    none = _run_with(store, answer="nothing scored", rewards=[], error=False)
    client = TestClient(create_app(store))
    rows = {run["run_id"]: run for run in client.get("/api/runs").json()["runs"]}
    assert rows[low]["reward_min"] == -0.5 and rows[high]["reward_min"] == 0.7 and rows[none]["reward_min"] is None
    assert rows[low]["first_error_seq"] == 4  # the reward labelled -1 (seq 4), there is no error event
    assert rows[high]["first_error_seq"] == 5  # the error event after two positive rewards
    assert rows[none]["first_error_seq"] is None
    assert rows[low]["final_answer"] == "The answer is 42"
    by_min = client.get("/api/runs", params={"sort": "reward_min", "order": "asc"}).json()["runs"]
    assert [run["run_id"] for run in by_min] == [low, high, none]  # runs without a reward last either way
    by_error = client.get("/api/runs", params={"sort": "first_error", "order": "desc"}).json()["runs"]
    assert [run["run_id"] for run in by_error] == [high, low, none]
    found = client.get("/api/runs", params={"text": "ANSWER IS"}).json()
    assert [run["run_id"] for run in found["runs"]] == [low]
    assert (
        client.get("/api/runs", params={"text": "tool crashed"}).json()["runs"] == []
    )  # a finished run's error is its run_finished error


def test_runs_list_sorts_by_outcome_and_cost_and_filters_by_outcome(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    cheap_pass = record_priced_run(store, tokens_in=1000, tokens_out=0, outcome=1.0)  # $0.002
    dear_fail = record_priced_run(store, tokens_in=1000, tokens_out=500, outcome=0.0)  # $0.006
    half = record_priced_run(store, tokens_in=0, tokens_out=0, outcome=0.5)  # priced, no tokens: $0
    unscored = record_priced_run(store, tokens_in=10, tokens_out=10, outcome=None)
    unpriced = record_hostile_run(store)  # no price covers its model: no cost
    client = TestClient(create_app(store))
    rows = {run["run_id"]: run for run in client.get("/api/runs").json()["runs"]}
    assert rows[cheap_pass]["cost"] == pytest.approx(0.002) and rows[dear_fail]["cost"] == pytest.approx(0.006)
    assert rows[half]["cost"] == 0.0 and rows[unpriced]["cost"] is None
    assert [rows[run]["outcome"] for run in (cheap_pass, dear_fail, half, unscored)] == [1.0, 0.0, 0.5, None]

    def order(**params: str) -> list[str]:
        return [run["run_id"] for run in client.get("/api/runs", params=params).json()["runs"]]

    # runs without a value last either way
    assert order(sort="cost", order="desc") == [dear_fail, cheap_pass, unscored, half, unpriced]
    assert order(sort="cost", order="asc") == [half, unscored, cheap_pass, dear_fail, unpriced]
    assert order(sort="outcome", order="desc")[:3] == [cheap_pass, half, dear_fail]
    assert set(order(sort="outcome", order="desc")[3:]) == {unscored, unpriced}
    # passed: an outcome of at least 0.5, as a benchmark counts a correct sample
    assert sorted(order(outcome="passed")) == sorted([cheap_pass, half])
    assert order(outcome="failed") == [dear_fail]
    assert sorted(order(outcome="none")) == sorted([unscored, unpriced])
    bad = client.get("/api/runs", params={"outcome": "maybe"})
    assert bad.status_code == 400 and "unknown outcome filter" in bad.json()["error"]
    # a store the viewer lists through Store.list_runs (PostgreSQL) sorts and filters the same
    for query in (RunsQuery(sort="cost"), RunsQuery(sort="outcome", descending=False), RunsQuery(outcome="passed")):
        _, infos = _generic_page(store, query)
        params = {"sort": query.sort, "order": "desc" if query.descending else "asc", "outcome": query.outcome or ""}
        assert [info.run_id for info in infos] == order(**params)


def test_an_errored_run_is_listed_apart_from_failed_ones(
    client: TestClient, recorded_store: tuple[TraceStore, dict[str, str]]
) -> None:
    runs = recorded_store[1]
    errored = client.get("/api/runs", params={"status": "errored"}).json()
    assert [run["run_id"] for run in errored["runs"]] == [runs["errored"]]
    assert "connection refused" in errored["runs"][0]["error"]
    failed = {run["run_id"] for run in client.get("/api/runs", params={"status": "failed"}).json()["runs"]}
    assert runs["errored"] not in failed and runs["failed"] in failed
    page = client.get(f"/api/runs/{runs['errored']}").json()
    assert page["summary"]["status"] == "errored" and page["summary"]["first_error_seq"] == 2


def test_a_run_page_lists_its_forks_as_a_tree(tmp_path: Path) -> None:
    import asyncio
    import shutil

    from agentflow.rerun import fork_run
    from agentflow.runtime import run_workflow
    from tests.viewer.conftest import ROOT

    shutil.copytree(ROOT / "graphs" / "examples", tmp_path / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    store = TraceStore(tmp_path / ".agentflow")
    parent = asyncio.run(run_workflow(tmp_path / "graphs" / "examples" / "fix_failing_test.yaml", store=store))
    children = asyncio.run(fork_run(store, parent.run_id, at=3, n=2))
    grandchild = asyncio.run(fork_run(store, children[0].run_id, at=5, n=1))[0]
    client = TestClient(create_app(store))
    tree = client.get(f"/api/runs/{parent.run_id}/forks").json()
    [group] = tree["groups"]
    assert sorted(run["run_id"] for run in group["runs"]) == sorted(child.run_id for child in children)
    assert group["step"] == 3 and isinstance(group["seq"], int)
    [first] = [run for run in group["runs"] if run["run_id"] == children[0].run_id]
    assert [run["run_id"] for run in first["forks"][0]["runs"]] == [grandchild.run_id]  # a fork of a fork, nested
    child_page = client.get(f"/api/runs/{children[1].run_id}").json()
    assert child_page["summary"]["forked_from"] == parent.run_id
    assert client.get(f"/api/runs/{grandchild.run_id}/forks").json()["groups"] == []


def test_a_bench_page_has_the_report_every_attempt_the_rewards_of_each_run_and_the_learning_curve(
    bench_store: tuple[TraceStore, dict[str, str]],
) -> None:
    store, benches = bench_store
    client = TestClient(create_app(store))
    page = client.get(f"/api/bench/{benches['team']}").json()
    report = asyncio.run(build_report(store, benches["team"])).to_dict()
    assert {key: page[key] for key in report} == json.loads(json.dumps(report))  # the report, as the CLI builds it
    assert page["pass_at_k"] == {"pass@1": 0.6, "pass@2": 0.6}
    items = store.list_bench_items(benches["team"])
    assert [(a["task_id"], a["epoch"], a["run_id"], a["counted"]) for a in page["attempts"]] == [
        (item.task_id, item.epoch, item.run_id, True) for item in items
    ]
    # the outcome of each counted run, and its mean reward of the one process-reward hook, as the runs' rewards say
    assert sorted((o["run_id"], o["value"]) for o in page["outcomes"]) == sorted((i.run_id, i.outcome) for i in items)
    assert set(page["run_rewards"]) == {"constant"} == set(page["process_rewards"])
    for run in page["run_rewards"]["constant"]:
        values = [r.value for r in store.list_rewards(run["run_id"]) if r.hook == "constant" and r.value is not None]
        assert run["mean"] == pytest.approx(sum(values) / len(values))
    means = [run["mean"] for run in page["run_rewards"]["constant"]]
    assert sum(means) / len(means) == pytest.approx(page["process_rewards"]["constant"]["mean_of_run_means"])
    # the team router learned once per run of the benchmark, in the order the runs finished
    [curve] = page["learning"]
    assert (curve["workflow"], curve["router"]) == ("dynamic_team", "team")
    episodes = store.qtable_episodes("dynamic_team", "team")
    assert [(p["episode"], p["run_id"], p["total_reward"]) for p in curve["episodes"]] == [
        (e.episode, e.run_id, e.total_reward) for e in episodes
    ]
    assert {p["run_id"] for p in curve["episodes"]} == {item.run_id for item in items}


def test_a_bench_page_without_prices_or_a_qtable_says_so(bench_store: tuple[TraceStore, dict[str, str]]) -> None:
    store, benches = bench_store
    page = TestClient(create_app(store)).get(f"/api/bench/{benches['arith']}").json()
    assert (page["cost"], page["cost_per_success"]) == (None, None)  # unknown, not free
    assert page["learning"] == [] and page["run_rewards"] == {}
    assert page["pass_at_k"]["pass@1"] == pytest.approx(0.75)
    assert [task["run_ids"] for task in page["tasks"]] == [
        [a["run_id"] for a in page["attempts"] if a["task_id"] == task["task_id"]] for task in page["tasks"]
    ]
    missing = TestClient(create_app(store)).get("/api/bench/bench-nothing-like-it")
    assert missing.status_code == 404


def test_a_bench_page_tells_retried_and_errored_attempts_and_follows_a_bench_run_that_goes_on(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "store")
    config = {"task_ids": ["t1"], "epochs": 2, "outcome": {"hook": "outcome"}, "prices": PRICES}
    info = store.create_bench_run(name="retries", config=config)

    def attempt(epoch: int, number: int, run_id: str, status: str, outcome: float | None) -> BenchItem:
        item = BenchItem(info.bench_run_id, "t1", epoch, number, run_id, None, "running", None, "2026-01-01T00:00:00Z")
        store.start_bench_item(item)
        finished = replace(item, status=status, outcome=outcome, finished_at="2026-01-01T00:00:01Z")
        store.finish_bench_item(finished)
        return finished

    # epoch 0: an outage, then a solved retry; epoch 1: an outage only (the pair is errored, out of pass@k)
    attempt(0, 1, record_errored_run(store), "errored", None)
    solved = attempt(0, 2, record_priced_run(store, tokens_in=1000, tokens_out=500, outcome=1.0), "succeeded", 1.0)
    attempt(1, 1, record_errored_run(store), "errored", None)
    client = TestClient(create_app(store))
    page = client.get(f"/api/bench/{info.bench_run_id}").json()
    assert (page["errored"], page["retried"], page["scored"], page["correct"]) == (1, 1, 1, 1)
    assert page["pass_at_k"] == {"pass@1": 1.0}
    assert page["cost"] == page["cost_per_success"] == pytest.approx(0.006)
    assert [(a["epoch"], a["attempt"], a["status"], a["counted"]) for a in page["attempts"]] == [
        (0, 1, "errored", False),  # superseded by the retry that finished
        (0, 2, "succeeded", True),
        (1, 1, "errored", True),
    ]
    assert [(o["run_id"], o["value"]) for o in page["outcomes"]] == [(solved.run_id, 1.0)]
    # a second try of the errored pair starts: the page shows it running, then (not a kept copy) how it ended
    retried = record_priced_run(store, tokens_in=10, tokens_out=10, outcome=0.0)
    running = BenchItem(info.bench_run_id, "t1", 1, 2, retried, None, "running", None, "2026-01-01T00:00:02Z")
    store.start_bench_item(running)
    assert client.get(f"/api/bench/{info.bench_run_id}").json()["attempts"][-1]["status"] == "running"
    store.finish_bench_item(replace(running, status="succeeded", outcome=0.0, finished_at="2026-01-01T00:00:03Z"))
    page = client.get(f"/api/bench/{info.bench_run_id}").json()
    assert (page["attempts"][-1]["status"], page["errored"], page["pass_at_k"]) == (
        "succeeded",
        0,
        {"pass@1": 0.5, "pass@2": 1.0},
    )


def _replayed_pair(tmp_path: Path, command: str, mode: str) -> tuple[TestClient, str, str]:
    store, original, replay = record_replayed_pair(tmp_path, command, mode)
    return TestClient(create_app(store)), original, replay


def test_a_replay_and_its_original_compare_as_the_replay_report(tmp_path: Path) -> None:
    client, original, replay = _replayed_pair(tmp_path, "echo two", "tape")
    report = client.get("/api/compare", params={"a": original, "b": replay}).json()
    assert report["replay"] == {"original": original, "replay": replay}
    assert report["divergence"] is None  # a tape replay records the same events
    # either order: the replay is recognised by its replay_of, not by its place
    assert client.get("/api/compare", params={"a": replay, "b": original}).json()["replay"] == report["replay"]
    # both sides carry what their graphs are drawn with: template, realized path and per-node rewards
    for side in (report["a"], report["b"]):
        assert side["template"] is not None and side["realized"]["path"] == ["first", "second"]
        assert {reward["node"] for reward in side["rewards"]} == {"first", "second"}


def test_a_verify_replay_that_differs_names_its_first_divergence(tmp_path: Path) -> None:
    client, original, replay = _replayed_pair(tmp_path, "date +%s%N", "verify")  # the command's output changes
    report = client.get("/api/compare", params={"a": original, "b": replay}).json()
    assert report["replay"] == {"original": original, "replay": replay}
    assert report["divergence"] is not None and report["divergence"]["node"] == "second"
