"""Helpers of the runtime tests: workflows written to tmp_path with a scripted model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentflow.traces import TraceStore
from tests.support.openai_server import openai_server

__all__ = ["openai_server"]


class Workspace:
    """A folder holding one workflow, its script, plugins and sandbox files, and a trace store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = TraceStore(root / ".agentflow")

    def workflow(self, spec: dict[str, Any], script: list[Any] | None = None, name: str = "wf.yaml") -> Path:
        if script is not None:
            (self.root / "script.yaml").write_text(yaml.safe_dump({"responses": script}, sort_keys=False))
        path = self.root / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def file(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def agent_workflow(tools: list[str], **overrides: Any) -> dict[str, Any]:
    """One agent node that may call `tools`, with a scripted model; overrides go on top."""
    spec: dict[str, Any] = {
        "name": "agent_only",
        "state": {"answer": {"type": "str", "default": ""}},
        "models": {"m": {"model": "scripted:script.yaml"}},
        "tools": tools,
        "start": "work",
        "nodes": {
            "work": {
                "kind": "agent",
                "model": "m",
                "prompt": "do it",
                "tools": [t.rsplit(":", 1)[-1] for t in tools],
                "max_turns": 6,
                "output": {"answer": "answer"},
            }
        },
        "end": ["work"],
        "rewards": [{"hook": "exit_code", "on": "step"}],
    }
    spec.update(overrides)
    return spec
