"""OpenTelemetry export of stored runs, named by the GenAI semantic conventions (the ``otel`` extra).

One run becomes one trace of spans: ``invoke_workflow`` (the run), ``invoke_agent {node}`` (each node visit),
``chat {model}`` (each model turn, with ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``
and ``gen_ai.usage.input_tokens``/``output_tokens``) and ``execute_tool {name}`` (each tool call, with
``gen_ai.tool.name`` and ``gen_ai.tool.call.id``). Each reward is a ``gen_ai.evaluation.result`` event
(``gen_ai.evaluation.name``, ``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.score.label``,
``gen_ai.evaluation.explanation``) on the span of the step it scores. Span times are the events' timestamps.

``agentflow traces export RUN_ID --otlp URL`` (or ``AGENTFLOW_OTLP_ENDPOINT``) sends a stored run over OTLP/HTTP;
``agentflow run --otlp URL`` (or the same variable) sends the spans while the run goes (:class:`LiveExport`). Both
build spans with :class:`SpanBuilder`, so a run exported live and exported later gives the same spans.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agentflow.errors import MissingExtraError
from agentflow.traces._events import Event, EventType
from agentflow.traces._payloads import (
    EventData,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    RewardData,
    RunFinishedData,
    RunStartedData,
    TokenUsage,
    ToolCallData,
    ToolResultData,
)

if TYPE_CHECKING:
    from agentflow.traces._protocol import Recorder, Trace
    from agentflow.traces._summary import RunSummary

OTLP_ENV = "AGENTFLOW_OTLP_ENDPOINT"
_LIVE_DELAY_MS = 500
_EXPORT_TIMEOUT_S = 5  # per OTLP request: a collector that is down must not hold up the end of a run for long


def _ns(ts: str) -> int:
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def require_otel() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("opentelemetry-sdk", "otel") from exc


def export_trace(trace: Trace, tracer_provider: Any) -> int:
    """Emit the spans of one stored run through ``tracer_provider`` (an SDK ``TracerProvider``).

    Returns:
        The number of spans emitted.
    """
    require_otel()
    builder = SpanBuilder(tracer_provider.get_tracer("agentflow"), trace.run_id)
    for event in trace.events:
        builder.add(event)
    builder.close()
    return builder.count


class SpanBuilder:
    """Turns a run's events, one at a time and in order, into spans: the same spans for a stored run and a live one.

    A span starts at its opening event (``node_started``, ``model_request``, ``tool_call``) and ends at the time of
    its closing event, but is only ended when the next node starts (or the run ends), because the rewards scoring a
    step or a node are recorded just after it and land on its span as events. A reward recorded later than that (a
    background hook finishing after the next node started) goes on the run's span, naming the step in
    ``agentflow.target_seq``.
    """

    def __init__(self, tracer: Any, run_id: str) -> None:
        require_otel()
        self.tracer = tracer
        self.run_id = run_id
        self.count = 0
        self.root: Any = None
        self._spans: dict[int, Any] = {}  # seq of an opening (or answering) event -> its span, ended or not
        self._open: dict[int, Any] = {}  # seq of the opening event -> span not closed yet
        self._closing: list[tuple[Any, int]] = []  # closed spans waiting to be ended, with their end times
        self._ended: set[int] = set()  # id() of spans already ended
        self._last_ns = 0

    def _start_root(self, event: Event) -> None:
        from opentelemetry.trace import SpanKind

        # the first event is run_started, unless the run failed before it (a sandbox that could not start)
        workflow = event.data_as(RunStartedData).get("workflow", "") if event.type is EventType.RUN_STARTED else ""
        self.root = self.tracer.start_span(
            "invoke_workflow",
            kind=SpanKind.INTERNAL,
            start_time=_ns(event.ts),
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.agent.name": str(workflow),
                "agentflow.run_id": self.run_id,
            },
        )
        self._spans[event.seq] = self.root
        self.count += 1

    def add(self, event: Event) -> None:
        """Account for the next event of the run."""
        self._last_ns = _ns(event.ts)
        if self.root is None:
            self._start_root(event)
            if event.type is EventType.RUN_STARTED:
                return
        if event.type in _OPENERS:
            self._open_span(event)
        elif event.type in _CLOSERS and event.parent in self._open:
            span = self._open.pop(event.parent)
            _apply_closer(span, event, self._spans)
            self._closing.append((span, _ns(event.ts)))
        elif event.type is EventType.REWARD:
            self._reward(event)
        elif event.type is EventType.RUN_RESUMED:
            self.root.add_event("agentflow.run_resumed", timestamp=_ns(event.ts))
        elif event.type is EventType.RUN_FINISHED:
            from opentelemetry.trace import Status, StatusCode

            finished = event.data_as(RunFinishedData)
            if finished.get("status") not in ("succeeded", "imported"):
                self.root.set_status(Status(StatusCode.ERROR, str(finished.get("error") or finished.get("status"))))
            self.close()

    def _open_span(self, event: Event) -> None:
        from opentelemetry import trace as otel_trace
        from opentelemetry.trace import SpanKind

        parent = self._spans.get(event.parent, self.root) if event.parent is not None else self.root
        context = otel_trace.set_span_in_context(parent)
        if event.type is EventType.NODE_STARTED:
            self._end_closed()  # the previous node and its steps have all their rewards now
            span = self.tracer.start_span(
                f"invoke_agent {event.node}",
                context=otel_trace.set_span_in_context(self.root),
                start_time=_ns(event.ts),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": str(event.node)},
            )
        elif event.type is EventType.MODEL_REQUEST:
            model = str(event.data_as(ModelRequestData).get("model", ""))
            provider, _, name = model.partition(":")
            span = self.tracer.start_span(
                f"chat {name or model}",
                context=context,
                kind=SpanKind.CLIENT,
                start_time=_ns(event.ts),
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": provider,
                    "gen_ai.request.model": name or model,
                },
            )
        else:
            call = event.data_as(ToolCallData)
            tool = str(call.get("tool", ""))
            span = self.tracer.start_span(
                f"execute_tool {tool}",
                context=context,
                start_time=_ns(event.ts),
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": str(call.get("call_id", "")),
                },
            )
        self._spans[event.seq] = self._open[event.seq] = span
        self.count += 1

    def _reward(self, event: Event) -> None:
        reward = event.data_as(RewardData)
        target = reward.get("target_seq")
        span = self._spans.get(target) if isinstance(target, int) else None
        attributes: dict[str, Any] = {"gen_ai.evaluation.name": str(reward.get("hook", ""))}
        value = reward.get("value")
        if isinstance(value, int | float):
            attributes["gen_ai.evaluation.score.value"] = float(value)
        label = reward.get("label")
        if label is not None:
            attributes["gen_ai.evaluation.score.label"] = str(label)
        explanation = reward.get("explanation")
        if explanation:
            attributes["gen_ai.evaluation.explanation"] = str(explanation)
        if span is None or id(span) in self._ended:
            if isinstance(target, int):
                attributes["agentflow.target_seq"] = target
            span = self.root
        span.add_event("gen_ai.evaluation.result", attributes=attributes, timestamp=_ns(event.ts))

    def _end_closed(self) -> None:
        for span, end_ns in self._closing:
            span.end(end_time=end_ns)
            self._ended.add(id(span))
        self._closing.clear()

    def close(self) -> None:
        """End every span; spans never closed (an interrupted run) end at the last event's time."""
        if self.root is None or id(self.root) in self._ended:
            return
        self._end_closed()
        for span in reversed(list(self._open.values())):  # children before parents
            span.end(end_time=self._last_ns)
            self._ended.add(id(span))
        self._open.clear()
        self.root.end(end_time=self._last_ns)
        self._ended.add(id(self.root))


