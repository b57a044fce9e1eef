"""What a broken or malicious producer can put in a queue, as hypothesis strategies, and the
fixed nasty cases every transport is tried with first."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "EXPLICIT_AMQP",
    "EXPLICIT_RAW",
    "garbage",
    "producer_arguments",
    "raw_amqp_messages",
    "raw_envelopes",
    "raw_texts",
]

#: any JSON value, nested a little
garbage: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)

_COMPRESSIONS = ["application/x-gzip", "application/x-bz2", "application/x-lzma", "application/zstd", "zlib"]
_GOOD_JSON = b'{"hostile": true}'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


#: bodies as they sit in a virtual transport's envelope (base64 text, usually)
envelope_bodies = st.one_of(
    st.just(_b64(_GOOD_JSON)),
    st.binary(max_size=64).map(_b64),  # often not UTF-8, not JSON
    st.text(max_size=40),  # mostly not base64
    st.just(_b64(_GOOD_JSON)[:-3]),  # truncated base64
    st.just(_b64(zlib.compress(_GOOD_JSON))),
    st.just(_b64(zlib.compress(_GOOD_JSON)[:-4])),  # truncated compressed data
    st.integers(1, 3).map(lambda n: _b64(b"[" * 20_000 * n)),  # deeply nested JSON
    st.just(_b64(b"x" * 300_000)),  # oversized for a header-sized expectation, fine for a body
    garbage,
)
content_types = st.one_of(
    st.sampled_from(["application/json", "application/data", "text/plain", "application/x-yaml"]),
    st.text(max_size=30),
    garbage,
)
content_encodings = st.one_of(st.sampled_from(["utf-8", "binary", "rot13", "no-such-codec", "latin-1"]), garbage)
compression_headers = st.one_of(st.sampled_from(_COMPRESSIONS), st.text(max_size=20), garbage)
header_values = st.one_of(
    st.dictionaries(st.text(max_size=8), garbage, max_size=3),
    st.builds(
        lambda extra, c: {**extra, "compression": c},
        st.dictionaries(st.text(max_size=8), garbage, max_size=2),
        compression_headers,
    ),
    garbage,
)
delivery_infos = st.one_of(
    st.fixed_dictionaries({}, optional={"exchange": garbage, "routing_key": garbage, "redelivered": garbage}),
    garbage,
)


def _properties(any_type: bool) -> st.SearchStrategy[Any]:
    mapping = st.fixed_dictionaries(
        {},
        optional={
            "body_encoding": st.one_of(st.just("base64"), st.none(), garbage),
            "delivery_info": delivery_infos,
            "delivery_tag": garbage,
            "priority": garbage,
            "delivery_mode": garbage,
            "correlation_id": garbage,
            "reply_to": garbage,
        },
    )
    return st.one_of(mapping, garbage) if any_type else mapping


def raw_envelopes(any_properties: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Kombu-style envelopes (the JSON the virtual transports keep) with hostile fields.

    ``any_properties=False`` keeps ``properties`` a mapping (its contents still hostile),
    for stores whose own API takes envelopes rather than raw bytes.
    """
    return st.fixed_dictionaries(
        {"properties": _properties(any_properties)},
        optional={
            "body": envelope_bodies,
            "content-type": content_types,
            "content-encoding": content_encodings,
            "headers": header_values,
        },
    )


def raw_texts(any_properties: bool = True) -> st.SearchStrategy[str]:
    """What another program may write where an envelope is expected: mostly envelopes,
    sometimes any JSON value or no JSON at all."""
    return st.one_of(
        raw_envelopes(any_properties).map(json.dumps),
        raw_envelopes(any_properties).map(lambda env: json.dumps(env)[: max(1, len(json.dumps(env)) // 2)]),
        garbage.map(json.dumps),
        st.text(max_size=60),
    )


#: AMQP application headers: any table value the protocol carries
_amqp_header_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**31), 2**31 - 1)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def raw_amqp_messages() -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments of ``amqp.Message``: a body and odd (but well-typed) AMQP properties."""
    return st.fixed_dictionaries(
        {
            "body": st.one_of(
                st.just(_GOOD_JSON),
                st.binary(max_size=64),
                st.just(zlib.compress(_GOOD_JSON)),
                st.just(zlib.compress(_GOOD_JSON)[:-4]),
                st.just(b"[" * 20_000),
            ),
        },
        optional={
            "content_type": st.one_of(st.sampled_from(["application/json", "application/data"]), st.text(max_size=30)),
            "content_encoding": st.one_of(
                st.sampled_from(["utf-8", "binary", "rot13", "no-such-codec"]), st.text(max_size=12)
            ),
            "application_headers": st.one_of(
                st.dictionaries(st.text(max_size=8), _amqp_header_values, max_size=3),
                st.builds(lambda c: {"compression": c}, st.one_of(st.sampled_from(_COMPRESSIONS), _amqp_header_values)),
            ),
            "correlation_id": st.text(max_size=20),
            "priority": st.integers(0, 255),
            "delivery_mode": st.sampled_from([1, 2]),
            "message_id": st.text(max_size=20),
            "type": st.text(max_size=20),
        },
    )


def producer_arguments() -> st.SearchStrategy[dict[str, Any]]:
    """``Producer.publish`` keyword arguments with wrong types in every field."""
    anything = st.one_of(garbage, st.builds(object), st.sets(st.integers(), max_size=2), st.binary(max_size=8))
    return st.fixed_dictionaries(
        {"body": st.one_of(garbage, st.binary(max_size=32), st.builds(object))},
        optional={
            "headers": st.one_of(st.dictionaries(st.text(max_size=6), anything, max_size=3), anything),
            "content_type": st.one_of(st.sampled_from(["application/json", "application/data"]), anything),
            "content_encoding": st.one_of(st.sampled_from(["utf-8", "binary", "rot13"]), anything),
            "compression": st.one_of(st.sampled_from(["zlib", "bzip2", "no-such"]), anything),
            "serializer": st.one_of(st.sampled_from(["json", "raw", "no-such"]), anything),
            "priority": st.one_of(st.integers(-5, 300), anything),
            "correlation_id": anything,
            "message_id": anything,
        },
    )


#: raw texts every transport is tried with before the generated ones
EXPLICIT_RAW = (
    "",
    "null",
    "[]",
    '"just a string"',
    "{not json",
    '{"properties": 5}',
    '{"body": "e30=", "content-type": "application/json", "headers": [1], "properties": {}}',
    '{"body": "e30=", "content-type": "application/json", "headers": {}, "properties": "x"}',
    '{"body": "e30=", "content-type": 7, "content-encoding": [1], "headers": {"compression": {}}, '
    '"properties": {"body_encoding": "base64", "delivery_info": [1]}}',
    '{"body": "abcde", "content-type": "application/json", "headers": {}, "properties": {"body_encoding": "base64"}}',
)
#: amqp.Message keyword arguments every AMQP broker is tried with before the generated ones
EXPLICIT_AMQP = (
    {"body": b"", "content_encoding": "rot13"},
    {"body": b"", "content_encoding": "no-such-codec", "content_type": "text/plain"},
    {"body": b"{}", "application_headers": {"compression": 5}},
    {"body": b"{}", "application_headers": {"compression": {"nested": [1, b"x"]}}},
    {"body": b"\xff\xfe", "content_type": "application/json", "content_encoding": "utf-8"},
    {
        "body": zlib.compress(_GOOD_JSON)[:-4],
        "content_type": "application/json",
        "application_headers": {"compression": "application/x-gzip"},
    },
)
