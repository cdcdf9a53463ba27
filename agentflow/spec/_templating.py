"""`{key}` placeholders filled from the run state; the only templating workflows use.

Python's own ``str.format`` would allow attribute and index access on state values (``{x.__class__}``); here a
placeholder is a dotted path of mapping keys and nothing else.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Mapping
from typing import Any

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_formatter = string.Formatter()


class TemplateError(ValueError):
    """A placeholder is malformed or names a missing state key."""


@functools.lru_cache(maxsize=4096)
def _parse(template: str) -> tuple[tuple[str, str | None, str | None, str | None], ...]:
    # Templates come from workflow files and are filled at every visit: parse each once.
    return tuple(_formatter.parse(template))


def placeholders(template: str) -> list[str]:
    """The dotted paths a template reads, in order; raises TemplateError on malformed braces."""
    try:
        parsed = _parse(template)
    except ValueError as exc:
        raise TemplateError(f"{exc}; write {{{{ and }}}} for literal braces") from None
    fields: list[str] = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion or not _PATH.match(field):
            raise TemplateError(f"placeholder {{{field}}} must be a state key or a dotted path like {{key.sub}}")
        fields.append(field)
    return fields


def lookup(state: Mapping[str, Any], path: str) -> Any:
    value: Any = state
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(f"state has no value at {path!r}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def render(template: str, state: Mapping[str, Any]) -> str:
    """Fill a text template from state; non-text values are written as JSON."""
    out: list[str] = []
    for literal, field, _, _ in _parse(template):
        out.append(literal)
        if field is not None:
            out.append(_text(lookup(state, field)))
    return "".join(out)


def render_value(value: Any, state: Mapping[str, Any]) -> Any:
    """Fill templates inside nested arguments; a string that is exactly one placeholder keeps the value's type."""
    if isinstance(value, str):
        fields = placeholders(value)
        if len(fields) == 1 and value == "{" + fields[0] + "}":
            return lookup(state, fields[0])
        return render(value, state) if fields else value.replace("{{", "{").replace("}}", "}")
    if isinstance(value, dict):
        return {k: render_value(v, state) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, state) for v in value]
    return value


def value_placeholders(value: Any) -> list[str]:
    """Every placeholder inside nested arguments."""
    if isinstance(value, str):
        return placeholders(value)
    if isinstance(value, dict):
        return [p for v in value.values() for p in value_placeholders(v)]
    if isinstance(value, list):
        return [p for v in value for p in value_placeholders(v)]
    return []
