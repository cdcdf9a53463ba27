"""Content hashing of trace events: RFC 8785 (JCS) canonical JSON and sha256.

Two layers, on purpose:

- :func:`canonical_json` is **strict**. It encodes exactly the JSON data model RFC 8785 defines and raises
  :class:`~agentflow.errors.TraceError` (naming the JSON path of the offending value) for anything else: NaN and
  infinities, integers outside the IEEE 754 safe range ``±(2**53 - 1)``, non-string object keys, lone surrogates and
  non-JSON types. A hash must never silently depend on how a value happened to be coerced.
- :func:`to_json_value` is what the recorder runs on every event payload before hashing. It **normalises** the
  Python values a runtime naturally produces into that data model, with fixed, documented rules (see its docstring),
  so recording a run never fails because a reward came out as ``nan`` or a tool returned a tuple.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import json.encoder
import math
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

from agentflow._canonical_json import canonical_json
from agentflow.errors import TraceError

__all__ = [
    "MAX_SAFE_INTEGER",
    "canonical_json",
    "encode_event",
    "event_hash",
    "normalise_json_value",
    "scrub_surrogates",
    "sha256_hex",
    "stored_event_hash",
    "to_json_value",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer RFC 8785 encodes (the IEEE 754 double precision limit); larger ones are normalised to strings."""

_NON_FINITE_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def request_hash(model: str, messages: Any, tools: Any, settings: Any) -> str:
    """sha256 of a model request's canonical content; replay matches recorded responses by it."""
    content = {"model": model, "messages": messages, "tools": tools, "settings": settings}
    # Plain content (the usual request) is its RFC 8785 form in one pass of the C encoder: the same bytes
    # canonical_json gives (see encode_if_plain), in a tenth of the time, on every model call.
    plain = encode_if_plain(content, sys.maxsize)
    if plain is None:
        # Usually an integral float in the settings (`timeout_s: 120.0`), which RFC 8785 writes as an integer: the
        # walk makes it one, and plain normalised content is still one pass of the C encoder. The walk changes no
        # hash canonical_json gives: what else it rewrites (NaN, unsafe integers, lone surrogates) canonical_json
        # refuses, and such a request is now hashed as the recorder records it.
        normalised, is_plain = normalise_json_value(content, None)
        if not is_plain:
            return hashlib.sha256(canonical_json(content)).hexdigest()
        plain = _PLAIN_ENCODER.encode(normalised)
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def event_hash(event_fields: Mapping[str, Any]) -> str:
    """Hash one trace event: sha256 of the canonical JSON of every field except ``hash``.

    Args:
        event_fields: the event as a mapping (``Event.model_dump(mode="json")`` or the dict a recorder builds);
            a ``hash`` key, if present, is ignored. Fields set to ``None`` are part of the hash (as ``null``).

    Returns:
        The hex sha256 digest.

    Raises:
        TraceError: a field holds a value RFC 8785 cannot encode.
    """
    without_hash = {key: value for key, value in event_fields.items() if key != "hash"}
    return sha256_hex(canonical_json(without_hash))


