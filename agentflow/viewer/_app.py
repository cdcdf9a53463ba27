"""The viewer's Starlette app: read-only JSON over a store, the static pages, and a live tail of a run's events."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentflow.errors import AgentflowError
from agentflow.traces import (
    VOLATILE_TEXT,
    Event,
    EventType,
    RunInfo,
    Store,
    Trace,
    TraceFollower,
    TraceVerification,
    VerificationProgress,
    first_divergence,
    live_rewards,
    realized_graph,
    summarize,
    volatile_pattern,
    without_abandoned,
)
from agentflow.viewer._diffs import step_diffs
from agentflow.viewer._queries import RunsQuery, runs_page

STATIC = Path(__file__).parent / "static"
EVENTS_PAGE_MAX = 2000
# No inline script or style, nothing from elsewhere: trace data can only ever be text on the page.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LIVE_POLL_S = 0.5
TRACES_KEPT = 4
# A run page is answered once the trace's first lines are verified (the timeline's first page, static/app.js); the
# rest is verified in the background, this many lines at a time (a few milliseconds), its progress shown meanwhile.
FIRST_VERIFIED = 500
VERIFY_STEP = 500
# Between steps the background verification gives way to the requests being answered, for up to this long: a page
# being drawn or scrolled is not slowed by it.
GIVE_WAY_S = 0.25
# What of a run page's header only the whole trace can tell: until it is verified, the index's values are shown.
FROM_INDEX = ("status", "outcome", "cost")


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None


def event_json(event: Event) -> dict[str, Any]:
    """An event as the pages show it (large payloads stay ``{"$blob": digest}`` references, fetched on demand)."""
    return event.model_dump(mode="json")


def template_graph(first: Event | None) -> dict[str, Any] | None:
    """The workflow's nodes and edges, read from the workflow file the run's first event names, if it is there."""
    from agentflow.spec import load_workflow  # imported by create_app already: the first run page does not wait

    workflow_file = first.data.get("workflow_file") if first is not None else None
    if not isinstance(workflow_file, str) or not Path(workflow_file).is_file():
        return None
    try:
        spec = load_workflow(workflow_file).spec
    except (AgentflowError, OSError):
        return None
    edges: list[dict[str, Any]] = [
        {"from": edge.from_, "to": edge.to, "when": edge.when, "kind": "edge"} for edge in spec.edges
    ]
    for name, node in spec.nodes.items():
        for route in getattr(node, "routes", None) or []:
            edges.append({"from": name, "to": route.to, "when": route.when, "kind": "route"})
        # fan-outs, joins and maps are edges too: without them a branch would float apart from its fan-out
        edges += [{"from": name, "to": branch, "when": None, "kind": "parallel"} for branch in node.parallel]
        edges += [{"from": branch, "to": name, "when": None, "kind": "join"} for branch in node.after]
        if node.kind == "map":
            edges.append({"from": name, "to": node.node, "when": None, "kind": "map"})
    edges += [{"from": name, "to": "END", "when": None, "kind": "edge"} for name in spec.end]
    return {"start": spec.start, "nodes": list(spec.nodes), "edges": edges}


class _Requests:
    """How many requests the server is answering (not counting live tails, which stay open)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def started(self) -> None:
        with self._lock:
            self._count += 1

    def ended(self) -> None:
        with self._lock:
            self._count -= 1

    def give_way(self) -> None:
        """Wait while requests are being answered (up to GIVE_WAY_S): Python runs one thread at a time, and a
        thread verifying a trace would halve the speed of every answer."""
        deadline = time.monotonic() + GIVE_WAY_S
        while self._count > 0 and time.monotonic() < deadline:
            time.sleep(0.002)


