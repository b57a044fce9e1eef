"""The asyncio driver of the virtual transports whose store never blocks (memory://).

The channel is the transport's own channel class -- routing, envelopes, prefetch, unacked
bookkeeping and restore are the blocking API's -- with the operations that are broker
round trips returning awaitables (:class:`~kombu_like.plan.Ready`: they completed without
waiting, so a cancellation can never cut one short).  Deliveries come from the virtual
transport's :class:`~kombu_like.transport.virtual.evloop.LoopDriver`, the driver of Kombu's
Hub, running on the asyncio loop through :class:`~.hub.AsyncioHub`: no thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import ConnectionError
from ..plan import SENT, Plan, Ready, arun
from ..transport.virtual.store import drives_event_loop
from .hub import AsyncioHub
from .message import Message

if TYPE_CHECKING:
    from ..connection import Connection as SyncConnection
    from .connection import Connection

__all__ = ["VirtualDriver", "async_channel_class"]

#: channel methods that are broker round trips: awaitable on the asyncio API (a publish
#: is not: it returns :data:`~kombu_like.plan.SENT` at once, as on AMQP without confirms)
ROUND_TRIPS = (
    "exchange_declare",
    "exchange_delete",
    "exchange_bind",
    "exchange_unbind",
    "queue_declare",
    "queue_bind",
    "queue_unbind",
    "queue_purge",
    "queue_delete",
    "basic_consume",
    "basic_cancel",
    "basic_get",
    "basic_qos",
    "basic_recover",
    "flow",
    "close",
)

#: channel methods that send without waiting: they return :data:`~kombu_like.plan.SENT`
#: (``basic_publish`` returns the channel's ``published``, set to it)
SENDS = ("publish_batch",)

_classes: dict[type, type] = {}


def _completed(method: Callable[..., Any]) -> Callable[..., Ready]:
    @functools.wraps(method)
    def completed(self: Any, *args: Any, **kwargs: Any) -> Ready:
        return Ready(method(self, *args, **kwargs))

    return completed


def _sent(method: Callable[..., Any]) -> Callable[..., Ready]:
    @functools.wraps(method)
    def sent(self: Any, *args: Any, **kwargs: Any) -> Ready:
        method(self, *args, **kwargs)
        return SENT

    return sent


def async_channel_class(base: type) -> type:
    """``base`` (a virtual transport's channel class) for the asyncio API."""
    cls = _classes.get(base)
    if cls is None:
        namespace: dict[str, Any] = {
            name: _completed(getattr(base, name)) for name in ROUND_TRIPS if hasattr(base, name)
        }
        namespace.update((name, _sent(getattr(base, name))) for name in SENDS if hasattr(base, name))
        # no write buffer to wait for: ``backlog`` is None (found at once, unlike a missing name)
        namespace.update(
            Message=Message, run_plan=_run_plan, __module__=__name__, aio_client=None, backlog=None, published=SENT
        )
        cls = _classes[base] = type(f"Async{base.__name__}", (base,), namespace)
    return cls


def _run_plan(self: Any, plan: Plan[Any]) -> Any:
    return arun(plan)


class VirtualDriver:
    """Connects a virtual transport for an asyncio :class:`~.connection.Connection`."""

    def __init__(self, client: Connection, sync: SyncConnection) -> None:
        self.client = client
        self.sync = sync
        self.hub: AsyncioHub | None = None

    @staticmethod
    def supports(sync: SyncConnection) -> bool:
        transport: Any = sync.transport
        return transport.driver_type == "memory" and drives_event_loop(transport.Store)

    @property
    def is_open(self) -> bool:
        connection = self.sync._connection
        return connection is not None and bool(connection.is_open)

    async def connect(self) -> None:
        sync = self.sync
        sync.connect()  # an in-process store: nothing to wait for
        self.hub = AsyncioHub(asyncio.get_running_loop(), self.client._on_driver_error)
        sync.transport.register_with_event_loop(sync.connection, self.hub)

    async def channel(self) -> Any:
        connection = self.sync.connection
        if connection is None:
            raise ConnectionError("connection is closed")
        transport: Any = self.sync.transport
        channel = connection.channel(async_channel_class(transport.Channel))
        channel.aio_client = self.client
        return channel

    async def close(self) -> None:
        sync = self.sync
        hub, self.hub = self.hub, None
        if sync._connection is not None and hub is not None:
            sync.transport.unregister_from_event_loop(sync.connection, hub)
        if hub is not None:
            hub.close()
        sync.release()  # channels close: their unacked messages go back to their queues