def stored_event_hash(stored: Mapping[str, Any]) -> str | None:
    """:func:`event_hash` of an event as read back from a trace line (``json.loads`` of it; ``hash`` is ignored), or
    None when the line does not hold exactly the fields the recorder writes (then hash the event the model read).

    Loading verifies every event of a trace, and the pure-Python RFC 8785 encoder took four fifths of a 50,000-event
    load. An event whose data the C encoder writes exactly as RFC 8785 does (the recorder's own test,
    :func:`encode_if_plain`) is hashed through it; anything else (a float with an exponent, a key outside the BMP,
    an unexpected field or type, which a damaged line may hold) goes through the library. The two agree on every
    event the fast path takes (``tests/traces/test_trace_hashing.py`` pins them on varied data).
    """
    if stored.keys() != _STORED_FIELDS:  # not a line the recorder wrote: hash the event as the model reads it
        return None
    data, run_id, event_type, ts = stored["data"], stored["run_id"], stored["type"], stored["ts"]
    seq, node, parent, prev_hash = stored["seq"], stored["node"], stored["parent"], stored["prev_hash"]
    plain = (
        type(data) is dict
        and type(run_id) is str
        and type(event_type) is str
        and type(ts) is str
        and (node is None or type(node) is str)
        and (prev_hash is None or type(prev_hash) is str)
        and (run_id + event_type + ts + (node or "") + (prev_hash or "")).isascii()
        and type(seq) is int
        and abs(seq) <= MAX_SAFE_INTEGER
        and (parent is None or (type(parent) is int and abs(parent) <= MAX_SAFE_INTEGER))
    )
    encoded = encode_if_plain(data, _NO_SPILL) if plain else None
    if encoded is None:
        return event_hash(stored)
    digest, _line = encode_event(
        run_id=run_id,
        seq=seq,
        event_type=event_type,
        ts=ts,
        node=node,
        parent=parent,
        data=data,
        prev_hash=prev_hash,
        plain=True,
        encoded=encoded,
    )
    return digest


_STORED_FIELDS = frozenset({"run_id", "seq", "type", "ts", "node", "parent", "data", "prev_hash", "hash"})
_NO_SPILL = 1 << 62  # verification never spills: any length of data is hashed as it is


def to_json_value(value: Any) -> Any:
    """Normalise a Python value into the JSON data model that :func:`canonical_json` accepts.

    Rules (applied at any depth; JSON values pass through unchanged):

    - ``float`` NaN and infinities become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
    - ``int`` beyond ``±(2**53 - 1)`` becomes its decimal string (JSON readers would lose precision);
    - ``tuple``, ``set``, ``frozenset`` become lists (sets sorted by their canonical JSON, so the order is stable);
    - non-string ``dict`` keys (``int``, ``float``, ``bool``, ``None``, enums) become strings;
    - ``enum.Enum`` members become their value, pydantic models ``model_dump(mode="json")``, dataclasses their
      fields, ``pathlib`` paths and ``datetime``/``date`` objects strings, ``bytes`` UTF-8 text (invalid bytes
      replaced by U+FFFD);
    - strings with lone surrogates (from ``surrogateescape`` decoding) get them replaced by U+FFFD.

    Raises:
        TraceError: any other type (a programming mistake of the emitter); the message names the JSON path.
    """
    return normalise_json_value(value, None)[0]


