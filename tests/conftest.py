"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of graphs/examples (with the tools/ plugins they load by relative path), safe to modify."""
    shutil.copytree(ROOT / "graphs" / "examples", tmp_path / "graphs" / "examples")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "graphs" / "examples"
