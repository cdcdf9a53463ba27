"""`agentflow run | runs | show`: run a workflow, list stored runs, look at one run."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich import box
from rich.markup import escape
from rich.table import Table

from agentflow.cli._console import console
from agentflow.cli._progress import RunProgress
from agentflow.errors import ConfigError, GraphValidationError
from agentflow.traces import (
    ErrorData,
    Event,
    EventType,
    ModelRequestData,
    ModelResponseData,
    NodeFinishedData,
    NodeStartedData,
    RewardData,
    RouteData,
    RunFinishedData,
    SandboxExecData,
    Store,
    ToolCallData,
    ToolResultData,
    Trace,
    open_store,
    realized_graph,
    summarize,
)

if TYPE_CHECKING:
    from agentflow.runtime import RunResult

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object instead of text")]
StoreOption = Annotated[str, typer.Option("--store", help="the trace store: a folder or a postgresql:// URL")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="show no progress while the run goes")]
DEFAULT_STORE = ".agentflow"


@contextlib.contextmanager
def _progress(workflow: str, quiet: bool) -> Iterator[RunProgress | None]:
    if quiet:
        yield None
        return
    with RunProgress(workflow) as progress:
        yield progress


@contextlib.contextmanager
def opened_store(location: str) -> Iterator[Store]:
    """The store a ``--store`` value names, closed afterwards (a PostgreSQL store holds a connection).

    Raises:
        TraceError: a PostgreSQL server that cannot be reached (one line naming the URL without its password).
    """
    store = open_store(location)
    try:
        yield store
    finally:
        store.close()


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--input {pair!r} is not key=value", fix="e.g. --input task='fix the bug'")
        try:
            inputs[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            inputs[key] = raw  # not YAML: take the text as it is
    return inputs


def run(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    file: Annotated[Path, typer.Argument(help="a workflow file", show_default=False)],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="use this provider:model for every model (openai:gpt-4o-mini)")
    ] = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", help="sandbox backend (local, docker, e2b)")] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="initial state value key=value (YAML value)")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    resumable: Annotated[
        bool, typer.Option("--resumable", help="save a LangGraph checkpoint after every node (agentflow resume)")
    ] = False,
    otlp: Annotated[
        str | None,
        typer.Option(
            "--otlp", help="send spans to this OTLP/HTTP endpoint while the run goes ($AGENTFLOW_OTLP_ENDPOINT)"
        ),
    ] = None,
    json_output: JsonFlag = False,
    quiet: QuietFlag = False,
) -> int:
    """Run a workflow once; print its summary. Exit 0 when it reached its end, 1 when the agent did not (failed,
    limit_exceeded), 3 when it errored (the model API, the sandbox or the store failed).

    While it runs, stderr shows its progress: a live line on a terminal, else one line per finished node.
    """
    from agentflow.graph import check_run_files
    from agentflow.runtime import InstalledCheckers, compile_workflow, run_workflow

    parsed_inputs = _parse_inputs(inputs or [])
    compiled = compile_workflow(file)
    # A missing model script or sandbox folder would fail the run only when it gets there: said here, before it.
    missing = check_run_files(compiled.template, checkers=InstalledCheckers(), scripts=model is None)
    if missing:
        raise GraphValidationError(missing)
    with opened_store(store) as trace_store, _progress(file.stem, quiet) as on_event:
        result = asyncio.run(
            run_workflow(
                compiled,
                inputs=parsed_inputs,
                model=model,
                sandbox=sandbox,
                store=trace_store,
                resumable=resumable,
                otlp=otlp,
                on_event=on_event,
            )
        )
        trace = trace_store.load_trace(result.run_id)
    return _report(result, trace, json_output)


def resume(
    run_id: Annotated[str, typer.Argument(help="an interrupted run's id (or a unique prefix)", show_default=False)],
    workflow: Annotated[
        Path | None, typer.Option("--workflow", help="the workflow file (default: the one the run recorded)")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    json_output: JsonFlag = False,
    quiet: QuietFlag = False,
) -> int:
    """Continue an interrupted run (started with --resumable) from its last LangGraph checkpoint; exit as `run`.

    Its progress shows on stderr as `run`'s does, for the nodes that run after the checkpoint.
    """
    from agentflow.rerun import resume_run

    with opened_store(store) as trace_store, _progress(f"resume {run_id}", quiet) as on_event:
        result = asyncio.run(resume_run(trace_store, run_id, workflow=workflow, on_event=on_event))
        trace = trace_store.load_trace(result.run_id)
    return _report(result, trace, json_output)


def _report(result: RunResult, trace: Trace, json_output: bool) -> int:
    summary = summarize(trace.events)
    if json_output:
        payload = {
            "run_id": result.run_id,
            "status": result.status,
            "succeeded": result.succeeded,
            "error": result.error,
            "limit": result.limit,
            "duration_s": result.duration_s,
            "final_state": result.final_state,
            "trace": str(trace.path),
            "isolation": result.isolation,
            "summary": summary.to_dict(),
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        _print_summary(summary.to_dict(), result.isolation, str(trace.path))
    return exit_code(result.status)


def exit_code(status: str) -> int:
    """The exit code of `run` and `resume` for a run status: 0 succeeded, 3 errored (the infrastructure failed,
    the agent is not to blame: retry the run), 1 the agent did not succeed (failed, limit_exceeded)."""
    from agentflow.cli import EXIT_FAILED, EXIT_OK, EXIT_RUNTIME

    if status == "succeeded":
        return EXIT_OK
    return EXIT_RUNTIME if status == "errored" else EXIT_FAILED


_STATUS_STYLES = {"succeeded": "green", "errored": "magenta", "cancelled": "yellow"}
"""How `run`, `resume` and `show` color a status; anything else (failed, limit_exceeded) is red."""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _money(value: float | None) -> str:
    # no price covered the run's models: its cost is unknown, not zero
    return "n/a" if value is None else f"${value:.4f}"


def _print_summary(summary: dict[str, Any], isolation: dict[str, Any], trace_path: str) -> None:
    out = console()
    table = Table(
        "node", "visits", "tool calls (failed)", "model calls", "tokens", "rewards", "time s", box=box.SIMPLE_HEAD
    )
    for name, node in summary["nodes"].items():
        by_hook: dict[str, list[float]] = {}
        for reward in node["rewards"]:
            if reward["value"] is not None:
                by_hook.setdefault(reward["hook"], []).append(reward["value"])
        rewards = "\n".join(f"{hook} {sum(v) / len(v):.2f} (n={len(v)})" for hook, v in by_hook.items()) or "-"
        table.add_row(
            name,
            str(node["visits"]),
            f"{node['tool_calls']} ({node['tool_failures']})",
            str(node["model_calls"]),
            str(node["tokens"]),
            rewards,
            f"{node['duration_s']:.2f}",
        )
    out.print(table)
    status_style = _STATUS_STYLES.get(summary["status"], "red")
    out.print(
        f"status [{status_style}]{summary['status']}[/{status_style}]  run {summary['run_id']}  "
        f"steps {summary['steps']}  tool calls {summary['tool_calls']}  model calls {summary['model_calls']}  "
        f"tokens {summary['tokens']}  reward mean {_fmt(summary['reward_mean'])}  "
        f"duration {_fmt(summary['duration_s'])} s"
    )
    out.print(f"path {' -> '.join(summary['nodes_visited'])}", markup=False)
    if summary.get("outcome") is not None or summary.get("cost") is not None:
        out.print(f"outcome {_fmt(summary.get('outcome'))}  cost {_money(summary.get('cost'))}", markup=False)
    if summary.get("error"):
        out.print(f"error {summary['error']}", style="red", markup=False)
    if summary["status"] == "errored":
        not_scored = ", ".join(summary.get("not_scored") or {}) or "nothing to score"
        out.print(
            f"errored: the infrastructure failed, not the agent; not scored: {not_scored}",
            style=_STATUS_STYLES["errored"],
            markup=False,
        )
    if summary.get("model_retries"):
        out.print(f"model retries {summary['model_retries']}", markup=False)
    if isolation:
        got = [
            k for k in ("network_isolated", "filesystem_isolated", "pid_namespace", "resource_limits") if isolation[k]
        ]
        out.print(f"sandbox {isolation['backend']}: {', '.join(got) or 'no isolation'}", markup=False)
    out.print(f"trace {trace_path}", markup=False)


def runs(  # noqa: PLR0917 - typer maps each parameter to an option
    limit: Annotated[int, typer.Option("--limit", "-n", help="how many, newest first")] = 20,
    status: Annotated[str | None, typer.Option("--status", help="only runs with this status")] = None,
    fork_group: Annotated[
        str | None, typer.Option("--fork-group", help="only the continuations of this fork group (agentflow fork)")
    ] = None,
    forked_from: Annotated[
        str | None, typer.Option("--forked-from", help="only the runs forked from this run id")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    json_output: JsonFlag = False,
) -> int:
    """List stored runs, newest first."""
    with opened_store(store) as trace_store:
        infos = trace_store.list_runs(limit=limit, status=status, fork_group=fork_group, forked_from=forked_from)
    if json_output:
        print(json.dumps({"runs": [info.to_dict() for info in infos]}, indent=2))
        return 0
    out = console()
    # The run id starts with its start time, so no separate column. The id (the handle users copy into `show`)
    # and the status must stay whole, so a narrow terminal gets fewer columns rather than cut ones.
    columns = ["run id", "workflow", "status", "time s", "steps", "tools", "model", "tokens", "reward"]
    if out.width < 110:
        columns = ["run id", "workflow", "status", "time s", "reward"]
    if out.width >= 110:  # a run-level hook's verdict, and the dollars of a benchmark's priced models
        columns[3:3] = ["outcome"] if any(info.outcome is not None for info in infos) else []
        columns += ["cost"] if any(info.cost is not None for info in infos) else []
    if any(info.replay_of for info in infos):  # a replay names the run it replays
        columns.append("replay of")
    if any(info.forked_from for info in infos):  # a continuation names the run it was forked from, and its group
        columns += ["fork of", "fork group"]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    whole = {
        "run id": max((len(i.run_id) for i in infos), default=6),
        "status": max((len(i.status) for i in infos), default=6),
    }
    for header in columns:
        # these wrap on a narrow terminal; the id and status never do
        folds = header in ("workflow", "replay of", "fork of", "fork group")
        table.add_column(header, no_wrap=not folds, overflow="fold", min_width=whole.get(header))
    for info in infos:
        cells = {
            "run id": info.run_id,
            "workflow": info.workflow,
            "status": info.status,
            "time s": _fmt(info.duration_s),
            "steps": str(info.steps),
            "tools": str(info.tool_calls),
            "model": str(info.model_calls),
            "tokens": str(info.tokens),
            "reward": _fmt(info.reward_mean),
            "outcome": _fmt(info.outcome),
            "cost": _money(info.cost),
            "replay of": info.replay_of or "",
            "fork of": info.forked_from or "",
            "fork group": info.fork_group or "",
        }
        table.add_row(*(cells[header] for header in columns))
    out.print(table)
    return 0


def _describe(event: Event) -> str:
    match event.type:
        case EventType.NODE_STARTED:
            started = event.data_as(NodeStartedData)
            return f"visit {started.get('visit')} attempt {started.get('attempt')}"
        case EventType.NODE_FINISHED:
            finished = event.data_as(NodeFinishedData)
            best_of = finished.get("best_of")
            chosen = f" best of {len(best_of['candidates'])}: {best_of['chosen']}" if best_of else ""
            return f"{finished.get('status')}{chosen} updates={json.dumps(finished.get('updates'), default=str)[:120]}"
        case EventType.MODEL_REQUEST:
            request = event.data_as(ModelRequestData)
            return f"{request.get('model')} ({len(request.get('messages') or [])} messages)"
        case EventType.MODEL_RESPONSE:
            response = event.data_as(ModelResponseData)
            calls = ", ".join(c.get("name", "?") for c in response.get("tool_calls") or [])
            content = str((response.get("message") or {}).get("content") or "").strip().replace("\n", " ")
            return f"tool calls: {calls}" if calls else f"answer: {content[:120]}"
        case EventType.TOOL_CALL:
            call = event.data_as(ToolCallData)
            return f"{call.get('tool')}({str(call.get('arguments'))[:120]})"
        case EventType.TOOL_RESULT:
            result = event.data_as(ToolResultData)
            text = str(result.get("error") if not result.get("ok") else result.get("content")).replace("\n", " ")
            return f"{'ok' if result.get('ok') else 'ERROR'} {text[:120]}"
        case EventType.SANDBOX_EXEC:
            command = event.data_as(SandboxExecData)
            timed_out = " timed out" if command.get("timed_out") else ""
            by = f"{command.get('by')} " if command.get("by") else ""
            return f"{by}exit {command.get('exit_code')}{timed_out}: {' '.join(command.get('cmd') or [])[:100]}"
        case EventType.REWARD:
            return _describe_reward(event.data_as(RewardData))
        case EventType.ROUTE:
            route = event.data_as(RouteData)
            condition = route.get("condition")
            return f"{route.get('from')} -> {route.get('to')}" + (f" (when {condition})" if condition else "")
        case EventType.ERROR:
            error = event.data_as(ErrorData)
            return f"{error.get('kind')}: {error.get('message')}"
        case EventType.RUN_FINISHED:
            run = event.data_as(RunFinishedData)
            return f"{run.get('status')}" + (f": {run.get('error')}" if run.get("error") else "")
        case _:
            return ""


def _describe_best_of(choice: dict[str, Any]) -> str:
    """One line per best-of visit: the hook, each candidate's score (or why it has none), the one kept."""
    parts = []
    for candidate in choice["candidates"]:
        score = candidate.get("score")
        shown = f"{score:.2f}" if isinstance(score, int | float) else f"no score ({candidate.get('error')})"
        mark = " (kept)" if candidate.get("branch") == choice.get("chosen") else ""
        parts.append(f"{candidate.get('branch')} {shown}{mark}")
    return f"best of {choice.get('node')} by {choice.get('by')}: " + "; ".join(parts)


