"""Helpers of the Docker sandbox tests: the engine and image are required (skip, or fail in CI under
AGENTFLOW_REQUIRE_ALL=1, where .ci/setup-docker.sh starts dockerd and builds the image offline)."""

from __future__ import annotations

import socket
import time
from typing import Any

from agentflow.sandboxes._docker import DEFAULT_IMAGE, LABEL, OWNER_LABEL, docker_available, docker_client
from agentflow.sandboxes._docker import image_available as _image_available
from tests.support.require import require


def require_docker() -> None:
    """Skip (or fail under AGENTFLOW_REQUIRE_ALL=1) unless a Docker engine answers and holds the sandbox image."""
    available, reason = docker_available()
    require(available, f"no Docker engine: {reason}")
    require(_image_available(DEFAULT_IMAGE), f"{DEFAULT_IMAGE} is missing: run `agentflow sandbox build python`")


def containers_of(owner_pid: int) -> list[dict[str, Any]]:
    """The sandbox containers (any state) created by process ``owner_pid`` of this host."""
    owner = f"{socket.gethostname()}:{owner_pid}"
    found: list[dict[str, Any]] = docker_client().api.containers(
        all=True, filters={"label": [LABEL, f"{OWNER_LABEL}={owner}"]}
    )
    return found


def container_exists(container_id: str) -> bool:
    return bool(docker_client().api.containers(all=True, filters={"id": container_id}))


def wait_until_gone(container_id: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not container_exists(container_id):
            return True
        time.sleep(0.1)
    return False
