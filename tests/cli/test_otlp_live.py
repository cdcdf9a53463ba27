"""`agentflow run --otlp URL` (or AGENTFLOW_OTLP_ENDPOINT): spans reach a loopback OTLP/HTTP receiver during the run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from agentflow.traces import TraceStore
from agentflow.traces._otel import OTLP_ENV
from tests.cli.test_cli import AGENTFLOW, agentflow
from tests.traces.test_otel import _Receiver, receiver  # noqa: F401 - the receiver fixture

WORKFLOW = """\
name: slow
state:
  out: {type: str, default: ""}
tools: [write_file, shell]
start: first
nodes:
  first: {kind: tool, tool: write_file, args: {path: a.txt, content: one}}
  second: {kind: tool, tool: shell, args: {command: "sleep 3 && cat a.txt"}, output: {out: result.stdout}}
edges:
  - {from: first, to: second}
end: [second]
rewards:
  - {hook: exit_code, on: step, nodes: [second]}
"""


def _received() -> list[tuple[str, list[str]]]:
    """(span name, its event names) of every span the receiver got so far."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for _, body in list(_Receiver.bodies):
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans += [(span.name, [event.name for event in span.events]) for span in scope_spans.spans]
    return spans


def test_spans_are_exported_while_the_run_goes(tmp_path: Path, receiver: str) -> None:  # noqa: F811
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    process = subprocess.Popen(
        [AGENTFLOW, "run", "wf.yaml", "--otlp", receiver, "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first node's spans arrive while the second node still sleeps: nothing waits for the run's end.
        deadline = time.monotonic() + 60
        while "invoke_agent first" not in [name for name, _ in _received()]:
            assert process.poll() is None, "the run ended before any span arrived"
            assert time.monotonic() < deadline, "no span arrived"
            time.sleep(0.05)
        assert process.poll() is None
        assert "invoke_workflow" not in [name for name, _ in _received()]  # the run's own span ends with it
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "succeeded"
    spans = dict(_received())
    assert {"invoke_workflow", "invoke_agent first", "invoke_agent second", "execute_tool shell"} <= set(spans)
    assert spans["execute_tool shell"] == ["gen_ai.evaluation.result"]  # the step's reward, on the step's span
    assert all(path == "/v1/traces" for path, _ in _Receiver.bodies)


def test_endpoint_from_the_environment_gives_the_spans_of_a_later_export(
    tmp_path: Path,
    receiver: str,  # noqa: F811
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("sleep 3 && ", ""))
    result = agentflow("run", "wf.yaml", "--json", cwd=tmp_path, env={OTLP_ENV: receiver})
    assert result.returncode == 0, result.stderr
    live = sorted(_received())
    assert live and ("invoke_workflow", []) in live
    _Receiver.bodies.clear()
    run_id = json.loads(result.stdout)["run_id"]
    exported = agentflow("traces", "export", run_id, cwd=tmp_path, env={OTLP_ENV: receiver})
    assert exported.returncode == 0, exported.stderr
    assert sorted(_received()) == live  # live and after the fact: the same spans
    assert TraceStore(tmp_path / ".agentflow").load_trace(run_id).problems == []


def test_an_unreachable_endpoint_does_not_fail_the_run(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("sleep 3 && ", ""))
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [AGENTFLOW, "run", "wf.yaml", "--otlp", "http://127.0.0.1:1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