_OPENERS = frozenset({EventType.NODE_STARTED, EventType.MODEL_REQUEST, EventType.TOOL_CALL})
_CLOSERS = frozenset({EventType.NODE_FINISHED, EventType.MODEL_RESPONSE, EventType.TOOL_RESULT})


def _apply_closer(span: Any, closer: Event, spans: dict[int, Any]) -> None:
    from opentelemetry.trace import Status, StatusCode

    if closer.type is EventType.MODEL_RESPONSE:
        response = closer.data_as(ModelResponseData)
        usage = response.get("usage") or TokenUsage(input_tokens=0, output_tokens=0)
        model = str(response.get("model", ""))
        _, _, response_model = model.partition(":")
        span.set_attribute("gen_ai.response.model", response_model or model)
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("input_tokens") or 0))
        span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("output_tokens") or 0))
        spans[closer.seq] = span  # a final answer's reward targets the response
    elif closer.type is EventType.TOOL_RESULT:
        result = closer.data_as(ToolResultData)
        if not result.get("ok"):
            span.set_status(Status(StatusCode.ERROR, str(result.get("error") or "tool failed")))
    elif closer.type is EventType.NODE_FINISHED:
        finished = closer.data_as(NodeFinishedData)
        if finished.get("status") != "ok":
            span.set_status(Status(StatusCode.ERROR, str(finished.get("error") or "node failed")))


