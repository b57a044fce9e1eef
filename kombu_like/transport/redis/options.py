"""Transport options of the Redis transport, checked once when a connection is made."""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..options import TransportOptions
from .keys import DEFAULT_PRIORITY_STEPS, DEFAULT_SEP

__all__ = ["RedisOptions"]

PRIORITY_ORDERS = ("kombu", "amqp")
FANOUT_MODES = ("pubsub", "durable")
REPLY_PARSERS = ("auto", "hiredis", "python")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


@dataclass
class RedisOptions(TransportOptions):
    """Every ``transport_options`` key the Redis transport reads (Kombu's names first).

    A key it does not know is warned about with the closest known name (connection-level
    options such as ``max_retries`` share the mapping and are known); Kombu's Redis
    options this transport does without are accepted quietly.
    """

    transport_name: ClassVar[str] = "Redis"
    passthrough: ClassVar[frozenset[str]] = frozenset(
        {
            "max_connections",
            "retry_on_timeout",
            "queue_order_strategy",
            "unacked_mutex_key",
            "unacked_mutex_expire",
            "unacked_restore_throttle",
            "body_encoding",
            "deadletter_queue",
            "polling_interval",
        }
    )

    #: seconds a delivered message may stay unacknowledged before it is given back
    visibility_timeout: float = 3600.0
    #: seconds between sweeps that give back messages past ``visibility_timeout``
    #: (default: half the visibility timeout, at most 10)
    unacked_restore_interval: float | None = None
    #: most messages one sweep gives back (default: all that are due)
    unacked_restore_limit: int | None = None
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"
    #: record deliveries in the unacked hash (False: a delivered message is gone)
    ack_emulation: bool = True
    sep: str = DEFAULT_SEP
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    #: ``"kombu"``: lower priority numbers are consumed first (Kombu's Redis order);
    #: ``"amqp"``: higher numbers first, as on RabbitMQ
    priority_order: str = "kombu"
    global_keyprefix: str = ""
    #: True: fanout channels are ``/<db>.<exchange>``; a string replaces ``/<db>.``;
    #: False: no prefix (Kombu 3)
    fanout_prefix: bool | str = True
    #: fanout messages carry the routing key in the channel name and bindings match it
    fanout_patterns: bool = True
    #: ``"pubsub"``: fanout over PUBLISH (Kombu's way, lost when nobody listens);
    #: ``"durable"``: a copy into every bound queue's list
    fanout_mode: str = "pubsub"
    #: seconds any socket read or write may take (commands, not blocking pops)
    socket_timeout: float | None = 30.0
    socket_connect_timeout: float | None = None
    socket_keepalive: bool | None = None
    socket_keepalive_options: Mapping[int, int] | None = None
    #: seconds of idleness after which a connection is checked with PING before use,
    #: and the grace a blocking pop's reply may be late before its connection is dropped
    health_check_interval: float = 25.0
    #: seconds to poll for a command's reply before sleeping on the socket (0: never
    #: poll); polling pauses by itself when replies keep taking longer.  Off on a
    #: single CPU, where the poll would hold the CPU the reply needs.
    reply_spin: float = field(default_factory=lambda: 0.0001 if _usable_cpus() > 1 else 0.0)
    client_name: str | None = None
    #: who parses replies: ``"auto"`` (hiredis when installed), ``"hiredis"``, ``"python"``
    reply_parser: str = "auto"
    #: keep bindings and exchange declarations in memory, kept fresh by Redis's
    #: client-side caching invalidations (CLIENT TRACKING)
    binding_cache: bool = True
    #: prefix of the lists that keep undecodable messages, one per queue
    deadletter_prefix: str = "_kombu_like.deadletter."
    # -- Sentinel --
    master_name: str | None = None
    min_other_sentinels: int = 0
    sentinel_kwargs: Mapping[str, Any] | None = None
    #: anything else redis-py's connection accepts (``ssl_*`` and the like)
    connection_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_transport_options(cls, options: Mapping[str, Any] | None) -> RedisOptions:  # type: ignore[override]
        """Read ``options``, converting strings from URL queries and checking values."""
        options = options or {}
        cls.warn_unknown(options)
        known = {f.name for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        values = {
            key: cls._convert(key, options[key], hints[key])
            for key in known
            if key in options and key != "connection_kwargs"
        }
        opts = cls(**values)
        opts.connection_kwargs = dict(options.get("connection_kwargs") or {})
        opts._normalize()
        return opts

    def _normalize(self) -> None:
        self.visibility_timeout = float(self.visibility_timeout)
        if self.visibility_timeout <= 0:
            raise ValueError(f"visibility_timeout must be positive, got {self.visibility_timeout!r}")
        if self.unacked_restore_interval is None:
            self.unacked_restore_interval = min(10.0, self.visibility_timeout / 2)
        self.unacked_restore_interval = float(self.unacked_restore_interval)
        if self.unacked_restore_interval <= 0:
            raise ValueError(f"unacked_restore_interval must be positive, got {self.unacked_restore_interval!r}")
        if isinstance(self.priority_steps, str):
            self.priority_steps = tuple(int(step) for step in self.priority_steps.split(","))
        self.priority_steps = tuple(int(step) for step in self.priority_steps)
        if self.priority_order not in PRIORITY_ORDERS:
            raise ValueError(
                f"priority_order must be one of {', '.join(PRIORITY_ORDERS)}, got {self.priority_order!r}"
            )
        if self.reply_parser not in REPLY_PARSERS:
            raise ValueError(
                f"reply_parser must be one of {', '.join(REPLY_PARSERS)}, got {self.reply_parser!r}"
            )
        if self.fanout_mode not in FANOUT_MODES:
            raise ValueError(f"fanout_mode must be one of {', '.join(FANOUT_MODES)}, got {self.fanout_mode!r}")
        self.health_check_interval = float(self.health_check_interval or 0)
        self.reply_spin = float(self.reply_spin or 0)
        if self.reply_spin < 0:
            raise ValueError(f"reply_spin must not be negative, got {self.reply_spin!r}")
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, float(value))

    def fanout_prefix_for(self, db: int) -> str:
        """The pub/sub channel prefix for database ``db`` (before ``global_keyprefix``)."""
        if self.fanout_prefix is True:
            return f"/{db}."
        if not self.fanout_prefix:
            return ""
        return str(self.fanout_prefix).format(db=db)
