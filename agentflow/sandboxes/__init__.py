"""Sandboxes: where every tool call runs.

``create_sandbox("local")`` gives the embedded default (a child process in a private workdir, isolated with Linux
namespaces where the kernel allows); ``docker`` and ``e2b`` come with their extras. Every backend passes the
conformance suite in ``agentflow.sandboxes.conformance``.
"""

from agentflow.sandboxes._base import ExecResult, IsolationReport, Sandbox, SandboxLimits
from agentflow.sandboxes._local import LocalSandbox
from agentflow.sandboxes._registry import (
    SandboxBackend,
    create_sandbox,
    exec_once,
    sandbox,
    sandbox_backends,
)

__all__ = [
    "ExecResult",
    "IsolationReport",
    "LocalSandbox",
    "Sandbox",
    "SandboxBackend",
    "SandboxLimits",
    "create_sandbox",
    "exec_once",
    "sandbox",
    "sandbox_backends",
]
