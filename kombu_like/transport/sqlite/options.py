"""The sqlite transport's options, their defaults, and the file a URL names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from ..options import TransportOptions, option

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_PATH",
    "DEFAULT_POLLING_INTERVAL",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "OWNER_CHECK_INTERVAL",
    "SYNCHRONOUS",
    "SqliteOptions",
    "database_path",
]

#: the file ``sqlite://`` (no path) uses, in the working directory
DEFAULT_PATH = "kombu_like.db"

DEFAULT_VISIBILITY_TIMEOUT = 3600.0
DEFAULT_POLLING_INTERVAL = 0.05
DEFAULT_BUSY_TIMEOUT = 10.0
#: how often an idle consumer looks for leases held by processes that died
OWNER_CHECK_INTERVAL = 2.0

#: the values of SQLite's ``synchronous`` pragma
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass
class SqliteOptions(TransportOptions):
    """The ``transport_options`` of the sqlite transport."""

    transport_name: ClassVar[str] = "sqlite"

    visibility_timeout: float = option(
        DEFAULT_VISIBILITY_TIMEOUT, "seconds a delivered, unacknowledged message stays leased to its consumer"
    )
    polling_interval: float | None = option(
        DEFAULT_POLLING_INTERVAL,
        "how often, in seconds, a waiting consumer looks for messages written by *other* processes; "
        "publishers in the same process wake it at once (``None``: the default, as in Kombu)",
    )
    busy_timeout: float = option(
        DEFAULT_BUSY_TIMEOUT, "seconds to wait for another process's write lock before giving up"
    )
    synchronous: str = option(
        "NORMAL", "SQLite's ``synchronous`` pragma (OFF, NORMAL, FULL, EXTRA): FULL also survives power loss, at a cost"
    )

    def check(self) -> None:
        for name in ("visibility_timeout", "busy_timeout"):
            if getattr(self, name) <= 0:
                self.refuse(name, "a positive number of seconds")
        if self.polling_interval is None:
            # Kombu's virtual transports read polling_interval=None as "the default"
            self.polling_interval = DEFAULT_POLLING_INTERVAL
        if self.polling_interval < 0:
            self.refuse("polling_interval", "a number of seconds, not negative")
        self.synchronous = self.synchronous.upper()
        if self.synchronous not in SYNCHRONOUS:
            self.refuse("synchronous", "one of " + ", ".join(SYNCHRONOUS))


def database_path(virtual_host: str | None) -> str:
    """The file a ``sqlite://`` URL's path names, made absolute.

    ``None`` or ``"/"`` (no path in the URL) is :data:`DEFAULT_PATH` in the working
    directory; ``"queues.db"`` is relative to it and ``"/var/lib/q.db"`` is absolute.
    """
    path = virtual_host if virtual_host and virtual_host != "/" else DEFAULT_PATH
    return os.path.abspath(os.path.expanduser(path))
