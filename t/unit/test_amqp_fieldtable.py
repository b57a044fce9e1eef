"""The basic-properties decoder gives what the driver's decoder gives, value for value and
type for type, and refuses a property list cut short at any byte with a clear error."""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from amqp.exceptions import FrameSyntaxError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kombu_like.transport.amqp import compat
from kombu_like.transport.amqp.fieldtable import decode_basic_properties
from kombu_like.transport.amqp.framing import decode_properties, encode_properties

PREFIX = b"\x00" * 12  # the content header's class, weight and body size


def typed(value: Any) -> Any:
    """``value`` with the type of every part spelled out, so ``1 == True == 1.0`` differ."""
    if isinstance(value, dict):
        return ("dict", sorted(((typed(k), typed(v)) for k, v in value.items()), key=repr))
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, (float, Decimal)):
        return (type(value).__name__, repr(value))  # exact digits and exponent
    return (type(value).__name__, value)


def both(payload: bytes) -> tuple[Any, Any]:
    return typed(decode_basic_properties(payload, 12)), typed(compat.decode_properties(payload, 12))


# -- values the driver encodes (py-amqp's encoder writes the tables) ------------------------
encodable = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=30),
        st.binary(max_size=30),
        st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-2000000, max_value=2000000),
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)).map(
            lambda d: d.replace(microsecond=0)
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": st.text(max_size=40),
        "content_encoding": st.text(max_size=10),
        "application_headers": st.dictionaries(st.text(min_size=1, max_size=20), encodable, max_size=8),
        "delivery_mode": st.integers(0, 255),
        "priority": st.integers(0, 255),
        "correlation_id": st.text(max_size=40),
        "reply_to": st.text(max_size=40),
        "expiration": st.text(max_size=10),
        "message_id": st.text(max_size=40),
        "timestamp": st.integers(0, 2**64 - 1),
        "type": st.text(max_size=20),
        "user_id": st.text(max_size=20),
        "app_id": st.text(max_size=20),
        "cluster_id": st.text(max_size=20),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(props=properties)
def test_encoded_properties_decode_exactly_as_the_driver_decodes_them(props: dict[str, Any]) -> None:
    payload = PREFIX + encode_properties(props)
    ours, drivers = both(payload)
    assert ours == drivers
    # through the transport's entry point too (which keeps repeated lists decoded)
    assert typed(decode_properties(payload, 12)) == drivers
    assert typed(decode_properties(payload, 12)) == drivers


# -- every field kind on the wire, including those the driver never writes -----------------
def packed(kind: bytes, fmt: str, values: Any) -> Any:
    return values.map(lambda v: kind + struct.pack(fmt, v))


def longstr(kind: bytes) -> Any:
    # any bytes: a long string that is not UTF-8 stays bytes
    return st.one_of(st.binary(max_size=20), st.text(max_size=10).map(str.encode)).map(
        lambda b: kind + struct.pack(">I", len(b)) + b
    )


wire_leaf = st.one_of(
    longstr(b"S"),
    longstr(b"x"),
    st.just(b"V"),
    packed(b"t", ">B", st.integers(0, 255)),
    packed(b"b", ">b", st.integers(-128, 127)),
    packed(b"B", ">B", st.integers(0, 255)),
    packed(b"U", ">h", st.integers(-(2**15), 2**15 - 1)),
    packed(b"s", ">h", st.integers(-(2**15), 2**15 - 1)),
    packed(b"u", ">H", st.integers(0, 2**16 - 1)),
    packed(b"I", ">i", st.integers(-(2**31), 2**31 - 1)),
    packed(b"i", ">I", st.integers(0, 2**32 - 1)),
    packed(b"l", ">q", st.integers(-(2**63), 2**63 - 1)),
    packed(b"L", ">q", st.integers(-(2**63), 2**63 - 1)),
    packed(b"f", ">f", st.floats(width=32, allow_nan=False)),
    packed(b"d", ">d", st.floats(allow_nan=False)),
    packed(b"T", ">Q", st.integers(0, 253402300799)),
    st.tuples(st.integers(0, 30), st.integers(-(2**31), 2**31 - 1)).map(lambda p: b"D" + struct.pack(">Bi", *p)),
)


def table_bytes(items: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(bytes((len(key),)) + key + value for key, value in items)
    return struct.pack(">I", len(body)) + body


wire_key = st.one_of(st.binary(max_size=12), st.text(max_size=6).map(str.encode))
wire_item = st.recursive(
    wire_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda vs: b"A" + struct.pack(">I", len(b"".join(vs))) + b"".join(vs)),
        st.lists(st.tuples(wire_key, inner), max_size=4).map(lambda items: b"F" + table_bytes(items)),
    ),
    max_leaves=16,
)
wire_headers = st.lists(st.tuples(wire_key, wire_item), max_size=8).map(table_bytes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=wire_headers, correlation_id=st.text(max_size=36))
def test_every_field_kind_decodes_exactly_as_the_driver_decodes_it(headers: bytes, correlation_id: str) -> None:
    shortstr = correlation_id.encode()
    payload = PREFIX + struct.pack(">H", 0x2000 | 0x0400) + headers + bytes((len(shortstr),)) + shortstr
    ours, drivers = both(payload)
    assert ours == drivers


