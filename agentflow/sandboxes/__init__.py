"""Sandboxes: where every tool call runs.

``create_sandbox("local")`` gives the embedded default (a child process in a private workdir, isolated with Linux
namespaces where the kernel allows); ``docker`` and ``e2b`` come with their extras. Every backend passes the
conformance suite in ``agentflow.sandboxes.conformance``.
"""

# Register the container and cloud backends by name; their SDKs (docker, e2b) load only when one is created.
from agentflow.sandboxes import _docker as _docker
from agentflow.sandboxes import _e2b as _e2b
from agentflow.sandboxes._archive import copy_folder_to, tar_folder
from agentflow.sandboxes._base import (
    ExecObserver,
    ExecOutput,
    ExecRequest,
    ExecResult,
    IsolationReport,
    Sandbox,
    SandboxLimits,
)
from agentflow.sandboxes._docker import (
    TASK_IMAGE_LABEL,
    DockerSandbox,
    build_context_image,
    cleanup_task_images,
    commands_as,
    context_hash,
    image_workdir,
)
from agentflow.sandboxes._local import LocalSandbox
from agentflow.sandboxes._pool import PooledSandbox, SandboxPool
from agentflow.sandboxes._registry import (
    SandboxBackend,
    copy_files_in,
    create_sandbox,
    exec_once,
    sandbox,
    sandbox_backends,
)

__all__ = [
    "TASK_IMAGE_LABEL",
    "DockerSandbox",
    "ExecObserver",
    "ExecOutput",
    "ExecRequest",
    "ExecResult",
    "IsolationReport",
    "LocalSandbox",
    "PooledSandbox",
    "Sandbox",
    "SandboxBackend",
    "SandboxLimits",
    "SandboxPool",
    "build_context_image",
    "cleanup_task_images",
    "commands_as",
    "context_hash",
    "copy_files_in",
    "copy_folder_to",
    "create_sandbox",
    "exec_once",
    "image_workdir",
    "sandbox",
    "sandbox_backends",
    "tar_folder",
]
