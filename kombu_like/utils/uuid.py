"""UUID helper (Kombu's ``kombu.utils.uuid``)."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

__all__ = ["uuid"]


def uuid(_uuid: Callable[[], UUID] = uuid4) -> str:
    """A new random UUID (version 4) as text."""
    return str(_uuid())
