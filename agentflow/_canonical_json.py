"""RFC 8785 (JCS) canonical JSON: what trace events and workflow templates are hashed over.

At the bottom of the package, because both the spec (a template's hash) and the traces (event hashes) use it.
"""

from __future__ import annotations

from typing import Any

import rfc8785

from agentflow.errors import TraceError


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as RFC 8785 canonical JSON (UTF-8, sorted keys, no whitespace, ECMAScript number format).

    Args:
        obj: JSON data: ``None``, ``bool``, ``int`` within ``±(2**53 - 1)``, finite ``float``, ``str`` (including
            ``StrEnum`` members, encoded by value), ``list``/``tuple`` and ``dict`` with ``str`` keys.

    Returns:
        The canonical encoding; equal data gives equal bytes whatever the key order or float spelling.

    Raises:
        TraceError: ``obj`` holds a value RFC 8785 cannot encode; the message names its JSON path. Run
            :func:`to_json_value` first to normalise runtime values instead.
    """
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        # The library does not say where the bad value is; look for it only on this (rare) failure path.
        where = _find_unencodable(obj, "$") or "$"
        raise TraceError(f"cannot hash trace data: {exc} at {where}") from exc


def _find_unencodable(obj: Any, path: str) -> str:
    """Return the JSON path of the first value RFC 8785 rejects, or ``""`` if there is none below ``path``."""
    children: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                return f"{path} (key {key!r} is not a string)"
        children = [(f"{path}.{key}", item) for key, item in obj.items()]
    elif isinstance(obj, list | tuple):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(obj)]
    else:
        try:
            rfc8785.dumps(obj)
        except rfc8785.CanonicalizationError:
            return path
    for child_path, child in children:
        found = _find_unencodable(child, child_path)
        if found:
            return found
    return ""
