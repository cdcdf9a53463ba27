"""The Docker sandbox: a hardened container per sandbox, driven by an exec server inside it.

Every container is hardened by default: no network (``network_mode=none`` unless ``limits.network``), memory, CPU
and pids limits, the unprivileged uid 1000, ``cap_drop=ALL``, ``no-new-privileges``, a read-only root filesystem
with a size-limited tmpfs workdir at ``/workspace`` (plus small private ``/tmp`` and ``/dev/shm``), and
``docker-init`` as PID 1 to reap orphans.

A benchmark task that brings its own system (a Harbor task's image: ``create(..., task_system=True)``) gets a
writable root filesystem and root with only the CHOWN, DAC_OVERRIDE and FOWNER capabilities, since its agent and
verifier write anywhere in it; everything else above holds, and such a container is never pooled. When the task
names users (``run_as``, ``switch_users``), root also keeps SETUID, SETGID, KILL and SYS_PTRACE, and commands run
as the named user (without any capability) through the image's ``setpriv``.

Commands do not go through ``docker exec``: the container's command is a small exec server
(``agentflow/sandboxes/_execserver.py``) that reads requests from the container's attached stdin, so one exec is one
message each way (about 1 ms instead of about 50 ms). The server enforces the per-exec timeout, kills the whole
process tree of an exec when it ends or times out, and caps the output.

No container outlives its owner: each carries labels (``agentflow.sandbox``, ``agentflow.owner`` host:pid and,
when pooled, ``agentflow.pool``) and is created with ``auto_remove``; ``close()`` removes it; an ``atexit`` hook and
a SIGTERM handler remove what is still open; and when the owning process dies by any means (even SIGKILL) the
engine closes the container's stdin, the server exits and the engine removes the container.
``agentflow sandbox cleanup`` removes leftovers of anything else (a container created but never started).
"""

from agentflow.sandboxes._docker.build import (
    TASK_IMAGE_LABEL,
    build_context_image,
    cleanup_task_images,
    context_hash,
    image_workdir,
)
from agentflow.sandboxes._docker.client import (
    DEFAULT_IMAGE,
    IMAGE_ENV_VAR,
    LABEL,
    OWNER_LABEL,
    POOL_LABEL,
    cleanup_containers,
    docker_available,
    docker_client,
    image_available,
    new_pool_id,
)
from agentflow.sandboxes._docker.sandbox import SANDBOX_USER, TIMEOUT_EXIT_CODE, WORKDIR, DockerSandbox, commands_as

__all__ = [
    "DEFAULT_IMAGE",
    "IMAGE_ENV_VAR",
    "LABEL",
    "OWNER_LABEL",
    "POOL_LABEL",
    "SANDBOX_USER",
    "TASK_IMAGE_LABEL",
    "TIMEOUT_EXIT_CODE",
    "WORKDIR",
    "DockerSandbox",
    "build_context_image",
    "cleanup_containers",
    "cleanup_task_images",
    "commands_as",
    "context_hash",
    "docker_available",
    "docker_client",
    "image_available",
    "image_workdir",
    "new_pool_id",
]
