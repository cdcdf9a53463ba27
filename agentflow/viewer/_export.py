"""``agentflow view --export``: the viewer's pages as a static site that opens from ``file://``.

Each response the pages would fetch is asked of the very app the server runs (over an in-process ASGI transport)
and written as a script, ``data/<key>.js``, that registers it under its path: browsers block ``fetch()`` of
``file://``, not ``<script src>``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from agentflow.traces import Store
from agentflow.viewer._app import STATIC, create_app

EVENTS_PAGE = 500  # the page size the timeline asks for (static/app.js)
MAX_COMPARED_RUNS = 20  # every pair of up to this many runs gets its compare page
_BLOB = re.compile(r'"\$blob":\s*"([0-9a-f]{64})"')


def data_file(key: str) -> str:
    """The file that holds the response to ``key``, named as static/app.js names it."""
    return "data/" + re.sub(r"[^A-Za-z0-9-]", lambda match: f"_{ord(match.group()):02x}", key) + ".js"


def _copy_pages(destination: Path) -> None:
    (destination / "data").mkdir(parents=True, exist_ok=True)
    for name in ("app.js", "style.css", "favicon.svg"):
        shutil.copyfile(STATIC / name, destination / name)
    # Marks the site as exported before app.js runs; a file, since the page's CSP forbids inline script.
    (destination / "export.js").write_text("window.AGENTFLOW_EXPORT = true;\n", encoding="utf-8")
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    script = '<script src="app.js" defer></script>'
    (destination / "index.html").write_text(
        html.replace(script, f'<script src="export.js"></script>\n{script}'), encoding="utf-8"
    )


class _Exporter:
    def __init__(self, store: Store, client: httpx.AsyncClient, destination: Path) -> None:
        self.store = store
        self.client = client
        self.destination = destination

    async def get(self, key: str) -> Any:
        response = await self.client.get("/" + key)
        if response.status_code != 200:
            raise ValueError(f"cannot export {key}: {response.json().get('error', response.status_code)}")
        if response.headers["content-type"].startswith("application/json"):
            return response.json()
        return {"text": response.text}

    def write(self, key: str, value: Any) -> None:
        script = f"window.AGENTFLOW_DATA[{json.dumps(key)}] = {_script_json(value)};\n"
        (self.destination / data_file(key)).write_text(script, encoding="utf-8")

    async def copy(self, key: str) -> Any:
        value = await self.get(key)
        self.write(key, value)
        return value

    async def bench(self, bench_run_id: str | None) -> dict[str, list[str]]:
        """Write the bench pages; return each exported benchmark run's run ids."""
        listing = await self.get("api/bench")
        if bench_run_id is not None:
            listing["bench_runs"] = [info for info in listing["bench_runs"] if info["bench_run_id"] == bench_run_id]
            if not listing["bench_runs"]:
                raise ValueError(f"no benchmark run {bench_run_id!r} in {self.store.location}")
        members: dict[str, list[str]] = {}
        for info in listing["bench_runs"]:
            members[info["bench_run_id"]] = [item.run_id for item in self.store.list_bench_items(info["bench_run_id"])]
            await self.copy(f"api/bench/{info['bench_run_id']}")
        self.write("api/bench", listing)
        return members

    async def run(self, run_id: str) -> None:
        # The diffs are of the whole trace: asked for first, they have it verified to its end (the server verifies
        # a run page's trace in the background), so every page exported is of the whole verified trace.
        await self.copy(f"api/runs/{run_id}/diffs")
        run = await self.get(f"api/runs/{run_id}?again=no")  # that trace, not read again if the run is going on
        self.write(f"api/runs/{run_id}", run)
        await self.copy(f"api/runs/{run_id}/forks")
        for start in range(0, max(run["events"], 1), EVENTS_PAGE):
            page = await self.copy(f"api/runs/{run_id}/events?from={start}&limit={EVENTS_PAGE}")
            for digest in set(_BLOB.findall(json.dumps([page["events"], page["unverified"]]))):
                await self.copy(f"api/blobs/{digest}")

    async def index(self, run_ids: list[str], bench_members: dict[str, list[str]]) -> None:
        wanted, rows, offset = set(run_ids), [], 0
        while True:
            page = await self.get(f"api/runs?limit=500&offset={offset}")
            rows += [row for row in page["runs"] if row["run_id"] in wanted]
            offset += 500
            if offset >= page["total"]:
                break
        self.write("api/runs", {"runs": rows, "bench_members": bench_members})


async def export_site(
    store: Store, destination: Path, run_ids: Sequence[str] = (), bench_run_id: str | None = None
) -> list[str]:
    """Write the site of ``run_ids`` (or the runs of ``bench_run_id``, or every run) to ``destination``.

    Returns the exported run ids.

    Raises:
        ValueError: no such benchmark run.
        TraceError: no such run.
    """
    await asyncio.to_thread(_copy_pages, destination)
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://export") as client:
        exporter = _Exporter(store, client, destination)
        bench_members = await exporter.bench(bench_run_id)
        if bench_run_id is not None:
            run_ids = bench_members[bench_run_id]
        chosen = [store.resolve_run_id(run_id) for run_id in run_ids] or store.run_ids()
        for run_id in chosen:
            await exporter.run(run_id)
        await exporter.index(chosen, bench_members)
        if len(chosen) <= MAX_COMPARED_RUNS:
            for first in chosen:
                for second in chosen:
                    if first != second:
                        await exporter.copy(f"api/compare?a={first}&b={second}")
    return chosen


def _script_json(value: Any) -> str:
    """JSON safe inside a script file: ``</script>`` and line separators cannot end or break it."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
