"""Conditions and output mappings as CEL expressions (cel-python): no ``eval``, no attribute access on objects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError


class ExpressionError(ValueError):
    """An expression does not parse, or fails when evaluated."""


_environment = celpy.Environment()
_STATE_REF = re.compile(r"\bstate\.([A-Za-z_][A-Za-z0-9_]*)")
_PATH_EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$")
_CEL_LITERALS = frozenset({"true", "false", "null"})


@lru_cache(maxsize=1024)
def _program(source: str) -> Any:
    try:
        ast = _environment.compile(source)
    except CELParseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise ExpressionError(f"cannot parse CEL expression {source!r}: {first_line}") from None
    return _environment.program(ast)


def check_syntax(source: str) -> None:
    """Raise ExpressionError when ``source`` is not a CEL expression."""
    _program(source)


def state_keys_read(source: str) -> list[str]:
    """The top-level state keys an expression reads (``state.x`` references)."""
    return _STATE_REF.findall(source)


def _to_python(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.BytesType):
        return bytes(value)
    if isinstance(value, celtypes.MapType):
        return {_to_python(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType):
        return [_to_python(v) for v in value]
    if value is None or isinstance(value, celtypes.NullType):
        return None
    return value


def _select(source: str, path: str, variables: Mapping[str, Any]) -> tuple[bool, Any]:
    """Member selection along a dotted path of maps, as CEL defines it; (False, None) when CEL must decide."""
    first, *rest = path.split(".")
    if first in _CEL_LITERALS or first not in variables:
        return False, None
    value = variables[first]
    for part in rest:
        if not isinstance(value, Mapping):
            return False, None
        if part not in value:
            raise ExpressionError(f"{source!r}: no such member in mapping: {part!r}")
        value = value[part]
    return True, value


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate a CEL expression over JSON-like variables and return a plain Python value."""
    path = _PATH_EXPRESSION.match(source)
    if path is not None:
        # Most conditions and output mappings are a bare path (`state.done`, `result.passed`). CEL member selection
        # on maps is exactly this lookup; walking cel-python's tree for it costs hundreds of microseconds per node.
        found, value = _select(source, path.group(1), variables)
        if found:
            return value
    program = _program(source)
    try:
        activation = {name: json_to_cel(value) for name, value in variables.items()}
        result = program.evaluate(activation)
    except CELEvalError as exc:
        raise ExpressionError(f"{source!r}: {exc.args[0] if exc.args else exc}") from None
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"{source!r}: {exc}") from None
    if isinstance(result, CELEvalError):
        raise ExpressionError(f"{source!r}: {result.args[0] if result.args else result}")
    return _to_python(result)


def evaluate_condition(source: str, state: Mapping[str, Any]) -> bool:
    """Evaluate a `when` condition; it must give a boolean."""
    value = evaluate(source, {"state": dict(state)})
    if not isinstance(value, bool):
        raise ExpressionError(f"condition {source!r} gave {type(value).__name__} {value!r}, not a boolean")
    return value


def is_type_error(error: ExpressionError) -> bool:
    """Whether an evaluation error comes from mismatched operand types (detectable before a run)."""
    text = str(error)
    return "no matching overload" in text or "not a boolean" in text
