"""Conditions and output mappings as CEL expressions (cel-python): no ``eval``, no attribute access on objects."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, base_functions

from agentflow.errors import ExpressionError  # defined with the error tree; imported from here too


@dataclass(frozen=True)
class Problem:
    """A mistake in an expression found before it runs: ``offset`` is its 0-based position in the source."""

    code: str  # expr.syntax | expr.unknown-function | expr.unknown-name | expr.type
    message: str
    offset: int
    fix: str


UNKNOWN: Any = object()
"""The value of an expression whose result cannot be known before the run (it reads a value of unknown type)."""

MACROS = ("all", "exists", "exists_one", "filter", "map", "has", "dyn")
FUNCTIONS = tuple(
    sorted({*(name for name in base_functions if name.isidentifier() and not name.startswith("_")), *MACROS})
)
"""Every function and method name CEL (as cel-python implements it) knows."""
_ALLOWED_CALLS = (
    "methods: contains, endsWith, matches, size, startsWith (strings), all, exists, exists_one, filter, map "
    "(lists and maps), getX (timestamps); functions: size, has, int, uint, double, string, bool, bytes, dyn, type, "
    "duration, timestamp"
)


_environment = celpy.Environment()
_STATE_REF = re.compile(r"\bstate\.([A-Za-z_][A-Za-z0-9_]*)")
_PATH_EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$")
_CEL_LITERALS = frozenset({"true", "false", "null"})


# What each token lark may expect stands for, in the words of a fix.
_TOKEN_WORDS = {
    "IDENT": "a name",
    "INT_LIT": "a number",
    "UINT_LIT": "a number",
    "FLOAT_LIT": "a number",
    "STRING_LIT": "a string",
    "MLSTRING_LIT": "a string",
    "BYTES_LIT": "bytes",
    "BOOL_LIT": "true or false",
    "NULL_LIT": "null",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "BANG": "`!`",
    "MINUS": "`-`",
    "DOT": "`.`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "QMARK": "`?`",
}
_OPERAND_TOKENS = {"IDENT", "INT_LIT", "STRING_LIT", "LPAR", "BANG", "MINUS"}


def _expected_words(expected: Collection[str]) -> str:
    if set(expected) >= _OPERAND_TOKENS:
        return "an operand: a name such as state.key, a literal (number, 'string', true, null), `(`, `!` or `-`"
    words = sorted({_TOKEN_WORDS.get(token, token.lower()) for token in expected})
    return ", ".join(words) or "a complete expression"


def _parse_error(source: str, exc: CELParseError) -> ExpressionError:
    cause = exc.__context__
    column = getattr(exc, "column", None)
    offset = max(0, min(len(source), int(column) - 1)) if isinstance(column, int) else None
    expected: str | None = None
    if isinstance(cause, lark.exceptions.UnexpectedToken):
        token = cause.token
        if token.type == "$END":
            offset = len(source.rstrip())
            problem = "the expression ends too early"
        else:
            problem = f"unexpected {token.value!r}"
        expected = _expected_words(cause.expected)
    elif isinstance(cause, lark.exceptions.UnexpectedCharacters):
        problem = f"unexpected character {source[offset or 0]!r}" if offset is not None and offset < len(source) else ""
        problem = problem or "unexpected character"
        expected = "a string closed with its quote, names, numbers and the CEL operators"
    else:
        problem = "syntax error"
    where = f" at column {offset + 1}" if offset is not None else ""
    message = f"cannot parse CEL expression {source!r}: {problem}{where}"
    return ExpressionError(message, offset=offset, expected=expected)


@lru_cache(maxsize=1024)
def _program(source: str) -> Any:
    return _environment.program(_tree(source))


@lru_cache(maxsize=1024)
def _tree(source: str) -> Any:
    try:
        return _environment.compile(source)
    except CELParseError as exc:
        raise _parse_error(source, exc) from None


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
        raise ExpressionError(f"{source!r}: {readable(exc.args[0] if exc.args else exc)}") from None
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"{source!r}: {readable(exc)}") from None
    if isinstance(result, CELEvalError):
        raise ExpressionError(f"{source!r}: {readable(result.args[0] if result.args else result)}")
    return _to_python(result)


_OPERATORS = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "unary_not": "!",
    "unary_neg": "-",
}
_OVERLOAD = re.compile(r"no matching overload for Token\('RULE', '(\w+)'\) applied to '\((.*)\)'")
_CEL_TYPE = re.compile(r"celtypes\.(\w+?)Type\b|<class '(\w+)'>")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_NO_FIELDS = re.compile(r"with type: '<class '[\w.]*?(\w+?)(?:Type)?'>' does not support field selection")


def _type_names(text: str) -> list[str]:
    names = []
    for cel, python in _CEL_TYPE.findall(text):
        name = (cel or python).lower()
        names.append({"nonetype": "null", "none": "null", "str": "string"}.get(name, name))
    return names


def readable(error: object) -> str:
    """cel-python's error text in a user's words: operators and CEL type names, never its internal dumps."""
    text = str(error)
    if found := _OVERLOAD.search(text):
        operator, types = _OPERATORS.get(found.group(1), found.group(1)), _type_names(found.group(2))
        return f"`{operator}` cannot take {' and '.join(types)}" if types else f"`{operator}` cannot take these types"
    if found := _UNDECLARED.search(text):
        return f"unknown name {found.group(1)!r}"
    if found := _NO_FIELDS.search(text):
        names = _type_names(found.group(0))
        return f"{names[-1] if names else 'such'} values have no fields"
    if text == "no such overload":
        return "a function or method got arguments of types it does not take"
    return text.split(" (in activation", 1)[0].split("Activation(", 1)[0].strip()


def evaluate_condition(source: str, state: Mapping[str, Any]) -> bool:
    """Evaluate a `when` condition; it must give a boolean."""
    value = evaluate(source, {"state": dict(state)})
    if not isinstance(value, bool):
        raise ExpressionError(f"condition {source!r} gave {type(value).__name__} {value!r}, not a boolean")
    return value


def is_type_error(error: ExpressionError) -> bool:
    """Whether an evaluation error comes from mismatched operand types (detectable before a run)."""
    text = str(error)
    return any(
        part in text
        for part in ("cannot take", "not a boolean", "has no fields", "got arguments of types it does not take")
    )


def type_name(value: Any) -> str:
    """The workflow state type (str, int, float, bool, list, dict) of a plain value; null for None."""
    if value is None:
        return "null"
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list), ("dict", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def fits(value: Any, declared: str) -> bool:
    """Whether a value of this sample's type can be stored in a state key of the declared type."""
    if declared == "any" or value is None or value is UNKNOWN:
        return True
    actual = type_name(value)
    return actual == declared or (declared == "float" and actual == "int")


