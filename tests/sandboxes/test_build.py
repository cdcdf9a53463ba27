"""The offline image builder: its recipe matches the Dockerfile, it finds this machine's mirror, it fails clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentflow.sandboxes import _build

ROOT = Path(__file__).parents[2]


def test_the_dockerfile_installs_the_recipe_packages() -> None:
    dockerfile = (ROOT / "sandboxes" / "python" / "Dockerfile").read_text()
    match = re.search(r'^ARG PACKAGES="([^"]*)"', dockerfile, re.M)
    assert match is not None
    assert match.group(1).split() == _build.RECIPES["python"]["packages"]
    assert "USER 1000:1000" in dockerfile
    assert f"WORKDIR {_build.WORKDIR}" in dockerfile


def test_the_mirror_comes_from_this_machines_apt_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    monkeypatch.setattr(_build, "_SOURCES_DIR", sources)
    monkeypatch.setattr(_build, "_SOURCES_LIST", tmp_path / "absent.list")
    assert _build.host_mirror() == "http://mirror.invalid/debian"
    (sources / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://other.invalid/debian bookworm main\n")
    monkeypatch.setattr(_build, "_SOURCES_LIST", tmp_path / "sources.list")
    assert _build.host_mirror() == "http://other.invalid/debian"
    (tmp_path / "sources.list").write_text("")
    with pytest.raises(_build.BuildError, match="--mirror"):
        _build.host_mirror()


def test_an_unknown_recipe_is_refused() -> None:
    with pytest.raises(_build.BuildError, match="choices: python"):
        _build.build_image("ruby")
