"""The offline image builder: its recipe matches the Dockerfile, it finds this machine's mirror, it fails clearly."""

from __future__ import annotations

import io
import re
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.sandboxes import images as _build

ROOT = Path(__file__).parents[2]


def test_the_dockerfile_installs_the_recipe_packages() -> None:
    dockerfile = (ROOT / "sandboxes" / "python" / "Dockerfile").read_text()
    match = re.search(r'^ARG PACKAGES="([^"]*)"', dockerfile, re.M)
    assert match is not None
    assert match.group(1).split() == _build.RECIPES["python"]["packages"]
    assert "USER 1000:1000" in dockerfile
    assert f"WORKDIR {_build.WORKDIR}" in dockerfile
    # the image carries what the built-in tools need: run_tests uses pytest, as on the local backend
    assert "python3-pytest" in _build.RECIPES["python"]["packages"]  # type: ignore[operator]
    assert f"{_build.REVISION_LABEL}={_build.RECIPES['python']['revision']}" in dockerfile


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


@pytest.fixture
def tiny_images() -> Iterator[dict[str, str]]:
    """Two images of nothing but labels, as the offline builder labels them: before revisions, and current."""
    from ._docker_support import require_docker

    require_docker()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    suffix = secrets.token_hex(4)
    current = _build.RECIPES["python"]["revision"]
    images = {
        "old": (f"agentflow/test-revision:old-{suffix}", ["LABEL agentflow.recipe=python"]),
        "current": (
            f"agentflow/test-revision:current-{suffix}",
            ["LABEL agentflow.recipe=python", f"LABEL {_build.REVISION_LABEL}={current}"],
        ),
    }
    for tag, changes in images.values():
        argv = ["docker", "import"] + [arg for change in changes for arg in ("--change", change)] + ["-", tag]
        subprocess.run(argv, input=buffer.getvalue(), check=True, capture_output=True)
    try:
        yield {name: tag for name, (tag, _) in images.items()}
    finally:
        for tag, _ in images.values():
            subprocess.run(["docker", "rmi", tag], check=False, capture_output=True)


def test_if_missing_rebuilds_an_image_of_an_older_recipe(tiny_images: dict[str, str]) -> None:
    # CI machines keep the image they built before: one without pytest must not count as present
    assert _build.image_revision(tiny_images["old"]) == 0
    assert not _build.image_is_current("python", tiny_images["old"])
    assert _build.image_is_current("python", tiny_images["current"])
    assert _build.image_revision("agentflow/test-revision:absent") is None
    assert not _build.image_is_current("python", "agentflow/test-revision:absent")
