"""Transport registry: URL scheme -> transport class.

Built-in transports are named here by import path and loaded only when used, so a missing
optional driver costs nothing until its scheme is asked for.  Third-party transports
register through the ``kombu_like.transports`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Transport

__all__ = [
    "TRANSPORT_ALIASES",
    "check_transport_name",
    "get_transport_cls",
    "register_transport",
    "resolve_transport",
]

ENTRY_POINT_GROUP = "kombu_like.transports"

#: scheme -> "module:Class"
TRANSPORT_ALIASES: dict[str, str] = {
    "amqp": "kombu_like.transport.amqp:Transport",
    "pyamqp": "kombu_like.transport.amqp:Transport",
    "amqps": "kombu_like.transport.amqp:SSLTransport",
    "memory": "kombu_like.transport.memory:Transport",
    "redis": "kombu_like.transport.redis:Transport",
    "rediss": "kombu_like.transport.redis:Transport",
    "sentinel": "kombu_like.transport.redis:SentinelTransport",
    "redis+streams": "kombu_like.transport.redis_streams:Transport",
    "rediss+streams": "kombu_like.transport.redis_streams:Transport",
    "sentinel+streams": "kombu_like.transport.redis_streams:SentinelTransport",
    "sqs": "kombu_like.transport.sqs:Transport",
    "SQS": "kombu_like.transport.sqs:Transport",
    "sqlite": "kombu_like.transport.sqlite:Transport",
}


def check_transport_name(name: str) -> str:
    """Return ``name`` if it can be a transport scheme; raise :class:`ValueError` if not.

    A name with ``.`` or ``:`` would be an import path, and a transport name often comes
    from a URL someone else wrote: a URL must never decide which module gets imported.
    Custom transports are registered by scheme (:func:`register_transport`, entry points)
    or passed as a class.
    """
    if "." in name or ":" in name:
        raise ValueError(
            f"Invalid transport scheme: {name!r} (a transport is named by its scheme, "
            f"not by an import path; register a custom one with register_transport())"
        )
    return name


def register_transport(scheme: str, target: str | type[Transport]) -> None:
    """Make ``scheme://`` URLs use ``target`` (a class or a ``"module:Class"`` path)."""
    check_transport_name(scheme)
    if isinstance(target, str):
        TRANSPORT_ALIASES[scheme] = target
    else:
        TRANSPORT_ALIASES[scheme] = f"{target.__module__}:{target.__qualname__}"


def _from_entry_points(name: str) -> Any:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def _import_path(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def resolve_transport(transport: str | type[Transport] | None = None) -> type[Transport]:
    """Return the transport class for a registered scheme, or the class given.

    A name containing ``.`` or ``:`` is refused with :class:`ValueError` before anything
    is imported (see :func:`check_transport_name`).
    """
    if transport is None:
        transport = "amqp"
    if not isinstance(transport, str):
        return transport
    path = TRANSPORT_ALIASES.get(check_transport_name(transport))
    if path is None:
        found = _from_entry_points(transport)
        if found is not None:
            return found  # type: ignore[no-any-return]
        known = ", ".join(sorted(TRANSPORT_ALIASES))
        raise KeyError(f"No such transport: {transport!r} (known: {known})")
    return _import_path(path)  # type: ignore[no-any-return]


get_transport_cls = resolve_transport