class _Verifying:
    """A run's trace as the viewer verifies it: its first lines before the page is answered, the rest in a thread of
    its own (:meth:`start`); ``error`` says why the verification stopped, if it could not go on."""

    def __init__(self, verification: TraceVerification, requests: _Requests) -> None:
        self.verification = verification
        self.error: str | None = None
        self._requests = requests
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        verification.advance(FIRST_VERIFIED)

    def start(self) -> None:
        """Verify the rest of the trace in the background (once; nothing is left of a short one)."""
        with self._started:
            if self._thread is None and not self.verification.progress().done:
                self._thread = threading.Thread(target=self._verify_rest, name="agentflow-view-verify", daemon=True)
                self._thread.start()

    def _verify_rest(self) -> None:
        try:
            while True:
                self._requests.give_way()
                if self.verification.advance(VERIFY_STEP).done:
                    return
        except Exception as error:  # noqa: BLE001 - shown on the page, which would otherwise wait for it forever
            self.error = f"the trace could not be verified: {error}"

    def trace(self) -> Trace:
        """The whole trace, verified (what is left is checked in the calling thread if need be)."""
        return self.verification.trace()

    def finished(self) -> bool:
        """Whether the trace, verified to its end, ends with ``run_finished`` (a run still going does not)."""
        if not self.verification.progress().done:
            return False
        events = self.verification.trace().events
        return bool(events) and events[-1].type is EventType.RUN_FINISHED

    def status(self, progress: VerificationProgress | None = None) -> dict[str, Any]:
        """How far the verification is, as the page shows it."""
        progress = progress or self.verification.progress()
        problems = [str(problem) for problem in progress.problems]
        if self.error is not None:
            problems.append(self.error)
        state = "verifying" if not progress.done and self.error is None else "damaged" if problems else "verified"
        return {
            "state": state,
            "verified": progress.verified,
            "checked": progress.checked,
            "total": progress.checked if progress.done else progress.lines,
            "problems": problems,
            "problem_seqs": sorted({problem.seq for problem in progress.problems if problem.seq is not None}),
        }


