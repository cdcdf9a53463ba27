"""OpenTelemetry export of stored runs, named by the GenAI semantic conventions (the ``otel`` extra).

One run becomes one trace of spans: ``invoke_workflow`` (the run), ``invoke_agent {node}`` (each node visit),
``chat {model}`` (each model turn, with ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``
and ``gen_ai.usage.input_tokens``/``output_tokens``) and ``execute_tool {name}`` (each tool call, with
``gen_ai.tool.name`` and ``gen_ai.tool.call.id``). Each reward is a ``gen_ai.evaluation.result`` event
(``gen_ai.evaluation.name``, ``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.score.label``,
``gen_ai.evaluation.explanation``) on the span of the step it scores. Span times are the events' timestamps.

``agentflow traces export RUN_ID --otlp URL`` (or ``AGENTFLOW_OTLP_ENDPOINT``) sends a stored run over OTLP/HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentflow.errors import MissingExtraError
from agentflow.traces._events import Event, EventType

if TYPE_CHECKING:
    from agentflow.traces._store import Trace

OTLP_ENV = "AGENTFLOW_OTLP_ENDPOINT"


def _ns(ts: str) -> int:
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _require_otel() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("opentelemetry-sdk", "otel") from exc


def export_trace(trace: Trace, tracer_provider: Any) -> int:
    """Emit the spans of one stored run through ``tracer_provider`` (an SDK ``TracerProvider``).

    Returns:
        The number of spans emitted.
    """
    _require_otel()
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = tracer_provider.get_tracer("agentflow")
    events = trace.events
    if not events:
        return 0
    finished = {e.parent: e for e in events if e.parent is not None and e.type in _CLOSERS}
    spans: dict[int, Any] = {}  # seq of the opening event -> span
    count = 0
    started = next((e for e in events if e.type is EventType.RUN_STARTED), events[0])
    root = tracer.start_span(
        "invoke_workflow",
        kind=SpanKind.INTERNAL,
        start_time=_ns(started.ts),
        attributes={
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.agent.name": str(started.data.get("workflow", "")),
            "agentflow.run_id": trace.run_id,
        },
    )
    spans[started.seq] = root
    count += 1
    for event in events:
        parent_span = _parent_span(event, spans, root)
        context = otel_trace.set_span_in_context(parent_span)
        closer = finished.get(event.seq)
        if event.type is EventType.NODE_STARTED:
            span = tracer.start_span(
                f"invoke_agent {event.node}",
                context=otel_trace.set_span_in_context(root),
                start_time=_ns(event.ts),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": str(event.node)},
            )
            spans[event.seq] = span
        elif event.type is EventType.MODEL_REQUEST:
            model = str(event.data.get("model", ""))
            provider, _, name = model.partition(":")
            span = tracer.start_span(
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
            spans[event.seq] = span
        elif event.type is EventType.TOOL_CALL:
            tool = str(event.data.get("tool", ""))
            span = tracer.start_span(
                f"execute_tool {tool}",
                context=context,
                start_time=_ns(event.ts),
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": str(event.data.get("call_id", "")),
                },
            )
            spans[event.seq] = span
        else:
            _on_other(event, spans, root)
            continue
        count += 1
        if closer is not None:
            _apply_closer(span, closer, spans)
    for event in events:  # end children before parents, at the closing events' times
        closer = finished.get(event.seq)
        if event.seq in spans and event.type in _OPENERS:
            spans[event.seq].end(end_time=_ns(closer.ts if closer is not None else events[-1].ts))
    ending = next((e for e in reversed(events) if e.type is EventType.RUN_FINISHED), events[-1])
    if ending.type is EventType.RUN_FINISHED and ending.data.get("status") not in ("succeeded", "imported"):
        root.set_status(Status(StatusCode.ERROR, str(ending.data.get("error") or ending.data.get("status"))))
    root.end(end_time=_ns(ending.ts))
    return count


_OPENERS = frozenset({EventType.NODE_STARTED, EventType.MODEL_REQUEST, EventType.TOOL_CALL})
_CLOSERS = frozenset({EventType.NODE_FINISHED, EventType.MODEL_RESPONSE, EventType.TOOL_RESULT})


def _apply_closer(span: Any, closer: Event, spans: dict[int, Any]) -> None:
    from opentelemetry.trace import Status, StatusCode

    if closer.type is EventType.MODEL_RESPONSE:
        usage = closer.data.get("usage") or {}
        _, _, response_model = str(closer.data.get("model", "")).partition(":")
        span.set_attribute("gen_ai.response.model", response_model or str(closer.data.get("model", "")))
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("input_tokens") or 0))
        span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("output_tokens") or 0))
        spans[closer.seq] = span  # a final answer's reward targets the response
    elif closer.type is EventType.TOOL_RESULT and not closer.data.get("ok"):
        span.set_status(Status(StatusCode.ERROR, str(closer.data.get("error") or "tool failed")))
    elif closer.type is EventType.NODE_FINISHED and closer.data.get("status") != "ok":
        span.set_status(Status(StatusCode.ERROR, str(closer.data.get("error") or "node failed")))


def _parent_span(event: Event, spans: dict[int, Any], root: Any) -> Any:
    if event.parent is not None and event.parent in spans:
        return spans[event.parent]
    return root


def _on_other(event: Event, spans: dict[int, Any], root: Any) -> None:
    if event.type is not EventType.REWARD:
        return
    target = event.data.get("target_seq")
    span = spans.get(target) if isinstance(target, int) else None
    attributes: dict[str, Any] = {"gen_ai.evaluation.name": str(event.data.get("hook", ""))}
    value = event.data.get("value")
    if isinstance(value, int | float):
        attributes["gen_ai.evaluation.score.value"] = float(value)
    label = event.data.get("label")
    if label is not None:
        attributes["gen_ai.evaluation.score.label"] = str(label)
    explanation = event.data.get("explanation")
    if explanation:
        attributes["gen_ai.evaluation.explanation"] = str(explanation)
    (span or root).add_event("gen_ai.evaluation.result", attributes=attributes, timestamp=_ns(event.ts))


def export_to_otlp(trace: Trace, endpoint: str) -> int:
    """Send one stored run to an OTLP/HTTP endpoint (``http://host:4318``, or a full ``.../v1/traces`` URL).

    Returns:
        The number of spans sent.
    """
    _require_otel()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": "agentflow"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
    try:
        return export_trace(trace, provider)
    finally:
        provider.shutdown()