def _spans(tree: Any) -> Iterator[tuple[int, int, Any]]:
    for node in tree.iter_subtrees():
        meta = node.meta
        if not meta.empty:
            yield meta.start_pos, meta.end_pos, node


def _names(tree: Any) -> tuple[list[tuple[str, int]], list[tuple[str, int, bool]], set[str]]:
    """(variables read, functions called (name, offset, is_method), names bound by macros) of a parse tree."""
    variables: list[tuple[str, int]] = []
    calls: list[tuple[str, int, bool]] = []
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident":
            token = node.children[0]
            variables.append((str(token), token.start_pos))
        elif node.data in {"ident_arg", "dot_ident_arg"}:
            token = node.children[0]
            calls.append((str(token), token.start_pos, False))
        elif node.data == "member_dot_arg":
            token = node.children[1]
            calls.append((str(token), token.start_pos, True))
            arguments = node.children[2] if len(node.children) > 2 else None
            if str(token) in MACROS and isinstance(arguments, lark.Tree) and arguments.children:
                first = arguments.children[0]
                idents = [t for t in first.iter_subtrees() if t.data == "ident"]
                if idents:
                    bound.add(str(idents[0].children[0]))
    return variables, calls, bound


def analyze(source: str, samples: Mapping[str, Any], opaque: Collection[str] = ()) -> tuple[list[Problem], Any]:
    """Check an expression before it runs, against sample values of the variables it may read.

    ``samples`` holds a value of the right type for each variable whose type is known (state keys: their default
    or their type's zero value); ``opaque`` names variables that exist but whose type is known only at run time.
    Every sub-expression is evaluated on its own, so a type error behind a short-circuit (`false && 1 > 'a'`) is
    found too. Returns the problems and the sample result of the whole expression (``UNKNOWN`` when it reads an
    opaque variable, or when the sample values cannot tell).
    """
    try:
        tree = _tree(source)
    except ExpressionError as exc:
        fix = f"expected {exc.expected}" if exc.expected else "see the CEL language definition"
        return [Problem("expr.syntax", str(exc), exc.offset or 0, fix)], UNKNOWN
    variables, calls, bound = _names(tree)
    known = {*samples, *opaque}
    problems: list[Problem] = []
    for name, offset, is_method in calls:
        if name not in FUNCTIONS:
            kind = "method" if is_method else "function"
            problems.append(
                Problem(
                    "expr.unknown-function",
                    f"{source!r}: CEL has no {kind} {name}()",
                    offset,
                    f"{_suggest(name, FUNCTIONS, cutoff=0.8)}CEL has these {_ALLOWED_CALLS}",
                )
            )
    for name, offset in variables:
        if name not in known and name not in bound and name not in FUNCTIONS:
            problems.append(
                Problem(
                    "expr.unknown-name",
                    f"{source!r}: unknown name {name!r}",
                    offset,
                    f"{_suggest(name, sorted(known))}names here: {', '.join(sorted(known))}",
                )
            )
    if problems:
        return problems, UNKNOWN
    return _type_problems(source, tree, samples), _sample_result(source, variables, samples)