def _describe_reward(data: RewardData) -> str:
    not_scored, aggregate = data.get("not_scored"), data.get("aggregate")
    if not_scored:
        return f"{data.get('hook')} not scored: the run {not_scored}"
    if aggregate:
        from agentflow.rewards import describe_aggregates

        return f"{data.get('hook')} run aggregates: {describe_aggregates(aggregate)}"
    return f"{data.get('hook')} = {data.get('value')} label {data.get('label')}: {str(data.get('explanation'))[:100]}"


def show(
    run_id: Annotated[str, typer.Argument(help="a run id (or a unique prefix)", show_default=False)],
    store: StoreOption = DEFAULT_STORE,
    json_output: JsonFlag = False,
) -> int:
    """Print one run's steps, tool calls and rewards."""
    with opened_store(store) as trace_store:
        trace = trace_store.load_trace(run_id)
        passes = _grading_passes(trace_store, trace.run_id)
    summary = summarize(trace.events)
    if json_output:
        payload = {
            "run_id": trace.run_id,
            "summary": summary.to_dict(),
            "problems": [{"kind": p.kind, "line": p.line, "seq": p.seq, "message": p.message} for p in trace.problems],
            "aggregates": _aggregates(trace.events),
            "grading_passes": passes,
            "best_of": realized_graph(trace.events)["best_of"],
            "events": [event.model_dump(mode="json") for event in trace.events],
        }
        print(json.dumps(payload, indent=2, default=str))
        return 0
    out = console()
    branched = any(isinstance(event.data.get("branch"), str) for event in trace.events)
    columns = ("seq", "branch", "node", "event", "detail") if branched else ("seq", "node", "event", "detail")
    table = Table(*columns, title=f"run {trace.run_id}", box=box.SIMPLE_HEAD)
    for event in trace.events:
        # trace text goes into the table as text, never as markup (a model's "[red]" stays literally "[red]")
        branch = [escape(str(event.data.get("branch") or ""))] if branched else []
        table.add_row(str(event.seq), *branch, escape(event.node or ""), event.type.value, escape(_describe(event)))
    out.print(table)
    for choice in realized_graph(trace.events)["best_of"]:
        out.print(_describe_best_of(choice), markup=False)
    for problem in trace.problems:
        out.print(f"trace problem ({problem.kind}): {problem.message}", style="red", markup=False)
    _print_summary(summary.to_dict(), {}, str(trace.path))
    realized = realized_graph(trace.events)
    for branch, names in realized.get("branches", {}).items():
        out.print(f"branch {branch}: {' -> '.join(names)}", markup=False)
    from agentflow.rewards import describe_aggregates

    for hook, figures in _aggregates(trace.events).items():
        out.print(f"aggregate {hook}: {describe_aggregates(figures)}", markup=False)
    for graded in passes:
        failed = f", {graded['hook_failures']} hook failures" if graded["hook_failures"] else ""
        out.print(
            f"grading pass {graded['pass_id']} ({graded['mode']}, {graded['created_at']}): "
            f"{', '.join(graded['hooks']) or '-'}; rewards {graded['rewards']} (current {graded['current']}), "
            f"mean {_fmt(graded['mean'])}{failed}",
            markup=False,
        )
    return 0


