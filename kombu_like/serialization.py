"""Serializer registry: turn message bodies into bytes/text and back.

Built-in serializers (names, content types and encodings as in Kombu 5, so messages
interoperate on the wire):

============  ==================================  ================
name          content type                        content encoding
============  ==================================  ================
``json``      ``application/json``                ``utf-8``
``yaml``      ``application/x-yaml``              ``utf-8``
``msgpack``   ``application/x-msgpack``           ``binary``
``pickle``    ``application/x-python-serialize``  ``binary``
============  ==================================  ================

``json`` is the default.  As in Kombu, every built-in except ``json`` is *disabled* for
decoding until :func:`enable_insecure_serializers` is called or a consumer lists it in
``accept``.  ``yaml`` and ``msgpack`` import their packages only when first used; a
missing package raises :class:`~kombu_like.exceptions.SerializerNotInstalled` naming the
extra to install.

Third-party serializers are found through the ``kombu_like.serializers`` entry-point
group.  Each entry point loads to the arguments of :func:`register` after the name, either
a sequence ``(encoder, decoder, content_type[, content_encoding])`` or a mapping of those
keywords; the entry point's name is the serializer name.  They are loaded when a name
(or, while decoding, a content type) that nothing registered yet is asked for.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import os
import pickle
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from importlib.metadata import entry_points
from io import BytesIO
from typing import Any, NamedTuple, overload

from .exceptions import ContentDisallowed, DecodeError, EncodeError, SerializerNotInstalled, _wrap_errors
from .utils import json as _json

__all__ = [
    "SKIP_DECODE",
    "TRUSTED_CONTENT",
    "SerializerRegistry",
    "check_accept",
    "codec",
    "disable_insecure_serializers",
    "dumps",
    "enable_insecure_serializers",
    "loads",
    "pickle",
    "pickle_protocol",
    "prepare_accept_content",
    "raw_encode",
    "register",
    "registry",
    "unregister",
]

logger = logging.getLogger(__name__)

#: Content encodings whose payload is left as bytes when no decoder is registered.
SKIP_DECODE = frozenset({"binary", "ascii-8bit"})
_UTF8 = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})
#: text encodings whose decoding takes time quadratic in the input (idna through
#: punycode): a message declaring one could hold a consumer for minutes
_SLOW_TEXT_ENCODINGS = frozenset({"punycode", "idna"})

#: Content types that pass any ``accept`` list: they are raw bytes/text, never parsed.
TRUSTED_CONTENT = frozenset({"application/data", "application/text"})

#: Entry-point group searched for third-party serializers.
ENTRY_POINT_GROUP = "kombu_like.serializers"

#: Pickle protocol used by the ``pickle`` serializer (``PICKLE_PROTOCOL`` overrides it).
#: Protocol 4 is what Kombu 5 writes, so older consumers can read the messages.
pickle_protocol: int = int(os.environ.get("PICKLE_PROTOCOL", 4))

EncoderT = Callable[[Any], Any]
DecoderT = Callable[[Any], Any]


class codec(NamedTuple):  # noqa: N801 - Kombu's public name
    """How one serializer encodes: its content type, content encoding and function."""

    content_type: str
    content_encoding: str
    encoder: EncoderT


class _UnknownSerializer(SerializerNotInstalled, KeyError):
    """No serializer by this name; also a KeyError, which is what Kombu raises there."""

    def __str__(self) -> str:
        # KeyError would quote the message like a dictionary key.
        return str(self.args[0]) if self.args else ""


def parenthesize_alias(first: str | None, second: str) -> str:
    """Return ``"first (second)"``, or just ``second`` when ``first`` is empty."""
    return f"{first} ({second})" if first else second


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _decode_text(data: Any, encoding: str) -> str:
    """``data`` decoded as text in ``encoding``, a message's ``content_encoding``.

    Only text encodings (``bytes.decode``): ``codecs.decode`` would also run bytes-to-bytes
    codecs such as ``zlib_codec`` or ``bz2_codec``, decompressing a body without the
    consumer's size limit.  Encodings slow enough to be an attack are refused.
    """
    name = codecs.lookup(encoding).name
    if name in _SLOW_TEXT_ENCODINGS:
        raise ValueError(f"content encoding {encoding!r} is refused: decoding it takes time quadratic in the body")
    return bytes(data).decode(name)


class SerializerRegistry:
    """The set of known serializers, by name and by content type."""

    def __init__(self) -> None:
        self._encoders: dict[str, codec] = {}
        self._decoders: dict[str, DecoderT] = {}
        self._default_serializer: str | None = None
        self._disabled_content_types: set[str] = set()
        self._plugins_tried: set[str] = set()
        self._plugins_scanned = False
        self._plugin_lock = threading.RLock()
        #: Content type -> serializer name.
        self.type_to_name: dict[str, str] = {}
        #: Serializer name -> content type.
        self.name_to_type: dict[str, str] = {}

    # -- registration -----------------------------------------------------------------
    def register(
        self,
        name: str,
        encoder: EncoderT | None,
        decoder: DecoderT | None,
        content_type: str,
        content_encoding: str = "utf-8",
    ) -> None:
        """Register a serializer.

        Arguments:
            name: the serializer's short name (``serializer=`` in :meth:`dumps`).
            encoder: turns a Python value into ``str`` or ``bytes``; ``None`` registers a
                decoder only.
            decoder: turns a payload back into a Python value; ``None`` registers an
                encoder only.
            content_type: the MIME type written in the message properties.
            content_encoding: the character set of the encoded payload, usually
                ``utf-8``, or ``binary`` for bytes that are not text.
        """
        if encoder:
            self._encoders[name] = codec(content_type, content_encoding, encoder)
        if decoder:
            self._decoders[content_type] = decoder
        self.type_to_name[content_type] = name
        self.name_to_type[name] = content_type

    def unregister(self, name: str) -> None:
        """Remove the serializer called ``name``.

        Raises:
            SerializerNotInstalled: no serializer has that name.
        """
        self._load_plugin(name)
        try:
            content_type = self.name_to_type.pop(name)
        except KeyError:
            raise SerializerNotInstalled(f"No encoder/decoder installed for {name}") from None
        self._decoders.pop(content_type, None)
        self._encoders.pop(name, None)
        self.type_to_name.pop(content_type, None)

    def _content_type_of(self, name: str) -> str:
        if "/" in name:
            return name
        if name not in self.name_to_type:
            self._load_plugin(name)
        try:
            return self.name_to_type[name]
        except KeyError:
            raise _UnknownSerializer(f"No encoder/decoder installed for {name}") from None

    def enable(self, name: str) -> None:
        """Accept content of serializer ``name`` (or a content type) for decoding.

        Raises:
            SerializerNotInstalled: (also a ``KeyError``, as in Kombu) for an unknown name.
        """
        self._disabled_content_types.discard(self._content_type_of(name))

    def disable(self, name: str) -> None:
        """Refuse content of serializer ``name`` (or a content type) unless ``accept`` allows it.

        Raises:
            SerializerNotInstalled: (also a ``KeyError``, as in Kombu) for an unknown name.
        """
        self._disabled_content_types.add(self._content_type_of(name))

    def is_disabled(self, name: str) -> bool:
        """Tell whether serializer ``name`` (or a content type) is disabled for decoding."""
        return self._content_type_of(name) in self._disabled_content_types

    @property
    def default_serializer(self) -> str | None:
        """Name of the serializer :meth:`dumps` uses when none is given."""
        return self._default_serializer

    @default_serializer.setter
    def default_serializer(self, name: str) -> None:
        self._set_default_serializer(name)

    def _set_default_serializer(self, name: str) -> None:
        """Make ``name`` the default serializer (Kombu's spelling of the setter).

        Raises:
            SerializerNotInstalled: no encoder is registered under that name.
        """
        if name not in self._encoders:
            self._load_plugin(name)
        if name not in self._encoders:
            raise SerializerNotInstalled(f"No encoder installed for {name}")
        self._default_serializer = name

    # -- entry points -----------------------------------------------------------------
    def _register_entry_point(self, ep: Any) -> None:
        args = ep.load()
        if isinstance(args, Mapping):
            self.register(ep.name, **args)
        else:
            self.register(ep.name, *args)

    def _load_plugin(self, name: str) -> None:
        """Register the entry point called ``name``, if there is one not tried before."""
        with self._plugin_lock:
            if name in self._plugins_tried or self._plugins_scanned:
                return
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name != name:
                    continue
                self._plugins_tried.add(name)
                try:
                    self._register_entry_point(ep)
                except Exception as exc:
                    raise SerializerNotInstalled(
                        f"Could not load serializer {name!r} from entry point {ep.value!r}: {exc!r}"
                    ) from exc
                return

    def _load_all_plugins(self) -> None:
        """Register every entry point not tried yet (done once, to decode unknown types)."""
        with self._plugin_lock:
            if self._plugins_scanned:
                return
            self._plugins_scanned = True
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in self._plugins_tried:
                    continue
                self._plugins_tried.add(ep.name)
                try:
                    self._register_entry_point(ep)
                except Exception:
                    # One broken plugin must not stop messages of other types decoding.
                    logger.warning("Could not load serializer entry point %r", ep.name, exc_info=True)

    # -- encoding and decoding --------------------------------------------------------
    def dumps(self, data: Any, serializer: str | None = None) -> tuple[str, str, Any]:
        """Serialize ``data`` for a message body.

        Arguments:
            data: the value to send.
            serializer: a registered serializer name, or ``"raw"``.  Without one, ``bytes``
                are sent as they are (``application/data``, ``binary``), ``str`` as UTF-8
                text (``text/plain``), and anything else with the default serializer.

        Returns:
            ``(content_type, content_encoding, payload)``.

        Raises:
            SerializerNotInstalled: the serializer is unknown or its package is missing.
            EncodeError: the serializer could not encode ``data``.
        """
        if serializer == "raw":
            return raw_encode(data)
        if serializer:
            entry = self._encoders.get(serializer)
            if entry is not None:  # the common case: a registered serializer, named
                content_type, content_encoding, encoder = entry
                try:
                    return content_type, content_encoding, encoder(data)
                except SerializerNotInstalled:
                    raise
                except Exception as exc:
                    raise EncodeError(f"Cannot encode {type(data).__name__} with {serializer}: {exc!r}") from exc
            if serializer not in self._encoders:
                self._load_plugin(serializer)
            if serializer not in self._encoders:
                raise SerializerNotInstalled(f"No encoder installed for {serializer}")
            name = serializer
        elif isinstance(data, bytes):
            return "application/data", "binary", data
        elif isinstance(data, str):
            with _wrap_errors(EncodeError, "Cannot encode text as utf-8"):
                payload = data.encode("utf-8")
            return "text/plain", "utf-8", payload
        else:
            if self._default_serializer is None or self._default_serializer not in self._encoders:
                raise SerializerNotInstalled(f"No encoder installed for {self._default_serializer}")
            name = self._default_serializer
        content_type, content_encoding, encoder = self._encoders[name]
        # try/except rather than a context manager: this runs for every message published
        try:
            payload = encoder(data)
        except SerializerNotInstalled:
            raise
        except Exception as exc:
            raise EncodeError(f"Cannot encode {type(data).__name__} with {name}: {exc!r}") from exc
        return content_type, content_encoding, payload

    def loads(
        self,
        data: Any,
        content_type: str | bytes | None,
        content_encoding: str | bytes | None,
        accept: Iterable[str] | None = None,
        force: bool = False,
        _trusted_content: Collection[str] = TRUSTED_CONTENT,
    ) -> Any:
        """Deserialize a message body according to its content type.

        Arguments:
            data: the payload (``bytes``, ``bytearray``, ``memoryview`` or ``str``).
            content_type: its content type; none means ``application/data``.
            content_encoding: its character set; none means ``utf-8``.
            accept: content types (or serializer names) the caller accepts.  Content
                types in ``_trusted_content`` are raw data and always accepted.  Without
                ``accept``, disabled serializers are refused unless ``force`` is true.
            force: decode content of disabled serializers when ``accept`` is not given.

        A content type with no decoder is returned as the payload itself, decoded to text
        with ``content_encoding`` unless that is ``binary`` (or the payload is text).

        Raises:
            ContentDisallowed: the content type is not accepted, or is disabled.
            SerializerNotInstalled: the serializer's package is missing.
            DecodeError: the payload could not be decoded.
        """
        accept_type = type(accept)
        if (
            (accept_type is frozenset or accept_type is set)
            and type(content_type) is str
            and content_type
            and content_type in accept  # type: ignore[operator]  # a set, as just checked
        ):
            # what check_accept passes first, without its calls: a consumer's accept set
            # (of content types) that holds the message's content type
            ctype = content_type
        else:
            ctype = self.check_accept(content_type, accept, force, _trusted_content)
        if not data:
            return data
        decode = self._decoders.get(ctype)
        if decode is None and ctype not in _trusted_content and ctype not in self.type_to_name:
            self._load_all_plugins()
            decode = self._decoders.get(ctype)
        if decode is not None:
            if content_encoding is not None and content_encoding not in _UTF8 and not isinstance(data, str):
                data = self._as_declared_text(data, content_encoding, ctype)
            # try/except rather than a context manager: this runs for every message consumed
            try:
                return decode(data)
            except SerializerNotInstalled:
                raise
            except Exception as exc:
                description = parenthesize_alias(self.type_to_name.get(ctype), ctype)
                raise DecodeError(f"Cannot decode {description} content: {exc!r}") from exc
        encoding = (_text(content_encoding) if content_encoding else "utf-8").lower()
        if encoding not in SKIP_DECODE and not isinstance(data, str):
            description = parenthesize_alias(self.type_to_name.get(ctype), ctype)
            with _wrap_errors(DecodeError, f"Cannot decode {description} content as {encoding}"):
                return _decode_text(data, encoding)
        return data

    def _as_declared_text(self, data: Any, content_encoding: str | bytes, ctype: str) -> Any:
        """A text serializer's payload decoded with the character set the message declares
        (a UTF-16 or Latin-1 JSON body from another client), as py-amqp hands Kombu the
        body; left as bytes when the serializer is binary or the declaration does not fit."""
        encoding = _text(content_encoding).lower()
        if encoding in SKIP_DECODE or encoding in _UTF8:
            return data
        registered = self._encoders.get(self.type_to_name.get(ctype, ""))
        if registered is not None and registered.content_encoding in SKIP_DECODE:
            return data
        try:
            return _decode_text(data, encoding)
        except (LookupError, ValueError, TypeError):  # UnicodeError is a ValueError
            return data

    def check_accept(
        self,
        content_type: str | bytes | None,
        accept: Iterable[str] | None = None,
        force: bool = False,
        _trusted_content: Collection[str] = TRUSTED_CONTENT,
    ) -> str:
        """Check that content of ``content_type`` may be decoded, as :meth:`loads` does first.

        Returns the content type as text (``application/data`` when there is none).

        Raises:
            ContentDisallowed: the content type is not in ``accept``, or (without
                ``accept``) its serializer is disabled and ``force`` is false.
        """
        ctype = _text(content_type) if content_type else "application/data"
        if accept is not None:
            if ctype not in _trusted_content and not self._accepts(ctype, accept):
                raise self._for_untrusted_content(ctype, "untrusted")
        elif ctype in self._disabled_content_types and not force:
            raise self._for_untrusted_content(ctype, "disabled")
        return ctype

    def _accepts(self, content_type: str, accept: Iterable[str]) -> bool:
        if isinstance(accept, (set, frozenset)) and content_type in accept:
            return True
        # Serializer names are allowed besides content types, which Kombu would refuse.
        return any((item if "/" in item else self.name_to_type.get(item)) == content_type for item in accept)

    def _for_untrusted_content(self, content_type: str, why: str) -> ContentDisallowed:
        description = parenthesize_alias(self.type_to_name.get(content_type), content_type)
        return ContentDisallowed(f"Refusing to deserialize {why} content of type {description}")


def raw_encode(data: Any) -> tuple[str, str, Any]:
    """Encode ``data`` without a serializer: text as UTF-8, anything else as it is.

    Returns:
        ``("application/data", "utf-8" or "binary", payload)``.
    """
    if isinstance(data, str):
        with _wrap_errors(EncodeError, "Cannot encode text as utf-8"):
            return "application/data", "utf-8", data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        try:
            memoryview(data)  # anything else with the buffer protocol goes out as it is
        except TypeError:
            raise EncodeError(
                f"A body of type {type(data).__name__} cannot be sent as it is (raw): "
                f"give bytes or str, or name a serializer"
            ) from None
    return "application/data", "binary", data


#: The global registry used by producers and consumers.
registry = SerializerRegistry()
#: :meth:`SerializerRegistry.dumps` of the global :data:`registry`.
dumps = registry.dumps
#: :meth:`SerializerRegistry.loads` of the global :data:`registry`.
loads = registry.loads
#: :meth:`SerializerRegistry.check_accept` of the global :data:`registry`.
check_accept = registry.check_accept


def register(
    name: str,
    encoder: EncoderT | None,
    decoder: DecoderT | None,
    content_type: str,
    content_encoding: str = "utf-8",
) -> None:
    """Register a serializer in the global :data:`registry` (see :meth:`SerializerRegistry.register`)."""
    registry.register(name, encoder, decoder, content_type, content_encoding)


def unregister(name: str) -> None:
    """Remove a serializer from the global :data:`registry`.

    Raises:
        SerializerNotInstalled: no serializer has that name.
    """
    registry.unregister(name)


# -- built-in serializers -------------------------------------------------------------
def _import_optional(module: str, serializer: str, extra: str) -> Any:
    """Import ``module`` now, as an ``import`` statement would.

    ``__import__`` (not ``importlib``) so that whatever an ``import`` statement sees -- a
    replaced ``builtins.__import__`` included, as test suites use to hide a module -- is
    seen here too, as it is by Kombu's ``import yaml``/``import msgpack``.
    """
    try:
        __import__(module)
    except ImportError as exc:
        raise SerializerNotInstalled(
            f"No encoder/decoder installed for {serializer}: the {module!r} package is missing. "
            f'Install it with: pip install "kombu_like[{extra}]"'
        ) from exc
    return importlib.import_module(module)


#: optional modules the built-in serializers registered at import found on first use;
#: Kombu imports them when it registers the serializers, and keeps them from then on
_first_found: dict[str, Any] = {}


def _import_once(module: str, serializer: str, extra: str) -> Any:
    found = _first_found.get(module)
    if found is None:
        found = _first_found[module] = _import_optional(module, serializer, extra)
    return found


def _not_installed(message: str) -> Callable[..., Any]:
    def not_installed(*args: Any, **kwargs: Any) -> Any:
        raise SerializerNotInstalled(message)

    return not_installed


def pickle_loads(s: bytes | bytearray | memoryview) -> Any:
    """Unpickle ``s`` (any bytes-like object)."""
    return pickle.load(BytesIO(s))


def unpickle(s: str | bytes | bytearray | memoryview) -> Any:
    """Unpickle ``s``; text is taken as the UTF-8 encoding of the pickle, as Kombu does."""
    return pickle_loads(s.encode("utf-8") if isinstance(s, str) else s)


def pickle_dumps(obj: Any) -> bytes:
    """Pickle ``obj`` with :data:`pickle_protocol` (read at call time, so it can be changed)."""
    return pickle.dumps(obj, protocol=pickle_protocol)


def _safe_load(yaml: Any, s: str | bytes | bytearray | memoryview) -> Any:
    # safe_load treats anything but str/bytes as a stream to .read() from.
    if isinstance(s, (bytearray, memoryview)):
        s = bytes(s)
    return yaml.safe_load(s)


def yaml_dumps(obj: Any) -> str:
    """Encode ``obj`` with PyYAML's ``safe_dump`` (plain data types only)."""
    return _import_once("yaml", "yaml", "yaml").safe_dump(obj)  # type: ignore[no-any-return]


def yaml_loads(s: str | bytes | bytearray | memoryview) -> Any:
    """Decode YAML with PyYAML's ``safe_load``."""
    return _safe_load(_import_once("yaml", "yaml", "yaml"), s)


def _msgpack(module: Any) -> Any:
    if tuple(getattr(module, "version", (0,))) < (0, 4):
        raise SerializerNotInstalled('msgpack >= 0.4 is required. Install it with: pip install "kombu_like[msgpack]"')
    return module


def msgpack_dumps(obj: Any) -> bytes:
    """Encode ``obj`` with msgpack; ``bytes`` and ``str`` stay distinct on the wire."""
    return _msgpack(_import_once("msgpack", "msgpack", "msgpack")).packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def msgpack_loads(s: bytes | bytearray | memoryview) -> Any:
    """Decode msgpack, strings as ``str``."""
    return _msgpack(_import_once("msgpack", "msgpack", "msgpack")).unpackb(s, raw=False)


def register_json() -> None:
    """Register the ``json`` serializer in the global registry."""
    # kombu_like.utils.json.dumps and loads with their default arguments, without the calls
    # that check them: they skip json's per-call set-up and still handle types registered
    # later with kombu_like.utils.json.register_type
    registry.register(
        "json", _json._fast_dumps, _json._loads_default, content_type="application/json", content_encoding="utf-8"
    )


def register_yaml() -> None:
    """Register the ``yaml`` serializer with the PyYAML importable now.

    As in Kombu, this call decides whether YAML is available: without PyYAML, YAML
    content fails to decode with :class:`SerializerNotInstalled`, and the encoder
    registered before (if any) is left as it was.
    """
    try:
        yaml = _import_optional("yaml", "yaml", "yaml")
    except SerializerNotInstalled as exc:
        registry.register("yaml", None, _not_installed(str(exc)), "application/x-yaml")
        return
    registry.register(
        "yaml",
        yaml.safe_dump,
        lambda s: _safe_load(yaml, s),
        content_type="application/x-yaml",
        content_encoding="utf-8",
    )


def register_pickle() -> None:
    """Register the ``pickle`` serializer (only safe between trusted parties)."""
    registry.register(
        "pickle", pickle_dumps, unpickle, content_type="application/x-python-serialize", content_encoding="binary"
    )


def register_msgpack() -> None:
    """Register the ``msgpack`` serializer with the msgpack importable now.

    As in Kombu, this call decides whether msgpack is available: without msgpack (or with
    one older than 0.4), encoding and decoding msgpack raise
    :class:`SerializerNotInstalled` until it is registered again.
    """
    try:
        msgpack = _msgpack(_import_optional("msgpack", "msgpack", "msgpack"))
    except SerializerNotInstalled as exc:
        encode: EncoderT = _not_installed(str(exc))
        decode: DecoderT = encode
    else:
        packb, unpackb = msgpack.packb, msgpack.unpackb

        def encode(obj: Any) -> Any:
            return packb(obj, use_bin_type=True)

        def decode(s: Any) -> Any:
            return unpackb(s, raw=False)

    registry.register("msgpack", encode, decode, content_type="application/x-msgpack", content_encoding="binary")


def _register_lazily() -> None:
    # at import, yaml and msgpack are registered without importing them (import time is
    # kept small); each is imported on first use and kept, as Kombu keeps what it imported
    registry.register("yaml", yaml_dumps, yaml_loads, content_type="application/x-yaml", content_encoding="utf-8")
    registry.register(
        "msgpack", msgpack_dumps, msgpack_loads, content_type="application/x-msgpack", content_encoding="binary"
    )


# -- accepting insecure content -------------------------------------------------------
def enable_insecure_serializers(choices: Iterable[str] | None = ("pickle", "yaml", "msgpack")) -> None:
    """Accept content of serializers that are disabled by default.

    ``choices`` are serializer names or content types; unknown ones are ignored, and
    ``None`` enables nothing.
    """
    for choice in choices or ():
        try:
            registry.enable(choice)
        except KeyError:
            pass


def _disable_all_except(allowed: Iterable[str] | None) -> None:
    for content_type in list(registry._decoders):
        registry.disable(content_type)
    for name in allowed or ():
        registry.enable(name)


def disable_insecure_serializers(allowed: Iterable[str] | None = ("json",)) -> None:
    """Refuse to decode content of every serializer except those in ``allowed``.

    ``allowed`` holds serializer names or content types (``None`` allows none).
    Producers can still encode with disabled serializers, and a consumer's ``accept``
    list overrides this.

    Raises:
        SerializerNotInstalled: (also a ``KeyError``) an allowed name is unknown.
    """
    # Plugins are loaded first so that, as in Kombu, they are covered too.
    registry._load_all_plugins()
    _disable_all_except(allowed)


@overload
def prepare_accept_content(content_types: None, name_to_type: Mapping[str, str] | None = None) -> None: ...


@overload
def prepare_accept_content(content_types: Iterable[str], name_to_type: Mapping[str, str] | None = None) -> set[str]: ...


def prepare_accept_content(
    content_types: Iterable[str] | None, name_to_type: Mapping[str, str] | None = None
) -> set[str] | None:
    """Turn a list of serializer names and/or content types into a set of content types.

    ``name_to_type`` maps names to content types (the global registry's by default).
    ``None`` is returned unchanged (meaning: no accept list).

    Raises:
        SerializerNotInstalled: a name is not registered.
    """
    if content_types is None:
        return None
    mapping = name_to_type or None
    accepted: set[str] = set()
    for item in content_types:
        if "/" in item:
            accepted.add(item)
        elif mapping is not None:
            if item not in mapping:
                raise SerializerNotInstalled(f"No encoder/decoder installed for {item}")
            accepted.add(mapping[item])
        else:
            accepted.add(registry._content_type_of(item))
    return accepted


register_json()
register_pickle()
_register_lazily()
registry._set_default_serializer("json")
# Kombu disables everything but json since 3.0; entry points are not scanned at import.
_disable_all_except(("json",))
