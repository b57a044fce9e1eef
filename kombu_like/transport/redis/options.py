"""Transport options of the Redis transport, checked once when a connection is made."""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..options import TransportOptions, option
from .keys import DEFAULT_PRIORITY_STEPS, DEFAULT_SEP, KEY_LAYOUTS
from .replicas import WAIT_HELP, WAIT_TIMEOUT_HELP

__all__ = ["RedisOptions"]

PRIORITY_ORDERS = ("kombu", "amqp")
FANOUT_MODES = ("pubsub", "durable")
REPLY_PARSERS = ("auto", "hiredis", "python")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def default_reply_spin() -> float:
    """Seconds to poll a connection for a reply before sleeping on its socket: 0.0001, or 0
    when the process may run on one CPU only (the poll would hold the CPU Redis needs)."""
    return 0.0001 if _usable_cpus() > 1 else 0.0


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

    # -- delivery and acknowledgement --
    visibility_timeout: float = option(
        3600.0,
        "Seconds a delivered message may stay unacknowledged before a consumer gives it back to "
        "its queue: longer than the slowest task, or it runs twice.  Every consumer of the "
        "database sweeps the same unacked store, so they should agree on it",
    )
    unacked_restore_interval: float | None = option(
        None,
        "Seconds between the sweeps that give back messages past ``visibility_timeout``; a "
        "consuming connection sweeps once when it starts and then on this interval, also "
        "while idle in ``drain_events`` (None: half the visibility timeout, at most 10)",
    )
    unacked_restore_limit: int | None = option(None, "Most messages one sweep gives back (None: all that are due)")
    unacked_key: str = option("unacked", "Name of the unacked hash (delivery tag -> message)")
    unacked_index_key: str = option("unacked_index", "Name of the sorted set of delivery tags by delivery time")
    ack_emulation: bool = option(
        True,
        "Record deliveries in the unacked store.  False: a delivered message is gone from Redis "
        "at once, and a consumer that dies loses what it held",
    )
    # -- priorities --
    sep: str = option(DEFAULT_SEP, "Separator in priority list names and binding members")
    priority_steps: tuple[int, ...] = option(
        DEFAULT_PRIORITY_STEPS,
        "A queue is one list per step; a message goes to the highest step not above its priority (clamped to 0..9)",
    )
    priority_order: str = option(
        "kombu",
        '*kombu_like only.*  ``"kombu"``: lists are emptied lowest step first, so priority 0 is '
        "served first (Kombu's order on Redis, the reverse of AMQP; declaring a queue with a "
        'maximum priority issues a :class:`RuntimeWarning` saying so); ``"amqp"``: highest '
        "first, as on RabbitMQ.  Every consumer of a queue should use the same order",
    )
    # -- keys --
    global_keyprefix: str = option(
        "",
        "Prepended to every key and pub/sub channel, so several applications can share a "
        "database; Kombu processes must use the same prefix",
    )
    key_layout: str = option(
        "kombu",
        '*kombu_like only.*  ``"kombu"``: Kombu\'s key names, shared with Kombu processes; '
        '``"cluster"``: every key one queue\'s scripts and commands touch shares the hash tag '
        "``{<queue>}`` (its lists, its own unacked hash and index, its dead-letter list) and "
        "each exchange's binding keys the tag ``{<exchange>}``, so nothing spans two Redis "
        "Cluster slots.  Kombu cannot read that layout: a queue must not be shared with Kombu "
        "processes, and every process using a database must use the same layout",
    )
    cluster: bool = option(
        False,
        "*kombu_like only.*  The URL's hosts (one or several, ``;``-separated) are startup nodes "
        "of a Redis Cluster of several masters: each command goes to the master of its key's "
        "slot.  Implies ``key_layout='cluster'``.  With ``key_layout='cluster'`` a cluster of "
        "several masters is found and used without it",
    )
    wait_replicas: int = option(0, "*kombu_like only.*  " + WAIT_HELP)
    wait_timeout: float = option(1.0, WAIT_TIMEOUT_HELP)
    # -- fanout --
    fanout_prefix: bool | str = option(
        True,
        "True: fanout channels are ``/<db>.<exchange>``; a string replaces ``/<db>.`` (``{db}`` "
        "in it is filled in); False: no prefix (Kombu 3)",
    )
    fanout_patterns: bool = option(
        True,
        "A message with routing key ``K`` goes to channel ``/<db>.<exchange>/K`` and a binding "
        "key is a glob on it (``#`` read as ``*``; empty: the exchange's own channel).  False: "
        "one channel per exchange, every bound queue gets every message, as AMQP fanout does",
    )
    fanout_mode: str = option(
        "pubsub",
        '*kombu_like only.*  ``"pubsub"``: fanout over ``PUBLISH``, as Kombu does -- only '
        'consumers listening at that moment get it; ``"durable"``: a copy into the list of '
        "every queue bound to the exchange.  Consumers receive both kinds in either mode",
    )
    # -- connections --
    socket_timeout: float | None = option(
        30.0,
        "Seconds any read or write of a command may take before it fails with a connection "
        "error (Kombu: none).  Waiting for messages is not bound by it",
    )
    socket_connect_timeout: float | None = option(
        None, "Seconds to open a connection (None: the Connection's ``connect_timeout``)"
    )
    socket_keepalive: bool | None = option(None, "TCP keepalive, passed to redis-py")
    socket_keepalive_options: Mapping[int, int] | None = option(None, "TCP keepalive settings, passed to redis-py")
    health_check_interval: float = option(
        25.0,
        "A connection idle this long is checked with ``PING`` before it carries a command; "
        "waiting take, pub/sub and invalidation connections are pinged this often and "
        "replaced when the answer is late; a fallback ``BRPOP`` reply this much later than "
        "its timeout drops its connection.  0 turns the checks off",
    )
    reply_spin: float = option(
        doc="Seconds to poll the command connection for a reply before sleeping on its socket "
        "(0.0001, or 0 when the process may run on one CPU only, where the poll would hold the "
        "CPU Redis needs).  Polling pauses by itself while replies keep taking longer; "
        "blocking pops and TLS never poll.  0 turns it off",
        factory=default_reply_spin,
    )
    client_name: str | None = option(None, "``CLIENT SETNAME`` for every connection")
    reply_parser: str = option(
        "auto",
        '*kombu_like only.*  Who parses replies: ``"auto"`` (hiredis when installed: '
        '``pip install "kombu_like[hiredis]"``), ``"hiredis"`` (insists on it), ``"python"``',
    )
    binding_cache: bool = option(
        True,
        "*kombu_like only.*  Keep bindings and exchange declarations in memory, kept fresh by "
        "Redis's client-side caching invalidations (``CLIENT TRACKING``).  False: read them on "
        "every publish",
    )
    deadletter_prefix: str = option(
        "_kombu_like.deadletter.",
        "*kombu_like only.*  Prefix of the lists that keep undecodable entries, one per queue",
    )
    # -- Sentinel --
    master_name: str | None = option(None, "The Sentinel master's name (required with ``sentinel://``)")
    min_other_sentinels: int = option(0, "Other Sentinels a Sentinel must know of before its answer is trusted")
    sentinel_kwargs: Mapping[str, Any] | None = option(
        None, "Connection options for the Sentinels themselves (default: the socket options above)"
    )
    connection_kwargs: dict[str, Any] = option(
        doc="*kombu_like only.*  Anything else redis-py's connection accepts (``ssl_*`` and the like)",
        factory=dict,
    )

    @classmethod
    def from_transport_options(cls, options: Mapping[str, Any] | None) -> RedisOptions:  # type: ignore[override]
        """Read ``options``, converting strings from URL queries and checking values."""
        options = dict(options or {})
        cls.warn_unknown(options)
        if "global_keyprefix" in options and options["global_keyprefix"] is None:
            options["global_keyprefix"] = ""  # Kombu reads None as no prefix
        extra = options.get("connection_kwargs")
        if extra is not None and not isinstance(extra, Mapping):
            raise ValueError(
                "Redis transport option 'connection_kwargs' must be a mapping of redis-py connection "
                f"arguments, not {type(extra).__name__}"
            )
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
            raise ValueError(f"priority_order must be one of {', '.join(PRIORITY_ORDERS)}, got {self.priority_order!r}")
        if self.reply_parser not in REPLY_PARSERS:
            raise ValueError(f"reply_parser must be one of {', '.join(REPLY_PARSERS)}, got {self.reply_parser!r}")
        if self.cluster:
            self.key_layout = "cluster"
        if self.key_layout not in KEY_LAYOUTS:
            raise ValueError(f"key_layout must be one of {', '.join(KEY_LAYOUTS)}, got {self.key_layout!r}")
        if self.key_layout == "cluster" and "{" in self.global_keyprefix:
            raise ValueError(
                "global_keyprefix must not contain '{' with key_layout='cluster' (a key's first '{' opens "
                f"its cluster hash tag, which is the queue's name), got {self.global_keyprefix!r}"
            )
        if self.fanout_mode not in FANOUT_MODES:
            raise ValueError(f"fanout_mode must be one of {', '.join(FANOUT_MODES)}, got {self.fanout_mode!r}")
        self.wait_replicas = int(self.wait_replicas or 0)
        self.wait_timeout = float(self.wait_timeout)
        if self.wait_replicas < 0:
            raise ValueError(f"wait_replicas must be a number of replicas, not negative, got {self.wait_replicas!r}")
        if self.wait_timeout <= 0:
            raise ValueError(f"wait_timeout must be a positive number of seconds, got {self.wait_timeout!r}")
        if self.wait_replicas and self.socket_timeout is not None and self.wait_timeout >= float(self.socket_timeout):
            # WAIT answers after up to wait_timeout: the socket must not give up first
            raise ValueError(
                f"wait_timeout must be shorter than socket_timeout ({float(self.socket_timeout):g} s), "
                f"got {self.wait_timeout!r}"
            )
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