def _grading_passes(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The offline grading passes that graded this run, oldest first, with what each gave it."""
    from agentflow.traces import LIVE_REWARDS

    rewards = [r for r in store.list_rewards(run_id, include_superseded=True) if r.pass_id != LIVE_REWARDS]
    found = []
    for grading_pass in store.list_grading_passes():
        if run_id not in grading_pass.run_ids:
            continue
        mine = [r for r in rewards if r.pass_id == grading_pass.pass_id]
        values = [r.value for r in mine if r.value is not None]
        found.append(
            {
                **{key: value for key, value in grading_pass.to_dict().items() if key != "run_ids"},
                "rewards": len(mine),
                "current": sum(1 for r in mine if r.superseded_by is None),
                "mean": sum(values) / len(values) if values else None,
                "hook_failures": sum(1 for r in mine if r.components.get("hook_error")),
            }
        )
    return found


def _aggregates(events: list[Event]) -> dict[str, Any]:
    """The run-level reward aggregates the engine recorded, by hook (the last one of each hook)."""
    rewards = [e.data_as(RewardData) for e in events if e.type is EventType.REWARD]
    return {str(reward.get("hook")): reward["aggregate"] for reward in rewards if reward.get("aggregate")}


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(resume)
    app.command()(runs)
    app.command()(show)
