"""JSON encoding and decoding compatible with Kombu 5's ``kombu.utils.json``.

Besides the types :mod:`json` handles natively, values of these types are written as
``{"__type__": MARKER, "__value__": VALUE}`` envelopes, exactly as Kombu 5.7 writes them,
so the two libraries can exchange them:

=================  ============  =======================================
type               marker        value
=================  ============  =======================================
``datetime``       ``datetime``  ``datetime.isoformat()``
``date``           ``date``      ``date.isoformat()``
``time``           ``time``      ``time.isoformat()``
``Decimal``        ``decimal``   ``str(value)``
``UUID``           ``uuid``      ``{"hex": value.hex}``
``bytes`` (UTF-8)  ``bytes``     the bytes decoded as UTF-8
``bytes`` (other)  ``base64``    standard base64 text
=================  ============  =======================================

Objects with a ``__json__()`` method are encoded as whatever that method returns.  More
types can be added with :func:`register_type`.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

__all__ = ["JSONEncoder", "dumps", "loads", "object_hook", "register_type", "textual_types"]

T = TypeVar("T")
EncodedT = TypeVar("EncodedT")
EncoderT = Callable[[Any], Any]
DecoderT = Callable[[Any], Any]

# Insertion order matters: the first registered type the value is an instance of wins,
# which is why datetime (a subclass of date) is registered before date.
_encoders: dict[type, tuple[str | None, EncoderT]] = {}
_decoders: dict[str, DecoderT] = {}


def _envelope(marker: str, value: Any) -> dict[str, Any]:
    return {"__type__": marker, "__value__": value}


#: classes whose instances are encoded as their ``str()`` (add to it as in Kombu);
#: Django's lazy translation strings are encoded as text whether listed or not
textual_types: tuple[type, ...] = ()


def _lazy_text_value(o: Any) -> str | None:
    if textual_types and isinstance(o, textual_types):
        return str(o)
    # Django's lazy translation strings must be sent as text; looking the class up in
    # sys.modules avoids importing Django (such objects can only exist once it is loaded).
    functional = sys.modules.get("django.utils.functional")
    promise = getattr(functional, "Promise", None)
    if promise is not None and isinstance(o, promise):
        return str(o)
    return None


class JSONEncoder(json.JSONEncoder):
    """JSON encoder that also writes the types listed in the module documentation."""

    def default(self, o: Any) -> Any:
        """Return a JSON-serializable stand-in for ``o``."""
        reducer = getattr(o, "__json__", None)
        if reducer is not None:
            return reducer()
        text = _lazy_text_value(o)
        if text is not None:
            return text
        for cls, (marker, encoder) in _encoders.items():
            if isinstance(o, cls):
                value = encoder(o)
                return value if marker is None else _envelope(marker, value)
        if isinstance(o, bytes):
            # Text-like bytes stay readable on the wire; only other bytes need base64.
            try:
                return _envelope("bytes", o.decode("utf-8"))
            except UnicodeDecodeError:
                return _envelope("base64", base64.b64encode(o).decode("ascii"))
        return super().default(o)


def dumps(
    s: Any,
    _dumps: Callable[..., str] = json.dumps,
    cls: type[json.JSONEncoder] = JSONEncoder,
    default_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> str:
    """Serialize ``s`` to a JSON string.

    ``default_kwargs`` and ``kwargs`` are passed on to ``_dumps`` (keyword arguments win).
    """
    if _dumps is json.dumps and cls is JSONEncoder and not default_kwargs and not kwargs:
        # the common case, once per published message
        return _fast_dumps(s)
    options = dict(default_kwargs or {}, **kwargs)
    return _dumps(s, cls=cls, **options)


def object_hook(o: dict[str, Any]) -> Any:
    """Turn ``__type__``/``__value__`` envelopes back into Python values.

    Raises:
        ValueError: for an envelope whose marker has no registered decoder (as Kombu does).
    """
    # runs for every decoded JSON object: test membership before building anything
    if "__type__" in o and "__value__" in o and len(o) == 2:
        marker = o["__type__"]
        decoder = _decoders.get(marker)
        if decoder is None:
            raise ValueError(f"Unsupported type {marker!r} in JSON envelope", o)
        return decoder(o["__value__"])
    return o


def loads(
    s: str | bytes | bytearray | memoryview,
    _loads: Callable[..., Any] = json.loads,
    decode_bytes: bool = True,
    object_hook: Callable[[dict[str, Any]], Any] = object_hook,
) -> Any:
    """Deserialize JSON from text, or from UTF-8 bytes, bytearray or memoryview."""
    if type(s) is bytes:  # the common case first
        if decode_bytes:
            s = s.decode("utf-8")
    elif isinstance(s, memoryview):
        s = s.tobytes().decode("utf-8")
    elif isinstance(s, bytearray):
        s = s.decode("utf-8")
    elif decode_bytes and isinstance(s, bytes):
        s = s.decode("utf-8")
    if type(s) is str and _loads is json.loads and object_hook is _default_object_hook:
        # the common case, once per consumed message
        return _loads_default(s)
    return _loads(s, object_hook=object_hook)


def _loads_default(s: Any) -> Any:
    """:func:`loads` with its default arguments, as the serializer registry calls it: the
    usual UTF-8 bytes go to the decoder without the checks for other arguments.

    Text is parsed with the decoder's ``scan_once``, skipping ``decode``'s two whitespace
    scans in the usual case (a document with no whitespace around it); anything else,
    errors included, goes the standard way.
    """
    if type(s) is bytes:  # this runs for every message consumed: no further call
        text = s.decode("utf-8")
    elif type(s) is str:
        text = s
    else:
        return loads(s)
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return _DEFAULT_DECODER.decode(text)
    if end != len(text):
        return _DEFAULT_DECODER.decode(text)
    return value


def _identity(value: Any) -> Any:
    return value


def register_type(
    t: type[T],
    marker: str | None,
    encoder: Callable[[T], EncodedT],
    decoder: Callable[[EncodedT], T] = _identity,
) -> None:
    """Teach the encoder (and decoder) a Python type.

    Instances of ``t`` are written as ``{"__type__": marker, "__value__": encoder(obj)}``
    and read back with ``decoder(value)``.  With ``marker=None`` the encoder's result is
    written as is, without an envelope, and decoding it is left to the application.
    """
    _encoders[t] = (marker, encoder)
    if marker is not None:
        _decoders[marker] = decoder


def _decode_bytes(value: str) -> bytes:
    return value.encode("utf-8")


def _decode_base64(value: str) -> bytes:
    return base64.b64decode(value.encode("ascii"))


def _encode_isoformat(value: date | time) -> str:
    return value.isoformat()


def _decode_date(value: str) -> date:
    # Kombu parses dates through datetime, which also accepts a full timestamp.
    return datetime.fromisoformat(value).date()


def _encode_uuid(value: uuid.UUID) -> dict[str, str]:
    return {"hex": value.hex}


def _decode_uuid(value: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(**value)


def _register_default_types() -> None:
    _decoders["bytes"] = _decode_bytes
    _decoders["base64"] = _decode_base64
    register_type(datetime, "datetime", datetime.isoformat, datetime.fromisoformat)
    register_type(date, "date", _encode_isoformat, _decode_date)
    register_type(time, "time", _encode_isoformat, time.fromisoformat)
    register_type(Decimal, "decimal", str, Decimal)
    register_type(uuid.UUID, "uuid", _encode_uuid, _decode_uuid)


_register_default_types()
_default_object_hook = object_hook
_DEFAULT_ENCODER = JSONEncoder()
_DEFAULT_DECODER = json.JSONDecoder(object_hook=object_hook)


def _make_fast_dumps() -> Callable[[Any], str]:
    """``_DEFAULT_ENCODER.encode`` with its C encoder built once instead of per call.

    The output is the same.  The C encoder is built without a circular-reference
    memo (a shared memo would be left dirty by a failed encoding), so a value that recurses
    too deep is encoded again the standard way, which names a cycle as such.
    """
    try:
        from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - interpreters without the C accelerator
        c_make_encoder = None
    if c_make_encoder is None:  # pragma: no cover
        return _DEFAULT_ENCODER.encode
    encode = c_make_encoder(
        None, _DEFAULT_ENCODER.default, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    join = "".join

    def fast_dumps(value: Any) -> str:
        try:
            return join(encode(value, 0))
        except RecursionError:
            return _DEFAULT_ENCODER.encode(value)

    return fast_dumps


_fast_dumps = _make_fast_dumps()
_scan_once = _DEFAULT_DECODER.scan_once  # type: ignore[attr-defined]
