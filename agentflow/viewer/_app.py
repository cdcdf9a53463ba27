"""The viewer's Starlette app: read-only JSON over a store, the static pages, and a live tail of a run's events."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
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


def template_graph(trace: Trace) -> dict[str, Any] | None:
    """The workflow's nodes and edges, read from the run's workflow file if it is still there."""
    from agentflow.spec import load_workflow  # imported by create_app already: the first run page does not wait

    first = trace.events[0] if trace.events else None
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


class Viewer:
    """The endpoints, over one open store. Every one only reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # A finished run's trace never changes: the last few are kept, so paging through a 50,000-event trace
        # loads and verifies it once, not once per page. A run still going is read afresh every time.
        self._finished: OrderedDict[str, Trace] = OrderedDict()
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

    def _trace(self, run_id: str) -> Trace:
        resolved = self.store.resolve_run_id(run_id)
        cached = self._finished.get(resolved)
        if cached is not None:
            self._finished.move_to_end(resolved)
            return cached
        trace = self.store.load_trace(resolved)
        if trace.events and trace.events[-1].type is EventType.RUN_FINISHED:
            self._finished[resolved] = trace
            while len(self._finished) > TRACES_KEPT:
                self._finished.popitem(last=False)
        return trace

    def _rewards(self, trace: Trace, run_id: str) -> list[dict[str, Any]]:
        """The run's live rewards (read from the trace already loaded), then its grading passes' rewards.

        ``Store.list_rewards`` would load and verify the trace a second time: seconds for a 50,000-event run.
        """
        passes = [grading for grading in self.store.list_grading_passes() if run_id in grading.run_ids]
        live = [reward.to_dict() for reward in live_rewards(trace.events, passes) if reward.superseded_by is None]
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
            "template": template_graph(trace),
            "realized": realized_graph(trace.events),
            "rewards": self._rewards(trace, run_id),
        }

    async def run(self, request: Request) -> Response:
        requested = request.path_params["run_id"]
        trace: Trace = await self._blocking(self._trace, requested)
        return JSONResponse(await self._blocking(self._run_view, trace, requested))

    async def diffs(self, request: Request) -> Response:
        trace: Trace = await self._blocking(self._trace, request.path_params["run_id"])
        found = await self._blocking(step_diffs, self.store, trace.events)
        return JSONResponse({str(seq): diffs for seq, diffs in found.items()})

    async def forks(self, request: Request) -> Response:
        run_id: str = await self._blocking(self.store.resolve_run_id, request.path_params["run_id"])
        return JSONResponse(await self._blocking(fork_tree, self.store, run_id))

    async def events(self, request: Request) -> Response:
        start = _int(request, "from", 0)
        limit = min(_int(request, "limit", 500), EVENTS_PAGE_MAX)
        trace: Trace = await self._blocking(self._trace, request.path_params["run_id"])
        page = [event_json(event) for event in trace.events[max(start, 0) : max(start, 0) + max(limit, 0)]]
        return JSONResponse({"total": len(trace.events), "from": start, "events": page})

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
        try:
            response = await call_next(request)
        except (AgentflowError, ValueError, KeyError) as error:
            status = 400 if isinstance(error, ValueError) else 404
            response = JSONResponse({"error": str(error)}, status_code=status)
        if sets_cookie and token is not None:
            response.set_cookie("agentflow_view_token", token, httponly=True, samesite="strict")
        return _secured(response)

    routes = [
        Route("/api/runs", viewer.runs),
        Route("/api/runs/{run_id}", viewer.run),
        Route("/api/runs/{run_id}/events", viewer.events),
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
