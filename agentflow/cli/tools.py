"""`agentflow tools list [FILE]`: every tool a workflow can use, where it runs, and the JSON Schema of its arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agentflow.spec import load_workflow
from agentflow.tools import Tool, resolve_tool, tool_registry

app = typer.Typer(help="The tools workflows can use.", no_args_is_help=True)


def _runs_on(tool: Tool, ref: str) -> str:
    if ":" not in ref:
        return "agentflow"  # a registered tool: agentflow's code (or an installed package's), acting via the sandbox
    return "host" if tool.host else "sandbox"


def _describe(tool: Tool, ref: str, *, declared: bool) -> dict[str, Any]:
    function = tool.openai_schema()["function"]
    return {
        "name": tool.name,
        "ref": ref,
        "runs_on": _runs_on(tool, ref),
        "declared": declared,
        "description": function["description"],
        "parameters": function["parameters"],
    }


def list_tools(
    file: Annotated[
        Path | None, typer.Argument(help="a workflow file: add its plugin tools and mark what it declares")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> int:
    """Print every built-in tool and the workflow's plugin tools, each with where it runs and its JSON Schema.

    `runs_on` is `agentflow` for a built-in tool (agentflow's code; every effect goes through the sandbox),
    `sandbox` for a plugin function run inside the run's sandbox, `host` for a plugin run in the agentflow process.
    """
    entries: dict[str, dict[str, Any]] = {}
    for name in tool_registry.names():
        entries[name] = _describe(resolve_tool(name, base_dir=Path.cwd()), name, declared=False)
    if file is not None:
        loaded = load_workflow(file)
        for tool_ref in loaded.spec.tool_refs():
            tool = resolve_tool(tool_ref.ref, base_dir=loaded.base_dir, host=tool_ref.host)
            entries[loaded.spec.tool_name(tool_ref)] = _describe(tool, tool_ref.ref, declared=True)
    tools = sorted(
        entries.values(), key=lambda entry: (not entry["declared"], entry["runs_on"] != "agentflow", entry["name"])
    )
    if json_output:
        print(json.dumps({"workflow": str(file) if file else None, "tools": tools}, indent=2))
        return 0
    for entry in tools:
        mark = " (declared)" if file is not None and entry["declared"] else ""
        source = "" if entry["ref"] == entry["name"] else f" {entry['ref']}"
        print(f"{entry['name']}{mark}  runs on: {entry['runs_on']}{source}")
        print(f"  {entry['description']}")
        for line in json.dumps(entry["parameters"], indent=2).splitlines():
            print(f"  {line}")
    return 0


app.command("list")(list_tools)