class _UnsupportedValue(Exception):
    """Raised inside the walk; collects the JSON path on the way out, so the hot path never builds path strings."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


def normalise_json_value(value: Any, on_str: Callable[[str], Any] | None) -> tuple[Any, bool]:
    """:func:`to_json_value`, plus what the recorder needs to hash quickly.

    Args:
        value: the value to normalise.
        on_str: called with every (normalised) string value, not keys; its result replaces the string (the
            recorder spills large payloads to blobs this way, in the same walk).

    Returns:
        The normalised value, and whether it is *plain*: free of the two things on which the C JSON encoder with
        sorted keys and RFC 8785 disagree (floats whose ECMAScript spelling differs from Python's, and keys outside
        the Basic Multilingual Plane, which UTF-16 orders differently). Plain values are hashed with the C encoder.

    Raises:
        TraceError: ``value`` holds a type the rules of :func:`to_json_value` do not cover.
    """
    walker = _Normaliser(on_str)
    try:
        return walker.walk(value), walker.plain
    except _UnsupportedValue as exc:
        where = "$" + "".join(reversed(exc.path))
        raise TraceError(
            f"cannot record {exc.what} at {where} in a trace event; "
            "convert it to JSON data (dict, list, str, int, float, bool, None) before emitting"
        ) from None


class _Normaliser:
    __slots__ = ("on_str", "plain")

    def __init__(self, on_str: Callable[[str], Any] | None) -> None:
        self.on_str = on_str
        self.plain = True

    def walk(self, value: Any) -> Any:
        # Exact type checks first: this runs for every value of every event, and the common cases must stay cheap.
        kind = type(value)
        if kind is str:
            text = value if value.isascii() else scrub_surrogates(value)
            return text if self.on_str is None else self.on_str(text)
        if kind is dict:
            normalised: dict[str, Any] = {}
            for key, item in value.items():
                try:
                    normalised[self.key(key)] = self.walk(item)
                except _UnsupportedValue as exc:
                    exc.path.append(f".{key}")
                    raise
            return normalised
        if kind is list or kind is tuple:
            items: list[Any] = []
            for index, item in enumerate(value):
                try:
                    items.append(self.walk(item))
                except _UnsupportedValue as exc:
                    exc.path.append(f"[{index}]")
                    raise
            return items
        if value is None or kind is bool:
            return value
        if kind is int:
            return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
        if kind is float:
            if not math.isfinite(value):
                return "NaN" if math.isnan(value) else _NON_FINITE_FLOATS[value]
            if value.is_integer() and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                # JSON has one number type and RFC 8785 writes 1.0 as 1: recording it as 1 changes nothing a reader
                # or a hash can see, and keeps the event on the fast path (rewards of 0.0 and 1.0 are common).
                return int(value)
            # Python's repr and ECMAScript agree on non-integral floats in [1e-4, 1e16) (checked by the tests);
            # exponent forms differ, so those take the RFC 8785 encoder.
            if self.plain and not 1e-4 <= abs(value) < 1e16:
                self.plain = False
            return value
        return self.other(value)

    def key(self, key: Any) -> str:
        if type(key) is not str:
            key = _normalise_key(key)
        if not key.isascii():
            key = scrub_surrogates(key)
            if max(key) > "\uffff":
                self.plain = False
        return str(key)

    def other(self, value: Any) -> Any:
        """The uncommon types (subclasses, enums, models, ...), kept out of the hot path."""
        for types, convert in _CONVERTERS:
            if isinstance(value, types):
                return self.walk(convert(value))
        model_dump = getattr(value, "model_dump", None)
        if callable(model_dump):  # a pydantic model, without importing pydantic's types here
            return self.walk(model_dump(mode="json"))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.walk({field.name: getattr(value, field.name) for field in dataclasses.fields(value)})
        raise _UnsupportedValue(f"a value of type {type(value).__name__}")


def _set_to_list(value: Any) -> list[Any]:
    # Sets have no order; sort by canonical JSON so equal sets always record (and hash) the same.
    return sorted((to_json_value(item) for item in value), key=canonical_json)


# Checked in order: enum before int/str (IntEnum, StrEnum), bool before int (bool subclasses int).
_CONVERTERS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (enum.Enum, lambda value: value.value),
    (bool, bool),
    (int, int),
    (float, float),
    (str, str),
    (Mapping, dict),
    ((list, tuple), list),
    ((set, frozenset), _set_to_list),
    ((bytes, bytearray, memoryview), lambda value: bytes(value).decode("utf-8", errors="replace")),
    (PurePath, str),
    ((_dt.datetime, _dt.date, _dt.time), lambda value: value.isoformat()),
)


def encode_event(
    *,
    run_id: str,
    seq: int,
    event_type: str,
    ts: str,
    node: str | None,
    parent: int | None,
    data: dict[str, Any],
    prev_hash: str | None,
    plain: bool,
    encoded: str | None = None,
) -> tuple[str, bytes]:
    """Hash one event and encode its trace line, serialising ``data`` once.

    The hash is exactly :func:`event_hash` of the same fields (the canonical JSON is assembled from the canonical
    encodings of its members, keys in RFC 8785 order); the test suite pins the two together on varied data, and
    loading a trace recomputes every hash (:func:`stored_event_hash`: this path for plain data, the ``rfc8785``
    library for the rest).

    Args:
        run_id: the event's fields, already normalised (``data`` by :func:`normalise_json_value`; ``run_id``,
            ``event_type``, ``ts`` and ``prev_hash`` ASCII).
        seq: see ``run_id``.
        event_type: see ``run_id``.
        ts: see ``run_id``.
        node: see ``run_id``.
        parent: see ``run_id``.
        data: see ``run_id``.
        prev_hash: see ``run_id``.
        plain: the flag :func:`normalise_json_value` returned for ``data``.
        encoded: ``data`` already encoded by :func:`encode_if_plain`, if it was.

    Returns:
        The hex hash, and the JSON line (fields in reading order, newline-terminated) that the trace file stores.
    """
    # The line always holds Python's float spelling: RFC 8785 writes 2.5e16 as an integer, which would read back as
    # an int outside the safe range. For plain data the two encodings are the same string, serialised once.
    data_json = _PLAIN_ENCODER.encode(data) if encoded is None else encoded
    canonical_data = data_json if plain else canonical_json(data).decode("utf-8")
    node_json = "null" if node is None else _encode_string(node if node.isascii() else scrub_surrogates(node))
    parent_json = "null" if parent is None else str(parent)
    prev_json = "null" if prev_hash is None else f'"{prev_hash}"'
    run_json, type_json, ts_json = _encode_string(run_id), _encode_string(event_type), _encode_string(ts)
    canonical = (
        f'{{"data":{canonical_data},"node":{node_json},"parent":{parent_json},"prev_hash":{prev_json},'
        f'"run_id":{run_json},"seq":{seq},"ts":{ts_json},"type":{type_json}}}'
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    line = (
        f'{{"run_id":{run_json},"seq":{seq},"type":{type_json},"ts":{ts_json},"node":{node_json},'
        f'"parent":{parent_json},"data":{data_json},"prev_hash":{prev_json},"hash":"{digest}"}}\n'
    )
    return digest, line.encode("utf-8")


# Numbers in the C encoder's output that only a walk can settle: an integral float ("1.0"), an exponent form
# ("1e-05", "2.5e+16"), a digit run as long as an unsafe integer. With no whitespace in the output, a number
# always starts right after ":" (a value), "," or "[" (an array item), so only such tokens are looked at: a hex
# digest or a version string ("0.1.0") inside a string no longer sends the event to the walk. A string holding
# ":1.0" still does: a false alarm, which only costs the walk.
_NEEDS_WALK = re.compile(r"[:,\[]-?[0-9.]*(?:[0-9]\.0(?![0-9])|[0-9]e|[0-9]{15})")


def encode_if_plain(data: dict[str, Any], spill_threshold: int) -> str | None:
    """The data's JSON when the data is already normal and plain and holds no string to spill, else None.

    One pass of the C encoder replaces the Python walk of :func:`normalise_json_value` for the usual event (plain
    text, ints, rounded durations). Anything it cannot vouch for returns None and takes the walk.
    """
    try:
        text = "".join(_plain_chunks(data, 0))
    except (TypeError, ValueError, RecursionError):  # a type JSON lacks, NaN, unorderable keys, a cycle
        return None
    if len(text) * 4 > spill_threshold or _NEEDS_WALK.search(text):
        return None
    if not text.isascii():
        if max(text) > "\uffff":  # keys outside the BMP sort differently in UTF-16
            return None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates, which the walk replaces
            return None
    return text


# With sorted keys, no whitespace and ensure_ascii=False, the C encoder writes RFC 8785 for "plain" data: same
# string escapes (\b \f \n \r \t, \u00xx for other controls, nothing else), same integers.
_PLAIN_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def _refuse(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")


# The C encoder behind _PLAIN_ENCODER, made once: JSONEncoder.encode builds a new one on every call, which costs
# as much as the encoding of a small event. No circular-reference markers: a cycle ends in RecursionError.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_plain_chunks: Callable[[Any, int], Any] = (
    _c_make_encoder(None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if _c_make_encoder is not None
    else lambda value, _level: (_PLAIN_ENCODER.encode(value),)
)


def _normalise_key(key: Any) -> str:
    if isinstance(key, enum.Enum):
        return str(key.value)
    if isinstance(key, str | int | float | bool) or key is None:
        return str(key)
    raise _UnsupportedValue(f"a dict key of type {type(key).__name__}")


def scrub_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (from ``surrogateescape`` decoding) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")
