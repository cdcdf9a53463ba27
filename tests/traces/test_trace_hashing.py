"""Canonical JSON and event hashing: deterministic, key-order independent, RFC 8785 exact."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import random
import re
from pathlib import PurePosixPath
from typing import Any

import pytest
from pydantic import BaseModel

from agentflow.errors import TraceError
from agentflow.traces._hashing import (
    canonical_json,
    encode_event,
    encode_if_plain,
    event_hash,
    normalise_json_value,
    request_hash,
    sha256_hex,
    stored_event_hash,
    to_json_value,
)


def _event_fields(data: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "run_id": "20250101-000000-deadbeef",
        "seq": 3,
        "type": "tool_call",
        "ts": "2025-01-01T00:00:00.000001Z",
        "node": "code",
        "parent": 1,
        "data": data,
        "prev_hash": "a" * 64,
    }
    fields.update(overrides)
    return fields


def test_rfc8785_example_from_the_rfc() -> None:
    # RFC 8785 section 3.2.2 example input, and the canonical output the RFC prints for it.
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode("utf-8")


def test_rfc8785_sorts_keys_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3: the emoji (a surrogate pair in UTF-16) sorts before U+FB33, unlike by code point.
    source = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    expected = '{"\\r":2,"1":4,"\u0080":6,"\u00f6":7,"\u20ac":1,"\U0001f600":5,"\ufb33":3}'
    assert canonical_json(source).decode("utf-8") == expected


def test_sha256_hex_known_vector() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_same_content_same_hash_whatever_the_key_order() -> None:
    first = _event_fields({"tool": "read_file", "arguments": {"path": "a.py", "limit": 10}})
    reordered = dict(reversed(list(first.items())))
    reordered["data"] = {"arguments": {"limit": 10, "path": "a.py"}, "tool": "read_file"}
    assert event_hash(first) == event_hash(reordered)
    assert event_hash(first) == event_hash({**first, "hash": "ignored"})


def test_every_field_changes_the_hash() -> None:
    base = _event_fields({"tool": "read_file"})
    changed: list[dict[str, Any]] = [
        {"run_id": "other"},
        {"seq": 4},
        {"type": "tool_result"},
        {"ts": "2025-01-01T00:00:00.000002Z"},
        {"node": None},
        {"parent": None},
        {"data": {"tool": "write_file"}},
        {"prev_hash": None},
    ]
    hashes = {event_hash(base)} | {event_hash({**base, **change}) for change in changed}
    assert len(hashes) == len(changed) + 1


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"reward": {"value": math.nan}}, "$.reward.value"),
        ({"items": [1, math.inf]}, "$.items[1]"),
        ({"big": 2**60}, "$.big"),
        ({"nested": {1: "x"}}, "$.nested"),
        ({"obj": [object()]}, "$.obj[0]"),
    ],
)
def test_canonical_json_rejects_what_rfc8785_cannot_encode(value: Any, where: str) -> None:
    with pytest.raises(TraceError, match=rf"at {re.escape(where)}"):
        canonical_json(value)


class _Color(enum.Enum):
    RED = "red"


class _Usage(BaseModel):
    input_tokens: int
    output_tokens: int


@dataclasses.dataclass
class _Point:
    x: int
    y: float


def test_to_json_value_normalises_runtime_values() -> None:
    normalised = to_json_value(
        {
            "nan": math.nan,
            "inf": -math.inf,
            "big": 2**64,
            "tuple": (1, 2),
            "set": {"b", "a"},
            "enum": _Color.RED,
            "path": PurePosixPath("/workspace/a.py"),
            "model": _Usage(input_tokens=1, output_tokens=2),
            "dataclass": _Point(1, 2.5),
            "bytes": b"ok\xff",
            "keys": {1: "one", _Color.RED: "red"},
            "surrogate": "a\udcff",
        }
    )
    assert normalised == {
        "nan": "NaN",
        "inf": "-Infinity",
        "big": str(2**64),
        "tuple": [1, 2],
        "set": ["a", "b"],
        "enum": "red",
        "path": "/workspace/a.py",
        "model": {"input_tokens": 1, "output_tokens": 2},
        "dataclass": {"x": 1, "y": 2.5},
        "bytes": "ok\ufffd",
        "keys": {"1": "one", "red": "red"},
        "surrogate": "a\ufffd",
    }
    canonical_json(normalised)  # the point of normalising: it now always hashes


def test_to_json_value_names_the_path_of_an_unsupported_value() -> None:
    with pytest.raises(TraceError, match=r"type object at \$\.messages\[1\]\.content"):
        to_json_value({"messages": [{"content": "a"}, {"content": object()}]})


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if choice == 3:
        # Floats of every shape: integral, tiny, huge, ordinary fractions, negative zero.
        return rng.choice(
            [
                rng.uniform(-1, 1),
                float(rng.randint(-1000, 1000)),
                rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30),
                -0.0,
                round(rng.uniform(0, 100), 3),
            ]
        )
    if choice in (4, 5):
        alphabet = 'ab"\\\n\t\x00\x1f\x7f/é€😀\u2028<>&'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(8)))
    if choice == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["a", "b", "B", "\u00e9", "\u20ac", "\U0001f600", "\ufb33", "\r", "10", "9", ""]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_recorder_fast_path_hashes_exactly_like_the_rfc8785_library() -> None:
    # The recorder hashes "plain" data with the C JSON encoder; this pins it to the library on varied data.
    rng = random.Random(8785)
    plain_seen = {True: 0, False: 0}
    for _ in range(3000):
        data, plain = normalise_json_value({"value": _random_value(rng)}, None)
        plain_seen[plain] += 1
        node = rng.choice([None, "code", "nœud"])
        fields = _event_fields(data, node=node, parent=rng.choice([None, 0, 2]))
        digest, line = encode_event(
            run_id=fields["run_id"],
            seq=fields["seq"],
            event_type=fields["type"],
            ts=fields["ts"],
            node=fields["node"],
            parent=fields["parent"],
            data=fields["data"],
            prev_hash=fields["prev_hash"],
            plain=plain,
        )
        assert digest == event_hash(fields)
        stored = json.loads(line)
        assert stored.pop("hash") == digest
        assert event_hash(stored) == digest  # the library's hash of the line
        stored["hash"] = digest
        assert stored_event_hash(stored) == digest  # what load_trace recomputes from the line
    assert plain_seen[True] > 100
    assert plain_seen[False] > 100


def test_request_hash_is_the_sha256_of_the_requests_rfc8785_form_on_its_fast_path_too() -> None:
    # Replays match recorded responses by this hash: the C encoder's fast path must give the library's bytes.
    rng = random.Random(4242)
    for _ in range(2000):
        messages, _ = normalise_json_value([{"role": "user", "content": _random_value(rng)}], None)
        settings = rng.choice([{}, {"temperature": 0.7, "max_tokens": 200}, {"temperature": 1.0}, {"seed": 2**60}])
        tools = rng.choice([[], [{"name": "échec", "parameters": {"type": "object"}}]])
        content = {"model": "scripted:x", "messages": messages, "tools": tools, "settings": settings}
        expected = sha256_hex(canonical_json(normalise_json_value(content, None)[0]))
        assert request_hash("scripted:x", messages, tools, normalise_json_value(settings, None)[0]) == expected
    # Settings as a workflow gives them, not normalised: an integral float (which RFC 8785 writes as an integer)
    # and an exponent form hash as the library encodes them.
    for settings in ({"timeout_s": 120.0, "seed": 7}, {"temperature": 1e-7, "timeout_s": 120.0}, {"top_p": 0.5}):
        content = {"model": "m", "messages": [{"role": "user", "content": "1.0 e5"}], "tools": [], "settings": settings}
        assert request_hash("m", content["messages"], [], settings) == sha256_hex(canonical_json(content))


def test_the_fast_encoder_vouches_only_for_rfc8785_bytes_whatever_the_strings_look_like() -> None:
    # encode_if_plain looks for risky numbers only where a number can start (after ":", "," or "["): strings that
    # look like numbers (digests, versions, "x:1.0") must never hide a real one, nor pass a wrong encoding.
    rng = random.Random(353)
    numbers: list[Any] = [1.0, -3.0, 100.0, 1e-05, 2.5e16, 2**53 + 1, 0.1234567890123456, 0.25, 7, -0.0, 1e21]
    texts = ["4e4", "0.1.0", "x:1.0", "a,2e5", "[3.0]", "e3581d5c40297120fe807b0620b9b4ab", "123456789012345678"]
    vouched = refused = 0
    for _ in range(3000):
        value = {
            rng.choice(["a", "b", "c"]): rng.choice(
                [rng.choice(numbers), rng.choice(texts), [rng.choice(numbers), rng.choice(texts)], _random_value(rng)]
            )
            for _ in range(rng.randrange(1, 4))
        }
        encoded = encode_if_plain(value, 1 << 20)
        if encoded is None:
            refused += 1
            continue
        vouched += 1
        assert encoded.encode("utf-8") == canonical_json(normalise_json_value(value, None)[0]), value
    assert vouched > 500 and refused > 500
    assert encode_if_plain({"hash": "e3581d5c40297120fe807b0620b9b4ab", "version": "0.1.0"}, 1 << 20) is not None
    assert encode_if_plain({"value": 1.0}, 1 << 20) is None
    assert encode_if_plain({"values": [0.5, 2.0]}, 1 << 20) is None


def test_plain_flag_is_cleared_by_floats_and_keys_the_fast_encoder_would_get_wrong() -> None:
    assert normalise_json_value({"a": 0.25, "b": [1, "x"], "é": None}, None)[1] is True
    assert normalise_json_value({"a": 1.0}, None) == ({"a": 1}, True)  # recorded as 1, which RFC 8785 writes anyway
    assert normalise_json_value({"a": 1e-7}, None)[1] is False  # exponent forms differ
    assert normalise_json_value({"😀": 1}, None)[1] is False  # sorted differently in UTF-16


def test_stored_event_hash_takes_the_library_path_for_lines_the_recorder_never_writes() -> None:
    fields = _event_fields({"text": "héllo", "n": 3}, node="code", parent=1)
    digest = event_hash(fields)
    assert stored_event_hash({**fields, "hash": digest}) == digest
    # A value of another type where the fast path expects an int: the library hashes it, and it no longer matches.
    assert stored_event_hash({**fields, "parent": "1", "hash": digest}) != digest
    assert stored_event_hash({**fields, "node": 7, "hash": digest}) != digest
    # A field missing or extra: no hash from the line (load_trace hashes the event as the model read it).
    assert stored_event_hash(fields) is None
    assert stored_event_hash({**fields, "hash": digest, "extra": 1}) is None
