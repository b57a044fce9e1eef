"""AMQP basic properties and field tables, decoded.

Celery's task messages carry a large ``application_headers`` table and a fresh
correlation id, so their property lists never repeat and are decoded one by one; this
decoder gives the driver's values and types (``amqp.serialization``) in a fraction of its
time.  The driver's rules it keeps: a long string (``S``) or table key that is not UTF-8
stays ``bytes``, ``x`` is ``bytes``, ``s`` is RabbitMQ's signed 16-bit integer, ``T`` is a
naive UTC :class:`~datetime.datetime`, ``D`` a :class:`~decimal.Decimal`.  Unlike the
driver it refuses a truncated list or table (the driver would return a string cut
short) with :class:`amqp.exceptions.FrameSyntaxError`.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from amqp.exceptions import FrameSyntaxError

__all__ = ["decode_basic_properties"]

_U8 = struct.Struct(">B").unpack_from
_I8 = struct.Struct(">b").unpack_from
_U16 = struct.Struct(">H").unpack_from
_I16 = struct.Struct(">h").unpack_from
_U32 = struct.Struct(">I").unpack_from
_I32 = struct.Struct(">i").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_I64 = struct.Struct(">q").unpack_from
_F32 = struct.Struct(">f").unpack_from
_F64 = struct.Struct(">d").unpack_from
_DECIMAL = struct.Struct(">Bi").unpack_from
_UTC = timezone.utc

#: the short string properties after the headers, in wire order
_SHORT_STRINGS_1 = ((0x0400, "correlation_id"), (0x0200, "reply_to"), (0x0100, "expiration"), (0x0080, "message_id"))
_SHORT_STRINGS_2 = ((0x0020, "type"), (0x0010, "user_id"), (0x0008, "app_id"), (0x0004, "cluster_id"))

# field type octets
_S, _I, _t, _V, _F, _A, _L, _l = b"SItVFALl"
_d, _b, _B, _U, _u, _i, _f, _D, _s, _x, _TS = b"dbBUuifDsxT"


#: table keys decoded before: a producer sends the same few header names in every message
_KEYS: dict[bytes, str | bytes] = {}


def _truncated(what: str, offset: int, size: int) -> FrameSyntaxError:
    return FrameSyntaxError(f"AMQP content header truncated: {what} at byte {offset} runs past the end ({size} bytes)")


def _text(buf: bytes, start: int, end: int) -> str | bytes:
    raw = buf[start:end]
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw  # like the driver: a string that is not text stays bytes


def _table(buf: bytes, offset: int, size: int) -> tuple[dict[Any, Any], int]:
    """The table whose 4-byte length is at ``offset``, and the offset after it."""
    if offset + 4 > size:
        raise _truncated("table length", offset, size)
    (length,) = _U32(buf, offset)
    offset += 4
    limit = offset + length
    if limit > size:
        raise _truncated("table", offset - 4, size)
    table: dict[Any, Any] = {}
    while offset < limit:
        end = offset + 1 + buf[offset]
        if end >= limit:
            raise _truncated("table item", offset, limit)
        key = buf[offset + 1 : end]
        name: Any = _KEYS.get(key)
        if name is None:
            try:
                name = key.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                name = key
            if len(_KEYS) >= 4096:
                _KEYS.clear()
            _KEYS[key] = name
        # this loop runs for every header of every message: the usual kinds inline
        kind = buf[end]
        if kind == _S:
            offset = end + 5
            if offset > limit:
                raise _truncated("string length", end, limit)
            end = offset + _U32(buf, end + 1)[0]
            if end > limit:
                raise _truncated("string", offset - 4, limit)
            raw = buf[offset:end]
            try:
                table[name] = raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                table[name] = raw  # like the driver: a string that is not text stays bytes
            offset = end
        elif kind == _V:
            table[name] = None
            offset = end + 1
        else:
            table[name], offset = _item(buf, end, limit)
    return table, offset


def _item(buf: bytes, offset: int, limit: int) -> tuple[Any, int]:
    """The field value (type octet and value) at ``offset``, within ``limit``."""
    if offset >= limit:
        raise _truncated("field type", offset, limit)
    kind = buf[offset]
    offset += 1
    # the most common kinds first: Celery's headers are strings, ints, nulls and tables
    if kind == _S or kind == _x:
        if offset + 4 > limit:
            raise _truncated("string length", offset, limit)
        end = offset + 4 + _U32(buf, offset)[0]
        if end > limit:
            raise _truncated("string", offset, limit)
        if kind == _x:
            return buf[offset + 4 : end], end
        return _text(buf, offset + 4, end), end
    if kind == _V:
        return None, offset
    if kind == _F:
        return _table(buf, offset, limit)
    if kind == _A:
        if offset + 4 > limit:
            raise _truncated("array length", offset, limit)
        end = offset + 4 + _U32(buf, offset)[0]
        if end > limit:
            raise _truncated("array", offset, limit)
        offset += 4
        values = []
        while offset < end:
            value, offset = _item(buf, offset, end)
            values.append(value)
        return values, offset
    fixed = _FIXED.get(kind)
    if fixed is None:
        raise FrameSyntaxError(f"unknown field type {chr(kind)!r} at byte {offset - 1} of an AMQP field table")
    width, unpack, convert = fixed
    if offset + width > limit:
        raise _truncated(f"{chr(kind)!r} field", offset - 1, limit)
    (value,) = unpack(buf, offset)
    return (convert(value) if convert is not None else value), offset + width


def _decimal(parts: tuple[int, int]) -> Decimal:
    places, value = parts
    return Decimal(value) / Decimal(10**places)


def _timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=_UTC).replace(tzinfo=None)


_DECIMAL_UNPACK = lambda buf, offset: (_DECIMAL(buf, offset),)  # noqa: E731

#: fixed-width kinds: (width, unpack, conversion), as the driver reads them
_FIXED: dict[int, tuple[int, Any, Any]] = {
    _I: (4, _I32, None),
    _t: (1, _U8, bool),
    _l: (8, _I64, None),
    _L: (8, _I64, None),
    _d: (8, _F64, None),
    _b: (1, _I8, None),
    _B: (1, _U8, None),
    _U: (2, _I16, None),
    _u: (2, _U16, None),
    _s: (2, _I16, None),
    _i: (4, _U32, None),
    _f: (4, _F32, None),
    _D: (5, _DECIMAL_UNPACK, _decimal),
    _TS: (8, _U64, _timestamp),
}


def _short_string(buf: bytes, offset: int, size: int, name: str) -> tuple[str, int]:
    if offset >= size:
        raise _truncated(f"{name} length", offset, size)
    end = offset + 1 + buf[offset]
    if end > size:
        raise _truncated(name, offset, size)
    return buf[offset + 1 : end].decode("utf-8", "surrogatepass"), end


def decode_basic_properties(buf: bytes, offset: int) -> dict[str, Any]:
    """The ``basic`` properties of a content header payload, from its flags at ``offset``.

    Raises :class:`amqp.exceptions.FrameSyntaxError` when the list is cut short or holds
    a field of an unknown type.
    """
    size = len(buf)
    if offset + 2 > size:
        raise _truncated("property flags", offset, size)
    flags = buf[offset] << 8 | buf[offset + 1]
    offset += 2
    properties: dict[str, Any] = {}
    if flags & 0x8000:
        properties["content_type"], offset = _short_string(buf, offset, size, "content_type")
    if flags & 0x4000:
        properties["content_encoding"], offset = _short_string(buf, offset, size, "content_encoding")
    if flags & 0x2000:
        properties["application_headers"], offset = _table(buf, offset, size)
    if flags & 0x1000:
        if offset >= size:
            raise _truncated("delivery_mode", offset, size)
        properties["delivery_mode"] = buf[offset]
        offset += 1
    if flags & 0x0800:
        if offset >= size:
            raise _truncated("priority", offset, size)
        properties["priority"] = buf[offset]
        offset += 1
    for bit, name in _SHORT_STRINGS_1:
        if flags & bit:
            properties[name], offset = _short_string(buf, offset, size, name)
    if flags & 0x0040:
        if offset + 8 > size:
            raise _truncated("timestamp", offset, size)
        (properties["timestamp"],) = _U64(buf, offset)
        offset += 8
    for bit, name in _SHORT_STRINGS_2:
        if flags & bit:
            properties[name], offset = _short_string(buf, offset, size, name)
    return properties
