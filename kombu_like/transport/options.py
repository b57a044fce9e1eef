"""Transport options: one dataclass per transport, checked when the connection is made.

A transport declares the ``transport_options`` keys it reads as the fields of a
:class:`TransportOptions` subclass, each with its default and a one-line description::

    @dataclass
    class ToyOptions(TransportOptions):
        transport_name: ClassVar[str] = "toy"

        polling_interval: float = option(0.1, "seconds between looks at the store")

:meth:`TransportOptions.from_transport_options` turns a connection's mapping into one:
strings from URL queries (``?polling_interval=0.5``) are converted to the field's type, a
value that cannot be is refused with a :class:`ValueError` naming the option, and a key no
transport reads is warned about (:class:`UnknownTransportOptionWarning`) with the closest
known name.  :func:`options_table` renders the fields as the reStructuredText table the
transport's documentation page shows (the ``transport-options`` directive of the docs).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, Union

__all__ = [
    "COMMON_OPTIONS",
    "KOMBU_TRANSPORT_OPTIONS",
    "TransportOptions",
    "UnknownTransportOptionWarning",
    "option",
    "options_table",
]

_O = TypeVar("_O", bound="TransportOptions")

#: keys every connection reads, whatever the transport (Kombu's retry settings for
#: ``default_channel``, and the consumer's decompression limit)
COMMON_OPTIONS = frozenset(
    {
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "connect_retries_timeout",
        "max_decompressed_size",
    }
)

#: the ``transport_options`` keys Kombu 5.7's transports read, by transport.  Celery passes
#: ``broker_transport_options`` straight to whichever broker the URL names, and Kombu's
#: transports ignore the keys meant for another one, so a configuration written for Redis
#: or SQS commonly meets the memory:// broker of a test suite or a RabbitMQ broker.  Such
#: keys are not "unknown" (no warning: a suite running with ``-W error`` must not fail on
#: them); a key Kombu's *own* counterpart of the transport reads, which this one does not,
#: is warned about as not supported.
_KOMBU_VIRTUAL = frozenset({"body_encoding", "deadletter_queue", "polling_interval"})
KOMBU_TRANSPORT_OPTIONS: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "memory": _KOMBU_VIRTUAL,
        # pyamqp passes every key to amqp.Connection
        "AMQP": frozenset(
            {
                "host",
                "userid",
                "password",
                "login_method",
                "login_response",
                "authentication",
                "virtual_host",
                "insist",
                "locale",
                "client_properties",
                "ssl",
                "connect_timeout",
                "channel_max",
                "frame_max",
                "heartbeat",
                "on_open",
                "on_blocked",
                "on_unblocked",
                "confirm_publish",
                "on_tune_ok",
                "read_timeout",
                "write_timeout",
                "socket_settings",
            }
        ),
        "Redis": _KOMBU_VIRTUAL
        | frozenset(
            {
                "sep",
                "ack_emulation",
                "unacked_key",
                "unacked_index_key",
                "unacked_mutex_key",
                "unacked_mutex_expire",
                "visibility_timeout",
                "unacked_restore_limit",
                "unacked_restore_interval",
                "unacked_restore_throttle",
                "fanout_prefix",
                "fanout_patterns",
                "global_keyprefix",
                "socket_timeout",
                "socket_connect_timeout",
                "socket_keepalive",
                "socket_keepalive_options",
                "queue_order_strategy",
                "max_connections",
                "health_check_interval",
                "retry_on_timeout",
                "priority_steps",
                "client_name",
                "reauth_check_interval",
                # Sentinel
                "master_name",
                "min_other_sentinels",
                "sentinel_kwargs",
                "sentinel_fanout_compat",
            }
        ),
        "SQS": _KOMBU_VIRTUAL
        | frozenset(
            {
                "region",
                "regioninfo",
                "is_secure",
                "port",
                "endpoint_url",
                "queue_name_prefix",
                "predefined_queues",
                "predefined_exchanges",
                "supports_fanout",
                "visibility_timeout",
                "wait_time_seconds",
                "sqs_base64_encoding",
                "fetch_message_attributes",
                "client-config",
                "sqs-creation-attributes",
                "queue_tags",
                "sts_role_arn",
                "sts_token_timeout",
                "sts_token_buffer_time",
            }
        ),
        # sqlalchemy and filesystem: the sqlite and filesystem brokers of Celery's docs
        "sqlalchemy": _KOMBU_VIRTUAL | frozenset({"queue_tablename", "message_tablename"}),
        "filesystem": _KOMBU_VIRTUAL
        | frozenset({"data_folder_in", "data_folder_out", "processed_folder", "store_processed", "control_folder"}),
    }
)
_ANY_KOMBU_OPTION = frozenset().union(*KOMBU_TRANSPORT_OPTIONS.values())

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class UnknownTransportOptionWarning(UserWarning):
    """A ``transport_options`` key the transport does not read (probably misspelt)."""


def option(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = None, name: str | None = None) -> Any:
    """A :class:`TransportOptions` field with its description for the docs.

    ``name`` is the key in ``transport_options`` when it is not a Python name (SQS's
    ``client-config``); ``factory`` makes a fresh mutable default.
    """
    metadata = {"doc": doc, "key": name}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TransportOptions:
    """Base class of every transport's options.

    Subclasses are dataclasses; each field is one ``transport_options`` key (its name, or
    the ``name`` given to :func:`option`).  Override :meth:`check` to refuse values out of
    range; raise :class:`ValueError` naming the option.
    """

    #: the transport's name in messages ("sqlite", "SQS" ...)
    transport_name: ClassVar[str] = "transport"
    #: further keys the transport accepts without reading them here (read elsewhere)
    passthrough: ClassVar[frozenset[str]] = frozenset()
    #: the keys Kombu's counterpart of this transport reads (default: looked up by
    #: :attr:`transport_name` in :data:`KOMBU_TRANSPORT_OPTIONS`)
    kombu_options: ClassVar[frozenset[str] | None] = None

    @classmethod
    def keys(cls) -> dict[str, dataclasses.Field[Any]]:
        """``transport_options`` key -> field."""
        return {(f.metadata.get("key") or f.name): f for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def from_transport_options(cls: type[_O], options: Mapping[str, Any] | None) -> _O:
        """Options from ``options``: converted, checked, unknown keys warned about."""
        options = options or {}
        cls.warn_unknown(options)
        known = cls.keys()
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, value in options.items():
            field = known.get(key)
            if field is not None:
                values[field.name] = cls._convert(key, value, hints[field.name])
        made = cls(**values)
        made.check()
        return made

    def check(self) -> None:
        """Refuse values out of range (:class:`ValueError` naming the option)."""

    @classmethod
    def warn_unknown(cls, options: Mapping[str, Any]) -> None:
        """Warn about every key of ``options`` the transport does not read, naming the
        closest known one.

        A key that only another Kombu transport reads is left alone (Celery hands every
        broker the same ``broker_transport_options``); one that Kombu's counterpart of
        this transport reads and this one does not is warned about as not supported.
        """
        known = cls.keys()
        own = cls.kombu_options
        if own is None:
            own = KOMBU_TRANSPORT_OPTIONS.get(cls.transport_name, frozenset())
        for key in options:
            if key in known or key in COMMON_OPTIONS or key in cls.passthrough:
                continue
            if key in own:
                warnings.warn(
                    f"{cls.transport_name} transport option {key!r} (read by Kombu's {cls.transport_name} "
                    f"transport) is not supported here and is ignored",
                    UnknownTransportOptionWarning,
                    stacklevel=5,
                )
                continue
            if key in _ANY_KOMBU_OPTION:
                continue
            candidates = sorted({*known, *COMMON_OPTIONS})
            close = difflib.get_close_matches(str(key), candidates, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (it reads: {', '.join(sorted(known))})"
            warnings.warn(
                f"unknown {cls.transport_name} transport option {key!r} is ignored{hint}",
                UnknownTransportOptionWarning,
                stacklevel=5,
            )

    @classmethod
    def _convert(cls, key: str, value: Any, hint: Any) -> Any:
        try:
            return _convert(value, hint)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{cls.transport_name} transport option {key!r} must be {_describe(hint)}, not {value!r}"
            ) from exc

    def refuse(self, name: str, expected: str) -> typing.NoReturn:
        """Raise the :class:`ValueError` for option ``name`` whose value is not ``expected``."""
        key = next((k for k, f in self.keys().items() if f.name == name), name)
        raise ValueError(
            f"{self.transport_name} transport option {key!r} must be {expected}, not {getattr(self, name)!r}"
        )


def _optional(hint: Any) -> tuple[Any, bool]:
    """``(inner type, accepts None)`` of a ``X | None`` hint."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else Union[tuple(args)]), nullable  # noqa: UP007
    return hint, False