def _otlp_provider(endpoint: str, *, batch: bool) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": "agentflow"}))
    exporter = OTLPSpanExporter(endpoint=url, timeout=_EXPORT_TIMEOUT_S)
    # Live export sends what ended at least every half second, off the run's thread.
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=_LIVE_DELAY_MS) if batch else None
    provider.add_span_processor(processor or SimpleSpanProcessor(exporter))
    return provider


def export_to_otlp(trace: Trace, endpoint: str) -> int:
    """Send one stored run to an OTLP/HTTP endpoint (``http://host:4318``, or a full ``.../v1/traces`` URL).

    Returns:
        The number of spans sent.
    """
    require_otel()
    provider = _otlp_provider(endpoint, batch=False)
    try:
        return export_trace(trace, provider)
    finally:
        provider.shutdown()


class LiveExport:
    """A recorder that also turns each event into spans as it is recorded, exported over OTLP/HTTP while the run goes.

    It wraps the store's recorder (every call goes to it first: the trace stays the source of truth). Spans leave
    through a batch processor, off the run's thread; the last ones are flushed when the run finishes. An endpoint
    that is down costs the run nothing but a logged warning: telemetry never fails a run.

    Args:
        recorder: the run's recorder.
        endpoint: the OTLP/HTTP endpoint (``http://host:4318`` or a full ``.../v1/traces`` URL).

    Raises:
        MissingExtraError: the ``otel`` extra is not installed.
    """

    def __init__(self, recorder: Recorder, endpoint: str) -> None:
        require_otel()
        self.recorder = recorder
        self.run_id = recorder.run_id
        self.endpoint = endpoint
        self._provider = _otlp_provider(endpoint, batch=True)
        self._builder = SpanBuilder(self._provider.get_tracer("agentflow"), recorder.run_id)
        self._lock = threading.Lock()
        self._flushed = False

    @property
    def finished(self) -> bool:
        """Whether ``run_finished`` was recorded."""
        return self.recorder.finished

    def __getattr__(self, name: str) -> Any:  # store-specific extras (e.g. ``dropped_partial_line``)
        return getattr(self.recorder, name)

    def emit(
        self,
        type: EventType | str,  # named like the Event field it fills
        *,
        node: str | None = None,
        parent: int | None = None,
        data: EventData | None = None,
    ) -> Event:
        """Record the event, then add it to the run's spans."""
        event = self.recorder.emit(type, node=node, parent=parent, data=data)
        self._observe(event)
        return event

    def append_encoded(self, lines: bytes, blobs: Mapping[str, bytes] | None = None) -> list[Event]:
        """Record events encoded elsewhere, then add them to the run's spans (all of them flushed once it ends)."""
        events = self.recorder.append_encoded(lines, blobs)
        for event in events:
            self._observe(event)
        if self.recorder.finished:
            self._flush()
        return events

    def hold_events(self) -> None:
        """Have the recorder hold events until :meth:`flush` (spans are built as events are emitted either way)."""
        self.recorder.hold_events()

    def flush(self) -> None:
        """Write the events the recorder holds."""
        self.recorder.flush()

    def finish(self, status: str, **data: Any) -> Event:
        """Record ``run_finished``, end the run's span and flush every span to the endpoint."""
        event = self.recorder.finish(status, **data)
        self._observe(event)
        self._flush()
        return event

    def _observe(self, event: Event) -> None:
        with self._lock:  # the recorder is thread-safe; the span builder must see events in order too
            self._builder.add(event)

    def _flush(self) -> None:
        with self._lock:
            if self._flushed:
                return
            self._flushed = True
            self._builder.close()
        self._provider.shutdown()

    def summary(self) -> RunSummary:
        """Summarise the events recorded so far."""
        return self.recorder.summary()

    def close(self) -> None:
        """Close the recorder and flush the spans (an interrupted run's open spans end at its last event)."""
        try:
            self.recorder.close()
        finally:
            self._flush()

    def __enter__(self) -> LiveExport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self.recorder.__exit__(exc_type, exc, traceback)
        finally:
            self._flush()