def _suggest(name: str, choices: Collection[str], *, cutoff: float = 0.6) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return f"did you mean {close[0]}? " if close else ""


def _sample_result(source: str, variables: list[tuple[str, int]], samples: Mapping[str, Any]) -> Any:
    if any(name not in samples for name, _ in variables):
        return UNKNOWN
    try:
        return evaluate(source, samples)
    except ExpressionError:
        return UNKNOWN


def _type_problems(source: str, tree: Any, samples: Mapping[str, Any]) -> list[Problem]:
    """Type errors of the innermost sub-expressions that have one."""
    found: list[tuple[int, int, str]] = []
    spans = sorted({(start, end) for start, end, _ in _spans(tree)}, key=lambda span: span[1] - span[0])
    trees = {(start, end): node for start, end, node in _spans(tree)}
    for start, end in spans:
        if any(start <= s and e <= end for s, e, _ in found):
            continue  # an inner part already has the error; its enclosing expressions repeat it
        variables, _, _ = _names(trees[(start, end)])
        if any(name not in samples for name, _ in variables):
            continue  # reads a value of unknown type: nothing to check before the run
        try:
            evaluate(source[start:end], samples)
        except ExpressionError as exc:
            if is_type_error(exc):
                found.append((start, end, str(exc).split(": ", 1)[-1]))
    return [
        Problem(
            "expr.type",
            f"{source!r}: {message}" if (start, end) == (0, len(source)) else f"{source[start:end]!r}: {message}",
            start,
            _type_fix(message),
        )
        for start, end, message in sorted(found)
    ]


def _type_fix(message: str) -> str:
    if "cannot take" in message:
        return "both sides must have one type: convert one with int(), double() or string()"
    if "has no fields" in message:
        return "select fields of maps only (state keys of type dict)"
    return "check the argument types: size(), contains(), startsWith(), endsWith() and matches() take strings"
