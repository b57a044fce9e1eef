"""Base classes of entities (Kombu's ``kombu.abstract``).

:class:`MaybeChannelBound` is what :class:`~kombu_like.Exchange` and
:class:`~kombu_like.Queue` share: binding to a channel (or a Connection), re-binding after
a reconnect, and ``as_dict``.  :class:`Object` is the same class by Kombu's other name;
frameworks test ``isinstance(obj, Object)`` to find objects they can turn into dicts with
``as_dict``.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from .exceptions import NotBoundError

__all__ = ["MaybeChannelBound", "Object"]

_T = TypeVar("_T", bound="MaybeChannelBound")


class MaybeChannelBound:
    """An entity that can be bound to a channel."""

    #: attribute names (and converters) that make up the entity, used by copy/eq/as_dict
    attrs: tuple[tuple[str, Any], ...] = ()
    _channel: Any = None
    _is_bound = False
    can_cache_declaration = False

    def __call__(self: _T, channel: Any) -> _T:
        """Return a copy of this entity bound to ``channel``."""
        return self.bind(channel)

    def bind(self: _T, channel: Any) -> _T:
        """Return a copy bound to ``channel`` (the copy starts unbound, so a bound entity
        can be re-bound to a new channel after a reconnect)."""
        clone = copy.copy(self)
        clone._channel = None
        clone._is_bound = False
        clone._copied()
        return clone.maybe_bind(channel)

    def _copied(self) -> None:
        """Give a fresh copy its own mutable state."""

    def maybe_bind(self: _T, channel: Any) -> _T:
        """Bind to ``channel`` (a channel or a Connection) unless already bound."""
        if not self.is_bound and channel:
            self._channel = _maybe_channel(channel)
            self.when_bound()
            self._is_bound = True
        return self

    def revive(self, channel: Any) -> None:
        """Rebind to a new channel after the connection was re-established."""
        if self._is_bound:
            self._channel = channel
            self.when_bound()

    def when_bound(self) -> None:
        """Called when the entity is bound to a channel."""

    @property
    def is_bound(self) -> bool:
        return self._is_bound and self._channel is not None

    @property
    def channel(self) -> Any:
        """The channel this entity is bound to; raises :class:`NotBoundError` if none."""
        channel = self._channel
        if channel is None:
            raise NotBoundError(f"Can't call method on {type(self).__name__} not bound to a channel")
        if callable(channel) and not hasattr(channel, "basic_publish"):
            channel = self._channel = channel()
        return channel

    def as_dict(self, recurse: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, convert in self.attrs:
            value = getattr(self, name)
            if recurse and isinstance(value, MaybeChannelBound):
                value = value.as_dict(recurse=True)
            elif convert is not None and value is not None:
                # as Kombu: bindings become a list, flags bools... so the dict serializes
                value = convert(value)
            out[name] = value
        return out

    def _repr_entity(self, item: str = "") -> str:
        item = item or type(self).__name__
        if self.is_bound:
            return f"<{item} bound to chan:{getattr(self.channel, 'channel_id', '?')}>"
        return f"<unbound {item}>"


def _maybe_channel(channel: Any) -> Any:
    """Accept a Connection where a channel is expected, like Kombu."""
    if hasattr(channel, "default_channel") and not hasattr(channel, "basic_publish"):
        return channel.default_channel
    return channel


Object = MaybeChannelBound
