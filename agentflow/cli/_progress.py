"""What a run is doing while it runs, on stderr (stdout stays the summary, or the one JSON object of --json).

On a terminal a live line shows the node running, its model turn, tool calls, tokens and the elapsed time, and each
finished node leaves one line above it; written to a pipe or a file, only the finished-node lines appear, one each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from agentflow.cli._console import console, is_terminal
from agentflow.traces import (
    Event,
    EventType,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    TokenUsage,
    ToolResultData,
)


@dataclass
class _Visit:
    """One node visit as far as its events have told."""

    node: str
    visit: int
    started: float = field(default_factory=time.monotonic)
    turns: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    tokens: int = 0


class RunProgress:
    """An ``on_event`` callback for ``run_workflow`` that shows the run's progress; a context manager."""

    def __init__(self, workflow: str, *, live: bool | None = None, out: Console | None = None) -> None:
        self.workflow = workflow
        self.out = out or console(stderr=True)
        self.live = is_terminal(stderr=True) if live is None else live
        self.started = time.monotonic()
        self.nodes_finished = 0
        self.tokens = 0
        self._open: dict[str, _Visit] = {}  # node label -> its running visit (a subgraph's nodes run inside it)
        self._live: Live | None = None

    def __enter__(self) -> RunProgress:
        if self.live:
            # The renderable is re-drawn four times a second, so the elapsed time moves while a model is thinking.
            self._live = Live(self, console=self.out, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @property
    def current(self) -> _Visit | None:
        """The innermost node running now."""
        running = list(self._open.values())  # one C-level copy: the refresh thread reads while events arrive
        return running[-1] if running else None

    def __rich__(self) -> Text:
        elapsed = time.monotonic() - self.started
        if self.current is None:
            return Text(f"{self.workflow}: starting  {elapsed:.1f} s", style="dim")
        visit = self.current
        return Text.assemble(
            (f"{self.workflow}: ", "dim"),
            (f"{visit.node}", "bold"),
            f" (visit {visit.visit})  turn {visit.turns}  tool calls {visit.tool_calls}  ",
            f"tokens {self.tokens}  {elapsed:.1f} s",
        )

    def __call__(self, event: Event) -> None:
        label = event.node or ""
        branch = event.data.get("branch")
        # concurrent branches may run the same node (a map's items): each branch's visit is its own
        node = label if not isinstance(branch, str) else f"{label} [{branch}]"
        visit = self._open.get(node)
        match event.type:
            case EventType.NODE_STARTED:
                self._open.pop(node, None)
                self._open[node] = _Visit(node, int(event.data_as(NodeStartedData).get("visit") or 1))
            case EventType.MODEL_REQUEST if visit is not None:
                visit.turns += 1
            case EventType.MODEL_RESPONSE:
                usage = event.data_as(ModelResponseData).get("usage") or TokenUsage(input_tokens=0, output_tokens=0)
                used = int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
                self.tokens += used
                if visit is not None:
                    visit.tokens += used
            case EventType.TOOL_CALL if visit is not None:
                visit.tool_calls += 1
            case EventType.TOOL_RESULT if visit is not None and not event.data_as(ToolResultData).get("ok", True):
                visit.tool_failures += 1
            case EventType.NODE_FINISHED:
                self._finished(node, event, self._open.pop(node, _Visit(node, 0)))
            case _:
                pass
        if self._live is not None:
            self._live.refresh()

    def _finished(self, node: str, event: Event, visit: _Visit) -> None:
        self.nodes_finished += 1
        data = event.data_as(NodeFinishedData)
        status = str(data.get("status") or "?")
        duration = data.get("duration_s")
        seconds = float(duration) if isinstance(duration, int | float) else time.monotonic() - visit.started
        failures = f" ({visit.tool_failures} failed)" if visit.tool_failures else ""
        line = (
            f"node {node} {status} in {seconds:.2f} s: visit {visit.visit}, model turns {visit.turns}, "
            f"tool calls {visit.tool_calls}{failures}, tokens {visit.tokens}"
        )
        self.out.print(line, markup=False, style="red" if status != "ok" else None)