def test_kinds_decode_to_the_driver_types() -> None:
    headers = table_bytes(
        [
            (b"text", b"S\x00\x00\x00\x02hi"),
            (b"not-utf8", b"S\x00\x00\x00\x01\xff"),
            (b"\xff", b"x\x00\x00\x00\x01a"),
            (b"short", b"s\xff\xfe"),
            (b"when", b"T" + struct.pack(">Q", 86400)),
            (b"dec", b"D\x02\x00\x00\x01\x2c"),
            (b"flag", b"t\x02"),
            (b"none", b"V"),
            # every integer width at the top of its unsigned range: a sign mix-up shows
            (b"b", b"b\xff"),
            (b"B", b"B\xff"),
            (b"U", b"U\xff\xff"),
            (b"u", b"u\xff\xff"),
            (b"I", b"I\xff\xff\xff\xff"),
            (b"i", b"i\xff\xff\xff\xff"),
            (b"l", b"l" + b"\xff" * 8),
            (b"L", b"L" + b"\xff" * 8),
            (b"f", b"f" + struct.pack(">f", 0.5)),
            (b"d", b"d" + struct.pack(">d", -0.25)),
            (b"A", b"A\x00\x00\x00\x02VV"),
        ]
    )
    decoded = decode_basic_properties(PREFIX + b"\x20\x00" + headers, 12)["application_headers"]
    assert decoded == {
        "text": "hi",
        "not-utf8": b"\xff",
        b"\xff": b"a",
        "short": -2,
        "when": datetime(1970, 1, 2, tzinfo=timezone.utc).replace(tzinfo=None),
        "dec": Decimal("3.00"),
        "flag": True,
        "none": None,
        "b": -1,
        "B": 255,
        "U": -1,
        "u": 65535,
        "I": -1,
        "i": 2**32 - 1,
        "l": -1,
        "L": -1,
        "f": 0.5,
        "d": -0.25,
        "A": [None, None],
    }
    assert typed(decoded) == typed(compat.decode_properties(PREFIX + b"\x20\x00" + headers, 12)["application_headers"])


def test_property_list_cut_short_at_any_byte_is_a_frame_syntax_error() -> None:
    props = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "application_headers": {
            "id": "c3f1",
            "timelimit": [None, 30],
            "nested": {"when": datetime(2020, 1, 1), "ok": True, "n": 2**40, "x": 1.5, "d": Decimal("1.25")},
            "blob": b"\x00\xff",
        },
        "delivery_mode": 2,
        "priority": 0,
        "correlation_id": "c3f1",
        "timestamp": 1,
        "app_id": "app",
    }
    payload = PREFIX + encode_properties(props)
    assert decode_basic_properties(payload, 12) == compat.decode_properties(payload, 12)
    for cut in range(12, len(payload)):
        with pytest.raises(FrameSyntaxError, match="truncated"):
            decode_basic_properties(payload[:cut], 12)


def test_unknown_field_kind_is_named() -> None:
    payload = PREFIX + b"\x20\x00" + table_bytes([(b"k", b"Z\x00")])
    with pytest.raises(FrameSyntaxError, match="unknown field type 'Z'"):
        decode_basic_properties(payload, 12)