def _convert(value: Any, hint: Any) -> Any:
    inner, nullable = _optional(hint)
    if value is None:
        if nullable or inner is Any:
            return None
        raise ValueError("None")
    origin = typing.get_origin(inner)
    if origin in (Union, types.UnionType):
        # bool | str and the like: the first member that takes the value as it is
        for member in typing.get_args(inner):
            try:
                return _convert(value, member)
            except (TypeError, ValueError):
                continue
        raise ValueError(value)
    if origin is typing.Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ValueError(value)
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(value)
    if inner is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if inner is float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if number != number:  # NaN passes every range check and breaks timeouts later
            raise ValueError(value)
        return number
    if inner is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        args = typing.get_args(inner)
        member = args[0] if args else Any
        return tuple(_convert(item, member) for item in value)
    if origin in (dict, Mapping, typing.Mapping) or inner in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError(value)
        return value
    return value


def _describe(hint: Any) -> str:
    inner, nullable = _optional(hint)
    origin = typing.get_origin(inner)
    if origin is typing.Literal:
        text = "one of " + ", ".join(repr(c) for c in typing.get_args(inner))
    elif origin in (Union, types.UnionType):
        text = " or ".join(_describe(a) for a in typing.get_args(inner))
    else:
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        if inner in names:
            text = names[inner]
        elif origin is tuple:
            text = "a list (or a comma-separated string)"
        elif origin in (dict, Mapping, typing.Mapping) or inner in (dict, Mapping):
            text = "a mapping"
        else:
            text = getattr(inner, "__name__", str(inner))
    return text + (" or None" if nullable else "")


def _default_text(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return f"``{field.default!r}``"
    if field.default_factory is not dataclasses.MISSING:
        made = field.default_factory()
        return f"``{made!r}``" if made not in ({}, [], ()) else "(empty)"
    return "(required)"


def options_table(cls: type[TransportOptions]) -> list[str]:
    """The options of ``cls`` as the lines of a reStructuredText list table."""
    hints = typing.get_type_hints(cls)
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 22 14 64",
        "",
        "   * - Option",
        "     - Default",
        "     - Meaning",
    ]
    for key, field in cls.keys().items():
        doc = field.metadata.get("doc") or ""
        kind = _describe(hints[field.name])
        lines += [
            f"   * - ``{key}``",
            f"     - {_default_text(field)}",
            f"     - {doc} ({kind})" if doc else f"     - ({kind})",
        ]
    return lines
