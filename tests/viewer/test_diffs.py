"""The file diffs of a run's steps, derived from its trace: patches as they were applied, writes against the file's
last content the trace shows."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import yaml

from agentflow.runtime import run_workflow
from agentflow.traces import EventType, TraceStore
from agentflow.viewer._diffs import step_diffs

PATCH = "--- notes.txt\n+++ notes.txt\n@@ -1,2 +1,1 @@\n after the command\n-and more\n"


def _tool(tool: str, **args: object) -> dict[str, object]:
    return {"kind": "tool", "tool": tool, "args": args}


def test_writes_are_diffed_against_what_the_trace_last_showed_of_the_file(tmp_path: Path) -> None:
    steps = {
        "create": _tool("write_file", path="notes.txt", content="one\ntwo\n"),
        "change": _tool("write_file", path="notes.txt", content="one\nthree\n"),
        "outside": _tool("shell", command="printf 'edited by a command\\n' > notes.txt"),
        "partial": _tool("read_file", path="notes.txt", start_line=1, end_line=1),
        "blind": _tool("write_file", path="notes.txt", content="after the command\n"),
        "read": _tool("read_file", path="notes.txt"),
        "again": _tool("write_file", path="notes.txt", content="after the command\nand more\n"),
        "patch": _tool(
            "apply_patch", patch="--- notes.txt\n+++ notes.txt\n@@ -1,2 +1,1 @@\n after the command\n-and more\n"
        ),
        "refused": _tool("write_file", path="../outside.txt", content="never written"),
    }
    names = list(steps)
    workflow = tmp_path / "edits.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {
                "name": "edits",
                "tools": ["shell", "read_file", "write_file", "apply_patch"],
                "start": names[0],
                "nodes": steps,
                "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(names)],
                "end": [names[-1]],
            }
        )
    )
    store = TraceStore(tmp_path / "store")
    result = asyncio.run(run_workflow(workflow, store=store))
    events = store.load_trace(result.run_id).events
    call_seq = {e.node: e.seq for e in events if e.type is EventType.TOOL_CALL}

    diffs = step_diffs(store, events)

    assert set(diffs) == {call_seq[name] for name in ("create", "change", "blind", "again", "patch")}
    created = diffs[call_seq["create"]][0]
    assert created["path"] == "notes.txt" and "--- /dev/null" in created["diff"] and "+two" in created["diff"]
    changed = diffs[call_seq["change"]][0]["diff"]
    assert "-two\n" in changed and "+three\n" in changed and " one\n" in changed
    # a command changed the file and only a range of it was read: the trace knows its last write, not the command's
    blind = diffs[call_seq["blind"]][0]["diff"]
    assert "-three\n" in blind and "+after the command\n" in blind
    # a whole read shows the file again: the next write is diffed against what was read
    again = diffs[call_seq["again"]][0]["diff"]
    assert " after the command\n" in again and "+and more\n" in again and "-" not in again.split("@@")[-1]
    assert "-and more" in diffs[call_seq["patch"]][0]["diff"]