class Viewer:
    """The endpoints, over one open store. Every one only reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # A finished run's trace never changes: the last few are kept, so paging through a 50,000-event trace
        # loads and verifies it once, not once per page. A run still going is read afresh for each run page.
        self._traces: OrderedDict[str, _Verifying] = OrderedDict()
        self._traces_lock = threading.Lock()
        self.requests = _Requests()
        self._bench_pages: OrderedDict[tuple[str, Any], dict[str, Any]] = OrderedDict()

    async def _blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def runs(self, request: Request) -> Response:
        params = request.query_params
        query = RunsQuery(
            workflow=params.get("workflow") or None,
            status=params.get("status") or None,
            bench_run=params.get("bench") or None,
            since=params.get("since") or None,
            until=params.get("until") or None,
            text=params.get("text") or None,
            outcome=params.get("outcome") or None,
            sort=params.get("sort") or "started_at",
            descending=params.get("order", "desc") != "asc",
            offset=_int(request, "offset", 0),
            limit=_int(request, "limit", 50),
        )
        total, infos = await self._blocking(runs_page, self.store, query)
        return JSONResponse(
            {"total": total, "offset": query.offset, "limit": query.limit, "runs": [i.to_dict() for i in infos]}
        )

    def _verifying(self, run_id: str, *, again_if_unfinished: bool = False) -> _Verifying:
        """The run's trace being verified (its first lines verified here if it was not yet): kept while its run is
        finished or its verification goes on; with ``again_if_unfinished``, a run still going is read again."""
        resolved = self.store.resolve_run_id(run_id)
        with self._traces_lock:
            known = self._traces.get(resolved)
            if known is not None and (
                not again_if_unfinished or not known.verification.progress().done or known.finished()
            ):
                self._traces.move_to_end(resolved)
                return known
            verifying = _Verifying(self.store.verify_in_steps(resolved), self.requests)
            self._traces[resolved] = verifying
            while len(self._traces) > TRACES_KEPT:
                self._traces.popitem(last=False)
            return verifying

    def _trace(self, run_id: str) -> Trace:
        """The run's whole trace, verified (a run still going: as it is now)."""
        return self._verifying(run_id, again_if_unfinished=True).trace()

    def _rewards(self, events: list[Event], run_id: str) -> list[dict[str, Any]]:
        """The run's live rewards (read from the events already loaded), then its grading passes' rewards.

        ``Store.list_rewards`` would load and verify the trace a second time: seconds for a 50,000-event run.
        """
        passes = [grading for grading in self.store.list_grading_passes() if run_id in grading.run_ids]
        live = [reward.to_dict() for reward in live_rewards(events, passes) if reward.superseded_by is None]
        graded = [
            reward.to_dict()
            for grading in passes
            for reward in self.store.list_rewards(run_id, pass_id=grading.pass_id)
        ]
        return live + graded

    def _run_view(self, trace: Trace, requested: str) -> dict[str, Any]:
        """What a run page and each side of a compare page draw: summary, template, realized path, rewards."""
        run_id = trace.events[0].run_id if trace.events else requested
        return {
            "run_id": run_id,
            "summary": summarize(trace.events).to_dict(),
            "events": len(trace.events),
            # Without run_finished the run may still be going (in another process): the page tails it.
            "finished": bool(trace.events) and trace.events[-1].type is EventType.RUN_FINISHED,
            "problems": [str(problem) for problem in trace.problems],
            "template": template_graph(trace.events[0] if trace.events else None),
            "realized": realized_graph(trace.events),
            "rewards": self._rewards(trace.events, run_id),
            "covers": len(trace.events),  # the events the summary, the realized graph and the rewards are of
            "from_index": [],  # the summary's fields that are the index's, not the trace's
        }

    def _page_view(self, requested: str, again: bool) -> tuple[dict[str, Any], _Verifying]:
        """A run page: the whole run once its trace is verified; until then, and for a damaged trace, the part
        verified (before the first damage).

        That part is drawn as the whole is: the summary, the realized graph and the rewards are of the verified
        events only (``covers`` says how many), the header's status, outcome and cost those the index recorded
        (``from_index``: only the whole trace tells them); ``events`` counts the trace's lines while they are
        checked. Nothing beyond the verified prefix is in it. Without ``again``, a run still going is not read
        again: the page is of the trace its verification read.
        """
        verifying = self._verifying(requested, again_if_unfinished=again)
        progress = verifying.verification.progress()
        if progress.done and progress.verified == progress.checked:
            view = self._run_view(verifying.trace(), requested)
            return {**view, "verification": verifying.status(progress)}, verifying
        prefix, _ = verifying.verification.events(0, progress.verified)
        run_id = verifying.verification.run_id
        summary = summarize(prefix).to_dict()
        info = self.store.run_info(run_id)
        for key in FROM_INDEX:
            summary[key] = getattr(info, key) if info is not None else None
        if info is None:
            summary["status"] = "unknown"
        events = progress.checked if progress.done else progress.lines
        _, last = verifying.verification.events(events - 1, events)  # not verified: only to know whether to tail
        view = {
            "run_id": run_id,
            "summary": summary,
            "events": events,
            "finished": bool(last) and last[-1].type is EventType.RUN_FINISHED,
            "problems": [str(problem) for problem in progress.problems],
            "template": template_graph(prefix[0] if prefix else None),
            "realized": realized_graph(prefix),
            "rewards": self._rewards(prefix, run_id),
            "covers": len(prefix),
            "from_index": list(FROM_INDEX) if info is not None else [],
            "verification": verifying.status(progress),
        }
        return view, verifying

    async def run(self, request: Request) -> Response:
        again = request.query_params.get("again") != "no"
        view, verifying = await self._blocking(self._page_view, request.path_params["run_id"], again)
        # the rest of the trace is verified once the page has its answer
        return JSONResponse(view, background=BackgroundTask(verifying.start))

    async def verification(self, request: Request) -> Response:
        verifying: _Verifying = await self._blocking(self._verifying, request.path_params["run_id"])
        verifying.start()
        return JSONResponse(verifying.status())

    async def diffs(self, request: Request) -> Response:
        trace: Trace = await self._blocking(self._trace, request.path_params["run_id"])
        found = await self._blocking(step_diffs, self.store, trace.events)
        return JSONResponse({str(seq): diffs for seq, diffs in found.items()})

    async def forks(self, request: Request) -> Response:
        run_id: str = await self._blocking(self.store.resolve_run_id, request.path_params["run_id"])
        return JSONResponse(await self._blocking(fork_tree, self.store, run_id))

    async def events(self, request: Request) -> Response:
        """A page of a run's events: ``events`` of the verified prefix, then ``unverified`` the rest of the page
        (lines not checked yet, or the events of a damaged trace from its first damage on), which the page marks."""
        start = max(_int(request, "from", 0), 0)
        limit = max(min(_int(request, "limit", 500), EVENTS_PAGE_MAX), 0)
        verifying: _Verifying = await self._blocking(self._verifying, request.path_params["run_id"])
        verified, unverified = await self._blocking(verifying.verification.events, start, start + limit)
        status = verifying.status()
        body = {
            "total": status["total"],
            "from": start,
            "events": [event_json(event) for event in verified],
            "unverified": [event_json(event) for event in unverified],
            "verification": status,
        }
        return JSONResponse(body, background=BackgroundTask(verifying.start))

    async def blob(self, request: Request) -> Response:
        content: bytes = await self._blocking(self.store.read_blob, request.path_params["digest"])
        # Served as text and never sniffed: a blob is shown, not run.
        return Response(content, media_type="text/plain; charset=utf-8")

    async def compare(self, request: Request) -> Response:
        return JSONResponse(
            await self._blocking(self._compare, request.query_params.get("a", ""), request.query_params.get("b", ""))
        )

    def _compare(self, first_id: str, second_id: str) -> dict[str, Any]:
        """Both runs as their run pages draw them, and where they first differ.

        When one run is a replay of the other this is the replay's own report: the original's abandoned attempts
        left out and the volatile text (test runners' timings) masked, exactly as ``agentflow replay`` compares.
        """
        first, second = self._trace(first_id), self._trace(second_id)
        a, b = self._run_view(first, first_id), self._run_view(second, second_id)
        replay = None
        if b["summary"].get("replay_of") == a["run_id"]:
            replay = {"original": a["run_id"], "replay": b["run_id"]}
            divergence = first_divergence(
                without_abandoned(first.events), second.events, volatile_pattern(VOLATILE_TEXT)
            )
        elif a["summary"].get("replay_of") == b["run_id"]:
            replay = {"original": b["run_id"], "replay": a["run_id"]}
            divergence = first_divergence(
                without_abandoned(second.events), first.events, volatile_pattern(VOLATILE_TEXT)
            )
        else:
            divergence = first_divergence(first.events, second.events)
        return {
            "a": a,
            "b": b,
            "replay": replay,
            "divergence": divergence.to_dict() if divergence is not None else None,
        }

    async def bench_runs(self, request: Request) -> Response:
        infos = await self._blocking(self.store.list_bench_runs)
        return JSONResponse({"bench_runs": [info.to_dict() for info in infos]})

    async def bench_run(self, request: Request) -> Response:
        from agentflow.viewer._bench import bench_page, bench_page_key  # the bench layer only when a bench page asks

        info = await self._blocking(self.store.get_bench_run, request.path_params["bench_run_id"])
        items = await self._blocking(self.store.list_bench_items, info.bench_run_id)
        # Reading every run of a benchmark (164 tasks x 5 epochs) takes a while: a page of a bench run none of
        # whose attempts is still running is built once, until one changes (a resume).
        key = (info.bench_run_id, bench_page_key(items))
        data = self._bench_pages.get(key)
        if data is None:
            # in a thread of its own, as the other endpoints read the store: the server answers meanwhile
            data = await self._blocking(asyncio.run, bench_page(self.store, info.bench_run_id))
            if all(item.status != "running" for item in items):
                self._bench_pages[key] = data
                while len(self._bench_pages) > TRACES_KEPT:
                    self._bench_pages.popitem(last=False)
        return JSONResponse(data)

    async def live(self, request: Request) -> Response:
        run_id: str = await self._blocking(self.store.resolve_run_id, request.path_params["run_id"])
        after = _int(request, "after", -1)
        # Only what the run appends is read and verified at each poll, not its whole trace again.
        follower: TraceFollower = await self._blocking(self.store.follow_trace, run_id)

        async def stream() -> AsyncIterator[str]:
            reported = 0
            while True:
                events: list[Event] = await self._blocking(follower.poll)
                for event in events:
                    if event.seq > after:
                        yield f"id: {event.seq}\nevent: trace\ndata: {json.dumps(event_json(event))}\n\n"
                problems = follower.problems
                for problem in problems[reported:]:
                    yield f"event: problem\ndata: {json.dumps(str(problem))}\n\n"
                reported = len(problems)
                if follower.finished:
                    yield "event: finished\ndata: {}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(LIVE_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream")


