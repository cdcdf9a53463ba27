"""The built-in tools, registered by importing this module (`resolve_tool` does before it looks a name up).

Each group lives in its own module: `_exec` (python, shell), `_files` (read_file, write_file, list_files),
`_patching` (apply_patch) and `_tests` (run_tests and the runners' output parsers).
"""

from agentflow.tools import _exec, _files, _patching, _tests  # noqa: F401  (each registers its tools on import)

BUILTIN_TOOLS: tuple[str, ...] = (
    "python",
    "shell",
    "read_file",
    "write_file",
    "list_files",
    "apply_patch",
    "run_tests",
)
"""The names of the built-in tools, as a workflow file lists them."""
