"""`{key}` placeholders filled from the run state; the only templating workflows use.

Python's own ``str.format`` would allow attribute and index access on state values (``{x.__class__}``); here a
placeholder is a dotted path of mapping keys and nothing else.

State often holds model output, so a placeholder inside code is never pasted as raw text: a tool parameter that
holds a program says how its placeholders are quoted (`Quoting`): ``python`` writes each value as a Python
literal, ``shell`` as one shell-quoted word. A parameter that is exactly one placeholder passes the value itself.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
import shlex
import string
import tokenize
from collections.abc import Callable, Mapping
from typing import Any, Literal

from agentflow.errors import TemplateError  # defined with the error tree; imported from here too

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_formatter = string.Formatter()

Quoting = Literal["text", "python", "shell"]
"""How a placeholder's value is written into a template: as text, as a Python literal, or as a shell word."""


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


def _python_literal(value: Any) -> str:
    # repr() of JSON-like data (str, numbers, bool, None, lists and dicts of them) is a Python literal that
    # evaluates back to the value; anything else is written as the literal of its text.
    return repr(value) if _is_plain_data(value) else repr(_text(value))


def _is_plain_data(value: Any) -> bool:
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return math.isfinite(value)  # repr(nan) is not a literal
    if type(value) is list:
        return all(_is_plain_data(item) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _is_plain_data(item) for key, item in value.items())
    return False


def _shell_word(value: Any) -> str:
    return shlex.quote(_text(value))


_WRITERS: dict[Quoting, Callable[[Any], str]] = {"text": _text, "python": _python_literal, "shell": _shell_word}


@functools.lru_cache(maxsize=1024)
def quoting_problems(template: str, quoting: Quoting) -> tuple[str, ...]:
    """Why the placeholders of a code template cannot be quoted safely (empty when they can).

    A value is inserted as a whole literal (``'it''s'``) or shell word, so a placeholder must stand where a literal
    or a word may stand: not inside a string literal or shell quotes, where the inserted quotes would end the
    user's quotes and let the value's text run as code.
    """
    if quoting == "text":
        return ()
    pieces: list[str] = []
    markers: dict[str, str] = {}
    for literal, field, _, _ in _parse(template):
        pieces.append(literal)
        if field is not None:
            marker = f"__agentflow_placeholder_{len(markers)}__"
            markers[marker] = field
            pieces.append(marker)
    marked = "".join(pieces)
    if quoting == "python":
        quoted, failure = _python_quoted_markers(marked, markers)
        where = "a string literal of the Python code"
        example = "print({key})"
    else:
        quoted, failure = _shell_quoted_markers(marked, markers)
        where = "quotes, a comment or a here-document of the shell command"
        example = "echo {key}"
    if failure is not None:
        return (f"cannot tell where the placeholders stand: {failure}",)
    return tuple(
        f"placeholder {{{markers[m]}}} is inside {where}; write it bare, as in {example.replace('key', markers[m])}: "
        f"its value is inserted as a {'Python literal' if quoting == 'python' else 'shell-quoted word'}"
        for m in quoted
    )


def _python_quoted_markers(code: str, markers: Mapping[str, str]) -> tuple[list[str], str | None]:
    string_types = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    quoted: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type in string_types:  # a comment is safe: a literal's repr holds no raw newline
                quoted += [marker for marker in markers if marker in token.string]
    except (tokenize.TokenError, SyntaxError) as exc:
        return [], f"the Python code does not tokenize ({exc})"
    return quoted, None


def _shell_quoted_markers(command: str, markers: Mapping[str, str]) -> tuple[list[str], str | None]:
    """Markers inside quotes, a comment or a here-document, where a quoted word would not stay one word."""
    quoted: list[str] = []
    quote: str | None = None  # the open quote character, or "#" in a comment, or "<<" after a here-document
    index = 0
    while index < len(command):
        char = command[index]
        if quote is not None and command.startswith("__agentflow_placeholder_", index):
            quoted += [m for m in markers if command.startswith(m, index)]
        if quote == "#":
            quote = None if char == "\n" else quote
        elif char == "\\" and quote != "'":
            index += 1  # an escaped character is literal (outside quotes and inside double quotes)
        elif quote is None and char in "'\"":
            quote = char
        elif quote is None and char == "#" and (index == 0 or command[index - 1] in " \t\n;&|()"):
            quote = "#"
        elif quote is None and command.startswith("<<", index):
            quote = "<<"  # a here-document's body runs to its delimiter line, whatever quoting the value has
        elif quote is not None and quote in "'\"" and char == quote:
            quote = None
        index += 1
    if quote is not None and quote in "'\"":
        return [], f"the shell command leaves a {quote} quote open"
    return quoted, None


def render(template: str, state: Mapping[str, Any], quoting: Quoting = "text") -> str:
    """Fill a text template from state.

    With ``text`` quoting non-text values are written as JSON; with ``python`` every value is written as a Python
    literal (a string becomes a quoted string, never raw code); with ``shell`` as one shell-quoted word.

    Raises:
        TemplateError: a state key is missing, or (``python``, ``shell``) a placeholder stands inside quotes.
    """
    problems = quoting_problems(template, quoting)
    if problems:
        raise TemplateError("; ".join(problems))
    write = _WRITERS[quoting]
    out: list[str] = []
    for literal, field, _, _ in _parse(template):
        out.append(literal)
        if field is not None:
            out.append(write(lookup(state, field)))
    return "".join(out)


def render_value(value: Any, state: Mapping[str, Any], quoting: Quoting = "text") -> Any:
    """Fill templates inside nested arguments; a string that is exactly one placeholder keeps the value's type."""
    if isinstance(value, str):
        fields = placeholders(value)
        if len(fields) == 1 and value == "{" + fields[0] + "}":
            return lookup(state, fields[0])
        return render(value, state, quoting) if fields else value.replace("{{", "{").replace("}}", "}")
    if isinstance(value, dict):
        return {k: render_value(v, state, quoting) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, state, quoting) for v in value]
    return value


def render_arguments(
    arguments: Mapping[str, Any], state: Mapping[str, Any], quoting: Mapping[str, Quoting] | None = None
) -> dict[str, Any]:
    """Fill a tool node's ``args`` from state, quoting each argument as its tool parameter asks (default text)."""
    quoting = quoting or {}
    return {key: render_value(value, state, quoting.get(key, "text")) for key, value in arguments.items()}


def value_placeholders(value: Any) -> list[str]:
    """Every placeholder inside nested arguments."""
    if isinstance(value, str):
        return placeholders(value)
    if isinstance(value, dict):
        return [p for v in value.values() for p in value_placeholders(v)]
    if isinstance(value, list):
        return [p for v in value for p in value_placeholders(v)]
    return []
