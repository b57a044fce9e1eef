"""Transport options of the Redis Streams transport, checked once when a connection is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..options import TransportOptions, option
from ..redis.options import default_reply_spin
from ..redis.replicas import WAIT_HELP, WAIT_TIMEOUT_HELP

__all__ = ["DEFAULT_LEASE", "DEFAULT_MAX_DELIVERIES", "StreamsOptions"]

#: seconds a delivered message stays with its consumer without a renewal
DEFAULT_LEASE = 10.0
#: deliveries after which a message is dead-lettered instead of delivered again
DEFAULT_MAX_DELIVERIES = 10


@dataclass
class StreamsOptions(TransportOptions):
    """Every ``transport_options`` key the Redis Streams transport reads.

    Spelled as the Redis transport spells them where both read the same thing
    (``global_keyprefix``, the socket timeouts, Sentinel's settings).
    """

    transport_name: ClassVar[str] = "Redis Streams"
    # Celery hands every broker the same options; these are the list transport's
    passthrough: ClassVar[frozenset[str]] = frozenset(
        {"visibility_timeout", "polling_interval", "max_connections", "retry_on_timeout", "body_encoding"}
    )

    # -- leases --
    lease: float = option(
        DEFAULT_LEASE,
        "Seconds within which the unacknowledged messages of a consumer that stopped (a "
        "crashed process, a lost connection) go to other consumers.  A live consumer renews "
        "its leases every quarter of this, and a message whose lease was not renewed for "
        "three quarters of it is taken back by the others, who look every quarter",
    )
    max_deliveries: int | None = option(
        DEFAULT_MAX_DELIVERIES,
        "Deliveries (first one, redeliveries after a lapsed lease or a requeue) after which a "
        "message is dead-lettered instead of delivered again (None: no limit)",
    )
    claim_count: int = option(1000, "Most messages of one queue whose lapsed leases one maintenance round takes back")
    # -- delayed delivery --
    eta_delivery: bool = option(
        True,
        "A message whose ``eta`` header (Celery's ISO-8601 time) is in the future waits in Redis "
        "until then, like one with ``x-delay`` (ms); off: the header is left to the consumer",
    )
    delayed_check_interval: float = option(
        0.5,
        "Seconds between a busy consumer's looks at the delayed messages of each queue it "
        "consumes (one script call each).  A consumer waiting for messages hears of delayed "
        "messages others schedule as they are scheduled and never looks at this interval; one "
        "that finds messages at every take does not wait, so a message another process "
        "scheduled due sooner than any it knows of reaches it at most this late",
    )
    # -- keys --
    global_keyprefix: str = option(
        "",
        "Prepended to every key (outside the ``{queue}`` hash tag), so several applications can share a database",
    )
    # -- publishing --
    binding_cache: bool = option(
        True,
        "Keep exchanges and bindings in memory, kept fresh by Redis's client-side caching "
        "invalidations (``CLIENT TRACKING``), so a publish does not read them; a binding made by "
        "any client is seen by the next publish.  False: read them on every publish.  Not on a "
        "Redis Cluster (read on every publish there)",
    )
    # -- queue expiry --
    expiry_sweep_interval: float = option(
        30.0,
        "Seconds between sweeps of what queues that expired (``x-expires``) leave behind: their "
        "bindings, their names among the declared queues (one sweep per interval for all clients "
        "of a Redis, run by a consumer's maintenance)",
    )
    # -- waiting --
    block_interval: float = option(
        10.0,
        "Longest single wait of the watch connection (``XREAD BLOCK``), seconds; a wait for "
        "longer is several of them, so a connection that died silently is noticed this often",
    )
    # -- connections --
    socket_timeout: float | None = option(
        30.0, "Seconds any read or write of a command may take before it fails with a connection error"
    )
    socket_connect_timeout: float | None = option(
        None, "Seconds to open a connection (None: the Connection's ``connect_timeout``)"
    )
    socket_keepalive: bool | None = option(None, "TCP keepalive, passed to redis-py")
    socket_keepalive_options: Mapping[int, int] | None = option(None, "TCP keepalive settings, passed to redis-py")
    health_check_interval: float = option(
        25.0, "A pooled connection idle this long is checked with ``PING`` before it carries a command (0: off)"
    )
    reply_spin: float = option(
        doc="Seconds to poll the publishing connection for a reply before sleeping on its socket "
        "(0.0001, or 0 when the process may run on one CPU only, where the poll would hold the "
        "CPU Redis needs).  Polling pauses by itself while replies keep taking longer; TLS never "
        "polls.  0 turns it off",
        factory=default_reply_spin,
    )
    client_name: str | None = option(None, "``CLIENT SETNAME`` for every connection")
    connection_kwargs: Mapping[str, Any] = option(
        doc="Anything else redis-py's connection accepts (``ssl_*`` and the like)", factory=dict
    )
    # -- Redis Cluster --
    cluster: bool = option(False, "The URL's hosts are startup nodes of a Redis Cluster (redis-py's cluster client)")
    wait_replicas: int = option(0, WAIT_HELP)
    wait_timeout: float = option(1.0, WAIT_TIMEOUT_HELP)
    # -- Sentinel --
    master_name: str | None = option(None, "The Sentinel master's name (required with ``sentinel+streams://``)")
    min_other_sentinels: int = option(0, "Other Sentinels a Sentinel must know of before its answer is trusted")
    sentinel_kwargs: Mapping[str, Any] | None = option(
        None, "Connection options for the Sentinels themselves (default: the socket options above)"
    )

    @classmethod
    def _convert(cls, key: str, value: Any, hint: Any) -> Any:
        # a URL query can only spell "no limit" as a word
        if isinstance(value, str) and value.strip().lower() in ("none", "null") and "None" in str(hint):
            return None
        return super()._convert(key, value, hint)

    def check(self) -> None:
        if self.global_keyprefix is None:
            self.global_keyprefix = ""  # Kombu reads None as no prefix
        if self.lease <= 0:
            self.refuse("lease", "a positive number of seconds")
        if self.max_deliveries is not None and self.max_deliveries < 1:
            self.refuse("max_deliveries", "a positive number of deliveries, or None for no limit")
        if self.claim_count < 1:
            self.refuse("claim_count", "a positive number")
        if self.block_interval <= 0:
            self.refuse("block_interval", "a positive number of seconds")
        if self.expiry_sweep_interval <= 0:
            self.refuse("expiry_sweep_interval", "a positive number of seconds")
        if self.delayed_check_interval <= 0:
            self.refuse("delayed_check_interval", "a positive number of seconds")
        self.reply_spin = float(self.reply_spin or 0)
        if self.reply_spin < 0:
            self.refuse("reply_spin", "zero or a positive number of seconds")
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                self.refuse(name, "a positive number of seconds, or None")
        if self.socket_timeout is not None and self.block_interval >= self.socket_timeout:
            # a wait's reply must come before the socket gives up on it
            self.block_interval = self.socket_timeout / 2
        if self.wait_replicas < 0:
            self.refuse("wait_replicas", "a number of replicas, not negative")
        if self.wait_timeout <= 0:
            self.refuse("wait_timeout", "a positive number of seconds")
        if self.wait_replicas and self.socket_timeout is not None and self.wait_timeout >= self.socket_timeout:
            # WAIT answers after up to wait_timeout: the socket must not give up first
            self.refuse("wait_timeout", f"shorter than socket_timeout ({self.socket_timeout:g} s)")
        if "{" in self.global_keyprefix or "}" in self.global_keyprefix:
            self.refuse("global_keyprefix", "free of '{' and '}' (the queue name is the keys' hash tag)")

    @property
    def lease_ms(self) -> int:
        """The lease in whole milliseconds (what ``XAUTOCLAIM`` reads)."""
        return max(int(self.lease * 1000), 1)

    @property
    def renew_interval(self) -> float:
        """Seconds between renewals of the leases a consumer holds, and between looks for
        lapsed ones."""
        return self.lease / 4

    @property
    def lapse_ms(self) -> int:
        """Milliseconds without a renewal after which a message is taken back: three
        quarters of the lease, so that a consumer looking every quarter of it takes back a
        stopped consumer's messages within the lease of the stop, and a live consumer's
        renewal may come half a lease late before it loses anything."""
        return max(int(self.lease * 750), 1)
