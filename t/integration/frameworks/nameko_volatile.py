"""A Nameko service whose event handler does without reliable delivery: its queue is
auto-delete, so it goes away with the service.  Run with ``HEARTBEAT: null``."""

from __future__ import annotations

import os
from typing import Any

from nameko.dependency_providers import Config
from nameko.events import event_handler
from nameko.rpc import rpc

PREFIX = os.environ.get("KL_NAMEKO_PREFIX", "kl")
SOURCE = f"{PREFIX}_source"
VOLATILE = f"{PREFIX}_volatile"
#: Nameko's name for the handler's queue
QUEUE = f"evt-{SOURCE}-ping--{VOLATILE}.on_ping"

_seen: list[Any] = []


class Volatile:
    name = VOLATILE
    config = Config()

    @event_handler(SOURCE, "ping", reliable_delivery=False)
    def on_ping(self, payload: Any) -> None:
        _seen.append(payload)

    @rpc
    def seen(self) -> list[Any]:
        return list(_seen)

    @rpc
    def heartbeat(self) -> Any:
        """The heartbeat the service's own connections were configured with."""
        return self.config.get("HEARTBEAT", "unset")