FORK_DEPTH = 4  # levels of forks of forks a run page shows
FORKS_LISTED = 1000  # continuations read per run


def fork_tree(store: Store, run_id: str, depth: int = FORK_DEPTH) -> dict[str, Any]:
    """The forks of a run as a tree: its fork groups (where each forked it, their continuations, and theirs in
    turn, ``depth`` levels), from the runs index (one trace read per group, for its fork point). The run it was
    itself forked from is in its summary (``forked_from``)."""
    children = store.list_runs(limit=FORKS_LISTED, forked_from=run_id)
    groups: dict[str, list[RunInfo]] = {}
    for child in sorted(children, key=lambda info: info.run_id):
        groups.setdefault(child.fork_group or "", []).append(child)
    listed = []
    for group, runs in sorted(groups.items()):
        started = store.load_trace(runs[0].run_id).events[:1]
        point = started[0].data.get("forked_from", {}) if started else {}
        listed.append(
            {
                "group": group,
                "seq": point.get("seq") if isinstance(point, dict) else None,
                "step": started[0].data.get("fork_step") if started else None,
                "runs": [
                    {
                        **info.to_dict(),
                        "forks": fork_tree(store, info.run_id, depth - 1)["groups"] if depth > 1 else [],
                    }
                    for info in runs
                ],
            }
        )
    return {"run_id": run_id, "groups": listed}


