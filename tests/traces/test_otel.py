"""OpenTelemetry export: GenAI span names and attributes, rewards as evaluation events, over real OTLP/HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from agentflow.cli import run_cli
from agentflow.runtime import run_workflow
from agentflow.traces import TraceStore
from agentflow.traces._otel import export_trace
from tests.rerun.test_replay import SCRIPT, WORKFLOW


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[TraceStore, str]:
    import asyncio

    folder = tmp_path / "wf"
    (folder / "ws").mkdir(parents=True)
    (folder / "ws" / "greeting.txt").write_text("hello\n")
    (folder / "echo.script.yaml").write_text(SCRIPT)
    (folder / "echo.yaml").write_text(WORKFLOW)
    store = TraceStore(tmp_path / "store")
    result = asyncio.run(run_workflow(folder / "echo.yaml", store=store))
    assert result.succeeded
    return store, result.run_id


def test_spans_follow_the_genai_conventions(recorded: tuple[TraceStore, str]) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    store, run_id = recorded
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    count = export_trace(store.load_trace(run_id), provider)
    spans = exporter.get_finished_spans()
    assert len(spans) == count
    names = [span.name for span in spans]
    assert names.count("chat script.yaml") == 0  # the model is named after the part after the provider
    assert sorted(set(names)) == [
        "chat echo.script.yaml",
        "execute_tool read_file",
        "execute_tool shell",
        "invoke_agent check",
        "invoke_agent work",
        "invoke_workflow",
    ]
    by_name = {span.name: span for span in spans}
    root = by_name["invoke_workflow"]
    assert all(span.context.trace_id == root.context.trace_id for span in spans)
    chat = next(span for span in spans if span.name.startswith("chat"))
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.provider.name"] == "scripted"
    assert chat.attributes["gen_ai.request.model"] == "echo.script.yaml"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.parent is not None and chat.parent.span_id == by_name["invoke_agent work"].context.span_id
    tool = by_name["execute_tool shell"]
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.call.id"] == "call_2_1"
    assert tool.parent is not None
    evaluations = [
        (span.name, event.attributes)
        for span in spans
        for event in span.events
        if event.name == "gen_ai.evaluation.result"
    ]
    # exit_code scores each tool call of `work` and its final answer-less turn: on the tool spans
    assert {name for name, _ in evaluations} == {"execute_tool read_file", "execute_tool shell"}
    attributes = evaluations[0][1]
    assert attributes is not None
    assert attributes["gen_ai.evaluation.name"] == "exit_code"
    assert attributes["gen_ai.evaluation.score.value"] == 1.0
    assert attributes["gen_ai.evaluation.score.label"] == "1"


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_exports_over_otlp_http(recorded: tuple[TraceStore, str], receiver: str) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    store, run_id = recorded
    assert run_cli(["traces", "export", run_id, "--otlp", receiver, "--store", str(store.root)]) == 0
    assert _Receiver.bodies and all(path == "/v1/traces" for path, _ in _Receiver.bodies)
    names: list[str] = []
    evaluation_names: list[str] = []
    for _, body in _Receiver.bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.append(span.name)
                    evaluation_names += [event.name for event in span.events]
    assert "invoke_workflow" in names and "execute_tool shell" in names
    assert "gen_ai.evaluation.result" in evaluation_names
    assert run_cli(["traces", "export", run_id, "--store", str(store.root)]) == 2  # no endpoint anywhere
