"""`agentflow validate | inspect | schema`: static checks and structure of workflow files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentflow.cli._console import console
from agentflow.errors import Diagnostic, GraphValidationError, SpecError
from agentflow.graph import build_template_graph, compute_metrics
from agentflow.spec import LoadedWorkflow, SubgraphNode, load_workflow, workflow_json_schema

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object instead of text")]


def _diagnostic_dict(d: Diagnostic) -> dict[str, Any]:
    loc = d.location
    return {
        "code": d.code,
        "severity": d.severity,
        "message": d.message,
        "fix": d.fix,
        "file": loc.file if loc else None,
        "line": loc.line if loc else None,
        "column": loc.column if loc else None,
    }


def check_file(path: Path, *, _parents: frozenset[Path] = frozenset()) -> list[Diagnostic]:
    """Every diagnostic of one workflow file (spec errors, then graph rules), plus its subgraph files' errors.

    The file is compiled as `run` would compile it, so what `validate` accepts runs: tools are loaded (their
    parameters check tool nodes' `args`), the files a run opens are checked, and subgraph files are checked too,
    each diagnostic naming its file by the path as the user wrote it, and each said once.
    """
    from agentflow.graph import check_run_files
    from agentflow.runtime import InstalledCheckers, compile_workflow

    try:
        loaded = load_workflow(path)
    except SpecError as exc:
        return list(exc.diagnostics)
    checkers = InstalledCheckers()
    found = check_run_files(build_template_graph(loaded), checkers=checkers)
    try:
        compiled = compile_workflow(loaded)
    except (SpecError, GraphValidationError) as exc:
        found += exc.diagnostics
        # Subgraphs compile only once their parent validates, so a parent's error would hide theirs: check each
        # subgraph file on its own (what its compilation already reported is not repeated).
        parents = _parents | {path.resolve()}
        for node in loaded.spec.nodes.values():
            child = loaded.base_dir / node.workflow if isinstance(node, SubgraphNode) else None
            if child is not None and child.is_file() and child.resolve() not in parents:
                found += check_file(child, _parents=parents)
        return _in_order(path, found)
    found += compiled.diagnostics
    pending = list(compiled.children.values())
    while pending:
        current = pending.pop()
        found += [*current.diagnostics, *check_run_files(current.template, checkers=checkers)]
        pending += current.children.values()
    return _in_order(path, found)


def _in_order(path: Path, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Errors first; this file's before its subgraph files'; each file's in line order."""

    def key(d: Diagnostic) -> tuple[bool, bool, str, int, int]:
        loc = d.location
        if loc is None:
            return (d.severity != "error", False, "", 0, 0)
        return (d.severity != "error", loc.file != str(path), loc.file, loc.line, loc.column)

    return sorted(dict.fromkeys(diagnostics), key=key)  # Diagnostic is frozen: the same finding twice is one


def _excerpt(d: Diagnostic) -> list[str]:
    """The source line of an expression diagnostic and a caret under the column, as compilers print them."""
    loc = d.location
    if loc is None or not d.code.startswith("expr."):
        return []
    try:
        lines = Path(loc.file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    if not 0 < loc.line <= len(lines):
        return []
    text = lines[loc.line - 1]
    return [f"  {text}", "  " + " " * (loc.column - 1) + "^"]


def validate(
    files: Annotated[list[Path], typer.Argument(help="workflow files", show_default=False)],
    json_output: JsonFlag = False,
) -> int:
    """Check workflow files statically; exit 1 when any has an error."""
    out = console()
    reports = []
    failed = False
    for path in files:
        diagnostics = check_file(path)
        errors = [d for d in diagnostics if d.severity == "error"]
        failed = failed or bool(errors)
        reports.append({"file": str(path), "ok": not errors, "diagnostics": [_diagnostic_dict(d) for d in diagnostics]})
        if not json_output:
            for d in diagnostics:
                out.print(str(d), style="red" if d.severity == "error" else "yellow", markup=False)
                for line in _excerpt(d):
                    out.print(line, markup=False)
            if not errors:
                warnings = f" ({len(diagnostics)} warnings)" if diagnostics else ""
                out.print(f"{path}: OK{warnings}", markup=False)
    if json_output:
        print(json.dumps({"ok": not failed, "files": reports}, indent=2))
    return 1 if failed else 0


def inspect(
    file: Annotated[Path, typer.Argument(help="a workflow file", show_default=False)],
    json_output: JsonFlag = False,
) -> int:
    """Print a workflow's nodes, edges, depth, width, cycles with their bounds, and critical path."""
    loaded = load_workflow(file)
    template = build_template_graph(loaded)
    metrics = compute_metrics(template)
    nodes: list[dict[str, Any]] = [
        {"name": name, "kind": node.kind, "max_visits": template.max_visits(name)}
        for name, node in loaded.spec.nodes.items()
    ]
    edges = [
        {"from": t.source, "to": t.target, "when": t.when}
        for transitions in template.transitions.values()
        for t in transitions
    ]
    host_tools = _host_tools(loaded)
    if json_output:
        payload = {"workflow": loaded.spec.name, "nodes": nodes, "edges": edges, "host_tools": host_tools}
        print(json.dumps({**payload, **metrics.to_dict()}, indent=2))
        return 0
    out = console()
    out.print(f"[bold]{loaded.spec.name}[/bold] v{loaded.spec.version} ({file})")
    table = Table("node", "kind", "max visits", "ways out")
    for node in nodes:
        outs = ", ".join(
            f"{t.target} if {t.when}" if t.when else t.target for t in template.transitions.get(node["name"], [])
        )
        table.add_row(node["name"], node["kind"], str(node["max_visits"]), outs)
    out.print(table)
    out.print(f"nodes {metrics.nodes}  edges {metrics.edges}  depth {metrics.depth}  width {metrics.width}")
    for cycle in metrics.cycles:
        bound = cycle.max_iterations if cycle.max_iterations is not None else "UNBOUNDED"
        out.print(f"cycle {' -> '.join([*cycle.nodes, cycle.nodes[0]])}  max_iterations {bound}", markup=False)
    out.print(f"critical path {' -> '.join(metrics.critical_path)}", markup=False)
    out.print(f"worst-case node executions {metrics.max_steps}")
    for source, branches in metrics.branches.items():
        side_by_side = " | ".join(f"{branch}: {' -> '.join(names)}" for branch, names in branches.items())
        out.print(f"branches of {source}: {side_by_side}", markup=False)
    for entry in host_tools:
        out.print(f"host tool {entry['name']} ({entry['ref']}): {entry['reason']}", markup=False)
    return 0


def _host_tools(loaded: LoadedWorkflow) -> list[dict[str, str]]:
    """The plugin tools that run in the agentflow process rather than the sandbox, and why."""
    from agentflow.tools import resolve_tool

    found = []
    for tool_ref in loaded.spec.tool_refs():
        if ":" not in tool_ref.ref:
            continue  # a built-in: agentflow's own code, acting through the sandbox
        tool = resolve_tool(tool_ref.ref, base_dir=loaded.base_dir, host=tool_ref.host)
        if tool.host:
            if tool_ref.host:
                reason = "declared host: true"
            elif tool.takes_context:
                reason = "takes a ToolContext"
            else:
                reason = "declared @tool(host=True)"
            found.append({"name": tool.name, "ref": tool_ref.ref, "reason": reason})
    return found


def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file")] = None,
    json_output: JsonFlag = False,
) -> int:
    """Print the JSON Schema of workflow files (for editor completion); it is JSON with or without --json."""
    text = json.dumps(workflow_json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(inspect)
    app.command()(schema)