def create_app(store: Store, *, token: str | None = None) -> Starlette:
    """The viewer over ``store``. With ``token``, every request must carry it (``?token=`` or the cookie it sets)."""
    import agentflow.spec  # noqa: F401 - the workflow loader every run page uses, loaded with the server (0.2 s)

    viewer = Viewer(store)

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        sets_cookie = False
        if token is not None:
            given = request.query_params.get("token") or request.cookies.get("agentflow_view_token") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _secured(JSONResponse({"error": "a valid access token is required"}, status_code=401))
            sets_cookie = "token" in request.query_params
        viewer.requests.started()
        try:
            response = await call_next(request)  # a live tail counts until its stream starts
        except (AgentflowError, ValueError, KeyError) as error:
            status = 400 if isinstance(error, ValueError) else 404
            response = JSONResponse({"error": str(error)}, status_code=status)
        finally:
            viewer.requests.ended()
        if sets_cookie and token is not None:
            response.set_cookie("agentflow_view_token", token, httponly=True, samesite="strict")
        return _secured(response)

    routes = [
        Route("/api/runs", viewer.runs),
        Route("/api/runs/{run_id}", viewer.run),
        Route("/api/runs/{run_id}/events", viewer.events),
        Route("/api/runs/{run_id}/verification", viewer.verification),
        Route("/api/runs/{run_id}/forks", viewer.forks),
        Route("/api/runs/{run_id}/diffs", viewer.diffs),
        Route("/api/runs/{run_id}/live", viewer.live),
        Route("/api/blobs/{digest}", viewer.blob),
        Route("/api/compare", viewer.compare),
        Route("/api/bench", viewer.bench_runs),
        Route("/api/bench/{bench_run_id}", viewer.bench_run),
        Mount("/", StaticFiles(directory=STATIC, html=True)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=middleware)])


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


__all__ = ["create_app"]
